/**
 * Memory shards (src/runtime/plan.ts, src/kernels/wasm.ts): a model split over several WebAssembly
 * memories computes the same bits as in one — every golden case, at 2 and 3 forced shards, on one
 * thread and on a pool whose workers hold one kernel instance per memory.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createWasmRuntime, type WasmRuntime } from '../src/kernels/wasm.js';
import { createNodeWasmRuntime } from '../src/node/pool-worker.js';
import { runPortableConformance, type GoldenFiles } from '../src/conform/portable.js';
import { findGoldenCases } from '../src/node/files.js';
import { ouroFamily } from '../src/models/ouro-family.js';
import { ouroConfigFromJson } from '../src/models/ouro-config.js';
import { safetensorsWeights } from '../src/models/weights.js';
import { parseSafetensors } from '../src/format/safetensors.js';
import { PonderError } from '../src/errors.js';
import { planFamily } from '../src/models/placement.js';

const dir = 'spec/golden';
const names = ['mor', 'huginn', 'ouro'].flatMap((family) => findGoldenCases(`${dir}/${family}`).map((p) => `${family}/${p.split('/').pop()!.replace(/\.safetensors$|\.json$/, '')}`));
const files: GoldenFiles = {
  listCases: async () => [...new Set(names)],
  readText: (p) => readFile(`${dir}/${p}`, 'utf8'),
  readBytes: async (p) => new Uint8Array(await readFile(`${dir}/${p}`)),
};

const runtimes: { label: string; rt: WasmRuntime }[] = [
  { label: '1 shard', rt: await createWasmRuntime({ linearTile: '4x8' }) },
  { label: '2 shards', rt: await createWasmRuntime({ linearTile: '4x8', shards: 2 }) },
  { label: '3 shards', rt: await createWasmRuntime({ linearTile: '4x8', shards: 3 }) },
  { label: '3 shards, 2 threads', rt: await createNodeWasmRuntime({ linearTile: '4x8', shards: 3, threads: 2 }) },
];
after(() => Promise.all(runtimes.map(({ rt }) => rt.dispose())));

test('every golden case gives the same tensor digest split over 2 and 3 memory shards as in one memory', async () => {
  const digests: string[] = [];
  for (const { label, rt } of runtimes) {
    const s = await runPortableConformance('node', files, rt);
    assert.equal(s.failed, 0, `${label}: every golden case passes (${s.cases.filter((c) => !c.pass).map((c) => c.name).join(', ')})`);
    digests.push(s.digest);
  }
  for (let i = 1; i < digests.length; i++) assert.equal(digests[i], digests[0], `${runtimes[i].label}: same tensor digest as ${runtimes[0].label}`);
  // the split really happened: every shard memory of the 3-shard runtime holds bound weights
  const three = runtimes[2].rt;
  for (let s = 0; s < 3; s++) assert.ok(three.shardArenas[s].bytesUsed > 0, `shard ${s} holds something`);
  assert.ok(runtimes[3].rt.splitJobs() > 0, 'the 2-thread run split kernel calls across the pool');
});

test('a model whose plan needs more shards than the runtime has is refused before any tensor is read', async () => {
  const bytes = new Uint8Array(await readFile(`${dir}/ouro/decode_cached.safetensors`));
  const c = JSON.parse(await readFile(`${dir}/ouro/decode_cached.json`, 'utf8')) as { config: Record<string, unknown> };
  const config = ouroConfigFromJson(c.config);
  const source = safetensorsWeights([parseSafetensors(bytes, 'decode_cached.safetensors')], 'weights.', 'decode_cached');
  let reads = 0;
  const counting = { ...source, read: (n: string) => { reads++; return source.read(n); } };
  const rt = await createWasmRuntime({ linearTile: '4x8' });
  try {
    // a shard limit just under what one memory needs forces a second one
    const whole = planFamily(ouroFamily, config, source, rt);
    assert.equal(whole.shards.length, 1);
    const maxShardBytes = whole.shards[0].totalBytes - 1;
    assert.throws(() => ouroFamily.load(config, counting, rt, { maxShardBytes }), (e: unknown) => e instanceof PonderError && e.code === 'MEM_SHARDS' && /ensureShards/.test(e.hint ?? ''));
    assert.equal(reads, 0, 'no tensor was read');
    const plan = planFamily(ouroFamily, config, source, rt, { maxShardBytes });
    assert.ok(plan.shards.length >= 2);
    await rt.ensureShards(plan.shards.length);
    assert.equal(rt.shardArenas.length, plan.shards.length);
    ouroFamily.load(config, counting, rt, { maxShardBytes });
    assert.ok(reads > 0);
  } finally {
    await rt.dispose();
  }
});
