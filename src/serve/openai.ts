/**
 * The OpenAI wire format of `ponder serve` (spec/serve.md): request bodies of /v1/completions and
 * /v1/chat/completions read into generation options — every field either honoured, accepted as a
 * no-op (documented), or refused with a 400 naming it; never silently misread — and the response,
 * chunk and error objects written back, with the `depth` extension built from token traces.
 */
import { PonderError } from '../errors.js';
import { parsePolicy, type DepthPolicy } from '../depth/policy.js';
import type { SamplingOptions } from '../generate/sampling.js';
import type { FinishReason } from '../api/model.js';
import type { ExitReason, TokenTrace } from '../trace/trace.js';
import type { ChatMessage } from '../chat/template.js';

/** An HTTP error in OpenAI's shape: `{ error: { message, type, param, code } }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 invalid_request_error naming the field. */
export function badRequest(param: string | null, message: string, code: string): HttpError {
  return new HttpError(400, message, 'invalid_request_error', param, code);
}

export type Endpoint = 'completion' | 'chat';

/** A request body, read and checked; model-dependent checks (policy support, context, ids) come when the generation is prepared. */
export interface ParsedRequest {
  endpoint: Endpoint;
  model: string;
  /** /v1/completions: text or token ids */
  prompt?: string | number[];
  /** /v1/chat/completions */
  messages?: ChatMessage[];
  /** chat_template_kwargs (extension, as vLLM) */
  templateKwargs?: Record<string, unknown>;
  /** null: completions 16 (OpenAI's default), chat: until the context is full or a stop */
  maxTokens: number | null;
  /** undefined: the model's defaults (generation_config.json, else greedy), as `ponder run` */
  sampling?: SamplingOptions;
  seed?: number;
  stop: string[];
  policy?: DepthPolicy;
  stream: boolean;
  includeUsage: boolean;
  /** completions: the prompt text goes before the completion */
  echo: boolean;
}

// ---------------------------------------------------------------------------------------------
// Field readers: each names the field in its error

type Body = Record<string, unknown>;

function typeError(param: string, expected: string, value: unknown): HttpError {
  const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
  return badRequest(param, `${param} must be ${expected}, got ${got === 'string' ? JSON.stringify(value) : got}`, 'invalid_type');
}

function optional<T>(body: Body, key: string, read: (value: unknown, param: string) => T): T | undefined {
  const value = body[key];
  return value === undefined || value === null ? undefined : read(value, key);
}

function str(value: unknown, param: string): string {
  if (typeof value !== 'string') throw typeError(param, 'a string', value);
  return value;
}

function bool(value: unknown, param: string): boolean {
  if (typeof value !== 'boolean') throw typeError(param, 'a boolean', value);
  return value;
}

function num(value: unknown, param: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw typeError(param, 'a number', value);
  return value;
}

function int(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: unknown, param: string): number => {
    if (typeof value !== 'number' || !Number.isInteger(value)) throw typeError(param, 'an integer', value);
    if (value < min || value > max) throw badRequest(param, `${param} must be in [${min}, ${max}], got ${value}`, 'invalid_value');
    return value;
  };
}

function object(value: unknown, param: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw typeError(param, 'an object', value);
  return value as Record<string, unknown>;
}

function unsupported(param: string, message: string): HttpError {
  return badRequest(param, `${param}: ${message}`, 'unsupported_value');
}

/** Fields that only identify the caller or configure features ponder has no use for: accepted and ignored when they ask for nothing. */
function refuseUnless(body: Body, key: string, harmless: (value: unknown) => boolean, why: string): void {
  const value = body[key];
  if (value === undefined || value === null || harmless(value)) return;
  throw unsupported(key, why);
}

const COMMON_FIELDS = ['model', 'max_tokens', 'temperature', 'top_p', 'seed', 'stop', 'n', 'stream', 'stream_options', 'user',
  'frequency_penalty', 'presence_penalty', 'logit_bias', 'logprobs', 'policy', 'top_k', 'min_p', 'repetition_penalty'];
const COMPLETION_FIELDS = new Set([...COMMON_FIELDS, 'prompt', 'echo', 'suffix', 'best_of']);
const CHAT_FIELDS = new Set([...COMMON_FIELDS, 'messages', 'max_completion_tokens', 'top_logprobs', 'tools', 'tool_choice',
  'parallel_tool_calls', 'response_format', 'chat_template_kwargs', 'store', 'metadata', 'service_tier', 'modalities',
  'reasoning_effort', 'audio', 'prediction', 'web_search_options', 'functions', 'function_call', 'verbosity',
  'prompt_cache_key', 'safety_identifier']);

const MAX_STOP_STRINGS = 16;
const MESSAGE_ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);
const MESSAGE_FIELDS = new Set(['role', 'content', 'name', 'tool_calls', 'tool_call_id']);

/** Reads a request body (already a JSON object) of one endpoint. */
export function parseRequest(endpoint: Endpoint, value: unknown): ParsedRequest {
  const body = object(value, 'body');
  const known = endpoint === 'chat' ? CHAT_FIELDS : COMPLETION_FIELDS;
  for (const key of Object.keys(body)) {
    if (!known.has(key)) throw badRequest(key, `Unrecognized request argument supplied: ${key}`, 'unknown_parameter');
  }
  if (body.model === undefined || body.model === null) throw badRequest('model', 'model is required (GET /v1/models lists the one this server runs)', 'missing_required_parameter');
  const model = str(body.model, 'model');

  // accepted when they ask for nothing ponder does not do
  refuseUnless(body, 'n', (v) => v === 1, 'only n = 1 is supported (one choice per request); send n requests instead');
  refuseUnless(body, 'frequency_penalty', (v) => v === 0, 'not supported; ponder has repetition_penalty (a CTRL-style multiplicative penalty, spec/sampling.md)');
  refuseUnless(body, 'presence_penalty', (v) => v === 0, 'not supported; ponder has repetition_penalty (a CTRL-style multiplicative penalty, spec/sampling.md)');
  refuseUnless(body, 'logit_bias', (v) => typeof v === 'object' && v !== null && Object.keys(v).length === 0, 'not supported');
  // chat: a boolean; completions: how many alternatives per token (0 still returns the sampled token's)
  refuseUnless(body, 'logprobs', (v) => v === false && endpoint === 'chat', 'log probabilities are not returned; the depth extension reports per-token depth instead');
  optional(body, 'user', str);

  let maxTokens = optional(body, 'max_tokens', int(0)) ?? null;
  let prompt: string | number[] | undefined;
  let messages: ChatMessage[] | undefined;
  let templateKwargs: Record<string, unknown> | undefined;
  let echo = false;
  if (endpoint === 'completion') {
    prompt = readPrompt(body.prompt);
    echo = optional(body, 'echo', bool) ?? false;
    refuseUnless(body, 'suffix', (v) => v === '', 'insertion (a suffix after the completion) is not supported');
    refuseUnless(body, 'best_of', (v) => v === 1, 'only best_of = 1 is supported');
  } else {
    messages = readMessages(body.messages);
    const maxCompletion = optional(body, 'max_completion_tokens', int(0));
    if (maxCompletion !== undefined) {
      if (maxTokens !== null && maxTokens !== maxCompletion) throw badRequest('max_completion_tokens', `max_tokens (${maxTokens}) and max_completion_tokens (${maxCompletion}) disagree`, 'invalid_value');
      maxTokens = maxCompletion;
    }
    templateKwargs = optional(body, 'chat_template_kwargs', object);
    refuseUnless(body, 'top_logprobs', (v) => v === 0, 'log probabilities are not returned');
    refuseUnless(body, 'tools', (v) => Array.isArray(v) && v.length === 0, 'tool calling is not supported');
    refuseUnless(body, 'functions', (v) => Array.isArray(v) && v.length === 0, 'function calling is not supported');
    refuseUnless(body, 'tool_choice', (v) => v === 'none' || v === 'auto', 'tool calling is not supported');
    refuseUnless(body, 'function_call', (v) => v === 'none' || v === 'auto', 'function calling is not supported');
    optional(body, 'parallel_tool_calls', bool);
    refuseUnless(body, 'response_format', (v) => typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'text', 'only {"type": "text"} is supported (no JSON mode or schemas)');
    refuseUnless(body, 'store', (v) => v === false, 'completions are never stored');
    optional(body, 'metadata', object);
    refuseUnless(body, 'service_tier', (v) => v === 'auto' || v === 'default', 'there is one tier');
    refuseUnless(body, 'modalities', (v) => Array.isArray(v) && v.length === 1 && v[0] === 'text', 'only ["text"] output is supported');
    for (const key of ['reasoning_effort', 'audio', 'prediction', 'web_search_options', 'verbosity']) refuseUnless(body, key, () => false, 'not supported');
    optional(body, 'prompt_cache_key', str);
    optional(body, 'safety_identifier', str);
  }

  const stream = optional(body, 'stream', bool) ?? false;
  let includeUsage = false;
  const streamOptions = optional(body, 'stream_options', object);
  if (streamOptions) {
    if (!stream) throw badRequest('stream_options', 'stream_options is only allowed when stream is true', 'invalid_value');
    for (const key of Object.keys(streamOptions)) {
      if (key !== 'include_usage' && key !== 'include_obfuscation') throw badRequest(`stream_options.${key}`, `Unrecognized stream option: ${key}`, 'unknown_parameter');
    }
    includeUsage = optional(streamOptions, 'include_usage', (v) => bool(v, 'stream_options.include_usage')) ?? false;
    optional(streamOptions, 'include_obfuscation', (v) => bool(v, 'stream_options.include_obfuscation'));
  }

  return {
    endpoint, model, prompt, messages, templateKwargs, maxTokens,
    sampling: readSampling(body),
    seed: optional(body, 'seed', int(0, 0xffffffff)),
    stop: readStop(body.stop),
    policy: optional(body, 'policy', (v, param) => {
      try {
        return parsePolicy(str(v, param));
      } catch (e) {
        if (e instanceof PonderError) throw badRequest('policy', `${e.message}${e.hint ? ` (${e.hint})` : ''}`, e.code);
        throw e;
      }
    }),
    stream, includeUsage, echo,
  };
}

/** temperature, top_p and the extensions top_k, min_p, repetition_penalty; none given → the model's defaults. A filter without temperature samples at temperature 1 (OpenAI's default), as `ponder run` does. */
function readSampling(body: Body): SamplingOptions | undefined {
  const sampling: SamplingOptions = {};
  const temperature = optional(body, 'temperature', num);
  const topP = optional(body, 'top_p', num);
  const topK = optional(body, 'top_k', int(1));
  const minP = optional(body, 'min_p', num);
  const repetitionPenalty = optional(body, 'repetition_penalty', num);
  if (temperature !== undefined) sampling.temperature = temperature;
  if (topP !== undefined) sampling.topP = topP;
  if (topK !== undefined) sampling.topK = topK;
  if (minP !== undefined) sampling.minP = minP;
  if (repetitionPenalty !== undefined) sampling.repetitionPenalty = repetitionPenalty;
  if (Object.keys(sampling).length === 0) return undefined;
  sampling.temperature ??= 1;
  return sampling;
}

function readStop(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) throw typeError('stop', 'a string or an array of strings', value);
  if (list.length > MAX_STOP_STRINGS) throw badRequest('stop', `stop takes at most ${MAX_STOP_STRINGS} strings, got ${list.length}`, 'invalid_value');
  if (list.some((s) => s === '')) throw badRequest('stop', 'a stop string may not be empty', 'invalid_value');
  return list as string[];
}

/** A string, token ids, or a list holding exactly one of them (one choice per request). */
function readPrompt(value: unknown): string | number[] {
  if (value === undefined || value === null) throw badRequest('prompt', 'prompt is required', 'missing_required_parameter');
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) throw typeError('prompt', 'a string, an array of token ids, or an array holding one of them', value);
  if (value.length > 0 && value.every((x) => typeof x === 'number')) {
    if (!value.every((x) => Number.isInteger(x) && x >= 0)) throw badRequest('prompt', 'token ids must be integers ≥ 0', 'invalid_value');
    return value as number[];
  }
  if (value.length !== 1) throw unsupported('prompt', `one prompt per request, got a list of ${value.length}`);
  const [only] = value;
  if (typeof only === 'string') return only;
  if (Array.isArray(only)) return readPrompt(only) as number[];
  throw typeError('prompt[0]', 'a string or an array of token ids', only);
}

function readMessages(value: unknown): ChatMessage[] {
  if (value === undefined || value === null) throw badRequest('messages', 'messages is required', 'missing_required_parameter');
  if (!Array.isArray(value)) throw typeError('messages', 'an array', value);
  if (value.length === 0) throw badRequest('messages', 'messages must hold at least one message', 'invalid_value');
  return value.map((m, i) => {
    const param = `messages[${i}]`;
    const message = object(m, param);
    for (const key of Object.keys(message)) if (!MESSAGE_FIELDS.has(key)) throw badRequest(`${param}.${key}`, `Unrecognized message field: ${key}`, 'unknown_parameter');
    const role = str(message.role, `${param}.role`);
    if (!MESSAGE_ROLES.has(role)) throw badRequest(`${param}.role`, `role must be one of ${[...MESSAGE_ROLES].join(', ')}, got ${JSON.stringify(role)}`, 'invalid_value');
    const out: ChatMessage = { ...message, role, content: readContent(message.content, `${param}.content`) };
    if (out.content === undefined) delete out.content;
    return out;
  });
}

/** A string, or content parts of type text (joined with "\n", as vLLM does, so string-only templates work); other part types are refused. */
function readContent(value: unknown, param: string): string | null | undefined {
  if (value === undefined || value === null || typeof value === 'string') return value;
  if (!Array.isArray(value)) throw typeError(param, 'a string or an array of content parts', value);
  return value.map((part, j) => {
    const p = object(part, `${param}[${j}]`);
    if (p.type !== 'text') throw unsupported(`${param}[${j}].type`, `only text content parts are supported, got ${JSON.stringify(p.type)}`);
    return str(p.text, `${param}[${j}].text`);
  }).join('\n');
}

/**
 * Whether a library error is a fault of the served model, not of the request: a NaN/Inf inside the
 * model (its weights, or values that overflow float32) is a 500 server_error carrying the code, with
 * `x-should-retry: false` (OpenAI's clients retry a 500 otherwise, and the same request fails the
 * same way). A non-finite value the request's own repetition_penalty made (field repetitionPenalty,
 * spec/sampling.md) stays the request's: a 400.
 */
export function isServerFault(e: PonderError): boolean {
  return e.code === 'NUM_NONFINITE' && e.field !== 'repetitionPenalty';
}

/** A library error as its HTTP error: the served model's fault a 500, anything else a 400 naming `param`, with `code` (default: the library's). */
export function httpErrorFrom(e: PonderError, param: string | null = null, code: string = e.code): HttpError {
  const message = `${e.message}${e.hint ? ` (${e.hint})` : ''}`;
  if (isServerFault(e)) return new HttpError(500, message, 'server_error', null, e.code, { 'x-should-retry': 'false' });
  return badRequest(param, message, code);
}

/** A PonderError raised while preparing a generation, as the 400 naming the request field it came from (or the served model's fault, a 500). */
export function requestErrorFrom(e: PonderError, endpoint: Endpoint): HttpError {
  const input = endpoint === 'chat' ? 'messages' : 'prompt';
  const fields: Record<string, string> = {
    temperature: 'temperature', topP: 'top_p', topK: 'top_k', minP: 'min_p', repetitionPenalty: 'repetition_penalty',
    seed: 'seed', maxNewTokens: 'max_tokens', stopStrings: 'stop', prompt: input, ids: input,
  };
  const param = e.code === 'ARG_POLICY' ? 'policy'
    : e.code.startsWith('GEN_') || e.code.startsWith('CHAT_') ? input
      : e.field !== undefined ? fields[e.field] ?? e.field : null;
  return httpErrorFrom(e, param, e.code === 'GEN_CONTEXT' ? 'context_length_exceeded' : e.code);
}

// ---------------------------------------------------------------------------------------------
// Responses

/** The depth extension: how deep each generated token went (spec/serve.md). */
export interface DepthInfo {
  policy: string;
  /** steps (Huginn recurrences, Ouro loops, MoR recursions) per token, in order */
  steps: number[];
  /** the most each token could have used */
  max_steps: number[];
  exit_reasons: ExitReason[];
  /** mean of steps (0 without tokens) */
  mean_depth: number;
  /** 1 − Σ steps / Σ max_steps (0 without tokens): the fraction of recurrent steps skipped */
  compute_saved: number;
}

export function depthInfo(policy: string, tokens: readonly TokenTrace[]): DepthInfo {
  let used = 0, full = 0;
  for (const t of tokens) { used += t.steps; full += t.maxSteps; }
  return {
    policy,
    steps: tokens.map((t) => t.steps),
    max_steps: tokens.map((t) => t.maxSteps),
    exit_reasons: tokens.map((t) => t.exitReason),
    mean_depth: tokens.length > 0 ? used / tokens.length : 0,
    compute_saved: full > 0 ? 1 - used / full : 0,
  };
}

export type OpenAIFinishReason = 'stop' | 'length';

/** `stop` for a stop id or string, `length` for max_tokens or a full context. */
export function finishReasonOf(reason: FinishReason): OpenAIFinishReason {
  return reason === 'stop_id' || reason === 'stop_string' ? 'stop' : 'length';
}

export interface Usage { prompt_tokens: number; completion_tokens: number; total_tokens: number }

export function usage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

/** What every response object of one request shares. */
export interface ResponseHead { id: string; created: number; model: string }

export function completionObject(head: ResponseHead, text: string, finish: OpenAIFinishReason, depth: DepthInfo, u: Usage): object {
  return { ...head, object: 'text_completion', system_fingerprint: null, choices: [{ index: 0, text, logprobs: null, finish_reason: finish, depth }], usage: u };
}

export function chatObject(head: ResponseHead, text: string, finish: OpenAIFinishReason, depth: DepthInfo, u: Usage): object {
  return {
    ...head, object: 'chat.completion', system_fingerprint: null,
    choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: finish, depth }],
    usage: u,
  };
}

/** One streamed chunk: some text (and the depth of the tokens it carries), or the finish (with the whole choice's depth). */
export function chunkObject(endpoint: Endpoint, head: ResponseHead, piece: { text?: string; role?: boolean; finish?: OpenAIFinishReason; depth?: DepthInfo }, includeUsage: boolean): object {
  const choice: Record<string, unknown> = endpoint === 'chat'
    ? { index: 0, delta: piece.finish ? {} : { ...(piece.role ? { role: 'assistant' } : {}), content: piece.text ?? '' }, logprobs: null, finish_reason: piece.finish ?? null }
    : { index: 0, text: piece.text ?? '', logprobs: null, finish_reason: piece.finish ?? null };
  if (piece.depth) choice.depth = piece.depth;
  const out: Record<string, unknown> = { ...head, object: endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion', system_fingerprint: null, choices: [choice] };
  if (includeUsage) out.usage = null;
  return out;
}

/** The last chunk when stream_options.include_usage is set: no choices, the usage. */
export function usageChunk(endpoint: Endpoint, head: ResponseHead, u: Usage): object {
  return { ...head, object: endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion', system_fingerprint: null, choices: [], usage: u };
}
