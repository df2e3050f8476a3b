/**
 * The public model: `forward` (one uncached pass, last-position logits + trace) and `generate`
 * (an async iterator streaming one event per token), with one depth-policy option across
 * families. spec/api.md documents every option with an example.
 */
import type { MemoryPlan } from '../runtime/plan.js';
import { PonderError } from '../errors.js';
import { checkTokenIds } from '../models/inputs.js';
import { Sampler, samplingFromGenerationConfig, type SamplingOptions } from '../generate/sampling.js';
import { StopCondition, type StopReason } from '../generate/stop.js';
import { checkSeed } from '../generate/prng.js';
import type { TextTokenizer, TokenTextStream } from '../tokenizer.js';
import { summarizeTrace, traceToJSON, type RunTrace, type TokenTrace, type TraceSummary } from '../trace/trace.js';
import type { FamilyAdapter, FamilySession, Family, SessionOptions, StepControl, StepOutput } from '../models/family.js';
import { checkPolicy, describePolicy, type DepthPolicy } from '../depth/policy.js';

export interface ForwardOptions {
  /** depth policy (default: what upstream does without depth arguments) */
  policy?: DepthPolicy;
  /** Huginn: seed of the random initial latent state. Default 0. */
  seed?: number;
  /** Huginn: cache lookup strategy ('full', 'latest-m4-compress-s4', ...); Ouro: 'copy-forward' | 'exclude'. */
  kvStrategy?: string;
  /** Huginn: the initial latent state s₀ of each position, [ids.length, n_embd] row-major, instead of a draw from `seed` (e.g. replaying a recorded run). */
  initialStates?: Float32Array;
}

export interface ForwardResult {
  /** next-token logits [vocabSize] after the last position */
  logits: Float32Array;
  /** one TokenTrace per input position (phase 'prefill') */
  trace: RunTrace;
}

export interface GenerateOptions {
  /** tokens to generate at most. Default 32. */
  maxNewTokens?: number;
  /** ids that end generation (the id is kept in `ids`, its text not shown). Default: generation_config.json eos_token_id, else none. */
  stopIds?: readonly number[];
  /** strings that end generation; never shown, not even in part (needs a tokenizer). */
  stopStrings?: readonly string[];
  /** seed of the sampling draws and of Huginn's initial state. Default 0. */
  seed?: number;
  /** temperature / topK / topP / minP / repetitionPenalty (spec/sampling.md). Default: generation_config.json, else greedy. */
  sampling?: SamplingOptions;
  /** depth policy (spec/policies.md). Default: what upstream does. */
  policy?: DepthPolicy;
  /** aborting ends the stream cleanly after the current token: finishReason 'aborted', the model stays usable. */
  signal?: AbortSignal;
  /** add the tokenizer's special tokens (e.g. BOS) when the prompt is text. Default true. */
  addSpecialTokens?: boolean;
  /** Huginn: cache lookup strategy ('full' default, 'latest-m4', 'latest-m4-compress-s4', ...); Ouro: 'copy-forward' (default) | 'exclude'; MoR: none */
  kvStrategy?: string;
  /**
   * Huginn: the initial latent state s₀ of every position fed, in order — the prompt, then each
   * generated token — as [positions, n_embd] row-major, instead of draws from `seed` (e.g. replaying
   * the draws of a recorded run). A generation that feeds more positions than it holds is HUGINN_STATE_SHAPE.
   */
  initialStates?: Float32Array;
}

export type FinishReason = StopReason | 'length' | 'context' | 'aborted';

export interface TokenEvent {
  /** 0-based index among generated tokens */
  index: number;
  id: number;
  /** text this token makes visible ('' while held back: an incomplete character, a possible stop-string prefix; '' without tokenizer) */
  text: string;
  /** this token's depth trace */
  trace: TokenTrace;
  /** set on the last event when generation ended on it */
  finishReason?: FinishReason;
}

export interface GenerationResult {
  /** prompt ids followed by the generated ids */
  ids: number[];
  promptIds: number[];
  generatedIds: number[];
  /** the generated text (without a stop string), '' without tokenizer */
  text: string;
  finishReason: FinishReason;
  trace: RunTrace;
  summary: TraceSummary;
  /** the trace as JSON (spec/trace.md §3) */
  traceJSON(indent?: number): string;
}

/** What `loadModel` hands to the Model. */
export interface ModelParts {
  adapter: FamilyAdapter;
  tokenizer: TextTokenizer | null;
  generationConfig: Record<string, unknown> | null;
  label: string;
  /** config.json keys the family never read (dotted paths), see unknownKeys */
  unknownConfigKeys?: readonly string[];
  /** the memory plan it was loaded under */
  memoryPlan?: MemoryPlan;
}

export class Model {
  readonly family: Family;
  readonly vocabSize: number;
  /** positions a sequence may occupy (prompt + generated) */
  readonly contextLength: number;
  /** depth of the default policy (Huginn mean_recurrence, Ouro total_ut_steps, MoR num_recursion) */
  readonly defaultDepth: number;
  readonly tokenizer: TextTokenizer | null;
  readonly generationConfig: Record<string, unknown> | null;
  /** where it was loaded from */
  readonly label: string;
  /** config.json keys the family does not read (dotted paths such as `mor.capcity`): a typo, or a field ponder ignores */
  readonly unknownConfigKeys: readonly string[];
  /** the memory plan it was loaded under (shards, bytes, context, KV dtype), when loaded through loadModel */
  readonly memoryPlan: MemoryPlan | null;
  private readonly adapter: FamilyAdapter;

  constructor(parts: ModelParts) {
    this.adapter = parts.adapter;
    this.family = parts.adapter.family;
    this.vocabSize = parts.adapter.vocabSize;
    // a sequence holds at most the context the memory plan was made for
    this.contextLength = Math.min(parts.adapter.contextLength, parts.memoryPlan?.context ?? Infinity);
    this.memoryPlan = parts.memoryPlan ?? null;
    this.defaultDepth = parts.adapter.defaultDepth;
    this.tokenizer = parts.tokenizer;
    this.generationConfig = parts.generationConfig;
    this.label = parts.label;
    this.unknownConfigKeys = [...(parts.unknownConfigKeys ?? [])];
  }

  /** Text → ids (needs a tokenizer). */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.requireTokenizer().encode(text, { addSpecialTokens });
  }

  /** Ids → text (needs a tokenizer). */
  decode(ids: ArrayLike<number>): string {
    return this.requireTokenizer().decode(ids);
  }

  /** Throws ARG_POLICY if this model's family cannot run `policy`. */
  checkPolicy(policy: DepthPolicy): void {
    checkPolicy(policy);
    this.adapter.checkPolicy(policy);
  }

  /** One uncached pass over `ids` under a depth policy: last-position logits and a trace per position. */
  forward(ids: readonly number[], options: ForwardOptions = {}): ForwardResult {
    const policy = options.policy ?? { kind: 'default' };
    this.checkPolicy(policy);
    const seed = options.seed ?? 0;
    checkSeed(seed);
    this.checkIds(ids, 'ids');
    const sessionOptions = { seed, kvStrategy: options.kvStrategy, initialStates: options.initialStates };
    this.adapter.checkSessionOptions(sessionOptions);
    const perToken = policy.kind === 'budget' ? policy.perToken ?? { kind: 'default' } : policy;
    const session = this.adapter.newSession(ids.length, sessionOptions);
    const start = now();
    let out: StepOutput;
    try {
      out = this.adapter.run(session, ids, { policy: perToken, cap: null, phase: 'prefill', stepsSpent: 0, budgeted: policy.kind === 'budget' });
    } finally {
      this.adapter.endSession(session);
    }
    const trace: RunTrace = { family: this.family, model: this.label, policy: describePolicy(policy), tokens: out.tokens, decodeMs: 0, prefillMs: now() - start };
    return { logits: out.logits, trace };
  }

  /**
   * Streams generated tokens: `for await (const event of model.generate(prompt, options))`, or
   * `await model.generate(prompt, options).result()` for everything at once. Every argument is
   * checked (ids, context length, policy, sampling) before any compute.
   */
  generate(promptOrIds: string | readonly number[], options: GenerateOptions = {}): Generation {
    return new Generation(this.prepare(promptOrIds, options), this);
  }

  private requireTokenizer(): TextTokenizer {
    if (!this.tokenizer) {
      throw new PonderError('GEN_NO_TOKENIZER', `${this.label} has no tokenizer, so text cannot be encoded or decoded`, { hint: 'pass token ids instead of text, or load a model directory with tokenizer.json (and install @huggingface/tokenizers)' });
    }
    return this.tokenizer;
  }

  private checkIds(ids: readonly number[], what: string): void {
    if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) throw new PonderError('ARG_INVALID', `${what} must be an array of token ids`, { field: what, hint: 'pass a string prompt (with a tokenizer) or an array of ids' });
    if (ids.length === 0) throw new PonderError('GEN_EMPTY', `${what} is empty: generation needs at least one prompt token`, { field: what, hint: 'pass a non-empty prompt' });
    checkTokenIds(ids, this.vocabSize, what);
    if (ids.length > this.contextLength) {
      throw new PonderError('GEN_CONTEXT', `the prompt has ${ids.length} tokens, longer than the model's context of ${this.contextLength}`, { field: what, hint: `shorten the prompt to at most ${this.contextLength - 1} tokens (one position is needed per generated token)` });
    }
  }

  private prepare(promptOrIds: string | readonly number[], o: GenerateOptions): Prepared {
    const promptIds = typeof promptOrIds === 'string' ? this.encode(promptOrIds, o.addSpecialTokens ?? true) : [...promptOrIds];
    this.checkIds(promptIds, typeof promptOrIds === 'string' ? 'prompt' : 'ids');
    const maxNewTokens = o.maxNewTokens ?? 32;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new PonderError('ARG_INVALID', `maxNewTokens must be an integer ≥ 0, got ${String(maxNewTokens)}`, { field: 'maxNewTokens', hint: 'e.g. maxNewTokens: 32' });
    const policy = o.policy ?? { kind: 'default' };
    this.checkPolicy(policy);
    const baseSampling: SamplingOptions = o.sampling ?? (this.generationConfig ? samplingFromGenerationConfig(this.generationConfig) : { temperature: 0 });
    const seed = o.seed ?? baseSampling.seed ?? 0;
    checkSeed(seed);
    const sampler = new Sampler(this.vocabSize, { ...baseSampling, seed });
    if (o.stopStrings && o.stopStrings.length > 0 && !this.tokenizer) this.requireTokenizer();
    const stopIds = o.stopIds ?? (this.generationConfig ? eosOf(this.generationConfig.eos_token_id) : []);
    const stop = new StopCondition({ stopIds, stopStrings: o.stopStrings });
    if (o.signal !== undefined && !(typeof o.signal === 'object' && o.signal !== null && 'aborted' in o.signal)) throw new PonderError('ARG_INVALID', 'signal must be an AbortSignal', { field: 'signal', hint: 'pass controller.signal' });
    const session: SessionOptions = { seed, kvStrategy: o.kvStrategy, initialStates: o.initialStates };
    this.adapter.checkSessionOptions(session);
    return { promptIds, maxNewTokens, policy, sampler, stop, signal: o.signal ?? null, session, adapter: this.adapter };
  }
}

interface Prepared {
  promptIds: number[];
  maxNewTokens: number;
  policy: DepthPolicy;
  sampler: Sampler;
  stop: StopCondition;
  signal: AbortSignal | null;
  session: SessionOptions;
  adapter: FamilyAdapter;
}

function eosOf(value: unknown): number[] {
  if (typeof value === 'number') return [value];
  if (Array.isArray(value)) return value.filter((x): x is number => typeof x === 'number');
  return [];
}

function now(): number {
  return globalThis.performance.now();
}

/** Gives timers and abort handlers a turn between tokens (only when there is a signal to watch). */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** One generation: an async iterable of TokenEvents, and `result()` for the whole outcome. */
export class Generation implements AsyncIterable<TokenEvent> {
  private readonly events: AsyncGenerator<TokenEvent, void, undefined>;
  private outcome: GenerationResult | null = null;
  private started = false;

  constructor(private readonly p: Prepared, private readonly model: Model) {
    this.events = this.run();
  }

  [Symbol.asyncIterator](): AsyncIterator<TokenEvent> {
    if (this.started) throw new PonderError('ARG_INVALID', 'a generation can be iterated only once', { hint: 'call model.generate(...) again for a new one' });
    this.started = true;
    return this.events;
  }

  /** Runs the generation to its end (or continues it, after a partial iteration) and returns everything. */
  async result(): Promise<GenerationResult> {
    if (!this.started) {
      this.started = true;
      for await (const _event of this.events) { /* drain */ }
    } else if (this.outcome === null) {
      for (;;) { const r = await this.events.next(); if (r.done) break; }
    }
    return this.outcome!;
  }

  private async *run(): AsyncGenerator<TokenEvent, void, undefined> {
    const { promptIds, maxNewTokens, policy, sampler, stop, signal, session: sessionOptions } = this.p;
    const model = this.model;
    const adapter = this.p.adapter;
    const perToken = policy.kind === 'budget' ? policy.perToken ?? { kind: 'default' as const } : policy;
    const budgetSteps = policy.kind === 'budget' ? policy.maxStepsPerSequence : null;
    const capacity = Math.min(model.contextLength, promptIds.length + maxNewTokens);
    const trace: RunTrace = { family: model.family, model: model.label, policy: describePolicy(policy), sampling: { ...sampler.options }, tokens: [], decodeMs: 0, prefillMs: 0 };
    const textStream: TokenTextStream | null = model.tokenizer ? model.tokenizer.decodeStream() : null;
    const ids = [...promptIds];
    const generated: number[] = [];
    let text = '';
    let finishReason: FinishReason = 'length';
    let stepsSpent = 0;
    let decodeMs = 0;
    let session: FamilySession | null = null;

    const finish = (): void => {
      if (session) adapter.endSession(session); // its KV cache goes back for reuse (arena memory is never freed)
      session = null;
      const rest = (textStream ? stop.flush() + textStream.flush() : '');
      text += rest;
      trace.decodeMs = decodeMs;
      const summary = summarizeTrace(trace);
      const result: GenerationResult = {
        ids: [...ids], promptIds: [...promptIds], generatedIds: [...generated], text, finishReason, trace, summary,
        traceJSON: (indent?: number) => traceToJSON(trace, indent),
      };
      this.outcome = result;
    };

    try {
      if (signal?.aborted) { finishReason = 'aborted'; return; }
      session = adapter.newSession(capacity, sessionOptions);
      const t0 = now();
      let out = adapter.run(session, promptIds, { policy: perToken, cap: null, phase: 'prefill', stepsSpent: 0, budgeted: budgetSteps !== null });
      trace.prefillMs = now() - t0;
      if (model.tokenizer) {
        const promptText = model.tokenizer.decodeStream();
        for (const t of out.tokens) t.text = promptText.push(t.id);
      }
      trace.tokens.push(...out.tokens);

      for (let k = 0; k < maxNewTokens; k++) {
        if (signal) {
          await yieldToEventLoop();
          if (signal.aborted) { finishReason = 'aborted'; return; }
        }
        if (ids.length >= model.contextLength) { finishReason = 'context'; return; }
        const tStart = now();
        const id = sampler.sample(out.logits, ids);
        ids.push(id);
        generated.push(id);
        const cap = budgetSteps === null ? null : Math.max(1, budgetSteps - stepsSpent);
        const control: StepControl = { policy: perToken, cap, phase: 'decode', stepsSpent, budgeted: budgetSteps !== null };
        // The token is fed at once, so its trace (the depth its position used) comes with its event.
        out = adapter.run(session, [id], control);
        decodeMs += now() - tStart;
        const tokenTrace = out.tokens[0];
        stepsSpent += tokenTrace.steps;
        const piece = textStream ? textStream.push(id) : '';
        if (textStream) tokenTrace.text = piece;
        trace.tokens.push(tokenTrace);
        const step = stop.push(id, piece);
        let shown = step.text;
        const last = step.stopped !== null || k === maxNewTokens - 1 || ids.length >= model.contextLength;
        if (step.stopped !== null) finishReason = step.stopped;
        else if (k === maxNewTokens - 1) finishReason = 'length';
        else if (ids.length >= model.contextLength) finishReason = 'context';
        if (last && step.stopped === null && textStream) shown += stop.flush() + textStream.flush();
        text += shown;
        const event: TokenEvent = { index: k, id, text: shown, trace: tokenTrace };
        if (last) { event.finishReason = finishReason; finish(); }
        yield event;
        if (last) return;
      }
    } finally {
      // a consumer that stops iterating early ends the generation like an abort
      if (this.outcome === null) {
        if (finishReason === 'length' && generated.length < maxNewTokens) finishReason = 'aborted';
        finish();
      }
    }
  }
}
