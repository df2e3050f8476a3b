/**
 * Small random Huginn models for property tests: upstream-style init (truncated normal of
 * √(2/(5E)), smaller output projections, RMSNorm weights 1 + 0.1·N, qk_bias 0.1·N) from our
 * seeded PRNG, served by an in-memory WeightSource under the upstream state_dict names.
 */
import type { WeightSource } from '../src/models/weights.js';
import { huginnTensorShapes, bindHuginn, parseHuginnConfig, type HuginnModel } from '../src/models/huginn.js';
import type { Runtime } from '../src/runtime/runtime.js';
import type { TensorArray } from '../src/format/safetensors.js';
import { Prng } from '../src/generate/prng.js';

export interface TinyShape {
  E: number; H: number; P: number; R: number; C: number; V: number; I: number; meanRecurrence: number; blockSize?: number;
}

export function tinyConfig(s: TinyShape): Record<string, unknown> {
  return {
    n_embd: s.E, n_heads: s.H, n_layers: s.P + s.R + s.C, block_size: s.blockSize ?? 64, vocab_size: s.V, padding_multiple: s.V,
    tie_embeddings: true, intermediate_size: s.I, bias: false, qk_bias: true, norm_eps: 1e-6, rope_base: 50000,
    n_layers_in_prelude: s.P, n_layers_in_recurrent_block: s.R, n_layers_in_coda: s.C, mean_recurrence: s.meanRecurrence,
    mean_backprop_depth: 2,
  };
}

/** An in-memory WeightSource; `data: null` tensors report their shape only (reading them throws). */
export function memorySource(tensors: Map<string, { dtype: 'F32' | 'BF16'; shape: number[]; data: TensorArray | null }>, label = 'memory'): WeightSource {
  return {
    label,
    names: () => [...tensors.keys()],
    info: (name) => { const t = tensors.get(name); return t ? { dtype: t.dtype, shape: t.shape } : undefined; },
    read: (name) => {
      const t = tensors.get(name);
      if (!t || !t.data) throw new Error(`memorySource: no data for ${name}`);
      return t.data;
    },
  };
}

function f32ToBf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff; // round to nearest even
}

/** Random weights for a tiny config; `outGain` scales the output projections (livelier recurrences). */
export function randomWeights(rawConfig: Record<string, unknown>, seed: number, opts: { dtype?: 'F32' | 'BF16'; outGain?: number } = {}): WeightSource {
  const cfg = parseHuginnConfig(rawConfig);
  const rng = new Prng(seed);
  const std = Math.sqrt(2 / (5 * cfg.nEmbd));
  const depth = cfg.nPrelude + cfg.nCoda + cfg.nCore * cfg.meanRecurrence;
  const outStd = (std / Math.sqrt(2 * depth)) * (opts.outGain ?? 4);
  const trunc = (s: number): number => { let z = rng.nextNormal(); while (Math.abs(z) > 3) z = rng.nextNormal(); return z * s; };
  const tensors = new Map<string, { dtype: 'F32' | 'BF16'; shape: number[]; data: TensorArray | null }>();
  let wte: Float32Array | null = null;
  for (const [name, shape] of huginnTensorShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    if (name === 'lm_head.weight') values = wte!;
    else {
      values = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        values[i] = name.includes('norm') || name.endsWith('ln_f.weight') ? 1 + 0.1 * rng.nextNormal()
          : name.endsWith('qk_bias') ? 0.1 * rng.nextNormal()
          : name.endsWith('proj.weight') ? trunc(outStd)
          : trunc(std);
      }
      if (name === 'transformer.wte.weight') wte = values;
    }
    const dtype = opts.dtype ?? 'F32';
    tensors.set(name, { dtype, shape, data: dtype === 'F32' ? values : Uint16Array.from(values, f32ToBf16Bits) });
  }
  return memorySource(tensors);
}

export function tinyModel(shape: TinyShape, seed: number, runtime: Runtime, opts: { outGain?: number } = {}): HuginnModel {
  const raw = tinyConfig(shape);
  return bindHuginn(parseHuginnConfig(raw), randomWeights(raw, seed, opts), runtime, { seed });
}

/** Arbitrary-but-small shapes for fast-check (kept tiny: the machine is shared). */
export const SMALL_SHAPES: TinyShape[] = [
  { E: 16, H: 2, P: 1, R: 2, C: 1, V: 24, I: 24, meanRecurrence: 4 },
  { E: 24, H: 3, P: 2, R: 1, C: 1, V: 20, I: 32, meanRecurrence: 3 },
  { E: 16, H: 1, P: 1, R: 1, C: 2, V: 16, I: 16, meanRecurrence: 5 },
  { E: 32, H: 2, P: 2, R: 4, C: 2, V: 32, I: 48, meanRecurrence: 6 },
];
