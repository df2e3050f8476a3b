/**
 * One generation: the token loop behind `model.generate` and the chat calls. A prompt is fed (all
 * of it, or — in a chat session's next turn — what its cache does not hold yet), then one token at
 * a time is sampled, fed at once (its trace comes with its event) and checked against the stop
 * rules. spec/api.md documents the events, the result and cancellation.
 */
import { PonderError } from '../errors.js';
import { now, yieldToEventLoop } from './event-loop.js';
import type { Sampler } from '../generate/sampling.js';
import type { StopCondition, StopReason } from '../generate/stop.js';
import type { TextTokenizer, TokenTextStream } from '../tokenizer.js';
import { summarizeTrace, traceToJSON, type RunTrace, type TokenTrace, type TraceSummary } from '../trace/trace.js';
import type { Family, FamilyAdapter, FamilySession, SessionOptions, StepControl } from '../models/family.js';
import { describePolicy, type DepthPolicy } from '../depth/policy.js';
import type { SamplingOptions } from '../generate/sampling.js';

export interface GenerateOptions {
  /** tokens to generate at most. Default 32. */
  maxNewTokens?: number;
  /** ids that end generation (the id is kept in `ids`, its text not shown). Default: model.stopIds(); given, it replaces them. */
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
  /** add the tokenizer's special tokens (e.g. BOS) when the prompt is text (tokenizer_config.json's add_bos_token / add_eos_token, else tokenizer.json's post-processor). Default true. */
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
  /** the prompt positions computed by this generation (phase 'prefill': those not taken from a chat session's cache), then the generated tokens */
  trace: RunTrace;
  summary: TraceSummary;
  /** the trace as JSON (spec/trace.md §3) */
  traceJSON(indent?: number): string;
  /** prompt tokens a chat session took from its KV cache instead of computing them again (0 for generate) */
  cachedTokens: number;
  /** the rendered chat prompt (chat calls only) */
  promptText?: string;
}

/** Where a generation's prompt is computed: a fresh session, or a chat session holding the first `cached` prompt tokens. */
export interface SessionStart {
  session: FamilySession;
  /** prompt tokens the session already holds (< promptIds.length) */
  cached: number;
}

/** A generation checked and ready to run (Model builds it; nothing is computed yet). */
export interface Prepared {
  promptIds: number[];
  promptText?: string;
  maxNewTokens: number;
  policy: DepthPolicy;
  sampler: Sampler;
  stop: StopCondition;
  signal: AbortSignal | null;
  session: SessionOptions;
  adapter: FamilyAdapter;
  /** the session to run on, asked for when the generation starts (its owner ends it): default a new one of `capacity` positions, ended with the generation */
  start?: (capacity: number) => SessionStart;
  /** told when the generation has ended (its result), or failed (null): a chat session's bookkeeping */
  onEnd?: (result: GenerationResult | null, session: FamilySession | null) => void;
}

/** What a generation reads of its model. */
export interface GenerationModel {
  readonly family: Family;
  readonly label: string;
  readonly contextLength: number;
  readonly tokenizer: TextTokenizer | null;
}

/** One generation: an async iterable of TokenEvents, and `result()` for the whole outcome. */
export class Generation implements AsyncIterable<TokenEvent> {
  private readonly events: AsyncGenerator<TokenEvent, void, undefined>;
  private outcome: GenerationResult | null = null;
  private started = false;

  constructor(private readonly p: Prepared, private readonly model: GenerationModel) {
    this.events = this.run();
  }

  /** The rendered chat prompt (chat calls), else undefined. */
  get promptText(): string | undefined {
    return this.p.promptText;
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
    let cached = 0;
    let session: FamilySession | null = null;
    let threw = false;

    const finish = (): void => {
      // its KV cache goes back for reuse (arena memory is never freed); a chat session keeps its own
      if (session && !this.p.start) adapter.endSession(session);
      const rest = (textStream ? stop.flush() + textStream.flush() : '');
      text += rest;
      trace.decodeMs = decodeMs;
      const summary = summarizeTrace(trace);
      const result: GenerationResult = {
        ids: [...ids], promptIds: [...promptIds], generatedIds: [...generated], text, finishReason, trace, summary,
        traceJSON: (indent?: number) => traceToJSON(trace, indent), cachedTokens: cached,
      };
      if (this.p.promptText !== undefined) result.promptText = this.p.promptText;
      this.outcome = result;
    };

    try {
      if (signal?.aborted) { finishReason = 'aborted'; return; }
      const start = this.p.start ? this.p.start(capacity) : { session: adapter.newSession(capacity, sessionOptions), cached: 0 };
      session = start.session;
      cached = start.cached;
      const t0 = now();
      let out = adapter.run(session, promptIds.slice(cached), { policy: perToken, cap: null, phase: 'prefill', stepsSpent: 0, budgeted: budgetSteps !== null });
      trace.prefillMs = now() - t0;
      if (model.tokenizer) {
        const promptText = model.tokenizer.decodeStream();
        for (const t of out.tokens) t.text = promptText.push(t.id);
      }
      for (const t of out.tokens) trace.tokens.push(t); // a loop: a prompt may have more tokens than a call takes arguments

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
        if (last) { event.finishReason = finishReason; finish(); this.p.onEnd?.(this.outcome, session); }
        yield event;
        if (last) return;
      }
    } catch (err) {
      threw = true;
      throw err;
    } finally {
      // a consumer that stops iterating early ends the generation like an abort
      if (this.outcome === null) {
        if (finishReason === 'length' && generated.length < maxNewTokens) finishReason = 'aborted';
        finish();
        this.p.onEnd?.(threw ? null : this.outcome, session);
      }
    }
  }
}
