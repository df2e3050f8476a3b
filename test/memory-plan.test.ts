/**
 * The memory plan (src/runtime/plan.ts): from config.json + the family's tensor list + the headers
 * only, it sizes weights, KV cache and work buffers, assigns layer groups to memory shards, and
 * refuses what the machine cannot hold before any tensor is read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ouroFamily } from '../src/models/ouro-family.js';
import { ouroConfigFromJson } from '../src/models/ouro-config.js';
import { planFamily } from '../src/models/placement.js';
import type { WeightSource, WeightInfo } from '../src/models/weights.js';
import { boundTensorBytes, KV_DTYPES, MEMORY_PLAN_LIMIT_BYTES, parseByteSize, type MemoryPlan } from '../src/runtime/plan.js';
import { PonderError } from '../src/errors.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { loadModel } from '../src/node/index.js';

/** Ouro-1.4B's published config (research/checkpoints.md): 24 layers, H 2048, 16 heads × 128, I 5632, V 49152, 4 loops. */
const OURO_1_4B = {
  model_type: 'ouro', vocab_size: 49152, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 24, num_attention_heads: 16,
  num_key_value_heads: 16, head_dim: 128, rope_theta: 1e6, rms_norm_eps: 1e-6, max_position_embeddings: 65536, total_ut_steps: 4,
  early_exit_threshold: 1.0, tie_word_embeddings: false,
};
const config = ouroConfigFromJson(OURO_1_4B);
const GiB = 2 ** 30;

/** Headers of a bf16 checkpoint with every tensor the config implies; reading any data is a test failure. */
function headersOnly(): WeightSource {
  const infos = new Map<string, WeightInfo>();
  for (const t of ouroFamily.tensors(config)) if (!t.optional) infos.set(t.name, { dtype: 'BF16', shape: t.shape });
  return { label: 'ouro-1.4b (headers)', names: () => [...infos.keys()], info: (n) => infos.get(n), read: (n) => assert.fail(`tensor ${n} was read`) };
}

function checkShards(plan: MemoryPlan, limit: number): void {
  const groups = [...new Set(ouroFamily.tensors(config).map((t) => t.group))];
  assert.deepEqual(plan.shards.flatMap((s) => s.groups), groups, 'every group in exactly one shard, contiguous, in family order');
  for (const [i, s] of plan.shards.entries()) {
    assert.ok(s.groups.length > 0, `shard ${i} is not empty`);
    assert.ok(s.totalBytes <= limit, `shard ${i}: ${s.totalBytes} bytes ≤ ${limit}`);
    assert.equal(s.totalBytes, s.weightBytes + s.kvBytes + s.workBytes);
    for (const g of s.groups) assert.equal(plan.shardOf.get(g), i);
  }
}

test('Ouro-1.4B at a 16k context: f32 KV (24 GiB of cache) is refused over a 20 GiB limit naming what fits; bf16 KV is planned over several shards', () => {
  const source = headersOnly();
  assert.throws(() => planFamily(ouroFamily, config, source, {}, { context: 16384, maxMemory: 20 * GiB }), (e: unknown) => {
    assert.ok(e instanceof PonderError && e.code === 'MEM_OVER_LIMIT', String(e));
    assert.equal(e.field, 'context');
    assert.match(e.message, /16384 tokens/);
    assert.match(e.hint ?? '', /--kv-dtype bf16 \(fits \d+ tokens\)/);
    assert.match(e.hint ?? '', /quantized weights/);
    return true;
  });
  const plan = planFamily(ouroFamily, config, source, {}, { context: 16384, kvDtype: 'bf16', maxMemory: 20 * GiB });
  const kvPerToken = 24 * 4 * 2 * 2048 * 2; // layers × loops × (K, V) × kvDim × bf16
  assert.equal(plan.shards.reduce((a, s) => a + s.kvBytes, 0), kvPerToken * 16384);
  assert.ok(plan.shards.length >= 4, `${plan.shards.length} shards for 12 GiB of KV cache`);
  checkShards(plan, MEMORY_PLAN_LIMIT_BYTES);
  assert.ok(plan.totalBytes <= 20 * GiB);
});

test('the context capacity per KV dtype is the longest context under the limit: planning exactly it fits, one more token does not', () => {
  const source = headersOnly();
  const plan = planFamily(ouroFamily, config, source, {}, { context: 1024, maxMemory: 12 * GiB });
  assert.ok(plan.contextCapacity.bf16 > 1.9 * plan.contextCapacity.f32, JSON.stringify(plan.contextCapacity));
  assert.equal(plan.contextCapacity.f16, plan.contextCapacity.bf16);
  for (const kvDtype of KV_DTYPES) {
    const n = plan.contextCapacity[kvDtype];
    assert.ok(n > 0 && n < config.maxPositionEmbeddings);
    planFamily(ouroFamily, config, source, {}, { context: n, kvDtype, maxMemory: 12 * GiB });
    assert.throws(() => planFamily(ouroFamily, config, source, {}, { context: n + 1, kvDtype, maxMemory: 12 * GiB }), { code: 'MEM_OVER_LIMIT' });
  }
});

test('a forced shard count splits the groups into exactly that many contiguous, non-empty shards balanced by bytes', () => {
  const source = headersOnly();
  for (const shards of [1, 2, 3, 5, 8]) {
    const plan = planFamily(ouroFamily, config, source, { forceShards: shards }, { context: 4096 });
    assert.equal(plan.shards.length, shards);
    checkShards(plan, Infinity);
    if (shards > 1) {
      const layerBytes = plan.shards.map((s) => s.weightBytes + s.kvBytes);
      const mean = layerBytes.reduce((a, b) => a + b, 0) / shards;
      assert.ok(Math.max(...layerBytes) < 2 * mean, `balanced: ${layerBytes.join(', ')}`);
    }
  }
});

test('a group larger than one memory shard is MEM_MODEL_TOO_LARGE naming the group; a smaller shard limit gives more shards', () => {
  const source = headersOnly();
  assert.throws(() => planFamily(ouroFamily, config, source, {}, { context: 4096, maxShardBytes: 64 * 2 ** 20 }), (e: unknown) =>
    e instanceof PonderError && e.code === 'MEM_MODEL_TOO_LARGE' && /group \S+ needs/.test(e.message));
  const wide = planFamily(ouroFamily, config, source, {}, { context: 4096 });
  const narrow = planFamily(ouroFamily, config, source, {}, { context: 4096, maxShardBytes: GiB });
  assert.ok(narrow.shards.length > wide.shards.length);
  checkShards(narrow, GiB);
});

test('bound bytes per weight: bf16 linear weights stay 2 bytes, f32/f16 ones become 4, norms 4, embeddings stay off the shards', () => {
  assert.equal(boundTensorBytes('linear', 'BF16', [10]), 20);
  assert.equal(boundTensorBytes('linear', 'F16', [10]), 40);
  assert.equal(boundTensorBytes('linear', 'F32', [10]), 40);
  assert.equal(boundTensorBytes('f32', 'BF16', [10]), 40);
  assert.equal(boundTensorBytes('embedding', 'BF16', [10]), 0);
  assert.equal(boundTensorBytes('buffer', 'F32', [10]), 0);
  const plan = planFamily(ouroFamily, config, headersOnly(), {}, { context: 1 });
  const H = 2048, I = 5632, V = 49152, L = 24;
  const linearParams = L * (4 * H * H + 3 * H * I) + H /* exit gate */ + V * H /* lm_head */;
  const normParams = L * 4 * H + H + 1;
  assert.equal(plan.shards.reduce((a, s) => a + s.weightBytes, 0), 2 * linearParams + 4 * normParams);
  assert.ok(plan.hostBytes >= 2 * V * H, 'the bf16 embedding table is on the JS heap');
});

test('byte sizes for --max-memory: units, and typed errors naming the flag', () => {
  assert.equal(parseByteSize('4GiB', 'max-memory'), 4 * GiB);
  assert.equal(parseByteSize('512 MiB', 'max-memory'), 512 * 2 ** 20);
  assert.equal(parseByteSize('8GB', 'max-memory'), 8e9);
  assert.equal(parseByteSize('1234', 'max-memory'), 1234);
  for (const bad of ['', 'lots', '-1GiB', '0', '4 GiBs']) assert.throws(() => parseByteSize(bad, 'max-memory'), (e: unknown) => e instanceof PonderError && e.code === 'ARG_INVALID' && e.field === 'max-memory');
});

for (const kvDtype of KV_DTYPES) test(`what a loaded model allocates in each memory shard stays within the plan (the golden Ouro model over 2 shards, ${kvDtype} KV cache, after generating)`, async () => {
  const runtime = await createWasmRuntime({ shards: 2 });
  try {
    const model = await loadModel('models/demo-ouro', { runtime, context: 64, kvDtype });
    const plan = model.memoryPlan!;
    assert.equal(plan.shards.length, 2);
    assert.equal(plan.kvDtype, kvDtype);
    for await (const event of model.generate([1, 2, 3], { maxNewTokens: 8 })) void event;
    for (const [i, s] of plan.shards.entries()) {
      const used = runtime.shardArenas[i].bytesUsed;
      assert.ok(used <= s.totalBytes, `shard ${i}: ${used} bytes used, ${s.totalBytes} planned`);
      assert.ok(used >= s.weightBytes, `shard ${i}: its weights are there`);
    }
  } finally {
    await runtime.dispose();
  }
});

test('a bf16 / f16 KV cache is planned at half the f32 cache\'s bytes (Ouro-1.4B shapes, 16k context)', () => {
  const f32 = planFamily(ouroFamily, config, headersOnly(), {}, { context: 16384, kvDtype: 'f32' });
  for (const kvDtype of ['bf16', 'f16'] as const) {
    const plan = planFamily(ouroFamily, config, headersOnly(), {}, { context: 16384, kvDtype });
    assert.equal(plan.kvDtype, kvDtype);
    const kv = (p: MemoryPlan) => p.shards.reduce((a, s) => a + s.kvBytes, 0);
    assert.equal(kv(plan), kv(f32) / 2);
    assert.equal(kv(plan), 16384 * 24 * 4 * 2 * 16 * 128 * 2, 'context × layers × loops × (K, V) × kv heads × head dim × 2 bytes');
  }
});

test('without a context asked for, the plan takes the longest the machine holds (whole plan, shards and heap, within the limit)', () => {
  const plan = planFamily(ouroFamily, config, headersOnly(), {}, { maxMemory: 12 * GiB });
  assert.ok(plan.context < config.maxPositionEmbeddings);
  assert.equal(plan.context, plan.contextCapacity.f32);
  assert.ok(plan.totalBytes <= 12 * GiB, `${plan.totalBytes}`);
});

test('a 4-bit checkpoint is planned at its quantized size: every Linear as panels of 16 columns × groups of 16 f32 scales, 16 f32 biases and 4-bit codes', () => {
  const gs = 64;
  const bf16 = headersOnly();
  const linears = ouroFamily.tensors(config).filter((t) => t.bind === 'linear' && !t.optional);
  const q4 = new Set(linears.map((t) => t.name));
  const quantized: WeightSource = { ...bf16, info: (n) => { const i = bf16.info(n); return i && q4.has(n) ? { ...i, quant: { bits: 4, groupSize: gs } } : i; } };
  const wide = planFamily(ouroFamily, config, bf16, {}, { context: 1 });
  const narrow = planFamily(ouroFamily, config, quantized, {}, { context: 1 });
  const weightBytes = (p: MemoryPlan): number => p.shards.reduce((a, s) => a + s.weightBytes, 0);
  // per panel of 16 output columns and group of gs inputs: 16 scales + 16 biases (f32), 16 × gs codes of 4 bits
  const panelGroupBytes = 16 * 4 + 16 * 4 + (16 * gs * 4) / 8;
  const linearBytes = (shape: readonly number[]): number => Math.ceil(shape[0] / 16) * (shape[1] / gs) * panelGroupBytes;
  const bf16Linear = linears.reduce((a, t) => a + 2 * t.shape[0] * t.shape[1], 0);
  const q4Linear = linears.reduce((a, t) => a + linearBytes(t.shape), 0);
  assert.equal(weightBytes(wide) - weightBytes(narrow), bf16Linear - q4Linear, 'only the Linear weights change size');
  assert.equal(boundTensorBytes('linear', 'BF16', [4096, 2048], { bits: 4, groupSize: gs }), linearBytes([4096, 2048]));
  assert.ok(q4Linear < bf16Linear / 3, `4-bit Linear weights ${q4Linear} bytes vs bf16 ${bf16Linear}`);
  assert.ok(narrow.totalBytes < wide.totalBytes, `4-bit plan ${narrow.totalBytes} bytes < bf16 plan ${wide.totalBytes}`);
});
