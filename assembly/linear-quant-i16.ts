// The opt-in integer-dot mode of quantized Linear (spec/quantization.md, "int16 activations"):
// y[M,N] = x[M,K] · W[N,K]^T (+ bias[N]) with each group of `gs` activations of a row quantized to
// int16 (xq = round(x · 32767/amax), amax = max |x| of the group) and the group's dot product
// Σ code·xq taken in exact integer arithmetic with i32x4.dot_i16x8_s (8 products, pairwise summed,
// per instruction), then, per group, in f32:
//   acc = acc + ( (scale · xscale) · f32(idot)  +  bias · xsum )     xscale = amax / 32767
// (each product and sum rounded; xsum = Σ x of the group in f32, k order, as in the exact mode).
// Not the exact mode's numbers: the activations' rounding is a deviation measured in
// bench/RESULTS.md. The integer sums are exact (|idot| < 2^31 for gs ≤ 128), so the order of the
// lanes does not matter and the scalar twin (linearQuantI16 in src/kernels/quant.ts) equals this
// kernel bit for bit in both builds.
//
// Packed layout, written once by bindLinear (src/kernels/wasm.ts) when the runtime runs int16
// activations: ceil(N/4) quads of 4 output rows (the last padded with scale 0, bias 0, code 0),
// each quad K/gs groups, each group
//   [4 f32 scales][4 f32 biases][gs·bits/128 chunks of 4 rows × 16 bytes of codes]
// A row's 16 bytes are its MLX words unchanged: 8 bits, 16 consecutive codes; 4 bits, 32 codes,
// byte b holding k = 2b (low nibble) and 2b + 1 (high nibble). The quantized activations are laid
// out to match: 8 bits, k in order; 4 bits, per chunk of 32 k the 16 even k then the 16 odd k, so
// `v & 0x0f` and `v >> 4` meet their activations without a shuffle.
//
// Per 16 weights (4 bits): one load, an and, a shift, two widenings to i16, two dots, two adds —
// against the exact mode's extraction, convert and multiply-add per four weights.
import { groupSums } from './linear-quant';

const XMAX: f32 = 32767;

// @ts-ignore: decorator
@inline function groupBytesI16(bits: i32, gs: i32): usize {
  return 32 + ((<usize>gs * <usize>bits) >> 1);
}

// Quantizes one activation row: xq [K] i16 in the layout above, xscale [K/gs] f32.
function quantizeRow(xq: usize, xscale: usize, x: usize, K: i32, bits: i32, gs: i32): void {
  for (let k0 = 0; k0 < K; k0 += gs) {
    let m4 = f32x4.splat(0);
    for (let k = 0; k < gs; k += 4) m4 = f32x4.max(m4, f32x4.abs(v128.load(x + (<usize>(k0 + k) << 2))));
    const amax = max(max(f32x4.extract_lane(m4, 0), f32x4.extract_lane(m4, 1)), max(f32x4.extract_lane(m4, 2), f32x4.extract_lane(m4, 3)));
    const inv: f32 = amax == 0 ? 0 : XMAX / amax; // +Inf: 0 (and xscale +Inf); NaN: NaN (xq 0, xscale NaN)
    store<f32>(xscale, amax / XMAX);
    xscale += 4;
    const iv = f32x4.splat(inv);
    for (let k = 0; k < gs; k += 16) {
      const p = x + (<usize>(k0 + k) << 2);
      const n0 = i16x8.narrow_i32x4_s(
        i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), iv))),
        i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), iv))));
      const n1 = i16x8.narrow_i32x4_s(
        i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 32), iv))),
        i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 48), iv))));
      if (bits == 8) {
        v128.store(xq, n0); v128.store(xq, n1, 16);
        xq += 32;
      } else {
        // k0+k .. +15 of a 32-k chunk: evens to the chunk's first half, odds to its second
        const half = (k & 16) != 0 ? 16 : 0;
        v128.store(xq + half, i8x16.shuffle(n0, n1, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29));
        v128.store(xq + half + 32, i8x16.shuffle(n0, n1, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31));
        if (half != 0) xq += 64;
      }
    }
  }
}

// [Σ a0, Σ a1, Σ a2, Σ a3] (i32, exact).
// @ts-ignore: decorator
@inline function hsum4(a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const s01 = i32x4.add(i8x16.shuffle(a0, a1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), i8x16.shuffle(a0, a1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
  const s23 = i32x4.add(i8x16.shuffle(a2, a3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), i8x16.shuffle(a2, a3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
  return i32x4.add(i8x16.shuffle(s01, s23, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27), i8x16.shuffle(s01, s23, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31));
}

// The 4 (8 bits) or 2 × 4 (4 bits) dot products of one row's 16 code bytes.
// @ts-ignore: decorator
@inline function rowDot4(v: v128, xe0: v128, xe1: v128, xo0: v128, xo1: v128): v128 {
  const lo = v128.and(v, i8x16.splat(0x0f)), hi = i8x16.shr_u(v, 4);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(lo), xe0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(lo), xe1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(hi), xo0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(hi), xo1)));
}
// @ts-ignore: decorator
@inline function rowDot8(v: v128, x0: v128, x1: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(v), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(v), x1));
}

// One quad (4 output rows) of one activation row over the whole of K; y at yp, `rows` of 4 valid.
function quadRow(yp: usize, xq: usize, xscale: usize, xsum: usize, bp: usize, K: i32, bits: i32, gs: i32, biasp: usize, rows: i32): void {
  let c = f32x4.splat(0);
  const chunks = (gs * bits) >> 7;
  for (let k0 = 0; k0 < K; k0 += gs) {
    let a0 = i32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    let cp = bp + 32;
    if (bits == 4) {
      for (let ch = 0; ch < chunks; ch++) {
        const xe0 = v128.load(xq), xe1 = v128.load(xq, 16), xo0 = v128.load(xq, 32), xo1 = v128.load(xq, 48);
        a0 = i32x4.add(a0, rowDot4(v128.load(cp), xe0, xe1, xo0, xo1));
        a1 = i32x4.add(a1, rowDot4(v128.load(cp, 16), xe0, xe1, xo0, xo1));
        a2 = i32x4.add(a2, rowDot4(v128.load(cp, 32), xe0, xe1, xo0, xo1));
        a3 = i32x4.add(a3, rowDot4(v128.load(cp, 48), xe0, xe1, xo0, xo1));
        xq += 64; cp += 64;
      }
    } else {
      for (let ch = 0; ch < chunks; ch++) {
        const x0 = v128.load(xq), x1 = v128.load(xq, 16);
        a0 = i32x4.add(a0, rowDot8(v128.load(cp), x0, x1));
        a1 = i32x4.add(a1, rowDot8(v128.load(cp, 16), x0, x1));
        a2 = i32x4.add(a2, rowDot8(v128.load(cp, 32), x0, x1));
        a3 = i32x4.add(a3, rowDot8(v128.load(cp, 48), x0, x1));
        xq += 32; cp += 64;
      }
    }
    const idot = f32x4.convert_i32x4_s(hsum4(a0, a1, a2, a3));
    const term = f32x4.add(f32x4.mul(f32x4.mul(v128.load(bp), v128.load32_splat(xscale)), idot), f32x4.mul(v128.load(bp, 16), v128.load32_splat(xsum)));
    c = f32x4.add(c, term);
    bp = cp; xscale += 4; xsum += 4;
  }
  if (rows == 4) {
    if (biasp != 0) c = f32x4.add(c, v128.load(biasp));
    v128.store(yp, c);
  } else {
    for (let r = 0; r < rows; r++) {
      let v = f32x4.extract_lane(c, 0);
      if (r == 1) v = f32x4.extract_lane(c, 1); else if (r == 2) v = f32x4.extract_lane(c, 2);
      if (biasp != 0) v += load<f32>(biasp + (<usize>r << 2));
      store<f32>(yp + (<usize>r << 2), v);
    }
  }
}

// Activation rows per block: the scratch holds one block's quantized rows, whatever M is.
export const QUANT_I16_ROW_BLOCK = 16;

// Quads [q0, q1) of y = x·W^T (+ bias). scratch, private to the calling thread, for R =
// min(M, QUANT_I16_ROW_BLOCK) rows: [R][K/gs] f32 group sums, [R][K/gs] f32 xscales (each rounded
// up to 16 bytes), [R][K] i16 quantized activations (quantI16ScratchBytes in
// src/kernels/wasm-exports.ts). bits: 8 or 4; gs: a multiple of 32.
export function linear_quant_i16(y: usize, x: usize, w: usize, bias: usize, M: i32, N: i32, K: i32, q0: i32, q1: i32, scratch: usize, bits: i32, gs: i32): void {
  const groups = K / gs;
  const vecBytes = (<usize>min(M, QUANT_I16_ROW_BLOCK) * <usize>groups * 4 + 15) & ~15;
  const sums = scratch, xscales = scratch + vecBytes, xq = scratch + 2 * vecBytes;
  const rowBytesX = <usize>K << 2, rowBytesY = <usize>N << 2, groupStride = <usize>groups << 2;
  const quadBytes = <usize>groups * groupBytesI16(bits, gs);
  for (let m0 = 0; m0 < M; m0 += QUANT_I16_ROW_BLOCK) {
    const rows = min(QUANT_I16_ROW_BLOCK, M - m0);
    for (let m = 0; m < rows; m++) {
      const xr = x + <usize>(m0 + m) * rowBytesX;
      groupSums(sums + <usize>m * groupStride, xr, K, gs);
      quantizeRow(xq + (<usize>m * <usize>K << 1), xscales + <usize>m * groupStride, xr, K, bits, gs);
    }
    for (let q = q0; q < q1; q++) {
      const outRows = min(4, N - q * 4);
      const biasp = bias != 0 ? bias + (<usize>q << 4) : 0;
      const bp = w + <usize>q * quadBytes;
      // the block's activation rows against this quad's weights while they are in L1
      for (let m = 0; m < rows; m++) {
        quadRow(y + <usize>(m0 + m) * rowBytesY + (<usize>q << 4), xq + (<usize>m * <usize>K << 1), xscales + <usize>m * groupStride, sums + <usize>m * groupStride, bp, K, bits, gs, biasp, outRows);
      }
    }
  }
}
