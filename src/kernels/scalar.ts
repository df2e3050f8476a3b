/**
 * Plain TypeScript twins of every WASM kernel: the executable reference the SIMD kernels are
 * property-tested against. Written for clarity, not speed; reductions accumulate in f64 and round
 * once, so they are at least as accurate as the f32 SIMD kernels.
 */
import type { Kernels, LinearSource, LinearWeight, RopeLayout } from './kernels.js';
import { checkQuantizedSource, codeAt, fieldFactor, fieldScale, isQuantized, quantBits } from './quant.js';

interface ScalarLinearWeight extends LinearWeight {
  readonly w: Float32Array; // [N, K] row-major, widened (or, for quantized weights, the codes · fieldFactor) to f32
  readonly scales?: Float32Array; // quantized: [N, K / groupSize]
  readonly biases?: Float32Array; // quantized: [N, K / groupSize]
}

export function bf16BitsToF32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // ±0 and subnormals
  if (exp === 31) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const toBitsF32 = new Float32Array(1), toBitsU32 = new Uint32Array(toBitsF32.buffer);

/** f32 → IEEE half bits, round to nearest even (overflow to Inf, NaN kept). */
export function f32ToF16Bits(x: number): number {
  toBitsF32[0] = x;
  const bits = toBitsU32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1), halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1))) half++;
  return sign | half; // a carry into the exponent is the correct rounding (up to Inf)
}

/** f32 → bf16 bits, round to nearest even. */
export function f32ToBf16Bits(x: number): number {
  toBitsF32[0] = x;
  const bits = toBitsU32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40; // NaN stays NaN
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

const fround = Math.fround;

export const scalarKernels: Kernels = {
  name: 'scalar',

  bindLinear(src: LinearSource, N: number, K: number): ScalarLinearWeight {
    const w = new Float32Array(N * K);
    if (isQuantized(src)) {
      checkQuantizedSource(src, N, K);
      // the kernel's arithmetic (assembly/linear-quant.ts): column n in field j = (n mod 16) div 4
      // multiplies x by code·2^(bits·j) (j < 3) and its scale is scale·2^−(bits·j)
      const bits = quantBits(src.dtype), groups = K / src.groupSize;
      const scales = new Float32Array(N * groups), biases = Float32Array.from(src.biases.subarray(0, N * groups));
      for (let n = 0; n < N; n++) {
        const field = (n & 15) >> 2, f = fieldFactor(bits, field);
        for (let k = 0; k < K; k++) w[n * K + k] = codeAt(src.codes, n * (K * bits / 32), k, bits) * f;
        for (let g = 0; g < groups; g++) scales[n * groups + g] = fieldScale(src.scales[n * groups + g], bits, field);
      }
      return { N, K, dtype: src.dtype, groupSize: src.groupSize, bytes: w.byteLength, w, scales, biases };
    }
    if (src.dtype === 'f32') w.set(src.data.subarray(0, N * K));
    else for (let i = 0; i < N * K; i++) w[i] = bf16BitsToF32(src.data[i]);
    return { N, K, dtype: src.dtype, bytes: w.byteLength, w };
  },

  linear(y, x, weight, M, bias) {
    const { N, K, w, dtype, scales, biases } = weight as ScalarLinearWeight;
    if (scales && biases) { // quantized, per group: scale·Σ code·x + bias·Σ x in f32, the kernel's order (assembly/linear-quant.ts)
      const gs = weight.groupSize!, groups = K / gs;
      const xsum = new Float32Array(groups);
      for (let m = 0; m < M; m++) {
        const xo = m * K;
        for (let g = 0; g < groups; g++) {
          let s = 0;
          for (let k = g * gs; k < (g + 1) * gs; k++) s = fround(s + x[xo + k]);
          xsum[g] = s;
        }
        for (let n = 0; n < N; n++) {
          let acc = 0;
          const wo = n * K;
          for (let g = 0; g < groups; g++) {
            let dot = 0;
            for (let k = g * gs; k < (g + 1) * gs; k++) dot = fround(dot + fround(x[xo + k] * w[wo + k]));
            const scale = scales[n * groups + g], groupBias = biases[n * groups + g];
            acc = fround(acc + fround(fround(scale * dot) + fround(groupBias * xsum[g])));
          }
          y[m * N + n] = bias ? fround(acc + bias[n]) : acc;
        }
      }
      return;
    }
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        const wo = n * K, xo = m * K;
        for (let k = 0; k < K; k++) acc += x[xo + k] * w[wo + k];
        if (bias) acc += bias[n];
        y[m * N + n] = acc;
      }
    }
  },

  linearGroup(ys, x, ws, M, biases) {
    for (let i = 0; i < ws.length; i++) this.linear(ys[i], x, ws[i], M, biases?.[i] ?? null);
  },

  rmsnorm(y, x, weight, rows, dim, eps) {
    for (let r = 0; r < rows; r++) {
      const o = r * dim;
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
      const inv = fround(1 / Math.sqrt(fround(fround(ss / dim) + eps)));
      for (let i = 0; i < dim; i++) {
        const normed = fround(x[o + i] * inv);
        y[o + i] = weight ? normed * weight[i] : normed;
      }
    }
  },

  rope(x, rows, nHeads, headDim, rowStride, cos, sin, positions, layout: RopeLayout) {
    const half = headDim >> 1;
    for (let r = 0; r < rows; r++) {
      const table = positions[r] * half;
      for (let h = 0; h < nHeads; h++) {
        const o = r * rowStride + h * headDim;
        for (let i = 0; i < half; i++) {
          const c = cos[table + i], s = sin[table + i];
          const ia = layout === 'half' ? o + i : o + 2 * i;
          const ib = layout === 'half' ? o + i + half : o + 2 * i + 1;
          const a = x[ia], b = x[ib];
          x[ia] = fround(a * c) - fround(b * s);
          x[ib] = fround(b * c) + fround(a * s);
        }
      }
    }
  },

  attention(out, q, k, v, Tq, Tk, nHeads, nKvHeads, headDim, scale, qPos, kPos, allowed, kvDtype = 'f32') {
    if (kvDtype !== 'f32') { // a narrow cache: the f32 attention on its exact widening
      const widen = kvDtype === 'bf16' ? bf16BitsToF32 : f16BitsToF32;
      const n = Tk * nKvHeads * headDim;
      const kw = new Float32Array(n), vw = new Float32Array(n);
      for (let i = 0; i < n; i++) { kw[i] = widen(k[i]); vw[i] = widen(v[i]); }
      k = kw; v = vw;
    }
    const group = nHeads / nKvHeads;
    const qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
    const scores = new Float64Array(Tk);
    for (let i = 0; i < Tq; i++) {
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / group);
        const qo = i * qDim + h * headDim;
        let max = -Infinity;
        for (let j = 0; j < Tk; j++) {
          const visible = (qPos === null || kPos === null || kPos[j] <= qPos[i]) && (allowed === null || allowed[i * Tk + j] !== 0);
          if (!visible) { scores[j] = -Infinity; continue; }
          let dot = 0;
          const ko = j * kvDim + kvh * headDim;
          for (let d = 0; d < headDim; d++) dot += q[qo + d] * k[ko + d];
          scores[j] = dot * scale;
          if (scores[j] > max) max = scores[j];
        }
        const oo = i * qDim + h * headDim;
        if (max === -Infinity) { // no visible key: zeros by contract; every visible score NaN: NaN
          const fill = scores.subarray(0, Tk).some(Number.isNaN) ? NaN : 0;
          for (let d = 0; d < headDim; d++) out[oo + d] = fill;
          continue;
        }
        let sum = 0;
        for (let j = 0; j < Tk; j++) { scores[j] = Math.exp(scores[j] - max); sum += scores[j]; }
        for (let d = 0; d < headDim; d++) {
          let acc = 0;
          for (let j = 0; j < Tk; j++) if (scores[j] !== 0) acc += scores[j] * v[j * kvDim + kvh * headDim + d];
          out[oo + d] = acc / sum;
        }
      }
    }
  },

  softmax(y, x, rows, n) {
    for (let r = 0; r < rows; r++) {
      const o = r * n;
      let max = -Infinity;
      for (let i = 0; i < n; i++) if (x[o + i] > max) max = x[o + i]; // NaN never wins; it propagates through exp below
      if (max === -Infinity) { for (let i = 0; i < n; i++) y[o + i] = 0; continue; }
      let sum = 0;
      for (let i = 0; i < n; i++) sum += Math.exp(x[o + i] - max);
      for (let i = 0; i < n; i++) y[o + i] = Math.exp(x[o + i] - max) / sum;
    }
  },

  logSoftmax(y, x, rows, n) {
    for (let r = 0; r < rows; r++) {
      const o = r * n;
      let max = -Infinity;
      for (let i = 0; i < n; i++) if (x[o + i] > max) max = x[o + i]; // NaN never wins; it propagates through exp below
      if (max === -Infinity) { for (let i = 0; i < n; i++) y[o + i] = -Infinity; continue; }
      let sum = 0;
      for (let i = 0; i < n; i++) sum += Math.exp(x[o + i] - max);
      const lse = max + Math.log(sum);
      for (let i = 0; i < n; i++) y[o + i] = x[o + i] - lse;
    }
  },

  siluMul(y, gate, up, n) {
    for (let i = 0; i < n; i++) { const g = gate[i]; y[i] = fround(g / (1 + Math.exp(-g))) * up[i]; }
  },
  silu(y, x, n) {
    for (let i = 0; i < n; i++) { const g = x[i]; y[i] = g / (1 + Math.exp(-g)); }
  },
  sigmoid(y, x, n) {
    for (let i = 0; i < n; i++) y[i] = 1 / (1 + Math.exp(-x[i]));
  },
  add(y, a, b, n) {
    for (let i = 0; i < n; i++) y[i] = a[i] + b[i];
  },
  axpy(y, alpha, x, n) {
    // f32 semantics: the product is rounded (and may overflow to ±Inf) before the add, as in the kernel
    for (let i = 0; i < n; i++) y[i] += fround(fround(alpha) * x[i]);
  },
  scale(y, alpha, x, n) {
    for (let i = 0; i < n; i++) y[i] = fround(alpha) * x[i];
  },

  argmax(x, n) {
    if (n === 0) return -1;
    let best = 0;
    for (let i = 0; i < n; i++) {
      if (Number.isNaN(x[i])) return -1;
      if (x[i] > x[best]) best = i;
    }
    return best;
  },

  bf16ToF32(y, x, n) {
    for (let i = 0; i < n; i++) y[i] = bf16BitsToF32(x[i]);
  },
  f16ToF32(y, x, n) {
    for (let i = 0; i < n; i++) y[i] = f16BitsToF32(x[i]);
  },
  f32ToBf16(y, x, n) {
    for (let i = 0; i < n; i++) y[i] = f32ToBf16Bits(x[i]);
  },
  f32ToF16(y, x, n) {
    for (let i = 0; i < n; i++) y[i] = f32ToF16Bits(x[i]);
  },
};
