/**
 * Ouro / LoopLM (ByteDance 2025): a Qwen2-style decoder stack with sandwich RMSNorms, looped
 * `total_ut_steps` times with shared weights, plus a learned exit gate after every loop.
 * Semantics: research/ouro.md (upstream `modeling_ouro.py`); our own choices: spec/ouro.md.
 *
 * Two ways to run:
 *  - exitMode 'select' (default, = upstream): every token runs all T loops, every (loop, layer) KV
 *    slot is filled, and the exit rule only picks which loop's hidden state goes to lm_head.
 *  - exitMode 'skip': a token stops looping as soon as its exit rule has decided (the CDF rule
 *    depends only on loops ≤ t). Later tokens then find no KV of that token in the loops it skipped;
 *    `missingKv` says what they attend to instead (spec/ouro.md §"Real early exit").
 *
 * Batches are rows run one at a time (no padding upstream, so rows are independent, ouro.md §11.12).
 */
import { PonderError } from '../errors.js';
import type { Kernels, LinearWeight } from '../kernels/kernels.js';
import type { Runtime } from '../runtime/runtime.js';
import { ropeTables } from './common.js';
import { allocKv, copyKv, writeKv, type KvBuffer, type KvDType } from './kv-store.js';
import { cacheFull, checkContext, checkTokenIds, type Embedding } from './inputs.js';
import { Workspace } from './workspace.js';
import { ExitAccumulator, gateLambda, reachesThreshold, resolveReadout, thresholdExitStep, type ReadoutRule } from './ouro-exit.js';
import { WeightBinder, type WeightSource } from './weights.js';
import { place, type Placement } from './placement.js';
import type { Arena } from '../runtime/arena.js';
import { ouroMemory, ouroTensors, type OuroConfig } from './ouro-config.js';

const f32 = Math.fround;

// ------------------------------------------------------------------------------------------------
// Weights

interface OuroLayerWeights {
  inputNorm: Float32Array; // [H] pre-attention
  inputNorm2: Float32Array; // [H] on the attention output
  postAttnNorm: Float32Array; // [H] pre-MLP
  postAttnNorm2: Float32Array; // [H] on the MLP output
  wq: LinearWeight; // [heads*hd, H]
  wk: LinearWeight; // [kvHeads*hd, H]
  wv: LinearWeight; // [kvHeads*hd, H]
  wo: LinearWeight; // [H, heads*hd]
  wGate: LinearWeight; // [I, H]
  wUp: LinearWeight; // [I, H]
  wDown: LinearWeight; // [H, I]
}

/**
 * Checks that `source` holds exactly the tensors `config` needs, without reading any data.
 * Throws one BIND_MISMATCH listing every problem.
 */
export function checkOuroWeights(source: WeightSource, config: OuroConfig, runtime: Runtime): void {
  const binder = new WeightBinder(source, runtime);
  binder.declare(ouroTensors(config));
  binder.finish();
}

// ------------------------------------------------------------------------------------------------
// KV cache: one slot per (loop t, layer l), index t·L + l, exactly upstream's UniversalTransformerCache.

export class OuroCache {
  /** keys[t*L + l]: [capacity, kvHeads*hd] post-RoPE keys, row = position, stored as `kvDtype` */
  readonly keys: KvBuffer[] = [];
  /** values[t*L + l]: [capacity, kvHeads*hd] */
  readonly values: KvBuffer[] = [];
  /** loopsRun[p]: how many loops the token at position p ran (T unless it exited early in skip mode) */
  readonly loopsRun: Int32Array;
  /** tokens stored; every slot holds this many rows (upstream: get_seq_length() = length of slot 0) */
  length = 0;

  /** `arenaOf(s)`: where slot s lives (its layer's memory shard) */
  constructor(arenaOf: (slot: number) => Arena, readonly slots: number, readonly capacity: number, readonly kvDim: number, readonly kvDtype: KvDType = 'f32') {
    for (let s = 0; s < slots; s++) {
      this.keys.push(allocKv(arenaOf(s), kvDtype, capacity * kvDim));
      this.values.push(allocKv(arenaOf(s), kvDtype, capacity * kvDim));
    }
    this.loopsRun = new Int32Array(capacity);
  }
}

// ------------------------------------------------------------------------------------------------
// Forward options and results

export type ExitMode = 'select' | 'skip';
/** What later tokens attend to in a loop an early-exited token skipped (spec/ouro.md). */
export type MissingKvPolicy = 'copy-forward' | 'exclude';

export interface OuroForwardOptions {
  /** Append to this cache (use_cache=True with past_key_values); none = a call-local cache (use_cache=False). */
  cache?: OuroCache | null;
  exitAtStep?: number | null;
  /** null/undefined falls back to the model's earlyExitThreshold, as upstream. */
  exitThreshold?: number | null;
  useWeightedExit?: boolean;
  /** Keep logits of the last k positions only (0 = all), upstream's int logits_to_keep. */
  logitsToKeep?: number;
  /** Also keep every layer's output and the pre-norm state of every loop (for conformance). */
  record?: boolean;
  /** Also return lm_head(h_t) of every loop for the kept positions (T extra lm_head passes). */
  loopLogits?: boolean;
  /**
   * Only for exitMode 'skip': after loop t (< T−1) of each token still looping, also exit when this
   * returns true (OR with the read-out rule). `hidden` is the token's post-norm h_t [H]; `logits()`
   * is lm_head(h_t) [V], computed on demand and counted in the token's flops. Lets a caller apply
   * another exit criterion (e.g. Huginn's KL) with real compute skipped.
   */
  exitCheck?: (loop: number, token: number, hidden: Float32Array, logits: () => Float32Array) => boolean;
  /** 'select' (default): upstream, all loops computed. 'skip': tokens stop looping at their exit. */
  exitMode?: ExitMode;
  /** Only for exitMode 'skip'. Default 'copy-forward'. */
  missingKv?: MissingKvPolicy;
}

/** One token's depth trace: a plain object so it can plug into the shared depth-policy API. */
export interface OuroTokenTrace {
  /** loops actually run for this token */
  steps: number;
  /** the loop whose hidden state was read out (T−1 for the weighted and last-loop read-outs) */
  exitStep: number;
  /** λ_t for every loop run */
  gates: number[];
  /** floating-point operations counted from what ran for this token (multiply-add = 2) */
  flops: number;
}

export interface OuroForwardResult {
  readonly seqLen: number; // S
  /** [keep, V] */
  readonly logits: Float32Array;
  readonly keep: number;
  readonly readout: ReadoutRule;
  /** [S] exit step per token (threshold/skip/exit-at-step rules); null for weighted and last-loop read-outs */
  readonly exitSteps: Int32Array | null;
  /** [S] positions of the tokens */
  readonly positions: Int32Array;
  /** [S, H] embedding rows = input of loop 0 */
  readonly embed: Float32Array;
  /** hidden[t]: [S, H] post-norm h_t (zeros for tokens that skipped loop t) */
  readonly hidden: Float32Array[];
  /** gateLogits[t]: [S] (NaN where skipped) */
  readonly gateLogits: Float32Array[];
  /** lambda[t]: [S] */
  readonly lambda: Float32Array[];
  /** [S, T] exit pdf and cdf (NaN for loops a token skipped) */
  readonly pdf: Float32Array;
  readonly cdf: Float32Array;
  /** [S, H] the read-out hidden state per token (threshold rule) */
  readonly selectedHidden: Float32Array | null;
  /** weighted read-out: stepLogits[t] = lm_head(h_t) of the kept positions, [keep, V] */
  readonly stepLogits: Float32Array[] | null;
  /** with `loopLogits`: loopLogits[t] = lm_head(h_t), [keep, V] (NaN rows where a token skipped loop t) */
  readonly loopLogits: Float32Array[] | null;
  /** with `record`: prenorm[t] [S,H] = input of model.norm after loop t; layerOut[t][l] [S,H] */
  readonly prenorm: Float32Array[] | null;
  readonly layerOut: Float32Array[][] | null;
  readonly trace: OuroTokenTrace[];
}

// ------------------------------------------------------------------------------------------------
// Work buffers of one call, [rows, ·] views from the model's Workspace (rows = the call's tokens).

function callBuffers(ws: Workspace, c: OuroConfig, rows: number) {
  const { hiddenSize: H, intermediateSize: I, vocabSize: V } = c;
  const qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
  return {
    x: ws.f32('x', rows * H), // residual stream of the rows still looping
    xn: ws.f32('xn', rows * H), // normalized input of a sub-layer
    q: ws.f32('q', rows * qDim), k: ws.f32('k', rows * kvDim), v: ws.f32('v', rows * kvDim),
    att: ws.f32('att', rows * qDim), o: ws.f32('o', rows * H),
    gate: ws.f32('gate', rows * I), up: ws.f32('up', rows * I),
    gateLogit: ws.f32('gateLogit', rows), // [rows, 1]
    positions: ws.i32('positions', rows),
    logits: ws.f32('logits', rows * V), readoutIn: ws.f32('readoutIn', rows * H),
  };
}
type CallBuffers = ReturnType<typeof callBuffers>;

// ------------------------------------------------------------------------------------------------
// The model

export class OuroModel {
  readonly kernels: Kernels;
  /** Model attribute like upstream's `model.early_exit_threshold` (read from the config once). */
  earlyExitThreshold: number | null;
  earlyExitStep: number | null;
  /** cos/sin [maxPos, hd/2] in f32 as torch builds them */
  readonly ropeCos: Float32Array;
  readonly ropeSin: Float32Array;
  /** work counted where it happens: rows run through a decoder layer, rows read out by lm_head */
  readonly counters = { layerRows: 0, readoutRows: 0 };

  private readonly ws: Workspace;
  private sc!: CallBuffers; // the current call's work buffers
  private readonly kvPositions: Int32Array; // [maxPos] 0, 1, 2, … the key positions of cache rows
  private localCache: OuroCache | null = null;

  private constructor(
    readonly runtime: Runtime,
    readonly config: OuroConfig,
    private readonly embedding: Embedding, // [V, H] in its stored dtype (or quantized)
    private readonly layers: OuroLayerWeights[],
    private readonly finalNorm: Float32Array, // [H]
    private readonly exitGate: LinearWeight, // [1, H]
    private readonly exitGateBias: Float32Array, // [1]
    private readonly lmHead: LinearWeight, // [V, H]
    private readonly placement: Placement | null,
  ) {
    this.kernels = runtime.kernels;
    this.earlyExitThreshold = config.earlyExitThreshold;
    this.earlyExitStep = config.earlyExitStep;
    const tables = ropeTables(runtime, config.headDim, config.maxPositionEmbeddings, config.ropeTheta);
    this.ropeCos = tables.cos;
    this.ropeSin = tables.sin;
    this.kvPositions = runtime.arena.i32(config.maxPositionEmbeddings);
    for (let p = 0; p < config.maxPositionEmbeddings; p++) this.kvPositions[p] = p;
    this.ws = new Workspace(runtime);
  }

  /** Binds a checkpoint by upstream state_dict names (ouroFamily.load); every mismatch is reported at once before any data is read. */
  static bind(config: OuroConfig, source: WeightSource, runtime: Runtime, placement: Placement = place(ouroTensors(config), ouroMemory(config), source, runtime)): OuroModel {
    const binder = new WeightBinder(source, runtime, placement);
    binder.declare(ouroTensors(config));
    binder.finish();
    // The embedding stays in its stored dtype outside the arena: only S rows are widened per call
    // (a widened 1.4B table would cost 400 MB of wasm32 memory).
    const embedding = binder.embedding('model.embed_tokens.weight');
    const layers: OuroLayerWeights[] = [];
    for (let l = 0; l < config.numLayers; l++) {
      const p = `model.layers.${l}.`;
      layers.push({
        inputNorm: binder.f32(p + 'input_layernorm.weight'),
        inputNorm2: binder.f32(p + 'input_layernorm_2.weight'),
        postAttnNorm: binder.f32(p + 'post_attention_layernorm.weight'),
        postAttnNorm2: binder.f32(p + 'post_attention_layernorm_2.weight'),
        wq: binder.linear(p + 'self_attn.q_proj.weight'),
        wk: binder.linear(p + 'self_attn.k_proj.weight'),
        wv: binder.linear(p + 'self_attn.v_proj.weight'),
        wo: binder.linear(p + 'self_attn.o_proj.weight'),
        wGate: binder.linear(p + 'mlp.gate_proj.weight'),
        wUp: binder.linear(p + 'mlp.up_proj.weight'),
        wDown: binder.linear(p + 'mlp.down_proj.weight'),
      });
    }
    const lmHead = binder.linear(config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight', 'head'); // tied: the same parameter
    return new OuroModel(runtime, config, embedding, layers,
      binder.f32('model.norm.weight'), binder.linear('model.early_exit_gate.weight'), binder.f32('model.early_exit_gate.bias'), lmHead, placement);
  }

  get totalSteps(): number { return this.config.totalUtSteps; }
  get kvDim(): number { return this.config.numKvHeads * this.config.headDim; }
  /** How this model's KV caches store keys and values: the memory plan's (loadModel's kvDtype), else f32. */
  get kvDtype(): KvDType { return this.placement?.plan.kvDtype ?? 'f32'; }

  /** A KV cache with T·L slots for up to `capacity` tokens. */
  newCache(capacity: number): OuroCache {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new PonderError('ARG_INVALID', `cache capacity must be a positive integer, got ${capacity}`, { field: 'capacity', hint: 'pass prompt length + tokens to generate' });
    checkContext(capacity, this.config.maxPositionEmbeddings, `a cache of ${capacity} tokens`, 'max_position_embeddings');
    // slot t·L + l lives with layer l
    const L = this.config.numLayers;
    const arenaOf = (slot: number): Arena => (this.placement ? this.placement.arena(`layers.${slot % L}`) : this.runtime.arena);
    return new OuroCache(arenaOf, this.config.totalUtSteps * L, capacity, this.kvDim, this.kvDtype);
  }

  /** Flops of the per-token linear work of one layer (projections + MLP), multiply-add = 2. */
  private layerLinearFlops(): number {
    const c = this.config, H = c.hiddenSize, qDim = c.numHeads * c.headDim;
    return 2 * (H * qDim + 2 * H * this.kvDim + qDim * H + 3 * H * c.intermediateSize);
  }

  /**
   * One call of OuroForCausalLM.forward on one sequence (no labels): ids [S] appended at position
   * cache.length (0 without a cache).
   */
  forward(ids: ArrayLike<number>, opts: OuroForwardOptions = {}): OuroForwardResult {
    const c = this.config, k = this.kernels;
    const S = ids.length, H = c.hiddenSize, T = c.totalUtSteps, L = c.numLayers, V = c.vocabSize;
    const mode = opts.exitMode ?? 'select';
    const missingKv = opts.missingKv ?? 'copy-forward';
    if (mode !== 'select' && mode !== 'skip') throw new PonderError('ARG_INVALID', `exitMode must be "select" or "skip", got ${JSON.stringify(mode)}`, { field: 'exitMode', hint: 'use "select" for upstream results' });
    if (missingKv !== 'copy-forward' && missingKv !== 'exclude') throw new PonderError('ARG_INVALID', `missingKv must be "copy-forward" or "exclude", got ${JSON.stringify(missingKv)}`, { field: 'missingKv', hint: 'see spec/ouro.md' });
    if (S === 0) throw new PonderError('INPUT_EMPTY', 'forward needs at least one token', { field: 'ids', hint: 'pass a non-empty prompt' });
    checkTokenIds(ids, V);
    if (opts.exitThreshold !== undefined && opts.exitThreshold !== null && Number.isNaN(opts.exitThreshold)) throw new PonderError('ARG_INVALID', 'exitThreshold is NaN', { field: 'exitThreshold', hint: 'pass a number (1.0 = the checkpoints\' default) or null' });
    const logitsToKeep = opts.logitsToKeep ?? 0;
    if (!Number.isInteger(logitsToKeep) || logitsToKeep < 0) throw new PonderError('ARG_INVALID', `logitsToKeep must be a non-negative integer, got ${logitsToKeep}`, { field: 'logitsToKeep', hint: '0 keeps all positions' });
    const keep = logitsToKeep === 0 ? S : Math.min(logitsToKeep, S);
    const readout = resolveReadout(T, opts, { earlyExitStep: this.earlyExitStep, earlyExitThreshold: this.earlyExitThreshold });

    // use_cache=False still needs somewhere for the call's own keys: a call-local cache, reused.
    let cache = opts.cache ?? null;
    if (cache === null) {
      if (!this.localCache || this.localCache.capacity < S) this.localCache = this.newCache(Math.min(c.maxPositionEmbeddings, Math.max(S, 2 * (this.localCache?.capacity ?? 0))));
      cache = this.localCache;
      cache.length = 0;
    }
    if (cache.slots !== T * L || cache.kvDim !== this.kvDim || cache.kvDtype !== this.kvDtype) throw new PonderError('CACHE_MISMATCH', `the cache has ${cache.slots} ${cache.kvDtype} slots of width ${cache.kvDim}, this model needs ${T * L} ${this.kvDtype} slots of width ${this.kvDim}`, { hint: 'create the cache with this model\'s newCache()' });
    const past = cache.length;
    if (past + S > cache.capacity) throw cacheFull(past, S, cache.capacity);
    const kvLen = past + S;

    // In skip mode a token stops after the loop its rule decides on; the rule is the read-out rule.
    // exit-at-step k → every token runs loops 0..k (exact: nothing in loop t depends on later loops);
    // threshold → the CDF rule, decided loop by loop; weighted/last need every loop.
    const skipping = mode === 'skip';
    const skipAfter = skipping && readout.kind === 'exit-at-step' ? readout.step : T - 1;
    const skipThreshold = skipping && readout.kind === 'threshold' ? readout.threshold : null;
    const gateDecides = readout.kind === 'threshold' || readout.kind === 'weighted';

    const sc = this.sc = callBuffers(this.ws, c, S);
    const record = opts.record ?? false;

    // Result arrays (plain JS memory).
    const positions = new Int32Array(S);
    for (let i = 0; i < S; i++) positions[i] = past + i;
    const embed = new Float32Array(S * H);
    const hidden = Array.from({ length: T }, () => new Float32Array(S * H));
    const gateLogits = Array.from({ length: T }, () => new Float32Array(S).fill(NaN));
    const lambda = Array.from({ length: T }, () => new Float32Array(S).fill(NaN));
    const pdf = new Float32Array(S * T).fill(NaN);
    const cdf = new Float32Array(S * T).fill(NaN);
    const prenorm = record ? Array.from({ length: T }, () => new Float32Array(S * H)) : null;
    const layerOut = record ? Array.from({ length: T }, () => Array.from({ length: L }, () => new Float32Array(S * H))) : null;
    const trace: OuroTokenTrace[] = Array.from({ length: S }, () => ({ steps: 0, exitStep: -1, gates: [], flops: 0 }));
    const accumulators = Array.from({ length: S }, () => new ExitAccumulator(T));
    const skipExit = new Int32Array(S).fill(-1);

    // Embedding: input of loop 0 (no scaling).
    this.embedding.rows(ids, embed);
    sc.x.set(embed);

    // active[a] = index (in this call) of the token in row a of sc.x; rows stay in position order.
    let active: number[] = Array.from({ length: S }, (_, i) => i);
    const linearFlops = this.layerLinearFlops();
    const attnFlopsPerKey = 4 * c.numHeads * c.headDim; // q·k and p·v, per visible key
    for (let t = 0; t < T && active.length > 0; t++) {
      const A = active.length;
      for (let a = 0; a < A; a++) sc.positions[a] = positions[active[a]];
      const allowed = skipping && missingKv === 'exclude' ? this.excludeMask(cache, t, A, kvLen, skipExit) : null;
      for (let l = 0; l < L; l++) {
        this.layerForward(l, t, A, cache, kvLen, allowed);
        if (layerOut) for (let a = 0; a < A; a++) layerOut[t][l].set(sc.x.subarray(a * H, (a + 1) * H), active[a] * H);
      }
      // Flops from what ran: every active row went through L layers, seeing its visible keys.
      for (let a = 0; a < A; a++) {
        const pos = sc.positions[a];
        let visible = pos + 1;
        if (allowed) { visible = 0; for (let j = 0; j <= pos; j++) visible += allowed[a * kvLen + j]; }
        trace[active[a]].flops += L * (linearFlops + attnFlopsPerKey * visible) + 2 * H;
        trace[active[a]].steps++;
      }
      if (prenorm) for (let a = 0; a < A; a++) prenorm[t].set(sc.x.subarray(a * H, (a + 1) * H), active[a] * H);
      // model.norm at the end of EVERY loop; the normalized state is the next loop's input.
      k.rmsnorm(sc.x, sc.x, this.finalNorm, A, H, c.rmsNormEps);
      k.linear(sc.gateLogit, sc.x, this.exitGate, A, this.exitGateBias);
      const stillLooping: number[] = [];
      let keptRows = 0;
      for (let a = 0; a < A; a++) {
        const i = active[a];
        hidden[t].set(sc.x.subarray(a * H, (a + 1) * H), i * H);
        const g = sc.gateLogit[a];
        // the threshold and weighted read-outs decide on the gate: a NaN never reaches a threshold
        // (the token would silently run every loop), so a non-finite gate they read is an error
        if (gateDecides && !Number.isFinite(g)) {
          throw new PonderError('NUM_NONFINITE', `the exit gate's logit (model.early_exit_gate applied to the hidden state after model.norm) is ${g} after loop ${t + 1} for the token at position ${positions[i]}`,
            { tensor: 'model.early_exit_gate.weight', hint: 'the checkpoint holds NaN/Inf (in the gate or the layers before it) or values that overflow float32; check the weights' });
        }
        const lam = gateLambda(g);
        gateLogits[t][i] = g;
        lambda[t][i] = lam;
        trace[i].gates.push(lam);
        const { p, cdf: cum } = accumulators[i].push(lam);
        pdf[i * T + t] = p;
        cdf[i * T + t] = cum;
        let exits = false;
        if (skipping && t < T - 1) exits = t >= skipAfter || (skipThreshold !== null && reachesThreshold(cum, skipThreshold));
        if (!exits && skipping && t < T - 1 && opts.exitCheck) {
          const row = hidden[t].subarray(i * H, (i + 1) * H);
          exits = opts.exitCheck(t, i, row, () => {
            trace[i].flops += 2 * H * V;
            return this.readoutRows(hidden, new Int32Array(S).fill(t), i, 1);
          });
        }
        if (exits) {
          skipExit[i] = t;
          this.tokenExited(cache, positions[i], t, missingKv);
        } else {
          if (keptRows !== a) sc.x.copyWithin(keptRows * H, a * H, (a + 1) * H); // compact the rows still looping
          keptRows++;
          stillLooping.push(i);
        }
      }
      active = stillLooping;
    }
    for (let i = 0; i < S; i++) cache.loopsRun[past + i] = trace[i].steps;
    cache.length = kvLen;

    // Read-out (OuroForCausalLM.forward).
    const first = S - keep; // logits_to_keep: the last `keep` positions
    let exitSteps: Int32Array | null = null;
    let selectedHidden: Float32Array | null = null;
    let stepLogits: Float32Array[] | null = null;
    let logits: Float32Array;
    if (skipping) {
      if (readout.kind === 'weighted') {
        // weighted needs every loop, which every token ran: the same arithmetic as select mode
        stepLogits = [];
        logits = this.weightedReadout(hidden, pdf, first, keep, stepLogits);
      } else {
        // each token reads out the last loop it ran: its exit step, or T−1
        exitSteps = new Int32Array(S);
        for (let i = 0; i < S; i++) exitSteps[i] = trace[i].steps - 1;
        selectedHidden = this.gatherSelected(hidden, exitSteps);
        logits = this.readoutRows(hidden, exitSteps, first, keep);
      }
    } else if (readout.kind === 'exit-at-step') {
      exitSteps = new Int32Array(S).fill(readout.step);
      logits = this.readoutRows(hidden, exitSteps, first, keep);
    } else if (readout.kind === 'threshold') {
      exitSteps = new Int32Array(S);
      for (let i = 0; i < S; i++) exitSteps[i] = thresholdExitStep(cdf.subarray(i * T, (i + 1) * T), T, readout.threshold);
      selectedHidden = this.gatherSelected(hidden, exitSteps);
      logits = this.readoutRows(hidden, exitSteps, first, keep);
    } else if (readout.kind === 'weighted') {
      stepLogits = [];
      logits = this.weightedReadout(hidden, pdf, first, keep, stepLogits);
    } else {
      logits = this.readoutRows(hidden, new Int32Array(S).fill(T - 1), first, keep);
    }
    const readoutFlops = 2 * H * V;
    for (let i = 0; i < S; i++) {
      trace[i].exitStep = exitSteps ? exitSteps[i] : T - 1;
      if (i >= first) trace[i].flops += readoutFlops * (stepLogits ? T : 1);
    }
    // Per-loop logits on request (upstream computes them only inside the weighted read-out).
    let loopLogits: Float32Array[] | null = null;
    if (opts.loopLogits) {
      loopLogits = stepLogits ?? Array.from({ length: T }, (_, t) => {
        const rows = this.readoutRows(hidden, new Int32Array(S).fill(t), first, keep);
        for (let r = 0; r < keep; r++) {
          if (trace[first + r].steps <= t) rows.fill(NaN, r * V, (r + 1) * V);
          else trace[first + r].flops += readoutFlops;
        }
        return rows;
      });
    }
    return { seqLen: S, logits, keep, readout, exitSteps, positions, embed, hidden, gateLogits, lambda, pdf, cdf, selectedHidden, stepLogits, loopLogits, prenorm, layerOut, trace };
  }

  /**
   * Decoder layer l during loop t on the A rows of sc.x (positions in sc.positions), in place.
   * Sandwich norm (ouro.md §3.1): x1 = x + norm2(attn(norm1(x))); x2 = x1 + norm4(mlp(norm3(x1))).
   */
  private layerForward(l: number, t: number, A: number, cache: OuroCache, kvLen: number, allowed: Uint8Array | null): void {
    const c = this.config, k = this.kernels, w = this.layers[l], sc = this.sc;
    const H = c.hiddenSize, hd = c.headDim, kvDim = this.kvDim, eps = c.rmsNormEps;
    const qDim = c.numHeads * hd;
    this.counters.layerRows += A;

    k.rmsnorm(sc.xn, sc.x, w.inputNorm, A, H, eps);
    k.linearGroup([sc.q, sc.k, sc.v], sc.xn, [w.wq, w.wk, w.wv], A);
    k.rope(sc.q, A, c.numHeads, hd, qDim, this.ropeCos, this.ropeSin, sc.positions, 'half');
    k.rope(sc.k, A, c.numKvHeads, hd, kvDim, this.ropeCos, this.ropeSin, sc.positions, 'half');
    // cache.update(k, v, t·L + l): rows go to their positions in slot (t, l).
    const slot = t * c.numLayers + l;
    const keys = cache.keys[slot], values = cache.values[slot];
    for (let a = 0; a < A; a++) {
      const p = sc.positions[a];
      writeKv(k, cache.kvDtype, keys, p * kvDim, sc.k, a * kvDim, kvDim);
      writeKv(k, cache.kvDtype, values, p * kvDim, sc.v, a * kvDim, kvDim);
    }
    // Causal over positions: a row sees cache rows 0..its position (the standard mask; ouro.md §5.3).
    k.attention(sc.att, sc.q, keys, values, A, kvLen, c.numHeads, c.numKvHeads, hd, f32(hd ** -0.5),
      sc.positions, this.kvPositions, allowed, cache.kvDtype);
    k.linear(sc.o, sc.att, w.wo, A);
    k.rmsnorm(sc.o, sc.o, w.inputNorm2, A, H, eps);
    k.add(sc.x, sc.x, sc.o, A * H);

    k.rmsnorm(sc.xn, sc.x, w.postAttnNorm, A, H, eps);
    k.linearGroup([sc.gate, sc.up], sc.xn, [w.wGate, w.wUp], A);
    k.siluMul(sc.gate, sc.gate, sc.up, A * c.intermediateSize);
    k.linear(sc.o, sc.gate, w.wDown, A);
    k.rmsnorm(sc.o, sc.o, w.postAttnNorm2, A, H, eps);
    k.add(sc.x, sc.x, sc.o, A * H);
  }

  /**
   * Skip mode: the token at `position` ran loops 0..lastLoop only. With copy-forward its KV rows in
   * every later loop's slot become copies of its loop-`lastLoop` rows (same layer), so every slot
   * keeps one row per token; with exclude they stay unused and are masked out.
   */
  private tokenExited(cache: OuroCache, position: number, lastLoop: number, policy: MissingKvPolicy): void {
    if (policy !== 'copy-forward') return;
    const L = this.config.numLayers, kvDim = this.kvDim, T = this.config.totalUtSteps;
    const from = position * kvDim, to = from + kvDim;
    for (let l = 0; l < L; l++) {
      const src = lastLoop * L + l;
      for (let t = lastLoop + 1; t < T; t++) {
        copyKv(cache.keys[t * L + l], from, cache.keys[src], from, to - from);
        copyKv(cache.values[t * L + l], from, cache.values[src], from, to - from);
      }
    }
  }

  /**
   * Exclude policy: allowed[a, j] = 1 where key j ran loop t. Earlier calls' tokens: the cache's
   * loop counts; this call's tokens: still looping, or exited at a loop ≥ t.
   */
  private excludeMask(cache: OuroCache, t: number, A: number, kvLen: number, callExit: Int32Array): Uint8Array {
    const allowed = this.ws.u8('allowed', A * kvLen).subarray(0, A * kvLen); // [A, kvLen]
    const past = cache.length;
    for (let j = 0; j < kvLen; j++) {
      const ran = j < past ? cache.loopsRun[j] > t : (callExit[j - past] === -1 || callExit[j - past] >= t);
      for (let a = 0; a < A; a++) allowed[a * kvLen + j] = ran ? 1 : 0;
    }
    return allowed;
  }

  /** [S, H]: row i = hidden[step[i]] row i (upstream's final_hidden_states gather). */
  private gatherSelected(hidden: Float32Array[], step: Int32Array): Float32Array {
    const H = this.config.hiddenSize, out = new Float32Array(step.length * H);
    for (let i = 0; i < step.length; i++) out.set(hidden[step[i]].subarray(i * H, (i + 1) * H), i * H);
    return out;
  }

  /** lm_head of hidden[step[i]] row i for the kept positions; [keep, V] in JS memory. */
  private readoutRows(hidden: Float32Array[], step: Int32Array, first: number, keep: number): Float32Array {
    const H = this.config.hiddenSize, V = this.config.vocabSize, sc = this.sc;
    for (let r = 0; r < keep; r++) {
      const i = first + r;
      sc.readoutIn.set(hidden[step[i]].subarray(i * H, (i + 1) * H), r * H);
    }
    this.kernels.linear(sc.logits, sc.readoutIn, this.lmHead, keep);
    this.counters.readoutRows += keep;
    return sc.logits.slice(0, keep * V);
  }

  /**
   * compute_expected_logits: Σ_t p_t · lm_head(h_t) over the kept positions, accumulated in f32 in
   * upstream's order ((l0·p0 + l1·p1) + l2·p2) …
   */
  private weightedReadout(hidden: Float32Array[], pdf: Float32Array, first: number, keep: number, stepLogits: Float32Array[]): Float32Array {
    const T = this.config.totalUtSteps, V = this.config.vocabSize;
    const out = new Float32Array(keep * V);
    for (let t = 0; t < T; t++) {
      const logitsT = this.readoutRows(hidden, new Int32Array(first + keep).fill(t), first, keep);
      stepLogits.push(logitsT);
      for (let r = 0; r < keep; r++) {
        const weight = pdf[(first + r) * T + t];
        for (let v = 0; v < V; v++) {
          const term = f32(logitsT[r * V + v] * weight);
          out[r * V + v] = t === 0 ? term : f32(out[r * V + v] + term);
        }
      }
    }
    return out;
  }
}
