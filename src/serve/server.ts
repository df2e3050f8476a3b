/**
 * `ponder serve`'s core: an OpenAI-compatible HTTP API over one model, written against the WHATWG
 * Request / Response / ReadableStream types only, so the same `handle` runs under node:http (the
 * thin adapter in src/node/serve.ts), Deno.serve and Bun.serve. spec/serve.md is normative.
 *
 * One generation runs at a time; the others wait their turn in a bounded FIFO line (TurnQueue). A
 * request's generation stops when its client goes away (the request's AbortSignal) or its time
 * limit passes, and its turn passes on at once. `drain` stops taking requests and resolves when
 * the ones in flight are done (SIGTERM).
 */
import { PonderError } from '../errors.js';
import type { ChatOptions, Generation, GenerateOptions, Model } from '../api/model.js';
import type { LoadProgress } from '../api/load.js';
import { describePolicy } from '../depth/policy.js';
import type { TokenTrace } from '../trace/trace.js';
import { TurnQueue, type Release } from './queue.js';
import {
  HttpError, badRequest, chatObject, chunkObject, completionObject, depthInfo, finishReasonOf, httpErrorFrom, isServerFault, parseRequest, requestErrorFrom,
  usage, usageChunk, type Endpoint, type ParsedRequest, type ResponseHead,
} from './openai.js';

export interface ServeOptions {
  /** The model, or a function that loads it (meanwhile /health says "loading" and the API answers 503). */
  model: Model | ((onProgress: (progress: LoadProgress) => void) => Promise<Model>);
  /** The name clients pass as `model` and /v1/models lists. Default: the last part of the model's label (its directory name). */
  id?: string;
  /** When set, every /v1 request needs `Authorization: Bearer <apiKey>` (401 otherwise); /health stays open. */
  apiKey?: string;
  /** Requests that may wait behind the running generation; one more is answered 429. Default 16. */
  maxQueue?: number;
  /** Time limit of one request, from its arrival to its last byte, in ms. Default 600000 (10 min). */
  timeoutMs?: number;
  /** Largest request body in bytes (413 above). Default 1 MiB. */
  maxBodyBytes?: number;
  /** One line per event (load progress, each request); default none. */
  log?: (line: string) => void;
}

export type ServerState = 'loading' | 'ready' | 'failed' | 'draining';

export interface PonderServer {
  /** Answers one HTTP request. Never rejects: every failure is an HTTP error response. */
  handle(request: Request): Promise<Response>;
  /** Resolves with the model once loaded; rejects if loading failed. */
  readonly ready: Promise<Model>;
  readonly state: ServerState;
  /** Stops taking requests (503) and resolves when every request in flight has finished. */
  drain(): Promise<void>;
}

const DEFAULTS = { maxQueue: 16, timeoutMs: 600_000, maxBodyBytes: 1 << 20 };
/** OpenAI's default max_tokens for /v1/completions. */
const COMPLETION_MAX_TOKENS = 16;
/** Why a request's generation was stopped (the reason of its AbortSignal). */
const CLIENT_GONE = 'client disconnected';
const TIME_LIMIT = 'time limit';

export function createServer(options: ServeOptions): PonderServer {
  return new Server(options);
}

class Server implements PonderServer {
  readonly ready: Promise<Model>;
  state: ServerState = 'loading';
  private model: Model | null = null;
  private id: string | undefined;
  private loadError = '';
  private progress: LoadProgress = { bytesDone: 0, bytesTotal: 0 };
  private readonly queue: TurnQueue;
  private readonly timeoutMs: number;
  private readonly maxBodyBytes: number;
  private readonly apiKey: Uint8Array | null;
  private readonly log: (line: string) => void;
  private inFlight = 0;
  private drained: (() => void)[] = [];

  constructor(options: ServeOptions) {
    this.queue = new TurnQueue(positiveInt(options.maxQueue ?? DEFAULTS.maxQueue, 'maxQueue', 0));
    this.timeoutMs = positiveInt(options.timeoutMs ?? DEFAULTS.timeoutMs, 'timeoutMs', 1);
    this.maxBodyBytes = positiveInt(options.maxBodyBytes ?? DEFAULTS.maxBodyBytes, 'maxBodyBytes', 1);
    if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey === '')) {
      throw new PonderError('ARG_INVALID', 'apiKey must be a non-empty string', { field: 'apiKey', hint: 'leave it unset for a server without a key' });
    }
    this.apiKey = options.apiKey === undefined ? null : new TextEncoder().encode(options.apiKey);
    this.id = options.id;
    this.log = options.log ?? (() => {});
    const source = options.model;
    if (typeof source !== 'function') {
      this.ready = Promise.resolve(this.serveModel(source)); // ready at once: a model given is served synchronously
    } else {
      this.ready = source((p) => this.onProgress(p)).then((model) => this.serveModel(model), (e: unknown) => {
        this.state = 'failed';
        this.loadError = (e as Error).message ?? String(e);
        throw e;
      });
    }
    this.ready.catch(() => {}); // the owner awaits it; an unobserved rejection must not end the process
  }

  private serveModel(model: Model): Model {
    if (!model.tokenizer) {
      throw new PonderError('GEN_NO_TOKENIZER', `${model.label} has no tokenizer, so the server could neither read text prompts nor return text`, { hint: 'serve a model directory with tokenizer.json (and install @huggingface/tokenizers)' });
    }
    this.model = model;
    this.id ??= model.label.split(/[\\/]/).filter(Boolean).pop() ?? 'ponder';
    if (this.state === 'loading') this.state = 'ready';
    this.log(`ready: ${this.id} (${model.family}, context ${model.contextLength} tokens, default depth ${model.defaultDepth}${model.chatTemplate ? '' : ', no chat template'})`);
    return model;
  }

  private onProgress(p: LoadProgress): void {
    const step = (x: LoadProgress): number => (x.bytesTotal > 0 ? Math.floor((10 * x.bytesDone) / x.bytesTotal) : 0);
    if (step(p) > step(this.progress) || (p.bytesDone === p.bytesTotal && this.progress.bytesDone !== p.bytesDone)) {
      this.log(`loading: ${p.bytesTotal > 0 ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 100}% (${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)})`);
    }
    this.progress = p;
  }

  drain(): Promise<void> {
    if (this.state !== 'failed') this.state = 'draining';
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  async handle(request: Request): Promise<Response> {
    const started = globalThis.performance.now();
    const path = new URL(request.url).pathname;
    let response: Response;
    let note = '';
    try {
      const route = ROUTES[path] ?? (path.startsWith('/v1/models/') ? ROUTES['/v1/models/{id}'] : undefined);
      if (!route) throw new HttpError(404, `Invalid URL (${request.method} ${path})`, 'invalid_request_error', null, 'not_found');
      if (request.method !== route.method) {
        throw new HttpError(405, `${path} takes ${route.method}, not ${request.method}`, 'invalid_request_error', null, 'method_not_allowed', { allow: route.method });
      }
      if (route.kind !== 'health') this.checkKey(request);
      switch (route.kind) {
        case 'health': response = this.health(); break;
        case 'models': response = json(200, { object: 'list', data: [this.modelObject()] }); break;
        case 'model': {
          const id = decodeURIComponent(path.slice('/v1/models/'.length));
          this.readyModel();
          if (id !== this.id) throw modelNotFound(id, this.id);
          response = json(200, this.modelObject());
          break;
        }
        default: return await this.generate(request, route.kind, started);
      }
    } catch (e) {
      response = this.errorResponse(e);
      if (response.status >= 500) note = ` ${(e as Error).message}`;
    }
    this.log(`${request.method} ${path} ${response.status} ${Math.round(globalThis.performance.now() - started)} ms${note}`);
    return response;
  }

  // ------------------------------------------------------------------------------------------
  // Generation endpoints

  private async generate(request: Request, endpoint: Endpoint, started: number): Promise<Response> {
    // one controller per request: its client going away or its time limit stops the generation
    const controller = new AbortController();
    const clientGone = (): void => controller.abort(CLIENT_GONE);
    const timer = setTimeout(() => controller.abort(TIME_LIMIT), this.timeoutMs);
    request.signal.addEventListener('abort', clientGone, { once: true });
    if (request.signal.aborted) clientGone();
    this.inFlight++;
    let ended = false;
    const end = (status: number, detail: string): void => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      request.signal.removeEventListener('abort', clientGone);
      const path = endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions';
      this.log(`POST ${path} ${status} ${Math.round(globalThis.performance.now() - started)} ms${detail}`);
      if (--this.inFlight === 0) for (const resolve of this.drained.splice(0)) resolve();
    };
    let release: Release | null = null;
    try {
      if (this.state === 'draining') throw new HttpError(503, 'the server is shutting down', 'server_error', null, 'shutting_down', { connection: 'close' });
      this.checkKey(request);
      const model = this.readyModel();
      const req = parseRequest(endpoint, await readJson(request, this.maxBodyBytes));
      if (req.model !== this.id) throw modelNotFound(req.model, this.id);
      const prepared = this.prepare(model, req, controller.signal);
      const turn = this.queue.enter(controller.signal);
      if (!turn) {
        const wait = this.queue.retryAfterSeconds();
        throw new HttpError(429, `the server is busy: ${this.queue.capacity} requests are already waiting; retry in ${wait} s`, 'rate_limit_error', null, 'queue_full', { 'retry-after': String(wait) });
      }
      try {
        release = await turn;
      } catch {
        throw this.stopped(controller.signal, 0);
      }
      const head: ResponseHead = { id: `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomId()}`, created: Math.floor(Date.now() / 1000), model: this.id! };
      if (req.stream) {
        const stream = this.stream(req, prepared, head, controller, release, end);
        release = null; // the stream owns the turn now
        return new Response(stream, { status: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' } });
      }
      const result = await prepared.generation.result();
      release();
      release = null;
      if (result.finishReason === 'aborted') throw this.stopped(controller.signal, result.generatedIds.length);
      const decoded = result.trace.tokens.filter((t) => (t.phase ?? 'decode') === 'decode');
      const depth = depthInfo(result.trace.policy, decoded);
      const u = usage(result.promptIds.length, result.generatedIds.length);
      const text = prepared.echo + result.text;
      const finish = finishReasonOf(result.finishReason);
      end(200, ` ${u.completion_tokens} tokens, ${finish}, mean depth ${depth.mean_depth.toFixed(2)}`);
      return json(200, endpoint === 'chat' ? chatObject(head, text, finish, depth, u) : completionObject(head, text, finish, depth, u));
    } catch (e) {
      release?.();
      const response = this.errorResponse(e);
      end(response.status, response.status === 499 ? ' (client disconnected)' : response.status >= 500 ? ` ${(e as Error).message}` : '');
      return response;
    }
  }

  /** The generation of a parsed request (every argument checked before it waits for its turn: a bad one is a 400 at once). */
  private prepare(model: Model, req: ParsedRequest, signal: AbortSignal): { generation: Generation; echo: string } {
    const options: GenerateOptions = { signal, stopStrings: req.stop };
    if (req.sampling) options.sampling = req.sampling;
    if (req.seed !== undefined) options.seed = req.seed;
    if (req.policy) options.policy = req.policy;
    try {
      if (req.endpoint === 'completion') {
        const prompt = req.prompt!;
        options.maxNewTokens = req.maxTokens ?? COMPLETION_MAX_TOKENS;
        const generation = model.generate(prompt, options);
        const echo = req.echo ? (typeof prompt === 'string' ? prompt : model.decode(prompt)) : '';
        return { generation, echo };
      }
      // the library's one chat path: the model folder's template, the chat stop ids (end of turn, eos), no added special tokens
      const chat: ChatOptions = { ...options, maxNewTokens: req.maxTokens ?? model.contextLength }; // until a stop or the context is full
      if (req.templateKwargs) chat.templateKwargs = req.templateKwargs;
      return { generation: model.chat(req.messages!, chat), echo: '' };
    } catch (e) {
      if (e instanceof PonderError) throw requestErrorFrom(e, req.endpoint);
      throw e;
    }
  }

  /** Server-sent events: a chunk per token (its text and depth), the finish chunk (the whole choice's depth), usage if asked, [DONE]. */
  private stream(req: ParsedRequest, prepared: { generation: Generation; echo: string }, head: ResponseHead, controller: AbortController, release: Release, end: (status: number, detail: string) => void): ReadableStream<Uint8Array> {
    const encoder = new TextEncoder();
    const policy = describePolicy(req.policy ?? { kind: 'default' });
    const endpoint = req.endpoint;
    return new ReadableStream<Uint8Array>({
      start: (sink) => {
        const send = (data: object | string): void => {
          try {
            sink.enqueue(encoder.encode(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`));
          } catch { /* the reader cancelled: the abort below ends the generation */ }
        };
        void (async () => {
          let detail = '';
          try {
            if (endpoint === 'chat') send(chunkObject(endpoint, head, { role: true, text: '' }, req.includeUsage));
            if (prepared.echo) send(chunkObject(endpoint, head, { text: prepared.echo }, req.includeUsage));
            const tokens: TokenTrace[] = [];
            let streamed = '';
            for await (const event of prepared.generation) {
              tokens.push(event.trace);
              streamed += event.text;
              send(chunkObject(endpoint, head, { text: event.text, depth: depthInfo(policy, [event.trace]) }, req.includeUsage));
            }
            const result = await prepared.generation.result();
            if (result.finishReason === 'aborted') {
              const error = this.stopped(controller.signal, result.generatedIds.length);
              if (error.status !== 499) send(error.body());
              detail = ` ${error.status === 499 ? 'client disconnected' : error.message} after ${result.generatedIds.length} tokens`;
            } else {
              // text held back when a stop id ended it (a possible stop-string prefix) comes with the finish
              const rest = result.text.slice(streamed.length);
              const finish = finishReasonOf(result.finishReason);
              send(chunkObject(endpoint, head, { text: rest, finish, depth: depthInfo(policy, tokens) }, req.includeUsage));
              if (req.includeUsage) send(usageChunk(endpoint, head, usage(result.promptIds.length, result.generatedIds.length)));
              send('[DONE]');
              detail = ` ${result.generatedIds.length} tokens, ${finish}, streamed`;
            }
          } catch (e) {
            // the headers (200) are sent: the error is the stream's last event, with ponder's code when it has one (null: a bug, logged)
            const typed = e instanceof PonderError;
            const message = typed ? `${e.message}${e.hint ? ` (${e.hint})` : ''}` : `internal error: ${(e as Error).message ?? String(e)}`;
            send({ error: { message, type: typed && !isServerFault(e) ? 'invalid_request_error' : 'server_error', param: null, code: typed ? e.code : null } });
            detail = ` ${message} (${typed ? e.code : 'internal'})`;
          } finally {
            release();
            try { sink.close(); } catch { /* already cancelled */ }
            end(200, detail);
          }
        })();
      },
      cancel: () => controller.abort(CLIENT_GONE),
    });
  }

  /** Why a request's generation stopped early: 504 for its time limit, 499 (never read) when its client went away. */
  private stopped(signal: AbortSignal, tokens: number): HttpError {
    if (signal.reason === TIME_LIMIT) {
      return new HttpError(504, `the request's time limit of ${this.timeoutMs / 1000} s passed (after ${tokens} generated tokens)`, 'timeout_error', null, 'request_timeout');
    }
    return new HttpError(499, CLIENT_GONE, 'client_closed_request');
  }

  // ------------------------------------------------------------------------------------------
  // Small endpoints and checks

  private health(): Response {
    const queue = { ...this.queue.size, capacity: this.queue.capacity };
    if (this.state === 'ready') return json(200, { status: 'ready', model: this.id, queue });
    if (this.state === 'loading') return json(503, { status: 'loading', progress: { bytes_done: this.progress.bytesDone, bytes_total: this.progress.bytesTotal } });
    if (this.state === 'draining') return json(503, { status: 'draining', queue });
    return json(503, { status: 'failed', error: this.loadError });
  }

  private modelObject(): object {
    const model = this.readyModel();
    return { id: this.id, object: 'model', created: 0, owned_by: 'ponder', family: model.family, context_length: model.contextLength, default_depth: model.defaultDepth };
  }

  private readyModel(): Model {
    if (this.model && this.state !== 'failed') return this.model;
    if (this.state === 'failed') throw new HttpError(503, `the model failed to load: ${this.loadError}`, 'server_error', null, 'model_load_failed');
    throw new HttpError(503, 'the model is still loading (GET /health shows progress)', 'server_error', null, 'model_loading', { 'retry-after': '5' });
  }

  private checkKey(request: Request): void {
    if (!this.apiKey) return;
    const header = request.headers.get('authorization') ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) throw new HttpError(401, 'missing API key: send the header Authorization: Bearer <key>', 'invalid_request_error', null, 'invalid_api_key', { 'www-authenticate': 'Bearer' });
    if (!sameBytes(new TextEncoder().encode(match[1].trim()), this.apiKey)) {
      throw new HttpError(401, 'incorrect API key provided', 'invalid_request_error', null, 'invalid_api_key', { 'www-authenticate': 'Bearer' });
    }
  }

  private errorResponse(e: unknown): Response {
    if (e instanceof HttpError) return json(e.status, e.body(), e.headers);
    if (e instanceof PonderError) {
      const error = httpErrorFrom(e);
      return json(error.status, error.body(), error.headers);
    }
    const message = `internal error: ${(e as Error).message ?? String(e)}`;
    return json(500, new HttpError(500, message, 'server_error').body());
  }
}

type RouteKind = 'health' | 'models' | 'model' | Endpoint;
const ROUTES: Record<string, { method: string; kind: RouteKind }> = {
  '/health': { method: 'GET', kind: 'health' },
  '/v1/models': { method: 'GET', kind: 'models' },
  '/v1/models/{id}': { method: 'GET', kind: 'model' },
  '/v1/completions': { method: 'POST', kind: 'completion' },
  '/v1/chat/completions': { method: 'POST', kind: 'chat' },
};

function modelNotFound(asked: string, served: string | undefined): HttpError {
  return new HttpError(404, `The model ${JSON.stringify(asked)} does not exist: this server runs ${JSON.stringify(served)}`, 'invalid_request_error', 'model', 'model_not_found');
}

/** The request body as JSON, read up to the size limit (413 beyond it, whatever Content-Length says). */
async function readJson(request: Request, limit: number): Promise<unknown> {
  const tooLarge = (): HttpError => new HttpError(413, `the request body is larger than ${limit} bytes`, 'invalid_request_error', null, 'request_too_large');
  const declared = Number(request.headers.get('content-length') ?? '0');
  if (declared > limit) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) { await reader.cancel().catch(() => {}); throw tooLarge(); }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.byteLength; }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw badRequest(null, 'the request body is not UTF-8', 'invalid_json');
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw badRequest(null, `the request body is not valid JSON: ${(e as Error).message}`, 'invalid_json');
  }
}

function json(status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
}

/** Compares in time independent of where the bytes differ (the key's length is not secret). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function randomId(): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function positiveInt(value: number, field: string, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) throw new PonderError('ARG_INVALID', `${field} must be an integer ≥ ${min}, got ${String(value)}`, { field, hint: 'see spec/serve.md' });
  return value;
}

function formatBytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(0)} kB`;
}
