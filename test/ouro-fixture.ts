/**
 * Small random Ouro models for property tests: an upstream-style config plus seeded weights drawn
 * the way the golden generator draws them (embed N(0,1); norms 1 + 0.1·N; linears N/√fan_in;
 * exit gate 3·N/√H with bias 0.5·N), held in an in-memory WeightSource.
 */
import fc from 'fast-check';
import { OuroModel } from '../src/models/ouro.js';
import { ouroConfigFromJson, type OuroConfig } from '../src/models/ouro-config.js';
import type { WeightSource } from '../src/models/weights.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';
import { prng } from './kernels-support.js';

export interface SmallOuroSpec {
  vocab: number;
  hidden: number;
  inter: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  loops: number;
  seed: number;
  gateBias: number; // shifts every gate logit: > 0 makes tokens exit earlier
}


function normal(rand: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

export function smallConfigJson(s: SmallOuroSpec): Record<string, unknown> {
  return {
    vocab_size: s.vocab, hidden_size: s.hidden, intermediate_size: s.inter, num_hidden_layers: s.layers,
    num_attention_heads: s.heads, num_key_value_heads: s.kvHeads, head_dim: s.headDim, hidden_act: 'silu',
    max_position_embeddings: 128, rms_norm_eps: 1e-6, rope_theta: 1e6, rope_scaling: null, tie_word_embeddings: false,
    use_sliding_window: false, total_ut_steps: s.loops, early_exit_threshold: 1.0,
  };
}

/** The tensors of a model, by upstream state_dict name, F32. */
export function smallWeights(c: OuroConfig, seed: number, gateBias: number): Map<string, { shape: number[]; data: Float32Array }> {
  const randn = normal(prng(seed));
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const add = (name: string, shape: number[], draw: () => number): void => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = draw();
    tensors.set(name, { shape, data });
  };
  const H = c.hiddenSize, qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
  const linear = (name: string, N: number, K: number): void => add(name, [N, K], () => randn() / Math.sqrt(K));
  const norm = (name: string): void => add(name, [H], () => 1 + 0.1 * randn());
  add('model.embed_tokens.weight', [c.vocabSize, H], randn);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    linear(p + 'self_attn.q_proj.weight', qDim, H);
    linear(p + 'self_attn.k_proj.weight', kvDim, H);
    linear(p + 'self_attn.v_proj.weight', kvDim, H);
    linear(p + 'self_attn.o_proj.weight', H, qDim);
    linear(p + 'mlp.gate_proj.weight', c.intermediateSize, H);
    linear(p + 'mlp.up_proj.weight', c.intermediateSize, H);
    linear(p + 'mlp.down_proj.weight', H, c.intermediateSize);
    for (const n of ['input_layernorm', 'input_layernorm_2', 'post_attention_layernorm', 'post_attention_layernorm_2']) norm(p + n + '.weight');
  }
  norm('model.norm.weight');
  add('model.early_exit_gate.weight', [1, H], () => (3 * randn()) / Math.sqrt(H));
  add('model.early_exit_gate.bias', [1], () => gateBias + 0.5 * randn());
  linear('lm_head.weight', c.vocabSize, H);
  return tensors;
}

export function memorySource(tensors: Map<string, { shape: number[]; data: Float32Array }>, label = 'test weights'): WeightSource {
  return {
    label,
    names: () => [...tensors.keys()],
    info: (name) => {
      const t = tensors.get(name);
      return t ? { dtype: 'F32', shape: t.shape } : undefined;
    },
    read: (name) => Float32Array.from(tensors.get(name)!.data),
  };
}

export function smallModel(s: SmallOuroSpec, runtime: Runtime = createScalarRuntime()): OuroModel {
  const config = ouroConfigFromJson(smallConfigJson(s));
  return OuroModel.bind(config, memorySource(smallWeights(config, s.seed, s.gateBias)), runtime);
}

/** Arbitrary small specs: GQA and MHA, head_dim ≠ H/heads, 1..5 loops. */
export function smallSpec(opts: { minLoops?: number; maxLoops?: number } = {}): fc.Arbitrary<SmallOuroSpec> {
  return fc.record({
    vocab: fc.integer({ min: 8, max: 40 }),
    hiddenUnit: fc.integer({ min: 2, max: 6 }),
    inter: fc.integer({ min: 8, max: 40 }),
    layers: fc.integer({ min: 1, max: 3 }),
    kvHeads: fc.integer({ min: 1, max: 2 }),
    group: fc.integer({ min: 1, max: 2 }),
    halfHeadDim: fc.integer({ min: 1, max: 5 }),
    loops: fc.integer({ min: opts.minLoops ?? 1, max: opts.maxLoops ?? 5 }),
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
    gateBias: fc.double({ min: -2, max: 2, noNaN: true }),
  }).map((r) => ({
    vocab: r.vocab, hidden: 8 * r.hiddenUnit, inter: r.inter, layers: r.layers, heads: r.kvHeads * r.group, kvHeads: r.kvHeads,
    headDim: 2 * r.halfHeadDim, loops: r.loops, seed: r.seed, gateBias: r.gateBias,
  }));
}

export function tokenIds(vocabMax: number, minLength = 1, maxLength = 10): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: 0, max: vocabMax - 1 }), { minLength, maxLength });
}

/** A spec plus a prompt drawn inside its vocabulary. */
export function specAndIds(opts: { minLoops?: number; maxLoops?: number; minLength?: number; maxLength?: number } = {}): fc.Arbitrary<{ spec: SmallOuroSpec; ids: number[] }> {
  return smallSpec(opts).chain((spec) => tokenIds(spec.vocab, opts.minLength ?? 1, opts.maxLength ?? 10).map((ids) => ({ spec, ids })));
}
