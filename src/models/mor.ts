/**
 * Mixture-of-Recursions (raymin0223/mixture_of_recursions @ 82c97f29), plus the vanilla Llama and
 * routing-free recursive baselines of the same code base. Semantics: shared/research/mor.md; our
 * causal decode mode: spec/mor.md.
 *
 * Structure, mirroring upstream's module tree:
 *   embed → prefix layers → recursion blocks 0..R-1 (routed) → suffix layers → norm → lm_head
 * - vanilla / recursive baseline: every layer is a prefix layer (aliased weights for recursive);
 * - expert-choice middle_cycle: prefix [L0], R blocks of bd layers (one router each), suffix [L_last];
 * - token-choice: the same blocks behind one H→R router; cycle sharing has no prefix/suffix.
 *
 * Batch rows are independent in every mode (per-row top-k, per-row caches), so a forward runs the
 * rows one after another on [T, ·] buffers. Each decoder layer keeps upstream's `layer_idx`, which
 * names its KV-cache slot; recursive KV sharing (RecursiveDynamicCache) maps layers onto slots.
 */
import { PonderError } from '../errors.js';
import type { LinearWeight } from '../kernels/kernels.js';
import type { Runtime } from '../runtime/runtime.js';
import { checkMemoryPlan, memoryPlan, type MemoryPlan } from '../runtime/plan.js';
import {
  configObject, optionalBool, optionalInt, optionalNumber, optionalString, requireInt, requireNumber, requireString,
  hasField, section, ignoreFields, configInconsistent, type ConfigObject,
} from '../format/config.js';
import { ropeTables } from './common.js';
import { cacheFull, checkContext, checkTokenIds, EmbeddingTable, type FloatDType } from './inputs.js';
import { Workspace } from '../runtime/workspace.js';
import { WeightBinder, type WeightSource } from './weights.js';
import {
  assignRecursion, causalRuns, DEFAULT_CAUSAL_THRESHOLD, expertProbs, expertTopK, geluErf, tokenProbs, topKAscending,
  type ExpertRouterFunc, type TokenRouterFunc,
} from './mor-routing.js';

const f32 = Math.fround;

// ---------------------------------------------------------------------------------------------
// Config

export type MorVariant = 'vanilla' | 'recursive' | 'expert' | 'token';
export type SharingStrategy = 'cycle' | 'sequence' | 'middle_cycle' | 'middle_sequence';

export interface LlamaDims {
  readonly vocab: number;
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;     // num_hidden_layers as given (before any subsampling)
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly eps: number;
  readonly ropeTheta: number;
  readonly maxPositions: number;
  readonly tieEmbeddings: boolean;
}

export interface MorConfig {
  readonly dims: LlamaDims;
  readonly variant: MorVariant;
  readonly sharing: SharingStrategy | null;
  readonly numRecursion: number;  // R (0 for vanilla)
  readonly lnShare: boolean;
  readonly capacity: readonly number[]; // expert-choice c_r
  readonly routerType: 'linear' | 'mlp';
  readonly temp: number;
  readonly expertRouterFunc: ExpertRouterFunc;
  readonly expertAlpha: number;
  readonly expertGated: boolean;  // gating == 'weighted'
  readonly expertAuxRouter: boolean; // sampling == 'aux_router': a training-only mlp_router is in the state dict
  readonly tokenRouterFunc: TokenRouterFunc;
  readonly tokenAlpha: number;
  readonly tokenLossFree: boolean;
  readonly tokenGated: boolean;
  readonly kvSharing: null | { readonly sharing: 'cycle' | 'middle_cycle' | 'sequence'; readonly numRecursion: number; readonly updateCache: boolean };
  /** upstream attn_implementation: only matters for token-choice under sdpa (see tokenRecursions) */
  readonly attention: 'eager' | 'sdpa' | 'flash_attention_2';
}

/**
 * Reads the upstream config: `{ model_config: LlamaConfig fields, cfg: { recursive, mor, kv_sharing } | null }`.
 * Every unsupported or inconsistent field is a CFG_FIELD / CFG_INCONSISTENT error naming it.
 */
export function parseMorConfig(config: unknown, path = 'config'): MorConfig {
  const root = configObject(config, path);
  const mc = section(root, 'model_config');
  const hidden = requireInt(mc, 'hidden_size', { min: 1 });
  const nHeads = requireInt(mc, 'num_attention_heads', { min: 1 });
  const nKvHeads = optionalInt(mc, 'num_key_value_heads', nHeads, { min: 1 });
  const headDim = optionalInt(mc, 'head_dim', Math.floor(hidden / nHeads), { min: 2 });
  if (nHeads % nKvHeads !== 0) throw configInconsistent(mc, 'num_key_value_heads', `num_key_value_heads (${nKvHeads}) must divide num_attention_heads (${nHeads})`);
  if (headDim % 2 !== 0) throw configInconsistent(mc, 'head_dim', `head_dim (${headDim}) must be even for RoPE`);
  const act = optionalString<string>(mc, 'hidden_act', 'silu');
  if (act !== 'silu') throw fieldUnsupported(mc, 'hidden_act', JSON.stringify(act), '"silu"');
  for (const f of ['attention_bias', 'mlp_bias'] as const) if (optionalBool(mc, f, false)) throw fieldUnsupported(mc, f, 'true', 'false (upstream Llama/SmolLM have no biases)');
  if (hasField(mc, 'rope_scaling')) throw fieldUnsupported(mc, 'rope_scaling', 'set', 'null (no RoPE scaling)');
  const tp = optionalInt(mc, 'pretraining_tp', 1);
  if (tp !== 1) throw fieldUnsupported(mc, 'pretraining_tp', String(tp), '1');
  const dims: LlamaDims = {
    vocab: requireInt(mc, 'vocab_size', { min: 1 }),
    hidden,
    intermediate: requireInt(mc, 'intermediate_size', { min: 1 }),
    layers: requireInt(mc, 'num_hidden_layers', { min: 1 }),
    nHeads, nKvHeads, headDim,
    eps: optionalNumber(mc, 'rms_norm_eps', 1e-6, { gt: 0 }),
    ropeTheta: optionalNumber(mc, 'rope_theta', 10000, { gt: 0 }),
    maxPositions: optionalInt(mc, 'max_position_embeddings', 2048, { min: 1 }),
    tieEmbeddings: optionalBool(mc, 'tie_word_embeddings', false),
  };
  ignoreFields(mc, 'initializer_range', 'use_cache', 'bos_token_id', 'eos_token_id', 'pad_token_id', 'attention_dropout', 'model_type');

  const base = {
    dims, sharing: null, numRecursion: 0, lnShare: true, capacity: [], routerType: 'linear' as const, temp: 1,
    expertRouterFunc: 'sigmoid' as ExpertRouterFunc, expertAlpha: 0.1, expertGated: true, expertAuxRouter: false,
    tokenRouterFunc: 'softmax' as TokenRouterFunc, tokenAlpha: 1, tokenLossFree: false, tokenGated: true, kvSharing: null,
    attention: 'eager' as MorConfig['attention'],
  };
  if (!hasField(root, 'cfg')) return { ...base, variant: 'vanilla' };
  const cfg = section(root, 'cfg');
  ignoreFields(cfg, 'model', 'precision', 'max_length', 'relaxation');
  const fromModelConfig = typeof mc.values._attn_implementation === 'string' ? mc.values._attn_implementation : 'eager';
  base.attention = optionalString(cfg, 'attn_implementation', fromModelConfig as MorConfig['attention'], ['eager', 'sdpa', 'flash_attention_2'] as const);
  const rec = hasField(cfg, 'recursive') ? section(cfg, 'recursive') : null;
  if (!rec || !optionalBool(rec, 'enable', false)) return { ...base, variant: 'vanilla' };
  ignoreFields(rec, 'initialization', 'base_depth');
  const sharing = requireString(rec, 'sharing', ['cycle', 'sequence', 'middle_cycle', 'middle_sequence'] as const);
  const R = requireInt(rec, 'num_recursion', { min: 1 });
  if (R === 1) throw fieldUnsupported(rec, 'num_recursion', '1', 'an integer >= 2 (num_recursion 1 means a plain, truncated Llama)');
  const middle = sharing.startsWith('middle');
  const bd = Math.floor((dims.layers - (middle ? 2 : 0)) / R);
  if (bd < 1) throw configInconsistent(rec, 'num_recursion', `num_recursion (${R}) leaves no layer per recursion with num_hidden_layers ${dims.layers} and ${sharing} sharing`);
  const lnShare = optionalBool(rec, 'ln_share', true);

  let kvSharing: MorConfig['kvSharing'] = null;
  if (hasField(cfg, 'kv_sharing')) {
    const kv = section(cfg, 'kv_sharing');
    ignoreFields(kv, 'base_depth');
    if (optionalBool(kv, 'enable', false)) {
      kvSharing = {
        sharing: requireString(kv, 'sharing', ['cycle', 'middle_cycle', 'sequence'] as const),
        numRecursion: requireInt(kv, 'num_recursion', { min: 1 }),
        updateCache: optionalBool(kv, 'update_cache', false),
      };
    } else ignoreFields(kv, 'sharing', 'num_recursion', 'update_cache');
  }

  const mor = hasField(cfg, 'mor') ? section(cfg, 'mor') : null;
  if (!mor || !optionalBool(mor, 'enable', false)) {
    if (mor) ignoreFields(mor, 'type', 'capacity', 'rand_router', 'router_type', 'z_loss', 'z_coeff', 'temp', 'expert', 'token');
    return { ...base, variant: 'recursive', sharing, numRecursion: R, lnShare, kvSharing };
  }
  const type = requireString(mor, 'type', ['expert', 'token'] as const);
  if (sharing !== 'cycle' && sharing !== 'middle_cycle') throw fieldUnsupported(rec, 'sharing', JSON.stringify(sharing), '"cycle" or "middle_cycle" (upstream MoR supports only these)');
  if (optionalBool(mor, 'rand_router', false)) throw fieldUnsupported(mor, 'rand_router', 'true', 'false (random router scores are a training ablation and not reproducible)');
  const routerType = optionalString(mor, 'router_type', 'linear', ['linear', 'mlp', 'wide_mlp'] as const);
  const temp = optionalNumber(mor, 'temp', 1, { gt: 0 });
  ignoreFields(mor, 'z_loss', 'z_coeff');

  if (type === 'expert') {
    const ex = section(mor, 'expert');
    ignoreFields(ex, 'cap_warmup_step', 'include_first', 'coeff');
    const capText = hasField(mor, 'capacity') ? requireString(mor, 'capacity') : Array.from({ length: R }, (_, i) => String((R - i) / R)).join(',');
    const capacity = capText.split(',').map((s) => Number(s.trim()));
    // top-k over the previous step's survivors needs 0 < c_r <= 1, non-increasing (util/config.py asserts it)
    if (capacity.length < R || capacity.some((c, i) => !Number.isFinite(c) || c <= 0 || c > 1 || (i > 0 && c > capacity[i - 1]))) {
      throw new PonderError('CFG_FIELD', `${path}: cfg.mor.capacity is ${JSON.stringify(capText)}`, { path, field: 'cfg.mor.capacity', hint: `a comma-separated list of ${R} non-increasing capacity factors in (0, 1], e.g. "1.0,0.66,0.33"` });
    }
    const rf = ex.values.router_func;
    ex.used.add('router_func');
    if (rf !== null && rf !== undefined && rf !== 'sigmoid' && rf !== 'tanh') throw fieldUnsupported(ex, 'router_func', JSON.stringify(rf), '"sigmoid", "tanh" or null');
    const sampling = optionalString(ex, 'sampling', 'aux_loss', ['aux_loss', 'aux_router'] as const);
    return {
      ...base, variant: 'expert', sharing, numRecursion: R, lnShare, kvSharing, capacity: capacity.slice(0, R),
      routerType: routerType === 'linear' ? 'linear' : 'mlp', temp,
      expertRouterFunc: (rf ?? null) as ExpertRouterFunc,
      expertAlpha: (rf === 'sigmoid' || rf === 'tanh') ? requireNumber(ex, 'alpha') : optionalNumber(ex, 'alpha', 0.1),
      expertGated: optionalString<string>(ex, 'gating', 'weighted') === 'weighted',
      expertAuxRouter: sampling === 'aux_router',
    };
  }
  ignoreFields(mor, 'capacity');
  const tk = section(mor, 'token');
  ignoreFields(tk, 'bal_warmup_step', 'coeff', 'u');
  const tokenRouterFunc: TokenRouterFunc = optionalString<string>(tk, 'router_func', 'softmax') === 'sigmoid' ? 'sigmoid' : 'softmax';
  return {
    ...base, variant: 'token', sharing, numRecursion: R, lnShare, kvSharing,
    routerType: routerType === 'linear' ? 'linear' : 'mlp', temp,
    tokenRouterFunc,
    tokenAlpha: optionalNumber(tk, 'alpha', tokenRouterFunc === 'sigmoid' ? 0.1 : 1.0),
    tokenLossFree: optionalString(tk, 'balancing', 'loss', ['loss', 'loss_free'] as const) === 'loss_free',
    tokenGated: optionalString<string>(tk, 'gating', 'weighted') === 'weighted',
  };
}

function fieldUnsupported(c: ConfigObject, field: string, got: string, want: string): PonderError {
  return new PonderError('CFG_FIELD', `${c.path}: ${c.prefix}${field} is ${got}; ponder supports ${want}`, { path: c.path, field: c.prefix + field, hint: 'this setting is not part of the released MoR models; check the config' });
}

// ---------------------------------------------------------------------------------------------
// Layout: which decoder layers run where, their state-dict names and cache slots

/** One decoder-layer site of the unrolled model. */
export interface LayerSite {
  readonly path: string;        // state-dict prefix, e.g. 'model.layers.2.block.0.'
  readonly slot: number;        // upstream self_attn.layer_idx: the KV-cache slot
  readonly linearOwner: number; // site whose q/k/v/o/gate/up/down this site shares (itself if unique)
  readonly normOwner: number;   // site whose RMSNorm weights it shares
}

export interface MorLayout {
  readonly sites: LayerSite[];
  readonly prefix: number[];    // sites run on every token before the recursions
  readonly blocks: number[][];  // blocks[r]: sites of recursion r (routed); empty without routing
  readonly suffix: number[];    // sites run on every token after the recursions
  readonly routerPaths: string[]; // expert: one 'model.layers.{m}.' per step; token: one for the MoR module
  /** hidden.layer{m}_out names: module index of each prefix/suffix site, and of each recursion (expert) or of the MoR module (token) */
  readonly prefixModules: number[];
  readonly suffixModules: number[];
  readonly recursionModules: number[];
}

/** numpy round(linspace(start, stop, num)) with Python's round-half-even. */
function linspaceRounded(start: number, stop: number, num: number): number[] {
  const out: number[] = [];
  const step = num > 1 ? (stop - start) / (num - 1) : 0;
  for (let i = 0; i < num; i++) {
    const v = i === num - 1 && num > 1 ? stop : start + i * step;
    const fl = Math.floor(v), diff = v - fl;
    out.push(diff > 0.5 ? fl + 1 : diff < 0.5 ? fl : (fl % 2 === 0 ? fl : fl + 1));
  }
  return out;
}

export function morLayout(cfg: MorConfig): MorLayout {
  const L = cfg.dims.layers;
  if (cfg.variant === 'vanilla') {
    const sites = Array.from({ length: L }, (_, i) => ({ path: `model.layers.${i}.`, slot: i, linearOwner: i, normOwner: i }));
    const all = sites.map((_, i) => i);
    return { sites, prefix: all, blocks: [], suffix: [], routerPaths: [], prefixModules: all, suffixModules: [], recursionModules: [] };
  }
  const R = cfg.numRecursion, sharing = cfg.sharing!;
  const middle = sharing === 'middle_cycle' || sharing === 'middle_sequence';
  const bd = Math.floor((L - (middle ? 2 : 0)) / R);
  // sharing_strategy: subsample the stack when bd·R does not fill it; modules keep their layer_idx
  let layerIdx = Array.from({ length: L }, (_, i) => i);
  if (middle && bd * R !== L - 2) layerIdx = [0, ...linspaceRounded(1, L - 2, bd * R), L - 1];
  if (!middle && bd * R !== L) layerIdx = linspaceRounded(0, L - 1, bd * R);
  const n = layerIdx.length;
  const linearOwner = Array.from({ length: n }, (_, i) => i);
  for (let j = 0; j < bd; j++) {
    const group = Array.from({ length: R }, (_, r) => {
      if (sharing === 'cycle') return j + r * bd;
      if (sharing === 'sequence') return j * R + r;
      if (sharing === 'middle_cycle') return 1 + j + r * bd;
      return 1 + j * R + r;
    });
    for (const p of group) linearOwner[p] = group[0];
  }
  const normOwner = linearOwner.map((o, i) => (cfg.lnShare ? o : i));
  const site = (p: number, path: string): LayerSite => ({ path, slot: layerIdx[p], linearOwner: linearOwner[p], normOwner: normOwner[p] });

  if (cfg.variant === 'recursive') {
    const sites = layerIdx.map((_, p) => site(p, `model.layers.${p}.`));
    const all = sites.map((_, i) => i);
    return { sites, prefix: all, blocks: [], suffix: [], routerPaths: [], prefixModules: all, suffixModules: [], recursionModules: [] };
  }
  // MoR transform: positions p of the shared stack become module paths
  const paths: string[] = new Array(n);
  const blocks: number[][] = [];
  const prefix: number[] = [], suffix: number[] = [];
  const off = middle ? 1 : 0;
  for (let r = 0; r < R; r++) {
    const block: number[] = [];
    for (let j = 0; j < bd; j++) {
      const p = off + j + r * bd;
      block.push(p);
      if (cfg.variant === 'expert') paths[p] = `model.layers.${off + r}.block.${j}.`;
      else paths[p] = middle ? `model.layers.1.block_list.${r}.${j}.` : `model.layers.block_list.${r}.${j}.`;
    }
    blocks.push(block);
  }
  if (middle) {
    paths[0] = 'model.layers.0.';
    prefix.push(0);
    paths[n - 1] = `model.layers.${cfg.variant === 'expert' ? R + 1 : 2}.`;
    suffix.push(n - 1);
  }
  const sites = paths.map((path, p) => site(p, path));
  const routerPaths = cfg.variant === 'expert'
    ? Array.from({ length: R }, (_, r) => `model.layers.${off + r}.`)
    : [middle ? 'model.layers.1.' : 'model.layers.'];
  return {
    sites, prefix, blocks, suffix, routerPaths,
    prefixModules: middle ? [0] : [],
    suffixModules: middle ? [cfg.variant === 'expert' ? R + 1 : 2] : [],
    recursionModules: cfg.variant === 'expert' ? Array.from({ length: R }, (_, r) => off + r) : Array.from({ length: R }, () => off),
  };
}

// ---------------------------------------------------------------------------------------------
// KV cache: upstream DynamicCache (one slot per layer_idx) or RecursiveDynamicCache (kv sharing)

/** Where a layer's keys/values go: `write` appends to that slot and attends to it; otherwise it attends to slot `read` and discards its own. */
export interface KvRole { readonly write: number | null; readonly read: number }

/** RecursiveDynamicCache.update, by layer_idx (model/kv_caches/cache_utils.py). */
export function recursiveKvRole(layerIdx: number, kv: NonNullable<MorConfig['kvSharing']>, bd: number): KvRole {
  const R = kv.numRecursion;
  if (kv.sharing === 'cycle') return layerIdx < bd ? { write: layerIdx, read: layerIdx } : { write: null, read: layerIdx % bd };
  if (kv.sharing === 'middle_cycle') {
    if (layerIdx === bd * R + 1) return { write: bd + 1, read: bd + 1 };
    if (layerIdx < bd + 1) return { write: layerIdx, read: layerIdx };
    return { write: null, read: 1 + ((layerIdx - 1) % bd) };
  }
  const s = Math.floor(layerIdx / R);
  return layerIdx % R === 0 ? { write: s, read: s } : { write: null, read: s };
}

export interface KvSlot {
  readonly k: Float32Array;   // [capacity, nKv*headDim], post-RoPE keys
  readonly v: Float32Array;   // [capacity, nKv*headDim]
  readonly pos: Int32Array;   // [capacity] absolute position of each stored token
  len: number;
}

interface RowCache {
  readonly slots: Map<number, KvSlot>;
  seen: number; // tokens fed to this row so far
}

export type DecodeMode = 'upstream' | 'causal';

/** A decoding context: per-row KV caches for up to `maxLen` tokens. */
export class MorSession {
  readonly rows: RowCache[];
  /** false for upstream's use_cache=False forward: every layer keeps its own fresh K/V (no sharing). */
  readonly sharesKv: boolean;
  /** set by the first forward: a session's cache follows one decode mode */
  mode: DecodeMode | null = null;
  /** set when a forward failed part-way: the caches may hold some of its tokens, so the session is unusable */
  failed = false;
  constructor(readonly model: MorModel, readonly batch: number, readonly maxLen: number, sharesKv: boolean, rows: RowCache[]) {
    this.rows = rows;
    this.sharesKv = sharesKv;
  }
  /** slot → number of stored tokens per row */
  slotLengths(row = 0): Map<number, number> {
    return new Map([...this.rows[row].slots].map(([s, slot]) => [s, slot.len]));
  }
}

/** The activation buffers of one batch row of up to `n` tokens (rows run one at a time), from the model's Workspace. */
function rowBuffers(ws: Workspace, cfg: MorConfig, n: number) {
  const d = cfg.dims, H = d.hidden, R = Math.max(cfg.numRecursion, 1);
  const qDim = d.nHeads * d.headDim, kvDim = d.nKvHeads * d.headDim;
  return {
    h: ws.f32('h', n * H),            // [n, H] residual stream of the current row
    x: ws.f32('x', n * H),            // [n, H] compacted block input / output
    x0: ws.f32('x0', n * H),          // [n, H] token-choice: MoR block input
    out: ws.f32('out', n * H),        // [n, H] token-choice: MoR block output
    xn: ws.f32('xn', n * H),          // [n, H] normalised input of a sub-layer
    q: ws.f32('q', n * qDim),         // [n, nHeads*headDim]
    k: ws.f32('k', n * kvDim),        // [n, nKv*headDim]
    v: ws.f32('v', n * kvDim),
    att: ws.f32('att', n * qDim),     // [n, nHeads*headDim]
    proj: ws.f32('proj', n * H),      // [n, H]
    gate: ws.f32('gate', n * d.intermediate), // [n, I]
    up: ws.f32('up', n * d.intermediate),
    routerIn: ws.f32('routerIn', n * H),       // [n, H]
    routerMid: ws.f32('routerMid', n * 2 * H), // [n, 2H] (MLP router hidden layer)
    routerOut: ws.f32('routerOut', n * R),     // [n, max(R,1)]
    logits: ws.f32('logits', n * d.vocab),     // [n, V]
    pos: ws.i32('pos', n),            // [n] positions of the compacted rows
    allPos: ws.i32('allPos', n),      // [n] positions of the call's tokens
    kvK: ws.f32('kvK', n * kvDim),    // [n, nKv*headDim] update_cache: temporary refreshed copy of a shared slot
    kvV: ws.f32('kvV', n * kvDim),
    probeIn: ws.f32('probeIn', H),    // [H] early read-out input
    probeOut: ws.f32('probeOut', d.vocab), // [V] early read-out logits
  };
}
type RowBuffers = ReturnType<typeof rowBuffers>;

// ---------------------------------------------------------------------------------------------
// Results: logits, per-token trace, optional captures of every intermediate tensor

/** What actually ran, per token of the call ([B,T] row-major). */
export interface ForwardTrace {
  readonly batch: number;
  readonly tokens: number;
  readonly numRecursion: number;
  /** recursions the token was routed through (expert: selected; token-choice: e+1; baselines: R or 0) */
  readonly depth: Int32Array;
  /** [B,T,R] raw router logits per step (expert; NaN where the token was not a candidate) or per recursion (token-choice) */
  readonly routerLogits: Float32Array;
  /** [B,T,R] router_probs (the gates' source), NaN where not computed */
  readonly routerProbs: Float32Array;
  /** recursion-block invocations the token's row went through (counts wasted rows of KV-sharing too) */
  readonly blockRuns: Int32Array;
  /** decoder-layer invocations on the token's row, prefix and suffix included */
  readonly layerRuns: Int32Array;
  /** multiply-add FLOPs spent on the token's row (2 per MAC; attention counts only visible keys) */
  readonly flops: Float64Array;
}

export interface Captured { readonly shape: number[]; readonly data: Float32Array | Int32Array; readonly int: boolean }
/** Per batch row: name (e.g. 'rec1.selected', 'hidden.layer0_out') → tensor of that row. */
export type RowCaptures = Map<string, Captured>;

export interface ForwardResult {
  readonly logits: Float32Array; // [B,T,V]
  readonly trace: ForwardTrace;
  readonly captures: RowCaptures[] | null;
}

export interface ForwardOptions {
  /** 'upstream' (default): exactly upstream. 'causal': expert-choice threshold routing (spec/mor.md). */
  readonly mode?: DecodeMode;
  /** causal mode: a token runs step r iff sigmoid(router logit) >= threshold (default 0.5) */
  readonly threshold?: number;
  /** record every intermediate tensor (for conformance); costs copies */
  readonly capture?: boolean;
  /**
   * causal mode, expert choice: decides whether a token that ran recursions 0..r−1 runs recursion r
   * (r ≥ 1) in place of the router threshold (the routers still score it, for the trace). `hidden`
   * is its residual stream [H] before recursion r; `logits()` = lm_head(norm(hidden)) [V], an
   * early read-out that skips the suffix layers, its FLOPs counted on the token.
   */
  readonly stepCheck?: (recursion: number, token: number, hidden: Float32Array, logits: () => Float32Array) => boolean;
}

// ---------------------------------------------------------------------------------------------
// Weights

interface LayerWeights {
  readonly inputNorm: Float32Array; // [H]
  readonly postNorm: Float32Array;  // [H]
  readonly q: LinearWeight; readonly k: LinearWeight; readonly v: LinearWeight; readonly o: LinearWeight;
  readonly gate: LinearWeight; readonly up: LinearWeight; readonly down: LinearWeight;
}

/** update_cache: block rows whose fresh K/V replace the shared slot's rows (by call index as upstream, or by position). */
interface CacheRefresh { readonly rows: number[]; readonly byPosition: boolean }

interface RouterWeights { readonly linear: LinearWeight | null; readonly mlpIn: LinearWeight | null; readonly mlpOut: LinearWeight | null; readonly out: number }

export interface LoadOptions {
  /** longest sequence a session may hold (prompt + generated); default max_position_embeddings */
  readonly maxLen?: number;
}

/** Loads a MoR / recursive / vanilla checkpoint named by upstream state_dict names. */
export function loadMor(source: WeightSource, config: unknown, runtime: Runtime, opts: LoadOptions = {}): MorModel {
  const cfg = parseMorConfig(config, source.label);
  return new MorModel(cfg, source, runtime, opts);
}

export class MorModel {
  readonly layout: MorLayout;
  readonly plan: MemoryPlan;
  readonly maxLen: number;
  private readonly layerWeights: LayerWeights[] = []; // per site (shared sites hold the same objects)
  private readonly routers: RouterWeights[] = [];
  private readonly routerBias: Float32Array | null = null;
  private readonly embedding: EmbeddingTable; // [V, H] in its stored dtype
  private readonly lmHead: LinearWeight;   // [V, H]
  private readonly finalNorm: Float32Array;
  private stepCheck: ForwardOptions['stepCheck'] | null = null; // set by each forward
  private readonly cos: Float32Array;
  private readonly sin: Float32Array;
  private readonly scratch: RowBuffers;

  constructor(readonly config: MorConfig, source: WeightSource, readonly runtime: Runtime, opts: LoadOptions) {
    const d = config.dims, H = d.hidden, R = config.numRecursion;
    this.layout = morLayout(config);
    this.maxLen = opts.maxLen ?? d.maxPositions;
    if (!Number.isInteger(this.maxLen) || this.maxLen < 1) throw new PonderError('CFG_FIELD', `maxLen is ${this.maxLen}`, { field: 'maxLen', hint: 'a positive integer' });

    // Declarations: every state_dict name with its shape; each shared group is bound once.
    const binder = new WeightBinder(source, runtime);
    const qDim = d.nHeads * d.headDim, kvDim = d.nKvHeads * d.headDim;
    const linearShapes: Record<string, [number, number]> = {
      'self_attn.q_proj.weight': [qDim, H], 'self_attn.k_proj.weight': [kvDim, H], 'self_attn.v_proj.weight': [kvDim, H],
      'self_attn.o_proj.weight': [H, qDim], 'mlp.gate_proj.weight': [d.intermediate, H], 'mlp.up_proj.weight': [d.intermediate, H],
      'mlp.down_proj.weight': [H, d.intermediate],
    };
    const normNames = ['input_layernorm.weight', 'post_attention_layernorm.weight'];
    const sites = this.layout.sites;
    // Alias groups: the owner's name (canonical) → every state_dict name of that one shared parameter.
    const groups = new Map<string, { names: string[]; shape: readonly number[] }>();
    const addToGroup = (canonical: string, name: string, shape: readonly number[]) => {
      if (!groups.has(canonical)) groups.set(canonical, { names: [], shape });
      groups.get(canonical)!.names.push(name);
    };
    for (const s of sites) {
      for (const [n, shape] of Object.entries(linearShapes)) addToGroup(sites[s.linearOwner].path + n, s.path + n, shape);
      for (const n of normNames) addToGroup(sites[s.normOwner].path + n, s.path + n, [H]);
    }
    // Upstream's state_dict() lists every alias (and its strict load needs them all); a checkpoint saved
    // with shared tensors removed (safetensors' de-duplication) keeps exactly one name per group. Accept
    // either, consistently: any other mix is a missing-tensor error naming the absent aliases.
    const shared = [...groups.values()].filter((g) => g.names.length > 1);
    const deduplicated = shared.length > 0 && shared.every((g) => g.names.filter((n) => source.info(n) !== undefined).length === 1);
    const stored = new Map<string, string>(); // canonical name → the name its values are read from
    let weightBytes = 0;
    for (const [canonical, g] of groups) {
      weightBytes += 4 * g.shape.reduce((a, b) => a * b, 1);
      if (deduplicated && g.names.length > 1) {
        const present = g.names.find((n) => source.info(n) !== undefined)!;
        binder.need(present, g.shape);
        stored.set(canonical, present);
      } else {
        for (const n of g.names) binder.need(n, g.shape);
        stored.set(canonical, canonical);
      }
    }
    binder.need('model.embed_tokens.weight', [d.vocab, H]);
    binder.need('lm_head.weight', [d.vocab, H]);
    binder.need('model.norm.weight', [H]);
    weightBytes += 4 * d.vocab * H; // the lm_head Linear (the embedding stays in its file buffer)
    const routerOut = config.variant === 'token' ? R : 1;
    for (const rp of this.layout.routerPaths) {
      if (config.routerType === 'linear') binder.need(rp + 'mor_router.router.weight', [routerOut, H]);
      else { binder.need(rp + 'mor_router.router.0.weight', [2 * H, H]); binder.need(rp + 'mor_router.router.2.weight', [routerOut, 2 * H]); }
      if (config.expertAuxRouter) {
        if (config.routerType === 'linear') binder.need(rp + 'mlp_router.router.weight', [1, H]);
        else { binder.need(rp + 'mlp_router.router.0.weight', [2 * H, H]); binder.need(rp + 'mlp_router.router.2.weight', [1, 2 * H]); }
      }
    }
    if (config.variant === 'token' && config.tokenLossFree) binder.need(this.layout.routerPaths[0] + 'router_bias', [R]);

    // Memory plan before any tensor is read.
    const writeSlots = this.writeSlots(true);
    const kvBytes = writeSlots.size * this.maxLen * (2 * kvDim * 4 + 4);
    const act = this.maxLen * (4 * (9 * H + 2 * qDim + 4 * kvDim + 2 * d.intermediate + Math.max(R, 1) + d.vocab) + 8) + 4 * (H + d.vocab); // rowBuffers()
    this.plan = memoryPlan(weightBytes, kvBytes, act + 4 * d.maxPositions * d.headDim);
    checkMemoryPlan(this.plan, source.label);

    binder.finish();
    if (!deduplicated) this.checkAliases(source, binder, shared.map((g) => g.names));

    const bound = new Map<number, LayerWeights>();
    const norms = new Map<number, [Float32Array, Float32Array]>();
    for (let i = 0; i < sites.length; i++) {
      const s = sites[i];
      if (!norms.has(s.normOwner)) {
        const p = sites[s.normOwner].path;
        norms.set(s.normOwner, [binder.f32(stored.get(p + normNames[0])!), binder.f32(stored.get(p + normNames[1])!)]);
      }
      if (!bound.has(s.linearOwner)) {
        const lin = (n: string) => binder.linear(stored.get(sites[s.linearOwner].path + n)!);
        bound.set(s.linearOwner, {
          inputNorm: null as unknown as Float32Array, postNorm: null as unknown as Float32Array,
          q: lin('self_attn.q_proj.weight'), k: lin('self_attn.k_proj.weight'), v: lin('self_attn.v_proj.weight'), o: lin('self_attn.o_proj.weight'),
          gate: lin('mlp.gate_proj.weight'), up: lin('mlp.up_proj.weight'), down: lin('mlp.down_proj.weight'),
        });
      }
      const lin = bound.get(s.linearOwner)!;
      const [inputNorm, postNorm] = norms.get(s.normOwner)!;
      this.layerWeights.push({ ...lin, inputNorm, postNorm });
    }
    const embedInfo = source.info('model.embed_tokens.weight')!;
    this.embedding = new EmbeddingTable(embedInfo.dtype as FloatDType, binder.raw('model.embed_tokens.weight'), d.vocab, H);
    // The head always reads lm_head.weight: with tie_word_embeddings it holds the embedding's values, and a
    // checkpoint whose model did not tie them (the recursive baseline's class) keeps its own head.
    this.lmHead = binder.linear('lm_head.weight');
    this.finalNorm = binder.f32('model.norm.weight');
    for (const rp of this.layout.routerPaths) {
      this.routers.push(config.routerType === 'linear'
        ? { linear: binder.linear(rp + 'mor_router.router.weight'), mlpIn: null, mlpOut: null, out: routerOut }
        : { linear: null, mlpIn: binder.linear(rp + 'mor_router.router.0.weight'), mlpOut: binder.linear(rp + 'mor_router.router.2.weight'), out: routerOut });
    }
    if (config.variant === 'token' && config.tokenLossFree) this.routerBias = binder.f32(this.layout.routerPaths[0] + 'router_bias');
    ({ cos: this.cos, sin: this.sin } = ropeTables(runtime, d.headDim, Math.max(this.maxLen, 1), d.ropeTheta));
    this.scratch = rowBuffers(new Workspace(runtime), config, this.maxLen);
  }

  /** Every alias of a shared tensor must hold the same values (upstream aliases one Parameter). */
  private checkAliases(source: WeightSource, binder: WeightBinder, groups: string[][]): void {
    const problems: string[] = [];
    for (const g of groups) {
      const ref = bytesOf(binder.raw(g[0]));
      for (const name of g.slice(1)) {
        const other = bytesOf(binder.raw(name));
        let same = ref.length === other.length && source.info(name)!.dtype === source.info(g[0])!.dtype;
        for (let i = 0; same && i < ref.length; i++) if (ref[i] !== other[i]) same = false;
        if (!same) problems.push(`${name} differs from ${g[0]} (they alias one shared parameter)`);
      }
    }
    if (problems.length > 0) {
      throw new PonderError('BIND_MISMATCH', `${source.label}: shared weights differ (${problems.length}):\n  ${problems.join('\n  ')}`,
        { path: source.label, tensor: problems[0].split(' ')[0], hint: 'the checkpoint does not match the sharing strategy in the config (recursive.sharing / ln_share), or was trained with unshared attention (upstream issue #17)' });
    }
  }

  /** Cache slots written by some layer under the sharing policy (or every layer's own slot). */
  private writeSlots(sharesKv: boolean): Set<number> {
    const out = new Set<number>();
    for (const s of this.layout.sites) {
      const role = this.kvRole(s.slot, sharesKv);
      if (role.write !== null) out.add(role.write);
    }
    return out;
  }

  private kvRole(layerIdx: number, sharesKv: boolean): KvRole {
    const kv = this.config.kvSharing;
    if (!kv || !sharesKv) return { write: layerIdx, read: layerIdx };
    // set_kv_sharing_config: base depth from the (rewritten) layer count and kv_sharing.num_recursion
    const n = this.layout.sites.length;
    const bd = kv.sharing === 'middle_cycle' ? Math.floor((n - 2) / kv.numRecursion) : Math.floor(n / kv.numRecursion);
    return recursiveKvRole(layerIdx, kv, bd);
  }

  /**
   * A fresh decoding context for `batch` rows of up to `maxLen` tokens. `useCache: false` mirrors
   * upstream's use_cache=False forward (no RecursiveDynamicCache: KV sharing does not share).
   */
  newSession(batch: number, maxLen = this.maxLen, opts: { useCache?: boolean } = {}): MorSession {
    if (!Number.isInteger(batch) || batch < 1) throw new PonderError('INPUT_SHAPE', `batch size ${batch}`, { hint: 'a positive integer' });
    if (!Number.isInteger(maxLen) || maxLen < 1) throw new PonderError('INPUT_SHAPE', `session length ${maxLen}`, { field: 'maxLen', hint: 'a positive integer' });
    checkContext(maxLen, this.maxLen, `a session of ${maxLen} tokens`, 'max_position_embeddings (or the maxLen the model was loaded with)');
    const sharesKv = opts.useCache ?? true;
    const a = this.runtime.arena, d = this.config.dims;
    const kvDim = d.nKvHeads * d.headDim;
    const kvBytes = batch * this.writeSlots(sharesKv).size * maxLen * (2 * kvDim * 4 + 4);
    checkMemoryPlan(memoryPlan(this.plan.weights, kvBytes, this.plan.activations), `a session of ${batch} × ${maxLen} tokens`);
    const rows: RowCache[] = [];
    for (let b = 0; b < batch; b++) {
      const slots = new Map<number, KvSlot>();
      for (const s of [...this.writeSlots(sharesKv)].sort((x, y) => x - y)) slots.set(s, { k: a.f32(maxLen * kvDim), v: a.f32(maxLen * kvDim), pos: a.i32(maxLen), len: 0 });
      rows.push({ slots, seen: 0 });
    }
    return new MorSession(this, batch, maxLen, sharesKv, rows);
  }

  /**
   * Runs `ids` ([B][T]) through the model, appending to the session's caches. T may be the whole
   * prompt (prefill) or 1 (a decode step); every row must have the same T.
   */
  forward(session: MorSession, ids: readonly (readonly number[])[], opts: ForwardOptions = {}): ForwardResult {
    const d = this.config.dims, R = this.config.numRecursion;
    const mode = opts.mode ?? 'upstream';
    const threshold = opts.threshold ?? DEFAULT_CAUSAL_THRESHOLD;
    if (mode === 'causal' && !(threshold >= 0 && threshold <= 1)) throw new PonderError('CFG_FIELD', `causal threshold ${threshold} is outside [0, 1]`, { field: 'threshold', hint: 'a probability, default 0.5' });
    if (session.model !== this) throw new PonderError('INPUT_SESSION', 'the session belongs to another model', { hint: 'create sessions with model.newSession()' });
    if (session.failed) throw new PonderError('INPUT_SESSION', 'an earlier call on this session failed part-way, so its caches are incomplete', { hint: 'start a new session' });
    if (session.mode !== null && session.mode !== mode) throw new PonderError('INPUT_SESSION', `the session was started in ${session.mode} mode, not ${mode}`, { hint: 'a cache built by one decode mode cannot be continued by the other; start a new session' });
    if (ids.length !== session.batch) throw new PonderError('INPUT_SHAPE', `input has ${ids.length} rows, the session ${session.batch}`, { hint: 'one id list per batch row' });
    const T = ids[0]?.length ?? 0;
    if (T < 1) throw new PonderError('INPUT_SHAPE', 'empty input', { hint: 'give at least one token id per row' });
    for (let b = 0; b < ids.length; b++) {
      if (ids[b].length !== T) throw new PonderError('INPUT_SHAPE', `row ${b} has ${ids[b].length} tokens, row 0 has ${T}`, { hint: 'all rows of a call must have the same length' });
      checkTokenIds(ids[b], d.vocab, `ids[${b}]`);
      if (session.rows[b].seen + T > session.maxLen) throw cacheFull(session.rows[b].seen, T, session.maxLen);
    }
    session.mode = mode;
    this.stepCheck = opts.stepCheck ?? null;
    const B = ids.length, Rt = Math.max(R, 1);
    const logits = new Float32Array(B * T * d.vocab);
    const trace: ForwardTrace = {
      batch: B, tokens: T, numRecursion: R,
      depth: new Int32Array(B * T), routerLogits: new Float32Array(B * T * Rt).fill(NaN), routerProbs: new Float32Array(B * T * Rt).fill(NaN),
      blockRuns: new Int32Array(B * T), layerRuns: new Int32Array(B * T), flops: new Float64Array(B * T),
    };
    const captures: RowCaptures[] | null = opts.capture ? [] : null;
    try {
      for (let b = 0; b < B; b++) {
        const cap: RowCaptures | null = captures ? new Map() : null;
        this.forwardRow(session, b, ids[b], mode, threshold, trace, cap);
        logits.set(this.scratch.logits.subarray(0, T * d.vocab), b * T * d.vocab);
        if (captures) captures.push(cap!);
      }
    } catch (e) {
      session.failed = true;
      throw e;
    }
    for (let i = 0; i < logits.length; i++) {
      if (!Number.isFinite(logits[i])) {
        const row = Math.floor(i / (T * d.vocab)), t = Math.floor(i / d.vocab) % T;
        throw new PonderError('NUM_NONFINITE', `logits of row ${row} at position ${session.rows[row].seen - T + t} contain ${logits[i]}`, { hint: 'the checkpoint holds NaN/Inf or values that overflow float32; check the weights' });
      }
    }
    return { logits, trace, captures };
  }

  /** Greedy next token of each row from a [B,T,V] logits block: argmax of the last position (ties to the lower id). */
  static lastArgmax(logits: Float32Array, B: number, T: number, V: number): number[] {
    const out: number[] = [];
    for (let b = 0; b < B; b++) {
      const o = (b * T + T - 1) * V;
      let best = 0;
      for (let i = 0; i < V; i++) {
        if (Number.isNaN(logits[o + i])) throw new PonderError('NUM_NONFINITE', `logits of row ${b} contain NaN`, { hint: 'the checkpoint or the input produced NaN' });
        if (logits[o + i] > logits[o + best]) best = i;
      }
      out.push(best);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------

  private forwardRow(session: MorSession, b: number, ids: readonly number[], mode: DecodeMode, threshold: number, trace: ForwardTrace, cap: RowCaptures | null): void {
    const d = this.config.dims, H = d.hidden, T = ids.length, k = this.runtime.kernels;
    const s = this.scratch, row = session.rows[b];
    // cache_position = past + arange(T), past = length of cache slot 0 (get_seq_length()); our own count when slot 0 is not written
    const slot0 = row.slots.get(0);
    const past = mode === 'upstream' && slot0 ? slot0.len : row.seen;
    for (let t = 0; t < T; t++) s.allPos[t] = past + t;
    this.embedding.rows(ids, s.h);
    if (cap) capF32(cap, 'hidden.embed', s.h, [T, H]);
    const tr = { trace, base: b * T };

    this.runSites(session, row, this.layout.prefix, s.h, T, s.allPos, null, tr, this.layout.prefixModules, cap);
    if (this.config.variant === 'expert') this.expertRecursions(session, row, T, mode, threshold, tr, cap);
    else if (this.config.variant === 'token') this.tokenRecursions(session, row, T, tr, cap);
    else for (let t = 0; t < T; t++) trace.depth[tr.base + t] = this.config.numRecursion;
    this.runSites(session, row, this.layout.suffix, s.h, T, s.allPos, null, tr, this.layout.suffixModules, cap);

    k.rmsnorm(s.xn, s.h, this.finalNorm, T, H, d.eps);
    if (cap) capF32(cap, 'hidden.final_norm', s.xn, [T, H]);
    k.linear(s.logits, s.xn, this.lmHead, T);
    for (let t = 0; t < T; t++) trace.flops[tr.base + t] += 2 * H * d.vocab;
    if (cap) {
      capF32(cap, 'logits', s.logits, [T, d.vocab]);
      const depth = trace.depth.subarray(tr.base, tr.base + T);
      cap.set('depth', { shape: [T], data: Int32Array.from(depth), int: true });
    }
    row.seen += T;
  }

  /** Runs sites one after another on x[n,H] in place (rows at positions pos); rowsOfCall maps compacted rows to call rows for the trace. */
  private runSites(session: MorSession, row: RowCache, sites: number[], x: Float32Array, n: number, pos: Int32Array,
    rowsOfCall: Int32Array | number[] | null, tr: { trace: ForwardTrace; base: number }, modules: number[] | null, cap: RowCaptures | null,
    capPrefix?: string, update?: CacheRefresh | null, causal = true): void {
    const H = this.config.dims.hidden;
    for (let i = 0; i < sites.length; i++) {
      this.decoderLayer(session, row, sites[i], x, n, pos, rowsOfCall, tr, update ?? null, causal);
      if (cap && modules) capF32(cap, `hidden.layer${modules[i]}_out`, x, [n, H]);
      if (cap && capPrefix) capF32(cap, `${capPrefix}.block_layer${i}.out`, x, [n, H]);
    }
  }

  /**
   * One LlamaDecoderLayer on x[n,H] in place: x += Attn(RMSNorm(x)); x += MLP(RMSNorm(x)).
   * The new keys/values (post-RoPE) go to the layer's cache slot, or, for a layer that reads a
   * shared slot (recursive KV sharing), are discarded — unless update_cache refreshes the rows of
   * the selected tokens in a temporary copy.
   */
  private decoderLayer(session: MorSession, row: RowCache, site: number, x: Float32Array, n: number, pos: Int32Array,
    rowsOfCall: Int32Array | number[] | null, tr: { trace: ForwardTrace; base: number }, update: CacheRefresh | null, causal = true): void {
    const d = this.config.dims, k = this.runtime.kernels, s = this.scratch, w = this.layerWeights[site];
    const H = d.hidden, qDim = d.nHeads * d.headDim, kvDim = d.nKvHeads * d.headDim;
    k.rmsnorm(s.xn, x, w.inputNorm, n, H, d.eps);
    k.linear(s.q, s.xn, w.q, n);
    k.linear(s.k, s.xn, w.k, n);
    k.linear(s.v, s.xn, w.v, n);
    k.rope(s.q, n, d.nHeads, d.headDim, qDim, this.cos, this.sin, pos, 'half');
    k.rope(s.k, n, d.nKvHeads, d.headDim, kvDim, this.cos, this.sin, pos, 'half');
    const role = this.kvRole(this.layout.sites[site].slot, session.sharesKv);
    let keys: Float32Array, values: Float32Array, kPos: Int32Array, Tk: number;
    if (role.write !== null) {
      const slot = row.slots.get(role.write)!;
      if (slot.len + n > session.maxLen) throw cacheFull(slot.len, n, session.maxLen);
      slot.k.set(s.k.subarray(0, n * kvDim), slot.len * kvDim);
      slot.v.set(s.v.subarray(0, n * kvDim), slot.len * kvDim);
      slot.pos.set(pos.subarray(0, n), slot.len);
      slot.len += n;
      keys = slot.k; values = slot.v; kPos = slot.pos; Tk = slot.len;
    } else {
      const slot = row.slots.get(role.read);
      if (!slot) throw new PonderError('MOR_CACHE', `layer ${this.layout.sites[site].path} reads shared cache slot ${role.read}, which no layer writes`, { hint: 'kv_sharing does not fit this layer stack' });
      keys = slot.k; values = slot.v; kPos = slot.pos; Tk = slot.len;
      if (this.config.kvSharing?.updateCache && update) {
        // RecursiveDynamicCache with update_cache: a temporary copy of the shared slot whose rows of the
        // selected tokens hold this layer's fresh K/V. Upstream scatters at the tokens' indices within the
        // current call (so a decode step refreshes cache row 0); our causal mode uses the token's position.
        s.kvK.set(slot.k.subarray(0, Tk * kvDim));
        s.kvV.set(slot.v.subarray(0, Tk * kvDim));
        for (const i of update.rows) {
          let cacheRow = i;
          if (update.byPosition) { cacheRow = -1; for (let j = 0; j < Tk; j++) if (kPos[j] === pos[i]) cacheRow = j; }
          if (cacheRow < 0 || cacheRow >= Tk) continue;
          s.kvK.set(s.k.subarray(i * kvDim, (i + 1) * kvDim), cacheRow * kvDim);
          s.kvV.set(s.v.subarray(i * kvDim, (i + 1) * kvDim), cacheRow * kvDim);
        }
        keys = s.kvK; values = s.kvV;
      }
    }
    k.attention(s.att, s.q, keys, values, n, Tk, d.nHeads, d.nKvHeads, d.headDim, 1 / Math.sqrt(d.headDim), causal ? pos : null, causal ? kPos : null, null);
    k.linear(s.proj, s.att, w.o, n);
    k.add(x, x, s.proj, n * H);
    k.rmsnorm(s.xn, x, w.postNorm, n, H, d.eps);
    k.linear(s.gate, s.xn, w.gate, n);
    k.linear(s.up, s.xn, w.up, n);
    k.siluMul(s.gate, s.gate, s.up, n * d.intermediate);
    k.linear(s.proj, s.gate, w.down, n);
    k.add(x, x, s.proj, n * H);
    // compute actually done on each row
    const linFlops = 2 * H * (2 * qDim + 2 * kvDim) + 2 * 3 * H * d.intermediate;
    for (let i = 0; i < n; i++) {
      let visible = 0;
      for (let j = 0; j < Tk; j++) if (!causal || kPos[j] <= pos[i]) visible++;
      const t = rowsOfCall ? rowsOfCall[i] : i;
      tr.trace.layerRuns[tr.base + t]++;
      tr.trace.flops[tr.base + t] += linFlops + 4 * visible * qDim;
    }
  }

  /** router(x/temp) for rows x[n,H] → s.routerOut[n, out] */
  private runRouter(session: MorSession, router: RouterWeights, x: Float32Array, n: number, tr: { trace: ForwardTrace; base: number }, rowsOfCall: ArrayLike<number>): Float32Array {
    const k = this.runtime.kernels, s = this.scratch, H = this.config.dims.hidden, temp = this.config.temp;
    let input = x;
    if (temp !== 1) {
      for (let i = 0; i < n * H; i++) s.routerIn[i] = f32(x[i] / temp);
      input = s.routerIn;
    }
    if (router.linear) k.linear(s.routerOut, input, router.linear, n);
    else {
      k.linear(s.routerMid, input, router.mlpIn!, n);
      for (let i = 0; i < n * 2 * H; i++) s.routerMid[i] = geluErf(s.routerMid[i]);
      k.linear(s.routerOut, s.routerMid, router.mlpOut!, n);
    }
    const per = router.linear ? 2 * H * router.out : 2 * H * 2 * H + 2 * 2 * H * router.out;
    for (let i = 0; i < n; i++) tr.trace.flops[tr.base + rowsOfCall[i]] += per;
    return s.routerOut;
  }

  /**
   * Expert-choice recursions on s.h[T,H] (expert_choice_router.py:MoRLlamaDecoderLayer.forward):
   * per step, score the candidates, keep the top k_r (upstream) or those over the threshold (causal),
   * run the block on them at their original positions, and update h ← h + g·Block(h) on those rows.
   */
  /** lm_head(norm(h[t])) [V] for a stepCheck, in buffers of its own (s.x and s.h are in use). */
  private earlyReadout(h: Float32Array, t: number, tr: { trace: ForwardTrace; base: number }): Float32Array {
    const d = this.config.dims, H = d.hidden, k = this.runtime.kernels;
    const { probeIn, probeOut } = this.scratch;
    probeIn.set(h.subarray(t * H, (t + 1) * H));
    k.rmsnorm(probeIn, probeIn, this.finalNorm, 1, H, d.eps);
    k.linear(probeOut, probeIn, this.lmHead, 1);
    tr.trace.flops[tr.base + t] += 2 * H * d.vocab;
    return probeOut.slice(0, d.vocab);
  }

  private expertRecursions(session: MorSession, row: RowCache, T: number, mode: DecodeMode, threshold: number, tr: { trace: ForwardTrace; base: number }, cap: RowCaptures | null): void {
    const cfg = this.config, H = cfg.dims.hidden, R = cfg.numRecursion, s = this.scratch;
    const kvShareBlock = cfg.kvSharing !== null; // upstream runs the block on all T tokens whenever kv_sharing is enabled
    let candidates: number[] = Array.from({ length: T }, (_, t) => t);
    const probs = new Float32Array(T);
    for (let r = 0; r < R; r++) {
      const nc = candidates.length;
      const capName = `rec${r}`;
      if (cap) cap.set(`${capName}.candidates`, { shape: [nc], data: Int32Array.from(candidates), int: true });
      if (nc === 0) { // causal mode only: nobody reached this step
        if (cap) this.captureEmptyStep(cap, capName, T);
        continue;
      }
      for (let i = 0; i < nc; i++) s.x.set(s.h.subarray(candidates[i] * H, (candidates[i] + 1) * H), i * H);
      const logits = this.runRouter(session, this.routers[r], s.x, nc, tr, candidates);
      expertProbs(probs, logits, nc, cfg.expertRouterFunc, cfg.expertAlpha);
      for (let i = 0; i < nc; i++) {
        tr.trace.routerLogits[(tr.base + candidates[i]) * R + r] = logits[i];
        tr.trace.routerProbs[(tr.base + candidates[i]) * R + r] = probs[i];
      }
      if (cap) {
        cap.set(`${capName}.router_logits`, { shape: [nc], data: Float32Array.from(logits.subarray(0, nc)), int: false });
        cap.set(`${capName}.router_probs`, { shape: [nc], data: Float32Array.from(probs.subarray(0, nc)), int: false });
      }
      let chosen: number[];
      if (mode === 'upstream') chosen = topKAscending(probs, nc, expertTopK(cfg.capacity[r], T), `expert router step ${r}`);
      else {
        chosen = [];
        for (let i = 0; i < nc; i++) {
          const t = candidates[i];
          const runs = this.stepCheck && r > 0
            ? this.stepCheck(r, t, s.h.subarray(t * H, (t + 1) * H), () => this.earlyReadout(s.h, t, tr))
            : causalRuns(logits[i], threshold, cfg.capacity[r], `expert router step ${r}`);
          if (runs) chosen.push(i);
        }
      }
      const selected = chosen.map((i) => candidates[i]);
      const gates = chosen.map((i) => probs[i]);
      if (cap) {
        cap.set(`${capName}.selected`, { shape: [selected.length], data: Int32Array.from(selected), int: true });
        cap.set(`${capName}.gate`, { shape: [gates.length], data: Float32Array.from(gates), int: false });
        const mask = new Int32Array(T);
        for (const t of selected) mask[t] = 1;
        cap.set(`${capName}.selected_mask`, { shape: [T], data: mask, int: true });
      }
      for (const t of selected) tr.trace.depth[tr.base + t]++;

      // The block's rows: every token when kv_sharing (upstream mode), else the selected ones, compacted.
      const runAll = kvShareBlock && mode === 'upstream';
      const blockRows = runAll ? Array.from({ length: T }, (_, t) => t) : selected;
      const n = blockRows.length;
      if (n > 0) {
        for (let i = 0; i < n; i++) {
          s.x.set(s.h.subarray(blockRows[i] * H, (blockRows[i] + 1) * H), i * H);
          s.pos[i] = s.allPos[blockRows[i]];
          tr.trace.blockRuns[tr.base + blockRows[i]]++;
        }
        if (cap) capF32(cap, `${capName}.block_in`, s.x, [n, H]);
        const update: CacheRefresh = runAll ? { rows: selected, byPosition: false } : { rows: selected.map((_, i) => i), byPosition: true };
        this.runSites(session, row, this.layout.blocks[r], s.x, n, s.pos, blockRows, tr, null, cap, capName, update);
        // h[t] += g_t · Y_t (gating 'weighted') or h[t] += Y_t; unselected rows are untouched
        for (let j = 0; j < selected.length; j++) {
          const t = selected[j];
          const yRow = runAll ? t : j;
          const hOff = t * H, yOff = yRow * H;
          if (cfg.expertGated) { const g = gates[j]; for (let i = 0; i < H; i++) s.h[hOff + i] = f32(s.h[hOff + i] + f32(s.x[yOff + i] * g)); }
          else for (let i = 0; i < H; i++) s.h[hOff + i] = f32(s.h[hOff + i] + s.x[yOff + i]);
        }
      } else if (cap) {
        cap.set(`${capName}.block_in`, { shape: [0, H], data: new Float32Array(0), int: false });
      }
      if (cap) {
        capF32(cap, `${capName}.hidden_out`, s.h, [T, H]);
        capF32(cap, `hidden.layer${this.layout.recursionModules[r]}_out`, s.h, [T, H]);
      }
      candidates = selected;
    }
  }

  private captureEmptyStep(cap: RowCaptures, name: string, T: number): void {
    const H = this.config.dims.hidden;
    for (const n of ['router_logits', 'router_probs', 'gate']) cap.set(`${name}.${n}`, { shape: [0], data: new Float32Array(0), int: false });
    cap.set(`${name}.selected`, { shape: [0], data: new Int32Array(0), int: true });
    cap.set(`${name}.selected_mask`, { shape: [T], data: new Int32Array(T), int: true });
    cap.set(`${name}.block_in`, { shape: [0, H], data: new Float32Array(0), int: false });
  }

  /**
   * Token-choice recursions (token_choice_router.py:MoRLlamaDecoderLayer.forward): one router on
   * x0 picks each token's last recursion e; recursion r runs on tokens with e >= r (ungated);
   * a token finishing at r leaves x0 + g·Y^r.
   */
  private tokenRecursions(session: MorSession, row: RowCache, T: number, tr: { trace: ForwardTrace; base: number }, cap: RowCaptures | null): void {
    const cfg = this.config, H = cfg.dims.hidden, R = cfg.numRecursion, s = this.scratch;
    const kvShareBlock = cfg.kvSharing !== null;
    s.x0.set(s.h.subarray(0, T * H));
    s.out.set(s.h.subarray(0, T * H));
    if (cap) capF32(cap, 'mor_in', s.x0, [T, H]);
    const all = Array.from({ length: T }, (_, t) => t);
    const logits = Float32Array.from(this.runRouter(session, this.routers[0], s.x0, T, tr, all).subarray(0, T * R));
    const probs = new Float32Array(T * R);
    tokenProbs(probs, logits, T, R, cfg.tokenRouterFunc, cfg.tokenAlpha);
    const expert = new Int32Array(T);
    const gate = new Float32Array(T);
    for (let t = 0; t < T; t++) {
      expert[t] = assignRecursion(probs, t * R, R, cfg.tokenLossFree ? this.routerBias : null, `token router at position ${s.allPos[t]}`);
      gate[t] = probs[t * R + expert[t]];
      tr.trace.depth[tr.base + t] = expert[t] + 1;
      for (let i = 0; i < R; i++) {
        tr.trace.routerLogits[(tr.base + t) * R + i] = logits[t * R + i];
        tr.trace.routerProbs[(tr.base + t) * R + i] = probs[t * R + i];
      }
    }
    if (cap) {
      cap.set('router_logits', { shape: [T, R], data: logits, int: false });
      cap.set('router_probs', { shape: [T, R], data: probs, int: false });
      cap.set('assigned_expert', { shape: [T], data: Int32Array.from(expert), int: true });
      cap.set('gate', { shape: [T], data: gate, int: false });
    }
    // s.h holds the running state x_r of every token (stale for finished ones, as upstream's `x`)
    for (let r = 0; r < R; r++) {
      const processed = all.filter((t) => expert[t] >= r);
      if (cap) cap.set(`rec${r}.processed`, { shape: [processed.length], data: Int32Array.from(processed), int: true });
      if (processed.length === 0 && !kvShareBlock) { // upstream skips the recursion: nothing runs, nothing is cached
        if (cap) for (const name of ['block_in', ...this.layout.blocks[r].map((_, j) => `block_layer${j}.out`)]) cap.set(`rec${r}.${name}`, { shape: [0, H], data: new Float32Array(0), int: false });
        continue;
      }
      const blockRows = kvShareBlock ? all : processed;
      const n = blockRows.length;
      for (let i = 0; i < n; i++) {
        s.x.set(s.h.subarray(blockRows[i] * H, (blockRows[i] + 1) * H), i * H);
        s.pos[i] = s.allPos[blockRows[i]];
        tr.trace.blockRuns[tr.base + blockRows[i]]++;
      }
      if (cap) capF32(cap, `rec${r}.block_in`, s.x, [n, H]);
      // Under sdpa upstream hands the compacted block a 2-D padding mask, which SDPA adds as a bias and
      // which switches off is_causal: the processed tokens of one call see each other both ways.
      const causal = !(cfg.attention === 'sdpa' && !kvShareBlock);
      this.runSites(session, row, this.layout.blocks[r], s.x, n, s.pos, blockRows, tr, null, cap, `rec${r}`, null, causal);
      for (let i = 0; i < n; i++) {
        const t = blockRows[i];
        if (expert[t] < r) continue;
        const yOff = i * H, o = t * H;
        if (expert[t] === r) {
          if (cfg.tokenGated) for (let j = 0; j < H; j++) s.out[o + j] = f32(s.x0[o + j] + f32(s.x[yOff + j] * gate[t]));
          else for (let j = 0; j < H; j++) s.out[o + j] = f32(s.x0[o + j] + s.x[yOff + j]);
        } else s.h.set(s.x.subarray(yOff, yOff + H), o);
      }
    }
    s.h.set(s.out.subarray(0, T * H));
    if (cap) {
      capF32(cap, 'mor_out', s.h, [T, H]);
      capF32(cap, `hidden.layer${this.layout.recursionModules[0]}_out`, s.h, [T, H]);
    }
  }

  /** Cache slot contents of one row as [nKv, n, headDim] (upstream layout), keys and values. */
  cacheSlot(session: MorSession, row: number, slot: number): { key: Float32Array; value: Float32Array; len: number } | null {
    const sl = session.rows[row].slots.get(slot);
    if (!sl) return null;
    const d = this.config.dims, kvDim = d.nKvHeads * d.headDim, n = sl.len;
    const key = new Float32Array(n * kvDim), value = new Float32Array(n * kvDim);
    for (let h = 0; h < d.nKvHeads; h++) {
      for (let t = 0; t < n; t++) {
        for (let i = 0; i < d.headDim; i++) {
          key[(h * n + t) * d.headDim + i] = sl.k[t * kvDim + h * d.headDim + i];
          value[(h * n + t) * d.headDim + i] = sl.v[t * kvDim + h * d.headDim + i];
        }
      }
    }
    return { key, value, len: n };
  }
}

function capF32(cap: RowCaptures, name: string, src: Float32Array, shape: number[]): void {
  const n = shape.reduce((a, b) => a * b, 1);
  cap.set(name, { shape, data: Float32Array.from(src.subarray(0, n)), int: false });
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
