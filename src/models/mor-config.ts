/**
 * Mixture-of-Recursions' config and layout (raymin0223/mixture_of_recursions @ 82c97f29; semantics
 * in research/mor.md): the config as upstream saves it (`model_config` LlamaConfig fields and the
 * experiment's `cfg`), read through src/format/config.ts; which decoder layers run where, with their
 * state_dict names and KV-cache slots; and every tensor that implies.
 */
import { PonderError } from '../errors.js';
import {
  asConfigObject, optionalBool, optionalInt, optionalIntList, optionalNumber, optionalString, requireInt, requireNumber, requireString,
  hasField, section, ignoreFields, configInconsistent, unsupportedValue, upTo, type ConfigObject,
} from '../format/config.js';
import type { MemoryNeeds, TensorSpec } from './family.js';
import type { ExpertRouterFunc, TokenRouterFunc } from './mor-routing.js';

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
  /** model_config.eos_token_id (an id or a list), if any */
  readonly eosIds: readonly number[];
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
export function parseMorConfig(config: ConfigObject | unknown, path = 'config'): MorConfig {
  const root = asConfigObject(config, path);
  const mc = section(root, 'model_config');
  const hidden = requireInt(mc, 'hidden_size', upTo('width', 1));
  const nHeads = requireInt(mc, 'num_attention_heads', upTo('heads', 1));
  const nKvHeads = optionalInt(mc, 'num_key_value_heads', nHeads, upTo('heads', 1));
  const headDim = optionalInt(mc, 'head_dim', Math.floor(hidden / nHeads), upTo('width', 2));
  if (nHeads % nKvHeads !== 0) throw configInconsistent(mc, 'num_key_value_heads', `num_key_value_heads (${nKvHeads}) must divide num_attention_heads (${nHeads})`);
  if (headDim % 2 !== 0) throw configInconsistent(mc, 'head_dim', `head_dim (${headDim}) must be even for RoPE`);
  const act = optionalString<string>(mc, 'hidden_act', 'silu');
  if (act !== 'silu') throw unsupportedValue(mc, 'hidden_act', JSON.stringify(act), '"silu"');
  for (const f of ['attention_bias', 'mlp_bias'] as const) if (optionalBool(mc, f, false)) throw unsupportedValue(mc, f, 'true', 'false (upstream Llama/SmolLM have no biases)');
  if (hasField(mc, 'rope_scaling')) throw unsupportedValue(mc, 'rope_scaling', 'set', 'null (no RoPE scaling)');
  const tp = optionalInt(mc, 'pretraining_tp', 1);
  if (tp !== 1) throw unsupportedValue(mc, 'pretraining_tp', String(tp), '1');
  const dims: LlamaDims = {
    vocab: requireInt(mc, 'vocab_size', upTo('vocab', 1)),
    hidden,
    intermediate: requireInt(mc, 'intermediate_size', upTo('intermediate', 1)),
    layers: requireInt(mc, 'num_hidden_layers', upTo('layers', 1)),
    nHeads, nKvHeads, headDim,
    eps: optionalNumber(mc, 'rms_norm_eps', 1e-6, { gt: 0 }),
    ropeTheta: optionalNumber(mc, 'rope_theta', 10000, { gt: 0 }),
    maxPositions: optionalInt(mc, 'max_position_embeddings', 2048, upTo('context', 1)),
    tieEmbeddings: optionalBool(mc, 'tie_word_embeddings', false),
  };
  // kv_sharing: the experiment's cfg.kv_sharing, copied into the LlamaConfig by upstream's training script
  ignoreFields(mc, 'initializer_range', 'use_cache', 'bos_token_id', 'pad_token_id', 'attention_dropout', 'model_type', 'kv_sharing');
  const eosIds = optionalIntList(mc, 'eos_token_id', [], { min: 0 }, true);

  const base = {
    dims, eosIds, sharing: null, numRecursion: 0, lnShare: true, capacity: [], routerType: 'linear' as const, temp: 1,
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
  const R = requireInt(rec, 'num_recursion', upTo('depth', 1));
  if (R === 1) throw unsupportedValue(rec, 'num_recursion', '1', 'an integer >= 2 (num_recursion 1 means a plain, truncated Llama)');
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
        numRecursion: requireInt(kv, 'num_recursion', upTo('depth', 1)),
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
  if (sharing !== 'cycle' && sharing !== 'middle_cycle') throw unsupportedValue(rec, 'sharing', JSON.stringify(sharing), '"cycle" or "middle_cycle" (upstream MoR supports only these)');
  if (optionalBool(mor, 'rand_router', false)) throw unsupportedValue(mor, 'rand_router', 'true', 'false (random router scores are a training ablation and not reproducible)');
  const routerType = optionalString(mor, 'router_type', 'linear', ['linear', 'mlp', 'wide_mlp'] as const);
  const temp = optionalNumber(mor, 'temp', 1, { gt: 0 });
  ignoreFields(mor, 'z_loss', 'z_coeff');

  if (type === 'expert') {
    ignoreFields(mor, 'token'); // the other router type's settings, present in the experiment configs
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
    if (rf !== null && rf !== undefined && rf !== 'sigmoid' && rf !== 'tanh') throw unsupportedValue(ex, 'router_func', JSON.stringify(rf), '"sigmoid", "tanh" or null');
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
  ignoreFields(mor, 'capacity', 'expert');
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

/** Where layer `layerIdx` writes and reads its keys/values: its own slot, or (kv_sharing, with a cache) the shared one. */
export function morKvRole(cfg: MorConfig, layout: MorLayout, layerIdx: number, sharesKv: boolean): KvRole {
  const kv = cfg.kvSharing;
  if (!kv || !sharesKv) return { write: layerIdx, read: layerIdx };
  // set_kv_sharing_config: base depth from the (rewritten) layer count and kv_sharing.num_recursion
  const n = layout.sites.length;
  const bd = kv.sharing === 'middle_cycle' ? Math.floor((n - 2) / kv.numRecursion) : Math.floor(n / kv.numRecursion);
  return recursiveKvRole(layerIdx, kv, bd);
}

/** Cache slots written by some layer under the sharing policy (or every layer's own slot). */
export function morWriteSlots(cfg: MorConfig, layout: MorLayout, sharesKv: boolean): Set<number> {
  const out = new Set<number>();
  for (const s of layout.sites) {
    const role = morKvRole(cfg, layout, s.slot, sharesKv);
    if (role.write !== null) out.add(role.write);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tensors

const LINEARS = ['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight', 'self_attn.o_proj.weight', 'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight'] as const;
export const MOR_NORMS = ['input_layernorm.weight', 'post_attention_layernorm.weight'] as const;

/** The shape of one decoder layer's linear. */
export function morLinearShape(d: LlamaDims, name: (typeof LINEARS)[number]): [number, number] {
  const qDim = d.nHeads * d.headDim, kvDim = d.nKvHeads * d.headDim, H = d.hidden, I = d.intermediate;
  switch (name) {
    case 'self_attn.q_proj.weight': return [qDim, H];
    case 'self_attn.k_proj.weight': case 'self_attn.v_proj.weight': return [kvDim, H];
    case 'self_attn.o_proj.weight': return [H, qDim];
    case 'mlp.gate_proj.weight': case 'mlp.up_proj.weight': return [I, H];
    case 'mlp.down_proj.weight': return [H, I];
  }
}
export { LINEARS as MOR_LINEARS };

/**
 * Every state_dict tensor of the config (mor.md §2): each decoder-layer site under its module path
 * (a site that shares its owner's parameter names it in `sameAs`), the routers, embedding, norm and
 * head. Groups: the site's module path, a router's module path, embed, head.
 */
export function morTensors(cfg: MorConfig, layout: MorLayout = morLayout(cfg)): TensorSpec[] {
  const d = cfg.dims, H = d.hidden, R = cfg.numRecursion, sites = layout.sites;
  const out: TensorSpec[] = [];
  for (const s of sites) {
    const group = s.path.slice(0, -1);
    for (const n of LINEARS) {
      const owner = sites[s.linearOwner].path + n;
      out.push({ name: s.path + n, shape: morLinearShape(d, n), bind: 'linear', group, ...(owner !== s.path + n ? { sameAs: owner } : {}) });
    }
    for (const n of MOR_NORMS) {
      const owner = sites[s.normOwner].path + n;
      out.push({ name: s.path + n, shape: [H], bind: 'f32', group, ...(owner !== s.path + n ? { sameAs: owner } : {}) });
    }
  }
  out.push({ name: 'model.embed_tokens.weight', shape: [d.vocab, H], bind: 'embedding', group: 'embed' });
  out.push({ name: 'model.norm.weight', shape: [H], bind: 'f32', group: 'head' });
  out.push({ name: 'lm_head.weight', shape: [d.vocab, H], bind: 'linear', group: 'head', ...(d.tieEmbeddings ? { optional: true, sameAs: 'model.embed_tokens.weight' } : {}) });
  const routerOut = cfg.variant === 'token' ? R : 1;
  for (const rp of layout.routerPaths) {
    const group = rp.slice(0, -1);
    const router = (kind: string, outRows: number): void => {
      if (cfg.routerType === 'linear') out.push({ name: `${rp}${kind}.router.weight`, shape: [outRows, H], bind: 'linear', group });
      else {
        out.push({ name: `${rp}${kind}.router.0.weight`, shape: [2 * H, H], bind: 'linear', group });
        out.push({ name: `${rp}${kind}.router.2.weight`, shape: [outRows, 2 * H], bind: 'linear', group });
      }
    };
    router('mor_router', routerOut);
    if (cfg.expertAuxRouter) router('mlp_router', 1); // training-only, in the state dict
  }
  if (cfg.variant === 'token' && cfg.tokenLossFree) out.push({ name: layout.routerPaths[0] + 'router_bias', shape: [R], bind: 'f32', group: layout.routerPaths[0].slice(0, -1) });
  return out;
}

/**
 * The memory plan's view of MoR: a KV slot (K + V, and a position per token) lives with the layer
 * that writes it (recursive KV sharing: the first writer); the home shard holds the RoPE tables and
 * the row buffers, which MoR sizes for the whole context at load (rowBuffers in mor.ts).
 */
export function morMemory(cfg: MorConfig): MemoryNeeds {
  const d = cfg.dims, H = d.hidden, R = Math.max(cfg.numRecursion, 1);
  const qDim = d.nHeads * d.headDim, kvDim = d.nKvHeads * d.headDim;
  const layout = morLayout(cfg);
  const kvPerToken = new Map<string, number>();
  const written = new Set<number>();
  for (const s of layout.sites) {
    const slot = morKvRole(cfg, layout, s.slot, true).write;
    if (slot === null || written.has(slot)) continue;
    written.add(slot);
    const group = s.path.slice(0, -1);
    kvPerToken.set(group, (kvPerToken.get(group) ?? 0) + 2 * kvDim + 1); // + the slot's position (an i32, counted as one value)
  }
  return {
    kvPerToken,
    hostKvPerToken: 0,
    workBytes: (context) => context * (4 * (9 * H + 2 * qDim + 4 * kvDim + 2 * d.intermediate + R + d.vocab) + 8) + 4 * (H + d.vocab) + 4 * context * d.headDim,
    attentionUnits: d.nHeads,
    attentionHeadDim: d.headDim,
    maxContext: d.maxPositions,
    contextField: 'max_position_embeddings',
  };
}
