/**
 * The fuzzer's worker process: builds each case it is sent (cases.ts), writes its files into a
 * fresh directory and runs its commands in-process through the CLI's `main` (and the chat API, and
 * the server core of `ponder serve` for request bodies),
 * then reports every command's exit code, error code and time. The parent (run.ts) watches the
 * time and memory budgets and kills this process when a case hangs.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { main, type CliIO } from '../../src/cli/main.js';
import { loadChatTemplate } from '../../src/chat/template.js';
import { PonderError } from '../../src/errors.js';
import type { Model } from '../../src/api/model.js';
import { loadModel } from '../../src/node/index.js';
import { createServer } from '../../src/serve/server.js';
import { familyOf, makeCase, MODELS, POLICIES, readCorpusFiles, ROOT, SERVE_MODEL_ID, type Corpus, type FuzzCase, type Target } from './cases.js';

/** What one command did. */
export interface StepOutcome {
  readonly argv: readonly string[];
  /** 0 ok, 2 a typed error, 1 INTERNAL; -1: it threw out of main (a crash) */
  readonly exit: number;
  /** the error[CODE] printed (or thrown by the chat API), if any */
  readonly code: string | null;
  readonly firstLine: string;
  /** what is wrong with the output itself: a stack trace, stdout on error, no hint... */
  readonly problems: string[];
  readonly ms: number;
}

export interface CaseOutcome {
  readonly index: number;
  readonly target: string;
  readonly mutation: string;
  readonly steps: StepOutcome[];
  readonly ms: number;
}

export type ToWorker = { type: 'case'; seed: number; index: number; target?: Target; save?: string };
export type FromWorker = { type: 'ready' } | { type: 'start'; index: number; target: string; mutation: string } | { type: 'step'; argv: readonly string[] } | { type: 'done'; outcome: CaseOutcome };

const io = (sink: { out: string; err: string }): CliIO => ({
  out: (t) => { if (sink.out.length < 1_000_000) sink.out += t; },
  err: (t) => { if (sink.err.length < 1_000_000) sink.err += t; },
  bundledGoldenDir: join(ROOT, 'spec', 'golden'),
  isTTY: false,
});

/** The corpus, with one real trace per model from a 4-token run. */
async function loadCorpus(): Promise<Corpus> {
  const files = readCorpusFiles();
  const traces: Record<string, Uint8Array> = {};
  for (const m of MODELS) {
    const sink = { out: '', err: '' };
    const policy = POLICIES[familyOf(files.models[m]['config.json'])][0]; // one with criterion values
    const code = await main(['run', '-m', join(ROOT, 'models', m), '-n', '4', '--prompt', 'Hi', '--policy', policy, '--json'], io(sink));
    if (code !== 0) throw new Error(`fuzz corpus: ${m} did not run: ${sink.err}`);
    traces[m] = new TextEncoder().encode(sink.out);
  }
  return { ...files, traces };
}

const CODE_LINE = /^error\[([A-Z][A-Z0-9_]*)\]: \S/;

/** Checks the CLI's contract on one command's output: exit 0, or exit 2 with one error line, a hint, no stack, nothing on stdout. */
function judge(exit: number, out: string, err: string): { code: string | null; firstLine: string; problems: string[] } {
  const problems: string[] = [];
  const lines = err.split('\n').filter((l) => l.length > 0);
  const errorLine = lines.find((l) => l.startsWith('error['));
  const code = errorLine ? CODE_LINE.exec(errorLine)?.[1] ?? 'MALFORMED' : null;
  if (/\n\s+at .+:\d+:\d+\)?/.test(`\n${err}`)) problems.push('stack trace on stderr');
  if (exit === 2) {
    if (!errorLine) problems.push('exit 2 without an error[CODE] line');
    else if (lines[0] !== errorLine) problems.push('the error line is not the first line on stderr');
    if (errorLine && !lines.some((l) => l.startsWith('  hint: '))) problems.push('no hint');
    // `run` streams: a fault only generation meets (a NaN in the logits, an id the tokenizer has no token for)
    // ends the stream it has begun; anything else must leave stdout empty
    const streamed = out.startsWith('depth: ') && (code === 'NUM_NONFINITE' || code === 'TOKENIZER_UNKNOWN_ID');
    if (out.length > 0 && !streamed) problems.push('stdout is not empty on error');
  } else if (exit === 1) problems.push(code === 'INTERNAL' ? 'INTERNAL error' : 'exit 1');
  else if (exit !== 0) problems.push(`exit ${exit}`);
  if (code === 'INTERNAL' && exit !== 1) problems.push('INTERNAL error');
  return { code, firstLine: (errorLine ?? lines[0] ?? '').slice(0, 300), problems };
}

const CHAT_MESSAGES = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi' },
  { role: 'assistant', content: 'Hello.' },
  { role: 'user', content: 'And now?' },
];

async function runChat(path: string, text: string): Promise<StepOutcome> {
  const t0 = performance.now();
  try {
    const template = await loadChatTemplate({ tokenizerConfig: text });
    template.render(CHAT_MESSAGES, { addGenerationPrompt: true });
    return { argv: ['chat', path], exit: 0, code: null, firstLine: '', problems: [], ms: performance.now() - t0 };
  } catch (e) {
    const ms = performance.now() - t0;
    if (e instanceof PonderError) return { argv: ['chat', path], exit: 2, code: e.code, firstLine: `error[${e.code}]: ${e.message}`.slice(0, 300), problems: e.hint ? [] : ['no hint'], ms };
    return { argv: ['chat', path], exit: -1, code: null, firstLine: String((e as Error)?.stack ?? e).slice(0, 300), problems: ['untyped exception (not a PonderError)'], ms };
  }
}

/** The bundled models with the chat template the serve cases use (the first chat corpus file as tokenizer_config.json), loaded once per worker (requests cannot change them). */
const served = new Map<string, Model>();

async function servedModel(corpus: Corpus, name: string): Promise<Model> {
  const dir = join(ROOT, 'models', name);
  return loadModel({
    config: readFileSync(join(dir, 'config.json'), 'utf8'), files: { 'model.safetensors': new Uint8Array(readFileSync(join(dir, 'model.safetensors'))) },
    tokenizer: readFileSync(join(dir, 'tokenizer.json'), 'utf8'), tokenizerConfig: new TextDecoder().decode(corpus.chatConfigs[0]), label: dir,
  });
}

/** A request is answered in this time or stopped with 504 (an accepted outcome: a valid max_tokens may ask for the whole context). */
const SERVE_TIMEOUT_MS = 5_000;
/** `code` of an error body whose code is an HTTP-level one (spec/serve.md) rather than one of spec/errors.md. */
const OPENAI_CODE = /^[a-z][a-z_]*$/;

/**
 * Posts a (mutated) request body to a fresh server core over a bundled model and checks the answer:
 * a 2xx whose body is a completion or a stream ending in [DONE], or an OpenAI error object
 * `{error: {message, type, param, code}}` with a 4xx status (504 for the time limit, a 500 carrying
 * a spec/errors.md code such as NUM_NONFINITE). A 500 without such a code, an error object in a
 * stream that is not typed, or a body that is not JSON is a failure.
 */
async function runServe(corpus: Corpus, argv: readonly string[], body: Uint8Array): Promise<StepOutcome> {
  const [, modelName, endpoint] = argv;
  const t0 = performance.now();
  const problems: string[] = [];
  let code: string | null = null;
  let firstLine = '';
  let exit = 0;
  try {
    let model = served.get(modelName);
    if (!model) served.set(modelName, (model = await servedModel(corpus, modelName)));
    const server = createServer({ model, id: SERVE_MODEL_ID, timeoutMs: SERVE_TIMEOUT_MS });
    const path = endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions';
    const response = await server.handle(new Request(`http://fuzz${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body.slice().buffer }));
    const text = await response.text();
    const contentType = response.headers.get('content-type') ?? '';
    if (response.status >= 200 && response.status < 300 && contentType.startsWith('text/event-stream')) {
      // every event is JSON or [DONE]; the stream ends with [DONE], or with an error object carrying a code
      const events = text.split('\n\n').filter((e) => e.length > 0);
      const last = events[events.length - 1] ?? '';
      if (!events.every((e) => e.startsWith('data: '))) problems.push('a stream event without "data: "');
      if (last !== 'data: [DONE]') {
        const error = parseError(last.slice('data: '.length));
        if (!error) problems.push(`the stream ends without [DONE] or an error: ${last.slice(0, 200)}`);
        else { code = error.code ?? 'UNTYPED'; firstLine = error.message; exit = 2; if (error.code === null) problems.push('an untyped error in the stream'); }
      }
    } else if (response.status >= 200 && response.status < 300) {
      try { JSON.parse(text); } catch { problems.push('a 2xx body that is not JSON'); }
    } else {
      exit = 2;
      const error = parseError(text);
      if (!error) problems.push(`HTTP ${response.status} without an OpenAI error object: ${text.slice(0, 200)}`);
      else { code = error.code ?? `HTTP ${response.status}`; firstLine = `HTTP ${response.status} ${error.type}: ${error.message}`; }
      // a 5xx is judged by its code: one of spec/errors.md's (NUM_NONFINITE: a fault of the model, not of the request)
      // is typed; none, or an HTTP-level one, is INTERNAL (504, the time limit, is accepted)
      if (response.status >= 500 && response.status !== 504 && (error?.code == null || OPENAI_CODE.test(error.code))) { code = 'INTERNAL'; exit = 1; }
    }
  } catch (e) {
    return { argv, exit: -1, code: null, firstLine: String((e as Error)?.stack ?? e).slice(0, 300), problems: ['the server threw (handle() must never reject)'], ms: performance.now() - t0 };
  }
  if (code !== null && OPENAI_CODE.test(code)) code = `serve:${code}`; // spec/serve.md's codes, not spec/errors.md's
  return { argv, exit, code, firstLine: firstLine.slice(0, 300), problems, ms: performance.now() - t0 };
}

function parseError(text: string): { message: string; type: string; code: string | null } | null {
  try {
    const e = (JSON.parse(text) as { error?: { message?: unknown; type?: unknown; code?: unknown } }).error;
    if (!e || typeof e.message !== 'string' || e.message === '' || typeof e.type !== 'string') return null;
    return { message: e.message, type: e.type, code: typeof e.code === 'string' ? e.code : null };
  } catch {
    return null;
  }
}

async function runCase(corpus: Corpus, c: FuzzCase, save: string | undefined, onStep: (argv: readonly string[]) => void): Promise<CaseOutcome> {
  const dir = save ?? mkdtempSync(join(tmpdir(), 'ponder-fuzz-'));
  try {
    for (const [rel, bytes] of Object.entries(c.files)) {
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      writeFileSync(join(dir, rel), bytes);
    }
    const steps: StepOutcome[] = [];
    const t0 = performance.now();
    for (const step of c.steps) {
      const argv = step.map((a) => a.replace(/^CASE\//, `${dir}/`));
      onStep(argv);
      if (argv[0] === 'chat') { steps.push(await runChat(argv[1], new TextDecoder().decode(c.files['tokenizer_config.json']))); continue; }
      if (argv[0] === 'serve') { steps.push(await runServe(corpus, argv, c.files['request.json'])); continue; }
      const sink = { out: '', err: '' };
      const s0 = performance.now();
      let exit: number;
      let thrown: unknown = null;
      try {
        exit = await main(argv, io(sink));
      } catch (e) {
        exit = -1;
        thrown = e;
      }
      const ms = performance.now() - s0;
      if (thrown !== null) {
        steps.push({ argv, exit, code: null, firstLine: String((thrown as Error)?.stack ?? thrown).slice(0, 300), problems: ['threw out of the CLI (a crash)'], ms });
      } else {
        steps.push({ argv, exit, ...judge(exit, sink.out, sink.err), ms });
      }
      if (exit !== 0 && argv[0] === 'convert') break; // nothing was converted to inspect or run
    }
    return { index: c.index, target: c.target, mutation: c.mutation, steps, ms: performance.now() - t0 };
  } finally {
    if (!save) rmSync(dir, { recursive: true, force: true });
  }
}

async function serve(): Promise<void> {
  const corpus = await loadCorpus();
  const send = (m: FromWorker): void => { process.send!(m); };
  process.on('message', (m: ToWorker) => {
    if (m.type !== 'case') return;
    void (async () => {
      (globalThis as { gc?: () => void }).gc?.(); // each case starts from the same heap, so its memory is its own
      const c = makeCase(corpus, m.seed, m.index, m.target);
      send({ type: 'start', index: m.index, target: c.target, mutation: c.mutation });
      const outcome = await runCase(corpus, c, m.save, (argv) => send({ type: 'step', argv }));
      send({ type: 'done', outcome });
    })();
  });
  send({ type: 'ready' });
}

if (process.send) {
  process.on('disconnect', () => process.exit(0)); // the run ended (or died): never outlive it
  await serve();
}
