/**
 * Ouro's config (upstream `OuroConfig`, research/ouro.md §1) read through src/format/config.ts with
 * upstream's field names, and the tensors it implies (ouro.md §2).
 */
import { asConfigObject, configInconsistent, hasField, ignoreFields, optionalBool, optionalInt, optionalIntList, optionalNumber, optionalString, requireInt, requireString, section, upTo, type ConfigObject } from '../format/config.js';
import type { MemoryNeeds, TensorSpec } from './family.js';

export interface OuroConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number; // H
  readonly intermediateSize: number; // I
  readonly numLayers: number; // L, layers per loop
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly ropeTheta: number;
  readonly rmsNormEps: number;
  readonly maxPositionEmbeddings: number;
  readonly totalUtSteps: number; // T, loops
  readonly earlyExitThreshold: number | null; // config default of exit_threshold (1.0 in every checkpoint)
  readonly earlyExitStep: number | null; // config default of exit_at_step (absent in every checkpoint)
  readonly tieWordEmbeddings: boolean;
  /** eos_token_id of config.json (an id or a list), if any */
  readonly eosIds: readonly number[];
}

/**
 * Reads an upstream config.json (field names as upstream spells them) with OuroConfig's defaults
 * (research/ouro.md §1). Accepts a ConfigObject from parseConfigJson/openModelDir or plain values
 * (a golden case's `config`).
 */
export function ouroConfigFromJson(json: ConfigObject | Record<string, unknown>, label = 'config.json'): OuroConfig {
  const cfg = asConfigObject(json, label);
  const hiddenSize = optionalInt(cfg, 'hidden_size', 4096, upTo('width', 1));
  const numHeads = optionalInt(cfg, 'num_attention_heads', 32, upTo('heads', 1));
  // num_key_value_heads: None → = heads (Cfg); head_dim is an extra kwarg: absent → H // heads.
  const numKvHeads = optionalInt(cfg, 'num_key_value_heads', numHeads, upTo('heads', 1));
  const headDim = optionalInt(cfg, 'head_dim', Math.floor(hiddenSize / numHeads), upTo('width', 2));
  if (numHeads % numKvHeads !== 0) throw configInconsistent(cfg, 'num_key_value_heads', `num_key_value_heads (${numKvHeads}) must divide num_attention_heads (${numHeads})`);
  if (headDim % 2 !== 0) throw configInconsistent(cfg, 'head_dim', `head_dim (${headDim}) must be even for rotary embeddings`);
  optionalString(cfg, 'hidden_act', 'silu', ['silu']);
  if (hasField(cfg, 'rope_scaling')) {
    const scaling = section(cfg, 'rope_scaling');
    const type = hasField(scaling, 'rope_type') ? requireString(scaling, 'rope_type') : optionalString(scaling, 'type', 'default');
    if (type !== 'default') throw configInconsistent(cfg, 'rope_scaling', `rope_scaling type ${JSON.stringify(type)} is not supported (Ouro checkpoints use the default RoPE)`, 'set rope_scaling to null');
  }
  if (optionalBool(cfg, 'use_sliding_window', false)) throw configInconsistent(cfg, 'use_sliding_window', 'sliding-window attention is not supported (no Ouro checkpoint uses it)', 'set use_sliding_window to false');
  // early_exit_threshold: absent → Cfg default 1.0; an explicit null → None (no threshold rule).
  const thresholdIsNull = Object.hasOwn(cfg.values, 'early_exit_threshold') && cfg.values.early_exit_threshold === null;
  ignoreFields(cfg, 'early_exit_threshold'); // read either way
  const earlyExitThreshold = thresholdIsNull ? null : optionalNumber(cfg, 'early_exit_threshold', 1.0);
  const earlyExitStep = hasField(cfg, 'early_exit_step') ? requireInt(cfg, 'early_exit_step') : null;
  // Read by upstream but without effect on inference here (training, generation, stored-only fields).
  ignoreFields(cfg, 'model_type', 'layer_types', 'sliding_window', 'max_window_layers', 'attention_dropout', 'initializer_range',
    'use_cache', 'bos_token_id', 'pad_token_id', 'chunk_size');
  return {
    vocabSize: optionalInt(cfg, 'vocab_size', 151936, upTo('vocab', 1)),
    hiddenSize,
    intermediateSize: optionalInt(cfg, 'intermediate_size', 22016, upTo('intermediate', 1)),
    numLayers: optionalInt(cfg, 'num_hidden_layers', 32, upTo('layers', 1)),
    numHeads,
    numKvHeads,
    headDim,
    ropeTheta: optionalNumber(cfg, 'rope_theta', 10000, { gt: 0 }),
    rmsNormEps: optionalNumber(cfg, 'rms_norm_eps', 1e-6, { min: 0 }),
    maxPositionEmbeddings: optionalInt(cfg, 'max_position_embeddings', 32768, upTo('context', 1)),
    totalUtSteps: optionalInt(cfg, 'total_ut_steps', 4, upTo('depth', 1)),
    earlyExitThreshold,
    earlyExitStep,
    tieWordEmbeddings: optionalBool(cfg, 'tie_word_embeddings', false),
    eosIds: optionalIntList(cfg, 'eos_token_id', [], { min: 0 }, true),
  };
}

/**
 * Every upstream state_dict tensor with its shape (ouro.md §2). Groups: embed, layers.l, exit
 * (model.norm, applied after every loop, and the exit gate), head, rope (a non-persistent buffer a
 * converter may have saved; recomputed).
 */
export function ouroTensors(c: OuroConfig): TensorSpec[] {
  const H = c.hiddenSize, qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
  const out: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H], bind: 'embedding', group: 'embed' }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`, group = `layers.${l}`;
    const linear = (name: string, shape: number[]): void => { out.push({ name: p + name, shape, bind: 'linear', group }); };
    linear('self_attn.q_proj.weight', [qDim, H]);
    linear('self_attn.k_proj.weight', [kvDim, H]);
    linear('self_attn.v_proj.weight', [kvDim, H]);
    linear('self_attn.o_proj.weight', [H, qDim]);
    linear('mlp.gate_proj.weight', [c.intermediateSize, H]);
    linear('mlp.up_proj.weight', [c.intermediateSize, H]);
    linear('mlp.down_proj.weight', [H, c.intermediateSize]);
    for (const norm of ['input_layernorm', 'input_layernorm_2', 'post_attention_layernorm', 'post_attention_layernorm_2']) out.push({ name: `${p}${norm}.weight`, shape: [H], bind: 'f32', group });
  }
  out.push({ name: 'model.norm.weight', shape: [H], bind: 'f32', group: 'exit' });
  out.push({ name: 'model.early_exit_gate.weight', shape: [1, H], bind: 'linear', group: 'exit' });
  out.push({ name: 'model.early_exit_gate.bias', shape: [1], bind: 'f32', group: 'exit' });
  out.push({ name: 'lm_head.weight', shape: [c.vocabSize, H], bind: 'linear', group: 'head', ...(c.tieWordEmbeddings ? { optional: true, sameAs: 'model.embed_tokens.weight' } : {}) });
  out.push({ name: 'model.rotary_emb.inv_freq', shape: [c.headDim / 2], bind: 'buffer', group: 'rope', optional: true });
  return out;
}

/**
 * The memory plan's view of Ouro: each layer's KV cache holds T loops × (K + V) per token and lives
 * with the layer; the home shard holds the RoPE tables and key positions for the whole context and
 * one call's work buffers (callBuffers in ouro.ts) for `rows` tokens.
 */
export function ouroMemory(c: OuroConfig): MemoryNeeds {
  const kvDim = c.numKvHeads * c.headDim, qDim = c.numHeads * c.headDim, H = c.hiddenSize;
  const kvPerToken = new Map<string, number>();
  for (let l = 0; l < c.numLayers; l++) kvPerToken.set(`layers.${l}`, c.totalUtSteps * 2 * kvDim);
  return {
    kvPerToken,
    hostKvPerToken: 0,
    workBytes: (context, rows) => {
      const tables = 4 * c.maxPositionEmbeddings * (c.headDim + 1); // cos, sin [maxPos, hd/2]; key positions [maxPos]
      const call = 4 * rows * (4 * H + 2 * qDim + 2 * kvDim + 2 * c.intermediateSize + 2 + c.vocabSize) + rows * context; // + the exclude mask
      return tables + call;
    },
    attentionUnits: c.numHeads,
    attentionHeadDim: c.headDim,
    maxContext: c.maxPositionEmbeddings,
    contextField: 'max_position_embeddings',
  };
}
