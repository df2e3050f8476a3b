/**
 * Ouro decode benchmark on a checkpoint with the real Ouro-1.4B shapes (make one with
 * scripts/ouro-synthetic.ts; random weights, never committed). One run reports:
 *  - load time and peak memory (process max RSS, WASM memory committed),
 *  - decode tokens/s running 1, 2, 3 and 4 loops per token (skip mode with exit_at_step = n−1,
 *    which equals upstream's exit_at_step = n−1 exactly: loop t never depends on later loops), each
 *    as a share of its DRAM-bound limit: (bf16 weight bytes read per token + KV cache bytes read at
 *    that context) ÷ a same-run stream read (bench/stream-baseline.ts, before and after the rounds),
 *  - decode tokens/s in real-exit mode at two thresholds (tokens stop looping at their CDF exit;
 *    copy-forward for the KV they skip), with the loops and flops actually run, and how far the
 *    result moves from upstream (all loops computed, same threshold): max |Δ logits|, argmax and
 *    exit-step agreement on the same tokens, and agreement of the greedy continuations.
 *
 *
 * Long context (--context N, issue 12): decode at all T loops with a cache already holding N tokens
 * (of --kv-dtype f32 | bf16 | f16), as a share of the DRAM-bound limit (weights + the KV bytes read
 * per token ÷ the same-run stream read). The shortcut that makes N cheap: the cache rows are written
 * directly with random values (|x| < 1, rounded to the cache's dtype) instead of prefilling N
 * tokens, whose cost is quadratic and irrelevant to decode speed: attention reads every row the
 * same way whatever it holds. The model is planned for N + tokens (memory shards as needed).
 *
 *   node --import tsx scripts/ouro-synthetic.ts /tmp/ouro-1.4b-synthetic
 *   node --import tsx bench/ouro.bench.ts /tmp/ouro-1.4b-synthetic [--kernels wasm|scalar] [--threads 1]
 *        [--prompt 8] [--tokens 8] [--reps 2] [--thresholds 0.5,0.9] [--json]
 *        [--context 4096 --kv-dtype bf16] [--profile] [--quant-activations int16|int8] [--relaxed]
 *
 * --profile: after the timed runs, one more decode (all loops) with every kernel call timed:
 * per token, GEMV / lm_head / attention / other kernels / outside kernels, and how long the main
 * thread waited for the workers (bench/decode-profile.ts). The timed runs are not instrumented.
 *
 * --quant-activations int16|int8: a quantized checkpoint (`ponder quantize`) with integer activations
 * (WasmRuntimeOptions.quantActivations); the DRAM-bound shares still count bf16 weight bytes.
 * --relaxed: the relaxed-SIMD build (int8 at 4 bits runs its byte dot there).
 *
 * Not part of `npm test` (its file name does not end in .test.ts).
 */
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { ouroFamily } from '../src/models/ouro-family.js';
import { ouroConfigFromJson } from '../src/models/ouro-config.js';
import type { OuroCache, OuroForwardOptions, OuroForwardResult } from '../src/models/ouro.js';
import { openModelDir } from '../src/node/model-dir.js';
import { planFamily } from '../src/models/placement.js';
import { quantizedWeights, readQuantization } from '../src/models/quantized.js';
import { KV_DTYPE_BYTES, type KvDType } from '../src/runtime/plan.js';
import { f32ToBf16Bits, f32ToF16Bits } from '../src/kernels/scalar.js';
import { QUANT_ACTIVATIONS, type QuantActivations } from '../src/kernels/kernels.js';
import { hostCpu } from './cpu.js';
import { totalmem } from 'node:os';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';
import { StreamBaseline } from './stream-baseline.js';
import { FULL_TIMING } from './timing.js';
import { describeProfile, profileDecode } from './decode-profile.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    kernels: { type: 'string', default: 'wasm' },
    threads: { type: 'string', default: '1' },
    prompt: { type: 'string', default: '8' },
    tokens: { type: 'string', default: '8' },
    reps: { type: 'string', default: '2' },
    thresholds: { type: 'string', default: '0.5,0.9' },
    json: { type: 'boolean', default: false },
    context: { type: 'string' },
    'kv-dtype': { type: 'string', default: 'f32' },
    profile: { type: 'boolean', default: false },
    'quant-activations': { type: 'string', default: 'f32' },
    relaxed: { type: 'boolean', default: false },
  },
});
const longContext = values.context === undefined ? 0 : Number(values.context);
const kvDtype = values['kv-dtype'] as KvDType;
const dir = positionals[0] ?? '/tmp/ouro-1.4b-synthetic';
const promptLength = Number(values.prompt), newTokens = Number(values.tokens), reps = Number(values.reps);
const thresholds = values.thresholds!.split(',').map(Number);
const log = (line: string): void => { if (!values.json) console.log(line); };

// a mistyped mode must not time the f32 path under another name
const quantActivations = values['quant-activations'] as QuantActivations;
if (!QUANT_ACTIVATIONS.includes(quantActivations)) {
  throw new Error(`--quant-activations ${quantActivations}: expected one of ${QUANT_ACTIVATIONS.join(', ')}`);
}

async function makeRuntime(): Promise<Runtime & { arena: { bytesUsed: number; bytesCommitted?: number } }> {
  if (values.kernels === 'scalar') return createScalarRuntime();
  const { createNodeWasmRuntime } = await import('../src/node/pool-worker.js');
  return createNodeWasmRuntime({ threads: Number(values.threads), quantActivations, relaxed: values.relaxed });
}

const maxRssBytes = (): number => process.resourceUsage().maxRSS * 1024;
const gib = (n: number): string => `${(n / 2 ** 30).toFixed(2)} GiB`;

// ---- load
const runtime = await makeRuntime();
const loadStart = performance.now();
const md = openModelDir(dir);
if (!md.config) throw new Error(`${dir} has no config.json`);
const config = ouroConfigFromJson(md.config);
// planned for the run's context and KV dtype: shards added as the plan needs them
const planOptions = { context: (longContext || promptLength) + newTokens, kvDtype, hostMemoryBytes: totalmem() };
const weights = quantizedWeights(md.weights, readQuantization(md.config)); // a `ponder quantize` checkpoint as logical [N, K] weights
const plan = planFamily(ouroFamily, config, weights, runtime, planOptions);
await runtime.ensureShards?.(plan.shards.length);
const model = ouroFamily.load(config, weights, runtime, { ...planOptions, plan });
const loadSeconds = (performance.now() - loadStart) / 1000;
const T = config.totalUtSteps, V = config.vocabSize;
const cpu = hostCpu();
log(`# Ouro decode benchmark: ${dir} (${md.layout}, L=${config.numLayers}, H=${config.hiddenSize}, T=${T}), kernels ${runtime.kernels.name}, threads ${values.threads}, ${kvDtype} KV cache, ${plan.shards.length} memory shard(s)`);
log(`host: ${cpu.modelName} (${cpu.vendor} family ${cpu.family ?? '?'} model ${cpu.model ?? '?'})`);
log(`load: ${loadSeconds.toFixed(1)} s; max RSS after load ${gib(maxRssBytes())}; arena ${gib(runtime.arena.bytesUsed)}`);

// A fixed pseudo-random prompt (the weights are random: any ids will do).
const prompt = Array.from({ length: promptLength }, (_, i) => (i * 7919 + 13) % V);

function argmaxRow(logits: Float32Array, row: number): number {
  let best = 0;
  for (let v = 1; v < V; v++) if (logits[row * V + v] > logits[row * V + best]) best = v;
  return best;
}

interface DecodeRun { tokens: number[]; steps: OuroForwardResult[] }

/** A decode configuration with its own cache, prefilled once; `decode` rewinds to the prompt. */
class Decoder {
  readonly cache: OuroCache = model.newCache(promptLength + newTokens);
  readonly first: number;
  run: DecodeRun;
  readonly seconds: number[] = [];

  constructor(readonly name: string, readonly opts: OuroForwardOptions) {
    const r = model.forward(prompt, { ...opts, cache: this.cache, logitsToKeep: 1 });
    this.first = argmaxRow(r.logits, 0);
    this.run = this.decode(); // warm-up (V8 tier-up) and the run we inspect
  }

  decode(): DecodeRun {
    this.cache.length = promptLength;
    const tokens: number[] = [], steps: OuroForwardResult[] = [];
    let next = this.first;
    for (let s = 0; s < newTokens; s++) {
      tokens.push(next);
      const r = model.forward([next], { ...this.opts, cache: this.cache });
      steps.push(r);
      next = argmaxRow(r.logits, 0);
    }
    return { tokens, steps };
  }

  get tokensPerSecond(): number {
    const sorted = [...this.seconds].sort((a, b) => a - b);
    return newTokens / sorted[Math.floor(sorted.length / 2)];
  }

  get flopsPerToken(): number { return this.run.steps.reduce((n, r) => n + r.trace[0].flops, 0) / newTokens; }
}

if (longContext > 0) {
  await longContextRun();
  process.exit(0);
}

/**
 * Decode at all T loops after `longContext` cached tokens (rows written directly, see the header),
 * `reps` runs of `newTokens` tokens, each rewound to the same cache; medians against the stream read.
 */
async function longContextRun(): Promise<void> {
  const cache = model.newCache(longContext + newTokens);
  const round = kvDtype === 'bf16' ? f32ToBf16Bits : kvDtype === 'f16' ? f32ToF16Bits : null;
  let seed = 0x2545f491;
  const rows = new Float32Array(longContext * model.kvDim);
  for (let s = 0; s < cache.slots; s++) {
    for (const buf of [cache.keys[s], cache.values[s]]) {
      for (let i = 0; i < rows.length; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; rows[i] = seed / 2 ** 31 - 1; }
      if (round) for (let i = 0; i < rows.length; i++) buf[i] = round(rows[i]); else (buf as Float32Array).set(rows);
    }
  }
  cache.loopsRun.fill(T, 0, longContext);
  const decodeOnce = (): number => {
    cache.length = longContext;
    let next = 1;
    const t0 = performance.now();
    for (let s = 0; s < newTokens; s++) {
      const r = model.forward([next], { cache });
      next = argmaxRow(r.logits, 0);
    }
    return (performance.now() - t0) / 1000;
  };
  decodeOnce(); // warm-up
  const stream = await StreamBaseline.create(512 * 2 ** 20, values.kernels === 'scalar' ? 1 : Number(values.threads));
  const before = await stream.gbps(64 * 2 ** 20, FULL_TIMING);
  const seconds: number[] = [];
  for (let r = 0; r < reps; r++) seconds.push(decodeOnce());
  const after = await stream.gbps(64 * 2 ** 20, FULL_TIMING);
  await stream.dispose();
  seconds.sort((a, b) => a - b);
  const tokensPerSecond = newTokens / seconds[Math.floor(seconds.length / 2)];
  const { hiddenSize: H, intermediateSize: I, numLayers: L, numKvHeads, headDim } = config;
  const meanContext = longContext + (newTokens + 1) / 2;
  const weightBytes = T * L * 2 * (4 * H * H + 3 * H * I) + 2 * V * H + 2 * H;
  const kvBytes = T * L * meanContext * 2 * numKvHeads * headDim * KV_DTYPE_BYTES[kvDtype];
  const streamGbps = (before + after) / 2;
  const bound = (streamGbps * 1e9) / (weightBytes + kvBytes);
  const row = { context: longContext, kvDtype, threads: Number(values.threads), tokensPerSecond, weightBytesPerToken: weightBytes, kvBytesPerToken: kvBytes, streamGbps: [before, after],
    boundTokensPerSecond: bound, pctOfDramBound: (100 * tokensPerSecond) / bound, shards: plan.shards.length, cpu: cpu.modelName, cpuFamily: cpu.family, cpuModel: cpu.model,
    peakRssBytes: maxRssBytes(), loadSeconds };
  log(`stream read (${stream.threads} thread${stream.threads > 1 ? 's' : ''}): ${before.toFixed(1)} GB/s before, ${after.toFixed(1)} after`);
  log(`decode ${T} loops at context ${longContext} (${kvDtype} KV): ${tokensPerSecond.toFixed(3)} tok/s; ${(weightBytes / 1e9).toFixed(2)} GB weights + ${(kvBytes / 1e9).toFixed(2)} GB KV per token: ${row.pctOfDramBound.toFixed(0)}% of the DRAM bound (${bound.toFixed(3)} tok/s); median of ${reps} runs of ${newTokens} tokens; max RSS ${gib(row.peakRssBytes)}`);
  if (values.profile) {
    const p = profileDecode(runtime, V, newTokens, () => { decodeOnce(); });
    for (const line of describeProfile(p, T * L * 2 * (4 * H * H + 3 * H * I), 2 * V * H, streamGbps)) log(line);
    (row as Record<string, unknown>).profile = p;
  }
  if (values.json) console.log(JSON.stringify(row, null, 2));
  await runtime.dispose?.();
}

const decoders: Decoder[] = [];
for (let loops = 1; loops <= T; loops++) decoders.push(new Decoder(`${loops} loop${loops > 1 ? 's' : ''}`, { exitMode: 'skip', exitAtStep: loops - 1 }));
for (const tau of thresholds) decoders.push(new Decoder(`real exit τ=${tau}`, { exitMode: 'skip', exitThreshold: tau, missingKv: 'copy-forward' }));

// DRAM bandwidth drifts minute to minute: a stream read of 64 MiB blocks over a 512 MiB buffer, by
// as many threads as the kernels use, right before and right after the decode rounds; their mean
// is the limit.
const stream = await StreamBaseline.create(512 * 2 ** 20, values.kernels === 'scalar' ? 1 : Number(values.threads));
const streamBefore = await stream.gbps(64 * 2 ** 20, FULL_TIMING);

// Rounds interleave the configurations, so load from other processes hits all of them alike;
// each round is one tinybench run timing one decode of every configuration.
for (let round = 0; round < reps; round++) {
  const bench = new Bench({ iterations: 1, time: 0, warmupIterations: 0, warmupTime: 0, throws: true });
  for (const d of decoders) bench.add(d.name, () => { d.run = d.decode(); });
  await bench.run();
  bench.tasks.forEach((task, i) => {
    if (task.result.state !== 'completed') throw new Error(`${task.name}: ${task.result.state}`);
    decoders[i].seconds.push(task.result.latency.mean / 1000);
  });
}

const streamAfter = await stream.gbps(64 * 2 ** 20, FULL_TIMING);
const streamGbps = (streamBefore + streamAfter) / 2;
await stream.dispose();
log(`stream read (${stream.threads} thread${stream.threads > 1 ? 's' : ''}): ${streamBefore.toFixed(1)} GB/s before, ${streamAfter.toFixed(1)} after the decode rounds`);

// Bytes one decode token reads at `loops` loops: every layer's bf16 linears once per loop, the
// lm_head and one embedding row once, and the f32 KV cache of each layer and loop at the mean
// context of the run (norms and activations are a few KB).
const { hiddenSize: H, intermediateSize: I, numLayers: L, numKvHeads, headDim } = config;
const layerWeightBytes = 2 * (4 * H * H + 3 * H * I);
function bytesPerToken(loops: number): number {
  const meanContext = promptLength + (newTokens + 1) / 2;
  return loops * L * (layerWeightBytes + meanContext * 2 * numKvHeads * headDim * 4) + 2 * V * H + 2 * H;
}

const rows: Record<string, unknown>[] = [];
const allLoopsFlops = decoders[T - 1].flopsPerToken;
decoders.slice(0, T).forEach((d, n) => {
  const bytes = bytesPerToken(n + 1);
  const boundTokensPerSecond = (streamGbps * 1e9) / bytes;
  const row = { mode: d.name, tokensPerSecond: d.tokensPerSecond, meanLoops: d.run.steps[0].trace[0].steps, gflopsPerToken: d.flopsPerToken / 1e9,
    bytesPerToken: bytes, streamGbps, boundTokensPerSecond, pctOfDramBound: (100 * d.tokensPerSecond) / boundTokensPerSecond };
  rows.push(row);
  log(`decode ${row.mode.padEnd(26)} ${row.tokensPerSecond.toFixed(3).padStart(8)} tok/s   ${row.gflopsPerToken.toFixed(2)} GFLOP/token, ${(bytes / 1e9).toFixed(2)} GB/token: ${row.pctOfDramBound.toFixed(0)}% of the DRAM bound (${boundTokensPerSecond.toFixed(2)} tok/s)`);
});

// Real-exit mode against upstream (all loops, same threshold).
thresholds.forEach((tau, k) => {
  const d = decoders[T + k], run = d.run;
  const loopsRun = run.steps.map((r) => r.trace[0].steps);
  // Upstream on the same tokens: one no-cache forward over prompt + the skip run's tokens.
  const upstream = model.forward([...prompt, ...run.tokens], { exitThreshold: tau });
  let maxAbs = 0, argmaxAgree = 0, exitAgree = 0;
  run.steps.forEach((r, s) => {
    const row = promptLength + s;
    for (let v = 0; v < V; v++) maxAbs = Math.max(maxAbs, Math.abs(r.logits[v] - upstream.logits[row * V + v]));
    if (argmaxRow(r.logits, 0) === argmaxRow(upstream.logits, row)) argmaxAgree++;
    if (r.exitSteps![0] === upstream.exitSteps![row]) exitAgree++;
  });
  // Upstream's own greedy continuation from the same prompt.
  const upstreamRun = new Decoder(`upstream τ=${tau}`, { exitThreshold: tau }).run;
  const sameGreedy = run.tokens.filter((t, i) => t === upstreamRun.tokens[i]).length;
  const upstreamExits = upstreamRun.steps.map((r) => r.exitSteps![0] + 1);
  const row = {
    mode: d.name, tokensPerSecond: d.tokensPerSecond,
    meanLoops: loopsRun.reduce((a, b) => a + b, 0) / newTokens, gflopsPerToken: d.flopsPerToken / 1e9,
    flopsSaved: 1 - d.flopsPerToken / allLoopsFlops,
    loopsPerToken: loopsRun, upstreamReadoutLoops: upstreamExits,
    maxAbsLogitDiff: maxAbs, argmaxAgreement: argmaxAgree / newTokens, exitStepAgreement: exitAgree / newTokens,
    greedyTokensAgreeing: sameGreedy / newTokens,
  };
  rows.push(row);
  log(`decode ${row.mode.padEnd(26)} ${row.tokensPerSecond.toFixed(3).padStart(8)} tok/s   ${row.gflopsPerToken.toFixed(2)} GFLOP/token, mean loops ${row.meanLoops.toFixed(2)} ${JSON.stringify(loopsRun)}, flops saved ${(100 * row.flopsSaved).toFixed(1)}%`);
  log(`   vs upstream (all loops, τ=${tau}) on the same tokens: max |Δlogits| ${maxAbs.toExponential(2)}, argmax agree ${(100 * row.argmaxAgreement).toFixed(0)}%, exit step agree ${(100 * row.exitStepAgreement).toFixed(0)}%; greedy tokens agree with upstream's own continuation ${(100 * row.greedyTokensAgreeing).toFixed(0)}% (its read-out loops ${JSON.stringify(upstreamExits)})`);
});

let profile: ReturnType<typeof profileDecode> | undefined;
if (values.profile) {
  profile = profileDecode(runtime, V, newTokens, () => { decoders[T - 1].decode(); });
  for (const line of describeProfile(profile, T * layerWeightBytes * L, 2 * V * H, streamGbps)) log(line);
}

const peak = maxRssBytes();
const committed = (runtime.arena as { bytesCommitted?: number }).bytesCommitted;
log(`peak memory: max RSS ${gib(peak)}${committed !== undefined ? `, WASM memory committed ${gib(committed)}` : ''}; prompt ${promptLength} tokens, ${newTokens} decoded per run, median of ${reps} interleaved rounds`);
if (values.json) console.log(JSON.stringify({ dir, kernels: runtime.kernels.name, threads: Number(values.threads), loadSeconds, peakRssBytes: peak, wasmCommittedBytes: committed, promptLength, newTokens, reps, streamGbps: [streamBefore, streamAfter], rows, profile }, null, 2));
await runtime.dispose?.();
