// y[M,N] = x[M,K] · W[N,K]^T (+ bias[N]) over prepacked weights (perf.md §3, §8, §9).
//
// Packed layout, written once by bindLinear (src/kernels/wasm.ts): ceil(N/16) panels of 16 output
// columns, each K-contiguous: panel p holds W[p*16 + c, k] at [p][k][c]; the last panel is
// zero-padded. f32 panels are K*64 bytes. bf16 panels are K*32 bytes: per k, two 16-byte groups
// (columns 0-7, 8-15), each holding 8 bf16 in lane order [c0,c4,c1,c5,c2,c6,c3,c7] so that
// i32x4.shl(v,16) widens columns 0-3 and v128.and(v,0xffff0000) widens columns 4-7. bf16 panels
// are stored in pairs, 2g and 2g+1 interleaved per k ([pair][k][2][32 bytes]), so a decode runs two
// panels (8 independent accumulator chains: one chain's add latency bounds a lone panel) while
// still reading the matrix as one stream; an odd last panel stands alone ([k][32 bytes]).
//
// Every output accumulates in f32, in k order, starting from +0, with the bias added last. The M=1
// path, the M>1 path and any split of the panels across threads therefore give bit-identical rows.
//
// M = 1 (decode): a 1x16 tile streams each panel once over the whole of K: the matrix is read as
// one sequential stream. M > 1: 2x16 register tile (8 accumulators, the most TurboFan keeps in
// registers), k-blocked by `kcMax` (chosen by the caller, src/kernels/wasm.ts: K itself while the
// x rows fit in L2, so small batches still stream each panel once; else 256), loop order
// k-block → panel → row pairs; partial sums live in y between k-blocks. bf16 panels are widened
// one k-block at a time into `scratch` ([kcMax][16] f32) and then run through the f32 tile.
// Panels [p0, p1) are computed: a thread pool splits the work by panel.
import { fma, loadPartial, storePartial, lanesIn } from './simd';

const BF16_HIGH_MASK: u32 = 0xffff0000;

// Register tiles for M > 1 (the `tile` argument of linear_*; src/kernels/linear-tiles.ts names
// them in this order and picks one per host).
const TILE_2X16: i32 = 0;
const TILE_2X16I: i32 = 1;
const TILE_4X8: i32 = 2;

// Adds bias (if any) and stores one 16-column row of results, clipping to the valid columns.
// @ts-ignore: decorator
@inline export function storeRow(yp: usize, c0: v128, c1: v128, c2: v128, c3: v128, biasp: usize, cols: i32): void {
  if (cols == 16) {
    if (biasp != 0) {
      c0 = f32x4.add(c0, v128.load(biasp)); c1 = f32x4.add(c1, v128.load(biasp, 16));
      c2 = f32x4.add(c2, v128.load(biasp, 32)); c3 = f32x4.add(c3, v128.load(biasp, 48));
    }
    v128.store(yp, c0); v128.store(yp, c1, 16); v128.store(yp, c2, 32); v128.store(yp, c3, 48);
  } else {
    if (biasp != 0) {
      c0 = f32x4.add(c0, loadPartial(biasp, lanesIn(cols, 0))); c1 = f32x4.add(c1, loadPartial(biasp + 16, lanesIn(cols, 1)));
      c2 = f32x4.add(c2, loadPartial(biasp + 32, lanesIn(cols, 2))); c3 = f32x4.add(c3, loadPartial(biasp + 48, lanesIn(cols, 3)));
    }
    storePartial(yp, c0, lanesIn(cols, 0)); storePartial(yp + 16, c1, lanesIn(cols, 1));
    storePartial(yp + 32, c2, lanesIn(cols, 2)); storePartial(yp + 48, c3, lanesIn(cols, 3));
  }
}

// storeRow for 8 columns (half a panel), clipping to `cols` (1..8) valid columns.
// @ts-ignore: decorator
@inline function storeRow8(yp: usize, c0: v128, c1: v128, biasp: usize, cols: i32): void {
  if (biasp != 0) {
    c0 = f32x4.add(c0, loadPartial(biasp, lanesIn(cols, 0)));
    c1 = f32x4.add(c1, loadPartial(biasp + 16, lanesIn(cols, 1)));
  }
  storePartial(yp, c0, lanesIn(cols, 0)); storePartial(yp + 16, c1, lanesIn(cols, 1));
}

// @ts-ignore: decorator
@inline export function loadRow(yp: usize, q: i32, cols: i32): v128 {
  return cols == 16 ? v128.load(yp + (<usize>q << 4)) : loadPartial(yp + (<usize>q << 4), lanesIn(cols, q));
}

// Decode, f32 weights: y[0, panel columns] over the whole of K.
function gemvPanelF32(yp: usize, x: usize, bp: usize, K: i32, biasp: usize, cols: i32): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  let a = x;
  for (let k = 0; k < K; k++) {
    const av = v128.load32_splat(a);
    c0 = fma(av, v128.load(bp), c0);
    c1 = fma(av, v128.load(bp, 16), c1);
    c2 = fma(av, v128.load(bp, 32), c2);
    c3 = fma(av, v128.load(bp, 48), c3);
    a += 4; bp += 64;
  }
  storeRow(yp, c0, c1, c2, c3, biasp, cols);
}

// Byte offset of bf16 panel p, and its k stride (64 inside a pair, 32 for an odd last panel).
// @ts-ignore: decorator
@inline function bf16PanelOffset(p: i32, K: i32): usize {
  return <usize>(p >> 1) * (<usize>K << 6) + (<usize>(p & 1) << 5);
}
// @ts-ignore: decorator
@inline function bf16PanelStride(p: i32, panels: i32): usize {
  return (p | 1) < panels ? 64 : 32;
}

// Decode, bf16 weights: widen 16 columns with 2 ops per 8 weights (see the layout note above).
function gemvPanelBF16(yp: usize, x: usize, bp: usize, stride: usize, K: i32, biasp: usize, cols: i32): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  const high = i32x4.splat(BF16_HIGH_MASK);
  let a = x;
  for (let k = 0; k < K; k++) {
    const av = v128.load32_splat(a);
    const g0 = v128.load(bp), g1 = v128.load(bp, 16);
    c0 = fma(av, i32x4.shl(g0, 16), c0);
    c1 = fma(av, v128.and(g0, high), c1);
    c2 = fma(av, i32x4.shl(g1, 16), c2);
    c3 = fma(av, v128.and(g1, high), c3);
    a += 4; bp += stride;
  }
  storeRow(yp, c0, c1, c2, c3, biasp, cols);
}

// Decode, bf16 weights, one pair of panels (32 columns, the second clipped to cols1): one x splat
// serves both; each output still accumulates alone, in k order (the same bits as gemvPanelBF16).
function gemvPanelPairBF16(yp: usize, x: usize, bp: usize, K: i32, biasp: usize, cols1: i32): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  let d0 = f32x4.splat(0), d1 = f32x4.splat(0), d2 = f32x4.splat(0), d3 = f32x4.splat(0);
  let a = x;
  for (let k = 0; k < K; k++) {
    const av = v128.load32_splat(a);
    const g0 = v128.load(bp), g1 = v128.load(bp, 16);
    c0 = fma(av, i32x4.shl(g0, 16), c0);
    c1 = fma(av, v128.and(g0, i32x4.splat(BF16_HIGH_MASK)), c1);
    c2 = fma(av, i32x4.shl(g1, 16), c2);
    c3 = fma(av, v128.and(g1, i32x4.splat(BF16_HIGH_MASK)), c3);
    const h0 = v128.load(bp, 32), h1 = v128.load(bp, 48);
    d0 = fma(av, i32x4.shl(h0, 16), d0);
    d1 = fma(av, v128.and(h0, i32x4.splat(BF16_HIGH_MASK)), d1);
    d2 = fma(av, i32x4.shl(h1, 16), d2);
    d3 = fma(av, v128.and(h1, i32x4.splat(BF16_HIGH_MASK)), d3);
    a += 4; bp += 64;
  }
  storeRow(yp, c0, c1, c2, c3, biasp, 16);
  storeRow(yp + 64, d0, d1, d2, d3, biasp != 0 ? biasp + 64 : 0, cols1);
}

// Prefill register tiles. Each runs over one k-block of kc steps of an f32 panel block at bp
// ([kc][16], k stride 64 bytes), reading x rows `rowX` bytes apart and writing y rows `rowY` bytes
// apart. `first`: start from +0, else continue the partial sums stored in y. `biasp` != 0 only on
// the last k-block. Every tile computes each output as acc = acc + x·w in k order (fma), so they
// are interchangeable bit for bit; they differ only in how many rows and columns share the loads
// (what suits one core's front end, load ports and register file does not suit the next).
// The loops run on an end pointer with the second row addressed as a0 + rowX: fewer integer ops
// per k than separate counters and pointers, which lets TurboFan unroll them.

// 2 rows × 16 columns (one panel): 8 accumulators; per k 4 panel loads and 2 splats. `interleaved`
// (the '2x16i' tile): the rows' multiply-adds alternate column by column with each panel load
// written at its use (TurboFan schedules the two orders differently; the sums are the same).
function tile2x16(interleaved: bool, y0: usize, rowY: usize, a0: usize, rowX: usize, bp: usize, kc: i32, first: bool, biasp: usize, cols: i32): void {
  const y1 = y0 + rowY;
  let c00: v128, c01: v128, c02: v128, c03: v128, c10: v128, c11: v128, c12: v128, c13: v128;
  if (first) {
    c00 = f32x4.splat(0); c01 = c00; c02 = c00; c03 = c00; c10 = c00; c11 = c00; c12 = c00; c13 = c00;
  } else {
    c00 = loadRow(y0, 0, cols); c01 = loadRow(y0, 1, cols); c02 = loadRow(y0, 2, cols); c03 = loadRow(y0, 3, cols);
    c10 = loadRow(y1, 0, cols); c11 = loadRow(y1, 1, cols); c12 = loadRow(y1, 2, cols); c13 = loadRow(y1, 3, cols);
  }
  const end = bp + (<usize>kc << 6);
  if (interleaved) {
    while (bp < end) {
      const av0 = v128.load32_splat(a0), av1 = v128.load32_splat(a0 + rowX);
      c00 = fma(av0, v128.load(bp), c00); c10 = fma(av1, v128.load(bp), c10);
      c01 = fma(av0, v128.load(bp, 16), c01); c11 = fma(av1, v128.load(bp, 16), c11);
      c02 = fma(av0, v128.load(bp, 32), c02); c12 = fma(av1, v128.load(bp, 32), c12);
      c03 = fma(av0, v128.load(bp, 48), c03); c13 = fma(av1, v128.load(bp, 48), c13);
      bp += 64; a0 += 4;
    }
  } else {
    while (bp < end) {
      const b0 = v128.load(bp), b1 = v128.load(bp, 16), b2 = v128.load(bp, 32), b3 = v128.load(bp, 48);
      const av0 = v128.load32_splat(a0);
      c00 = fma(av0, b0, c00); c01 = fma(av0, b1, c01); c02 = fma(av0, b2, c02); c03 = fma(av0, b3, c03);
      const av1 = v128.load32_splat(a0 + rowX);
      c10 = fma(av1, b0, c10); c11 = fma(av1, b1, c11); c12 = fma(av1, b2, c12); c13 = fma(av1, b3, c13);
      bp += 64; a0 += 4;
    }
  }
  storeRow(y0, c00, c01, c02, c03, biasp, cols);
  storeRow(y1, c10, c11, c12, c13, biasp, cols);
}

// 4 rows × 8 columns (half a panel: bp and y0 point at its first column, `cols` counts from
// there): 8 accumulators; per k 2 panel loads and 4 splats.
function tile4x8(y0: usize, rowY: usize, a0: usize, rowX: usize, bp: usize, kc: i32, first: bool, biasp: usize, cols: i32): void {
  const y1 = y0 + rowY, y2 = y1 + rowY, y3 = y2 + rowY;
  let c00: v128, c01: v128, c10: v128, c11: v128, c20: v128, c21: v128, c30: v128, c31: v128;
  if (first) {
    c00 = f32x4.splat(0); c01 = c00; c10 = c00; c11 = c00; c20 = c00; c21 = c00; c30 = c00; c31 = c00;
  } else {
    c00 = loadRow(y0, 0, cols); c01 = loadRow(y0, 1, cols); c10 = loadRow(y1, 0, cols); c11 = loadRow(y1, 1, cols);
    c20 = loadRow(y2, 0, cols); c21 = loadRow(y2, 1, cols); c30 = loadRow(y3, 0, cols); c31 = loadRow(y3, 1, cols);
  }
  const rowX2 = rowX << 1, rowX3 = rowX2 + rowX;
  const end = bp + (<usize>kc << 6);
  while (bp < end) {
    const b0 = v128.load(bp), b1 = v128.load(bp, 16);
    const v0 = v128.load32_splat(a0);
    c00 = fma(v0, b0, c00); c01 = fma(v0, b1, c01);
    const v1 = v128.load32_splat(a0 + rowX);
    c10 = fma(v1, b0, c10); c11 = fma(v1, b1, c11);
    const v2 = v128.load32_splat(a0 + rowX2);
    c20 = fma(v2, b0, c20); c21 = fma(v2, b1, c21);
    const v3 = v128.load32_splat(a0 + rowX3);
    c30 = fma(v3, b0, c30); c31 = fma(v3, b1, c31);
    bp += 64; a0 += 4;
  }
  storeRow8(y0, c00, c01, biasp, cols); storeRow8(y1, c10, c11, biasp, cols);
  storeRow8(y2, c20, c21, biasp, cols); storeRow8(y3, c30, c31, biasp, cols);
}

// The odd last row: 1 row × 16 columns.
function tile1x16(y0: usize, a0: usize, bp: usize, kc: i32, first: bool, biasp: usize, cols: i32): void {
  let c0: v128, c1: v128, c2: v128, c3: v128;
  if (first) {
    c0 = f32x4.splat(0); c1 = c0; c2 = c0; c3 = c0;
  } else {
    c0 = loadRow(y0, 0, cols); c1 = loadRow(y0, 1, cols); c2 = loadRow(y0, 2, cols); c3 = loadRow(y0, 3, cols);
  }
  const end = bp + (<usize>kc << 6);
  while (bp < end) {
    const av = v128.load32_splat(a0);
    c0 = fma(av, v128.load(bp), c0); c1 = fma(av, v128.load(bp, 16), c1);
    c2 = fma(av, v128.load(bp, 32), c2); c3 = fma(av, v128.load(bp, 48), c3);
    bp += 64; a0 += 4;
  }
  storeRow(y0, c0, c1, c2, c3, biasp, cols);
}

// Widens a bf16 panel block [kc][16] (packed order, k stride `stride` bytes) to f32 [kc][16] in
// natural column order.
function widenBlockBF16(dst: usize, src: usize, stride: usize, kc: i32): void {
  const high = i32x4.splat(BF16_HIGH_MASK);
  for (let k = 0; k < kc; k++) {
    const g0 = v128.load(src), g1 = v128.load(src, 16);
    v128.store(dst, i32x4.shl(g0, 16));
    v128.store(dst, v128.and(g0, high), 16);
    v128.store(dst, i32x4.shl(g1, 16), 32);
    v128.store(dst, v128.and(g1, high), 48);
    src += stride; dst += 64;
  }
}

// Rows [0, M) of one panel's k-block with register tile `tile` (TILE_*); leftover rows go through
// the 2x16 and 1x16 tiles (the same arithmetic per output, so any mix is bit-identical).
export function panelRows(tile: i32, yp: usize, rowY: usize, xp: usize, rowX: usize, bp: usize, M: i32, kc: i32, first: bool, biasp: usize, cols: i32): void {
  let m = 0;
  if (tile == TILE_4X8) {
    const biasHi = biasp != 0 ? biasp + 32 : 0;
    for (; m + 4 <= M; m += 4) {
      const y0 = yp + <usize>m * rowY, a0 = xp + <usize>m * rowX;
      tile4x8(y0, rowY, a0, rowX, bp, kc, first, biasp, min(8, cols));
      if (cols > 8) tile4x8(y0 + 32, rowY, a0, rowX, bp + 32, kc, first, biasHi, cols - 8);
    }
  }
  const interleaved = tile == TILE_2X16I;
  for (; m + 2 <= M; m += 2) tile2x16(interleaved, yp + <usize>m * rowY, rowY, xp + <usize>m * rowX, rowX, bp, kc, first, biasp, cols);
  if (m < M) tile1x16(yp + <usize>m * rowY, xp + <usize>m * rowX, bp, kc, first, biasp, cols);
}

function linearImpl(isBF16: bool, y: usize, x: usize, w: usize, bias: usize, M: i32, N: i32, K: i32, p0: i32, p1: i32, kcMax: i32, scratch: usize, tile: i32): void {
  const rowBytesX = <usize>K << 2, rowBytesY = <usize>N << 2;
  const panelBytes: usize = <usize>K << 6; // f32
  const panels = (N + 15) >> 4;
  if (M == 1) {
    let p = p0;
    while (p < p1) {
      const biasp = bias != 0 ? bias + (<usize>p << 6) : 0;
      if (!isBF16) {
        gemvPanelF32(y + (<usize>p << 6), x, w + <usize>p * panelBytes, K, biasp, min(16, N - p * 16));
        p++;
      } else if ((p & 1) == 0 && p + 1 < p1) { // a whole pair (this thread owns both panels)
        gemvPanelPairBF16(y + (<usize>p << 6), x, w + bf16PanelOffset(p, K), K, biasp, min(16, N - (p + 1) * 16));
        p += 2;
      } else {
        gemvPanelBF16(y + (<usize>p << 6), x, w + bf16PanelOffset(p, K), bf16PanelStride(p, panels), K, biasp, min(16, N - p * 16));
        p++;
      }
    }
    return;
  }
  if (kcMax < 1) kcMax = 1;
  let kb = 0;
  do { // runs once even for K = 0, so y still gets 0 + bias
    const kc = min(kcMax, K - kb);
    const first = kb == 0, last = kb + kc >= K;
    for (let p = p0; p < p1; p++) {
      const biasp = last && bias != 0 ? bias + (<usize>p << 6) : 0;
      let bp: usize;
      if (isBF16) {
        const stride = bf16PanelStride(p, panels);
        widenBlockBF16(scratch, w + bf16PanelOffset(p, K) + <usize>kb * stride, stride, kc);
        bp = scratch;
      } else {
        bp = w + <usize>p * panelBytes + (<usize>kb << 6);
      }
      panelRows(tile, y + (<usize>p << 6), rowBytesY, x + (<usize>kb << 2), rowBytesX, bp, M, kc, first, biasp, min(16, N - p * 16));
    }
    kb += kc;
  } while (kb < K);
}

// f32 panels. bias = 0 means none. scratch unused (kept for a uniform signature). tile: TILE_*.
export function linear_f32(y: usize, x: usize, w: usize, bias: usize, M: i32, N: i32, K: i32, p0: i32, p1: i32, kcMax: i32, scratch: usize, tile: i32): void {
  linearImpl(false, y, x, w, bias, M, N, K, p0, p1, kcMax, scratch, tile);
}

// bf16 panels. scratch: kcMax*16 f32, private to the calling thread (unused when M = 1).
export function linear_bf16(y: usize, x: usize, w: usize, bias: usize, M: i32, N: i32, K: i32, p0: i32, p1: i32, kcMax: i32, scratch: usize, tile: i32): void {
  linearImpl(true, y, x, w, bias, M, N, K, p0, p1, kcMax, scratch, tile);
}
