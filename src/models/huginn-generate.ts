/**
 * Huginn generation (huginn.md §5). `recur` is one call of the recurrence — embed, then core steps
 * until the depth controller stops every row, then the read-out — as upstream's adaptive loop runs
 * it; the API (src/models/huginn-family.ts) runs every call through it, and so do the two upstream
 * loops the golden cases check:
 *   generateMinimal      — `generate_minimal`: fixed depth, cached, optional continuous CoT
 *                          (warm start from the previous position's ln_f-normalised latent)
 *   generateAdaptive     — `generate_with_adaptive_compute`: per-token exit criteria with real
 *                          compute skip, min_steps / check_criterion_every_n_steps /
 *                          do_not_exit_in_prefill, optional continuous CoT (warm start from the raw
 *                          state at the exit step), a per-token trace
 * and, a line-by-line reading of upstream's own loops over `HuginnModel.forward`:
 *   generateSpeculative  — see above
 *   forwardWithAdaptiveCompute — `forward_with_adaptive_compute`: token-by-token adaptive prefill
 *
 * Hard step cap: every token step runs at most `numSteps` iterations (a `for` bound, not a
 * criterion), so NaN in a state or a criterion never keeps a token iterating.
 */
import { PonderError } from '../errors.js';
import { LIMITS, limitNote } from '../limits.js';
import { checkContext } from './inputs.js';
import type { HuginnCache } from './huginn-cache.js';
import { torchArgmax, type ExitEvaluator } from '../depth/criteria.js';
import { DepthController, type DepthRun } from '../depth/controller.js';
import { totalSteps, type CallContext, type HuginnModel, type InitialStates } from './huginn.js';

/** upstream `_get_stops`: begin_text, end_text, end_turn (plus the generation config's eos ids) */
export const HUGINN_STOP_TOKENS: readonly number[] = [65504, 65505, 65508];
/** upstream's pad id in generate_speculative */
export const HUGINN_PAD_TOKEN = 65509;

/**
 * Picks the next token from one logits row [V]; `context` is that row's sequence so far (prompt
 * and generated ids, for repetition penalties). src/generate/sampling.ts's seeded Sampler fits:
 * `(logits, context) => sampler.sample(logits, context)`.
 */
export type Sampler = (logits: Float32Array, context: readonly number[]) => number;
/** greedy decoding as torch.argmax: first maximum, NaN wins */
export const greedy: Sampler = (logits) => torchArgmax(logits, 0, logits.length);

export interface GenerateCommon {
  /** prompt ids [B, L] row-major */
  readonly inputIds: ArrayLike<number>;
  readonly B: number;
  readonly maxNewTokens: number;
  readonly initScale?: number;
  readonly cacheLookupStrategy?: string;
  /** random initial states (default: the model's seeded PRNG) */
  readonly initialStates?: InitialStates;
  readonly sampler?: Sampler;
  /** token ids that end a sequence (default HUGINN_STOP_TOKENS) */
  readonly stopTokens?: readonly number[];
  /** keep the logits of every forward call (all positions) in the result (costs a full lm_head per position) */
  readonly recordForwardLogits?: boolean;
}

/** One forward call made by a generation loop. */
export interface ForwardCallRecord {
  readonly length: number;
  readonly numSteps: number;
  /** [B, length, V] when recordForwardLogits */
  readonly logits: Float32Array | null;
  /** input_states passed to the call ([B, length, E]) or null when it drew its own */
  readonly inputStates: Float32Array | null;
}

export interface GenerateResult {
  /** per batch row: prompt followed by the generated ids */
  readonly sequences: number[][];
  /** logits [B, V] handed to the sampler, one per sampling call, in order */
  readonly nextTokenLogits: Float32Array[];
  readonly forwardCalls: ForwardCallRecord[];
  readonly cache: HuginnCache;
}

function validatePrompt(model: HuginnModel, o: GenerateCommon): number {
  const { B } = o;
  if (!Number.isInteger(B) || B < 1 || o.inputIds.length % B !== 0 || o.inputIds.length === 0) {
    throw new PonderError('HUGINN_INPUT', `${o.inputIds.length} prompt ids do not form ${B} non-empty rows`, { hint: 'inputIds is [B, L] row-major' });
  }
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) throw new PonderError('HUGINN_INPUT', `max_new_tokens ${o.maxNewTokens} is not a non-negative integer`, { field: 'max_new_tokens', hint: 'pass the number of tokens to generate' });
  const L = o.inputIds.length / B;
  // the last new token is sampled, not fed: it needs no position
  checkContext(L + Math.max(o.maxNewTokens - 1, 0), model.config.blockSize, `a prompt of ${L} and ${o.maxNewTokens} new tokens`, 'block_size');
  return L;
}

function promptRows(o: GenerateCommon, L: number): number[][] {
  return Array.from({ length: o.B }, (_, b) => Array.from({ length: L }, (_, i) => o.inputIds[b * L + i]));
}

/** ids [B, S] of the given positions of every row */
function idsAt(seqs: number[][], positions: Int32Array): number[] {
  const ids: number[] = [];
  for (const row of seqs) for (const p of positions) ids.push(row[p]);
  return ids;
}

/** rows [B, 1, E] of the last position of a [B, S, E] tensor */
function lastPosition(t: Float32Array, B: number, S: number, E: number): Float32Array {
  const out = new Float32Array(B * E);
  for (let b = 0; b < B; b++) out.set(t.subarray((b * S + S - 1) * E, (b * S + S) * E), b * E);
  return out;
}

function range(from: number, to: number): Int32Array {
  return Int32Array.from({ length: to - from }, (_, i) => from + i);
}

function sampleRows(logits: Float32Array, B: number, V: number, sampler: Sampler, seqs: number[][]): number[] {
  return Array.from({ length: B }, (_, b) => sampler(logits.slice(b * V, (b + 1) * V), seqs[b]));
}

// ---------------------------------------------------------------------------------------------

/** One call of the recurrence: B rows of S positions, appended to the call context's cache. */
export interface RecurrenceCall {
  /** token ids [B, S] */
  readonly ids: ArrayLike<number>;
  readonly B: number;
  readonly S: number;
  readonly ctx: CallContext;
  /** s₀ [B, S, E] */
  readonly state: Float32Array;
  /** asked after every step; its limit bounds the steps */
  readonly depth: DepthController;
  /** rows still generating (default: all); the others run along but are never checked or stopped */
  readonly active?: readonly boolean[];
  /** false: no row may stop early in this call (upstream's do_not_exit_in_prefill) */
  readonly checks?: boolean;
  /** read out each row's last position (default) or every position (fixed depths only) */
  readonly readout?: 'last' | 'all';
}

export interface RecurrenceResult {
  /**
   * [B, V] (readout 'all': [B, S, V]): a row's logits at the step it stopped; a row that ran to the
   * limit takes the call's last evaluation (stale when it predates the last step, as upstream), or,
   * without any evaluation, the final state's
   */
  readonly logits: Float32Array;
  /** per row: the steps counted for it (upstream compute_steps) */
  readonly steps: number[];
  /** the controller's record of the call: criterion values and exit reasons per row */
  readonly run: DepthRun;
  /** every check that ran: the step (1-based) and each row's value (NaN for rows that no longer record) */
  readonly checks: { iteration: number; values: number[] }[];
  /** steps actually run (the loop is shared by the batch) */
  readonly stepsRun: number;
  /** [B, E]: the raw state at each row's last position where it stopped (continuous CoT) */
  readonly exitStates: Float32Array;
  /** ln_f(s_n) [B, S, E] when the final state was read out */
  readonly latentStates: Float32Array | null;
}

/**
 * upstream generate_with_adaptive_compute's body for one token step, and every API call: prelude,
 * then core steps with the depth controller deciding per row after each, then the coda read-out.
 * Hard step cap: at most `depth.limit` steps (a `for` bound), so NaN in a state or a criterion
 * never keeps a token iterating.
 */
export function recur(model: HuginnModel, call: RecurrenceCall): RecurrenceResult {
  const { B, S, ctx, depth } = call;
  const { vocabSize: V, nEmbd: E } = model.config;
  const e = model.embedInputs(call.ids, B, S, ctx);
  let current = call.state;
  const run = depth.start(B, S, E, current, { position: ctx.positions[S - 1], checks: call.checks ?? true, active: call.active });
  const steps = new Array<number>(B).fill(0);
  const exitStates = lastPosition(current, B, S, E);
  const checks: { iteration: number; values: number[] }[] = [];
  let outputs: Float32Array | null = null; // upstream's `outputs`: the last coda evaluation of this call, last positions [B, V]
  let logits: Float32Array | null = null;
  let latentStates: Float32Array | null = null;
  let ranOut = true, stepsRun = 0;
  for (let step = 0; step < depth.limit; step++) {
    current = model.coreStep(e, current, B, S, step, ctx);
    stepsRun = step + 1;
    const state = current;
    const kept: Float32Array | null = outputs;
    outputs = null; // a check replaces upstream's `outputs` (None for latent criteria)
    const check = run.after(stepsRun, state, () => (outputs = model.predictFromLatents(state, B, S, ctx, 'last').logits));
    if (!check.checked) { outputs = kept; continue; }
    checks.push({ iteration: stepsRun, values: [...check.values] });
    if (check.stops.some(Boolean)) {
      if (outputs === null) outputs = model.predictFromLatents(current, B, S, ctx, 'last').logits; // latent criteria need the coda only now
      const out: Float32Array = outputs;
      if (logits === null) logits = out.slice();
      else check.stops.forEach((stop, b) => { if (stop) logits!.set(out.subarray(b * V, (b + 1) * V), b * V); });
      check.stops.forEach((stop, b) => {
        if (!stop) return;
        steps[b] = stepsRun;
        exitStates.set(current.subarray((b * S + S - 1) * E, (b * S + S) * E), b * E);
      });
    }
    if (run.allStopped()) { ranOut = false; break; }
  }
  if (ranOut) {
    if (outputs === null) ({ logits: outputs, latentStates } = model.predictFromLatents(current, B, S, ctx, call.readout ?? 'last'));
    const out: Float32Array = outputs;
    if (logits === null) { logits = out.slice(); steps.fill(depth.limit); }
    else for (let b = 0; b < B; b++) if (run.running(b)) { logits.set(out.subarray(b * V, (b + 1) * V), b * V); steps[b] = depth.limit; }
  }
  for (let b = 0; b < B; b++) if (run.running(b)) exitStates.set(current.subarray((b * S + S - 1) * E, (b * S + S) * E), b * E);
  return { logits: logits!, steps, run, checks, stepsRun, exitStates, latentStates };
}

/** One token step of a generation loop: the call's ids [B, S] at `positions`, the rows still generating. */
interface TokenStep {
  readonly index: number;
  readonly ids: number[];
  readonly S: number;
  readonly ctx: CallContext;
  readonly unfinished: readonly boolean[];
}

/**
 * The loop upstream's generate_minimal and generate_with_adaptive_compute share: the prompt, then
 * one position per token step; `call` runs the step (one `recur`) and returns the next-token logits
 * [B, V]; rows are sampled, and the loop ends after max_new_tokens or when every row has stopped.
 */
function tokenLoop(model: HuginnModel, o: GenerateCommon, L: number, call: (step: TokenStep) => Float32Array): { sequences: number[][]; nextTokenLogits: Float32Array[]; cache: HuginnCache } {
  const { B } = o, V = model.config.vocabSize;
  const sampler = o.sampler ?? greedy;
  const stops = new Set(o.stopTokens ?? HUGINN_STOP_TOKENS);
  const cache = model.newCache(o.cacheLookupStrategy ?? 'full');
  const seqs = promptRows(o, L);
  const nextTokenLogits: Float32Array[] = [];
  const unfinished = new Array<boolean>(B).fill(true);
  let positions = range(0, L);
  for (let index = 0; index < o.maxNewTokens; index++) {
    const S = positions.length;
    const logits = call({ index, ids: idsAt(seqs, positions), S, ctx: { positions, cache }, unfinished });
    nextTokenLogits.push(logits);
    const tokens = sampleRows(logits, B, V, sampler, seqs);
    tokens.forEach((tok, b) => seqs[b].push(tok));
    positions = Int32Array.of(positions[S - 1] + 1);
    tokens.forEach((tok, b) => { if (unfinished[b] && stops.has(tok)) unfinished[b] = false; });
    if (!unfinished.some(Boolean)) break;
  }
  return { sequences: seqs, nextTokenLogits, cache };
}

// ---------------------------------------------------------------------------------------------

export interface GenerateMinimalOptions extends GenerateCommon {
  /** depth of every forward call (default config.mean_recurrence) */
  readonly numSteps?: number | readonly [number, number];
  /** continuous CoT: each call starts from ln_f(s_n) of the previous call's last position */
  readonly continuousCompute?: boolean;
}

/** upstream generate_minimal */
export function generateMinimal(model: HuginnModel, o: GenerateMinimalOptions): GenerateResult {
  const L = validatePrompt(model, o);
  const { B } = o;
  const { vocabSize: V, nEmbd: E } = model.config;
  const numSteps = totalSteps(o.numSteps ?? model.config.meanRecurrence);
  const initScale = o.initScale ?? 1;
  const depth = DepthController.steps(numSteps, V);
  const forwardCalls: ForwardCallRecord[] = [];
  // continuous CoT: the prompt's state is drawn once up front (upstream runs the prelude without a
  // cache only to get its shape; the draw does not depend on its values, so we skip that compute)
  let inputStates: Float32Array | null = o.continuousCompute ? model.initialState(B, L, initScale, o.initialStates) : null;
  const r = tokenLoop(model, o, L, ({ ids, S, ctx }) => {
    const state = inputStates ? Float32Array.from(inputStates) : model.initialState(B, S, initScale, o.initialStates);
    const out = recur(model, { ids, B, S, ctx, state, depth, readout: o.recordForwardLogits ? 'all' : 'last' });
    forwardCalls.push({ length: S, numSteps, logits: o.recordForwardLogits ? out.logits : null, inputStates });
    if (o.continuousCompute) inputStates = lastPosition(out.latentStates!, B, S, E);
    return o.recordForwardLogits ? lastPosition(out.logits, B, S, V) : out.logits;
  });
  return { ...r, forwardCalls };
}

// ---------------------------------------------------------------------------------------------

export interface AdaptiveOptions extends GenerateCommon {
  /** the exit criterion (src/depth/criteria.ts createExitEvaluator / numStepsEvaluator) */
  readonly evaluator: ExitEvaluator;
  /** the hard cap: iterations per token step (default config.mean_recurrence) */
  readonly numSteps?: number;
  readonly minSteps?: number;
  readonly checkCriterionEveryNSteps?: number;
  readonly doNotExitInPrefill?: boolean;
  /** continuous CoT: each token step starts from the raw state where the previous one exited */
  readonly continuousCompute?: boolean;
}

/** What happened in one token step (entry 0 is the prefill over the whole prompt). */
export interface TokenStepTrace {
  /** per batch row: iterations counted for this token (upstream's compute_steps) */
  readonly steps: number[];
  /** per batch row: why it stopped iterating */
  readonly exitReason: ('criterion' | 'max-steps')[];
  /** every check that ran: the iteration (1-based) and each row's criterion value (NaN for rows no longer recorded) */
  readonly checks: { iteration: number; values: number[] }[];
  /** iterations actually run (the loop is shared by the batch) */
  readonly iterationsRun: number;
}

export interface AdaptiveResult extends GenerateResult {
  readonly trace: TokenStepTrace[];
}

/** upstream generate_with_adaptive_compute */
export function generateAdaptive(model: HuginnModel, o: AdaptiveOptions): AdaptiveResult {
  const L = validatePrompt(model, o);
  const { B } = o;
  const maxSteps = o.numSteps ?? model.config.meanRecurrence;
  if (!Number.isInteger(maxSteps) || maxSteps < 0 || maxSteps > LIMITS.depth) throw new PonderError('HUGINN_NUM_STEPS', `num_steps ${maxSteps} is not an integer in [0, ${LIMITS.depth}] (${limitNote('depth')})`, { field: 'num_steps', hint: 'the step cap must be an integer' });
  const every = o.checkCriterionEveryNSteps ?? 1;
  if (!Number.isInteger(every) || every < 1) throw new PonderError('HUGINN_INPUT', `check_criterion_every_n_steps ${every} must be a positive integer`, { field: 'check_criterion_every_n_steps', hint: 'use 1 to check after every iteration' });
  const initScale = o.initScale ?? 1;
  const depth = DepthController.forEvaluator(o.evaluator, { maxSteps, minSteps: o.minSteps ?? 0, checkEvery: every, vocabSize: model.config.vocabSize });
  const trace: TokenStepTrace[] = [];
  let inputStates: Float32Array | null = o.continuousCompute ? model.initialState(B, L, initScale, o.initialStates) : null;
  const r = tokenLoop(model, o, L, ({ index, ids, S, ctx, unfinished }) => {
    const state = o.continuousCompute ? inputStates! : model.initialState(B, S, initScale, o.initialStates);
    const out = recur(model, { ids, B, S, ctx, state, depth, active: unfinished, checks: !(o.doNotExitInPrefill && index === 0) });
    if (o.continuousCompute) inputStates = out.exitStates;
    const exitReason = out.steps.map((steps, b) => (out.run.exitReason(b, steps) === 'criterion' ? 'criterion' as const : 'max-steps' as const));
    trace.push({ steps: out.steps, exitReason, checks: out.checks, iterationsRun: out.stepsRun });
    return out.logits;
  });
  return { ...r, forwardCalls: [], trace };
}

// ---------------------------------------------------------------------------------------------

export interface SpeculativeOptions extends GenerateCommon {
  /** each call starts from the previous call's last ln_f latent (lookahead 1 only, see below) */
  readonly continuousCompute?: boolean;
  /** verification (and prefill) depth; upstream default 32 */
  readonly numSteps?: number;
  /** draft depth; upstream default 32 */
  readonly draftSteps?: number;
  /** drafted tokens per round; upstream default 8 */
  readonly lookaheadForDraft?: number;
  /** ≥ 1: accept while the verify argmax equals the draft; < 1: while p(draft) ≥ threshold·max p */
  readonly verificationThreshold?: number;
}

/**
 * upstream generate_speculative, batch 1 (upstream's per-row acceptance pads rows with 65509 and
 * rolls back one shared cache, which only makes sense for one sequence). With continuous compute
 * every call starts from the previous call's last ln_f latent, as upstream; upstream feeds that
 * one-position state to the verification call too, which only works with lookahead 1, so a
 * longer lookahead is refused (upstream fails inside torch.cat).
 */
export function generateSpeculative(model: HuginnModel, o: SpeculativeOptions): GenerateResult {
  const L = validatePrompt(model, o);
  if (o.B !== 1) throw new PonderError('HUGINN_INPUT', `speculative decoding runs one sequence at a time, got batch ${o.B}`, { hint: 'call it once per prompt' });
  const { vocabSize: V, nEmbd: E } = model.config;
  const numSteps = o.numSteps ?? 32;
  const draftSteps = o.draftSteps ?? 32;
  const lookahead = o.lookaheadForDraft ?? 8;
  const threshold = o.verificationThreshold ?? 1;
  if (!Number.isInteger(lookahead) || lookahead < 1) throw new PonderError('HUGINN_INPUT', `lookahead_for_draft ${lookahead} must be a positive integer`, { field: 'lookahead_for_draft', hint: 'draft at least one token per round' });
  if (o.continuousCompute && lookahead !== 1) throw new PonderError('HUGINN_INPUT', `continuous compute with lookahead_for_draft ${lookahead}: upstream passes a one-position state to the ${lookahead}-token verification, which fails`, { field: 'continuous_compute', hint: 'use lookahead_for_draft 1, or continuous_compute false' });
  const initScale = o.initScale ?? 1;
  const sampler = o.sampler ?? greedy;
  const stops = new Set(o.stopTokens ?? HUGINN_STOP_TOKENS);
  const cache = model.newCache(o.cacheLookupStrategy ?? 'full');
  const seq = promptRows(o, L)[0];
  const nextTokenLogits: Float32Array[] = [];
  const forwardCalls: ForwardCallRecord[] = [];
  let inputStates: Float32Array | null = o.continuousCompute ? model.initialState(1, L, initScale, o.initialStates) : null;

  const call = (ids: number[], positions: Int32Array, steps: number): Float32Array => {
    const out = model.forward({ ids, B: 1, S: ids.length, numSteps: steps, initScale, inputStates, initialStates: o.initialStates, cache, positions, logits: 'all' });
    forwardCalls.push({ length: ids.length, numSteps: steps, logits: o.recordForwardLogits ? out.logits : null, inputStates });
    if (o.continuousCompute) inputStates = lastPosition(out.latentStates, 1, ids.length, E);
    return out.logits; // [S, V]
  };
  const sample = (logits: Float32Array, context: readonly number[]): number => { nextTokenLogits.push(logits); return sampler(logits, context); };

  // the prefill always samples one token (upstream, even with max_new_tokens 0) and is not checked for a stop
  const prefillLogits = call(seq.slice(), range(0, L), numSteps);
  seq.push(sample(prefillLogits.slice((L - 1) * V, L * V), seq));
  let tokensGenerated = 1;
  let stopped = false;
  while (!stopped && tokensGenerated < o.maxNewTokens) {
    const drafted = seq.slice();
    const currentLen = seq.length;
    let pos = cache.seenTokens;
    for (let i = 0; i < lookahead; i++) {
      const logits = call([drafted[pos]], Int32Array.of(pos), draftSteps);
      drafted.push(sample(logits, drafted));
      pos++;
    }
    cache.clearLastK(lookahead);

    const verifyPositions = range(currentLen - 1, currentLen + lookahead - 1);
    const logits = call(idsAt([drafted], verifyPositions), verifyPositions, numSteps); // [lookahead, V]
    let firstMismatch = -1;
    for (let i = 0; i < lookahead && firstMismatch < 0; i++) {
      const draft = drafted[currentLen + i];
      const row = logits.subarray(i * V, (i + 1) * V);
      const passed = threshold >= 1 ? torchArgmax(row, 0, V) === draft : draftProbabilityPasses(row, draft, threshold);
      if (!passed) firstMismatch = i;
    }
    let accepted: number[];
    if (firstMismatch >= 0) {
      accepted = drafted.slice(currentLen, currentLen + firstMismatch);
      accepted.push(sample(logits.slice(firstMismatch * V, (firstMismatch + 1) * V), seq));
      cache.clearLastK(lookahead - firstMismatch - 1);
    } else {
      accepted = drafted.slice(currentLen, currentLen + lookahead);
    }
    seq.push(...accepted);
    tokensGenerated += accepted.length;
    if (accepted.some((t) => stops.has(t))) stopped = true;
  }
  // cut everything after the first stop token, then trim trailing pad columns (upstream)
  const firstStop = seq.findIndex((t, i) => i >= L && stops.has(t));
  if (firstStop >= 0) for (let i = firstStop + 1; i < seq.length; i++) seq[i] = HUGINN_PAD_TOKEN;
  let end = seq.length;
  while (end > 0 && seq[end - 1] === HUGINN_PAD_TOKEN) end--;
  if (end > 0) seq.length = end;
  return { sequences: [seq], nextTokenLogits, forwardCalls, cache };
}

/** p(draft) ≥ threshold · max p under the f32 softmax of one verify row (upstream's loose acceptance) */
function draftProbabilityPasses(row: Float32Array, draft: number, threshold: number): boolean {
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const p = (x: number): number => Math.fround(Math.exp(x - max) / sum);
  return p(row[draft]) >= Math.fround(threshold * p(max));
}

// ---------------------------------------------------------------------------------------------

export interface AdaptiveForwardOptions {
  /** ids [1, L] */
  readonly inputIds: ArrayLike<number>;
  readonly evaluator: ExitEvaluator;
  readonly initScale?: number;
  readonly initialStates?: InitialStates;
}

/**
 * upstream forward_with_adaptive_compute: token by token over the prompt (batch 1), each position
 * with its own s₀ and up to config.mean_recurrence iterations, checking after every iteration;
 * returns logits [L, V] and the iterations used per position.
 */
export function forwardWithAdaptiveCompute(model: HuginnModel, o: AdaptiveForwardOptions): { logits: Float32Array; computeSteps: number[]; cache: HuginnCache } {
  const L = o.inputIds.length;
  const { vocabSize: V, nEmbd: E, meanRecurrence } = model.config;
  const cache = model.newCache('full');
  const logits = new Float32Array(L * V);
  const computeSteps: number[] = [];
  for (let pos = 0; pos < L; pos++) {
    const ctx: CallContext = { positions: Int32Array.of(pos), cache };
    const e = model.embedInputs([o.inputIds[pos]], 1, 1, ctx);
    let current = model.initialState(1, 1, o.initScale ?? 1, o.initialStates);
    o.evaluator.init(current, 1, 1, E);
    let used = 0;
    for (let step = 0; step < meanRecurrence; step++) {
      current = model.coreStep(e, current, 1, 1, step, ctx);
      used = step + 1;
      const state = current;
      const check = o.evaluator.check({ state, B: 1, S: 1, E, V, evaluate: () => model.predictFromLatents(state, 1, 1, ctx, 'last').logits });
      if (check.exits.some(Boolean)) break;
    }
    // upstream reports compute_step + 1 of the last loop variable; with mean_recurrence 0 it would crash
    computeSteps.push(used);
    logits.set(model.predictFromLatents(current, 1, 1, ctx, 'all').logits, pos * V);
  }
  return { logits, computeSteps, cache };
}
