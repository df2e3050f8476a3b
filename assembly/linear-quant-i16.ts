// The opt-in integer-dot modes of quantized Linear (spec/quantization.md, "int16 activations" and
// "int8 activations"; below for int16, int8 the same with 127 in place of 32767):
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
// byte b holding k = 2b (low nibble) and 2b + 1 (high nibble). Read as eight u16 lanes, lane i holds
// 8 bits: k = 2i (low byte) and 2i + 1 (high byte); 4 bits: k = 4i, 4i+1, 4i+2, 4i+3 (bits 0, 4, 8,
// 12). So each field is one shift and/or one and within i16 lanes, already 16 bits wide for the dot
// (no byte shifts, which x86 lacks, and no widening). The quantized activations are laid out to
// match, once per activation row: 8 bits, per chunk of 16 k the 8 even k then the 8 odd k; 4 bits,
// per chunk of 32 k four vectors, vector j holding k = 4i + j (i = 0..7).
//
// int8 activations at 4 bits in the relaxed build (quadRowI8): the activations in bytes, per chunk
// of 32 k the 16 even k then the 16 odd k, against the low and high nibbles of the row's 16 bytes with
// i16x8.relaxed_dot_i8x16_i7x16_s (x86: pmaddubsw, 16 products pairwise summed per instruction). The
// codes (0..15) are its 7-bit operand, so every engine computes it exactly; the i16 lanes sum at most
// 4·gs/32 products of |code·xq| ≤ 15·127 (≤ 30480 for gs ≤ 128: no overflow, no saturation), then
// widen to i32 once per group. The integer dot is the same number as the int16 kernel's on the same
// xq, so this path equals the plain build's int8 results (and the twin) bit for bit.
//
// Ops per 32 weights of one row (decode, M = 1), the activation loads shared by the quad's 4 rows:
//   4 bits: 1 load, 3 ands, 3 shifts (the fields), 4 dots, 4 adds                       = 15
//   8 bits: 2 loads, 2 ands, 2 shifts, 4 dots, 4 adds                                   = 14
//   4 bits, int8 (relaxed): 1 load, 3 field ops (and, shift, and), 2 dots, 2 adds            = 8
// then per group and quad a transpose-add of the 4 rows' i32x4 sums (6 shuffles, 3 adds) and the f32
// epilogue. The exact mode (assembly/linear-quant.ts) spends ~19 ops per 16 weights.
import { groupSums } from './linear-quant';

// The largest quantized activation: xbits 16 → 32767, 8 → 127.
// @ts-ignore: decorator
@inline function xmaxOf(xbits: i32): f32 {
  return xbits == 8 ? 127 : 32767;
}

// @ts-ignore: decorator
@inline function groupBytesI16(bits: i32, gs: i32): usize {
  return 32 + ((<usize>gs * <usize>bits) >> 1);
}

// Quantizes one activation row: xq [K] i16 in the layout above (bytes: quadRowI8's layout), xscale [K/gs] f32.
function quantizeRow(xq: usize, xscale: usize, x: usize, K: i32, bits: i32, gs: i32, xmax: f32, bytes: bool): void {
  for (let k0 = 0; k0 < K; k0 += gs) {
    let m4 = f32x4.splat(0);
    for (let k = 0; k < gs; k += 4) m4 = f32x4.max(m4, f32x4.abs(v128.load(x + (<usize>(k0 + k) << 2))));
    const amax = max(max(f32x4.extract_lane(m4, 0), f32x4.extract_lane(m4, 1)), max(f32x4.extract_lane(m4, 2), f32x4.extract_lane(m4, 3)));
    const inv: f32 = amax == 0 ? 0 : xmax / amax; // +Inf: 0 (and xscale +Inf); NaN: NaN (xq 0, xscale NaN)
    store<f32>(xscale, amax / xmax);
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
      if (bytes) {
        // k0+k .. +15 = half h of a 32-k chunk: its 8 even k go to bytes 8h.. of the even vector, its
        // 8 odd k to bytes 8h.. of the odd one (|xq| ≤ 127, so the narrowing is exact)
        const b = i8x16.narrow_i16x8_s(n0, n1);
        const half: usize = (k & 16) != 0 ? 8 : 0;
        v128.store64_lane(xq + half, i8x16.shuffle(b, b, 0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10, 12, 14), 0);
        v128.store64_lane(xq + half, i8x16.shuffle(b, b, 1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15), 0, 16);
        if (half != 0) xq += 32;
      } else if (bits == 8) {
        // k0+k .. +15 = one chunk: the 8 even k, then the 8 odd k
        v128.store(xq, i8x16.shuffle(n0, n1, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29));
        v128.store(xq, i8x16.shuffle(n0, n1, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31), 16);
        xq += 32;
      } else {
        // k0+k .. +15 = half h of a 32-k chunk: its k = 16h + 4i' + j (i' < 4) go to lanes 4h + i'
        // of vector j, 8 bytes each
        const half: usize = (k & 16) != 0 ? 8 : 0;
        v128.store64_lane(xq + half, i8x16.shuffle(n0, n1, 0, 1, 8, 9, 16, 17, 24, 25, 0, 1, 8, 9, 16, 17, 24, 25), 0);
        v128.store64_lane(xq + half, i8x16.shuffle(n0, n1, 2, 3, 10, 11, 18, 19, 26, 27, 2, 3, 10, 11, 18, 19, 26, 27), 0, 16);
        v128.store64_lane(xq + half, i8x16.shuffle(n0, n1, 4, 5, 12, 13, 20, 21, 28, 29, 4, 5, 12, 13, 20, 21, 28, 29), 0, 32);
        v128.store64_lane(xq + half, i8x16.shuffle(n0, n1, 6, 7, 14, 15, 22, 23, 30, 31, 6, 7, 14, 15, 22, 23, 30, 31), 0, 48);
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

// Σ code·x over one row's 32 codes (4 bits): the four nibble fields of each u16 lane against the
// activation vectors x0..x3 (vector j: k ≡ j mod 4), as 4 i32 lanes (exact).
// @ts-ignore: decorator
@inline function rowDot4(v: v128, x0: v128, x1: v128, x2: v128, x3: v128, m15: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.and(v, m15), x0), i32x4.dot_i16x8_s(v128.and(i16x8.shr_u(v, 4), m15), x1)),
    i32x4.add(i32x4.dot_i16x8_s(v128.and(i16x8.shr_u(v, 8), m15), x2), i32x4.dot_i16x8_s(i16x8.shr_u(v, 12), x3)));
}
// The same over 16 codes (8 bits): the low and high byte of each u16 lane against the even and odd k.
// @ts-ignore: decorator
@inline function rowDot8(v: v128, xe: v128, xo: v128, m255: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(v128.and(v, m255), xe), i32x4.dot_i16x8_s(i16x8.shr_u(v, 8), xo));
}

// One quad (4 output rows) of one activation row over the whole of K; y at yp, `rows` of 4 valid.
function quadRow(yp: usize, xq: usize, xscale: usize, xsum: usize, bp: usize, K: i32, bits: i32, gs: i32, biasp: usize, rows: i32): void {
  let c = f32x4.splat(0);
  const chunks = (gs * bits) >> 7;
  for (let k0 = 0; k0 < K; k0 += gs) {
    let a0 = i32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    let cp = bp + 32;
    if (bits == 4) {
      const m15 = i16x8.splat(0xf);
      let ch = 0;
      for (; ch < chunks; ch++) {
        const x0 = v128.load(xq), x1 = v128.load(xq, 16), x2 = v128.load(xq, 32), x3 = v128.load(xq, 48);
        a0 = i32x4.add(a0, rowDot4(v128.load(cp), x0, x1, x2, x3, m15));
        a1 = i32x4.add(a1, rowDot4(v128.load(cp, 16), x0, x1, x2, x3, m15));
        a2 = i32x4.add(a2, rowDot4(v128.load(cp, 32), x0, x1, x2, x3, m15));
        a3 = i32x4.add(a3, rowDot4(v128.load(cp, 48), x0, x1, x2, x3, m15));
        xq += 64; cp += 64;
      }
    } else {
      const m255 = i16x8.splat(0xff);
      for (let ch = 0; ch < chunks; ch++) {
        const xe = v128.load(xq), xo = v128.load(xq, 16);
        a0 = i32x4.add(a0, rowDot8(v128.load(cp), xe, xo, m255));
        a1 = i32x4.add(a1, rowDot8(v128.load(cp, 16), xe, xo, m255));
        a2 = i32x4.add(a2, rowDot8(v128.load(cp, 32), xe, xo, m255));
        a3 = i32x4.add(a3, rowDot8(v128.load(cp, 48), xe, xo, m255));
        xq += 32; cp += 64;
      }
    }
    c = groupTerm(c, hsum4(a0, a1, a2, a3), bp, xscale, xsum);
    bp = cp; xscale += 4; xsum += 4;
  }
  storeQuad(yp, c, biasp, rows);
}

// The same at 4 bits with int8 activations in bytes (relaxed build only; see the header). Its own
// function, not a third branch of quadRow: folded in, the byte dot ran ~4 % slower (medians 0.0305
// against 0.0292 ns per weight over 4 alternating runs each, 5632 × 2048, 1 thread, Zen 5).
function quadRowI8(yp: usize, xq: usize, xscale: usize, xsum: usize, bp: usize, K: i32, gs: i32, biasp: usize, rows: i32): void {
  let c = f32x4.splat(0);
  const chunks = gs >> 5;
  const m15 = i8x16.splat(0xf);
  for (let k0 = 0; k0 < K; k0 += gs) {
    let a0 = i16x8.splat(0), a1 = a0, a2 = a0, a3 = a0;
    let cp = bp + 32;
    if (chunks == 2) {
      // group size 64 (MLX's default) straight through: without the loop's compare, branch and
      // interrupt check (and the mask V8 re-materialized inside it) the kernel ran ~7 % faster
      let xe = v128.load(xq), xo = v128.load(xq, 16);
      a0 = rowDotBytes(v128.load(cp), xe, xo, m15);
      a1 = rowDotBytes(v128.load(cp, 16), xe, xo, m15);
      a2 = rowDotBytes(v128.load(cp, 32), xe, xo, m15);
      a3 = rowDotBytes(v128.load(cp, 48), xe, xo, m15);
      xe = v128.load(xq, 32); xo = v128.load(xq, 48);
      a0 = i16x8.add(a0, rowDotBytes(v128.load(cp, 64), xe, xo, m15));
      a1 = i16x8.add(a1, rowDotBytes(v128.load(cp, 80), xe, xo, m15));
      a2 = i16x8.add(a2, rowDotBytes(v128.load(cp, 96), xe, xo, m15));
      a3 = i16x8.add(a3, rowDotBytes(v128.load(cp, 112), xe, xo, m15));
      xq += 64; cp += 128;
    } else for (let ch = 0; ch < chunks; ch++) {
      const xe = v128.load(xq), xo = v128.load(xq, 16);
      a0 = i16x8.add(a0, rowDotBytes(v128.load(cp), xe, xo, m15));
      a1 = i16x8.add(a1, rowDotBytes(v128.load(cp, 16), xe, xo, m15));
      a2 = i16x8.add(a2, rowDotBytes(v128.load(cp, 32), xe, xo, m15));
      a3 = i16x8.add(a3, rowDotBytes(v128.load(cp, 48), xe, xo, m15));
      xq += 32; cp += 64;
    }
    // the i16 lanes widened pairwise (V8: one pmaddwd against a constant it keeps in memory, where
    // i32x4.dot_i16x8_s with a splat of 1 re-built the splat every group)
    c = groupTerm(c, hsum4(i32x4.extadd_pairwise_i16x8_s(a0), i32x4.extadd_pairwise_i16x8_s(a1), i32x4.extadd_pairwise_i16x8_s(a2), i32x4.extadd_pairwise_i16x8_s(a3)), bp, xscale, xsum);
    bp = cp; xscale += 4; xsum += 4;
  }
  storeQuad(yp, c, biasp, rows);
}

// Σ code·xq of one row's 32 codes (4 bits) against the even-k and odd-k activation bytes, as 8 i16
// lanes (4 products each, exact). The relaxed dot's second operand is the 7-bit one: the codes.
// @ts-ignore: decorator
@inline function rowDotBytes(v: v128, xe: v128, xo: v128, m15: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xe, v128.and(v, m15)), i16x8.relaxed_dot_i8x16_i7x16_s(xo, v128.and(i16x8.shr_u(v, 4), m15)));
  }
  return unreachable();
}

// c + ((scale·xscale)·f32(idot) + bias·xsum) for the quad's 4 rows of one group (scales at gp).
// @ts-ignore: decorator
@inline function groupTerm(c: v128, idot: v128, gp: usize, xscale: usize, xsum: usize): v128 {
  return f32x4.add(c, f32x4.add(f32x4.mul(f32x4.mul(v128.load(gp), v128.load32_splat(xscale)), f32x4.convert_i32x4_s(idot)), f32x4.mul(v128.load(gp, 16), v128.load32_splat(xsum))));
}

// y[0, rows) = c (+ bias).
function storeQuad(yp: usize, c: v128, biasp: usize, rows: i32): void {
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

// Σ code·xq of one chunk of 32 codes (4 bits, their four fields f0..f3) or 16 codes (8 bits, the low
// and high bytes) against the activation row at x, as 4 exact i32 lanes.
// @ts-ignore: decorator
@inline function nibbleDots(f0: v128, f1: v128, f2: v128, f3: v128, x: usize): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(f0, v128.load(x)), i32x4.dot_i16x8_s(f1, v128.load(x, 16))),
    i32x4.add(i32x4.dot_i16x8_s(f2, v128.load(x, 32)), i32x4.dot_i16x8_s(f3, v128.load(x, 48))));
}
// @ts-ignore: decorator
@inline function byteDots(lo: v128, hi: v128, x: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(lo, v128.load(x)), i32x4.dot_i16x8_s(hi, v128.load(x, 16)));
}

// Prefill, 4 bits: Σ code·xq over one group of one weight row (its chunks at cp, 64 bytes apart)
// against two activation rows (xq and xq + xqStride), each field extracted once for both: returns
// the first row's i32x4 sums and stores the second's at `second`. Per 32 weights and activation
// row: half a load, 3 field ops, 4 dots, 4 adds.
// @ts-ignore: decorator
@inline function rowGroupPair4(cp: usize, xq: usize, xqStride: usize, chunks: i32, second: usize): v128 {
  let a = i32x4.splat(0), b = a;
  const m15 = i16x8.splat(0xf);
  for (let ch = 0; ch < chunks; ch++) {
    const v = v128.load(cp);
    const f0 = v128.and(v, m15), f1 = v128.and(i16x8.shr_u(v, 4), m15), f2 = v128.and(i16x8.shr_u(v, 8), m15), f3 = i16x8.shr_u(v, 12);
    a = i32x4.add(a, nibbleDots(f0, f1, f2, f3, xq));
    b = i32x4.add(b, nibbleDots(f0, f1, f2, f3, xq + xqStride));
    cp += 64; xq += 64;
  }
  v128.store(second, b);
  return a;
}

// 4 bits: one quad of two activation rows (the second's xq, xscale and xsum one stride after the
// first's) over the whole of K; y at yp and yp + rowBytesY. pair: 64 bytes of scratch.
function quadRowPair4(yp: usize, rowBytesY: usize, xq: usize, xqStride: usize, xscale: usize, xsum: usize, vecStride: usize, bp: usize, K: i32, gs: i32, biasp: usize, rows: i32, pair: usize): void {
  let c0 = f32x4.splat(0), c1 = c0;
  const chunks = gs >> 5, gbytes = groupBytesI16(4, gs), xqGroup = <usize>gs << 1;
  for (let k0 = 0; k0 < K; k0 += gs) {
    const cp = bp + 32;
    const a0 = rowGroupPair4(cp, xq, xqStride, chunks, pair);
    const a1 = rowGroupPair4(cp + 16, xq, xqStride, chunks, pair + 16);
    const a2 = rowGroupPair4(cp + 32, xq, xqStride, chunks, pair + 32);
    const a3 = rowGroupPair4(cp + 48, xq, xqStride, chunks, pair + 48);
    c0 = groupTerm(c0, hsum4(a0, a1, a2, a3), bp, xscale, xsum);
    c1 = groupTerm(c1, hsum4(v128.load(pair), v128.load(pair, 16), v128.load(pair, 32), v128.load(pair, 48)), bp, xscale + vecStride, xsum + vecStride);
    bp += gbytes; xq += xqGroup; xscale += 4; xsum += 4;
  }
  storeQuad(yp, c0, biasp, rows);
  storeQuad(yp + rowBytesY, c1, biasp, rows);
}

// 8 bits: the same against four activation rows (xq + j·xqStride): returns row 0's sums and stores
// row j's at second + 64·(j − 1). Per 32 weights and activation row: half a load, 1 field op, 4 dots,
// 4 adds. (At 4 bits, four fields against four rows spill registers: 1 thread, Ouro MLP shapes,
// M = 64, ~42 GFLOP/s against ~50 in pairs.)
// @ts-ignore: decorator
@inline function rowGroupFour8(cp: usize, xq: usize, xqStride: usize, chunks: i32, second: usize): v128 {
  let a = i32x4.splat(0), b = a, c = a, d = a;
  const m255 = i16x8.splat(0xff);
  for (let ch = 0; ch < chunks; ch++) {
    const v = v128.load(cp);
    const lo = v128.and(v, m255), hi = i16x8.shr_u(v, 8);
    a = i32x4.add(a, byteDots(lo, hi, xq));
    b = i32x4.add(b, byteDots(lo, hi, xq + xqStride));
    c = i32x4.add(c, byteDots(lo, hi, xq + 2 * xqStride));
    d = i32x4.add(d, byteDots(lo, hi, xq + 3 * xqStride));
    cp += 64; xq += 32;
  }
  v128.store(second, b);
  v128.store(second, c, 64);
  v128.store(second, d, 128);
  return a;
}

// 8 bits: one quad of four activation rows (row j's xq, xscale and xsum j strides after row 0's) over
// the whole of K; y at yp + j·rowBytesY. four: 192 bytes of scratch.
function quadRowFour8(yp: usize, rowBytesY: usize, xq: usize, xqStride: usize, xscale: usize, xsum: usize, vecStride: usize, bp: usize, K: i32, gs: i32, biasp: usize, rows: i32, four: usize): void {
  let c0 = f32x4.splat(0), c1 = c0, c2 = c0, c3 = c0;
  const chunks = gs >> 4, gbytes = groupBytesI16(8, gs), xqGroup = <usize>gs << 1;
  for (let k0 = 0; k0 < K; k0 += gs) {
    const cp = bp + 32;
    const a0 = rowGroupFour8(cp, xq, xqStride, chunks, four);
    const a1 = rowGroupFour8(cp + 16, xq, xqStride, chunks, four + 16);
    const a2 = rowGroupFour8(cp + 32, xq, xqStride, chunks, four + 32);
    const a3 = rowGroupFour8(cp + 48, xq, xqStride, chunks, four + 48);
    c0 = groupTerm(c0, hsum4(a0, a1, a2, a3), bp, xscale, xsum);
    c1 = groupTerm(c1, hsum4(v128.load(four), v128.load(four, 16), v128.load(four, 32), v128.load(four, 48)), bp, xscale + vecStride, xsum + vecStride);
    c2 = groupTerm(c2, hsum4(v128.load(four, 64), v128.load(four, 80), v128.load(four, 96), v128.load(four, 112)), bp, xscale + 2 * vecStride, xsum + 2 * vecStride);
    c3 = groupTerm(c3, hsum4(v128.load(four, 128), v128.load(four, 144), v128.load(four, 160), v128.load(four, 176)), bp, xscale + 3 * vecStride, xsum + 3 * vecStride);
    bp += gbytes; xq += xqGroup; xscale += 4; xsum += 4;
  }
  storeQuad(yp, c0, biasp, rows);
  storeQuad(yp + rowBytesY, c1, biasp, rows);
  storeQuad(yp + 2 * rowBytesY, c2, biasp, rows);
  storeQuad(yp + 3 * rowBytesY, c3, biasp, rows);
}

// Activation rows per block: the scratch holds one block's quantized rows, whatever M is.
export const QUANT_I16_ROW_BLOCK = 16;

// Quads [q0, q1) of y = x·W^T (+ bias). scratch, private to the calling thread, for R =
// min(M, QUANT_I16_ROW_BLOCK) rows: [R][K/gs] f32 group sums, [R][K/gs] f32 xscales (each rounded
// up to 16 bytes), [R][K] i16 quantized activations (rounded up to 16 bytes), 192 bytes for
// quadRowFour8 and quadRowPair4 (quantI16ScratchBytes in src/kernels/wasm-exports.ts). bits: 8 or 4; gs: a multiple of 32
// (at most 128 with xbits 8); xbits: 16 or 8, the activations' integer width.
export function linear_quant_i16(y: usize, x: usize, w: usize, bias: usize, M: i32, N: i32, K: i32, q0: i32, q1: i32, scratch: usize, bits: i32, gs: i32, xbits: i32): void {
  const groups = K / gs;
  const vecBytes = (<usize>min(M, QUANT_I16_ROW_BLOCK) * <usize>groups * 4 + 15) & ~15;
  const sums = scratch, xscales = scratch + vecBytes, xq = scratch + 2 * vecBytes;
  const pair = xq + ((<usize>min(M, QUANT_I16_ROW_BLOCK) * <usize>K << 1) + 15 & ~15);
  const rowBytesX = <usize>K << 2, rowBytesY = <usize>N << 2, groupStride = <usize>groups << 2;
  const quadBytes = <usize>groups * groupBytesI16(bits, gs);
  const xmax = xmaxOf(xbits);
  // int8 activations at 4 bits run the byte dot where the build has it; elsewhere the int16 kernels
  // take the same xq (|xq| ≤ 127) and give the same integer dots
  const bytes = ASC_FEATURE_RELAXED_SIMD && xbits == 8 && bits == 4;
  for (let m0 = 0; m0 < M; m0 += QUANT_I16_ROW_BLOCK) {
    const rows = min(QUANT_I16_ROW_BLOCK, M - m0);
    for (let m = 0; m < rows; m++) {
      const xr = x + <usize>(m0 + m) * rowBytesX;
      groupSums(sums + <usize>m * groupStride, xr, K, gs);
      quantizeRow(xq + (<usize>m * <usize>K << 1), xscales + <usize>m * groupStride, xr, K, bits, gs, xmax, bytes);
    }
    for (let q = q0; q < q1; q++) {
      const outRows = min(4, N - q * 4);
      const biasp = bias != 0 ? bias + (<usize>q << 4) : 0;
      const bp = w + <usize>q * quadBytes;
      // the block's activation rows against this quad's weights while they are in L1: four
      // activation rows per pass at 8 bits, two at 4 bits (see rowGroupFour8), the rest one by one;
      // the byte dot one by one
      let m = 0;
      if (!bytes) {
        const step = bits == 8 ? 4 : 2;
        for (; m + step <= rows; m += step) {
          const ym = y + <usize>(m0 + m) * rowBytesY + (<usize>q << 4), xqm = xq + (<usize>m * <usize>K << 1), off = <usize>m * groupStride;
          if (bits == 8) quadRowFour8(ym, rowBytesY, xqm, <usize>K << 1, xscales + off, sums + off, groupStride, bp, K, gs, biasp, outRows, pair);
          else quadRowPair4(ym, rowBytesY, xqm, <usize>K << 1, xscales + off, sums + off, groupStride, bp, K, gs, biasp, outRows, pair);
        }
      }
      for (; m < rows; m++) {
        const ym = y + <usize>(m0 + m) * rowBytesY + (<usize>q << 4), xqm = xq + (<usize>m * <usize>K << 1), off = <usize>m * groupStride;
        if (bytes) quadRowI8(ym, xqm, xscales + off, sums + off, bp, K, gs, biasp, outRows);
        else quadRow(ym, xqm, xscales + off, sums + off, bp, K, bits, gs, biasp, outRows);
      }
    }
  }
}
