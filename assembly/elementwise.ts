// Row-wise and element-wise kernels. Pointers are byte addresses in linear memory; sizes are
// element counts. Each kernel runs a 4-lane body and a scalar tail that computes exactly what one
// lane of the body computes, so results do not depend on where a length falls against the width.
// `y` may alias the input element-for-element (every element is read before it is written).
import { exp4, expShifted, hsum, rowMax } from './simd';

// y[i] = a[i] + b[i].
export function add_f32(y: usize, a: usize, b: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(a + o) + load<f32>(b + o));
  }
}

// y[i] += alpha·x[i] (mul then add: two roundings).
export function axpy_f32(y: usize, alpha: f32, x: usize, n: i32): void {
  const av = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.add(v128.load(y + o), f32x4.mul(av, v128.load(x + o))));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, load<f32>(y + o) + alpha * load<f32>(x + o));
  }
}

// y[i] = alpha·x[i].
export function scale_f32(y: usize, alpha: f32, x: usize, n: i32): void {
  const av = f32x4.splat(alpha);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.mul(av, v128.load(x + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, alpha * load<f32>(x + o));
  }
}

// Both activations use e = exp(−|x|) ≤ 1, which never overflows:
//   sigmoid(x) = 1 / (1 + e) for x ≥ 0,  e / (1 + e) for x < 0
//   silu(x) = x · sigmoid(x) = x / (1 + e) for x ≥ 0,  x·e / (1 + e) for x < 0
// so large negative inputs keep their tiny, correctly signed results instead of 1/(1 + Inf) = 0.
// silu(−Inf) = −Inf·0 = NaN, like x·sigmoid(x) in PyTorch.
// @ts-ignore: decorator
@inline function sigmoid4(x: v128): v128 {
  const e = exp4(f32x4.neg(f32x4.abs(x)));
  const negative = f32x4.lt(x, f32x4.splat(0));
  return f32x4.div(v128.bitselect(e, f32x4.splat(1), negative), f32x4.add(f32x4.splat(1), e));
}
// @ts-ignore: decorator
@inline function silu4(x: v128): v128 {
  const e = exp4(f32x4.neg(f32x4.abs(x)));
  const negative = f32x4.lt(x, f32x4.splat(0));
  return f32x4.div(v128.bitselect(f32x4.mul(x, e), x, negative), f32x4.add(f32x4.splat(1), e));
}

export function sigmoid_f32(y: usize, x: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(y + o, sigmoid4(v128.load(x + o))); }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(y + o, f32x4.extract_lane(sigmoid4(f32x4.splat(load<f32>(x + o))), 0)); }
}

export function silu_f32(y: usize, x: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(y + o, silu4(v128.load(x + o))); }
  for (; i < n; i++) { const o = <usize>i << 2; store<f32>(y + o, f32x4.extract_lane(silu4(f32x4.splat(load<f32>(x + o))), 0)); }
}

// y[i] = silu(gate[i]) · up[i].
export function silu_mul_f32(y: usize, gate: usize, up: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.mul(silu4(v128.load(gate + o)), v128.load(up + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, f32x4.extract_lane(silu4(f32x4.splat(load<f32>(gate + o))), 0) * load<f32>(up + o));
  }
}

// RMSNorm over rows of x[rows, dim]: sum of squares in f32 (4 lanes, fixed order), then
// y = (x · 1/sqrt(mean + eps)) · weight. weight = 0 means no weight.
export function rmsnorm_f32(y: usize, x: usize, weight: usize, rows: i32, dim: i32, eps: f32): void {
  const rowBytes = <usize>dim << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes, yr = y + <usize>r * rowBytes;
    let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
    let i = 0;
    for (; i + 8 <= dim; i += 8) {
      const a = v128.load(xr + (<usize>i << 2)), b = v128.load(xr + (<usize>i << 2), 16);
      acc0 = f32x4.add(acc0, f32x4.mul(a, a));
      acc1 = f32x4.add(acc1, f32x4.mul(b, b));
    }
    for (; i + 4 <= dim; i += 4) { const a = v128.load(xr + (<usize>i << 2)); acc0 = f32x4.add(acc0, f32x4.mul(a, a)); }
    let ss = hsum(f32x4.add(acc0, acc1));
    for (; i < dim; i++) { const a = load<f32>(xr + (<usize>i << 2)); ss += a * a; }
    const inv: f32 = <f32>1 / Mathf.sqrt(ss / <f32>dim + eps);
    const iv = f32x4.splat(inv);
    i = 0;
    if (weight != 0) {
      for (; i + 4 <= dim; i += 4) {
        const o = <usize>i << 2;
        v128.store(yr + o, f32x4.mul(f32x4.mul(v128.load(xr + o), iv), v128.load(weight + o)));
      }
      for (; i < dim; i++) { const o = <usize>i << 2; store<f32>(yr + o, (load<f32>(xr + o) * inv) * load<f32>(weight + o)); }
    } else {
      for (; i + 4 <= dim; i += 4) { const o = <usize>i << 2; v128.store(yr + o, f32x4.mul(v128.load(xr + o), iv)); }
      for (; i < dim; i++) { const o = <usize>i << 2; store<f32>(yr + o, load<f32>(xr + o) * inv); }
    }
  }
}

// Rotary embedding in place on x[rows, rowStride]; cos/sin [maxPos, headDim/2]; positions[rows] (i32).
// interleaved = 0: pairs (i, i + headDim/2); 1: pairs (2i, 2i + 1).
//   a' = a·cos − b·sin, b' = b·cos + a·sin (each product rounded, then the sum: bit-equal to the twin).
export function rope_f32(x: usize, rows: i32, nHeads: i32, headDim: i32, rowStride: i32, cos: usize, sin: usize, positions: usize, interleaved: i32): void {
  const half = headDim >> 1;
  for (let r = 0; r < rows; r++) {
    const table = <usize>(load<i32>(positions + (<usize>r << 2)) * half) << 2;
    const cp = cos + table, sp = sin + table;
    for (let h = 0; h < nHeads; h++) {
      const o = x + (<usize>(r * rowStride + h * headDim) << 2);
      let i = 0;
      if (interleaved == 0) {
        const ob = o + (<usize>half << 2);
        for (; i + 4 <= half; i += 4) {
          const t = <usize>i << 2;
          const a = v128.load(o + t), b = v128.load(ob + t), c = v128.load(cp + t), s = v128.load(sp + t);
          v128.store(o + t, f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s)));
          v128.store(ob + t, f32x4.add(f32x4.mul(b, c), f32x4.mul(a, s)));
        }
        for (; i < half; i++) {
          const t = <usize>i << 2;
          const a = load<f32>(o + t), b = load<f32>(ob + t), c = load<f32>(cp + t), s = load<f32>(sp + t);
          store<f32>(o + t, a * c - b * s);
          store<f32>(ob + t, b * c + a * s);
        }
      } else {
        for (; i + 4 <= half; i += 4) {
          const p = o + (<usize>i << 3), t = <usize>i << 2;
          const lo = v128.load(p), hi = v128.load(p, 16);
          const a = v128.shuffle<f32>(lo, hi, 0, 2, 4, 6), b = v128.shuffle<f32>(lo, hi, 1, 3, 5, 7);
          const c = v128.load(cp + t), s = v128.load(sp + t);
          const na = f32x4.sub(f32x4.mul(a, c), f32x4.mul(b, s));
          const nb = f32x4.add(f32x4.mul(b, c), f32x4.mul(a, s));
          v128.store(p, v128.shuffle<f32>(na, nb, 0, 4, 1, 5));
          v128.store(p, v128.shuffle<f32>(na, nb, 2, 6, 3, 7), 16);
        }
        for (; i < half; i++) {
          const p = o + (<usize>i << 3), t = <usize>i << 2;
          const a = load<f32>(p), b = load<f32>(p, 4), c = load<f32>(cp + t), s = load<f32>(sp + t);
          store<f32>(p, a * c - b * s);
          store<f32>(p, b * c + a * s, 4);
        }
      }
    }
  }
}

// Row-wise softmax of x[rows, n]. A row whose max is −Inf (all −Inf, or only NaN/−Inf) gives zeros.
export function softmax_f32(y: usize, x: usize, rows: i32, n: i32): void {
  const rowBytes = <usize>n << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes, yr = y + <usize>r * rowBytes;
    const max = rowMax(xr, n);
    if (max == -Infinity) { memory.fill(yr, 0, rowBytes); continue; }
    const sv = f32x4.splat(expShifted(yr, xr, n, max));
    let i = 0;
    for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(yr + o, f32x4.div(v128.load(yr + o), sv)); }
    for (; i < n; i++) { const o = <usize>i << 2; store<f32>(yr + o, f32x4.extract_lane(f32x4.div(f32x4.splat(load<f32>(yr + o)), sv), 0)); }
  }
}

// Row-wise log-softmax: y = (x − max) − log Σ exp(x − max). A row whose max is −Inf gives −Inf.
// The exponentials go through y as scratch before y is overwritten, so y may alias x only if the
// caller accepts that x is consumed; this is the in-place case the contract allows.
export function log_softmax_f32(y: usize, x: usize, rows: i32, n: i32): void {
  const rowBytes = <usize>n << 2;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>r * rowBytes, yr = y + <usize>r * rowBytes;
    const max = rowMax(xr, n);
    if (max == -Infinity) {
      for (let i = 0; i < n; i++) store<f32>(yr + (<usize>i << 2), -Infinity);
      continue;
    }
    // Σ exp(x − max) without touching y (x and y may be the same buffer).
    const mv = f32x4.splat(max);
    let sv = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= n; i += 4) sv = f32x4.add(sv, exp4(f32x4.sub(v128.load(xr + (<usize>i << 2)), mv)));
    let sum = hsum(sv);
    for (; i < n; i++) sum += f32x4.extract_lane(exp4(f32x4.splat(load<f32>(xr + (<usize>i << 2)) - max)), 0);
    const logSum = Mathf.log(sum);
    const lv = f32x4.splat(logSum);
    i = 0;
    for (; i + 4 <= n; i += 4) { const o = <usize>i << 2; v128.store(yr + o, f32x4.sub(f32x4.sub(v128.load(xr + o), mv), lv)); }
    for (; i < n; i++) { const o = <usize>i << 2; store<f32>(yr + o, (load<f32>(xr + o) - max) - logSum); }
  }
}

// Index of the largest element; ties → lower index; −1 if n = 0 or any element is NaN.
export function argmax_f32(x: usize, n: i32): i32 {
  if (n <= 0) return -1;
  // Pass 1: the max, with NaN propagating (f32x4.max returns NaN if either lane is NaN).
  let mv = f32x4.splat(-Infinity);
  let i = 0;
  for (; i + 4 <= n; i += 4) mv = f32x4.max(mv, v128.load(x + (<usize>i << 2)));
  let max = f32x4.extract_lane(mv, 0);
  const m1 = f32x4.extract_lane(mv, 1), m2 = f32x4.extract_lane(mv, 2), m3 = f32x4.extract_lane(mv, 3);
  if (max != max || m1 != m1 || m2 != m2 || m3 != m3) return -1;
  if (m1 > max) max = m1;
  if (m2 > max) max = m2;
  if (m3 > max) max = m3;
  for (; i < n; i++) { const v = load<f32>(x + (<usize>i << 2)); if (v != v) return -1; if (v > max) max = v; }
  // Pass 2: the first index holding it (−0 == +0, matching the twin's strict > scan).
  const target = f32x4.splat(max);
  i = 0;
  for (; i + 4 <= n; i += 4) {
    const mask = i32x4.bitmask(f32x4.eq(v128.load(x + (<usize>i << 2)), target));
    if (mask != 0) return i + ctz(mask);
  }
  for (; i < n; i++) if (load<f32>(x + (<usize>i << 2)) == max) return i;
  return -1; // unreachable: the max is in x
}

// bf16 bits → f32: bits << 16 (exact).
export function bf16_to_f32(y: usize, x: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(x + (<usize>i << 1));
    const o = y + (<usize>i << 2);
    v128.store(o, i32x4.shl(i32x4.extend_low_i16x8_u(v), 16));
    v128.store(o, i32x4.shl(i32x4.extend_high_i16x8_u(v), 16), 16);
  }
  for (; i < n; i++) store<u32>(y + (<usize>i << 2), <u32>load<u16>(x + (<usize>i << 1)) << 16);
}

// IEEE half bits (in the low 16 bits of each i32 lane) → f32, exact. Magnitude bits shifted into
// an f32 and multiplied by 2^112 rebias the exponent and normalise subnormals exactly; exponent 31
// (Inf/NaN) maps to f32 exponent 255 with the mantissa kept.
// @ts-ignore: decorator
@inline export function halfToFloat4(h: v128): v128 {
  const sign = i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16);
  const em = v128.and(h, i32x4.splat(0x7fff));
  const shifted = i32x4.shl(em, 13);
  const finite = f32x4.mul(shifted, f32x4.splat(5.192296858534828e33)); // 2^112
  const special = v128.or(shifted, i32x4.splat(0x7f800000));
  const isSpecial = i32x4.ge_s(em, i32x4.splat(0x7c00));
  return v128.or(v128.bitselect(special, finite, isSpecial), sign);
}

export function f16_to_f32(y: usize, x: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(x + (<usize>i << 1));
    const o = y + (<usize>i << 2);
    v128.store(o, halfToFloat4(i32x4.extend_low_i16x8_u(v)));
    v128.store(o, halfToFloat4(i32x4.extend_high_i16x8_u(v)), 16);
  }
  for (; i < n; i++) {
    const h = i32x4.splat(<i32>load<u16>(x + (<usize>i << 1)));
    store<f32>(y + (<usize>i << 2), f32x4.extract_lane(halfToFloat4(h), 0));
  }
}

// f32 → bf16 bits, round to nearest even; NaN stays a (quiet) NaN with its sign. The twin is
// f32ToBf16Bits (src/kernels/scalar.ts), bit for bit. Writes of a narrow KV cache.
export function f32_to_bf16(y: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const bits = load<u32>(x + (<usize>i << 2));
    const h: u32 = (bits & 0x7fffffff) > 0x7f800000 ? (bits >>> 16) | 0x40 : (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
    store<u16>(y + (<usize>i << 1), <u16>h);
  }
}

// f32 → IEEE half bits, round to nearest even: subnormal halves kept (rounded once, from the exact
// value), magnitudes from 65520 up to ±Inf, NaN a quiet NaN. The twin is f32ToF16Bits, bit for bit.
export function f32_to_f16(y: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const bits = load<u32>(x + (<usize>i << 2));
    const sign = (bits >>> 16) & 0x8000;
    const exp = <i32>((bits >>> 23) & 0xff);
    let mant = bits & 0x7fffff;
    let h: u32;
    if (exp == 0xff) h = sign | 0x7c00 | (mant != 0 ? 0x200 : 0);
    else {
      const e = exp - 127 + 15;
      if (e >= 0x1f) h = sign | 0x7c00;
      else if (e <= 0) {
        if (e < -10) h = sign;
        else {
          mant |= 0x800000;
          const shift = <u32>(14 - e);
          let half = mant >>> shift;
          const rest = mant & ((<u32>1 << shift) - 1), halfway = <u32>1 << (shift - 1);
          if (rest > halfway || (rest == halfway && (half & 1) != 0)) half++;
          h = sign | half;
        }
      } else {
        let half = (<u32>e << 10) | (mant >>> 13);
        const rest = mant & 0x1fff;
        if (rest > 0x1000 || (rest == 0x1000 && (half & 1) != 0)) half++;
        h = sign | half; // a carry into the exponent is the correct rounding (up to Inf)
      }
    }
    store<u16>(y + (<usize>i << 1), <u16>h);
  }
}
