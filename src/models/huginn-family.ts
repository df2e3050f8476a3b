/**
 * Huginn (recurrent depth) as a family: config and tensors (huginn-config.ts), the model
 * (huginn.ts), and the adapter the API drives. Every API call is one `recur` (huginn-generate.ts):
 * the same recurrence upstream's generate_minimal / generate_with_adaptive_compute run in the
 * golden cases, with the depth controller deciding after every step.
 */
import type { ConfigObject } from '../format/config.js';
import { PonderError } from '../errors.js';
import type { DepthPolicy } from '../depth/policy.js';
import type { TokenTrace } from '../trace/trace.js';
import { DepthController } from '../depth/controller.js';
import { checkPolicySupport } from '../depth/support.js';
import type { FamilyAdapter, FamilyDefinition, FamilySession, FamilyStops, SessionOptions, StepControl, StepOutput } from './family.js';
import { place } from './placement.js';
import { huginnMemory, huginnTensors, parseHuginnConfig, type HuginnConfig } from './huginn-config.js';
import { bindHuginn, injectedInitialStates, seededInitialStates, type HuginnModel, type InitialStates } from './huginn.js';
import { parseCacheStrategy, type HuginnCache } from './huginn-cache.js';
import { recur } from './huginn-generate.js';

export const huginnFamily: FamilyDefinition<HuginnConfig, HuginnModel> = {
  family: 'huginn',
  recognisedBy: 'huginn_raven (Huginn-0125; without model_type: n_embd and mean_recurrence)',
  detect: (v) => v.model_type === 'huginn_raven' || (v.model_type === undefined && 'n_embd' in v && 'mean_recurrence' in v),
  parseConfig: (config: ConfigObject) => parseHuginnConfig(config, config.path),
  tensors: huginnTensors,
  memory: huginnMemory,
  stops: huginnStops,
  load: (config, source, runtime, options = {}) => bindHuginn(config, source, runtime, { seed: options.seed, placement: place(huginnTensors(config), huginnMemory(config), source, runtime, options) }),
  adapter: (model) => new HuginnAdapter(model),
};

/** Upstream's generate paths always stop on <|begin_text|>, <|end_text|> and <|end_turn|> (`_get_stops`). */
export const HUGINN_BUILTIN_STOPS: readonly number[] = [65504, 65505, 65508];

function huginnStops(c: HuginnConfig): FamilyStops {
  return {
    eosIds: c.eosIds,
    builtin: HUGINN_BUILTIN_STOPS.filter((id) => id < c.vocabSize), // an id outside the vocabulary is never generated
    builtinSource: 'Huginn upstream: generation always stops on it (_get_stops)',
  };
}

interface HuginnSession extends FamilySession {
  readonly cache: HuginnCache;
  readonly initialStates: InitialStates;
}

class HuginnAdapter implements FamilyAdapter {
  readonly family = 'huginn' as const;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly defaultDepth: number;

  constructor(readonly model: HuginnModel) {
    const c = model.config;
    this.vocabSize = c.vocabSize;
    this.contextLength = c.blockSize;
    this.defaultDepth = c.meanRecurrence;
  }

  checkPolicy(policy: DepthPolicy): void {
    checkPolicySupport('huginn', this.family, this.defaultDepth, policy);
  }

  checkSessionOptions(o: SessionOptions): void {
    if (o.kvStrategy !== undefined) parseCacheStrategy(o.kvStrategy); // HUGINN_CACHE_STRATEGY naming the choices
    const E = this.model.config.nEmbd;
    if (o.initialStates !== undefined && (!(o.initialStates instanceof Float32Array) || o.initialStates.length === 0 || o.initialStates.length % E !== 0)) {
      throw new PonderError('ARG_INVALID', `initialStates must be a Float32Array of [positions, n_embd = ${E}] values`, { field: 'initialStates', hint: 'one n_embd row per position fed (the prompt, then each generated token), e.g. recorded from another run' });
    }
  }

  newSession(_capacity: number, o: SessionOptions): HuginnSession {
    const E = this.model.config.nEmbd;
    const initialStates = o.initialStates ? injectedInitialStates(o.initialStates, 1, o.initialStates.length / E, E) : seededInitialStates(o.seed);
    return { length: 0, capacity: this.contextLength, cache: this.model.newCache(o.kvStrategy ?? 'full'), initialStates };
  }

  /**
   * HuginnDynamicCache keeps every step's keys per position and upstream extends it call by call;
   * a later call only has to look them up the same way (the same strategy).
   */
  continues(s: FamilySession, _control: Pick<StepControl, 'policy' | 'budgeted'>, o: SessionOptions): boolean {
    const session = s as HuginnSession;
    return o.initialStates === undefined && session.cache.strategyName === (o.kvStrategy ?? 'full');
  }

  /** Huginn's cache is ordinary JS memory (huginn-cache.ts), so the garbage collector frees it. */
  endSession(): void {}

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
    const tokens: TokenTrace[] = ids.map((id, i) => depth.withCriterion({
      id, phase: control.phase, steps, maxSteps: depth.maxSteps, exitReason: r.run.exitReason(0, steps),
      criterionValues: r.run.criterionValues(0, steps), routerScores: [], flops: flops[i], kvBytes,
    }));
    return { logits: r.logits.slice(0, this.vocabSize), tokens };
  }
}
