/**
 * Affine group-wise quantization in MLX's layout (spec/quantization.md), the parts every backend
 * and the loaders share: the code of one weight, its dequantized value, and the checks on a
 * quantized source. The arithmetic here is the reference the WASM kernels equal bit for bit.
 */
import { PonderError } from '../errors.js';
import type { LinearSource, QuantizedSource } from './kernels.js';

const fround = Math.fround;

export function isQuantized(src: LinearSource): src is QuantizedSource {
  return src.dtype === 'q8' || src.dtype === 'q4';
}

/** Bits per code of a quantized dtype. */
export function quantBits(dtype: 'q8' | 'q4'): 8 | 4 {
  return dtype === 'q8' ? 8 : 4;
}

/** The quantized dtype with `bits` bits per code. */
export function quantDType(bits: number): 'q8' | 'q4' {
  return bits === 8 ? 'q8' : 'q4';
}

/** Code k of a row whose codes start at word `rowWord` of `words` (MLX: 32/bits codes per u32, from the low bits up). */
export function codeAt(words: Uint32Array, rowWord: number, k: number, bits: number): number {
  const perWord = 32 / bits;
  return (words[rowWord + Math.floor(k / perWord)] >>> ((k % perWord) * bits)) & ((1 << bits) - 1);
}

/** w = scale·code + bias in f32: the product rounded to f32, then the sum (never fused). */
export function dequantizeValue(scale: number, code: number, bias: number): number {
  return fround(fround(scale * code) + bias);
}

/** out[at, at + K) = row n of a quantized [N, K] matrix, dequantized. */
export function dequantizeRow(src: QuantizedSource, K: number, n: number, out: Float32Array, at = 0): void {
  const bits = src.dtype === 'q8' ? 8 : 4, gs = src.groupSize, groups = K / gs, rowWord = n * (K * bits / 32);
  for (let k = 0; k < K; k++) {
    const g = n * groups + Math.floor(k / gs);
    out[at + k] = dequantizeValue(src.scales[g], codeAt(src.codes, rowWord, k, bits), src.biases[g]);
  }
}

/**
 * The exact mode's kernels (assembly/linear-quant.ts) read the codes of the columns in field j of a
 * packed lane (j = (n mod 16) div 4) in place, as code·2^(bits·j) for j < 3, and compensate in the
 * scale: these are the code factor and the stored scale of such a column (both exact powers of two).
 */
export function fieldFactor(bits: number, field: number): number {
  return field < 3 ? 2 ** (bits * field) : 1;
}
export function fieldScale(scale: number, bits: number, field: number): number {
  return fround(scale / fieldFactor(bits, field));
}

/** KERNEL_BAD_ARGS unless `src` holds a quantized [N, K] matrix (a bug in the caller: loaders check files first). */
export function checkQuantizedSource(src: QuantizedSource, N: number, K: number): void {
  const bits = quantBits(src.dtype), gs = src.groupSize;
  const bad = (m: string) => new PonderError('KERNEL_BAD_ARGS', `bindLinear: ${m}`, { hint: 'the quantized buffers do not match N, K and the group size; this is a bug in the loader' });
  if (!Number.isInteger(gs) || gs < 1 || K % gs !== 0) throw bad(`K = ${K} is not a multiple of the group size ${gs}`);
  if (gs % (32 / bits) !== 0) throw bad(`a group of ${gs} codes of ${bits} bits does not fill whole u32 words`);
  if (src.codes.length < N * K * bits / 32) throw bad(`codes has ${src.codes.length} words, needs ${N * K * bits / 32}`);
  if (src.scales.length < N * K / gs || src.biases.length < N * K / gs) throw bad(`scales and biases need ${N * K / gs} values each`);
}

/** Round half to even (f32x4.nearest) of a value well inside the safe integers. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The integer-dot modes of a quantized Linear (spec/quantization.md), xbits 16 (int16 activations,
 * XMAX = 32767) or 8 (int8, XMAX = 127): per row and group, xq = round(x · f32(XMAX/amax)) (ties to
 * even; amax = max |x|, 0 when amax = 0), xscale = f32(amax/XMAX), the dot Σ code·xq exact in
 * integers, then acc = acc + ((scale·xscale)·f32(idot) + bias·xsum) in f32. The twin of
 * assembly/linear-quant-i16.ts (both of its int8 paths), bit for bit.
 */
export function linearQuantI16(y: Float32Array, x: Float32Array, src: QuantizedSource, N: number, K: number, M: number, bias?: Float32Array | null, xbits: 16 | 8 = 16): void {
  const XMAX = xbits === 8 ? 127 : 32767;
  const bits = quantBits(src.dtype), gs = src.groupSize, groups = K / gs, wordsPerRow = K * bits / 32;
  const xq = new Int32Array(K), xscale = new Float32Array(groups), xsum = new Float32Array(groups);
  for (let m = 0; m < M; m++) {
    const xo = m * K;
    for (let g = 0; g < groups; g++) {
      let amax = 0, s = 0;
      for (let k = g * gs; k < (g + 1) * gs; k++) { amax = Math.max(amax, Math.abs(x[xo + k])); s = fround(s + x[xo + k]); }
      const inv = amax === 0 ? 0 : fround(XMAX / amax);
      xscale[g] = fround(amax / XMAX);
      xsum[g] = s;
      for (let k = g * gs; k < (g + 1) * gs; k++) {
        const v = fround(x[xo + k] * inv);
        xq[k] = Number.isNaN(v) ? 0 : Math.max(-32768, Math.min(32767, roundHalfEven(v)));
      }
    }
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let g = 0; g < groups; g++) {
        let idot = 0;
        for (let k = g * gs; k < (g + 1) * gs; k++) idot += codeAt(src.codes, n * wordsPerRow, k, bits) * xq[k];
        const scale = src.scales[n * groups + g], groupBias = src.biases[n * groups + g];
        acc = fround(acc + fround(fround(fround(scale * xscale[g]) * fround(idot)) + fround(groupBias * xsum[g])));
      }
      y[m * N + n] = bias ? fround(acc + bias[n]) : acc;
    }
  }
}
