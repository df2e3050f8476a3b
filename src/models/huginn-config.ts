/**
 * Huginn-0125's config (upstream `RavenConfig`, huginn.md §1) read through src/format/config.ts
 * with upstream's field names, and the tensors it implies (huginn.md §2).
 *
 * A field is read from the top level, or from the golden cases' "derived" block (the values
 * upstream derives in `__init__`); where upstream has an alias (`n_embd` / `hidden_size`) either
 * spelling is read. Fields upstream hard-wires or uses only in training (`block_class_name`,
 * `mean_backprop_depth`, ...) are accepted and ignored; any other key is left for unknownKeys.
 */
import { asConfigObject, configInconsistent, hasField, ignoreFields, optionalBool, optionalInt, optionalIntList, optionalNumber, requireInt, section, unsupportedValue, upTo, type ConfigObject } from '../format/config.js';
import type { LimitName } from '../limits.js';
import type { MemoryNeeds, TensorSpec } from './family.js';

export interface HuginnConfig {
  readonly nEmbd: number; // E
  readonly nHeads: number; // H
  readonly nKvHeads: number;
  readonly headDim: number; // E / H
  readonly intermediateSize: number; // I
  readonly vocabSize: number; // V (= padded_vocab_size: upstream applies no padding)
  readonly blockSize: number; // rows of the RoPE table = maximum position + 1
  readonly nPrelude: number; // P
  readonly nCore: number; // R
  readonly nCoda: number; // C
  readonly meanRecurrence: number; // default depth
  readonly ropeBase: number;
  readonly normEps: number;
  readonly qkBias: boolean;
  readonly bias: boolean; // only the adapter has a bias when set
  readonly tieEmbeddings: boolean;
  /** std of the initial state before the √E scale: init_values.std = √(2/(5E)) */
  readonly initStd: number;
  /** √E, applied to embeddings and to the initial state */
  readonly embedScale: number;
  /** eos_token_id of config.json (an id or a list), if any */
  readonly eosIds: readonly number[];
}

/** huginn-0125's config.json values (huginn.md §1). */
export const HUGINN_0125_CONFIG = {
  n_embd: 5280, n_heads: 55, n_layers: 8, block_size: 4096, vocab_size: 65536, padding_multiple: 4096,
  tie_embeddings: true, intermediate_size: 17920, bias: false, qk_bias: true, norm_eps: 1e-6, rope_base: 50000,
  n_layers_in_prelude: 2, n_layers_in_recurrent_block: 4, n_layers_in_coda: 2, mean_recurrence: 32,
  mean_backprop_depth: 8, torch_dtype: 'bfloat16', model_type: 'huginn_raven',
} as const;

/** Read by upstream's RavenConfig but hard-wired in the model, or used only in training / init. */
const IGNORED = ['model_type', 'n_layers', 'num_hidden_layers', 'padding_multiple', 'architecture_class_name', 'block_class_name', 'norm_class_name',
  'mlp_class_name', 'nonlin_name', 'init_strategy', 'init_orthogonal', 'state_init', 'injection_type', 'sampling_scheme', 'mean_backprop_depth',
  'activation_checkpoint_impl', 'effective_expected_depth', 'test_time_noise_type', 'bos_token_id', 'pad_token_id', 'use_cache'];

/** Validates an upstream RavenConfig (config.json, or a golden case's "config"). CFG_FIELD / CFG_INCONSISTENT name the field. */
export function parseHuginnConfig(raw: ConfigObject | unknown, label = 'config'): HuginnConfig {
  const top = asConfigObject(raw, label);
  const derived = hasField(top, 'derived') ? section(top, 'derived') : null;
  for (const c of derived ? [top, derived] : [top]) ignoreFields(c, ...IGNORED);
  /** Where the first present spelling of a field lives: the top level first, then "derived"; every spelling counts as read. */
  const at = (...names: string[]): [ConfigObject, string] => {
    for (const c of derived ? [top, derived] : [top]) ignoreFields(c, ...names);
    for (const c of derived ? [top, derived] : [top]) for (const n of names) if (hasField(c, n)) return [c, n];
    return [top, names[0]];
  };
  /** A count, bounded below by `min` and above by ponder's hard limit on `limit` (src/limits.ts). */
  const int = (names: string[], min: number, limit: LimitName, fallback?: number): number => {
    const [c, n] = at(...names);
    return fallback === undefined ? requireInt(c, n, upTo(limit, min)) : optionalInt(c, n, fallback, upTo(limit, min));
  };
  const num = (name: string, fallback: number): number => { const [c, n] = at(name); return optionalNumber(c, n, fallback, { gt: 0 }); };
  const bool = (names: string[], fallback: boolean): boolean => { const [c, n] = at(...names); return optionalBool(c, n, fallback); };

  const nEmbd = int(['n_embd', 'hidden_size'], 1, 'width');
  const nHeads = int(['n_heads', 'num_attention_heads'], 1, 'heads');
  if (nEmbd % nHeads !== 0) throw configInconsistent(top, 'n_heads', `n_heads (${nHeads}) must divide n_embd (${nEmbd})`);
  const headDim = nEmbd / nHeads;
  if (headDim % 2 !== 0) throw configInconsistent(top, 'n_heads', `n_embd / n_heads = ${headDim} is odd; RoPE rotates channel pairs`);
  const [hdAt, hdName] = at('head_dim');
  if (optionalInt(hdAt, hdName, headDim) !== headDim) throw configInconsistent(hdAt, 'head_dim', `head_dim must be n_embd / n_heads = ${headDim}`);
  const nKvHeads = int(['num_key_value_heads'], 1, 'heads', nHeads);
  if (nHeads % nKvHeads !== 0) throw configInconsistent(top, 'num_key_value_heads', `num_key_value_heads (${nKvHeads}) must divide n_heads (${nHeads})`);
  const qkBias = bool(['qk_bias'], true);
  if (qkBias && nKvHeads !== nHeads) throw configInconsistent(top, 'num_key_value_heads', 'num_key_value_heads must equal n_heads when qk_bias is set (upstream adds a [H, head_dim] bias to k)');
  let initStd = Math.sqrt(2 / (5 * nEmbd));
  const [ivAt, ivName] = at('init_values');
  if (hasField(ivAt, ivName)) {
    const iv = section(ivAt, ivName);
    initStd = optionalNumber(iv, 'std', initStd, { min: 0 });
    ignoreFields(iv, 'out_proj', 'embedding', 'embed_scale');
  }
  const [noiseAt, noiseName] = at('test_time_noise');
  const noise = optionalNumber(noiseAt, noiseName, 0);
  if (noise !== 0) throw unsupportedValue(noiseAt, noiseName, String(noise), '0 (test-time noise is off in huginn-0125)');
  const [eosAt, eosName] = at('eos_token_id');
  return {
    nEmbd, nHeads, nKvHeads, headDim,
    intermediateSize: int(['intermediate_size'], 1, 'intermediate'),
    vocabSize: int(['padded_vocab_size', 'vocab_size'], 1, 'vocab'),
    blockSize: int(['block_size'], 1, 'context'),
    nPrelude: int(['n_layers_in_prelude'], 0, 'layers'),
    nCore: int(['n_layers_in_recurrent_block'], 1, 'layers'),
    nCoda: int(['n_layers_in_coda'], 0, 'layers'),
    meanRecurrence: int(['mean_recurrence'], 0, 'depth'),
    ropeBase: num('rope_base', 50000),
    normEps: num('norm_eps', 1e-6),
    qkBias,
    bias: bool(['bias'], false),
    tieEmbeddings: bool(['tie_embeddings', 'tie_word_embeddings'], true),
    initStd,
    embedScale: Math.sqrt(nEmbd),
    eosIds: optionalIntList(eosAt, eosName, [], { min: 0 }, true),
  };
}

const BLOCK_TENSORS = ['norm_1.weight', 'attn.qk_bias', 'attn.Wqkv.weight', 'attn.proj.weight', 'norm_2.weight', 'mlp.fc.weight', 'mlp.proj.weight', 'norm_3.weight', 'norm_4.weight'] as const;

/**
 * Every tensor of the state_dict with its shape (huginn.md §2), in upstream order. Groups: embed,
 * prelude.i, adapter, core.j, coda.c, head (ln_f and lm_head), rope (the freqs_cis buffer).
 */
export function huginnTensors(cfg: HuginnConfig): TensorSpec[] {
  const { nEmbd: E, nHeads: H, nKvHeads: Hkv, headDim: hd, intermediateSize: I, vocabSize: V } = cfg;
  const out: TensorSpec[] = [{ name: 'transformer.wte.weight', shape: [V, E], bind: 'embedding', group: 'embed' }];
  const block = (prefix: string, group: string): void => {
    for (const t of BLOCK_TENSORS) {
      if (t === 'attn.qk_bias' && !cfg.qkBias) continue;
      const shape = t === 'attn.qk_bias' ? [2, 1, H, hd]
        : t === 'attn.Wqkv.weight' ? [(H + 2 * Hkv) * hd, E]
        : t === 'attn.proj.weight' ? [E, E]
        : t === 'mlp.fc.weight' ? [2 * I, E]
        : t === 'mlp.proj.weight' ? [E, I]
        : [E];
      out.push({ name: `${prefix}.${t}`, shape, bind: t.endsWith('.weight') && shape.length === 2 ? 'linear' : 'f32', group });
    }
  };
  for (let i = 0; i < cfg.nPrelude; i++) block(`transformer.prelude.${i}`, `prelude.${i}`);
  out.push({ name: 'transformer.adapter.weight', shape: [E, 2 * E], bind: 'linear', group: 'adapter' });
  if (cfg.bias) out.push({ name: 'transformer.adapter.bias', shape: [E], bind: 'f32', group: 'adapter' });
  for (let i = 0; i < cfg.nCore; i++) block(`transformer.core_block.${i}`, `core.${i}`);
  for (let i = 0; i < cfg.nCoda; i++) block(`transformer.coda.${i}`, `coda.${i}`);
  out.push({ name: 'transformer.ln_f.weight', shape: [E], bind: 'f32', group: 'head' });
  // a tied lm_head may be stored (checkpoints carry both copies) or left out
  out.push({ name: 'lm_head.weight', shape: [V, E], bind: 'linear', group: 'head', ...(cfg.tieEmbeddings ? { optional: true, sameAs: 'transformer.wte.weight' } : {}) });
  // the persistent RoPE buffer: optional, verified against the recomputed table when present
  out.push({ name: 'freqs_cis', shape: [1, cfg.blockSize, 1, hd / 2, 2], bind: 'buffer', group: 'rope', optional: true });
  return out;
}

/** [name, shape] of every parameter (no buffers), as huginnTensors lists them (for synthetic checkpoints). */
export function huginnTensorShapes(cfg: HuginnConfig): [string, number[]][] {
  return huginnTensors(cfg).filter((t) => t.bind !== 'buffer').map((t) => [t.name, [...t.shape]]);
}

/**
 * The memory plan's view of Huginn: its KV cache lives on the JS heap (src/models/huginn-cache.ts),
 * P + mean_recurrence·R + C layer slots × (K + V) per token at the default depth (deeper policies
 * file more slots); the home shard holds the RoPE tables, one call's work buffers for `rows` tokens
 * and the keys/values one attention call gathers over the whole context.
 */
export function huginnMemory(c: HuginnConfig): MemoryNeeds {
  const kvDim = c.nKvHeads * c.headDim, qDim = c.nHeads * c.headDim, E = c.nEmbd;
  return {
    kvPerToken: new Map(),
    hostKvPerToken: (c.nPrelude + c.meanRecurrence * c.nCore + c.nCoda) * 2 * kvDim,
    workBytes: (context, rows) => 4 * c.blockSize * c.headDim // cos, sin [blockSize, hd/2]
      + 4 * rows * (7 * E + 2 * (qDim + 2 * kvDim) + qDim + 3 * c.intermediateSize + c.vocabSize + 2)
      + 4 * (2 * context * kvDim + context),
    attentionUnits: c.nHeads,
    attentionHeadDim: c.headDim,
    maxContext: c.blockSize,
    contextField: 'block_size',
  };
}
