/**
 * Huginn adaptive-compute benchmark on one synthetic model with huginn-0125's layer structure
 * (P=2, R=4, C=2, head_dim 96, MLP ratio 17920/5280, tied head) scaled down to fit CI, random bf16
 * weights (bench/huginn-synthetic.ts). One run reports, for greedy generation of the same prompt:
 *   - fixed depth 32 (generate_minimal), and
 *   - generate_with_adaptive_compute with a 32-step cap under every exit criterion,
 * each as generated tokens/s (prefill included, tinybench mean over iterations) and mean recurrent
 * steps per token; then, for latent-diff (auto) under every KV lookup strategy / compression, the
 * cache memory at the end of the run (upstream's get_memory_usage figure) and tokens/s. The weights are random, so how early a criterion exits says nothing about the
 * real checkpoint; the figures measure the runtime cost of checking and the saving of real skips.
 *
 *   node --import tsx bench/huginn.bench.ts [--kernels wasm|scalar] [--threads 1] [--heads 4] [--vocab 8192]
 *        [--prompt 8] [--tokens 8] [--iterations 2] [--out-gain 1] [--json]
 *
 * Not part of `npm test` (its file name does not end in .test.ts).
 */
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { huginnFamily } from '../src/models/huginn-family.js';
import type { HuginnModel } from '../src/models/huginn.js';
import { createExitEvaluator, EXIT_CRITERIA } from '../src/depth/criteria.js';
import { generateAdaptive, generateMinimal } from '../src/models/huginn-generate.js';
import { seededInitialStates } from '../src/models/huginn.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';
import { scaledHuginnConfig, syntheticHuginnWeights } from './huginn-synthetic.js';

const { values } = parseArgs({
  options: {
    kernels: { type: 'string', default: 'wasm' },
    threads: { type: 'string', default: '1' },
    heads: { type: 'string', default: '4' },
    vocab: { type: 'string', default: '8192' },
    prompt: { type: 'string', default: '8' },
    tokens: { type: 'string', default: '8' },
    iterations: { type: 'string', default: '2' },
    'out-gain': { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});
const log = (line: string): void => { if (!values.json) console.log(line); };

async function makeRuntime(): Promise<Runtime> {
  if (values.kernels === 'scalar') return createScalarRuntime();
  const threads = Number(values.threads);
  if (threads > 1) {
    const { createNodeWasmRuntime } = await import('../src/node/pool-worker.js');
    return createNodeWasmRuntime({ threads });
  }
  const { createWasmRuntime } = await import('../src/kernels/wasm.js');
  return createWasmRuntime();
}

const runtime = await makeRuntime();
const raw = scaledHuginnConfig(Number(values.heads), Number(values.vocab));
const { config, source, parameters } = syntheticHuginnWeights(raw, 1, Number(values['out-gain']));
const loadStart = performance.now();
const model: HuginnModel = huginnFamily.load(config, source, runtime);
log(`# Huginn adaptive-compute benchmark: E=${config.nEmbd}, H=${config.nHeads}, I=${config.intermediateSize}, V=${config.vocabSize}, P/R/C=${config.nPrelude}/${config.nCore}/${config.nCoda}, ${(parameters / 1e6).toFixed(1)} M parameters (bf16), kernels ${runtime.kernels.name}, threads ${values.threads}`);
log(`load ${((performance.now() - loadStart) / 1000).toFixed(1)} s`);

const DEPTH = 32;
const promptLength = Number(values.prompt), newTokens = Number(values.tokens);
const prompt = Array.from({ length: promptLength }, (_, i) => (i * 7919 + 13) % config.vocabSize);

interface Row { name: string; tokensPerSecond: number; meanSteps: number; tokens: number[] }
const rows: Row[] = [];
const steps = new Map<string, number>();
const outputs = new Map<string, number[]>();

const bench = new Bench({ iterations: Number(values.iterations), time: 0, warmupIterations: 1, warmupTime: 0 });
bench.add('fixed depth 32', () => {
  const r = generateMinimal(model, { inputIds: prompt, B: 1, maxNewTokens: newTokens, numSteps: DEPTH, initialStates: seededInitialStates(7) });
  steps.set('fixed depth 32', DEPTH);
  outputs.set('fixed depth 32', r.sequences[0].slice(promptLength));
});
for (const criterion of EXIT_CRITERIA) {
  const name = `adaptive ${criterion} (auto)`;
  bench.add(name, () => {
    const r = generateAdaptive(model, {
      inputIds: prompt, B: 1, maxNewTokens: newTokens, numSteps: DEPTH, initialStates: seededInitialStates(7),
      evaluator: createExitEvaluator(criterion, 'auto', config.vocabSize),
    });
    steps.set(name, r.trace.reduce((a, t) => a + t.steps[0], 0) / r.trace.length);
    outputs.set(name, r.sequences[0].slice(promptLength));
  });
}
await bench.run();

for (const task of bench.tasks) {
  const mean = task.result && 'latency' in task.result ? task.result.latency.mean : NaN; // ms per generation
  rows.push({ name: task.name, tokensPerSecond: newTokens / (mean / 1000), meanSteps: steps.get(task.name)!, tokens: outputs.get(task.name)! });
}
const reference = rows[0];
// ---- cache memory per strategy (latent-diff, auto: early exits leave holes the lookups fill)
const STRATEGIES = ['full', 'skip', 'latest-m4', 'available-m4', 'always-last-m4', 'randomized', 'compress-s4', 'compress-r4', 'compress-anchor', 'latest-m4-compress-s4'];
interface MemoryRow { strategy: string; cacheMB: number; tokensPerSecond: number; meanSteps: number }
const memoryRows: MemoryRow[] = [];
const memoryBench = new Bench({ iterations: 1, time: 0, warmupIterations: 0, warmupTime: 0 });
const memory = new Map<string, { mb: number; steps: number }>();
for (const strategy of STRATEGIES) {
  memoryBench.add(strategy, () => {
    const r = generateAdaptive(model, {
      inputIds: prompt, B: 1, maxNewTokens: newTokens, numSteps: DEPTH, initialStates: seededInitialStates(7), cacheLookupStrategy: strategy,
      evaluator: createExitEvaluator('latent-diff', 'auto', config.vocabSize),
    });
    memory.set(strategy, { mb: r.cache.memoryUsageMB(), steps: r.trace.reduce((a, t) => a + t.steps[0], 0) / r.trace.length });
  });
}
await memoryBench.run();
for (const task of memoryBench.tasks) {
  const mean = task.result && 'latency' in task.result ? task.result.latency.mean : NaN;
  memoryRows.push({ strategy: task.name, cacheMB: memory.get(task.name)!.mb, tokensPerSecond: newTokens / (mean / 1000), meanSteps: memory.get(task.name)!.steps });
}

if (values.json) console.log(JSON.stringify({ kernels: runtime.kernels.name, config: raw, parameters, promptLength, newTokens, rows, memoryRows }, null, 2));
else {
  log(`prompt ${promptLength} tokens, ${newTokens} generated tokens per run (the prefill is the first token step), greedy`);
  log('| run | tokens/s | mean steps/token | speed-up vs fixed 32 | same tokens as fixed 32 |');
  log('|---|---:|---:|---:|---|');
  for (const r of rows) {
    const same = r.tokens.every((t, i) => t === reference.tokens[i]);
    log(`| ${r.name} | ${r.tokensPerSecond.toFixed(2)} | ${r.meanSteps.toFixed(1)} | ${(r.tokensPerSecond / reference.tokensPerSecond).toFixed(2)}× | ${same ? 'yes' : 'no'} |`);
  }
}
if (!values.json) {
  log('');
  log('KV cache per lookup strategy (adaptive latent-diff, auto; f32 keys + values at the end of the run):');
  log('| strategy | cache MB | tokens/s | mean steps/token |');
  log('|---|---:|---:|---:|');
  for (const r of memoryRows) log(`| ${r.strategy} | ${r.cacheMB.toFixed(2)} | ${r.tokensPerSecond.toFixed(2)} | ${r.meanSteps.toFixed(1)} |`);
}
await (runtime as Runtime & { dispose?: () => Promise<void> }).dispose?.();
