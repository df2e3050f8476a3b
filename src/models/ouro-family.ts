/**
 * Ouro (LoopLM) as a family: config and tensors (ouro-config.ts), the model (ouro.ts), and the
 * adapter the API drives: one OuroModel.forward per call, appending to the session's cache — the
 * forward the golden cases check.
 */
import type { ConfigObject } from '../format/config.js';
import type { DepthPolicy } from '../depth/policy.js';
import { PonderError } from '../errors.js';
import type { ExitReason, TokenTrace } from '../trace/trace.js';
import { DepthController } from '../depth/controller.js';
import { checkPolicySupport } from '../depth/support.js';
import { refuseInitialStates, type FamilyAdapter, type FamilyDefinition, type FamilySession, type SessionOptions, type StepControl, type StepOutput } from './family.js';
import { KV_DTYPE_BYTES } from '../runtime/plan.js';
import { place } from './placement.js';
import { ouroConfigFromJson, ouroMemory, ouroTensors, type OuroConfig } from './ouro-config.js';
import { OuroModel, type MissingKvPolicy, type OuroCache, type OuroForwardOptions } from './ouro.js';
import { CachePool } from './cache-pool.js';

/** What a criterion checks after each loop (for NUM_NONFINITE messages). */
const OURO_CRITERION_INPUTS = { state: 'the hidden state h_t after model.norm', logits: 'the loop\'s logits lm_head(h_t)' };

export const ouroFamily: FamilyDefinition<OuroConfig, OuroModel> = {
  family: 'ouro',
  recognisedBy: 'ouro (Ouro-1.4B, Ouro-2.6B and their Thinking variants)',
  detect: (v) => v.model_type === 'ouro',
  parseConfig: (config: ConfigObject) => ouroConfigFromJson(config, config.path),
  tensors: ouroTensors,
  memory: ouroMemory,
  stops: (c) => ({ eosIds: c.eosIds, builtin: [] }),
  load: (config, source, runtime, options = {}) => OuroModel.bind(config, source, runtime, place(ouroTensors(config), ouroMemory(config), source, runtime, options)),
  adapter: (model) => new OuroAdapter(model),
};

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
  private readonly kvRowBytes: number;
  private readonly caches: CachePool<OuroCache>;

  constructor(readonly model: OuroModel) {
    const c = model.config;
    this.caches = new CachePool(c.maxPositionEmbeddings, (capacity) => model.newCache(capacity), (cache) => cache.capacity);
    this.vocabSize = c.vocabSize;
    this.contextLength = c.maxPositionEmbeddings;
    this.defaultDepth = c.totalUtSteps;
    this.kvRowBytes = c.totalUtSteps * c.numLayers * 2 * c.numKvHeads * c.headDim * KV_DTYPE_BYTES[model.kvDtype];
  }

  checkPolicy(policy: DepthPolicy): void {
    checkPolicySupport('ouro', this.family, this.defaultDepth, policy);
  }

  checkSessionOptions(o: SessionOptions): void {
    refuseInitialStates(this.family, o);
    if (o.kvStrategy !== undefined && o.kvStrategy !== 'copy-forward' && o.kvStrategy !== 'exclude') {
      throw new PonderError('ARG_INVALID', `ouro KV strategy must be 'copy-forward' or 'exclude', got ${JSON.stringify(o.kvStrategy)}`, { field: 'kvStrategy', hint: 'what later tokens attend to in loops an early-exited token skipped (spec/ouro.md)' });
    }
  }

  newSession(capacity: number, o: SessionOptions): OuroSession {
    const cache = this.caches.take(capacity);
    cache.length = 0;
    return { length: 0, capacity: cache.capacity, cache, missingKv: (o.kvStrategy ?? 'copy-forward') as MissingKvPolicy };
  }

  endSession(s: FamilySession): void {
    this.caches.give((s as OuroSession).cache);
  }

  /** One KV slot per (loop, layer), causal over positions: more tokens are upstream's continuation with past_key_values. */
  continues(s: FamilySession, _control: Pick<StepControl, 'policy' | 'budgeted'>, o: SessionOptions): boolean {
    return (s as OuroSession).missingKv === (o.kvStrategy ?? 'copy-forward');
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
      depth = DepthController.forPolicy(policy, { defaultDepth: T, depthLimit: T, cap: control.cap, phase: control.phase, stepsSpent: control.stepsSpent, vocabSize: this.vocabSize, inputs: OURO_CRITERION_INPUTS });
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
        return depth.withCriterion(t);
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
