/**
 * `ponder run` (stream generated text coloured by depth, then a summary) and `ponder trace`
 * (the same generation written as a self-contained HTML page, or a trace JSON rendered to one).
 * Every argument is checked and the model loaded before anything is written to stdout, so a bad
 * flag, file or prompt leaves stdout empty.
 */
import { resolve } from 'node:path';
import { PonderError } from '../errors.js';
import { loadModelDir } from '../node/index.js';
import { parsePolicy } from '../depth/policy.js';
import { DEFAULT_MODEL, DEFAULT_MODEL_POLICY, DEFAULT_PROMPT } from '../defaults.js';
import { renderChatPrompt, type ChatOptions, type GenerateOptions, type Generation, type GenerationResult, type Model } from '../api/model.js';
import { loadChatTemplate, type ChatMessage } from '../chat/template.js';
import { ThinkingSplitter, promptOpensThinking, type TextSegment } from '../chat/thinking.js';
import { readTokenizerFiles } from '../node/model-dir.js';
import type { SamplingOptions } from '../generate/sampling.js';
import type { Runtime } from '../runtime/runtime.js';
import { colorTokenByDepth, depthLegend, formatRate, formatSummary } from '../trace/terminal.js';
import { intFlag, parseFlags, type FlagSpec } from './args.js';
import { createRuntime, quantActivationsFlag, relaxedFlag, RUNTIME_FLAGS } from './runtime-flags.js';
import { MEMORY_FLAGS, MEMORY_HELP, memoryOptions } from './memory-flags.js';
import type { CliIO } from './io.js';
import type { LoadProgress } from '../api/load.js';

export const GENERATION_FLAGS: FlagSpec = {
  model: { type: 'string', short: 'm' },
  prompt: { type: 'string', short: 'p' },
  ids: { type: 'string' },
  policy: { type: 'string' },
  threshold: { type: 'string' },
  'max-new-tokens': { type: 'string', short: 'n' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
  stop: { type: 'string', multiple: true },
  threads: { type: 'string' },
  'kv-strategy': { type: 'string' },
  'stop-id': { type: 'string', multiple: true },
  'special-tokens': { type: 'boolean' },
  'no-special-tokens': { type: 'boolean' },
  ...RUNTIME_FLAGS,
  ...MEMORY_FLAGS,
};

/** The conversation flags of `ponder run --chat` and `ponder chat`. */
export const CHAT_FLAGS: FlagSpec = {
  system: { type: 'string' },
  'template-arg': { type: 'string', multiple: true },
  'hide-thinking': { type: 'boolean' },
};

export const GENERATION_HELP = `  --model DIR, -m        model directory in Hugging Face layout (config.json, model.safetensors or
                          shards + index, tokenizer.json); default: the bundled trained model
                          models/huginn-sotu, with --policy "${DEFAULT_MODEL_POLICY}" unless given
  --prompt TEXT, -p       prompt text (needs tokenizer.json); default "${DEFAULT_PROMPT}"
  --ids 1,2,3             prompt as token ids instead of text
  --policy POLICY         depth policy: default, fixed(N), router(upstream), router(causal[, T]),
                          exit(CRITERION[, T|auto]), budget(N[, POLICY])  (spec/policies.md)
                          CRITERION: entropy-diff, latent-diff, kl, minp-kl, argmax-stability, cosine
                          (Huginn's; also on Ouro and expert-choice MoR), gate (Ouro's exit gate)
  --threshold T           threshold for router(causal) and exit(...) when not written in the policy
  --max-new-tokens N, -n  tokens to generate (default 32)
  --temperature T         0 = greedy (default, unless generation_config.json says otherwise)
  --top-k K --top-p P --min-p P --repetition-penalty R   sampling filters (spec/sampling.md)
  --seed N                seed of the sampling draws and of Huginn's initial state (default 0)
  --stop TEXT             stop string (repeatable)
  --stop-id N             also stop on token id N (repeatable); the default stop ids, and where each
                          comes from, are listed by \`ponder inspect DIR\`
  --special-tokens, --no-special-tokens
                          add (or not) the tokenizer's special tokens (BOS, ...) to the prompt.
                          Default: added to a plain prompt (tokenizer_config.json add_bos_token /
                          add_eos_token, else tokenizer.json's post-processor), not to a chat prompt,
                          whose template writes them
  --kv-strategy NAME      Huginn cache lookup (full, skip, latest-m4, available-m4, always-last-m4,
                          randomized, optionally -compress-s<N> / -compress-r<N> / -compress-anchor;
                          latest: latest-m4 for any shape, what an exited token's later iterations read);
                          Ouro copy-forward | exclude (skipped loops after an early exit)
  --kernels wasm|scalar   kernels to run on (default wasm)
  --threads N             WASM kernel threads (default: the available cores, at most 8; results are
                          bit-identical on any count)
  --quant-activations f32|int16|int8
                          activations of quantized (4-/8-bit) weights: f32 (default, the exact
                          mode), int16 or int8 (quantized per group for an integer dot product:
                          faster decode, results deviate slightly; see bench/RESULTS.md); int8 is
                          the fastest at 4 bits with --relaxed
  --relaxed               the relaxed-SIMD kernels (fused multiply-add: not bit-identical to the
                          default build; never used by conform)
${MEMORY_HELP.trimEnd()}`;

export const CHAT_HELP = `  --system TEXT           a system message first in the conversation
  --template-arg KEY=VALUE
                          a chat-template variable (repeatable); VALUE is read as JSON when it
                          parses, else as text: e.g. --template-arg enable_thinking=false
  --hide-thinking         leave out what the model writes in <think>…</think> (on a terminal it is
                          shown dimmed)`;

export const RUN_HELP = `ponder run [options]

Generates text and streams it with each token's background coloured by the depth it used (a legend
line explains the colours; plain text when stdout is not a terminal), then one summary line:
tokens/s, mean/min/max depth, compute saved versus full depth.

${GENERATION_HELP}
  --json                  print the trace as JSON (spec/trace.md) instead of text
  --chat                  the prompt is a user message: render it with the model's chat template
                          (tokenizer_config.json or chat_template.jinja) and stop at the end of the
                          answer; see also \`ponder chat\`
${CHAT_HELP}
  --print-prompt          print exactly the prompt text that would be encoded (with --chat: the
                          rendered template; no newline added) and exit without loading the weights

Examples:
  ponder run --prompt "Hello" --policy "exit(kl, 5e-4)"
  ponder run --model models/demo-ouro --ids 1,2,3 --policy "exit(gate, 0.5)" --json
  ponder run --model ~/models/Ouro-1.4B-Thinking --chat --system "Be brief." --prompt "Is 91 prime?"
  ponder run --model ~/models/Ouro-1.4B-Thinking --chat --prompt "Hi" --print-prompt
`;


function numberFlag(flag: string, value: string | boolean | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n)) {
    throw new PonderError('ARG_INVALID', `--${flag} must be a number, got ${JSON.stringify(value)}`, { field: flag, hint: 'see `ponder run --help`' });
  }
  return n;
}

function seedFlag(value: string | boolean | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d+$/.test(value) || Number(value) > 0xffffffff) {
    throw new PonderError('ARG_INVALID', `--seed must be an integer in [0, 4294967295], got ${JSON.stringify(value)}`, { field: 'seed', hint: 'e.g. --seed 42' });
  }
  return Number(value);
}

function idsFlag(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) throw new PonderError('ARG_INVALID', `--ids must be comma-separated non-negative integers, got ${JSON.stringify(value)}`, { field: 'ids', hint: 'e.g. --ids 1,2,3' });
  return parts.map(Number);
}

function stopIdsFlag(values: string[] | undefined): number[] {
  return (values ?? []).map((v) => {
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new PonderError('ARG_INVALID', `--stop-id must be a token id (an integer ≥ 0), got ${JSON.stringify(v)}`, { field: 'stop-id', hint: 'e.g. --stop-id 2 (ids: ponder inspect DIR lists the default stop ids)' });
    return Number(v);
  });
}

/** --template-arg KEY=VALUE pairs as template kwargs: VALUE as JSON when it parses, else the text. */
function templateArgs(values: string[] | undefined): Record<string, unknown> | undefined {
  if (!values || values.length === 0) return undefined;
  const out: Record<string, unknown> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq <= 0) throw new PonderError('ARG_INVALID', `--template-arg must be KEY=VALUE, got ${JSON.stringify(v)}`, { field: 'template-arg', hint: 'e.g. --template-arg enable_thinking=false' });
    const raw = v.slice(eq + 1);
    let value: unknown = raw;
    try { value = JSON.parse(raw); } catch { /* plain text */ }
    out[v.slice(0, eq)] = value;
  }
  return out;
}

/** The chat options the conversation flags ask for (templateKwargs), merged into generation options. */
export function chatFlags(values: Record<string, string | boolean | string[] | undefined>): { system?: string; templateKwargs?: Record<string, unknown>; hideThinking: boolean } {
  const templateKwargs = templateArgs(values['template-arg'] as string[] | undefined);
  return { system: values.system as string | undefined, ...(templateKwargs ? { templateKwargs } : {}), hideThinking: values['hide-thinking'] === true };
}

/** The runtime --kernels and --threads ask for (run, trace, chat, eval, serve). */
export async function runtimeFromFlags(command: string, values: Record<string, string | boolean | string[] | undefined>): Promise<Runtime> {
  // no --threads: as many kernel threads as the host offers (defaultThreadCount, at most 8); scalar kernels run on one
  const threads = values.threads !== undefined || values.kernels === 'scalar' ? intFlag(command, 'threads', values.threads as string | undefined, 1)
    : (await import('../node/pool-worker.js')).defaultThreadCount();
  if (threads > 1 && values.kernels === 'scalar') throw new PonderError('ARG_INVALID', `${command}: --threads needs the wasm kernels`, { field: 'threads', hint: 'drop --kernels scalar or --threads' });
  const quantActivations = quantActivationsFlag(values);
  return threads > 1
    ? (await import('../node/pool-worker.js')).createNodeWasmRuntime({ threads, quantActivations, relaxed: await relaxedFlag(values) })
    : createRuntime(values as Record<string, string | boolean | undefined>);
}

/** Checkpoints from this size on show their load progress. */
const LOAD_PROGRESS_MIN_BYTES = 256 * 2 ** 20;

/**
 * The model a command runs on: --model (default: the bundled trained model) on `runtime` (the
 * caller's to dispose: runtimeFromFlags), planned with the memory flags (--context, --kv-dtype,
 * --max-memory); what was assumed goes to `note` (default: stderr).
 */
export async function openModel(values: Record<string, string | boolean | string[] | undefined>, io: CliIO, runtime: Runtime, defaultNote = '', note: (line: string) => void = (line) => io.err(`${line}\n`)): Promise<Model> {
  const dir = modelDir(values, io, note, defaultNote);
  // a checkpoint of gigabytes takes a while: its progress on stderr (one line, rewritten); a small one loads at once
  let shown = -1;
  const onProgress = ({ bytesDone, bytesTotal }: LoadProgress): void => {
    if (bytesTotal < LOAD_PROGRESS_MIN_BYTES) return;
    const percent = Math.floor((100 * bytesDone) / bytesTotal);
    if (percent < shown + 5 && bytesDone < bytesTotal) return;
    shown = percent;
    io.err(`\rloading ${dir}: ${percent}% of ${(bytesTotal / 2 ** 30).toFixed(2)} GiB${bytesDone >= bytesTotal ? '\n' : ''}`);
  };
  const model = await loadModelDir(dir, { runtime, onProgress, ...memoryOptions(values) });
  if (model.unknownConfigKeys.length > 0) note(`note: config.json keys ponder does not read (a typo, or a field it ignores): ${model.unknownConfigKeys.join(', ')}`);
  return model;
}

interface Prepared {
  model: Model;
  prompt: string | number[];
  options: GenerateOptions;
  /** notes for stderr ("no --model given: ...", unread config keys), printed by the caller once every argument has been checked, so an error line always comes first */
  notes: string[];
  /** the runtime the model runs on: the caller releases it (disposeRuntime) when done, so a command run in-process leaves no kernel threads behind */
  runtime: Runtime;
}

/** Stops a runtime's kernel threads (a wasm runtime with threads > 1); other runtimes hold nothing. */
export async function disposeRuntime(runtime: Runtime): Promise<void> {
  await runtime.dispose?.();
}

/** The model directory the flags name (default: the bundled trained model, which `note` says with `defaultNote`). */
export function modelDir(values: Record<string, string | boolean | string[] | undefined>, io: CliIO, note: (line: string) => void, defaultNote = ''): string {
  if (values.model !== undefined) return values.model as string;
  note(`no --model given: using the bundled trained model ${DEFAULT_MODEL}${defaultNote} (models/README.md)`);
  return resolve(io.bundledGoldenDir, '..', '..', 'models', DEFAULT_MODEL);
}

/**
 * Parses the generation flags and loads the model; nothing is written to stdout or stderr (the
 * notes are the caller's to print). `chat`: the prompt is rendered by the chat template (no special
 * tokens added by default, the chat stop ids).
 */
export async function prepare(command: string, values: Record<string, string | boolean | string[] | undefined>, io: CliIO, chat = false): Promise<Prepared> {
  const notes: string[] = [];
  if (values.prompt !== undefined && values.ids !== undefined) throw new PonderError('ARG_INVALID', `${command}: give --prompt or --ids, not both`, { hint: `see \`ponder ${command} --help\`` });
  if (values['special-tokens'] && values['no-special-tokens']) throw new PonderError('ARG_INVALID', `${command}: give --special-tokens or --no-special-tokens, not both`, { field: 'special-tokens', hint: `see \`ponder ${command} --help\`` });
  const extraStops = stopIdsFlag(values['stop-id'] as string[] | undefined);
  const maxNewTokens = values['max-new-tokens'] === '0' ? 0 : intFlag(command, 'max-new-tokens', values['max-new-tokens'] as string | undefined, 32);
  const threshold = numberFlag('threshold', values.threshold as string | undefined);
  const defaultPair = values.model === undefined && values.policy === undefined && threshold === undefined;
  const policy = values.policy !== undefined ? parsePolicy(String(values.policy), threshold)
    : threshold !== undefined ? (() => { throw new PonderError('ARG_INVALID', '--threshold needs --policy router(causal) or exit(CRITERION)', { field: 'threshold', hint: 'e.g. --policy "exit(kl)" --threshold 5e-4' }); })()
    : defaultPair ? parsePolicy(DEFAULT_MODEL_POLICY) : undefined;
  const sampling: SamplingOptions = {};
  const temperature = numberFlag('temperature', values.temperature as string | undefined);
  const topK = numberFlag('top-k', values['top-k'] as string | undefined);
  const topP = numberFlag('top-p', values['top-p'] as string | undefined);
  const minP = numberFlag('min-p', values['min-p'] as string | undefined);
  const penalty = numberFlag('repetition-penalty', values['repetition-penalty'] as string | undefined);
  if (temperature !== undefined) sampling.temperature = temperature;
  if (topK !== undefined) sampling.topK = topK;
  if (topP !== undefined) sampling.topP = topP;
  if (minP !== undefined) sampling.minP = minP;
  if (penalty !== undefined) sampling.repetitionPenalty = penalty;
  const samplingGiven = Object.keys(sampling).length > 0;
  if (samplingGiven && sampling.temperature === undefined) sampling.temperature = 1; // a filter asks for sampling
  const seed = seedFlag(values.seed as string | undefined);
  const stopStrings = values.stop as string[] | undefined;
  const options: GenerateOptions = { maxNewTokens };
  if (policy) options.policy = policy;
  if (samplingGiven) options.sampling = sampling;
  if (seed !== undefined) options.seed = seed;
  if (stopStrings) options.stopStrings = stopStrings;
  if (values['kv-strategy'] !== undefined) options.kvStrategy = String(values['kv-strategy']);
  if (values['special-tokens'] || values['no-special-tokens']) options.addSpecialTokens = values['special-tokens'] === true;

  const runtime = await runtimeFromFlags(command, values);
  try {
    const { model, prompt } = await loadForGeneration(command, values, io, runtime, notes, defaultPair ? ` with --policy "${DEFAULT_MODEL_POLICY}"` : '');
    if (extraStops.length > 0) {
      const outside = extraStops.find((id) => id >= model.vocabSize);
      if (outside !== undefined) throw new PonderError('ARG_INVALID', `--stop-id ${outside} is outside the vocabulary of ${model.vocabSize}`, { field: 'stop-id', hint: 'give a token id of this model' });
      options.stopIds = [...new Set([...model.stopIds({ chat }).map((s) => s.id), ...extraStops])];
    }
    if (policy) model.checkPolicy(policy);
    return { model, prompt, options, notes, runtime };
  } catch (e) {
    await disposeRuntime(runtime);
    throw e;
  }
}

/** The model (on `runtime`) and the prompt; notes on what was assumed or lost go to `notes`. */
async function loadForGeneration(command: string, values: Record<string, string | boolean | string[] | undefined>, io: CliIO, runtime: Runtime, notes: string[], defaultNote: string): Promise<{ model: Model; prompt: string | number[] }> {
  // chat's --context sizes its conversation cache (which may grow up to the model's context), not the plan
  const model = await openModel(command === 'chat' ? { ...values, context: undefined } : values, io, runtime, defaultNote, (line) => notes.push(line));
  const prompt = values.ids !== undefined ? idsFlag(String(values.ids)) : String(values.prompt ?? DEFAULT_PROMPT);
  if (typeof prompt === 'string' && model.tokenizer && command !== 'chat') {
    // a tokenizer without an unknown token drops characters it cannot encode (demo-huginn's covers ASCII only): say so
    const seen = model.decode(model.encode(prompt, false));
    if (seen !== prompt) notes.push(`note: the tokenizer reads the prompt as ${JSON.stringify(seen)} (characters it cannot encode are lost)`);
  }
  return { model, prompt };
}

/** Prints prepare's notes on stderr. */
export function printNotes(notes: readonly string[], io: CliIO): void {
  for (const note of notes) io.err(`${note}\n`);
}

/** Control characters of (noise) model output shown as their visible symbols, so they cannot drive the terminal. */
function visible(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) => String.fromCodePoint(c === '\u007f' ? 0x2421 : 0x2400 + c.charCodeAt(0)));
}

/** Faint text (SGR 2), line by line like the depth colours. */
function dim(text: string): string {
  return text.split('\n').map((line) => (line.length === 0 ? line : `\x1b[2m${line}\x1b[0m`)).join('\n');
}

export interface StreamOptions {
  hideThinking: boolean;
  /** print the depth legend before the first token */
  legend: boolean;
}

/**
 * Streams a generation to stdout: each token's text on its depth colour (a terminal only), what the
 * model writes in <think>…</think> dimmed or left out. Returns the result and whether any token came.
 */
export async function streamGeneration(generation: Generation, model: Model, io: CliIO, o: StreamOptions): Promise<{ result: GenerationResult; started: boolean }> {
  const tty = io.isTTY === true;
  // a chat prompt that leaves a <think> block open (a Thinking model's generation prompt): the answer starts inside it
  const splitter = new ThinkingSplitter(generation.promptText !== undefined && promptOpensThinking(generation.promptText));
  let started = false;
  let trimAnswer = false; // after a hidden thinking block: drop the blank lines that followed it
  const show = (segments: TextSegment[], steps: number, maxSteps: number): void => {
    for (const seg of segments) {
      if (seg.thinking && o.hideThinking) { trimAnswer = true; continue; }
      let text = seg.text;
      if (!seg.thinking && trimAnswer) { text = text.replace(/^\s+/, ''); trimAnswer = text.length === 0; }
      if (text.length === 0) continue;
      const colored = colorTokenByDepth(visible(text), steps, maxSteps, tty);
      io.out(seg.thinking && tty ? dim(colored) : colored);
    }
  };
  let last = { steps: model.defaultDepth, maxSteps: model.defaultDepth };
  for await (const event of generation) {
    if (!started && o.legend) io.out(`${depthLegend(event.trace.maxSteps, tty)}\n`);
    started = true;
    last = { steps: event.trace.steps, maxSteps: event.trace.maxSteps };
    if (model.tokenizer) show(splitter.push(event.text), event.trace.steps, event.trace.maxSteps);
    else io.out(colorTokenByDepth(`${event.id} `, event.trace.steps, event.trace.maxSteps, tty));
  }
  const result = await generation.result();
  show(splitter.flush(), last.steps, last.maxSteps);
  return { result, started };
}

export async function runCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('run', argv, { ...GENERATION_FLAGS, ...CHAT_FLAGS, json: { type: 'boolean' }, chat: { type: 'boolean' }, 'print-prompt': { type: 'boolean' } });
  if (values.help) { io.out(RUN_HELP); return 0; }
  if (positionals.length > 0) throw new PonderError('ARG_INVALID', `run: unexpected argument ${JSON.stringify(positionals[0])}`, { hint: 'put the prompt after --prompt; see `ponder run --help`' });
  const chat = values.chat === true;
  const conversation = chatFlags(values);
  if (!chat) {
    const given = ['system', 'template-arg'].find((k) => values[k] !== undefined);
    if (given) throw new PonderError('ARG_INVALID', `run: --${given} needs --chat`, { field: given, hint: 'add --chat to render the prompt with the model\'s chat template' });
  }
  if (chat && values.ids !== undefined) throw new PonderError('ARG_INVALID', 'run: --chat takes the user message as text (--prompt), not --ids', { field: 'ids', hint: 'give --prompt TEXT' });
  const messages: ChatMessage[] = [
    ...(conversation.system !== undefined ? [{ role: 'system', content: conversation.system }] : []),
    { role: 'user', content: String(values.prompt ?? DEFAULT_PROMPT) },
  ];
  const chatOptions: ChatOptions = conversation.templateKwargs ? { templateKwargs: conversation.templateKwargs } : {};
  if (values['print-prompt']) return printPrompt(values, io, chat ? messages : null, chatOptions);

  const prepared = await prepare('run', values, io, chat);
  try {
    return await runPrepared(prepared, values, io, chat ? { messages, chatOptions } : null, conversation.hideThinking);
  } finally {
    await disposeRuntime(prepared.runtime);
  }
}

async function runPrepared({ model, prompt, options, notes }: Prepared, values: Record<string, string | boolean | string[] | undefined>, io: CliIO, chat: { messages: ChatMessage[]; chatOptions: ChatOptions } | null, hideThinking: boolean): Promise<number> {
  // validates ids, context, policy, sampling (and renders the chat) before anything is printed
  const generation = chat ? model.chat(chat.messages, { ...options, ...chat.chatOptions }) : model.generate(prompt, options);
  printNotes(notes, io);
  if (values.json) {
    const result = await generation.result();
    io.out(result.traceJSON(2) + '\n');
    return 0;
  }
  const { result, started } = await streamGeneration(generation, model, io, { hideThinking, legend: true });
  if (!started) io.out(`${depthLegend(model.defaultDepth, io.isTTY === true)}\n`);
  const prefill = result.trace.prefillMs ?? 0;
  const prefillRate = prefill > 0 ? ` (${formatRate((result.promptIds.length * 1000) / prefill)} tok/s)` : '';
  io.out(`\n${formatSummary(result.summary)}\n`);
  io.out(`prompt ${result.promptIds.length} tokens, prefill ${prefill.toFixed(1)} ms${prefillRate} · policy ${result.trace.policy} · ${model.family} · finished: ${result.finishReason}\n`);
  return 0;
}

/**
 * --print-prompt: the exact prompt text, without a newline added, and no weights loaded (with
 * --chat only the tokenizer files are read, to render the template).
 */
async function printPrompt(values: Record<string, string | boolean | string[] | undefined>, io: CliIO, messages: ChatMessage[] | null, options: ChatOptions): Promise<number> {
  if (values.ids !== undefined) throw new PonderError('ARG_INVALID', 'run: --print-prompt prints prompt text; --ids has none', { field: 'ids', hint: 'give --prompt TEXT' });
  if (messages === null) { io.out(String(values.prompt ?? DEFAULT_PROMPT)); return 0; }
  const dir = modelDir(values, io, (line) => io.err(`${line}\n`));
  const files = readTokenizerFiles(dir);
  if (files.chatTemplateJinja === undefined && files.tokenizerConfig === undefined) {
    throw new PonderError('CHAT_TEMPLATE_MISSING', `${dir} has no chat template: neither chat_template.jinja nor tokenizer_config.json`, { path: dir, hint: 'this is not a chat model (the bundled models are not): drop --chat' });
  }
  const template = await loadChatTemplate(files);
  io.out(renderChatPrompt(template, messages, options));
  return 0;
}
