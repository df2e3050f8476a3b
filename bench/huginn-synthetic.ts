/**
 * Synthetic Huginn checkpoints for benchmarks: the upstream tensor list for a config, filled with
 * random BF16 values drawn on read (upstream "takase" init scales: √(2/(5E)) everywhere, output
 * projections ÷ √(2·effective depth), RMSNorm weights 1) from our seeded PRNG. Nothing is
 * materialised until the binder reads a tensor, so the full-size list costs no memory to check.
 */
import { huginnTensorShapes, parseHuginnConfig, type HuginnConfig } from '../src/models/huginn.js';
import type { WeightSource } from '../src/models/weights.js';
import { Prng } from '../src/generate/prng.js';
import { f32ToBf16Bits } from '../src/kernels/scalar.js';

/** huginn-0125's layer structure (P=2, R=4, C=2, head_dim 96, I/E = 17920/5280) at a smaller width. */
export function scaledHuginnConfig(heads: number, vocab: number, blockSize = 512): Record<string, unknown> {
  const E = heads * 96;
  const I = Math.round((E * 17920) / 5280 / 16) * 16;
  return {
    n_embd: E, n_heads: heads, n_layers: 8, block_size: blockSize, vocab_size: vocab, padding_multiple: vocab, tie_embeddings: true,
    intermediate_size: I, bias: false, qk_bias: true, norm_eps: 1e-6, rope_base: 50000, n_layers_in_prelude: 2,
    n_layers_in_recurrent_block: 4, n_layers_in_coda: 2, mean_recurrence: 32, mean_backprop_depth: 8, torch_dtype: 'bfloat16',
  };
}

// (src/kernels/scalar.ts: no typed arrays allocated per value, which made a full-size read take many minutes)
const bf16Bits = f32ToBf16Bits;

/** Upstream's "takase" init scales: std √(2/(5E)); output projections std/√(2·effective depth). */
export function huginnInitScales(config: HuginnConfig): { std: number; outStd: number } {
  const std = Math.sqrt(2 / (5 * config.nEmbd));
  const depth = config.nPrelude + config.nCoda + config.nCore * config.meanRecurrence;
  return { std, outStd: std / Math.sqrt(2 * depth) };
}

export function syntheticHuginnWeights(rawConfig: Record<string, unknown>, seed = 1, outGain = 1): { config: HuginnConfig; source: WeightSource; parameters: number } {
  const config = parseHuginnConfig(rawConfig, 'synthetic');
  const shapes = new Map(huginnTensorShapes(config).filter(([n]) => n !== 'lm_head.weight')); // tied: wte serves as lm_head
  const { std, outStd: baseOutStd } = huginnInitScales(config);
  const outStd = baseOutStd * outGain;
  let parameters = 0;
  for (const s of shapes.values()) parameters += s.reduce((a, b) => a * b, 1);
  const source: WeightSource = {
    label: 'synthetic huginn (random bf16)',
    names: () => [...shapes.keys()],
    info: (name) => { const shape = shapes.get(name); return shape ? { dtype: 'BF16', shape } : undefined; },
    read: (name) => {
      const shape = shapes.get(name)!;
      const n = shape.reduce((a, b) => a * b, 1);
      let h = 0;
      for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
      const rng = new Prng((seed ^ h) >>> 0);
      const out = new Uint16Array(n);
      const isNorm = name.includes('norm') || name.endsWith('ln_f.weight');
      const s = name.endsWith('proj.weight') ? outStd : name.endsWith('qk_bias') ? 0 : std;
      for (let i = 0; i < n; i++) {
        if (isNorm) { out[i] = bf16Bits(1); continue; }
        let z = rng.nextNormal();
        while (Math.abs(z) > 3) z = rng.nextNormal();
        out[i] = bf16Bits(z * s);
      }
      return out;
    },
  };
  return { config, source, parameters };
}
