/**
 * Huginn at the full huginn-0125 shapes (E=5280, 55 heads, I=17920, V=65536, P/R/C=2/4/2) with
 * random bf16 weights: fixed depth 32 vs every exit criterion, tokens/s and mean steps per token.
 * Runs only when the machine has the memory — it checks first and explains when it does not:
 *   - the WASM runtime keeps bf16 weights as bf16, but its memory is one 32-bit address space
 *     (4 GiB) and the weights alone are 7.1 GB, so the wasm kernels cannot hold this model;
 *   - the scalar runtime widens weights to f32 (14.3 GB) and needs that much free RAM (and it is
 *     slow: expect minutes per token).
 *
 *   - quantized (--bits 4|8, the weights quantized as they are read, as `ponder quantize` would
 *     write them: MLX layout, group 32 as n_embd = 5280 is no multiple of 64): 4-bit weights take about 2.5 GB, so the WASM kernels hold
 *     the model in one memory (issue 17).
 *
 *   node --import tsx bench/huginn-fullsize.bench.ts [--kernels scalar|wasm] [--bits 4|8] [--threads N] [--tokens 2] [--prompt 4] [--criteria kl,...] --run
 *
 * Without --run it only prints whether the machine can hold the model (the load alone takes
 * many minutes and most of the RAM; do not start it on a shared machine by accident).
 *
 * Not part of `npm test` nor of CI.
 */
import { freemem } from 'node:os';
import { parseArgs } from 'node:util';
import { HUGINN_0125_CONFIG, seededInitialStates } from '../src/models/huginn.js';
import { huginnFamily } from '../src/models/huginn-family.js';
import { createExitEvaluator, EXIT_CRITERIA } from '../src/depth/criteria.js';
import { generateAdaptive, generateMinimal } from '../src/models/huginn-generate.js';
import { WASM_MAX_BYTES } from '../src/runtime/wasm-arena.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';
import { syntheticHuginnWeights } from './huginn-synthetic.js';
import { quantizedOnRead } from './quantized-on-read.js';
import { huginnTensors } from '../src/models/huginn-config.js';
import { DEFAULT_KEEP } from '../src/convert/quantize.js';
import { loadavg } from 'node:os';
import { describeCpu, hostCpu } from './cpu.js';

const { values } = parseArgs({ options: { kernels: { type: 'string', default: 'scalar' }, bits: { type: 'string' }, 'group-size': { type: 'string', default: '32' }, threads: { type: 'string', default: '1' }, criteria: { type: 'string' }, tokens: { type: 'string', default: '2' }, prompt: { type: 'string', default: '4' }, run: { type: 'boolean', default: false } } });
const synthetic = syntheticHuginnWeights({ ...HUGINN_0125_CONFIG }, 1);
const { config, parameters } = synthetic;
const bits = values.bits === undefined ? null : Number(values.bits) as 4 | 8;
// group 32 by default: n_embd = 5280 = 32·165 is no multiple of 64, so with group 64 every Linear reading the residual stream stays bf16
const groupSize = Number(values['group-size']);
const source = bits === null ? synthetic.source : quantizedOnRead(synthetic.source, huginnTensors(config), { bits, groupSize, keep: DEFAULT_KEEP });
const gb = (n: number): string => `${(n / 1e9).toFixed(1)} GB`;
// quantized: codes plus an f32 scale and bias per 64 weights, in the WASM memory (the embedding's codes stay outside it, but a tied lm_head binds them)
const weightBytes = bits !== null ? parameters * (bits / 8 + 8 / groupSize) : values.kernels === 'wasm' ? 2 * parameters : 4 * (parameters - config.vocabSize * config.nEmbd) + 2 * config.vocabSize * config.nEmbd + 4 * config.vocabSize * config.nEmbd;
console.log(`# ${describeCpu(hostCpu())}; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log(`# huginn-0125 shapes, random bf16 weights${bits !== null ? `, quantized to ${bits} bits (group ${groupSize}) on read` : ''}: ${(parameters / 1e9).toFixed(3)} B parameters; ${values.kernels} kernels need about ${gb(weightBytes)} for weights`);
if (values.kernels === 'wasm' && weightBytes > WASM_MAX_BYTES) {
  console.log(`not run: the WASM runtime's memory is limited to ${gb(WASM_MAX_BYTES)} (32-bit addresses); the weights alone need ${gb(weightBytes)}`);
  process.exit(0);
}
if (weightBytes * 1.1 > freemem()) {
  console.log(`not run: ${gb(freemem())} free, about ${gb(weightBytes * 1.1)} needed`);
  process.exit(0);
}
if (!values.run) {
  console.log(`fits: ${gb(freemem())} free; pass --run to load it and generate (expect a long run)`);
  process.exit(0);
}

let runtime: Runtime;
if (values.kernels === 'wasm') { const { createNodeWasmRuntime } = await import('../src/node/pool-worker.js'); runtime = await createNodeWasmRuntime({ threads: Number(values.threads) }); }
else runtime = createScalarRuntime();
const t0 = performance.now();
const model = huginnFamily.load(config, source, runtime);
console.log(`load ${((performance.now() - t0) / 1000).toFixed(0)} s`);
const newTokens = Number(values.tokens);
const prompt = Array.from({ length: Number(values.prompt) }, (_, i) => (i * 7919 + 13) % config.vocabSize);
const time = (run: () => number): { tps: number; steps: number } => { const s = performance.now(); const steps = run(); return { tps: newTokens / ((performance.now() - s) / 1000), steps }; };
const fixed = time(() => { generateMinimal(model, { inputIds: prompt, B: 1, maxNewTokens: newTokens, numSteps: 32, initialStates: seededInitialStates(7) }); return 32; });
console.log(`| fixed depth 32 | ${fixed.tps.toFixed(4)} tokens/s | 32 steps/token |`);
for (const criterion of values.criteria ? values.criteria.split(',') : EXIT_CRITERIA) {
  const r = time(() => {
    const g = generateAdaptive(model, { inputIds: prompt, B: 1, maxNewTokens: newTokens, numSteps: 32, initialStates: seededInitialStates(7), evaluator: createExitEvaluator(criterion, 'auto', config.vocabSize) });
    return g.trace.reduce((a, t) => a + t.steps[0], 0) / g.trace.length;
  });
  console.log(`| adaptive ${criterion} | ${r.tps.toFixed(4)} tokens/s | ${r.steps.toFixed(1)} steps/token |`);
}
console.log(`# load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at the end`);
process.exit(0); // the pool's workers
