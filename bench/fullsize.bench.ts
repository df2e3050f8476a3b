/**
 * A full-size checkpoint end to end, as `ponder run` loads and runs it (issue 12's report, issue
 * 17's 4-bit Huginn): for each thread count, in its own process (so peak RSS is that run's):
 *  - the memory plan (shards and bytes) against the measured peak RSS (VmHWM) after load and after
 *    generating, and the load time;
 *  - prefill tok/s (a prompt of --prompt tokens) and decode tok/s (--tokens new tokens, two rounds);
 *  - decode as a share of its DRAM-bound limit: the weight bytes one decode token reads (every
 *    bound Linear of a group times the group's uses per token at the depth the trace reports, plus
 *    the KV cache read at the run's mean context) ÷ a same-run stream read with as many threads,
 *    read right before and right after the second decode round.
 * The CPU model and the load average are printed next to every figure.
 *
 *   node --import tsx scripts/synthetic-checkpoint.ts huginn-0125 /work/big/huginn-0125
 *   node --import tsx bench/fullsize.bench.ts /work/big/huginn-0125 [--threads 1,2] [--prompt 8] [--tokens 4]
 *        [--policy "fixed(32)"] [--context 64] [--json]
 *
 * --context defaults to prompt + tokens (the plan's KV cache and work buffers are sized for it, so
 * peak RSS is comparable with the plan). Not part of `npm test` nor of CI.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/node/index.js';
import { createNodeWasmRuntime } from '../src/node/pool-worker.js';
import { openModelDir } from '../src/node/model-dir.js';
import { familyOf } from '../src/models/registry.js';
import { quantizedWeights, readQuantization } from '../src/models/quantized.js';
import { boundTensorBytes, formatBytes, type MemoryPlan } from '../src/runtime/plan.js';
import { parsePolicy } from '../src/depth/policy.js';
import { describeCpu, hostCpu } from './cpu.js';
import { StreamBaseline } from './stream-baseline.js';
import { FULL_TIMING } from './timing.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string', default: '1,2' }, prompt: { type: 'string', default: '8' }, tokens: { type: 'string', default: '4' },
    policy: { type: 'string' }, context: { type: 'string' }, json: { type: 'boolean', default: false }, child: { type: 'boolean', default: false },
  },
});
const dir = positionals[0];
if (!dir) { console.error('usage: fullsize.bench.ts MODEL_DIR [--threads 1,2] [--prompt 8] [--tokens 4] [--policy P] [--context N] [--json]'); process.exit(2); }
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
const gib = (n: number): string => `${(n / 2 ** 30).toFixed(2)} GiB`;

/** VmHWM and VmRSS of this process (Linux), bytes. */
function memoryStatus(): { hwm: number; rss: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
}

interface ChildReport {
  threads: number; cpu: string; loadBefore: string; loadAfter: string;
  plan: { shards: { groups: number; weightBytes: number; kvBytes: number; workBytes: number; totalBytes: number }[]; hostBytes: number; totalBytes: number; context: number };
  loadSeconds: number; hwmAfterLoad: number; hwmAfterGenerate: number;
  prefillTokensPerSecond: number; decodeTokensPerSecond: number[]; meanDepth: number;
  bytesPerToken: number; streamGbps: [number, number]; pctOfDramBound: number;
}

async function child(): Promise<void> {
  const threads = Number(values.threads);
  const promptLength = Number(values.prompt), newTokens = Number(values.tokens);
  const context = values.context !== undefined ? Number(values.context) : promptLength + newTokens + 1;
  const cpu = describeCpu(hostCpu());
  const loadBefore = load();
  const runtime = await createNodeWasmRuntime({ threads });
  const t0 = performance.now();
  let lastShown = 0;
  const model = await loadModel(dir, {
    runtime, context, tokenizer: false, chatTemplate: false,
    onProgress: ({ bytesDone, bytesTotal }) => {
      if (bytesDone - lastShown >= bytesTotal / 10 || bytesDone === bytesTotal) { lastShown = bytesDone; process.stderr.write(`  load ${(100 * bytesDone / bytesTotal).toFixed(0)}% (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`); }
    },
  });
  const loadSeconds = (performance.now() - t0) / 1000;
  const hwmAfterLoad = memoryStatus().hwm;
  const plan = model.memoryPlan as MemoryPlan;

  // Linear bytes per group, as bound (the plan's boundTensorBytes over the stored dtypes)
  const md = openModelDir(dir);
  const family = familyOf(md.config!);
  const config = family.parseConfig(md.config as never);
  const source = quantizedWeights(md.weights, readQuantization(md.config!));
  const groupBytes = new Map<string, number>();
  for (const t of family.tensors(config)) {
    let info = source.info(t.name);
    if (!info && t.sameAs !== undefined && t.bind === 'linear') info = source.info(t.sameAs); // a tied lm_head reads the embedding
    if (!info || t.bind !== 'linear') continue;
    groupBytes.set(t.group, (groupBytes.get(t.group) ?? 0) + boundTensorBytes('linear', info.dtype, t.shape, info.quant));
  }
  // groups a token runs once (embedding side, head) and groups it runs once per step of its depth
  const looped = (g: string): boolean => model.family === 'huginn' ? g === 'adapter' || g.startsWith('core.') : model.family === 'ouro' ? g.startsWith('layers.') : true;
  const c = config as Record<string, number>;
  // KV values per token per layer pass (keys and values): Huginn n_heads·head_dim, Ouro num_key_value_heads·head_dim
  const kvValues = model.family === 'huginn' ? 2 * c.nKvHeads * c.headDim : 2 * c.numKvHeads * c.headDim;
  const layerPasses = (depth: number): number => model.family === 'huginn' ? c.nPrelude + c.nCoda + depth * c.nCore : depth * c.numLayers;

  const prompt = Array.from({ length: promptLength }, (_, i) => (i * 7919 + 13) % model.vocabSize);
  const policy = values.policy !== undefined ? parsePolicy(values.policy) : undefined;
  const generate = async (n: number) => (await model.generate(prompt, { maxNewTokens: n, sampling: { temperature: 0 }, stopIds: [], policy, seed: 1 }).result());
  process.stderr.write(`  prefill + decode round 1 (${threads} thread${threads > 1 ? 's' : ''})\n`);
  const first = await generate(newTokens);
  const hwmAfterGenerate = memoryStatus().hwm;
  const prefillTokensPerSecond = (promptLength * 1000) / first.trace.prefillMs!;
  const decodeRate = (r: typeof first): number => (r.generatedIds.length - 1) * 1000 / r.trace.decodeMs; // the first token is sampled from the prefill
  const stream = await StreamBaseline.create(512 * 2 ** 20, threads);
  const before = await stream.gbps(64 * 2 ** 20, FULL_TIMING);
  process.stderr.write('  decode round 2\n');
  const second = await generate(newTokens);
  const after = await stream.gbps(64 * 2 ** 20, FULL_TIMING);
  await stream.dispose();
  // the decode tokens (not the prompt's), their depths and the bytes each read
  const decoded = second.trace.tokens.slice(promptLength + 1);
  const meanDepth = decoded.reduce((a, t) => a + t.steps, 0) / decoded.length;
  let bytes = 0;
  decoded.forEach((t, i) => {
    for (const [g, b] of groupBytes) bytes += looped(g) ? t.steps * b : b;
    bytes += 4 * kvValues * layerPasses(t.steps) * (promptLength + 1 + i); // the f32 KV cache at this position
  });
  const bytesPerToken = bytes / decoded.length;
  const decodeTokensPerSecond = [decodeRate(first), decodeRate(second)];
  const boundTokensPerSecond = ((before + after) / 2) * 1e9 / bytesPerToken;
  const report: ChildReport = {
    threads, cpu, loadBefore, loadAfter: load(),
    plan: { shards: plan.shards.map((s) => ({ groups: s.groups.length, weightBytes: s.weightBytes, kvBytes: s.kvBytes, workBytes: s.workBytes, totalBytes: s.totalBytes })), hostBytes: plan.hostBytes, totalBytes: plan.totalBytes, context: plan.context },
    loadSeconds, hwmAfterLoad, hwmAfterGenerate, prefillTokensPerSecond, decodeTokensPerSecond, meanDepth,
    bytesPerToken, streamGbps: [before, after], pctOfDramBound: (100 * decodeTokensPerSecond[1]) / boundTokensPerSecond,
  };
  console.log(JSON.stringify(report));
  await runtime.dispose();
}

async function parent(): Promise<void> {
  const reports: ChildReport[] = [];
  const script = fileURLToPath(import.meta.url);
  for (const threads of values.threads!.split(',').map(Number)) {
    const args = ['--import', 'tsx', script, dir, '--child', '--threads', String(threads), '--prompt', values.prompt!, '--tokens', values.tokens!];
    if (values.policy !== undefined) args.push('--policy', values.policy);
    if (values.context !== undefined) args.push('--context', values.context);
    if (!values.json) console.log(`# ${threads} thread${threads > 1 ? 's' : ''}: load average ${load()}`);
    const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', values.json ? 'ignore' : 'inherit'], encoding: 'utf8', maxBuffer: 1 << 24 });
    // (the runs done so far are printed first: a full-size run takes many minutes)
    if (r.status !== 0) { console.error(`the ${threads}-thread run failed (exit ${r.status ?? r.signal}); the runs before it: ${JSON.stringify(reports)}\n${r.stdout}`); process.exit(1); }
    reports.push(JSON.parse(r.stdout.trim().split('\n').pop()!));
  }
  if (values.json) { console.log(JSON.stringify({ dir, policy: values.policy ?? 'default', prompt: Number(values.prompt), tokens: Number(values.tokens), reports }, null, 2)); return; }
  const p = reports[0].plan;
  console.log(`# ${dir}; ${reports[0].cpu}`);
  console.log(`plan (context ${p.context}): ${p.shards.length} memory shard${p.shards.length > 1 ? 's' : ''} ${p.shards.map((s, i) => `#${i} ${formatBytes(s.totalBytes)} (weights ${formatBytes(s.weightBytes)}, KV ${formatBytes(s.kvBytes)}, work ${formatBytes(s.workBytes)})`).join(', ')}; JS heap ${formatBytes(p.hostBytes)}; total ${formatBytes(p.totalBytes)} (plan for 1 thread)`);
  console.log('| threads | load s | peak RSS after load / after generating (VmHWM) | vs plan | prefill tok/s | decode tok/s (rounds) | mean depth | GB read per token | stream GB/s (before, after) | decode % of DRAM bound | load average before → after |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of reports) {
    console.log(`| ${r.threads} | ${r.loadSeconds.toFixed(0)} | ${gib(r.hwmAfterLoad)} / ${gib(r.hwmAfterGenerate)} | ${(100 * r.hwmAfterGenerate / r.plan.totalBytes).toFixed(0)} % of ${gib(r.plan.totalBytes)} | ${r.prefillTokensPerSecond.toFixed(3)} | ${r.decodeTokensPerSecond.map((x) => x.toFixed(3)).join(', ')} | ${r.meanDepth.toFixed(1)} | ${(r.bytesPerToken / 1e9).toFixed(1)} | ${r.streamGbps.map((x) => x.toFixed(1)).join(', ')} | ${r.pctOfDramBound.toFixed(0)} % | ${r.loadBefore} → ${r.loadAfter} |`);
  }
}

await (values.child ? child() : parent());
