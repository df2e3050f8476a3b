/**
 * Quantized weights (issue 17), one run, same process:
 *  1. kernels: decode GEMV (M = 1) and prefill GEMM (M = 64) on Ouro-1.4B's MLP shapes for bf16, q8
 *     and q4 (group 64) weights, cold (rotating through copies larger than the caches) and hot (one
 *     small matrix that stays in L2), next to a same-run stream read of the same bytes: where the
 *     decode time goes at 1 thread (dequantization compute = the hot rate; memory = bytes ÷ stream).
 *  2. model: decode tokens/s of an Ouro-1.4B-shaped checkpoint (synthetic weights) in bf16 and in
 *     its `ponder quantize` 8- and 4-bit versions, at 1 and 2 threads, fixed depth 4 (all loops).
 *  Quantized weights run in both modes: q8/q4 the exact mode (f32 activations), q8·i16/q4·i16 the
 *  opt-in int16-activation mode (spec/quantization.md).
 *
 *   node bin/ponder.js quantize DIR DIR-q4 --bits 4; node bin/ponder.js quantize DIR DIR-q8 --bits 8
 *   node --import tsx bench/quant.bench.ts [--model DIR --q8 DIR-q8 --q4 DIR-q4] [--tokens 8] [--kernels-only | --skip-kernels]
 *        [--int16-only] [--int8] [--rounds N]
 *
 * --int8: also the relaxed-SIMD build, bf16 and q4 with int8 activations (its byte dot; Node 20 gets
 * --experimental-wasm-relaxed-simd through enableRelaxedSimd).
 *
 * --rounds N (N > 1): per thread count, every model is loaded once and the models then decode in N
 * interleaved rounds (bf16, q8, q4, … , bf16, q8, …), so a burst of foreign load or a slow spell of the
 * host hits every row alike; each row reports the median tok/s of its rounds, their range, and the
 * ratio of medians to bf16 at the same thread count. (2-thread decode on this 2-vCPU KVM host swings
 * by up to 1.5× between single runs of the same build; one round per row cannot show a ratio.)
 *
 * Not part of `npm test` nor of CI. Prints the CPU model and the load average with every table.
 */
import { parseArgs } from 'node:util';
import { loadavg } from 'node:os';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { createNodeWasmRuntime, enableRelaxedSimd } from '../src/node/pool-worker.js';
import { loadModelDir } from '../src/node/index.js';
import type { LinearSource, LinearWeight } from '../src/kernels/kernels.js';
import { quantizeMatrix } from '../src/convert/quantize.js';
import { fixed } from '../src/depth/policy.js';
import { StreamBaseline } from './stream-baseline.js';
import { describeCpu, hostCpu } from './cpu.js';
import { FULL_TIMING, timeSync } from './timing.js';

const { values } = parseArgs({ options: {
  'int16-only': { type: 'boolean', default: false }, int8: { type: 'boolean', default: false },
  model: { type: 'string' }, q8: { type: 'string' }, q4: { type: 'string' }, tokens: { type: 'string', default: '8' }, rounds: { type: 'string', default: '1' }, 'kernels-only': { type: 'boolean', default: false }, 'skip-kernels': { type: 'boolean', default: false },
} });
const load = (): string => loadavg().map((l) => l.toFixed(1)).join(' ');
console.log(`# ${describeCpu(hostCpu())}; load average ${load()} at start`);

// ---- 1. kernels
// q8/q4: the exact mode (f32 activations); q8·i16/q4·i16: the same weights with int16 activations
type Format = 'bf16' | 'q8' | 'q4' | 'q8·i16' | 'q4·i16';
const FORMATS: Format[] = ['bf16', 'q8', 'q4', 'q8·i16', 'q4·i16'];
function sourceOf(format: Format, w: Float32Array, N: number, K: number): LinearSource {
  if (format === 'bf16') return { dtype: 'bf16', data: new Uint16Array(new Uint32Array(w.buffer).map((b) => b >>> 16)) };
  const bits = format.startsWith('q8') ? 8 : 4;
  const q = quantizeMatrix(w, N, K, bits, 64, 'F32');
  return { dtype: bits === 8 ? 'q8' : 'q4', groupSize: 64, codes: q.codes, scales: q.scales as Float32Array, biases: q.biases as Float32Array };
}
/** bytes of weight data a decode reads: 2 per bf16 weight; codes plus one f32 scale and bias per group */
const streamBytes = (format: Format, N: number, K: number): number => format === 'bf16' ? 2 * N * K : N * K * (format.startsWith('q8') ? 1 : 0.5) + 8 * N * K / 64;

const rows: string[] = [];
if (!values['skip-kernels']) await kernelRows();
async function kernelRows(): Promise<void> {
const exact = await createWasmRuntime(), int16 = await createWasmRuntime({ quantActivations: 'int16' });
const stream = await StreamBaseline.create(512 * 2 ** 20);
for (const [N, K, what] of [[5632, 2048, 'gate/up 5632×2048'], [2048, 5632, 'down 2048×5632']] as const) {
  const w = new Float32Array(N * K);
  for (let i = 0; i < w.length; i++) w[i] = Math.sin(i * 0.61803) * 0.05;
  for (const format of FORMATS) {
    const rt = format.endsWith('i16') ? int16 : exact;
    const src = sourceOf(format, w, N, K);
    const copies: LinearWeight[] = [];
    let bound = 0;
    while (bound < 160 * 2 ** 20) { const b = rt.kernels.bindLinear(src, N, K); copies.push(b); bound += b.bytes; }
    const x = rt.arena.f32(64 * K); x.set(w.subarray(0, 64 * K));
    const y = rt.arena.f32(64 * N);
    let c = 0;
    const cold = await timeSync(() => { rt.kernels.linear(y, x, copies[c], 1); c = (c + 1) % copies.length; }, FULL_TIMING);
    const hotN = 128, hot = rt.kernels.bindLinear(sourceOf(format, w.subarray(0, hotN * K), hotN, K), hotN, K);
    const hotT = await timeSync(() => rt.kernels.linear(y, x, hot, 1), FULL_TIMING);
    const prefill = await timeSync(() => { rt.kernels.linear(y, x, copies[c], 64); c = (c + 1) % copies.length; }, FULL_TIMING);
    const bytes = streamBytes(format, N, K);
    const gbps = await stream.gbps(Math.min(bytes, 64 * 2 ** 20), FULL_TIMING);
    const nsPerWeight = (cold.seconds * 1e9) / (N * K), hotNs = (hotT.seconds * 1e9) / (hotN * K), memNs = (bytes / (gbps * 1e9)) * 1e9 / (N * K);
    rows.push(`| ${what} | ${format} | ${(cold.seconds * 1e3).toFixed(3)} ms | ${(bytes / cold.seconds / 1e9).toFixed(1)} GB/s (${(100 * bytes / cold.seconds / 1e9 / gbps).toFixed(0)} % of a ${gbps.toFixed(1)} GB/s stream) | ${nsPerWeight.toFixed(3)} | ${hotNs.toFixed(3)} | ${memNs.toFixed(3)} | ${(2 * 64 * N * K / prefill.seconds / 1e9).toFixed(1)} |`);
    console.log(rows[rows.length - 1]);
  }
}
await stream.dispose();
console.log(`\n## kernels, 1 thread (load average ${load()} at the end)\n`);
console.log('| matrix | weights | decode (M = 1) | read rate | ns/weight cold | ns/weight hot (compute alone) | ns/weight memory (bytes ÷ stream) | prefill M = 64 GFLOP/s |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
}
if (values['kernels-only'] || (!values.model && !values.q8 && !values.q4)) process.exit(0);

// ---- 2. model decode
const tokens = Number(values.tokens);
const prompt = [17, 4, 99, 1024, 7, 300, 12, 5];
const table: string[] = [];
// [label, checkpoint, quantActivations, relaxed build]
const models = [['bf16', values.model, 'f32', false], ['q8', values.q8, 'f32', false], ['q4', values.q4, 'f32', false], ['q8·i16', values.q8, 'int16', false], ['q4·i16', values.q4, 'int16', false],
  ['bf16 relaxed', values.model, 'f32', true], ['q4·i8 relaxed', values.q4, 'int8', true]] as const;
const rounds = Number(values.rounds);
if (values.int8) enableRelaxedSimd();
const chosen = models.filter(([label, dir, quantActivations, relaxed]) => dir && (!relaxed || values.int8) && !(values['int16-only'] && quantActivations === 'f32' && label !== 'bf16' && label !== 'bf16 relaxed'));
const decodeTokS = async (model: Awaited<ReturnType<typeof loadModelDir>>): Promise<number> => {
  const r = await model.generate(prompt, { maxNewTokens: tokens, policy: fixed(4) }).result();
  return r.trace.tokens.filter((t) => t.phase === 'decode').length / (r.trace.decodeMs / 1000);
};
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
for (const threads of [1, 2]) {
  const loaded: { label: string; runtime: Awaited<ReturnType<typeof createWasmRuntime>>; model: Awaited<ReturnType<typeof loadModelDir>>; loadS: number; tps: number[] }[] = [];
  for (const [label, dir, quantActivations, relaxed] of chosen) {
    const runtime = threads === 1 ? await createWasmRuntime({ quantActivations, relaxed }) : await createNodeWasmRuntime({ threads, quantActivations, relaxed });
    const t0 = performance.now();
    const model = await loadModelDir(dir!, { runtime, tokenizer: false });
    const loadS = (performance.now() - t0) / 1000;
    await model.generate(prompt, { maxNewTokens: 1, policy: fixed(4) }).result(); // warm-up: TurboFan, caches
    if (rounds > 1) { loaded.push({ label, runtime, model, loadS, tps: [] }); continue; }
    // one round: one model in memory at a time
    table.push(`| ${label} | ${threads} | ${(await decodeTokS(model)).toFixed(3)} | ${(runtime.arena.bytesUsed / 2 ** 30).toFixed(2)} GiB | ${loadS.toFixed(0)} s | ${load()} |`);
    console.log(table[table.length - 1]);
    await runtime.dispose?.();
  }
  for (let round = 0; round < rounds && loaded.length > 0; round++) {
    for (const row of loaded) row.tps.push(await decodeTokS(row.model));
    console.log(`# threads ${threads}, round ${round + 1}/${rounds}: ${loaded.map((r) => `${r.label} ${r.tps[round].toFixed(3)}`).join(', ')}; load ${load()}`);
  }
  const base = loaded.find((r) => r.label === 'bf16');
  for (const row of loaded) {
    const m = median(row.tps);
    table.push(`| ${row.label} | ${threads} | ${m.toFixed(3)} (${Math.min(...row.tps).toFixed(3)}–${Math.max(...row.tps).toFixed(3)}, ${row.tps.length} rounds) | ${base ? (m / median(base.tps)).toFixed(2) + '×' : '–'} | ${(row.runtime.arena.bytesUsed / 2 ** 30).toFixed(2)} GiB | ${row.loadS.toFixed(0)} s | ${load()} |`);
    console.log(table[table.length - 1]);
    await row.runtime.dispose?.();
  }
}
console.log(`\n## Ouro-1.4B shapes, decode at fixed depth 4, ${tokens} tokens after an 8-token prompt\n`);
console.log('(q8·i16, q4·i16: the same checkpoints with int16 activations, WasmRuntimeOptions.quantActivations; with --int8, "relaxed" rows run the relaxed-SIMD build, q4·i8 with int8 activations)\n');
console.log(rounds > 1 ? '| weights | threads | tok/s, median (min–max) | × bf16 (medians) | WASM memory used | load | load average |' : '| weights | threads | tok/s | WASM memory used | load | load average |');
console.log(rounds > 1 ? '|---|---|---|---|---|---|---|' : '|---|---|---|---|---|---|');
for (const r of table) console.log(r);
