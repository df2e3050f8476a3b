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
import type { GenerateOptions, GenerationResult, Model } from '../api/model.js';
import type { SamplingOptions } from '../generate/sampling.js';
import type { Runtime } from '../runtime/runtime.js';
import { colorTokenByDepth, depthLegend, formatSummary } from '../trace/terminal.js';
import { intFlag, parseFlags, type FlagSpec } from './args.js';
import { createRuntime, RUNTIME_FLAGS } from './runtime-flags.js';
import { MEMORY_FLAGS, MEMORY_HELP, memoryOptions } from './memory-flags.js';
import type { CliIO } from './io.js';

export const DEMO_MODEL = 'demo-huginn';

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
  ...RUNTIME_FLAGS,
  ...MEMORY_FLAGS,
};

export const GENERATION_HELP = `  --model DIR, -m        model directory in Hugging Face layout (config.json, model.safetensors or
                          shards + index, tokenizer.json); default: the bundled demo model
  --prompt TEXT, -p       prompt text (needs tokenizer.json); default "Once upon a time"
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
  --kv-strategy NAME      Huginn cache lookup (full, skip, latest-m4, available-m4, always-last-m4,
                          randomized, optionally -compress-s<N> / -compress-r<N> / -compress-anchor);
                          Ouro copy-forward | exclude (skipped loops after an early exit)
  --kernels wasm|scalar   kernels to run on (default wasm)
  --threads N             WASM kernel threads (default: the available cores, at most 8; results are
                          bit-identical on any count)
${MEMORY_HELP.trimEnd()}`;

export const RUN_HELP = `ponder run [options]

Generates text and streams it with each token's background coloured by the depth it used (a legend
line explains the colours; plain text when stdout is not a terminal), then one summary line:
tokens/s, mean/min/max depth, compute saved versus full depth.

${GENERATION_HELP}
  --json                  print the trace as JSON (spec/trace.md) instead of text

Examples:
  ponder run --prompt "Hello" --policy "exit(kl, 5e-4)"
  ponder run --model models/demo-ouro --ids 1,2,3 --policy "exit(gate, 0.5)" --json
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

/** The runtime --kernels and --threads ask for (run, trace, serve). */
export async function runtimeFromFlags(command: string, values: Record<string, string | boolean | string[] | undefined>): Promise<Runtime> {
  // no --threads: as many kernel threads as the host offers (defaultThreadCount, at most 8); scalar kernels run on one
  const threads = values.threads !== undefined || values.kernels === 'scalar' ? intFlag(command, 'threads', values.threads as string | undefined, 1)
    : (await import('../node/pool-worker.js')).defaultThreadCount();
  if (threads > 1 && values.kernels === 'scalar') throw new PonderError('ARG_INVALID', `${command}: --threads needs the wasm kernels`, { field: 'threads', hint: 'drop --kernels scalar or --threads' });
  return threads > 1
    ? (await import('../node/pool-worker.js')).createNodeWasmRuntime({ threads })
    : createRuntime(values as Record<string, string | boolean | undefined>);
}

interface Prepared {
  model: Model;
  prompt: string | number[];
  options: GenerateOptions;
}

/** Parses the generation flags and loads the model; nothing is written to stdout. */
export async function prepare(command: string, values: Record<string, string | boolean | string[] | undefined>, io: CliIO): Promise<Prepared> {
  if (values.prompt !== undefined && values.ids !== undefined) throw new PonderError('ARG_INVALID', `${command}: give --prompt or --ids, not both`, { hint: `see \`ponder ${command} --help\`` });
  const maxNewTokens = values['max-new-tokens'] === '0' ? 0 : intFlag(command, 'max-new-tokens', values['max-new-tokens'] as string | undefined, 32);
  const threshold = numberFlag('threshold', values.threshold as string | undefined);
  const policy = values.policy !== undefined ? parsePolicy(String(values.policy), threshold)
    : threshold !== undefined ? (() => { throw new PonderError('ARG_INVALID', '--threshold needs --policy router(causal) or exit(CRITERION)', { field: 'threshold', hint: 'e.g. --policy "exit(kl)" --threshold 5e-4' }); })()
    : undefined;
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

  const runtime = await runtimeFromFlags(command, values);
  let dir = values.model as string | undefined;
  if (dir === undefined) {
    dir = resolve(io.bundledGoldenDir, '..', '..', 'models', DEMO_MODEL);
    io.err(`no --model given: using the bundled demo model ${DEMO_MODEL} (golden-case weights, so its text is noise)\n`);
  }
  const model = await loadModelDir(dir, { runtime, ...memoryOptions(values) });
  if (model.unknownConfigKeys.length > 0) io.err(`note: config.json keys ponder does not read (a typo, or a field it ignores): ${model.unknownConfigKeys.join(', ')}\n`);
  const prompt = values.ids !== undefined ? idsFlag(String(values.ids)) : String(values.prompt ?? 'Once upon a time');
  if (typeof prompt === 'string' && model.tokenizer) {
    // a tokenizer without an unknown token drops characters it cannot encode (demo-huginn's covers ASCII only): say so
    const seen = model.decode(model.encode(prompt, false));
    if (seen !== prompt) io.err(`note: the tokenizer reads the prompt as ${JSON.stringify(seen)} (characters it cannot encode are lost)\n`);
  }
  const options: GenerateOptions = { maxNewTokens };
  if (policy) options.policy = policy;
  if (samplingGiven) options.sampling = sampling;
  if (seed !== undefined) options.seed = seed;
  if (stopStrings) options.stopStrings = stopStrings;
  if (values['kv-strategy'] !== undefined) options.kvStrategy = String(values['kv-strategy']);
  if (policy) model.checkPolicy(policy);
  return { model, prompt, options };
}

/** Control characters of (noise) model output shown as their visible symbols, so they cannot drive the terminal. */
function visible(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) => String.fromCodePoint(c === '\u007f' ? 0x2421 : 0x2400 + c.charCodeAt(0)));
}

export async function runCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('run', argv, { ...GENERATION_FLAGS, json: { type: 'boolean' } });
  if (values.help) { io.out(RUN_HELP); return 0; }
  if (positionals.length > 0) throw new PonderError('ARG_INVALID', `run: unexpected argument ${JSON.stringify(positionals[0])}`, { hint: 'put the prompt after --prompt; see `ponder run --help`' });
  const { model, prompt, options } = await prepare('run', values, io);
  const generation = model.generate(prompt, options); // validates ids, context, policy, sampling
  const tty = io.isTTY === true;
  let result: GenerationResult;
  if (values.json) {
    result = await generation.result();
    io.out(result.traceJSON(2) + '\n');
    return 0;
  }
  let started = false;
  for await (const event of generation) {
    if (!started) {
      io.out(`${depthLegend(event.trace.maxSteps, tty)}\n`);
      started = true;
    }
    const text = model.tokenizer ? visible(event.text) : `${event.id} `;
    io.out(colorTokenByDepth(text, event.trace.steps, event.trace.maxSteps, tty));
  }
  result = await generation.result();
  if (!started) io.out(`${depthLegend(model.defaultDepth, tty)}\n`);
  const prefill = result.trace.prefillMs ?? 0;
  const prefillRate = prefill > 0 ? ` (${((result.promptIds.length * 1000) / prefill).toFixed(1)} tok/s)` : '';
  io.out(`\n${formatSummary(result.summary)}\n`);
  io.out(`prompt ${result.promptIds.length} tokens, prefill ${prefill.toFixed(1)} ms${prefillRate} · policy ${result.trace.policy} · ${model.family} · finished: ${result.finishReason}\n`);
  return 0;
}

