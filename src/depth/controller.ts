/**
 * The depth controller: how many steps (Huginn recurrences, Ouro loops, MoR recursions) each
 * token runs. Built once per call from a depth policy — or, for upstream's
 * generate_with_adaptive_compute, from its exit evaluator and arguments — it is asked after every
 * step with the criterion inputs (the state, lazily the next-token logits) and answers per row:
 * go on, or stop. It records each check's criterion value and why each row stopped; the family
 * keeps the compute (it runs the steps, skips what a stop saves, and counts its own FLOPs).
 *
 *   const depth = DepthController.forPolicy(policy, { defaultDepth, cap, phase, stepsSpent, vocabSize });
 *   const run = depth.start(1, S, E, s0, { position });          // Huginn: one call, B rows
 *   for (let step = 1; step <= depth.limit && !run.allStopped(); step++) {
 *     state = coreStep(...);
 *     run.after(step, state, () => logitsOf(state));            // → which rows stop now
 *   }
 *   trace: run.exitReason(row, steps), run.criterionValues(row, steps)
 *
 * Ouro and MoR ask per token (`depth.token(i, position)`, a run of one row). Bookkeeping grows
 * with the steps actually run, never with the step cap: fixed(1e9) allocates nothing up front.
 */
import type { DepthFunction, DepthPolicy, StepSummary } from './policy.js';
import type { ExitReason, TokenTrace } from '../trace/trace.js';
import { createExitEvaluator, type ExitEvaluator } from './criteria.js';
import { callCallback, describeValue, PonderError } from '../errors.js';

/** What the family hands a check, by name, for NUM_NONFINITE messages. */
export interface CriterionInputs {
  /** the state after a step, e.g. 'the recurrent state s_t' */
  readonly state: string;
  /** the logits a check reads out of it, e.g. 'the coda + lm_head logits' */
  readonly logits: string;
}

const HUGINN_INPUTS: CriterionInputs = { state: 'the recurrent state s_t (before ln_f)', logits: 'the next-token logits (coda + ln_f + lm_head)' };

/** Where a call runs: the family's depths, the budget left, and what a depth function is told. */
export interface DepthContext {
  /** the family's full depth (Huginn mean_recurrence, Ouro total_ut_steps, MoR num_recursion): default, and maxSteps of exit/function */
  readonly defaultDepth: number;
  /** the most steps the family can run per token (Ouro, MoR: their full depth); absent: no bound (Huginn) */
  readonly depthLimit?: number;
  /** every token of the call runs at most this many steps (the budget's remainder, ≥ 1), or null */
  readonly cap: number | null;
  readonly phase: 'prefill' | 'decode';
  /** steps spent on generated tokens before this call (for depth functions) */
  readonly stepsSpent: number;
  readonly vocabSize: number;
  /** what the state and logits a check reads are, for messages (default: Huginn's) */
  readonly inputs?: CriterionInputs;
}

type Rule =
  | { readonly kind: 'steps' } // fixed(n), default: run to the limit
  | { readonly kind: 'criterion'; readonly newEvaluator: () => ExitEvaluator; readonly minSteps: number; readonly checkEvery: number; readonly checks?: boolean }
  | { readonly kind: 'function'; readonly decide: DepthFunction };

/** What one check after a step found. */
export interface StepCheck {
  /** something was asked (a criterion check or the depth function) */
  readonly checked: boolean;
  /** per row: the criterion value recorded (NaN where no check ran, or for a row that no longer records) */
  readonly values: readonly number[];
  /** per row: the row stops after this step (newly) */
  readonly stops: readonly boolean[];
}

export class DepthController {
  /** the most steps the policy gives a token (a trace's maxSteps) */
  readonly maxSteps: number;
  /** the loop bound: maxSteps, or less under a budget */
  readonly limit: number;
  /** the criterion evaluated (upstream spelling), or null */
  readonly criterion: string | null;
  /** the threshold in effect ('auto' resolved); NaN when none */
  readonly threshold: number;
  private readonly tokens = new Map<number, DepthRun>();

  private constructor(readonly rule: Rule, maxSteps: number, cap: number | null, private readonly open: boolean,
    readonly context: Pick<DepthContext, 'phase' | 'stepsSpent' | 'vocabSize' | 'inputs'>) {
    this.maxSteps = maxSteps;
    this.limit = cap === null ? maxSteps : Math.max(1, Math.min(maxSteps, cap));
    if (rule.kind === 'criterion') {
      const probe = rule.newEvaluator();
      this.criterion = probe.name;
      this.threshold = probe.threshold;
    } else {
      this.criterion = null;
      this.threshold = NaN;
    }
  }

  /** For a per-token policy (a budget already unwrapped into `context.cap`). Router and gate policies are the family's own: they run to the limit here. */
  static forPolicy(policy: DepthPolicy, context: DepthContext): DepthController {
    const bound = (n: number): number => Math.min(n, context.depthLimit ?? Infinity);
    switch (policy.kind) {
      case 'fixed': return new DepthController({ kind: 'steps' }, policy.steps, context.cap, false, context);
      case 'exit': {
        // exitInPrefill: false (upstream's do_not_exit_in_prefill) runs the prefill to the limit, unchecked
        const checks = policy.exitInPrefill !== false || context.phase !== 'prefill';
        const rule: Rule = { kind: 'criterion', newEvaluator: () => createExitEvaluator(policy.criterion, policy.threshold, context.vocabSize), minSteps: policy.minSteps ?? 0, checkEvery: policy.checkEvery ?? 1, checks };
        return new DepthController(rule, bound(policy.maxSteps ?? context.defaultDepth), context.cap, true, context);
      }
      case 'function': return new DepthController({ kind: 'function', decide: policy.decide }, bound(policy.maxSteps ?? context.defaultDepth), context.cap, true, context);
      default: return new DepthController({ kind: 'steps' }, bound(context.defaultDepth), context.cap, false, context);
    }
  }

  /** Exactly `n` steps for every row (upstream's num_steps; 0 allowed). */
  static steps(n: number, vocabSize: number): DepthController {
    return new DepthController({ kind: 'steps' }, n, null, false, { phase: 'decode', stepsSpent: 0, vocabSize });
  }

  /**
   * upstream generate_with_adaptive_compute's arguments: one evaluator for the whole generation
   * (its state, e.g. NumStepsGenerator's counter, spans the token steps), num_steps, min_steps,
   * check_criterion_every_n_steps.
   */
  static forEvaluator(evaluator: ExitEvaluator, o: { maxSteps: number; minSteps?: number; checkEvery?: number; vocabSize: number }): DepthController {
    return new DepthController({ kind: 'criterion', newEvaluator: () => evaluator, minSteps: o.minSteps ?? 0, checkEvery: o.checkEvery ?? 1 },
      o.maxSteps, null, true, { phase: 'decode', stepsSpent: 0, vocabSize: o.vocabSize });
  }

  /** Whether anything is asked after the step (1-based `steps`): criteria honour minSteps and checkEvery, depth functions are asked every time. */
  asksAfter(steps: number): boolean {
    const r = this.rule;
    if (r.kind === 'steps') return false;
    if (r.kind === 'function') return true;
    const s = steps - 1; // upstream counts the step just run from 0
    return r.checks !== false && s >= r.minSteps && (s - r.minSteps) % r.checkEvery === 0;
  }

  /**
   * A group of `rows` rows that step together from `initial` ([rows, positions, width]; null: zeros,
   * and no latent change before the first step). `position` is the group's last position (for depth
   * functions); `checks: false` runs every row to the limit (upstream's do_not_exit_in_prefill);
   * `active[b] = false` rows take no part (finished sequences of a batch).
   */
  start(rows: number, positions: number, width: number, initial: Float32Array | null,
    o: { position?: number; checks?: boolean; active?: readonly boolean[] } = {}): DepthRun {
    return new DepthRun(this, rows, positions, width, initial, o.position ?? 0, o.checks ?? true, o.active ?? null);
  }

  /** The run of one token of a call (Ouro, MoR), started on first use: one row, its state [width], zeros before step 1. */
  token(index: number, position: number, width: number): DepthRun {
    let run = this.tokens.get(index);
    if (!run) { run = this.start(1, 1, width, null, { position }); this.tokens.set(index, run); }
    return run;
  }

  /** The trace fields of token `index` that ran `steps` steps (a token never asked ran to the limit). */
  tokenTrace(index: number, steps: number): { exitReason: ExitReason; criterionValues: (number | null)[] } {
    const run = this.tokens.get(index);
    return { exitReason: run ? run.exitReason(0, steps) : this.reasonAtEnd(steps), criterionValues: run ? run.criterionValues(0, steps) : this.emptyValues(steps) };
  }

  /** `t` with the criterion and threshold fields of a trace entry, when a criterion was checked. */
  withCriterion(t: TokenTrace): TokenTrace {
    if (this.criterion !== null) { t.criterion = this.criterion; if (Number.isFinite(this.threshold)) t.threshold = this.threshold; }
    return t;
  }

  /** Why a row that was never stopped ended after `steps` steps. */
  reasonAtEnd(steps: number): ExitReason {
    if (steps === this.limit && this.limit < this.maxSteps) return 'budget';
    return this.open ? 'cap' : 'fixed';
  }

  emptyValues(steps: number): (number | null)[] {
    return this.criterion === null ? [] : new Array<number | null>(steps).fill(null);
  }
}

/** One group's decisions: rows stepping together, each stopped at most once. */
export class DepthRun {
  private readonly evaluator: ExitEvaluator | null;
  /** per row: criterion values by step (index steps − 1), grown as checks run */
  private readonly values: (number | null)[][];
  private readonly stoppedBy: (ExitReason | null)[];
  /** per row: the last position's state before the current step (depth functions' latent change) */
  private previous: Float32Array | null;

  constructor(private readonly depth: DepthController, readonly rows: number, private readonly positions: number, private readonly width: number,
    initial: Float32Array | null, private readonly position: number, private readonly checks: boolean, private readonly active: readonly boolean[] | null) {
    const rule = depth.rule;
    this.values = Array.from({ length: rows }, () => []);
    this.stoppedBy = new Array<ExitReason | null>(rows).fill(null);
    this.evaluator = rule.kind === 'criterion' ? rule.newEvaluator() : null;
    this.evaluator?.init(initial ?? new Float32Array(rows * positions * width), rows, positions, width);
    this.previous = initial && rule.kind === 'function' ? this.lastRows(initial) : null;
  }

  /** The row takes part and has not stopped. */
  running(row: number): boolean {
    return this.stoppedBy[row] === null && (this.active === null || this.active[row]);
  }

  /** No row takes part any more. */
  allStopped(): boolean {
    for (let b = 0; b < this.rows; b++) if (this.running(b)) return false;
    return true;
  }

  /**
   * After `steps` (1-based) steps: `state` is [rows, positions, width]; `logits()` gives the
   * next-token logits of the current state, [rows, V] (called at most once, only if needed).
   */
  after(steps: number, state: Float32Array, logits: () => Float32Array): StepCheck {
    const B = this.rows, rule = this.depth.rule;
    const values = new Array<number>(B).fill(NaN);
    const stops = new Array<boolean>(B).fill(false);
    if (!this.checks || !this.depth.asksAfter(steps)) return { checked: false, values, stops };
    // NaN never crosses a threshold (every comparison is false), so a non-finite input would run
    // silently to the cap: a check that runs on one is NUM_NONFINITE, naming the input and step
    this.requireFinite(this.depth.context.inputs?.state ?? HUGINN_INPUTS.state, state, this.positions * this.width, steps);
    let cached: Float32Array | null = null;
    const lazyLogits = (): Float32Array => {
      if (cached === null) {
        cached = logits();
        this.requireFinite(this.depth.context.inputs?.logits ?? HUGINN_INPUTS.logits, cached, this.depth.context.vocabSize, steps);
      }
      return cached;
    };
    if (rule.kind === 'criterion') {
      const V = this.depth.context.vocabSize;
      const check = this.evaluator!.check({ state, B, S: this.positions, E: this.width, V, evaluate: lazyLogits });
      for (let b = 0; b < B; b++) {
        if (!this.running(b)) continue;
        values[b] = check.values[b];
        this.record(b, steps, check.values[b]);
        if (check.exits[b]) { stops[b] = true; this.stoppedBy[b] = 'criterion'; }
      }
    } else if (rule.kind === 'function') {
      const before = this.previous;
      this.previous = this.lastRows(state);
      const { vocabSize: V, phase, stepsSpent } = this.depth.context;
      for (let b = 0; b < B; b++) {
        if (!this.running(b)) continue;
        const E = this.width, at = ((b * this.positions) + this.positions - 1) * E;
        const summary: StepSummary = {
          step: steps, maxSteps: this.depth.maxSteps, position: this.position, phase, stepsSpent,
          latentChange: before ? relativeChange(before, b * E, state, at, E) : NaN,
          logits: () => (B === 1 ? lazyLogits() : lazyLogits().slice(b * V, (b + 1) * V)),
        };
        const decision = callCallback('the depth function', rule.decide, steps, summary);
        if (decision !== 'stop' && decision !== 'continue' && decision !== true && decision !== false) {
          throw new PonderError('ARG_CALLBACK', `the depth function returned ${describeValue(decision)} at step ${steps}, not 'continue', 'stop', true or false`, { field: 'policy', hint: 'return \'continue\' (or true) to go on, \'stop\' (or false) to stop' });
        }
        if (decision === 'stop' || decision === false) { stops[b] = true; this.stoppedBy[b] = 'policy'; }
      }
    }
    return { checked: true, values, stops };
  }

  /** Why the row ended after `steps` steps: its stop, else the budget, the cap or a fixed depth. */
  exitReason(row: number, steps: number): ExitReason {
    return this.stoppedBy[row] ?? this.depth.reasonAtEnd(steps);
  }

  /** One value per step run (`[s − 1]` after step s), null where no check ran; [] without a criterion. */
  criterionValues(row: number, steps: number): (number | null)[] {
    if (this.depth.criterion === null) return [];
    const out = this.depth.emptyValues(steps);
    const recorded = this.values[row];
    for (let s = 0; s < Math.min(steps, recorded.length); s++) out[s] = recorded[s] ?? null;
    return out;
  }

  /** NUM_NONFINITE at the first NaN/Inf of a running row of `data` ([rows, perRow]), naming the input, the step, the position and the index. */
  private requireFinite(what: string, data: Float32Array, perRow: number, steps: number): void {
    for (let b = 0; b < this.rows; b++) {
      if (!this.running(b)) continue;
      const base = b * perRow;
      for (let i = 0; i < perRow; i++) {
        const v = data[base + i];
        if (v - v === 0) continue; // finite (NaN − NaN and Inf − Inf are NaN)
        const where = perRow === this.positions * this.width && this.positions > 1
          ? `position ${this.position - (this.positions - 1) + Math.floor(i / this.width)}, index ${i % this.width}`
          : `position ${this.position}, index ${i}`;
        const criterion = this.depth.criterion !== null ? `the exit criterion ${this.depth.criterion}` : 'the depth function';
        throw new PonderError('NUM_NONFINITE', `${what} is ${v} at step ${steps} (${where}${this.rows > 1 ? `, row ${b}` : ''}), an input of ${criterion}`,
          { hint: 'the checkpoint holds NaN/Inf or values that overflow float32 (a NaN never meets an exit threshold, so the check cannot decide); check the weights' });
      }
    }
  }

  private record(row: number, steps: number, value: number): void {
    const v = this.values[row];
    while (v.length < steps - 1) v.push(null);
    v[steps - 1] = value;
  }

  /** [rows, width]: each row's last position of a [rows, positions, width] state (a copy). */
  private lastRows(state: Float32Array): Float32Array {
    const E = this.width, out = new Float32Array(this.rows * E);
    for (let b = 0; b < this.rows; b++) out.set(state.subarray(((b * this.positions) + this.positions - 1) * E, ((b + 1) * this.positions) * E), b * E);
    return out;
  }
}

/** ‖b − a‖ / ‖b‖ over `n` values (a from `ia`, b from `ib`); NaN when b is zero. */
export function relativeChange(a: Float32Array, ia: number, b: Float32Array, ib: number, n: number): number {
  let diff = 0, norm = 0;
  for (let i = 0; i < n; i++) { const d = b[ib + i] - a[ia + i]; diff += d * d; norm += b[ib + i] * b[ib + i]; }
  return norm > 0 ? Math.sqrt(diff / norm) : NaN;
}
