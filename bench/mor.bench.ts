/**
 * MoR decode benchmark: the causal threshold mode (spec/mor.md) at thresholds 0.3 / 0.5 / 0.7
 * against the full-depth model (upstream mode: every decoded token runs every recursion), on the
 * same synthetic, seeded expert-choice weights, in one run. Reports decode tokens/s and the compute
 * actually done per decoded token (recursions, decoder-layer invocations, FLOPs) from the traces.
 *
 *   node --import tsx bench/mor.bench.ts [--kernels wasm|scalar] [--hidden 256] [--prompt 16]
 *        [--tokens 32] [--reps 3] [--thresholds 0.3,0.5,0.7] [--json]
 *
 * Not part of `npm test` (its file name does not end in .test.ts).
 */
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { configObject } from '../src/format/config.js';
import { morFamily } from '../src/models/mor-family.js';
import { MorModel, type ForwardOptions, type MorSession } from '../src/models/mor.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';
import { fixtureWeights, makeFixture } from '../test/mor-fixture.js';

const { values } = parseArgs({
  options: {
    kernels: { type: 'string', default: 'wasm' },
    hidden: { type: 'string', default: '256' },
    prompt: { type: 'string', default: '16' },
    tokens: { type: 'string', default: '32' },
    reps: { type: 'string', default: '3' },
    thresholds: { type: 'string', default: '0.3,0.5,0.7' },
    json: { type: 'boolean', default: false },
  },
});
const H = Number(values.hidden), promptLength = Number(values.prompt), newTokens = Number(values.tokens), reps = Number(values.reps);
const thresholds = values.thresholds!.split(',').map(Number);
const log = (line: string): void => { if (!values.json) console.log(line); };

async function makeRuntime(): Promise<Runtime> {
  if (values.kernels === 'scalar') return createScalarRuntime();
  const { createWasmRuntime } = await import('../src/kernels/wasm.js');
  return createWasmRuntime();
}

// Expert-choice MoR, middle_cycle, R = 3 recursions of 2 layers (8 decoder layers), seeded weights.
const R = 3, bd = 2, V = 4096;
const fx = makeFixture({ variant: 'expert', sharing: 'middle_cycle', R, bd, hidden: H, heads: H / 64, kvHeads: Math.max(1, H / 128), headDim: 64, intermediate: 3 * H, vocab: V, seed: 20260101 });
(fx.config.model_config as Record<string, unknown>).max_position_embeddings = promptLength + newTokens + 1;
const runtime = await makeRuntime();
const model = morFamily.load(morFamily.parseConfig(configObject(fx.config, 'synthetic MoR')), fixtureWeights(fx.tensors, 'synthetic MoR'), runtime);
log(`# MoR decode benchmark: expert-choice middle_cycle, H=${H}, R=${R}, bd=${bd}, V=${V}; prompt ${promptLength}, ${newTokens} decoded tokens; kernels ${runtime.kernels.name}`);

const prompt = [Array.from({ length: promptLength }, (_, i) => (i * 7919 + 13) % V)];

interface DecodeStats { tokens: number[]; recursions: number; layers: number; flops: number }

function prefill(opts: ForwardOptions): { session: MorSession; first: number } {
  const session = model.newSession(1, promptLength + newTokens);
  const r = model.forward(session, prompt, opts);
  return { session, first: MorModel.lastArgmax(r.logits, 1, promptLength, V)[0] };
}

function decode(session: MorSession, first: number, opts: ForwardOptions): DecodeStats {
  const stats: DecodeStats = { tokens: [], recursions: 0, layers: 0, flops: 0 };
  let next = first;
  for (let s = 0; s < newTokens; s++) {
    stats.tokens.push(next);
    const r = model.forward(session, [[next]], opts);
    stats.recursions += r.trace.depth[0];
    stats.layers += r.trace.layerRuns[0];
    stats.flops += r.trace.flops[0];
    next = MorModel.lastArgmax(r.logits, 1, 1, V)[0];
  }
  return stats;
}

async function timeDecode(name: string, opts: ForwardOptions): Promise<{ seconds: number; stats: DecodeStats }> {
  let stats = decode(prefill(opts).session, prefill(opts).first, opts); // warm-up, and the run we inspect
  let ready = prefill(opts);
  const bench = new Bench({ iterations: reps, time: 0, warmupIterations: 0, warmupTime: 0, throws: true });
  bench.add(name, () => { stats = decode(ready.session, ready.first, opts); }, { beforeEach: () => { ready = prefill(opts); } });
  await bench.run();
  const result = bench.tasks[0].result;
  if (result.state !== 'completed') throw new Error(`${name}: ${result.state}`);
  return { seconds: result.latency.p50 / 1000, stats };
}

const rows: Record<string, unknown>[] = [];
const full = await timeDecode('full depth (upstream)', { mode: 'upstream' });
const report = (name: string, run: { seconds: number; stats: DecodeStats }): void => {
  const { seconds, stats } = run;
  const agree = stats.tokens.filter((t, i) => t === full.stats.tokens[i]).length;
  const row = {
    mode: name,
    tokensPerSecond: newTokens / seconds,
    recursionsPerToken: stats.recursions / newTokens,
    layersPerToken: stats.layers / newTokens,
    mflopsPerToken: stats.flops / newTokens / 1e6,
    computeVsFullDepth: stats.flops / full.stats.flops,
    greedyAgreementWithFullDepth: agree / newTokens,
  };
  rows.push(row);
  log(`${name.padEnd(24)} ${row.tokensPerSecond.toFixed(1).padStart(8)} tok/s   ${row.recursionsPerToken.toFixed(2)} recursions/token   ` +
    `${row.layersPerToken.toFixed(2)} layers/token   ${row.mflopsPerToken.toFixed(2)} MFLOP/token (${(100 * row.computeVsFullDepth).toFixed(0)}% of full depth)   ` +
    `greedy tokens equal to full depth: ${agree}/${newTokens}`);
};
report('full depth (upstream)', full);
for (const threshold of thresholds) report(`causal τ=${threshold}`, await timeDecode(`causal τ=${threshold}`, { mode: 'causal', threshold }));
if (values.json) console.log(JSON.stringify({ kernels: runtime.kernels.name, hidden: H, R, bd, vocab: V, prompt: promptLength, tokens: newTokens, rows }, null, 2));
