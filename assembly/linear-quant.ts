// y[M,N] = x[M,K] · W[N,K]^T (+ bias[N]) over prepacked affine-quantized weights (MLX's format:
// w = scale · code + bias, one scale and bias per group of `gs` consecutive k of one output row;
// spec/quantization.md). Activations stay f32. As MLX's own qmv does (Metal `qdot`: scale · accum +
// sum · bias), the affine map is factored out of each group:
//   y = Σ_g ( scale_g · Σ_{k∈g} code_k·x_k  +  bias_g · Σ_{k∈g} x_k )
// so a weight costs its code's extraction, one convert and one multiply-add; the scale and bias
// are applied once per group and the group sums of x once per activation row (all N outputs).
//
// Packed layout, written once by bindLinear (src/kernels/wasm.ts): ceil(N/16) panels of 16 output
// columns (the last one padded with scale 0, bias 0, code 0: weights of exactly +0), each panel
// K/gs groups, each group
//   [16 f32 scales][16 f32 biases][gs k-steps of codes]                (128 + gs·2·bits bytes)
// A k-step's codes are four 32-bit lanes (8 bits: one i32 each; 4 bits: one u16 each, widened to
// i32 lanes by v128.load16x4_u); lane c holds columns c, c+4, c+8, c+12 from the low bits up: field
// j (bits·j .. bits·j + bits − 1) holds columns 4j..4j+3 in lane order. Fields 0..2 are taken in
// place, with one and (as MLX's Metal qdot takes 4-bit codes): they read code·2^(bits·j), exact in
// f32; field 3 with one shift (its top bits need no mask). To keep the products those of the codes,
// the stored scale of a column in field j < 3 is scale·2^−(bits·j) (exact): (scale·2^−bj)·(Σ x·code·2^bj)
// rounds as scale·(Σ x·code) unless a product or sum leaves the normal f32 range, and the scalar twin
// does the same arithmetic, so they agree bit for bit in every case.
//
// In f32, per output (column n, field j = (n mod 16) div 4, f = 2^(bits·j) for j < 3 else 1): acc =
// +0; per group in k order: dot = +0, then dot = dot + x·f32(code·f) for k in order (the fma of
// simd.ts: two roundings in the plain build); xsum = +0, then xsum = xsum + x (k order); acc = acc +
// (f32(scale/f)·dot + bias·xsum), each product and sum rounded (never fused, in both builds). The
// layer bias is added last. So decode (M = 1), prefill (M > 1: the group's codes widened once and
// run through the f32 register tiles of linear.ts for all M rows) and any split of the panels across
// threads give the same bits, and the scalar twin (src/kernels/scalar.ts) equals the plain build bit
// for bit.
import { fma } from './simd';
import { storeRow, loadRow, panelRows } from './linear';

// @ts-ignore: decorator
@inline function groupBytes(bits: i32, gs: i32): usize {
  return 128 + ((<usize>gs * <usize>bits) << 1);
}

// Columns 4j..4j+3 of one k-step as f32, code·2^(bits·j) for j < 3 (lanes of `v`: see the layout note).
// @ts-ignore: decorator
@inline function codes(v: v128, bits: i32, j: i32): v128 {
  if (j == 3) return f32x4.convert_i32x4_s(i32x4.shr_u(v, bits * 3));
  return f32x4.convert_i32x4_s(v128.and(v, i32x4.splat(((1 << bits) - 1) << (bits * j))));
}

// @ts-ignore: decorator
@inline function loadStep(cp: usize, bits: i32): v128 {
  return bits == 8 ? v128.load(cp) : v128.load16x4_u(cp);
}

// sums[g] = Σ_{k∈g} x[k] in k order from +0, one per group of the row at x (f32 adds). Four groups
// at a time: four independent chains of adds, each still in its own group's k order.
export function groupSums(sums: usize, x: usize, K: i32, gs: i32): void {
  const groups = K / gs, stride = <usize>gs << 2;
  let g = 0;
  for (; g + 4 <= groups; g += 4) {
    let s0: f32 = 0, s1: f32 = 0, s2: f32 = 0, s3: f32 = 0;
    let p = x + <usize>g * stride;
    const end = p + stride;
    for (; p < end; p += 4) {
      s0 += load<f32>(p); s1 += load<f32>(p + stride); s2 += load<f32>(p + 2 * stride); s3 += load<f32>(p + 3 * stride);
    }
    store<f32>(sums, s0); store<f32>(sums, s1, 4); store<f32>(sums, s2, 8); store<f32>(sums, s3, 12);
    sums += 16;
  }
  for (; g < groups; g++) {
    let s: f32 = 0;
    let p = x + <usize>g * stride;
    const end = p + stride;
    for (; p < end; p += 4) s += load<f32>(p);
    store<f32>(sums, s);
    sums += 4;
  }
}

// acc + (scale·dot + bias·xsum) for four columns of one group (products and sums rounded apart).
// @ts-ignore: decorator
@inline function groupEpilogue(acc: v128, scale: v128, dot: v128, bias: v128, xsum: v128): v128 {
  return f32x4.add(acc, f32x4.add(f32x4.mul(scale, dot), f32x4.mul(bias, xsum)));
}

// Decode: one panel over the whole of K. Per group, four dot accumulators of code·x (codes
// converted exactly to f32, no scale or bias per weight), then the group epilogue.
function gemvPanelQuant(yp: usize, x: usize, bp: usize, K: i32, bits: i32, gs: i32, sums: usize, biasp: usize, cols: i32): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  const step: usize = <usize>bits << 1; // bytes per k-step: 16 (8 bits) or 8 (4 bits)
  let a = x;
  for (let k0 = 0; k0 < K; k0 += gs) {
    let d0 = f32x4.splat(0), d1 = f32x4.splat(0), d2 = f32x4.splat(0), d3 = f32x4.splat(0);
    let cp = bp + 128;
    const end = cp + <usize>gs * step;
    // one loop per width, so that each has its own load and constant masks; fields 0..2 in place
    // (code·2^(bits·j), the scale compensates), the top one shifted down (no mask needed: 8 bits,
    // an i32 lane; 4 bits, a u16 widened to i32)
    if (bits == 8) {
      const m0 = i32x4.splat(0xff), m1 = i32x4.splat(0xff00), m2 = i32x4.splat(0xff0000);
      while (cp < end) {
        const av = v128.load32_splat(a);
        const v = v128.load(cp);
        d0 = fma(av, f32x4.convert_i32x4_s(v128.and(v, m0)), d0);
        d1 = fma(av, f32x4.convert_i32x4_s(v128.and(v, m1)), d1);
        d2 = fma(av, f32x4.convert_i32x4_s(v128.and(v, m2)), d2);
        d3 = fma(av, f32x4.convert_i32x4_s(i32x4.shr_u(v, 24)), d3);
        a += 4; cp += 16;
      }
    } else {
      const m0 = i32x4.splat(0xf), m1 = i32x4.splat(0xf0), m2 = i32x4.splat(0xf00);
      while (cp < end) {
        const av = v128.load32_splat(a);
        const v = v128.load16x4_u(cp);
        d0 = fma(av, f32x4.convert_i32x4_s(v128.and(v, m0)), d0);
        d1 = fma(av, f32x4.convert_i32x4_s(v128.and(v, m1)), d1);
        d2 = fma(av, f32x4.convert_i32x4_s(v128.and(v, m2)), d2);
        d3 = fma(av, f32x4.convert_i32x4_s(i32x4.shr_u(v, 12)), d3);
        a += 4; cp += 8;
      }
    }
    const xs = v128.load32_splat(sums);
    c0 = groupEpilogue(c0, v128.load(bp), d0, v128.load(bp, 64), xs);
    c1 = groupEpilogue(c1, v128.load(bp, 16), d1, v128.load(bp, 80), xs);
    c2 = groupEpilogue(c2, v128.load(bp, 32), d2, v128.load(bp, 96), xs);
    c3 = groupEpilogue(c3, v128.load(bp, 48), d3, v128.load(bp, 112), xs);
    bp = end; sums += 4;
  }
  storeRow(yp, c0, c1, c2, c3, biasp, cols);
}

// The codes of group g of one panel (at gp) as f32 [gs][16], natural column order.
function widenGroupCodes(dst: usize, gp: usize, bits: i32, gs: i32): void {
  const step: usize = <usize>bits << 1;
  let cp = gp + 128;
  for (let k = 0; k < gs; k++) {
    const v = loadStep(cp, bits);
    v128.store(dst, codes(v, bits, 0));
    v128.store(dst, codes(v, bits, 1), 16);
    v128.store(dst, codes(v, bits, 2), 32);
    v128.store(dst, codes(v, bits, 3), 48);
    cp += step; dst += 64;
  }
}

// Prefill epilogue of one group for rows [0, M) of a panel: y = (first ? +0 : y) + (scale·dot +
// bias·xsum), then + bias on the last group; dots [M][16], sums [M][groups].
function groupRows(yp: usize, rowY: usize, gp: usize, dots: usize, sums: usize, groups: i32, M: i32, first: bool, biasp: usize, cols: i32): void {
  const s0 = v128.load(gp), s1 = v128.load(gp, 16), s2 = v128.load(gp, 32), s3 = v128.load(gp, 48);
  const b0 = v128.load(gp, 64), b1 = v128.load(gp, 80), b2 = v128.load(gp, 96), b3 = v128.load(gp, 112);
  for (let m = 0; m < M; m++) {
    let c0: v128, c1: v128, c2: v128, c3: v128;
    if (first) {
      c0 = f32x4.splat(0); c1 = c0; c2 = c0; c3 = c0;
    } else {
      c0 = loadRow(yp, 0, cols); c1 = loadRow(yp, 1, cols); c2 = loadRow(yp, 2, cols); c3 = loadRow(yp, 3, cols);
    }
    const xs = v128.load32_splat(sums + (<usize>m * <usize>groups << 2));
    c0 = groupEpilogue(c0, s0, v128.load(dots), b0, xs);
    c1 = groupEpilogue(c1, s1, v128.load(dots, 16), b1, xs);
    c2 = groupEpilogue(c2, s2, v128.load(dots, 32), b2, xs);
    c3 = groupEpilogue(c3, s3, v128.load(dots, 48), b3, xs);
    storeRow(yp, c0, c1, c2, c3, biasp, cols);
    yp += rowY; dots += 64;
  }
}

// Prefill runs rows in blocks of this many, so its scratch does not grow with M and a group's slice of
// the block's activations ([64][gs] f32, 16 KiB at gs = 64) stays in L1 across the group's panels'
// tiles (256 rows: 1 thread, Ouro MLP shapes at M = 256, 28-33 GFLOP/s; 64 rows: 39-46, bf16 ~50).
export const QUANT_ROW_BLOCK = 64;

// bits: 8 or 4; gs: the group size (K a multiple of it, checked by bindLinear). scratch, private to
// the calling thread, bytes laid out as quantScratchBytes (src/kernels/wasm-exports.ts) says: for
// M = 1, the [K/gs] f32 group sums of x; for M > 1, per block of rows R ≤ QUANT_ROW_BLOCK and k-block,
// [R][kc/gs] f32 group sums (rounded up to 16 bytes), [R][16] f32 group dots and [gs][16] f32
// codes. tile: TILE_* of linear.ts. kcMax: k-steps per block (rounded down to whole groups).
export function linear_quant(y: usize, x: usize, w: usize, bias: usize, M: i32, N: i32, K: i32, p0: i32, p1: i32, kcMax: i32, scratch: usize, tile: i32, bits: i32, gs: i32): void {
  const groups = K / gs;
  const gbytes = groupBytes(bits, gs);
  const panelBytes = <usize>groups * gbytes;
  const rowBytesX = <usize>K << 2, rowBytesY = <usize>N << 2;
  const sums = scratch;
  if (M == 1) {
    groupSums(sums, x, K, gs);
    for (let p = p0; p < p1; p++) {
      const biasp = bias != 0 ? bias + (<usize>p << 6) : 0;
      gemvPanelQuant(y + (<usize>p << 6), x, w + <usize>p * panelBytes, K, bits, gs, sums, biasp, min(16, N - p * 16));
    }
    return;
  }
  const kc = max(gs, kcMax - kcMax % gs);
  const blockGroups = kc / gs;
  const dots = sums + ((<usize>min(M, QUANT_ROW_BLOCK) * <usize>blockGroups * 4 + 15) & ~15);
  const codeBlock = dots + (<usize>min(M, QUANT_ROW_BLOCK) << 6);
  if (K == 0) { // y = 0 + bias
    for (let p = p0; p < p1; p++) {
      const biasp = bias != 0 ? bias + (<usize>p << 6) : 0;
      for (let m = 0; m < M; m++) storeRow(y + <usize>m * rowBytesY + (<usize>p << 6), f32x4.splat(0), f32x4.splat(0), f32x4.splat(0), f32x4.splat(0), biasp, min(16, N - p * 16));
    }
    return;
  }
  for (let m0 = 0; m0 < M; m0 += QUANT_ROW_BLOCK) {
    const rows = min(QUANT_ROW_BLOCK, M - m0);
    const xb = x + <usize>m0 * rowBytesX, yb = y + <usize>m0 * rowBytesY;
    // k-blocks outside the panels, so the x block stays in cache across them
    for (let kb = 0; kb < K; kb += kc) {
      const g0 = kb / gs, gEnd = min(K, kb + kc) / gs, ng = gEnd - g0;
      for (let m = 0; m < rows; m++) groupSums(sums + (<usize>(m * ng) << 2), xb + <usize>m * rowBytesX + (<usize>kb << 2), ng * gs, gs);
      for (let p = p0; p < p1; p++) {
        const cols = min(16, N - p * 16);
        for (let g = g0; g < gEnd; g++) {
          const gp = w + <usize>p * panelBytes + <usize>g * gbytes;
          widenGroupCodes(codeBlock, gp, bits, gs);
          panelRows(tile, dots, 64, xb + (<usize>(g * gs) << 2), rowBytesX, codeBlock, rows, gs, true, 0, 16);
          const biasp = g == groups - 1 && bias != 0 ? bias + (<usize>p << 6) : 0;
          groupRows(yb + (<usize>p << 6), rowBytesY, gp, dots, sums + (<usize>(g - g0) << 2), ng, rows, g == 0, biasp, cols);
        }
      }
    }
  }
}
