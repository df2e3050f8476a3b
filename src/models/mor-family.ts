/**
 * Mixture-of-Recursions as a family: config, layout and tensors (mor-config.ts), weights
 * (mor-weights.ts), the model (mor.ts), and the adapter the API drives: one MorModel.forward per
 * call on a one-row session — the forward the golden cases check; the routers decide the depth,
 * or (expert choice, our extension) the depth controller in the causal decode mode.
 */
import type { ConfigObject } from '../format/config.js';
import type { DepthPolicy } from '../depth/policy.js';
import { PonderError } from '../errors.js';
import type { TokenTrace } from '../trace/trace.js';
import { DepthController } from '../depth/controller.js';
import { checkPolicySupport, type DepthKind } from '../depth/support.js';
import { refuseInitialStates, type FamilyAdapter, type FamilyDefinition, type FamilySession, type SessionOptions, type StepControl, type StepOutput } from './family.js';
import { KV_DTYPE_BYTES } from '../runtime/plan.js';
import { place } from './placement.js';
import { morMemory, morTensors, parseMorConfig, type MorConfig } from './mor-config.js';
import { sigmoidF32 } from './mor-routing.js';
import { bindMor, type DecodeMode, type MorModel, type MorSession } from './mor.js';
import { CachePool } from './cache-pool.js';

/** What a criterion checks before each recursion (for NUM_NONFINITE messages). */
const MOR_CRITERION_INPUTS = { state: 'the residual stream h', logits: 'the early read-out lm_head(norm(h))' };

export const morFamily: FamilyDefinition<MorConfig, MorModel> = {
  family: 'mor',
  recognisedBy: 'MoR (model_config + cfg: the config `ponder convert mor` writes from the release\'s base config.json and experiment YAML)',
  detect: (v) => 'model_config' in v && 'cfg' in v,
  parseConfig: (config: ConfigObject) => parseMorConfig(config, config.path),
  tensors: (config) => morTensors(config),
  memory: morMemory,
  stops: (c) => ({ eosIds: c.eosIds, builtin: [] }),
  load: (config, source, runtime, options = {}) => bindMor(config, source, runtime, { maxLen: options.context, placement: place(morTensors(config), morMemory(config), source, runtime, options) }),
  adapter: (model) => new MorAdapter(model),
};

interface MorAdapterSession extends FamilySession {
  readonly session: MorSession;
}

class MorAdapter implements FamilyAdapter {
  readonly family = 'mor' as const;
  readonly depthKind: DepthKind;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly defaultDepth: number;
  private readonly routed: boolean;
  private readonly kvRowBytes: number;
  private readonly sessions: CachePool<MorSession>;

  constructor(readonly model: MorModel) {
    const c = model.config;
    this.sessions = new CachePool(model.maxLen, (capacity) => model.newSession(1, capacity), (session) => session.maxLen);
    this.vocabSize = c.dims.vocab;
    this.contextLength = model.maxLen;
    this.routed = c.variant === 'expert' || c.variant === 'token';
    this.depthKind = c.variant === 'expert' ? 'mor-expert' : c.variant === 'token' ? 'mor-token' : 'mor-baseline';
    this.defaultDepth = Math.max(c.numRecursion, 1);
    this.kvRowBytes = 2 * c.dims.nKvHeads * c.dims.headDim * KV_DTYPE_BYTES[model.kvDtype] + 4; // K and V at the cache's dtype, and the i32 position
  }

  checkPolicy(policy: DepthPolicy): void {
    checkPolicySupport(this.depthKind, this.family, this.defaultDepth, policy);
  }

  checkSessionOptions(o: SessionOptions): void {
    refuseInitialStates(this.family, o);
    if (o.kvStrategy !== undefined) {
      throw new PonderError('ARG_INVALID', `MoR takes no KV strategy option (got ${JSON.stringify(o.kvStrategy)}): its KV layout, including recursive KV sharing, comes from config.json`, { field: 'kvStrategy', hint: 'set kv_sharing in the config, or drop the option' });
    }
  }

  newSession(capacity: number): MorAdapterSession {
    const session = this.sessions.take(capacity);
    session.reset();
    return { length: 0, capacity: session.maxLen, session };
  }

  endSession(s: FamilySession): void {
    this.sessions.give((s as MorAdapterSession).session);
  }

  /**
   * Only where a call of several tokens after a cached sequence is upstream's own continuation, or our
   * causal mode's (which equals one causal forward): not upstream expert-choice (top-k over the
   * call's tokens; upstream gathers mask columns at call indices), not update_cache KV sharing
   * (rows refreshed by index within the call). spec/api.md §Chat.
   */
  continues(s: FamilySession, control: Pick<StepControl, 'policy' | 'budgeted'>): boolean {
    const { session } = s as MorAdapterSession;
    const mode = this.decodeMode(control.policy, control.budgeted === true);
    if (session.failed || (session.mode !== null && session.mode !== mode)) return false;
    if (mode === 'causal') return true;
    return this.model.config.variant !== 'expert' && !this.model.config.kvSharing?.updateCache;
  }

  /** Expert-choice under a policy the routers do not decide runs the causal decode mode, hooked to the depth controller. */
  private hooked(policy: DepthPolicy, budgeted: boolean): boolean {
    return this.model.config.variant === 'expert' && (policy.kind === 'fixed' || policy.kind === 'exit' || policy.kind === 'function' || (policy.kind === 'default' && budgeted));
  }

  private decodeMode(policy: DepthPolicy, budgeted: boolean): DecodeMode {
    return this.hooked(policy, budgeted) ? 'causal' : policy.kind === 'router' ? policy.mode : 'upstream';
  }

  run(s: FamilySession, ids: readonly number[], control: StepControl): StepOutput {
    const st = s as MorAdapterSession;
    const policy = control.policy;
    // every policy but the routers' own, on expert-choice MoR (our extension): the causal decode mode
    // asks the depth controller before each recursion r ≥ 1 whether a token goes on, with its
    // residual stream and an early read-out lm_head(norm(h)) that skips the suffix layers; the
    // first recursion always runs, and the state before it counts as zero for latent criteria
    const hooked = this.hooked(policy, control.budgeted === true);
    const depth = hooked ? DepthController.forPolicy(policy, { defaultDepth: this.defaultDepth, depthLimit: this.defaultDepth, cap: control.cap, phase: control.phase, stepsSpent: control.stepsSpent, vocabSize: this.vocabSize, inputs: MOR_CRITERION_INPUTS }) : null;
    const mode = this.decodeMode(policy, control.budgeted === true);
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
        return depth.withCriterion(tr);
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
