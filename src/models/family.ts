/**
 * The family contract: what each model family (Huginn, Ouro, MoR) implements, with the same
 * signatures, and registers once in src/models/registry.ts (how to add one: CONTRIBUTING.md).
 *
 *   config.json ─detect─▶ family ─parseConfig─▶ config ─tensors─▶ every tensor it implies (names, shapes, groups)
 *                                                 └─load(weights, runtime)─▶ model ─adapter─▶ what the API drives
 *
 * The model is the family's own object (HuginnModel, OuroModel, MorModel): its conform runner
 * (src/conform/<family>.ts) drives it against the golden cases. The adapter runs one call (a prompt
 * or one generated token) on one sequence under a depth policy, through the same model code.
 */
import type { ConfigObject } from '../format/config.js';
import type { DepthPolicy } from '../depth/policy.js';
import type { Runtime } from '../runtime/runtime.js';
import type { TokenTrace } from '../trace/trace.js';
import type { WeightSource } from './weights.js';
import { PonderError } from '../errors.js';
import type { KvDType, MemoryNeeds, MemoryPlan, PlanTensor } from '../runtime/plan.js';

export type { MemoryNeeds } from '../runtime/plan.js';

export type Family = 'mor' | 'huginn' | 'ouro';

/**
 * One tensor a config implies, by its upstream state_dict name. Every tensor is stored as F32,
 * BF16 or F16 (WeightBinder refuses other dtypes); `bind` says what it becomes:
 *   linear     a weight matrix [N, K] in the kernels' layout (BF16 stays BF16, F32/F16 → f32)
 *   f32        a norm weight or bias, widened to f32
 *   embedding  kept as stored outside the kernels' memory; the rows a call needs are widened
 *   buffer     not a parameter (a RoPE table): checked against the config, never bound
 */
export interface TensorSpec extends PlanTensor {
  /** may be absent from a checkpoint (a tied lm_head, a buffer the model recomputes) */
  readonly optional?: boolean;
}

export interface LoadOptions {
  /** Huginn: seed of the model's own initial-state stream. Default 0. */
  readonly seed?: number;
  /** The longest sequence a session may hold, which the memory plan and MoR's buffers are sized for. Default: the config's context. */
  readonly context?: number;
  /** How KV caches store keys and values. Default f32 (what conformance uses). */
  readonly kvDtype?: KvDType;
  /** The machine limit in bytes the plan is checked against (default: what the runtime reports, else none). */
  readonly maxMemory?: number;
  /** The largest memory shard (default 4 GiB minus the reserve); smaller values force more shards. */
  readonly maxShardBytes?: number;
  /** What the host offers (os.totalmem(), navigator.deviceMemory): the limit when maxMemory is not given. */
  readonly hostMemoryBytes?: number;
  /** The plan computed (and shards made) by the caller, e.g. loadModel; else load computes it. */
  readonly plan?: MemoryPlan;
}


/** What one adapter call is asked to do. */
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

/** What a session is started with (spec/api.md: the forward and generate options of the same names). */
export interface SessionOptions {
  /** Huginn: seed of the random initial latent states */
  readonly seed: number;
  /** Huginn: cache lookup strategy; Ouro: what later tokens attend to in loops an exited token skipped */
  readonly kvStrategy?: string;
  /** Huginn: s₀ of every position fed, in order ([positions, n_embd]), instead of draws from `seed` */
  readonly initialStates?: Float32Array;
}

export interface FamilySession {
  /** tokens the session's caches hold */
  length: number;
  /** positions its buffers hold at most */
  readonly capacity: number;
}

/** The ids a family's generation stops on by its config and its upstream code (spec/api.md §Chat). */
export interface FamilyStops {
  /** config.json eos_token_id (an id or a list); generation_config.json's, when present, replaces them */
  readonly eosIds: readonly number[];
  /** ids upstream's generation always stops on besides the eos ids (Huginn's _get_stops) */
  readonly builtin: readonly number[];
  /** where upstream says so, for inspect and model.stopIds() */
  readonly builtinSource?: string;
}

/** The object the API (src/api/model.ts) drives: one sequence (batch 1), one `run` per call. */
export interface FamilyAdapter {
  readonly family: Family;
  readonly vocabSize: number;
  /** positions a sequence may occupy (max_position_embeddings / block_size) */
  readonly contextLength: number;
  /** the depth `default` runs, and the trace's maxSteps for fixed policies */
  readonly defaultDepth: number;
  /** Throws ARG_POLICY when this model cannot run `policy` (a budget with its per-token policy): src/depth/support.ts. */
  checkPolicy(policy: DepthPolicy): void;
  /** Throws before any compute when a session option does not apply to this family (a KV strategy it does not have, initial states it does not draw). */
  checkSessionOptions(options: SessionOptions): void;
  /** A sequence of up to `capacity` positions. */
  newSession(capacity: number, options: SessionOptions): FamilySession;
  /** The session is done: its caches may be reused by a later session (arena memory is never freed, models/cache-pool.ts). Not used after. */
  endSession(session: FamilySession): void;
  /**
   * Whether `session`, which holds earlier tokens, may take a call of several more under this policy
   * and these options and compute what upstream computes when it continues a cached sequence (a
   * chat session's next turn); false when upstream defines no such continuation or the session was
   * built another way (another KV strategy, another MoR decode mode). spec/api.md §Chat.
   */
  continues(session: FamilySession, control: Pick<StepControl, 'policy' | 'budgeted'>, options: SessionOptions): boolean;
  run(session: FamilySession, ids: readonly number[], control: StepControl): StepOutput;
}

/** A family: every method with the same signature in every family. */
export interface FamilyDefinition<C = unknown, M = unknown> {
  readonly family: Family;
  /** its model_type and how its config.json is recognised, for the CFG_MODEL_TYPE hint */
  readonly recognisedBy: string;
  /** config.json (its plain values) belongs to this family */
  detect(values: Readonly<Record<string, unknown>>): boolean;
  /** The family's config, read through src/format/config.ts with upstream's field names; the keys it never reads stay listed by unknownKeys(config). */
  parseConfig(config: ConfigObject): C;
  /** Every tensor the config implies, in upstream's state_dict order. */
  tensors(config: C): TensorSpec[];
  /** KV cache and work buffers the memory plan counts besides the tensors. */
  memory(config: C): MemoryNeeds;
  /** The ids its generation stops on by the config and by upstream's code. */
  stops(config: C): FamilyStops;
  /** Binds `source` (checked against `tensors` before any data is read) onto `runtime`. */
  load(config: C, source: WeightSource, runtime: Runtime, options?: LoadOptions): M;
  /** What the API drives for a loaded model. */
  adapter(model: M): FamilyAdapter;
}

/** ARG_INVALID for initial states given to a family that draws none (only Huginn starts from a random state). */
export function refuseInitialStates(family: Family, options: SessionOptions): void {
  if (options.initialStates !== undefined) throw new PonderError('ARG_INVALID', `${family} has no initial latent state: initialStates is a Huginn option`, { field: 'initialStates', hint: 'drop the option' });
}
