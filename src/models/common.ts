/**
 * Pieces every family uses the same way. Kept small on purpose: attention orchestration and KV
 * caches differ per family and live in each family's file.
 */
import type { Runtime } from '../runtime/runtime.js';

const f32 = Math.fround;

/**
 * RoPE tables as torch builds them in float32: inv_freq[i] = 1 / theta^(2i/headDim),
 * angle[p,i] = f32(p * inv_freq[i]); returns cos/sin [maxPos, headDim/2] in arena buffers.
 * (MoR/Ouro's cat(freqs, freqs) and Huginn's complex table hold the same values per pair.)
 */
export function ropeTables(runtime: Runtime, headDim: number, maxPos: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const cos = runtime.arena.f32(maxPos * half);
  const sin = runtime.arena.f32(maxPos * half);
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = f32(1 / f32(theta ** f32((2 * i) / headDim)));
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f32(p * invFreq[i]);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
