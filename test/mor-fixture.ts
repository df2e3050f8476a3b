/**
 * Small random MoR checkpoints for property tests: an upstream-style config and a state dict with
 * upstream's names (written out here from shared/research/mor.md §3, independently of
 * src/models/mor.ts's layout code), every shared alias present with identical values.
 * Values come from a seeded PRNG with the golden cases' distributions (embeddings 0.25·N(0,1),
 * norms 1 + 0.1·N(0,1), Linear N(0,1)/sqrt(fan_in)).
 */
import type { WeightInfo, WeightSource } from '../src/models/weights.js';
import type { DType } from '../src/format/safetensors.js';

export interface FixtureSpec {
  variant: 'expert' | 'token' | 'vanilla' | 'recursive';
  sharing?: 'cycle' | 'middle_cycle';
  R?: number;
  bd?: number;          // layers per recursion
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  intermediate?: number;
  vocab?: number;
  capacity?: number[];
  kvSharing?: boolean;
  tokenRouterFunc?: 'softmax' | 'sigmoid';
  lossFree?: boolean;
  seed: number;
}

import { prng as mulberry32 } from './kernels-support.js';

export { mulberry32 };

function normal(rand: () => number): number {
  const u = Math.max(rand(), 1e-12), v = rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export interface Fixture {
  config: Record<string, unknown>;
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

export function makeFixture(spec: FixtureSpec): Fixture {
  const rand = mulberry32(spec.seed);
  const H = spec.hidden ?? 32, nH = spec.heads ?? 4, nKv = spec.kvHeads ?? 2, hd = spec.headDim ?? 8;
  const I = spec.intermediate ?? 48, V = spec.vocab ?? 64, R = spec.R ?? 3, bd = spec.bd ?? 1;
  const sharing = spec.sharing ?? 'middle_cycle';
  const middle = sharing === 'middle_cycle';
  const L = spec.variant === 'vanilla' ? (spec.bd ?? 2) + 2 : bd * R + (middle ? 2 : 0);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const fill = (shape: number[], f: () => number): Float32Array => Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, f);
  const linear = (n: number, k: number): Float32Array => fill([n, k], () => Math.fround(normal(rand) / Math.sqrt(k)));
  const norm = (): Float32Array => fill([H], () => Math.fround(1 + 0.1 * normal(rand)));
  const put = (name: string, shape: number[], data: Float32Array): void => { tensors.set(name, { shape, data }); };

  const layerShapes: [string, number[]][] = [
    ['self_attn.q_proj.weight', [nH * hd, H]], ['self_attn.k_proj.weight', [nKv * hd, H]], ['self_attn.v_proj.weight', [nKv * hd, H]],
    ['self_attn.o_proj.weight', [H, nH * hd]], ['mlp.gate_proj.weight', [I, H]], ['mlp.up_proj.weight', [I, H]], ['mlp.down_proj.weight', [H, I]],
  ];
  /** One unique layer's values stored under every alias prefix. */
  const layer = (prefixes: string[]): void => {
    for (const [n, shape] of layerShapes) { const data = linear(shape[0], shape[1]); for (const p of prefixes) put(p + n, shape, data); }
    for (const n of ['input_layernorm.weight', 'post_attention_layernorm.weight']) { const data = norm(); for (const p of prefixes) put(p + n, [H], data); }
  };
  const embed = fill([V, H], () => Math.fround(0.25 * normal(rand)));
  put('model.embed_tokens.weight', [V, H], embed);
  put('lm_head.weight', [V, H], embed);
  put('model.norm.weight', [H], norm());

  const modelConfig = {
    vocab_size: V, hidden_size: H, intermediate_size: I, num_hidden_layers: L, num_attention_heads: nH, num_key_value_heads: nKv,
    head_dim: hd, hidden_act: 'silu', max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000.0, tie_word_embeddings: true,
    attention_bias: false, mlp_bias: false, pretraining_tp: 1, rope_scaling: null,
  };
  if (spec.variant === 'vanilla') {
    for (let i = 0; i < L; i++) layer([`model.layers.${i}.`]);
    return { config: { model_config: modelConfig, cfg: null }, tensors };
  }
  const capacity = spec.capacity ?? Array.from({ length: R }, (_, i) => (R - i) / R);
  const cfg = {
    recursive: { enable: true, num_recursion: R, sharing, ln_share: true, initialization: 'random', base_depth: null },
    kv_sharing: spec.kvSharing ? { enable: true, num_recursion: R, sharing, update_cache: false, base_depth: null } : { enable: false },
    mor: {
      enable: spec.variant !== 'recursive', type: spec.variant === 'token' ? 'token' : 'expert', capacity: capacity.join(','), rand_router: false,
      router_type: 'linear', temp: 1.0,
      expert: { router_func: 'sigmoid', alpha: 0.1, sampling: 'aux_loss', gating: 'weighted' },
      token: { router_func: spec.tokenRouterFunc ?? 'softmax', alpha: spec.tokenRouterFunc === 'sigmoid' ? 0.1 : 1.0, balancing: spec.lossFree ? 'loss_free' : 'loss', gating: 'weighted' },
    },
  };
  const off = middle ? 1 : 0;
  if (middle) { layer(['model.layers.0.']); }
  if (spec.variant === 'recursive') {
    for (let j = 0; j < bd; j++) layer(Array.from({ length: R }, (_, r) => `model.layers.${off + j + r * bd}.`));
    if (middle) layer([`model.layers.${L - 1}.`]);
  } else if (spec.variant === 'expert') {
    for (let j = 0; j < bd; j++) layer(Array.from({ length: R }, (_, r) => `model.layers.${off + r}.block.${j}.`));
    for (let r = 0; r < R; r++) put(`model.layers.${off + r}.mor_router.router.weight`, [1, H], fill([1, H], () => Math.fround(normal(rand) / Math.sqrt(H) * 4)));
    if (middle) layer([`model.layers.${R + 1}.`]);
  } else {
    const mor = middle ? 'model.layers.1.' : 'model.layers.';
    for (let j = 0; j < bd; j++) layer(Array.from({ length: R }, (_, r) => `${mor}block_list.${r}.${j}.`));
    put(`${mor}mor_router.router.weight`, [R, H], fill([R, H], () => Math.fround(normal(rand) / Math.sqrt(H) * 4)));
    if (spec.lossFree) put(`${mor}router_bias`, [R], fill([R], () => Math.fround(0.02 * normal(rand))));
    if (middle) layer(['model.layers.2.']);
  }
  return { config: { model_config: modelConfig, cfg }, tensors };
}

/** An in-memory WeightSource over a fixture's tensors (F32). */
export function fixtureWeights(tensors: Map<string, { shape: number[]; data: Float32Array }>, label = 'fixture'): WeightSource {
  return {
    label,
    names: () => [...tensors.keys()],
    info: (name): WeightInfo | undefined => {
      const t = tensors.get(name);
      return t ? { dtype: 'F32' as DType, shape: t.shape } : undefined;
    },
    read: (name) => tensors.get(name)!.data,
  };
}

export function randomIds(seed: number, B: number, T: number, V: number): number[][] {
  const rand = mulberry32(seed ^ 0x9e3779b9);
  return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(rand() * V)));
}
