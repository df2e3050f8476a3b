/**
 * Family adapters: one small interface over MoR, Huginn and Ouro so that `Model.generate` and
 * `Model.forward` are written once. An adapter runs one call (a prompt, or one generated token) on
 * one sequence (batch 1) under a depth policy and returns the last position's logits and one
 * TokenTrace per token of the call.
 *
 * Which policy each family supports, and which are exact reproductions of upstream:
 * spec/policies.md. An unsupported combination is ARG_POLICY before any compute.
 */
import { PonderError } from '../errors.js';
import type { Runtime } from '../runtime/runtime.js';
import type { WeightSource } from '../models/weights.js';
import type { ConfigObject } from '../format/config.js';
import { configObject, unsupportedModelType } from '../format/config.js';
import type { TokenTrace, ExitReason } from '../trace/trace.js';
import { loadHuginn, parseHuginnConfig, seededInitialStates, huginnTensorShapes, type HuginnModel, type CallContext, type InitialStates } from '../models/huginn.js';
import { createExitEvaluator, EXIT_CRITERIA, type ExitEvaluator } from '../models/huginn-exit.js';
import { parseCacheStrategy, type HuginnCache } from '../models/huginn-cache.js';
import { OuroModel, ouroConfigFromJson, type OuroCache, type OuroForwardOptions, type MissingKvPolicy } from '../models/ouro.js';
import { loadMor, type MorModel, type MorSession } from '../models/mor.js';
import { sigmoidF32 } from '../models/mor-routing.js';
import { describePolicy, type DepthPolicy, type StepSummary } from './policy.js';

export type Family = 'mor' | 'huginn' | 'ouro';
export const SUPPORTED_MODEL_TYPES: readonly string[] = ['ouro', 'huginn_raven (Huginn-0125: n_embd + mean_recurrence)', 'MoR (model_config + cfg: the config `ponder convert mor` writes from the release\'s base config.json and experiment YAML)'];

/** What one call of an adapter is asked to do. */
export interface StepControl {
  /** the per-token policy (a budget is unwrapped by the caller into `cap`) */
  readonly policy: DepthPolicy;
  /** at most this many steps for each token of the call (the budget's remainder), or null */
  readonly cap: number | null;
  readonly phase: 'prefill' | 'decode';
  /** steps spent on generated tokens so far (for user depth functions) */
  readonly stepsSpent: number;
  /** the call belongs to a budget(...) generation (prefill included), so every call must run the same decode mode */
  readonly budgeted?: boolean;
}

export interface StepOutput {
  /** next-token logits [V] after the call's last position (a copy) */
  readonly logits: Float32Array;
  /** one entry per token of the call, in order (id, phase, steps, flops, kvBytes, ...) */
  readonly tokens: TokenTrace[];
}

export interface FamilySession {
  /** tokens the session's caches hold */
  length: number;
}

export interface FamilyAdapter {
  readonly family: Family;
  readonly vocabSize: number;
  /** positions a sequence may occupy (max_position_embeddings / block_size) */
  readonly contextLength: number;
  /** the depth `default` runs, and the trace's maxSteps for fixed policies */
  readonly defaultDepth: number;
  /** eos ids from config.json, if any */
  readonly configEosIds: number[];
  /** Throws ARG_POLICY when this family cannot run `policy` (budget already unwrapped). */
  checkPolicy(policy: DepthPolicy, inBudget: boolean): void;
  /** Throws when `kvStrategy` is not a KV strategy of this family (spec/api.md §KV strategies). */
  checkKvStrategy(kvStrategy: string | undefined): void;
  newSession(capacity: number, seed: number, kvStrategy?: string): FamilySession;
  run(session: FamilySession, ids: readonly number[], control: StepControl): StepOutput;
}

/** A Huginn exit criterion name as createExitEvaluator matches it (exact names; anything containing 'kl' is KL). */
function isHuginnCriterion(name: string): boolean {
  return name !== 'none' && (EXIT_CRITERIA.includes(name as never) || name.includes('kl'));
}

function unsupported(family: Family, policy: DepthPolicy, supported: string): PonderError {
  return new PonderError('ARG_POLICY', `the ${family} family cannot run the depth policy ${describePolicy(policy)}`, {
    field: 'policy', hint: `${family} supports: ${supported} (spec/policies.md)`,
  });
}

// ---------------------------------------------------------------------------------------------
// Detection

/** The family a config.json belongs to. Unknown model types are CFG_MODEL_TYPE naming the supported ones. */
export function detectFamily(config: ConfigObject | Record<string, unknown>, label = 'config.json'): Family {
  const c = 'values' in config && 'used' in config ? config as ConfigObject : configObject(config, label);
  const v = c.values as Record<string, unknown>;
  if ('model_config' in v && 'cfg' in v) return 'mor';
  const modelType = typeof v.model_type === 'string' ? v.model_type : undefined;
  if (modelType === 'ouro') return 'ouro';
  if (modelType === 'huginn_raven') return 'huginn';
  if (modelType === undefined && 'n_embd' in v && 'mean_recurrence' in v) return 'huginn';
  throw unsupportedModelType(c, modelType ?? '(none: no model_type and no field that identifies a family)', SUPPORTED_MODEL_TYPES);
}

export function createAdapter(family: Family, config: Record<string, unknown>, weights: WeightSource, runtime: Runtime, label: string, seed = 0): FamilyAdapter {
  switch (family) {
    case 'huginn': return new HuginnAdapter(loadHuginn(weights, runtime, parseHuginnConfig(config, label), { seed }), config);
    case 'ouro': return new OuroAdapter(OuroModel.load(runtime, ouroConfigFromJson(config, label), weights), config);
    case 'mor': return new MorAdapter(loadMor(weights, config, runtime), config);
  }
}

function eosIds(value: unknown): number[] {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return [value];
  if (Array.isArray(value)) return value.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0);
  return [];
}

// ---------------------------------------------------------------------------------------------
// Huginn: the adapter drives the recurrence itself (embedInputs → coreStep × n → predictFromLatents),
// which is upstream's generate_with_adaptive_compute loop for one sequence, so every policy can
// decide after every step.

interface HuginnSession extends FamilySession {
  readonly cache: HuginnCache;
  readonly initialStates: InitialStates;
}

class HuginnAdapter implements FamilyAdapter {
  readonly family = 'huginn' as const;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly defaultDepth: number;
  readonly configEosIds: number[];
  /** multiply-add FLOPs of one token through one sandwich block's linears, of the adapter, of the head */
  private readonly blockFlops: number;
  private readonly adapterFlops: number;
  private readonly headFlops: number;

  constructor(readonly model: HuginnModel, config: Record<string, unknown>) {
    const c = model.config;
    this.vocabSize = c.vocabSize;
    this.contextLength = c.blockSize;
    this.defaultDepth = c.meanRecurrence;
    this.configEosIds = eosIds(config.eos_token_id);
    const shapes = new Map(huginnTensorShapes(c));
    const numel = (name: string): number => shapes.get(name)!.reduce((a, b) => a * b, 1);
    const p = 'transformer.core_block.0.';
    this.blockFlops = 2 * (numel(p + 'attn.Wqkv.weight') + numel(p + 'attn.proj.weight') + numel(p + 'mlp.fc.weight') + numel(p + 'mlp.proj.weight'));
    this.adapterFlops = 2 * numel('transformer.adapter.weight');
    this.headFlops = 2 * c.vocabSize * c.nEmbd;
  }

  checkPolicy(policy: DepthPolicy): void {
    const ok = 'default, fixed(n), exit(criterion, threshold) with a Huginn criterion, budget(n, any of these), a depth function';
    if (policy.kind === 'router') throw unsupported('huginn', policy, ok);
    if (policy.kind === 'exit' && (policy.criterion === 'gate' || !(EXIT_CRITERIA.includes(policy.criterion as never) || policy.criterion.includes('kl')))) {
      throw new PonderError('ARG_POLICY', `huginn has no exit criterion ${JSON.stringify(policy.criterion)}`, { field: 'policy', hint: `use one of ${EXIT_CRITERIA.filter((c) => c !== 'none').join(', ')}` });
    }
    if (policy.kind === 'exit' && policy.mode === 'select') throw unsupported('huginn', policy, 'exit without a mode (Huginn always skips the steps after an exit, as upstream)');
  }

  checkKvStrategy(kvStrategy: string | undefined): void {
    if (kvStrategy !== undefined) parseCacheStrategy(kvStrategy); // HUGINN_CACHE_STRATEGY naming the choices
  }

  newSession(_capacity: number, seed: number, kvStrategy = 'full'): HuginnSession {
    return { length: 0, cache: this.model.newCache(kvStrategy), initialStates: seededInitialStates(seed) };
  }

  run(s: FamilySession, ids: readonly number[], control: StepControl): StepOutput {
    const session = s as HuginnSession;
    const model = this.model, c = model.config, E = c.nEmbd, V = c.vocabSize;
    const S = ids.length;
    const positions = Int32Array.from({ length: S }, (_, i) => session.length + i);
    const ctx: CallContext = { positions, cache: session.cache };
    const policy = control.policy;
    const maxSteps = policy.kind === 'fixed' ? policy.steps
      : policy.kind === 'exit' || policy.kind === 'function' ? policy.maxSteps ?? c.meanRecurrence
      : c.meanRecurrence;
    const loopMax = control.cap === null ? maxSteps : Math.min(maxSteps, control.cap);
    const evaluator: ExitEvaluator | null = policy.kind === 'exit' ? createExitEvaluator(policy.criterion, policy.threshold, V) : null;
    const minSteps = policy.kind === 'exit' ? policy.minSteps ?? 0 : 0;
    const every = policy.kind === 'exit' ? policy.checkEvery ?? 1 : 1;

    const e = model.embedInputs(ids, 1, S, ctx);
    let current = model.initialState(1, S, 1, session.initialStates);
    evaluator?.init(current, 1, S, E);
    const criterionValues: (number | null)[] = new Array<number | null>(maxSteps).fill(null);
    let outputs: Float32Array | null = null; // upstream's `outputs`: the last coda evaluation of this call
    let evaluations = 0;
    let steps = 0;
    let reason: ExitReason | null = null;
    const evaluate = (state: Float32Array): Float32Array => { evaluations++; return (outputs = model.predictFromLatents(state, 1, S, ctx, 'last').logits); };

    for (let step = 0; step < loopMax; step++) {
      const previous = current;
      current = model.coreStep(e, current, 1, S, step, ctx);
      steps = step + 1;
      if (evaluator) {
        if (step < minSteps || (step - minSteps) % every !== 0) continue;
        outputs = null; // a check replaces upstream's `outputs` (null for latent criteria)
        const state = current;
        const check = evaluator.check({ state, B: 1, S, E, V, evaluate: () => evaluate(state) });
        criterionValues[step] = check.values[0];
        if (check.exits[0]) { reason = 'criterion'; break; }
      } else if (policy.kind === 'function') {
        const state = current;
        let logitsNow: Float32Array | null = null;
        const summary: StepSummary = {
          step: steps, maxSteps, position: positions[S - 1], phase: control.phase, stepsSpent: control.stepsSpent,
          latentChange: relativeChange(previous, state, (S - 1) * E, E),
          logits: () => (logitsNow ??= evaluate(state).slice()),
        };
        outputs = null;
        const decision = policy.decide(steps, summary);
        if (logitsNow !== null) outputs = logitsNow;
        if (decision === 'stop' || decision === false) { reason = 'policy'; break; }
      }
    }
    if (reason === null) {
      reason = loopMax < maxSteps ? 'budget' : policy.kind === 'exit' || policy.kind === 'function' ? 'cap' : 'fixed';
    }
    // as upstream: a token that never exited takes the last evaluation of the call (stale if it
    // predates the final step, with check-every-n); without any evaluation the final state is decoded
    if (outputs === null) outputs = evaluate(current);
    const logits = (outputs as Float32Array).slice(0, V);
    session.length += S;

    const kvBytes = session.cache.memoryBytes();
    // Attention work from what the cache holds: a layer filed under `slot` attends, for query i of
    // the call, to the slot's entries aligned lower-right (Tk − S + i + 1 keys); a token that
    // exited early left holes in the deeper slots, so later tokens see fewer keys there.
    const cache = session.cache, seen = cache.seenTokens;
    const entriesIn = (slot: number): number => { let n = 0; for (let q = 0; q < seen; q++) if (cache.has(slot, q)) n++; return n; };
    // HuginnCache.update: the stored slot's own entries under "full" / "skip" lookups (or when it
    // holds every position); the other lookups return one entry per position
    const ownEntriesOnly = cache.strategyName === 'full' || cache.strategy.lookup === 'full' || cache.strategy.lookup === 'skip';
    const keysAt = (slot: number): number => { const own = entriesIn(cache.storageSlot(slot)); return ownEntriesOnly || own === seen ? own : seen; };
    let slotKeys = 0, slotsRun = 0; // Σ over applied layers of (Tk − S), and their number
    const addSlot = (slot: number, times = 1): void => { slotKeys += times * (keysAt(slot) - S); slotsRun += times; };
    for (let i = 0; i < c.nPrelude; i++) addSlot(i);
    for (let step = 0; step < steps; step++) for (let j = 0; j < c.nCore; j++) addSlot(c.nPrelude + step * c.nCore + j);
    for (let j = 0; j < c.nCoda; j++) addSlot(-(j + 1), evaluations);
    const tokens: TokenTrace[] = ids.map((id, i) => {
      let flops = c.nPrelude * this.blockFlops + steps * (this.adapterFlops + c.nCore * this.blockFlops) + evaluations * c.nCoda * this.blockFlops
        + 4 * c.nHeads * c.headDim * (slotKeys + slotsRun * (i + 1));
      if (i === S - 1) flops += evaluations * this.headFlops;
      const t: TokenTrace = {
        id, phase: control.phase, steps, maxSteps, exitReason: reason!,
        criterionValues: evaluator ? criterionValues.slice(0, Math.max(steps, 0)) : [], routerScores: [], flops, kvBytes,
      };
      if (evaluator) { t.criterion = evaluator.name; if (Number.isFinite(evaluator.threshold)) t.threshold = evaluator.threshold; }
      return t;
    });
    return { logits, tokens };
  }
}

/** ‖b − a‖ / ‖b‖ over `n` values at `offset` (NaN when b is zero). */
function relativeChange(a: Float32Array, b: Float32Array, offset: number, n: number): number {
  let diff = 0, norm = 0;
  for (let i = offset; i < offset + n; i++) { const d = b[i] - a[i]; diff += d * d; norm += b[i] * b[i]; }
  return norm > 0 ? Math.sqrt(diff / norm) : NaN;
}

// ---------------------------------------------------------------------------------------------
// Ouro: one OuroModel.forward per call, appending to the cache.

interface OuroSession extends FamilySession {
  readonly cache: OuroCache;
  /** what later tokens attend to in a loop an exited token skipped (skip mode only) */
  readonly missingKv: MissingKvPolicy;
}

class OuroAdapter implements FamilyAdapter {
  readonly family = 'ouro' as const;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly defaultDepth: number;
  readonly configEosIds: number[];
  private readonly kvRowBytes: number;

  constructor(readonly model: OuroModel, config: Record<string, unknown>) {
    const c = model.config;
    this.vocabSize = c.vocabSize;
    this.contextLength = c.maxPositionEmbeddings;
    this.defaultDepth = c.totalUtSteps;
    this.configEosIds = eosIds(config.eos_token_id);
    this.kvRowBytes = c.totalUtSteps * c.numLayers * 2 * c.numKvHeads * c.headDim * 4;
  }

  checkPolicy(policy: DepthPolicy, inBudget: boolean): void {
    const ok = 'default, fixed(n), exit(gate, threshold[, skip|select]), exit(huginn criterion, threshold), a depth function, budget(n[, fixed(m) | exit(criterion) | function])';
    if (policy.kind === 'router') throw unsupported('ouro', policy, ok);
    if (policy.kind === 'exit' && policy.criterion !== 'gate' && !isHuginnCriterion(policy.criterion)) {
      throw new PonderError('ARG_POLICY', `ouro has no exit criterion ${JSON.stringify(policy.criterion)}`, { field: 'policy', hint: `use its learned gate, exit(gate, 0.5), or one of ${EXIT_CRITERIA.filter((c) => c !== 'none').join(', ')}` });
    }
    if (policy.kind === 'exit' && policy.criterion === 'gate' && (policy.minSteps !== undefined || policy.checkEvery !== undefined || policy.maxSteps !== undefined)) throw unsupported('ouro', policy, 'exit(gate, threshold) without minSteps / checkEvery / maxSteps');
    if (policy.kind === 'exit' && policy.criterion !== 'gate' && policy.mode === 'select') throw unsupported('ouro', policy, `exit(${policy.criterion}, t) in skip mode (select is upstream's gate read-out only)`);
    if (policy.kind === 'fixed' && policy.steps > this.defaultDepth) throw new PonderError('ARG_POLICY', `fixed(${policy.steps}) exceeds ouro's total_ut_steps ${this.defaultDepth}`, { field: 'policy', hint: `use fixed(1..${this.defaultDepth})` });
    if (inBudget && policy.kind === 'exit' && policy.criterion === 'gate') throw unsupported('ouro', policy, 'budget(n[, fixed(m) | exit(criterion) | function]) (a budget cannot cap the gate read-out)');
  }

  checkKvStrategy(kvStrategy: string | undefined): void {
    if (kvStrategy !== undefined && kvStrategy !== 'copy-forward' && kvStrategy !== 'exclude') {
      throw new PonderError('ARG_INVALID', `ouro KV strategy must be 'copy-forward' or 'exclude', got ${JSON.stringify(kvStrategy)}`, { field: 'kvStrategy', hint: 'what later tokens attend to in loops an early-exited token skipped (spec/ouro.md)' });
    }
  }

  newSession(capacity: number, _seed: number, kvStrategy?: string): OuroSession {
    return { length: 0, cache: this.model.newCache(capacity), missingKv: (kvStrategy ?? 'copy-forward') as MissingKvPolicy };
  }

  /**
   * exit(Huginn criterion) and depth functions on Ouro (our extension): OuroModel.forward asks after
   * every loop of every token still looping; the token's evaluator sees its post-norm h_t as the
   * state and lm_head(h_t) as the logits. The state before loop 1 counts as zero (Ouro has no
   * random initial state), so latent criteria cannot fire at loop 1.
   */
  private exitHook(policy: DepthPolicy, control: StepControl, callStart: number) {
    const T = this.defaultDepth, H = this.model.config.hiddenSize, V = this.vocabSize;
    const maxSteps = Math.min(T, (policy.kind === 'exit' || policy.kind === 'function' ? policy.maxSteps : undefined) ?? T);
    const limit = control.cap === null ? maxSteps : Math.max(1, Math.min(maxSteps, control.cap));
    const values = new Map<number, (number | null)[]>();
    const stoppedBy = new Map<number, ExitReason>();
    const evaluators = new Map<number, ExitEvaluator>();
    const previous = new Map<number, Float32Array>();
    let criterion: string | null = null;
    let threshold = NaN;
    let check: NonNullable<OuroForwardOptions['exitCheck']>;
    if (policy.kind === 'exit') {
      const probe = createExitEvaluator(policy.criterion, policy.threshold, V);
      criterion = probe.name;
      threshold = probe.threshold;
      const minSteps = policy.minSteps ?? 0, every = policy.checkEvery ?? 1;
      check = (t, i, hidden, logits) => {
        if (!values.has(i)) values.set(i, new Array<number | null>(maxSteps).fill(null));
        if (t < minSteps || (t - minSteps) % every !== 0) return false;
        let evaluator = evaluators.get(i);
        if (!evaluator) {
          evaluator = createExitEvaluator(policy.criterion, policy.threshold, V);
          evaluator.init(new Float32Array(H), 1, 1, H);
          evaluators.set(i, evaluator);
        }
        const result = evaluator.check({ state: hidden, B: 1, S: 1, E: H, V, evaluate: logits });
        values.get(i)![t] = result.values[0];
        if (result.exits[0]) stoppedBy.set(i, 'criterion');
        return result.exits[0];
      };
    } else {
      const decide = (policy as Extract<DepthPolicy, { kind: 'function' }>).decide;
      check = (t, i, hidden, logits) => {
        const before = previous.get(i);
        previous.set(i, hidden.slice());
        let cached: Float32Array | null = null;
        const summary: StepSummary = {
          step: t + 1, maxSteps, position: callStart + i, phase: control.phase, stepsSpent: control.stepsSpent,
          latentChange: before ? relativeChange(before, hidden, 0, H) : NaN,
          logits: () => (cached ??= logits()),
        };
        const decision = decide(t + 1, summary);
        const stop = decision === 'stop' || decision === false;
        if (stop) stoppedBy.set(i, 'policy');
        return stop;
      };
    }
    return { limit, maxSteps, values, stoppedBy, criterion, threshold, check };
  }

  run(s: FamilySession, ids: readonly number[], control: StepControl): StepOutput {
    const session = s as OuroSession;
    const T = this.defaultDepth;
    const policy = control.policy;
    const opts: OuroForwardOptions = { cache: session.cache, logitsToKeep: 1, missingKv: session.missingKv };
    let gate = false;
    let capped = false;
    const hooked = policy.kind === 'function' || (policy.kind === 'exit' && policy.criterion !== 'gate');
    const hook = hooked ? this.exitHook(policy, control, session.cache.length) : null;
    if (hook) {
      opts.exitAtStep = hook.limit - 1;
      opts.exitMode = 'skip';
      opts.exitCheck = hook.check;
    } else if (control.cap !== null) {
      const want = policy.kind === 'fixed' ? policy.steps : T;
      const n = Math.min(want, control.cap);
      capped = n < want;
      opts.exitAtStep = n - 1;
      opts.exitMode = 'skip';
    } else if (policy.kind === 'fixed') {
      opts.exitAtStep = policy.steps - 1;
      opts.exitMode = 'skip';
    } else if (policy.kind === 'exit') {
      opts.exitThreshold = policy.threshold === 'auto' ? this.model.config.earlyExitThreshold ?? 1 : policy.threshold;
      opts.exitMode = policy.mode ?? 'skip';
      gate = true;
    }
    const r = this.model.forward(ids, opts);
    // the default read-out of the released checkpoints is the gate threshold (early_exit_threshold 1.0)
    if (!gate && control.cap === null && policy.kind === 'default' && r.readout.kind === 'threshold') gate = true;
    session.length = session.cache.length;
    const kvBytes = session.cache.length * this.kvRowBytes;
    const tokens: TokenTrace[] = ids.map((id, i) => {
      const tr = r.trace[i];
      if (hook) {
        const reason = hook.stoppedBy.get(i) ?? (tr.steps === hook.limit && hook.limit < hook.maxSteps ? 'budget' : 'cap');
        const t: TokenTrace = { id, phase: control.phase, steps: tr.steps, maxSteps: hook.maxSteps, exitReason: reason, criterionValues: (hook.values.get(i) ?? []).slice(0, tr.steps), routerScores: [], flops: tr.flops, kvBytes };
        if (hook.criterion !== null) { t.criterion = hook.criterion; if (Number.isFinite(hook.threshold)) t.threshold = hook.threshold; }
        return t;
      }
      const cdf: (number | null)[] = [];
      if (gate) for (let t = 0; t < tr.steps; t++) { const v = r.cdf[i * T + t]; cdf.push(Number.isNaN(v) ? null : v); }
      let reason: ExitReason = capped ? 'budget' : 'fixed';
      let threshold: number | undefined;
      if (gate && r.readout.kind === 'threshold') {
        threshold = r.readout.threshold;
        const crossed = cdf.findIndex((v) => v !== null && v >= Math.fround(threshold!));
        reason = crossed !== -1 && crossed === (r.exitSteps ? r.exitSteps[i] : -2) ? 'criterion' : 'cap';
      }
      const t: TokenTrace = { id, phase: control.phase, steps: tr.steps, maxSteps: T, exitReason: reason, criterionValues: cdf, routerScores: [], flops: tr.flops, kvBytes };
      if (gate) { t.criterion = 'gate'; if (threshold !== undefined) t.threshold = threshold; }
      return t;
    });
    return { logits: r.logits.slice(0, this.vocabSize), tokens };
  }
}

// ---------------------------------------------------------------------------------------------
// MoR: one MorModel.forward per call on a one-row session; the routers decide the depth.

interface MorAdapterSession extends FamilySession {
  readonly session: MorSession;
}

class MorAdapter implements FamilyAdapter {
  readonly family = 'mor' as const;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly defaultDepth: number;
  readonly configEosIds: number[];
  private readonly routed: boolean;
  private readonly kvRowBytes: number;

  constructor(readonly model: MorModel, config: Record<string, unknown>) {
    const c = model.config;
    this.vocabSize = c.dims.vocab;
    this.contextLength = model.maxLen;
    this.routed = c.variant === 'expert' || c.variant === 'token';
    this.defaultDepth = Math.max(c.numRecursion, 1);
    const mc = (config.model_config ?? {}) as Record<string, unknown>;
    this.configEosIds = eosIds(mc.eos_token_id);
    this.kvRowBytes = 2 * c.dims.nKvHeads * c.dims.headDim * 4 + 4;
  }

  checkPolicy(policy: DepthPolicy, inBudget: boolean): void {
    const expert = this.model.config.variant === 'expert';
    const ok = expert ? 'default (= router(upstream)), router(upstream), router(causal, threshold), fixed(n), exit(huginn criterion, threshold), a depth function, budget(n[, fixed | exit | function])'
      : this.routed ? 'default (= router(upstream)), router(upstream), router(causal, threshold)'
      : `default, fixed(${this.defaultDepth}) (a baseline without routers always runs its full depth)`;
    if (policy.kind === 'fixed' && policy.steps > this.defaultDepth) throw new PonderError('ARG_POLICY', `fixed(${policy.steps}) exceeds MoR's num_recursion ${this.defaultDepth}`, { field: 'policy', hint: `use fixed(1..${this.defaultDepth})` });
    if (expert) {
      // the per-recursion hook (causal expert choice) runs everything but upstream routing under a budget
      if (policy.kind === 'router') { if (!inBudget) return; throw unsupported('mor', policy, 'budget(n[, fixed | exit | function]) (the routers cannot be capped)'); }
      if (policy.kind === 'exit' && (policy.criterion === 'gate' || !isHuginnCriterion(policy.criterion) || policy.mode === 'select')) {
        throw new PonderError('ARG_POLICY', `MoR has no exit criterion ${JSON.stringify(policy.criterion)}${policy.mode === 'select' ? ' in select mode' : ''}`, { field: 'policy', hint: `use one of ${EXIT_CRITERIA.filter((c) => c !== 'none').join(', ')} (read from the logits after each recursion)` });
      }
      return;
    }
    if (inBudget) throw unsupported('mor', { kind: 'budget', maxStepsPerSequence: 1, perToken: policy }, ok);
    if (policy.kind === 'default') return;
    if (this.routed && policy.kind === 'router') return;
    if (!this.routed && policy.kind === 'fixed' && policy.steps === this.defaultDepth) return;
    throw unsupported('mor', policy, ok);
  }

  /**
   * Every policy but the routers' own, on expert-choice MoR (our extension): the causal decode mode
   * asks before each recursion r ≥ 1 whether a token goes on, with its residual stream and an early
   * read-out lm_head(norm(h)) that skips the suffix layers. The first recursion always runs; the
   * state before it counts as zero for latent criteria.
   */
  private stepHook(policy: DepthPolicy, control: StepControl, callStart: number) {
    const R = this.defaultDepth, H = this.model.config.dims.hidden, V = this.vocabSize;
    const maxSteps = policy.kind === 'fixed' ? policy.steps : Math.min(R, (policy.kind === 'exit' || policy.kind === 'function' ? policy.maxSteps : undefined) ?? R);
    const limit = control.cap === null ? maxSteps : Math.max(1, Math.min(maxSteps, control.cap));
    const values = new Map<number, (number | null)[]>();
    const stoppedBy = new Map<number, ExitReason>();
    const evaluators = new Map<number, ExitEvaluator>();
    const previous = new Map<number, Float32Array>();
    let criterion: string | null = null;
    let threshold = NaN;
    let decide: (r: number, t: number, hidden: Float32Array, logits: () => Float32Array) => boolean;
    if (policy.kind === 'exit') {
      const probe = createExitEvaluator(policy.criterion, policy.threshold, V);
      criterion = probe.name;
      threshold = probe.threshold;
      const minSteps = policy.minSteps ?? 0, every = policy.checkEvery ?? 1;
      decide = (r, t, hidden, logits) => {
        if (!values.has(t)) values.set(t, new Array<number | null>(maxSteps).fill(null));
        const step = r - 1; // the check after recursion r (1-based) is Huginn's check at 0-based step r − 1
        if (step < minSteps || (step - minSteps) % every !== 0) return true;
        let evaluator = evaluators.get(t);
        if (!evaluator) { evaluator = createExitEvaluator(policy.criterion, policy.threshold, V); evaluator.init(new Float32Array(H), 1, 1, H); evaluators.set(t, evaluator); }
        const result = evaluator.check({ state: hidden, B: 1, S: 1, E: H, V, evaluate: logits });
        values.get(t)![step] = result.values[0];
        if (result.exits[0]) { stoppedBy.set(t, 'criterion'); return false; }
        return true;
      };
    } else if (policy.kind === 'function') {
      decide = (r, t, hidden, logits) => {
        const before = previous.get(t);
        previous.set(t, hidden.slice());
        let cached: Float32Array | null = null;
        const d = policy.decide(r, {
          step: r, maxSteps, position: callStart + t, phase: control.phase, stepsSpent: control.stepsSpent,
          latentChange: before ? relativeChange(before, hidden, 0, H) : NaN, logits: () => (cached ??= logits()),
        });
        if (d === 'stop' || d === false) { stoppedBy.set(t, 'policy'); return false; }
        return true;
      };
    } else {
      decide = () => true; // fixed / default: up to the limit
    }
    const stepCheck = (r: number, t: number, hidden: Float32Array, logits: () => Float32Array): boolean => {
      if (r >= limit) return false;
      return decide(r, t, hidden, logits);
    };
    const reasonFor = (t: number, steps: number): ExitReason => stoppedBy.get(t)
      ?? (steps === limit && limit < maxSteps ? 'budget' : policy.kind === 'fixed' || policy.kind === 'default' ? 'fixed' : 'cap');
    return { maxSteps, values, criterion, threshold, stepCheck, reasonFor };
  }

  checkKvStrategy(kvStrategy: string | undefined): void {
    if (kvStrategy !== undefined) {
      throw new PonderError('ARG_INVALID', `MoR takes no KV strategy option (got ${JSON.stringify(kvStrategy)}): its KV layout, including recursive KV sharing, comes from config.json`, { field: 'kvStrategy', hint: 'set kv_sharing in the config, or drop the option' });
    }
  }

  newSession(capacity: number): MorAdapterSession {
    return { length: 0, session: this.model.newSession(1, capacity) };
  }

  run(s: FamilySession, ids: readonly number[], control: StepControl): StepOutput {
    const st = s as MorAdapterSession;
    const policy = control.policy;
    const expert = this.model.config.variant === 'expert';
    const hooked = expert && (policy.kind === 'fixed' || policy.kind === 'exit' || policy.kind === 'function' || (policy.kind === 'default' && control.budgeted === true));
    const hook = hooked ? this.stepHook(policy, control, st.length) : null;
    const mode = hook ? 'causal' : policy.kind === 'router' ? policy.mode : 'upstream';
    const threshold = policy.kind === 'router' ? policy.threshold : undefined;
    const r = this.model.forward(st.session, [ids as number[]], hook ? { mode, stepCheck: hook.stepCheck } : threshold === undefined ? { mode } : { mode, threshold });
    st.length += ids.length;
    const V = this.vocabSize, T = ids.length, R = r.trace.numRecursion, Rt = Math.max(R, 1);
    let kvBytes = 0;
    for (const len of st.session.slotLengths(0).values()) kvBytes += len * this.kvRowBytes;
    const tokens: TokenTrace[] = ids.map((id, t) => {
      const scores: (number | null)[] = [];
      // causal expert-choice compares sigmoid(raw router logit) with the threshold: report that value;
      // otherwise upstream's router_probs (what its top-k / argmax selects on)
      const causalExpert = mode === 'causal' && this.model.config.variant === 'expert';
      if (this.routed) {
        for (let k = 0; k < R; k++) {
          const v = causalExpert ? r.trace.routerLogits[t * Rt + k] : r.trace.routerProbs[t * Rt + k];
          scores.push(Number.isNaN(v) ? null : causalExpert ? sigmoidF32(v) : v);
        }
      }
      const steps = this.routed ? r.trace.depth[t] : this.defaultDepth;
      if (hook) {
        const tr: TokenTrace = {
          id, phase: control.phase, steps, maxSteps: this.defaultDepth, exitReason: hook.reasonFor(t, steps),
          criterionValues: (hook.values.get(t) ?? []).slice(0, steps), routerScores: scores, flops: r.trace.flops[t], kvBytes,
        };
        if (hook.criterion !== null) { tr.criterion = hook.criterion; if (Number.isFinite(hook.threshold)) tr.threshold = hook.threshold; }
        return tr;
      }
      const tr: TokenTrace = {
        id, phase: control.phase, steps, maxSteps: this.defaultDepth, exitReason: this.routed ? 'router' : 'fixed',
        criterionValues: [], routerScores: scores, flops: r.trace.flops[t], kvBytes,
      };
      if (mode === 'causal') { tr.criterion = 'router'; tr.threshold = threshold ?? 0.5; }
      return tr;
    });
    return { logits: r.logits.slice((T - 1) * V, T * V), tokens };
  }
}
