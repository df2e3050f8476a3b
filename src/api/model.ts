/**
 * The public model: `forward` (one uncached pass, last-position logits + trace), `generate` (an
 * async iterator streaming one event per token, src/api/generation.ts) with one depth-policy option
 * across families, and chat: the model folder's template rendered, the chat stop ids, and sessions
 * that keep their KV cache across turns where the family allows it. spec/api.md documents every
 * option with an example.
 */
import type { MemoryPlan } from '../runtime/plan.js';
import type { Runtime } from '../runtime/runtime.js';
import { describeValue, invalidArgument, optionsArgument, PonderError } from '../errors.js';
import { LIMITS, limitNote } from '../limits.js';
import { now } from './event-loop.js';
import { checkTokenIds } from '../models/inputs.js';
import { Sampler, samplingFromGenerationConfig, type SamplingOptions } from '../generate/sampling.js';
import { StopCondition } from '../generate/stop.js';
import { checkSeed } from '../generate/prng.js';
import type { TextTokenizer } from '../tokenizer.js';
import type { RunTrace } from '../trace/trace.js';
import type { FamilyAdapter, Family, FamilySession, FamilyStops, SessionOptions, StepOutput } from '../models/family.js';
import { checkPolicy, describePolicy, type DepthPolicy } from '../depth/policy.js';
import { checkScoreOptions, Scoring, type ScoreOptions } from './score.js';
import type { ChatMessage, ChatTemplate } from '../chat/template.js';
import { assistantRole, defaultStopIds, endOfTurnToken, type StopId } from '../chat/stops.js';
import { Generation, type GenerateOptions, type GenerationResult, type Prepared, type SessionStart } from './generation.js';

export { Generation, type GenerateOptions, type GenerationResult, type TokenEvent, type FinishReason } from './generation.js';
export type { StopId } from '../chat/stops.js';

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

/** A chat call: the generate options (but Huginn's initialStates) and the template's. */
export interface ChatOptions extends Omit<GenerateOptions, 'initialStates' | 'addSpecialTokens'> {
  /** add the tokenizer's special tokens around the rendered prompt. Default false: the template writes them (as transformers' apply_chat_template). */
  addSpecialTokens?: boolean;
  /** extra template variables, e.g. `{ enable_thinking: true }` */
  templateKwargs?: Readonly<Record<string, unknown>>;
  /** tool (function) JSON schemas, for templates that take them */
  tools?: readonly unknown[];
  /** documents (objects with title and text), for templates that take them */
  documents?: readonly unknown[];
  /** a named template of a template set (tokenizer_config.json's list form) */
  templateName?: string;
  /** continue the last message (no end of turn after it, no generation prompt) */
  continueFinalMessage?: boolean;
}

export interface ChatSessionOptions {
  /** a system message put first in the history, and kept by reset() */
  system?: string;
  /** positions to allocate the session's KV cache for. Default: what the first turn needs (at least twice its prompt + maxNewTokens), grown when a turn needs more. */
  capacity?: number;
}

/** What `loadModel` hands to the Model. */
export interface ModelParts {
  adapter: FamilyAdapter;
  /** the ids the family stops on by its config and upstream code */
  stops: FamilyStops;
  tokenizer: TextTokenizer | null;
  generationConfig: Record<string, unknown> | null;
  /** the model folder's chat template, or null */
  chatTemplate?: ChatTemplate | null;
  /** why the folder's chat template could not be loaded (thrown by chat calls) */
  chatTemplateError?: PonderError | null;
  label: string;
  /** config.json keys the family never read (dotted paths), see unknownKeys */
  unknownConfigKeys?: readonly string[];
  /** the memory plan it was loaded under */
  memoryPlan?: MemoryPlan;
}

/** Runtimes a loader made for one model (not the caller's): that model's dispose() frees them. */
const ownedRuntimes = new WeakMap<Model, Runtime>();

/** The loader's side: `runtime` was made for `model` alone (no options.runtime was given), so model.dispose() stops it. */
export function giveRuntime(model: Model, runtime: Runtime): Model {
  ownedRuntimes.set(model, runtime);
  return model;
}

/**
 * The family adapter behind the model's liveness: once the model is disposed, starting a session
 * or running a step is MODEL_DISPOSED, so a generation, scoring or chat session still under way
 * stops at its next step instead of running on a runtime that is gone.
 */
function liveAdapter(adapter: FamilyAdapter, checkLive: () => void): FamilyAdapter {
  return {
    family: adapter.family, vocabSize: adapter.vocabSize, contextLength: adapter.contextLength, defaultDepth: adapter.defaultDepth,
    checkPolicy: (policy) => adapter.checkPolicy(policy),
    checkSessionOptions: (options) => adapter.checkSessionOptions(options),
    newSession: (capacity, options) => { checkLive(); return adapter.newSession(capacity, options); },
    endSession: (session) => adapter.endSession(session),
    continues: (session, control, options) => adapter.continues(session, control, options),
    run: (session, ids, control) => { checkLive(); return adapter.run(session, ids, control); },
  };
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
  /** the chat template of the model folder (chat_template.jinja, else tokenizer_config.json), or null */
  readonly chatTemplate: ChatTemplate | null;
  /** where it was loaded from */
  readonly label: string;
  /** config.json keys the family does not read (dotted paths such as `mor.capcity`): a typo, or a field ponder ignores */
  readonly unknownConfigKeys: readonly string[];
  /** the memory plan it was loaded under (shards, bytes, context, KV dtype), when loaded through loadModel */
  readonly memoryPlan: MemoryPlan | null;
  private readonly adapter: FamilyAdapter;
  private readonly stops: FamilyStops;
  private readonly chatTemplateError: PonderError | null;
  private chatFacts: { role: string; endOfTurn: { id: number; token: string } | null } | null = null;
  private disposal: Promise<void> | null = null;

  constructor(parts: ModelParts) {
    this.adapter = liveAdapter(parts.adapter, () => this.checkLive());
    this.family = parts.adapter.family;
    this.vocabSize = parts.adapter.vocabSize;
    // a sequence holds at most the context the memory plan was made for
    this.contextLength = Math.min(parts.adapter.contextLength, parts.memoryPlan?.context ?? Infinity);
    this.memoryPlan = parts.memoryPlan ?? null;
    this.defaultDepth = parts.adapter.defaultDepth;
    this.stops = parts.stops;
    this.tokenizer = parts.tokenizer;
    this.generationConfig = parts.generationConfig;
    this.chatTemplate = parts.chatTemplate ?? null;
    this.chatTemplateError = parts.chatTemplateError ?? null;
    this.label = parts.label;
    this.unknownConfigKeys = [...(parts.unknownConfigKeys ?? [])];
  }

  /**
   * Frees what the model owns: the kernel threads of the runtime loadModel made for it when no
   * `runtime` was passed (a runtime passed in stays the caller's, to dispose when done with every
   * model on it). The weights' memory goes with the model once nothing references it. Idempotent;
   * every later call on the model is MODEL_DISPOSED, and a generation, scoring or chat session
   * still under way stops with it at its next step.
   */
  dispose(): Promise<void> {
    this.disposal ??= (async () => {
      const runtime = ownedRuntimes.get(this);
      ownedRuntimes.delete(this);
      await runtime?.dispose?.();
    })();
    return this.disposal;
  }

  /** Whether dispose() was called. */
  get disposed(): boolean {
    return this.disposal !== null;
  }

  private checkLive(): void {
    if (this.disposal) throw new PonderError('MODEL_DISPOSED', `${this.label}: the model was disposed (model.dispose()), so it runs nothing more`, { hint: 'load the model again to use it' });
  }

  /** Text → ids (needs a tokenizer). */
  encode(text: string, addSpecialTokens = true): number[] {
    this.checkLive();
    if (typeof text !== 'string') throw invalidArgument('encode text', 'a string', text);
    if (typeof addSpecialTokens !== 'boolean') throw invalidArgument('encode addSpecialTokens', 'true or false', addSpecialTokens);
    return this.requireTokenizer().encode(text, { addSpecialTokens });
  }

  /** Ids → text (needs a tokenizer). */
  decode(ids: ArrayLike<number>): string {
    this.checkLive();
    if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) throw invalidArgument('decode ids', 'an array of token ids', ids);
    return this.requireTokenizer().decode(ids); // TOKENIZER_UNKNOWN_ID for an id it does not have
  }

  /** Throws ARG_POLICY if this model's family cannot run `policy`. */
  checkPolicy(policy: DepthPolicy): void {
    this.checkLive();
    checkPolicy(policy);
    this.adapter.checkPolicy(policy);
  }

  /**
   * The stop ids generation uses unless `stopIds` is given, each with where it comes from:
   * generation_config.json eos_token_id (else config.json's), the family's built-in stops, and for
   * chat calls the template's end-of-turn token and the tokenizer's eos_token.
   */
  stopIds(options: { chat?: boolean } = {}): StopId[] {
    this.checkLive();
    const chat = options.chat ? { endOfTurn: this.chatTurn().endOfTurn, eosToken: stringToken(this.chatTemplate!.specialTokens.eos_token) } : undefined;
    return defaultStopIds({ family: this.stops, generationConfig: this.generationConfig, tokenizer: this.tokenizer, chat });
  }

  /**
   * The template's eos_token text when the tokenizer has no id for it (a template given to a model
   * whose vocabulary lacks `<|im_end|>`): chat calls then stop at that text, as a stop string.
   * null when the stop ids cover it.
   */
  chatStopText(): string | null {
    this.checkLive();
    const eos = stringToken(this.requireChatTemplate().specialTokens.eos_token);
    if (eos === undefined || eos === '' || this.tokenizer!.tokenToId(eos) != null) return null;
    return eos;
  }

  /** The role under which the template writes an answer ('assistant'; Huginn's template: 'Huginn'), or null without a template. */
  get assistantRole(): string | null {
    return this.chatTemplate ? this.chatTurn().role : null;
  }

  /** One uncached pass over `ids` under a depth policy: last-position logits and a trace per position. */
  forward(ids: readonly number[], forwardOptions?: ForwardOptions): ForwardResult {
    this.checkLive();
    const options = checkOptions(forwardOptions, 'forward options', FORWARD_OPTIONS);
    const policy = options.policy ?? { kind: 'default' };
    this.checkPolicy(policy);
    const seed = options.seed ?? 0;
    checkSeed(seed);
    this.checkIds(ids, 'ids');
    const session0 = sessionOptions(seed, options, 'forward');
    this.adapter.checkSessionOptions(session0);
    const perToken = policy.kind === 'budget' ? policy.perToken ?? { kind: 'default' } : policy;
    const session = this.adapter.newSession(ids.length, session0);
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
  generate(promptOrIds: string | readonly number[], generateOptions?: GenerateOptions): Generation {
    this.checkLive();
    const options = checkOptions(generateOptions, 'generate options', GENERATE_OPTIONS);
    if (typeof promptOrIds !== 'string' && !Array.isArray(promptOrIds) && !ArrayBuffer.isView(promptOrIds)) {
      throw invalidArgument('generate prompt', 'a string (with a tokenizer) or an array of token ids', promptOrIds, 'e.g. model.generate([1, 2, 3], { maxNewTokens: 8 })');
    }
    if (options.addSpecialTokens !== undefined && typeof options.addSpecialTokens !== 'boolean') throw invalidArgument('generate options.addSpecialTokens', 'true or false', options.addSpecialTokens);
    const promptIds = typeof promptOrIds === 'string' ? this.encode(promptOrIds, options.addSpecialTokens ?? true) : Array.from(promptOrIds as ArrayLike<number>);
    this.checkIds(promptIds, typeof promptOrIds === 'string' ? 'prompt' : 'ids');
    return new Generation(this.prepare(promptIds, options, false), this);
  }

  /** The prompt text of a chat, exactly as transformers' apply_chat_template(tokenize=False, add_generation_prompt=True) renders it. */
  renderChat(messages: readonly ChatMessage[], chatOptions?: ChatOptions): string {
    this.checkLive();
    return renderChatPrompt(this.requireChatTemplate(), messages, checkChatOptions(chatOptions, 'renderChat options'));
  }

  /** Renders the conversation with the model's template, encodes it and streams the answer, like generate. */
  chat(messages: readonly ChatMessage[], chatOptions?: ChatOptions): Generation {
    this.checkLive();
    const options = checkChatOptions(chatOptions, 'chat options');
    const promptText = this.renderChat(messages, options);
    const promptIds = this.encode(promptText, options.addSpecialTokens ?? false);
    this.checkIds(promptIds, 'prompt');
    return new Generation({ ...this.prepare(promptIds, options, true), promptText }, this);
  }

  /** A multi-turn conversation that keeps its KV cache across turns where the family allows it (spec/api.md §Chat). */
  chatSession(sessionOptions?: ChatSessionOptions): ChatSession {
    this.checkLive();
    const options = checkOptions(sessionOptions, 'chatSession options', CHAT_SESSION_OPTIONS);
    this.requireChatTemplate();
    return new ChatSession(this, { adapter: this.adapter, prepare: (ids, o) => this.prepare(ids, o, true), checkIds: (ids) => this.checkIds(ids, 'prompt') }, options);
  }

  /**
   * Teacher-forced scoring (src/api/score.ts): every id after the first scored on the logits of the
   * call that fed the id before it, one token per call as `generate` decodes, windows of at most the
   * context. `for await (const chunk of model.score(ids))` streams each window's log-probabilities
   * and traces; `await model.score(ids).result()` gives the totals. Checked before any compute.
   */
  score(textOrIds: string | readonly number[], options: ScoreOptions = {}): Scoring {
    this.checkLive();
    if (typeof textOrIds !== 'string' && !Array.isArray(textOrIds) && !ArrayBuffer.isView(textOrIds)) throw new PonderError('ARG_INVALID', 'score needs a text or an array of token ids', { field: 'ids', hint: 'pass a string (with a tokenizer) or an array of ids' });
    const ids = typeof textOrIds === 'string' ? this.encode(textOrIds, options.addSpecialTokens ?? true) : Array.from(textOrIds);
    checkTokenIds(ids, this.vocabSize, typeof textOrIds === 'string' ? 'text' : 'ids');
    const { window, seed } = checkScoreOptions(options, ids, this.contextLength);
    const policy = options.policy ?? { kind: 'default' };
    this.checkPolicy(policy);
    const session: SessionOptions = { seed, kvStrategy: options.kvStrategy };
    this.adapter.checkSessionOptions(session);
    return new Scoring({ ids, window, policy, session, signal: options.signal ?? null, onProgress: options.onProgress ?? null, adapter: this.adapter });
  }

  private requireTokenizer(): TextTokenizer {
    if (!this.tokenizer) {
      throw new PonderError('GEN_NO_TOKENIZER', `${this.label} has no tokenizer, so text cannot be encoded or decoded`, { hint: 'pass token ids instead of text, or load a model directory with tokenizer.json (and install @huggingface/tokenizers)' });
    }
    return this.tokenizer;
  }

  private requireChatTemplate(): ChatTemplate {
    if (this.chatTemplate) { this.requireTokenizer(); return this.chatTemplate; }
    if (this.chatTemplateError) throw this.chatTemplateError;
    this.requireTokenizer();
    throw new PonderError('CHAT_TEMPLATE_MISSING', `${this.label} has no chat template: neither chat_template.jinja nor a chat_template in tokenizer_config.json`, {
      path: this.label, hint: 'this is not a chat model (the bundled demo models are not): give the prompt as plain text',
    });
  }

  /** The assistant role and end-of-turn token, found once by rendering probes. */
  private chatTurn(): { role: string; endOfTurn: { id: number; token: string } | null } {
    const template = this.requireChatTemplate();
    if (!this.chatFacts) {
      const role = assistantRole(template);
      this.chatFacts = { role, endOfTurn: endOfTurnToken(template, role, this.tokenizer!) };
    }
    return this.chatFacts;
  }

  /** Throws GEN_EMPTY / GEN_TOKEN_ID / GEN_CONTEXT for prompt ids this model cannot take. */
  private checkIds(ids: readonly number[], what: string): void {
    if (!Array.isArray(ids) && !ArrayBuffer.isView(ids)) throw new PonderError('ARG_INVALID', `${what} must be an array of token ids`, { field: what, hint: 'pass a string prompt (with a tokenizer) or an array of ids' });
    if (ids.length === 0) throw new PonderError('GEN_EMPTY', `${what} is empty: generation needs at least one prompt token`, { field: what, hint: 'pass a non-empty prompt' });
    checkTokenIds(ids, this.vocabSize, what);
    if (ids.length > this.contextLength) {
      throw new PonderError('GEN_CONTEXT', `the prompt has ${ids.length} tokens, longer than the model's context of ${this.contextLength}`, { field: what, hint: `shorten the prompt to at most ${this.contextLength - 1} tokens (one position is needed per generated token)` });
    }
  }

  /** Checks every option of a generation over checked `promptIds` (chat: the chat stop ids by default). */
  private prepare(promptIds: number[], o: GenerateOptions, chat: boolean): Prepared {
    const maxNewTokens = o.maxNewTokens ?? 32;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new PonderError('ARG_INVALID', `maxNewTokens must be an integer ≥ 0, got ${describeValue(maxNewTokens)}`, { field: 'maxNewTokens', hint: 'e.g. maxNewTokens: 32' });
    if (maxNewTokens > LIMITS.newTokens) throw new PonderError('ARG_INVALID', `maxNewTokens is ${maxNewTokens}, over ${LIMITS.newTokens} (${limitNote('newTokens')})`, { field: 'maxNewTokens', hint: `a generation ends at the model's context (${this.contextLength} positions) anyway` });
    const policy = o.policy ?? { kind: 'default' };
    this.checkPolicy(policy);
    const baseSampling: SamplingOptions = o.sampling !== undefined ? checkOptions(o.sampling, 'generate options.sampling', SAMPLING_OPTIONS)
      : this.generationConfig ? samplingFromGenerationConfig(this.generationConfig) : { temperature: 0 };
    const seed = o.seed ?? baseSampling.seed ?? 0;
    checkSeed(seed);
    const sampler = withGenerationConfigField(o.sampling === undefined && this.generationConfig !== null, () => new Sampler(this.vocabSize, { ...baseSampling, seed }));
    if (o.stopStrings !== undefined && !(Array.isArray(o.stopStrings) && o.stopStrings.every((x) => typeof x === 'string'))) throw invalidArgument('generate options.stopStrings', 'a list of strings', o.stopStrings);
    if (o.stopIds !== undefined && !(Array.isArray(o.stopIds) && o.stopIds.every((x) => Number.isSafeInteger(x) && x >= 0))) throw invalidArgument('generate options.stopIds', 'a list of token ids (integers ≥ 0)', o.stopIds);
    if (o.stopStrings && o.stopStrings.length > 0 && !this.tokenizer) this.requireTokenizer();
    const stopIds = o.stopIds ?? this.stopIds({ chat }).map((s) => s.id);
    const stopStrings = [...(o.stopStrings ?? [])];
    const eosText = chat && o.stopIds === undefined ? this.chatStopText() : null;
    if (eosText !== null && !stopStrings.includes(eosText)) stopStrings.push(eosText);
    const stop = new StopCondition({ stopIds, stopStrings });
    if (o.signal !== undefined && !(typeof o.signal === 'object' && o.signal !== null && typeof (o.signal as AbortSignal).aborted === 'boolean')) throw new PonderError('ARG_INVALID', `signal must be an AbortSignal, got ${describeValue(o.signal)}`, { field: 'signal', hint: 'pass controller.signal' });
    const session = sessionOptions(seed, o, chat ? 'chat' : 'generate');
    this.adapter.checkSessionOptions(session);
    return { promptIds, maxNewTokens, policy, sampler, stop, signal: o.signal ?? null, session, adapter: this.adapter };
  }
}

/** A chat's prompt text: the conversation with a generation prompt (or its last message left open), as Model.renderChat renders it. */
export function renderChatPrompt(template: ChatTemplate, messages: readonly ChatMessage[], options: ChatOptions = {}): string {
  return template.render(messages, {
    addGenerationPrompt: !options.continueFinalMessage, continueFinalMessage: options.continueFinalMessage,
    tools: options.tools, documents: options.documents, templateKwargs: options.templateKwargs, templateName: options.templateName,
  });
}

/** The option names each call takes: a misspelt one (maxNewToken) is ARG_INVALID, not silently ignored. */
const FORWARD_OPTIONS = ['policy', 'seed', 'kvStrategy', 'initialStates'] as const;
const GENERATE_OPTIONS = ['maxNewTokens', 'stopIds', 'stopStrings', 'seed', 'sampling', 'policy', 'signal', 'addSpecialTokens', 'kvStrategy', 'initialStates'] as const;
/** A chat call takes the generate options (Huginn's initialStates aside) and the template's. */
const CHAT_OPTIONS = [...GENERATE_OPTIONS.filter((k) => k !== 'initialStates'), 'templateKwargs', 'tools', 'documents', 'templateName', 'continueFinalMessage'] as const;
const CHAT_SESSION_OPTIONS = ['system', 'capacity'] as const;
const SAMPLING_OPTIONS = ['temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'seed'] as const;

/** An options object (undefined → {}) whose keys are all known; ARG_INVALID naming an unknown one and the known ones. */
function checkOptions<T extends object>(options: T | undefined, what: string, known: readonly string[]): T {
  const o = optionsArgument(options, what);
  for (const key of Object.keys(o)) {
    if (!known.includes(key)) throw new PonderError('ARG_INVALID', `${what} has an unknown option ${JSON.stringify(key)}`, { field: key, hint: `the options are ${known.join(', ')} (spec/api.md)` });
  }
  return o as T;
}

/** A chat call's options: known names, the template's options of the right type (the generate options are checked where generate's are). */
function checkChatOptions(options: ChatOptions | undefined, what: string): ChatOptions {
  const o = checkOptions(options, what, CHAT_OPTIONS);
  if (o.templateKwargs !== undefined && (o.templateKwargs === null || typeof o.templateKwargs !== 'object' || Array.isArray(o.templateKwargs))) throw invalidArgument(`${what}.templateKwargs`, 'an object of template variables', o.templateKwargs, 'e.g. { templateKwargs: { enable_thinking: true } }');
  for (const key of ['tools', 'documents'] as const) {
    if (o[key] !== undefined && !Array.isArray(o[key])) throw invalidArgument(`${what}.${key}`, 'a list', o[key]);
  }
  if (o.templateName !== undefined && typeof o.templateName !== 'string') throw invalidArgument(`${what}.templateName`, 'a template name (a string)', o.templateName);
  if (o.continueFinalMessage !== undefined && typeof o.continueFinalMessage !== 'boolean') throw invalidArgument(`${what}.continueFinalMessage`, 'true or false', o.continueFinalMessage);
  if (o.addSpecialTokens !== undefined && typeof o.addSpecialTokens !== 'boolean') throw invalidArgument(`${what}.addSpecialTokens`, 'true or false', o.addSpecialTokens);
  return o;
}

/** The session options of a call, their types checked (what each family accepts is its adapter's to check). */
function sessionOptions(seed: number, o: { kvStrategy?: unknown; initialStates?: unknown; addSpecialTokens?: unknown; signal?: unknown }, call: string): SessionOptions {
  if (o.kvStrategy !== undefined && typeof o.kvStrategy !== 'string') throw invalidArgument(`${call} options.kvStrategy`, 'a strategy name (a string)', o.kvStrategy);
  if (o.initialStates !== undefined && !(o.initialStates instanceof Float32Array)) throw invalidArgument(`${call} options.initialStates`, 'a Float32Array', o.initialStates);
  if (o.addSpecialTokens !== undefined && typeof o.addSpecialTokens !== 'boolean') throw invalidArgument(`${call} options.addSpecialTokens`, 'true or false', o.addSpecialTokens);
  return { seed, kvStrategy: o.kvStrategy as string | undefined, initialStates: o.initialStates as Float32Array | undefined };
}

/** generation_config.json's name of each sampling option. */
const GENERATION_CONFIG_KEYS: Readonly<Record<string, string>> = { temperature: 'temperature', topK: 'top_k', topP: 'top_p', minP: 'min_p', repetitionPenalty: 'repetition_penalty' };

/** Runs `make`; when the sampling options came from generation_config.json, a value out of range there is CFG_FIELD naming the file's field (not ARG_INVALID naming an option the caller never gave). */
function withGenerationConfigField<T>(fromConfig: boolean, make: () => T): T {
  try {
    return make();
  } catch (e) {
    const key = e instanceof PonderError && e.field !== undefined ? GENERATION_CONFIG_KEYS[e.field] : undefined;
    if (!fromConfig || !(e instanceof PonderError) || e.code !== 'ARG_INVALID' || key === undefined) throw e;
    throw new PonderError('CFG_FIELD', `generation_config.json: "${key}" cannot be used: ${e.message}`, { path: 'generation_config.json', field: key, hint: `fix "${key}" in generation_config.json, or pass sampling options explicitly` });
  }
}

function stringToken(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** What a ChatSession needs of its model beyond the public API (Model.chatSession hands it over). */
interface ModelInternals {
  adapter: FamilyAdapter;
  prepare(promptIds: number[], options: GenerateOptions): Prepared;
  checkIds(promptIds: number[]): void;
}

/** What a chat session's KV cache holds: the ids fed, and their text (the prompt, then the generated tokens decoded with their special tokens). */
interface CacheState {
  session: FamilySession;
  ids: number[];
  /** null: the buffers may be reused, but they hold nothing a turn can continue */
  text: string | null;
}

/**
 * A conversation: `send(content)` adds a user message and streams the answer, which joins the
 * history when the generation ends; `chat(messages)` answers a whole conversation at once. A turn
 * whose rendered prompt extends the text the cache holds feeds only the rest (spec/api.md §Chat).
 */
export class ChatSession {
  private history: ChatMessage[];
  private cache: CacheState | null = null;
  private running = false;
  /** bumped whenever a turn starts, so a turn prepared before another ran refuses to start on a cache it did not see */
  private version = 0;

  constructor(private readonly model: Model, private readonly internals: ModelInternals, private readonly options: ChatSessionOptions) {
    if (options.capacity !== undefined && (!Number.isInteger(options.capacity) || options.capacity < 1)) {
      throw new PonderError('ARG_INVALID', `capacity must be a positive integer, got ${describeValue(options.capacity)}`, { field: 'capacity', hint: `at most the model's context of ${model.contextLength}` });
    }
    if (options.system !== undefined && typeof options.system !== 'string') throw new PonderError('ARG_INVALID', `system must be a string, got ${describeValue(options.system)}`, { field: 'system', hint: 'e.g. { system: "Be brief." }' });
    this.history = this.initialHistory();
  }

  /** The conversation so far (a copy). */
  get messages(): ChatMessage[] {
    return structuredClone(this.history);
  }

  /** Tokens the session's KV cache holds (0 before the first turn). */
  get cachedTokens(): number {
    return this.cache && this.cache.text !== null ? this.cache.ids.length : 0;
  }

  /** Starts over with `messages` (default: only the system message). The next turn reuses the cache only if its prompt still extends it. */
  reset(messages?: readonly ChatMessage[]): void {
    this.refuseWhileRunning();
    this.history = messages === undefined ? this.initialHistory() : structuredClone([...messages]);
  }

  /**
   * Gives the session's KV cache back to the model, whose later sessions and generations reuse it
   * (WASM memory is never freed: a server holding many conversations closes the finished ones).
   * The history stays; a later turn prefills the whole conversation again.
   */
  close(): void {
    this.refuseWhileRunning();
    if (this.cache) this.internals.adapter.endSession(this.cache.session);
    this.cache = null;
  }

  /** Adds `{ role: 'user', content }` (or the message given) and streams the answer. */
  send(content: string | ChatMessage, options?: ChatOptions): Generation {
    if (typeof content !== 'string' && (content === null || typeof content !== 'object' || Array.isArray(content))) throw invalidArgument('chat session send', 'the user message text, or a message object { role, content }', content, 'e.g. session.send("Hello")');
    const message: ChatMessage = typeof content === 'string' ? { role: 'user', content } : content;
    return this.chat([...this.history, message], options);
  }

  /** Answers the conversation `messages`; when the generation ends they, with the answer, become the history. */
  chat(messages: readonly ChatMessage[], chatOptions?: ChatOptions): Generation {
    this.refuseWhileRunning();
    const options = checkChatOptions(chatOptions, 'chat options');
    const model = this.model;
    if (!Array.isArray(messages)) model.renderChat(messages, options); // the template's CHAT_MESSAGES for what is not a list, before it is copied
    const conversation = structuredClone([...messages]);
    const promptText = model.renderChat(conversation, options);
    const addSpecial = options.addSpecialTokens ?? false;
    const { adapter } = this.internals;
    const prepared = this.internals.prepare([], options); // every option checked before any encode or compute
    const control = { policy: perTokenPolicy(prepared.policy), budgeted: prepared.policy.kind === 'budget' };
    const cache = this.cache;
    const maxNew = prepared.maxNewTokens;

    let promptIds: number[] | null = null;
    let cached = 0;
    if (cache && cache.text !== null && !addSpecial && promptText.startsWith(cache.text) && promptText.length > cache.text.length
      && adapter.continues(cache.session, control, prepared.session)) {
      const rest = model.encode(promptText.slice(cache.text.length), false);
      const ids = [...cache.ids, ...rest];
      if (rest.length > 0 && cache.session.capacity >= Math.min(model.contextLength, ids.length + maxNew)) { promptIds = ids; cached = cache.ids.length; }
    }
    promptIds ??= model.encode(promptText, addSpecial);
    this.internals.checkIds(promptIds);
    const version = this.version;

    const start = (need: number): SessionStart => {
      if (this.running || this.version !== version) {
        throw new PonderError('CHAT_SESSION_BUSY', 'another turn of this chat session ran after this one was prepared', { hint: 'run one turn of a session at a time: await each generation before sending the next message' });
      }
      this.running = true;
      this.version++;
      if (cached > 0) return { session: cache!.session, cached };
      // a full prefill: the old cache goes back to the model's pool, which hands the same buffers out again when they are large enough
      const had = cache?.session.capacity ?? 0;
      if (cache) adapter.endSession(cache.session);
      const session = adapter.newSession(had >= need ? had : this.capacityFor(need, had), prepared.session);
      this.cache = { session, ids: [], text: null };
      return { session, cached: 0 };
    };
    const onEnd = (result: GenerationResult | null, session: FamilySession | null): void => {
      this.running = false;
      if (session === null) return; // ended before it started: nothing changed
      if (result === null) { this.cache = { session, ids: [], text: null }; return; } // failed part-way: keep only the buffers
      const generatedText = result.generatedIds.length > 0 ? model.decode(result.generatedIds) : '';
      this.cache = { session, ids: result.ids, text: promptText + generatedText };
      if (result.generatedIds.length === 0 && result.finishReason === 'aborted') return; // cancelled before a word: the turn is dropped
      this.history = options.continueFinalMessage ? continued(conversation, result.text) : [...conversation, { role: model.assistantRole!, content: result.text }];
    };
    return new Generation({ ...prepared, promptIds, promptText, start, onEnd }, model);
  }

  private initialHistory(): ChatMessage[] {
    return this.options.system === undefined ? [] : [{ role: 'system', content: this.options.system }];
  }

  private refuseWhileRunning(): void {
    if (this.running) throw new PonderError('CHAT_SESSION_BUSY', 'this chat session is still generating an answer', { hint: 'await the current generation (or abort it) before sending the next message' });
  }

  /** Positions to allocate: `capacity` when given, else room for this turn and about as much again, at most the context. */
  private capacityFor(need: number, had: number): number {
    const context = this.model.contextLength;
    if (this.options.capacity !== undefined && this.options.capacity >= need) return Math.min(context, this.options.capacity);
    return Math.min(context, Math.max(need * 2, had * 2));
  }
}

function perTokenPolicy(policy: DepthPolicy): DepthPolicy {
  return policy.kind === 'budget' ? policy.perToken ?? { kind: 'default' } : policy;
}

/** The conversation with `text` appended to its last message (continueFinalMessage). */
function continued(conversation: ChatMessage[], text: string): ChatMessage[] {
  const out = structuredClone(conversation);
  const last = out[out.length - 1];
  if (typeof last.content === 'string') last.content += text;
  else if (Array.isArray(last.content)) {
    const block = [...last.content].reverse().find((b) => typeof b === 'object' && b !== null && typeof (b as { text?: unknown }).text === 'string') as { text: string } | undefined;
    if (block) block.text += text;
  }
  return out;
}
