/**
 * The per-token depth trace every family returns with its output, the run summary computed from
 * it, and its JSON form. Field meanings are normative in spec/trace.md.
 */
import { describeValue as show, PonderError } from '../errors.js';

/**
 * Why a token stopped recursing:
 * - 'criterion': an exit criterion fired (Huginn's entropy-diff, kl, ...; Ouro's exit gate);
 * - 'cap': it reached maxSteps without the criterion firing;
 * - 'router': a MoR router chose its depth;
 * - 'policy': a user depth function said stop;
 * - 'fixed': a fixed(n) policy, every token the same depth;
 * - 'budget': the run's compute budget was spent.
 */
export type ExitReason = 'criterion' | 'cap' | 'router' | 'policy' | 'fixed' | 'budget';
export const EXIT_REASONS: readonly ExitReason[] = ['criterion', 'cap', 'router', 'policy', 'fixed', 'budget'];

export interface TokenTrace {
  /** The token id produced (for prefill entries: the prompt token at that position). */
  id: number;
  /** Its decoded text, when a tokenizer was loaded. */
  text?: string;
  /** 'prefill' for prompt positions, 'decode' for generated tokens. Default 'decode'. */
  phase?: 'prefill' | 'decode';
  /** Recurrence steps (Huginn), recursions (MoR) or loops (Ouro) this token used: 0 ≤ steps ≤ maxSteps. */
  steps: number;
  /** The most it could have used; "full depth". */
  maxSteps: number;
  exitReason: ExitReason;
  /** Name of the exit criterion, e.g. 'kl' or 'entropy-diff', when one was evaluated. */
  criterion?: string;
  /** The threshold it was compared with. */
  threshold?: number;
  /** criterionValues[s - 1] = the criterion's value after step s; null where no check ran. */
  criterionValues: (number | null)[];
  /** routerScores[r - 1] = the router's score for this token at recursion r; null where not scored. */
  routerScores: (number | null)[];
  /** Floating-point operations spent on this token (multiply-add = 2), all blocks included. */
  flops: number;
  /** Bytes of KV cache the model holds after this token. */
  kvBytes: number;
}

export interface RunTrace {
  /** 'mor' | 'huginn' | 'ouro'. */
  family: string;
  /** Where the model came from (a directory, a golden case name), for the reader. */
  model?: string;
  /** The depth policy as the user wrote it, e.g. "exit(kl, 5e-4)". */
  policy: string;
  /** The sampling options used, resolved (see ResolvedSamplingOptions). */
  sampling?: Record<string, number | null>;
  /** Tokens in order: prompt positions (phase 'prefill') first if recorded, then generated ones. */
  tokens: TokenTrace[];
  /** Wall time of the decode phase in milliseconds (prefill excluded). */
  decodeMs: number;
  /** Wall time of the prefill in milliseconds, if measured. */
  prefillMs?: number;
}

/** Depth statistics over a set of tokens (a trace's generated tokens, the positions Model.score fed). */
export interface DepthStats {
  /** mean, least and largest steps; 0 when there are no tokens */
  meanDepth: number;
  minDepth: number;
  maxDepth: number;
  /** the largest maxSteps */
  fullDepth: number;
  /** Σ steps and Σ maxSteps */
  stepsUsed: number;
  stepsFull: number;
}

/** DepthStats as a running tally (Model.score keeps no tokens once a window is handed over): add each token, then read stats(). */
export class DepthTally {
  private count = 0;
  private stepsUsed = 0;
  private stepsFull = 0;
  private minDepth = Infinity;
  private maxDepth = 0;
  private fullDepth = 0;

  add(token: Pick<TokenTrace, 'steps' | 'maxSteps'>): void {
    this.count++;
    this.stepsUsed += token.steps;
    this.stepsFull += token.maxSteps;
    this.minDepth = Math.min(this.minDepth, token.steps);
    this.maxDepth = Math.max(this.maxDepth, token.steps);
    this.fullDepth = Math.max(this.fullDepth, token.maxSteps);
  }

  stats(): DepthStats {
    const n = this.count;
    return {
      meanDepth: n > 0 ? this.stepsUsed / n : 0, minDepth: n > 0 ? this.minDepth : 0, maxDepth: this.maxDepth, fullDepth: this.fullDepth,
      stepsUsed: this.stepsUsed, stepsFull: this.stepsFull,
    };
  }
}

/** Depth statistics over generated tokens (phase 'decode'), and what else a trace adds up to. */
export interface TraceSummary extends DepthStats {
  /** Generated tokens (phase 'decode'). */
  tokens: number;
  /** Generated tokens per second of decode time; null when no time was measured. */
  tokensPerSecond: number | null;
  /** 1 − stepsUsed / stepsFull: the fraction of recurrent-block applications skipped. 0 when stepsFull is 0. */
  computeSaved: number;
  /** Σ flops over all tokens, prefill included. */
  flops: number;
  /** The largest kvBytes over all tokens. */
  kvBytesPeak: number;
}

function invalid(message: string, field: string): PonderError {
  return new PonderError('TRACE_INVALID', message, { field, hint: 'the trace must follow spec/trace.md; this is a bug in whatever produced it' });
}


const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/**
 * Throws TRACE_INVALID, naming the token and field, on the first entry that breaks spec/trace.md:
 * every field of the run and of every token is checked for its type (a trace may come from a file,
 * so nothing is assumed), before anything reads it.
 */
export function checkTrace(run: RunTrace): void {
  const r = run as unknown as Record<string, unknown>;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw invalid(`a trace must be an object, got ${show(r)}`, 'trace');
  if (typeof r.family !== 'string') throw invalid(`trace.family must be a string, got ${show(r.family)}`, 'family');
  if (typeof r.policy !== 'string') throw invalid(`trace.policy must be a string, got ${show(r.policy)}`, 'policy');
  if (r.model !== undefined && typeof r.model !== 'string') throw invalid(`trace.model must be a string, got ${show(r.model)}`, 'model');
  if (r.sampling !== undefined) {
    if (r.sampling === null || typeof r.sampling !== 'object' || Array.isArray(r.sampling)) throw invalid(`trace.sampling must be an object of numbers, got ${show(r.sampling)}`, 'sampling');
    for (const [k, v] of Object.entries(r.sampling)) {
      if (v !== null && !(typeof v === 'number' && Number.isFinite(v))) throw invalid(`trace.sampling.${k} must be a number or null, got ${show(v)}`, `sampling.${k}`);
    }
  }
  if (!Array.isArray(r.tokens)) throw invalid(`trace.tokens must be an array, got ${show(r.tokens)}`, 'tokens');
  if (!isCount(r.decodeMs)) throw invalid(`trace.decodeMs must be a finite number ≥ 0, got ${show(r.decodeMs)}`, 'decodeMs');
  if (r.prefillMs !== undefined && !isCount(r.prefillMs)) throw invalid(`trace.prefillMs must be a finite number ≥ 0, got ${show(r.prefillMs)}`, 'prefillMs');
  const tokens = r.tokens as unknown[];
  for (let i = 0; i < tokens.length; i++) {
    const where = `tokens[${i}]`;
    const t = tokens[i] as Record<string, unknown>;
    if (t === null || typeof t !== 'object' || Array.isArray(t)) throw invalid(`${where} must be an object, got ${show(t)}`, where);
    if (!Number.isSafeInteger(t.id) || (t.id as number) < 0) throw invalid(`${where}.id must be an integer ≥ 0, got ${show(t.id)}`, `${where}.id`);
    if (!Number.isSafeInteger(t.maxSteps) || (t.maxSteps as number) < 1) throw invalid(`${where}.maxSteps must be an integer ≥ 1, got ${show(t.maxSteps)}`, `${where}.maxSteps`);
    const maxSteps = t.maxSteps as number;
    if (!Number.isInteger(t.steps) || (t.steps as number) < 0 || (t.steps as number) > maxSteps) {
      throw invalid(`${where}.steps must be an integer in [0, maxSteps = ${maxSteps}], got ${show(t.steps)}`, `${where}.steps`);
    }
    if (!EXIT_REASONS.includes(t.exitReason as ExitReason)) throw invalid(`${where}.exitReason must be one of ${EXIT_REASONS.join(', ')}, got ${show(t.exitReason)}`, `${where}.exitReason`);
    if (t.phase !== undefined && t.phase !== 'prefill' && t.phase !== 'decode') throw invalid(`${where}.phase must be 'prefill' or 'decode', got ${show(t.phase)}`, `${where}.phase`);
    if (t.text !== undefined && typeof t.text !== 'string') throw invalid(`${where}.text must be a string, got ${show(t.text)}`, `${where}.text`);
    if (t.criterion !== undefined && typeof t.criterion !== 'string') throw invalid(`${where}.criterion must be a string, got ${show(t.criterion)}`, `${where}.criterion`);
    if (t.threshold !== undefined && typeof t.threshold !== 'number') throw invalid(`${where}.threshold must be a number, got ${show(t.threshold)}`, `${where}.threshold`);
    for (const key of ['criterionValues', 'routerScores'] as const) {
      const values = t[key];
      if (!Array.isArray(values) || values.length > maxSteps || values.some((v) => v !== null && typeof v !== 'number')) {
        throw invalid(`${where}.${key} must be an array of at most maxSteps numbers or nulls`, `${where}.${key}`);
      }
    }
    for (const key of ['flops', 'kvBytes'] as const) {
      if (!isCount(t[key])) throw invalid(`${where}.${key} must be a finite number ≥ 0, got ${show(t[key])}`, `${where}.${key}`);
    }
  }
}

export function summarizeTrace(run: RunTrace): TraceSummary {
  checkTrace(run);
  const generated = run.tokens.filter((t) => (t.phase ?? 'decode') === 'decode');
  const depth = new DepthTally();
  for (const t of generated) depth.add(t);
  let flops = 0;
  let kvBytesPeak = 0;
  for (const t of run.tokens) {
    flops += t.flops;
    kvBytesPeak = Math.max(kvBytesPeak, t.kvBytes);
  }
  const n = generated.length;
  const stats = depth.stats();
  return {
    tokens: n,
    tokensPerSecond: run.decodeMs > 0 ? (n * 1000) / run.decodeMs : null,
    ...stats,
    computeSaved: stats.stepsFull > 0 ? 1 - stats.stepsUsed / stats.stepsFull : 0,
    flops,
    kvBytesPeak,
  };
}

// ---------------------------------------------------------------- JSON

export const TRACE_FORMAT_VERSION = 1;

/**
 * The trace as JSON: `{ "format": "ponder-trace", "version": 1, ...run, "summary": {...} }`.
 * JSON has no NaN or Infinity; a criterion value that is not finite is written as the string
 * "NaN", "Infinity" or "-Infinity" (null already means "no check at this step").
 */
export function traceToJSON(run: RunTrace, indent?: number): string {
  const summary = summarizeTrace(run);
  const document = { format: 'ponder-trace', version: TRACE_FORMAT_VERSION, ...run, summary };
  return JSON.stringify(document, (_key, value) => (typeof value === 'number' && !Number.isFinite(value) ? String(value) : value), indent);
}

/** Reads what traceToJSON wrote (the summary is recomputed, not trusted). Errors: TRACE_INVALID. */
export function parseTraceJSON(text: string): RunTrace {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (err) {
    throw new PonderError('TRACE_INVALID', `trace JSON does not parse: ${(err as Error).message}`, { hint: 'pass a file written by `ponder run --json` or traceToJSON' });
  }
  const d = document as Record<string, unknown> | null;
  if (typeof d !== 'object' || d === null || d.format !== 'ponder-trace') {
    throw new PonderError('TRACE_INVALID', 'this JSON is not a ponder trace (no "format": "ponder-trace")', { field: 'format', hint: 'pass a file written by `ponder run --json` or traceToJSON' });
  }
  if (d.version !== TRACE_FORMAT_VERSION) {
    throw new PonderError('TRACE_INVALID', `trace format version ${show(d.version)} is not supported (this ponder reads version ${TRACE_FORMAT_VERSION})`, { field: 'version', hint: 'regenerate the trace with this version of ponder' });
  }
  const { format: _format, version: _version, summary: _summary, ...rest } = d;
  const run = rest as unknown as RunTrace;
  if (Array.isArray(run.tokens)) {
    for (const t of run.tokens as unknown as Record<string, unknown>[]) {
      if (typeof t !== 'object' || t === null) continue;
      // the fields that may hold NaN / ±Infinity, written as strings by traceToJSON
      if (Array.isArray(t.criterionValues) && t.criterionValues.some(isString)) t.criterionValues = t.criterionValues.map(nonFiniteFromString);
      if (Array.isArray(t.routerScores) && t.routerScores.some(isString)) t.routerScores = t.routerScores.map(nonFiniteFromString);
      if (t.threshold !== undefined) t.threshold = nonFiniteFromString(t.threshold);
    }
  }
  checkTrace(run);
  return run;
}

function isString(value: unknown): boolean {
  return typeof value === 'string';
}

function nonFiniteFromString(value: unknown): unknown {
  return value === 'NaN' ? NaN : value === 'Infinity' ? Infinity : value === '-Infinity' ? -Infinity : value;
}
