/**
 * Teacher-forced scoring: a sequence fed one token per call through the adapter path `generate`
 * decodes with, so every depth policy decides per token and skips the compute it saves, and the
 * log-probability of each next id read from the logits that call returns.
 *
 *   ids:      t0  t1  t2  t3  t4  t5  t6          window 3: three calls per window
 *   window 0: t0→t1 t1→t2 t2→t3                   (position p is fed, its logits score ids[p+1])
 *   window 1:             t3→t4 t4→t5 t5→t6       a fresh sequence (new KV cache) from t3
 *
 * Every id but the first is scored exactly once. A window is one sequence of at most the model's
 * context, so memory is bounded by the window whatever the length of the text: the chunks (one
 * per window, with the full per-token traces) stream out and only running totals are kept.
 */
import { PonderError } from '../errors.js';
import { now, yieldToEventLoop } from './event-loop.js';
import { checkSeed } from '../generate/prng.js';
import { DepthTally, type DepthStats, type TokenTrace } from '../trace/trace.js';
import type { FamilyAdapter, SessionOptions, StepControl } from '../models/family.js';
import { describePolicy, type DepthPolicy } from '../depth/policy.js';

export interface ScoreOptions {
  /** depth policy (spec/policies.md). Default: what upstream does. */
  policy?: DepthPolicy;
  /** Huginn: seed of the random initial latent states (every window draws from the same seed). Default 0. */
  seed?: number;
  /** Huginn / Ouro cache strategy, as for generate. */
  kvStrategy?: string;
  /** positions fed per window (each window a fresh sequence). Default: the model's context, at most 1024. */
  window?: number;
  /** add the tokenizer's special tokens (e.g. BOS) when the input is text. Default true. */
  addSpecialTokens?: boolean;
  /** aborting stops the scoring with error ABORTED (a partial score would read as a whole one) */
  signal?: AbortSignal;
  /** called after every window */
  onProgress?: (progress: ScoreProgress) => void;
}

export interface ScoreProgress {
  /** positions scored so far */
  positionsDone: number;
  /** positions to score in all (ids − 1) */
  positionsTotal: number;
}

/** One window: its positions in order, each with the id it predicts and the depth it used. */
export interface ScoreChunk {
  /** 0-based window index */
  window: number;
  /** position (in the whole sequence) of the first id of this window */
  start: number;
  /** the ids fed, ids[start ..] */
  ids: number[];
  /** per position: the next id, ids[start + 1 ..] */
  targets: number[];
  /** per position: ln P(target) under the logits after that position (float64) */
  logProbs: Float64Array;
  /** per position: the most likely next id (the lowest id on a tie) */
  argmax: Int32Array;
  /** per position: the trace of the token fed there (steps, exit reason, criterion values, FLOPs) */
  tokens: TokenTrace[];
}

/** The scoring's totals; its DepthStats are over the positions. */
export interface ScoreSummary extends DepthStats {
  /** the policy as written, e.g. "exit(kl, 0.001)" */
  policy: string;
  /** positions scored (ids − 1) */
  positions: number;
  windows: number;
  /** Σ −ln P(target) over the positions */
  nats: number;
  /** nats / positions / ln 2 */
  bitsPerToken: number;
  /** exp(nats / positions) */
  perplexity: number;
  /** fraction of positions whose argmax is the target */
  top1: number;
  /** Σ FLOPs spent on the positions */
  flops: number;
  /** positions that ended for each exit reason */
  exitReasons: Record<string, number>;
  /** wall time of the scoring in milliseconds */
  ms: number;
}

/** What Model.score hands over, every argument checked. */
export interface PreparedScore {
  ids: readonly number[];
  window: number;
  policy: DepthPolicy;
  session: SessionOptions;
  signal: AbortSignal | null;
  onProgress: ((progress: ScoreProgress) => void) | null;
  adapter: FamilyAdapter;
}

/** The default window: the whole context, at most 1024 positions (a KV cache of a real model's full context may not fit). */
export function defaultScoreWindow(contextLength: number): number {
  return Math.min(contextLength, 1024);
}

/** Checks the scoring options that do not need the model's adapter. */
export function checkScoreOptions(o: ScoreOptions, ids: readonly number[], contextLength: number): { window: number; seed: number } {
  if (ids.length < 2) throw new PonderError('GEN_EMPTY', `scoring needs at least 2 tokens (each position is scored on the next id), got ${ids.length}`, { field: 'ids', hint: 'pass a longer text or id sequence' });
  const window = o.window ?? defaultScoreWindow(contextLength);
  if (!Number.isInteger(window) || window < 1 || window > contextLength) {
    throw new PonderError('ARG_INVALID', `window must be an integer in [1, ${contextLength}] (the model's context), got ${String(window)}`, { field: 'window', hint: `e.g. window: ${defaultScoreWindow(contextLength)}` });
  }
  const seed = o.seed ?? 0;
  checkSeed(seed);
  if (o.signal !== undefined && !(typeof o.signal === 'object' && o.signal !== null && 'aborted' in o.signal)) throw new PonderError('ARG_INVALID', 'signal must be an AbortSignal', { field: 'signal', hint: 'pass controller.signal' });
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new PonderError('ARG_INVALID', 'onProgress must be a function', { field: 'onProgress', hint: 'e.g. onProgress: (p) => console.log(p.positionsDone)' });
  return { window, seed };
}

/** ln softmax(logits)[target] in float64, and the argmax (lowest id on a tie). */
export function logProbOf(logits: Float32Array, target: number): { logProb: number; argmax: number } {
  let max = -Infinity, argmax = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) { max = logits[i]; argmax = i; }
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return { logProb: logits[target] - max - Math.log(sum), argmax };
}

/** A scoring run: an async iterable of ScoreChunks (one per window), and `result()` for the totals. */
export class Scoring implements AsyncIterable<ScoreChunk> {
  private readonly chunks: AsyncGenerator<ScoreChunk, void, undefined>;
  private summary: ScoreSummary | null = null;
  private started = false;

  constructor(private readonly p: PreparedScore) {
    this.chunks = this.run();
  }

  [Symbol.asyncIterator](): AsyncIterator<ScoreChunk> {
    if (this.started) throw new PonderError('ARG_INVALID', 'a scoring can be iterated only once', { hint: 'call model.score(...) again for a new one' });
    this.started = true;
    return this.chunks;
  }

  /** Scores to the end (or continues a partial iteration) and returns the totals. Throws ABORTED if the signal fired. */
  async result(): Promise<ScoreSummary> {
    this.started = true;
    for (;;) { const r = await this.chunks.next(); if (r.done) break; }
    if (this.summary === null) throw new PonderError('ABORTED', 'the scoring ended before its last window: its iteration was left early', { hint: 'iterate to the end, or call result() without iterating' });
    return this.summary;
  }

  private async *run(): AsyncGenerator<ScoreChunk, void, undefined> {
    const { ids, window, policy, adapter, signal, onProgress } = this.p;
    const perToken = policy.kind === 'budget' ? policy.perToken ?? { kind: 'default' as const } : policy;
    const budgetSteps = policy.kind === 'budget' ? policy.maxStepsPerSequence : null;
    const total = ids.length - 1;
    const t0 = now();
    let nats = 0, correct = 0, flops = 0, windows = 0;
    const depth = new DepthTally();
    const exitReasons: Record<string, number> = {};
    for (let start = 0; start < total; start += window) {
      if (signal) {
        await yieldToEventLoop();
        if (signal.aborted) throw new PonderError('ABORTED', 'scoring was aborted', { hint: 'the AbortSignal passed in options fired; the model is unaffected' });
      }
      const n = Math.min(window, total - start);
      const session = adapter.newSession(n, this.p.session);
      const chunk: ScoreChunk = {
        window: windows, start, ids: ids.slice(start, start + n) as number[], targets: ids.slice(start + 1, start + n + 1) as number[],
        logProbs: new Float64Array(n), argmax: new Int32Array(n), tokens: [],
      };
      let stepsSpent = 0;
      for (let i = 0; i < n; i++) {
        // the first position starts the sequence as a one-token prompt, the others are decode calls
        const phase = i === 0 ? 'prefill' : 'decode';
        const cap = budgetSteps === null || i === 0 ? null : Math.max(1, budgetSteps - stepsSpent);
        const control: StepControl = { policy: perToken, cap, phase, stepsSpent, budgeted: budgetSteps !== null };
        const out = adapter.run(session, [chunk.ids[i]], control);
        const trace = out.tokens[0];
        if (phase === 'decode') stepsSpent += trace.steps;
        const { logProb, argmax } = logProbOf(out.logits, chunk.targets[i]);
        chunk.logProbs[i] = logProb;
        chunk.argmax[i] = argmax;
        chunk.tokens.push(trace);
        nats -= logProb;
        if (argmax === chunk.targets[i]) correct++;
        depth.add(trace);
        flops += trace.flops;
        exitReasons[trace.exitReason] = (exitReasons[trace.exitReason] ?? 0) + 1;
      }
      windows++;
      onProgress?.({ positionsDone: start + n, positionsTotal: total });
      yield chunk;
    }
    this.summary = {
      policy: describePolicy(policy), positions: total, windows, nats, bitsPerToken: nats / total / Math.LN2, perplexity: Math.exp(nats / total),
      top1: correct / total, ...depth.stats(), flops, exitReasons, ms: now() - t0,
    };
  }
}
