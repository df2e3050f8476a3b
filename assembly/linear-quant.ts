// y[M,N] = x[M,K] · W[N,K]^T (+ bias[N]) over prepacked affine-quantized weights (MLX's format:
// w = scale · code + bias, one scale and bias per group of `gs` consecutive k of one output row;
// spec/quantization.md). Activations stay f32: each weight is dequantized in registers and then
// accumulated exactly as the f32 and bf16 kernels accumulate (assembly/linear.ts).
//
// Packed layout, written once by bindLinear (src/kernels/wasm.ts): ceil(N/16) panels of 16 output
// columns (the last one padded with scale 0, bias 0, code 0: weights of exactly +0), each panel
// K/gs groups, each group
//   [16 f32 scales][16 f32 biases][gs k-steps of codes]                (128 + gs·2·bits bytes)
// A k-step's codes are four 32-bit lanes (8 bits: one i32 each; 4 bits: one u16 each, widened to
// i32 lanes by v128.load16x4_u); lane c holds columns c, c+4, c+8, c+12 from the low bits up, so
// `(lane >> bits·j) & mask` yields columns 4j..4j+3 in lane order with one shift and one and.
//
// Per weight, in f32: w = (scale · f32(code)) + bias (two roundings, never fused, in both builds);
// then acc = acc + x·w (the fma of simd.ts: two roundings in the plain build). Outputs accumulate in
// k order from +0, bias added last, so decode (M = 1), prefill (M > 1) and any split of the panels
// across threads give the same bits, and the scalar twin (src/kernels/scalar.ts) equals the plain
// build bit for bit.
//
// M = 1: one pass over each panel (the matrix is one sequential stream; the dequantization is
// compute in registers). M > 1: each k-block of a panel is dequantized once into `scratch`
// ([kcMax][16] f32) and run through the f32 register tiles of linear.ts, so the dequantization is
// paid once per block for all M rows.
import { fma } from './simd';
import { storeRow, panelRows } from './linear';

// @ts-ignore: decorator
@inline function groupBytes(bits: i32, gs: i32): usize {
  return 128 + ((<usize>gs * <usize>bits) << 1);
}

// Columns 4j..4j+3 of one k-step as f32 (lanes of `v`: see the layout note).
// @ts-ignore: decorator
@inline function codes(v: v128, bits: i32, j: i32): v128 {
  const mask = i32x4.splat((1 << bits) - 1);
  return f32x4.convert_i32x4_s(v128.and(i32x4.shr_u(v, bits * j), mask));
}

// @ts-ignore: decorator
@inline function loadStep(cp: usize, bits: i32): v128 {
  return bits == 8 ? v128.load(cp) : v128.load16x4_u(cp);
}

// Decode: one panel over the whole of K.
function gemvPanelQuant(yp: usize, x: usize, bp: usize, K: i32, bits: i32, gs: i32, biasp: usize, cols: i32): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  const step: usize = <usize>bits << 1; // bytes per k-step: 16 (8 bits) or 8 (4 bits)
  let a = x;
  for (let k0 = 0; k0 < K; k0 += gs) {
    const s0 = v128.load(bp), s1 = v128.load(bp, 16), s2 = v128.load(bp, 32), s3 = v128.load(bp, 48);
    const b0 = v128.load(bp, 64), b1 = v128.load(bp, 80), b2 = v128.load(bp, 96), b3 = v128.load(bp, 112);
    let cp = bp + 128;
    const end = cp + <usize>gs * step;
    // one loop per width, so that each has its own load and constant shift counts
    if (bits == 8) {
      while (cp < end) {
        const av = v128.load32_splat(a);
        const v = v128.load(cp);
        c0 = fma(av, f32x4.add(f32x4.mul(codes(v, 8, 0), s0), b0), c0);
        c1 = fma(av, f32x4.add(f32x4.mul(codes(v, 8, 1), s1), b1), c1);
        c2 = fma(av, f32x4.add(f32x4.mul(codes(v, 8, 2), s2), b2), c2);
        c3 = fma(av, f32x4.add(f32x4.mul(codes(v, 8, 3), s3), b3), c3);
        a += 4; cp += 16;
      }
    } else {
      while (cp < end) {
        const av = v128.load32_splat(a);
        const v = v128.load16x4_u(cp);
        c0 = fma(av, f32x4.add(f32x4.mul(codes(v, 4, 0), s0), b0), c0);
        c1 = fma(av, f32x4.add(f32x4.mul(codes(v, 4, 1), s1), b1), c1);
        c2 = fma(av, f32x4.add(f32x4.mul(codes(v, 4, 2), s2), b2), c2);
        c3 = fma(av, f32x4.add(f32x4.mul(codes(v, 4, 3), s3), b3), c3);
        a += 4; cp += 8;
      }
    }
    bp = end;
  }
  storeRow(yp, c0, c1, c2, c3, biasp, cols);
}

// Dequantizes k-steps [kb, kb + kc) of one panel (at bp) into dst [kc][16] f32, natural column order.
function widenBlockQuant(dst: usize, bp: usize, kb: i32, kc: i32, bits: i32, gs: i32): void {
  const step: usize = <usize>bits << 1;
  const gbytes = groupBytes(bits, gs);
  let k = kb;
  const kEnd = kb + kc;
  while (k < kEnd) {
    const g = k / gs;
    const gp = bp + <usize>g * gbytes;
    const s0 = v128.load(gp), s1 = v128.load(gp, 16), s2 = v128.load(gp, 32), s3 = v128.load(gp, 48);
    const b0 = v128.load(gp, 64), b1 = v128.load(gp, 80), b2 = v128.load(gp, 96), b3 = v128.load(gp, 112);
    const stop = min(kEnd, (g + 1) * gs);
    let cp = gp + 128 + <usize>(k - g * gs) * step;
    for (; k < stop; k++) {
      const v = loadStep(cp, bits);
      v128.store(dst, f32x4.add(f32x4.mul(codes(v, bits, 0), s0), b0));
      v128.store(dst, f32x4.add(f32x4.mul(codes(v, bits, 1), s1), b1), 16);
      v128.store(dst, f32x4.add(f32x4.mul(codes(v, bits, 2), s2), b2), 32);
      v128.store(dst, f32x4.add(f32x4.mul(codes(v, bits, 3), s3), b3), 48);
      cp += step; dst += 64;
    }
  }
}

// bits: 8 or 4; gs: the group size (K a multiple of it, checked by bindLinear). scratch: kcMax*16
// f32, private to the calling thread (unused when M = 1). tile: TILE_* of linear.ts.
export function linear_quant(y: usize, x: usize, w: usize, bias: usize, M: i32, N: i32, K: i32, p0: i32, p1: i32, kcMax: i32, scratch: usize, tile: i32, bits: i32, gs: i32): void {
  const panelBytes = <usize>(K / gs) * groupBytes(bits, gs);
  if (M == 1) {
    for (let p = p0; p < p1; p++) {
      const biasp = bias != 0 ? bias + (<usize>p << 6) : 0;
      gemvPanelQuant(y + (<usize>p << 6), x, w + <usize>p * panelBytes, K, bits, gs, biasp, min(16, N - p * 16));
    }
    return;
  }
  if (kcMax < 1) kcMax = 1;
  const rowBytesX = <usize>K << 2, rowBytesY = <usize>N << 2;
  let kb = 0;
  do { // runs once even for K = 0, so y still gets 0 + bias
    const kc = min(kcMax, K - kb);
    const first = kb == 0, last = kb + kc >= K;
    for (let p = p0; p < p1; p++) {
      const biasp = last && bias != 0 ? bias + (<usize>p << 6) : 0;
      widenBlockQuant(scratch, w + <usize>p * panelBytes, kb, kc, bits, gs);
      panelRows(tile, y + (<usize>p << 6), rowBytesY, x + (<usize>kb << 2), rowBytesX, scratch, M, kc, first, biasp, min(16, N - p * 16));
    }
    kb += kc;
  } while (kb < K);
}
