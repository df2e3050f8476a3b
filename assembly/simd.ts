// Shared SIMD building blocks: the multiply-add used by every dot product, the vector exp, and
// lane-wise partial loads/stores for the ragged edge of a 16-column panel.

// c + a·b. The plain build rounds twice (mul, then add); the relaxed build uses relaxed_madd,
// which may fuse (one rounding), so the two builds are not bit-identical (spec/numerics.md).
// @ts-ignore: decorator
@inline export function fma(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

// Sum of the 4 lanes of v, in the fixed order (v0 + v1) + (v2 + v3).
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

// exp(x) for 4 lanes, Cephes expf scheme: n = round(x·log2 e), r = x − n·ln2 (ln2 split in two so
// n·C1 is exact), exp(r) by a degree-6 polynomial on |r| ≤ ln2/2, then scale by 2^n. The scale is
// applied as two factors 2^(n>>1)·2^(n−(n>>1)) so results down to the subnormal range round once.
// Relative error about 1e-7 (≤ 2 ulp) on normal results. exp(−Inf) = 0, exp(+Inf) = +Inf,
// exp(NaN) = NaN, x < ln(2^-150) gives exactly 0, x > ln(FLT_MAX) gives +Inf.
const EXP_LO: f32 = -103.97208;   // ln(2^-150): below this the result rounds to 0
const EXP_HI: f32 = 88.72284;     // just above ln(FLT_MAX): the result overflows to +Inf
const LOG2E: f32 = 1.44269504088896341;
const LN2_HI: f32 = 0.693359375;  // 9 significant bits: n·LN2_HI is exact for |n| ≤ 150
const LN2_LO: f32 = -2.12194440e-4;

// 1.5·2^23: adding it rounds an f32 of magnitude < 2^22 to an integer (to nearest, ties to even,
// as f32x4.nearest does), which then sits in the low mantissa bits.
const ROUND_MAGIC: f32 = 12582912.0;
const ROUND_MAGIC_BITS: i32 = 0x4b400000;
const CANONICAL_NAN_BITS: i32 = 0xffc00000;

// @ts-ignore: decorator
@inline export function exp4(x: v128): v128 {
  // Clamped with pmin/pmax in the operand order that passes NaN through (pmin(a, b) = b < a ? b : a):
  // the same values as min/max here, in one instruction each on x64 where V8 spends about seven
  // on min/max's NaN and ±0 rules.
  const xc = f32x4.pmax(f32x4.pmin(x, f32x4.splat(EXP_HI)), f32x4.splat(EXP_LO)); // NaN stays NaN
  // n = round-to-nearest-even(xc·log2 e) and its integer ni, both from one add of ROUND_MAGIC
  // (|xc·log2 e| ≤ 150): the same n as f32x4.nearest, and ni exact without a saturating convert
  // (NaN gives a meaningless ni, harmless: p is NaN already).
  const t = f32x4.add(f32x4.mul(xc, f32x4.splat(LOG2E)), f32x4.splat(ROUND_MAGIC));
  const n = f32x4.sub(t, f32x4.splat(ROUND_MAGIC));
  let r = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(LN2_LO)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), r), f32x4.splat(1.0));
  const ni = i32x4.sub(t, i32x4.splat(ROUND_MAGIC_BITS));
  const n1 = i32x4.shr_s(ni, 1);
  const n2 = i32x4.sub(ni, n1);
  const s1 = i32x4.shl(i32x4.add(n1, i32x4.splat(127)), 23);
  const s2 = i32x4.shl(i32x4.add(n2, i32x4.splat(127)), 23);
  const y = v128.andnot(f32x4.mul(f32x4.mul(p, s1), s2), f32x4.lt(x, f32x4.splat(EXP_LO)));
  // A NaN lane leaves as the one NaN V8's f32x4.min/max made of every NaN (0xffc00000): a NaN that
  // kept its own sign and payload made sums of mixed NaNs depend on the order a compiler gave the
  // operands of one add, which Liftoff and TurboFan do not always give alike.
  return v128.bitselect(i32x4.splat(CANONICAL_NAN_BITS), y, f32x4.ne(x, x));
}

// Scalar exp with the same arithmetic as exp4 (lane 0), so tails match the vector body bit-for-bit.
// @ts-ignore: decorator
@inline export function exp1(x: f32): f32 {
  return f32x4.extract_lane(exp4(f32x4.splat(x)), 0);
}

// Loads `count` (0..4) f32 lanes from p, zero-filling the rest; never touches memory past p + 4·count.
// @ts-ignore: decorator
@inline export function loadPartial(p: usize, count: i32): v128 {
  if (count >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  if (count > 0) v = v128.load32_lane(p, v, 0);
  if (count > 1) v = v128.load32_lane(p, v, 1, 4);
  if (count > 2) v = v128.load32_lane(p, v, 2, 8);
  return v;
}

// Stores the first `count` (0..4) lanes of v at p.
// @ts-ignore: decorator
@inline export function storePartial(p: usize, v: v128, count: i32): void {
  if (count >= 4) { v128.store(p, v); return; }
  if (count > 0) v128.store32_lane(p, v, 0);
  if (count > 1) v128.store32_lane(p, v, 1, 4);
  if (count > 2) v128.store32_lane(p, v, 2, 8);
}

// Lanes of a 16-wide tile column group q (0..3) that fall inside `cols` valid columns.
// @ts-ignore: decorator
@inline export function lanesIn(cols: i32, q: i32): i32 {
  const n = cols - 4 * q;
  return n < 0 ? 0 : n > 4 ? 4 : n;
}

// Max of x[0..n) ignoring NaN (pmax keeps the running value); −Inf for n = 0.
// @ts-ignore: decorator
@inline export function rowMax(x: usize, n: i32): f32 {
  let mv = f32x4.splat(-Infinity);
  let i = 0;
  for (; i + 4 <= n; i += 4) mv = f32x4.pmax(mv, v128.load(x + (<usize>i << 2)));
  let max = f32x4.extract_lane(mv, 0);
  const m1 = f32x4.extract_lane(mv, 1), m2 = f32x4.extract_lane(mv, 2), m3 = f32x4.extract_lane(mv, 3);
  if (m1 > max) max = m1;
  if (m2 > max) max = m2;
  if (m3 > max) max = m3;
  for (; i < n; i++) { const v = load<f32>(x + (<usize>i << 2)); if (v > max) max = v; }
  return max;
}

// Writes e_i = exp(x_i − max) to y (y may be x) and returns Σ e_i (f32, 4 lanes then the tail).
// @ts-ignore: decorator
@inline export function expShifted(y: usize, x: usize, n: i32, max: f32): f32 {
  const mv = f32x4.splat(max);
  let sv = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const e = exp4(f32x4.sub(v128.load(x + o), mv));
    v128.store(y + o, e);
    sv = f32x4.add(sv, e);
  }
  let sum = hsum(sv);
  for (; i < n; i++) {
    const o = <usize>i << 2;
    const e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(x + o) - max)), 0);
    store<f32>(y + o, e);
    sum += e;
  }
  return sum;
}
