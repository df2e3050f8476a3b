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
import type { Runtime } from '../runtime/runtime.js';
import { ropeTables } from './common.js';
import { allocKv, copyKv, widenOnHeap, writeKv, type KvBuffer, type KvDType } from './kv-store.js';
import { cacheFull, checkContext, checkTokenIds } from './inputs.js';
import { Workspace } from './workspace.js';
import { place, type Placement } from './placement.js';
import type { WeightSource } from './weights.js';
import { assignRecursion, causalRuns, DEFAULT_CAUSAL_THRESHOLD, expertProbs, expertTopK, geluErf, tokenProbs, topKAscending } from './mor-routing.js';
import { morKvRole, morLayout, morMemory, morTensors, morWriteSlots, type KvRole, type MorConfig, type MorLayout } from './mor-config.js';
import { bindMorWeights, type MorWeights, type RouterWeights } from './mor-weights.js';

const f32 = Math.fround;

// ---------------------------------------------------------------------------------------------
// KV cache: upstream DynamicCache (one slot per layer_idx) or RecursiveDynamicCache (kv sharing),
// roles from mor-config.ts (morKvRole)

export interface KvSlot {
  readonly k: KvBuffer;       // [capacity, nKv*headDim], post-RoPE keys, stored as the model's kvDtype
  readonly v: KvBuffer;       // [capacity, nKv*headDim]
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
  /** Empties the caches for a new sequence (a session reused from the adapter's pool). */
  reset(): void {
    this.mode = null;
    this.failed = false;
    for (const row of this.rows) {
      row.seen = 0;
      for (const slot of row.slots.values()) slot.len = 0;
    }
  }
  /** slot → number of stored tokens per row */
  slotLengths(row = 0): Map<number, number> {
    return new Map([...this.rows[row].slots].map(([s, slot]) => [s, slot.len]));
  }
}

/** The activation buffers of one batch row of up to `n` tokens (rows run one at a time), from the model's Workspace. */
function rowBuffers(ws: Workspace, cfg: MorConfig, n: number, kvDtype: KvDType) {
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
    // [n, nKv*headDim] update_cache: temporary refreshed copy of a shared slot, in the cache's dtype
    kvK: (kvDtype === 'f32' ? ws.f32('kvK', n * kvDim) : ws.u16('kvK', n * kvDim)) as KvBuffer,
    kvV: (kvDtype === 'f32' ? ws.f32('kvV', n * kvDim) : ws.u16('kvV', n * kvDim)) as KvBuffer,
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
// Loading

/** update_cache: block rows whose fresh K/V replace the shared slot's rows (by call index as upstream, or by position). */
interface CacheRefresh { readonly rows: number[]; readonly byPosition: boolean }

export interface LoadOptions {
  /** longest sequence a session may hold (prompt + generated); default the memory plan's context (max_position_embeddings when it fits) */
  readonly maxLen?: number;
  /** where the layers and their KV slots live (memory shards); none: everything in the runtime's arena */
  readonly placement?: Placement | null;
}

/** Binds a MoR / recursive / vanilla checkpoint named by upstream state_dict names. */
export function bindMor(config: MorConfig, source: WeightSource, runtime: Runtime, opts: LoadOptions = {}): MorModel {
  if (opts.maxLen !== undefined && (!Number.isInteger(opts.maxLen) || opts.maxLen < 1)) throw new PonderError('CFG_FIELD', `maxLen is ${opts.maxLen}`, { field: 'maxLen', hint: 'a positive integer' });
  const layout = morLayout(config);
  // the memory plan before any tensor is read (morFamily.load passes the one made for its options)
  const placement = opts.placement ?? place(morTensors(config), morMemory(config), source, runtime, { context: opts.maxLen });
  // without a length asked for, the plan's context: the longest that fits (max_position_embeddings may not)
  const maxLen = opts.maxLen ?? placement.plan.context;
  const weights = bindMorWeights(config, layout, source, runtime, placement);
  return new MorModel(config, layout, weights, runtime, maxLen, placement);
}

export class MorModel {
  private stepCheck: ForwardOptions['stepCheck'] | null = null; // set by each forward
  private readonly cos: Float32Array;
  private readonly sin: Float32Array;
  private readonly scratch: RowBuffers;

  constructor(readonly config: MorConfig, readonly layout: MorLayout, private readonly w: MorWeights, readonly runtime: Runtime, readonly maxLen: number,
    private readonly placement: Placement | null = null) {
    ({ cos: this.cos, sin: this.sin } = ropeTables(runtime, config.dims.headDim, Math.max(maxLen, 1), config.dims.ropeTheta));
    this.scratch = rowBuffers(new Workspace(runtime), config, maxLen, this.kvDtype);
  }

  /** How this model's KV caches store keys and values: the memory plan's (loadModel's kvDtype), else f32. */
  get kvDtype(): KvDType { return this.placement?.plan.kvDtype ?? 'f32'; }

  private kvRole(layerIdx: number, sharesKv: boolean): KvRole {
    return morKvRole(this.config, this.layout, layerIdx, sharesKv);
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
    const d = this.config.dims;
    const kvDim = d.nKvHeads * d.headDim;
    // a slot lives in the memory shard of the layer that writes it (the first, under KV sharing)
    const slotGroup = new Map<number, string>();
    for (const site of this.layout.sites) {
      const write = this.kvRole(site.slot, sharesKv).write;
      if (write !== null && !slotGroup.has(write)) slotGroup.set(write, site.path.slice(0, -1));
    }
    const arenaOf = (slot: number) => (this.placement ? this.placement.arena(slotGroup.get(slot)!) : this.runtime.arena);
    const rows: RowCache[] = [];
    for (let b = 0; b < batch; b++) {
      const slots = new Map<number, KvSlot>();
      for (const s of [...morWriteSlots(this.config, this.layout, sharesKv)].sort((x, y) => x - y)) {
        const a = arenaOf(s);
        slots.set(s, { k: allocKv(a, this.kvDtype, maxLen * kvDim), v: allocKv(a, this.kvDtype, maxLen * kvDim), pos: a.i32(maxLen), len: 0 });
      }
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
    this.w.embedding.rows(ids, s.h);
    if (cap) capF32(cap, 'hidden.embed', s.h, [T, H]);
    const tr = { trace, base: b * T };

    this.runSites(session, row, this.layout.prefix, s.h, T, s.allPos, null, tr, this.layout.prefixModules, cap);
    if (this.config.variant === 'expert') this.expertRecursions(session, row, T, mode, threshold, tr, cap);
    else if (this.config.variant === 'token') this.tokenRecursions(session, row, T, tr, cap);
    else for (let t = 0; t < T; t++) trace.depth[tr.base + t] = this.config.numRecursion;
    this.runSites(session, row, this.layout.suffix, s.h, T, s.allPos, null, tr, this.layout.suffixModules, cap);

    k.rmsnorm(s.xn, s.h, this.w.finalNorm, T, H, d.eps);
    if (cap) capF32(cap, 'hidden.final_norm', s.xn, [T, H]);
    k.linear(s.logits, s.xn, this.w.lmHead, T);
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
    const d = this.config.dims, k = this.runtime.kernels, s = this.scratch, w = this.w.layers[site];
    const H = d.hidden, qDim = d.nHeads * d.headDim, kvDim = d.nKvHeads * d.headDim;
    k.rmsnorm(s.xn, x, w.inputNorm, n, H, d.eps);
    k.linearGroup([s.q, s.k, s.v], s.xn, [w.q, w.k, w.v], n);
    k.rope(s.q, n, d.nHeads, d.headDim, qDim, this.cos, this.sin, pos, 'half');
    k.rope(s.k, n, d.nKvHeads, d.headDim, kvDim, this.cos, this.sin, pos, 'half');
    const role = this.kvRole(this.layout.sites[site].slot, session.sharesKv);
    const kvDtype = this.kvDtype;
    let keys: KvBuffer, values: KvBuffer, kPos: Int32Array, Tk: number;
    if (role.write !== null) {
      const slot = row.slots.get(role.write)!;
      if (slot.len + n > session.maxLen) throw cacheFull(slot.len, n, session.maxLen);
      writeKv(k, kvDtype, slot.k, slot.len * kvDim, s.k, 0, n * kvDim);
      writeKv(k, kvDtype, slot.v, slot.len * kvDim, s.v, 0, n * kvDim);
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
        copyKv(s.kvK, 0, slot.k, 0, Tk * kvDim);
        copyKv(s.kvV, 0, slot.v, 0, Tk * kvDim);
        for (const i of update.rows) {
          let cacheRow = i;
          if (update.byPosition) { cacheRow = -1; for (let j = 0; j < Tk; j++) if (kPos[j] === pos[i]) cacheRow = j; }
          if (cacheRow < 0 || cacheRow >= Tk) continue;
          writeKv(k, kvDtype, s.kvK, cacheRow * kvDim, s.k, i * kvDim, kvDim);
          writeKv(k, kvDtype, s.kvV, cacheRow * kvDim, s.v, i * kvDim, kvDim);
        }
        keys = s.kvK; values = s.kvV;
      }
    }
    k.attention(s.att, s.q, keys, values, n, Tk, d.nHeads, d.nKvHeads, d.headDim, 1 / Math.sqrt(d.headDim), causal ? pos : null, causal ? kPos : null, null, kvDtype);
    k.linear(s.proj, s.att, w.o, n);
    k.add(x, x, s.proj, n * H);
    k.rmsnorm(s.xn, x, w.postNorm, n, H, d.eps);
    k.linearGroup([s.gate, s.up], s.xn, [w.gate, w.up], n);
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
    k.rmsnorm(probeIn, probeIn, this.w.finalNorm, 1, H, d.eps);
    k.linear(probeOut, probeIn, this.w.lmHead, 1);
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
      const logits = this.runRouter(session, this.w.routers[r], s.x, nc, tr, candidates);
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
    const logits = Float32Array.from(this.runRouter(session, this.w.routers[0], s.x0, T, tr, all).subarray(0, T * R));
    const probs = new Float32Array(T * R);
    tokenProbs(probs, logits, T, R, cfg.tokenRouterFunc, cfg.tokenAlpha);
    const expert = new Int32Array(T);
    const gate = new Float32Array(T);
    for (let t = 0; t < T; t++) {
      expert[t] = assignRecursion(probs, t * R, R, cfg.tokenLossFree ? this.w.routerBias : null, `token router at position ${s.allPos[t]}`);
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
    const slotK = widenOnHeap(this.kvDtype, sl.k, n * kvDim), slotV = widenOnHeap(this.kvDtype, sl.v, n * kvDim);
    for (let h = 0; h < d.nKvHeads; h++) {
      for (let t = 0; t < n; t++) {
        for (let i = 0; i < d.headDim; i++) {
          key[(h * n + t) * d.headDim + i] = slotK[t * kvDim + h * d.headDim + i];
          value[(h * n + t) * d.headDim + i] = slotV[t * kvDim + h * d.headDim + i];
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
