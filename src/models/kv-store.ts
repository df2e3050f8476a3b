/**
 * A KV cache's storage, for every family: f32 (default, what conformance uses) or 16-bit bf16 /
 * IEEE half (spec/numerics.md, KV cache dtype). Writes round f32 → the cache's dtype (nearest
 * even) through the kernels; reads are attention's, which widens exactly (kernels.ts attention).
 * Copies between rows of caches of one dtype (Ouro's copy-forward, MoR's refreshed shared slot)
 * are plain typed-array copies: exact in any dtype.
 */
import type { Kernels, KvBuffer, KvDType } from '../kernels/kernels.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../kernels/scalar.js';
import type { Arena } from '../runtime/arena.js';

export type { KvBuffer, KvDType };

/** n cache values of `dtype` from `arena`. */
export function allocKv(arena: Arena, dtype: KvDType, n: number): KvBuffer {
  return dtype === 'f32' ? arena.f32(n) : arena.u16(n);
}

/** dst[at .. at+n) = src[from .. from+n) rounded to the cache's dtype (f32: copied as is). */
export function writeKv(kernels: Kernels, dtype: KvDType, dst: KvBuffer, at: number, src: Float32Array, from: number, n: number): void {
  if (dtype === 'f32') { (dst as Float32Array).set(src.subarray(from, from + n), at); return; }
  const d = (dst as Uint16Array).subarray(at, at + n), s = src.subarray(from, from + n);
  if (dtype === 'bf16') kernels.f32ToBf16(d, s, n); else kernels.f32ToF16(d, s, n);
}

/** src rounded to `dtype` on the JS heap (Huginn's cache entries live there): the f32ToBf16 / f32ToF16 twins, bit for bit the kernels. */
export function narrowOnHeap(dtype: KvDType, src: Float32Array): KvBuffer {
  if (dtype === 'f32') return src;
  const round = dtype === 'bf16' ? f32ToBf16Bits : f32ToF16Bits;
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = round(src[i]);
  return out;
}

/** The first n values of a `dtype` buffer as f32, exactly (f32: the buffer itself). */
export function widenOnHeap(dtype: KvDType, src: KvBuffer, n: number): Float32Array {
  if (dtype === 'f32') return src as Float32Array;
  const widen = dtype === 'bf16' ? bf16BitsToF32 : f16BitsToF32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = widen(src[i]);
  return out;
}

/** dst[at ..] = src[from .. from+n): rows copied between buffers of one dtype. */
export function copyKv(dst: KvBuffer, at: number, src: KvBuffer, from: number, n: number): void {
  if (dst instanceof Float32Array) dst.set((src as Float32Array).subarray(from, from + n), at);
  else dst.set((src as Uint16Array).subarray(from, from + n), at);
}
