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
import { loadHuginn, parseHuginnConfig, seededInitialStates, type HuginnModel, type InitialStates } from '../models/huginn.js';
import { recur } from '../models/huginn-generate.js';
import { parseCacheStrategy, type HuginnCache } from '../models/huginn-cache.js';
import { DepthController } from '../depth/controller.js';
import { checkPolicySupport, type DepthKind } from '../depth/support.js';
import { OuroModel, ouroConfigFromJson, type OuroCache, type OuroForwardOptions, type MissingKvPolicy } from '../models/ouro.js';
import { loadMor, type MorModel, type MorSession } from '../models/mor.js';
import { sigmoidF32 } from '../models/mor-routing.js';
import type { DepthPolicy } from './policy.js';

export type Family = 'mor' | 'huginn' | 'ouro';
export const SUPPORTED_MODEL_TYPES: readonly string[] = ['ouro', 'huginn_raven (Huginn-0125: n_embd + mean_recurrence)', 'MoR (model_config + cfg, as the MoR repository saves it)'];

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
  /** Throws ARG_POLICY when this model cannot run `policy` (a budget with its per-token policy): spec/policies.md, src/depth/support.ts. */
  checkPolicy(policy: DepthPolicy): void;
  /** Throws when `kvStrategy` is not a KV strategy of this family (spec/api.md §KV strategies). */
  checkKvStrategy(kvStrategy: string | undefined): void;
  newSession(capacity: number, seed: number, kvStrategy?: string): FamilySession;
  run(session: FamilySession, ids: readonly number[], control: StepControl): StepOutput;
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
  readonly depthKind: DepthKind = 'huginn';
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly defaultDepth: number;
  readonly configEosIds: number[];

  constructor(readonly model: HuginnModel, config: Record<string, unknown>) {
    const c = model.config;
    this.vocabSize = c.vocabSize;
    this.contextLength = c.blockSize;
    this.defaultDepth = c.meanRecurrence;
    this.configEosIds = eosIds(config.eos_token_id);
  }

  checkPolicy(policy: DepthPolicy): void {
    checkPolicySupport(this.depthKind, this.family, this.defaultDepth, policy);
  }

  checkKvStrategy(kvStrategy: string | undefined): void {
    if (kvStrategy !== undefined) parseCacheStrategy(kvStrategy); // HUGINN_CACHE_STRATEGY naming the choices
  }

  newSession(_capacity: number, seed: number, kvStrategy = 'full'): HuginnSession {
    return { length: 0, cache: this.model.newCache(kvStrategy), initialStates: seededInitialStates(seed) };
  }

  run(s: FamilySession, ids: readonly number[], control: StepControl): StepOutput {
    const session = s as HuginnSession;
    const S = ids.length;
    const depth = DepthController.forPolicy(control.policy, { defaultDepth: this.defaultDepth, cap: control.cap, phase: control.phase, stepsSpent: control.stepsSpent, vocabSize: this.vocabSize });
    const positions = Int32Array.from({ length: S }, (_, i) => session.length + i);
    const flops = new Float64Array(S);
    const state = this.model.initialState(1, S, 1, session.initialStates);
    const r = recur(this.model, { ids, B: 1, S, ctx: { positions, cache: session.cache, flops }, state, depth });
    session.length += S;
    const kvBytes = session.cache.memoryBytes();
    const steps = r.steps[0];
    const tokens: TokenTrace[] = ids.map((id, i) => {
      const t: TokenTrace = {
        id, phase: control.phase, steps, maxSteps: depth.maxSteps, exitReason: r.run.exitReason(0, steps),
        criterionValues: r.run.criterionValues(0, steps), routerScores: [], flops: flops[i], kvBytes,
      };
      return withCriterion(t, depth);
    });
    return { logits: r.logits.slice(0, this.vocabSize), tokens };
  }
}

/** The criterion and threshold fields of a trace entry, when the controller checked one. */
function withCriterion(t: TokenTrace, depth: DepthController): TokenTrace {
  if (depth.criterion !== null) { t.criterion = depth.criterion; if (Number.isFinite(depth.threshold)) t.threshold = depth.threshold; }
  return t;
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
  readonly depthKind: DepthKind = 'ouro';
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

  checkPolicy(policy: DepthPolicy): void {
    checkPolicySupport(this.depthKind, this.family, this.defaultDepth, policy);
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
   * Upstream's read-out decides the depth for `default` (the config's rule) and exit(gate, t); every
   * other policy is the depth controller's (our extension for exit(Huginn criterion) and depth
   * functions): OuroModel.forward asks it after every loop of every token still looping, with the
   * token's post-norm h_t as the state and lm_head(h_t) as the logits; fixed(n) and a budget's cap
   * end the loops at the controller's limit.
   */
  run(s: FamilySession, ids: readonly number[], control: StepControl): StepOutput {
    const session = s as OuroSession;
    const T = this.defaultDepth, H = this.model.config.hiddenSize;
    const policy = control.policy;
    const opts: OuroForwardOptions = { cache: session.cache, logitsToKeep: 1, missingKv: session.missingKv };
    const gateReadout = control.cap === null && (policy.kind === 'default' || (policy.kind === 'exit' && policy.criterion === 'gate'));
    let depth: DepthController | null = null;
    let gate = false;
    if (!gateReadout) {
      depth = DepthController.forPolicy(policy, { defaultDepth: T, depthLimit: T, cap: control.cap, phase: control.phase, stepsSpent: control.stepsSpent, vocabSize: this.vocabSize });
      opts.exitAtStep = depth.limit - 1;
      opts.exitMode = 'skip';
      if (policy.kind === 'exit' || policy.kind === 'function') {
        const controller = depth, start = session.cache.length;
        opts.exitCheck = (t, i, hidden, logits) => controller.token(i, start + i, H).after(t + 1, hidden, logits).stops[0];
      }
    } else if (policy.kind === 'exit') {
      opts.exitThreshold = policy.threshold === 'auto' ? this.model.config.earlyExitThreshold ?? 1 : policy.threshold;
      opts.exitMode = policy.mode ?? 'skip';
      gate = true;
    }
    const r = this.model.forward(ids, opts);
    // the default read-out of the released checkpoints is the gate threshold (early_exit_threshold 1.0)
    if (gateReadout && policy.kind === 'default' && r.readout.kind === 'threshold') gate = true;
    session.length = session.cache.length;
    const kvBytes = session.cache.length * this.kvRowBytes;
    const tokens: TokenTrace[] = ids.map((id, i) => {
      const tr = r.trace[i];
      if (depth) {
        const hooked = depth.criterion !== null || policy.kind === 'function';
        const t: TokenTrace = { id, phase: control.phase, steps: tr.steps, maxSteps: hooked ? depth.maxSteps : T, ...depth.tokenTrace(i, tr.steps), routerScores: [], flops: tr.flops, kvBytes };
        return withCriterion(t, depth);
      }
      const cdf: (number | null)[] = [];
      if (gate) for (let t = 0; t < tr.steps; t++) { const v = r.cdf[i * T + t]; cdf.push(Number.isNaN(v) ? null : v); }
      let reason: ExitReason = 'fixed';
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
  readonly depthKind: DepthKind;
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
    this.depthKind = c.variant === 'expert' ? 'mor-expert' : c.variant === 'token' ? 'mor-token' : 'mor-baseline';
    this.defaultDepth = Math.max(c.numRecursion, 1);
    const mc = (config.model_config ?? {}) as Record<string, unknown>;
    this.configEosIds = eosIds(mc.eos_token_id);
    this.kvRowBytes = 2 * c.dims.nKvHeads * c.dims.headDim * 4 + 4;
  }

  checkPolicy(policy: DepthPolicy): void {
    checkPolicySupport(this.depthKind, this.family, this.defaultDepth, policy);
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
    // every policy but the routers' own, on expert-choice MoR (our extension): the causal decode mode
    // asks the depth controller before each recursion r ≥ 1 whether a token goes on, with its
    // residual stream and an early read-out lm_head(norm(h)) that skips the suffix layers; the
    // first recursion always runs, and the state before it counts as zero for latent criteria
    const hooked = expert && (policy.kind === 'fixed' || policy.kind === 'exit' || policy.kind === 'function' || (policy.kind === 'default' && control.budgeted === true));
    const depth = hooked ? DepthController.forPolicy(policy, { defaultDepth: this.defaultDepth, depthLimit: this.defaultDepth, cap: control.cap, phase: control.phase, stepsSpent: control.stepsSpent, vocabSize: this.vocabSize }) : null;
    const mode = depth ? 'causal' : policy.kind === 'router' ? policy.mode : 'upstream';
    const threshold = policy.kind === 'router' ? policy.threshold : undefined;
    const H = this.model.config.dims.hidden, start = st.length;
    const stepCheck = depth ? (r: number, t: number, hidden: Float32Array, logits: () => Float32Array): boolean => r < depth.limit && !depth.token(t, start + t, H).after(r, hidden, logits).stops[0] : undefined;
    const r = this.model.forward(st.session, [ids as number[]], stepCheck ? { mode, stepCheck } : threshold === undefined ? { mode } : { mode, threshold });
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
      if (depth) {
        const tr: TokenTrace = { id, phase: control.phase, steps, maxSteps: this.defaultDepth, ...depth.tokenTrace(t, steps), routerScores: scores, flops: r.trace.flops[t], kvBytes };
        return withCriterion(tr, depth);
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
