import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PonderError } from '../src/errors.js';
import { parseSafetensors, writeSafetensors, type TensorToWrite } from '../src/format/safetensors.js';
import { checkHuginnWeights, HUGINN_0125_CONFIG, bindHuginn, parseHuginnConfig } from '../src/models/huginn.js';
import { huginnFamily } from '../src/models/huginn-family.js';
import { planFamily } from '../src/models/placement.js';
import { MEMORY_PLAN_LIMIT_BYTES } from '../src/runtime/plan.js';
import { safetensorsWeights, type WeightInfo, type WeightSource } from '../src/models/weights.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { memorySource, randomWeights, tinyConfig } from './huginn-fixture.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';

/** huginn-0125's tensor list as huginn.md §2 writes it out (BF16 infos; reading data is an error). */
function huginn0125Infos(edit: (m: Map<string, WeightInfo>) => void = () => {}): WeightSource {
  const E = 5280, I = 17920, V = 65536;
  const m = new Map<string, WeightInfo>();
  const add = (name: string, shape: number[]): void => { m.set(name, { dtype: 'BF16', shape }); };
  add('freqs_cis', [1, 4096, 1, 48, 2]);
  add('transformer.wte.weight', [V, E]);
  const block = (p: string): void => {
    add(`${p}.norm_1.weight`, [E]);
    add(`${p}.attn.qk_bias`, [2, 1, 55, 96]);
    add(`${p}.attn.Wqkv.weight`, [15840, E]);
    add(`${p}.attn.proj.weight`, [E, E]);
    add(`${p}.norm_2.weight`, [E]);
    add(`${p}.mlp.fc.weight`, [35840, E]);
    add(`${p}.mlp.proj.weight`, [E, I]);
    add(`${p}.norm_3.weight`, [E]);
    add(`${p}.norm_4.weight`, [E]);
  };
  for (const i of [0, 1]) block(`transformer.prelude.${i}`);
  add('transformer.adapter.weight', [E, 10560]);
  for (const i of [0, 1, 2, 3]) block(`transformer.core_block.${i}`);
  for (const i of [0, 1]) block(`transformer.coda.${i}`);
  add('transformer.ln_f.weight', [E]);
  add('lm_head.weight', [V, E]);
  edit(m);
  return { label: 'huginn-0125 (infos only)', names: () => [...m.keys()], info: (n) => m.get(n), read: (n) => { throw new Error(`no data for ${n}`); } };
}

test('the real huginn-0125 config and tensor list are accepted (shapes only, no data read)', () => {
  const cfg = parseHuginnConfig(HUGINN_0125_CONFIG, 'huginn-0125/config.json');
  assert.equal(cfg.headDim, 96);
  assert.equal(cfg.embedScale, Math.sqrt(5280));
  assert.ok(Math.abs(cfg.initStd - 0.0087039) < 1e-6);
  const source = huginn0125Infos();
  assert.doesNotThrow(() => checkHuginnWeights(source, createScalarRuntime(), cfg));
  // unique parameters (lm_head tied, buffer excluded) as huginn.md §2 counts them
  let params = 0;
  for (const n of source.names()) if (n !== 'lm_head.weight' && n !== 'freqs_cis') params += source.info(n)!.shape.reduce((a, b) => a * b, 1);
  assert.equal(params, 3_564_976_800);
});

test('a checkpoint without the tied lm_head copy and without freqs_cis is accepted', () => {
  const cfg = parseHuginnConfig(HUGINN_0125_CONFIG);
  const source = huginn0125Infos((m) => { m.delete('lm_head.weight'); m.delete('freqs_cis'); });
  assert.doesNotThrow(() => checkHuginnWeights(source, createScalarRuntime(), cfg));
});

test('every weight mismatch is reported at once, naming each tensor', () => {
  const cfg = parseHuginnConfig(HUGINN_0125_CONFIG);
  const source = huginn0125Infos((m) => {
    m.delete('transformer.core_block.3.norm_4.weight');
    m.set('transformer.adapter.weight', { dtype: 'BF16', shape: [5280, 5280] });
    m.set('transformer.core_block.4.norm_1.weight', { dtype: 'BF16', shape: [5280] });
  });
  assert.throws(() => checkHuginnWeights(source, createScalarRuntime(), cfg), (e: unknown) => {
    assert.ok(e instanceof PonderError);
    assert.equal(e.code, 'BIND_MISMATCH');
    assert.match(e.message, /missing transformer\.core_block\.3\.norm_4\.weight/);
    assert.match(e.message, /mis-shaped transformer\.adapter\.weight/);
    assert.match(e.message, /unexpected transformer\.core_block\.4\.norm_1\.weight/);
    return true;
  });
});

test('a config with a missing, mistyped or inconsistent field is a CFG_FIELD or CFG_INCONSISTENT error naming the field', () => {
  const { n_embd: _drop, ...noWidth } = HUGINN_0125_CONFIG;
  assert.throws(() => parseHuginnConfig(noWidth, 'c.json'), (e: unknown) => e instanceof PonderError && e.code === 'CFG_FIELD' && e.field === 'n_embd');
  assert.throws(() => parseHuginnConfig({ ...HUGINN_0125_CONFIG, n_heads: 7 }, 'c.json'), (e: unknown) => e instanceof PonderError && e.code === 'CFG_INCONSISTENT' && e.field === 'n_heads');
  assert.throws(() => parseHuginnConfig({ ...HUGINN_0125_CONFIG, mean_recurrence: '32' }, 'c.json'), (e: unknown) => e instanceof PonderError && e.code === 'CFG_FIELD' && e.field === 'mean_recurrence');
  assert.throws(() => parseHuginnConfig([1, 2], 'c.json'), (e: unknown) => e instanceof PonderError && e.code === 'CFG_JSON');
});

const SHAPE = { E: 16, H: 2, P: 1, R: 2, C: 1, V: 24, I: 24, meanRecurrence: 3 };
const IDS = [3, 1, 4, 1, 5, 9, 2, 6];

function logitsOf(source: WeightSource): Float32Array {
  const raw = tinyConfig(SHAPE);
  const model = bindHuginn(parseHuginnConfig(raw), source, createScalarRuntime());
  return model.forward({ ids: IDS, B: 1, S: IDS.length, numSteps: 3, initScale: 0 }).logits;
}

test('bf16 weights give exactly the logits of their f32 upcast', () => {
  const raw = tinyConfig(SHAPE);
  const bf16 = randomWeights(raw, 7, { dtype: 'BF16' });
  const widened = new Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>();
  for (const n of bf16.names()) {
    const bits = bf16.read(n) as Uint16Array;
    widened.set(n, { dtype: 'F32', shape: [...bf16.info(n)!.shape], data: Float32Array.from(bits, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]) });
  }
  assert.deepEqual(logitsOf(bf16), logitsOf(memorySource(widened)));
});

test('weights split over two safetensors shards load like one file', () => {
  const raw = tinyConfig(SHAPE);
  const src = randomWeights(raw, 11);
  const all: TensorToWrite[] = src.names().map((n) => ({ name: n, dtype: 'F32', shape: src.info(n)!.shape, data: src.read(n) as Float32Array }));
  const one = parseSafetensors(writeSafetensors(all), 'model.safetensors');
  const half = Math.floor(all.length / 2);
  const a = parseSafetensors(writeSafetensors(all.slice(0, half)), 'model-00001-of-00002.safetensors');
  const b = parseSafetensors(writeSafetensors(all.slice(half)), 'model-00002-of-00002.safetensors');
  assert.deepEqual(logitsOf(safetensorsWeights([a, b])), logitsOf(safetensorsWeights([one])));
});

test('a freqs_cis buffer that does not match the config\'s RoPE table is reported', () => {
  const raw = tinyConfig(SHAPE);
  const src = randomWeights(raw, 3);
  const tensors = new Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>();
  for (const n of src.names()) tensors.set(n, { dtype: 'F32', shape: [...src.info(n)!.shape], data: src.read(n) as Float32Array });
  const hd = SHAPE.E / SHAPE.H, half = hd / 2, block = 64;
  const table = (theta: number): Float32Array => {
    const t = new Float32Array(block * half * 2);
    for (let p = 0; p < block; p++) for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * Math.fround(1 / Math.fround(theta ** Math.fround((2 * i) / hd))));
      t[(p * half + i) * 2] = Math.cos(angle); t[(p * half + i) * 2 + 1] = Math.sin(angle);
    }
    return t;
  };
  tensors.set('freqs_cis', { dtype: 'F32', shape: [1, block, 1, half, 2], data: table(50000) });
  assert.doesNotThrow(() => bindHuginn(parseHuginnConfig(raw), memorySource(tensors), createScalarRuntime()));
  tensors.set('freqs_cis', { dtype: 'F32', shape: [1, block, 1, half, 2], data: table(10000) });
  assert.throws(() => bindHuginn(parseHuginnConfig(raw), memorySource(tensors), createScalarRuntime()), (e: unknown) => e instanceof PonderError && e.code === 'HUGINN_FREQS_CIS');
});

test('token ids outside the vocabulary and positions beyond block_size are typed errors', () => {
  const raw = tinyConfig(SHAPE);
  const model = bindHuginn(parseHuginnConfig(raw), randomWeights(raw, 5), createScalarRuntime());
  assert.throws(() => model.forward({ ids: [1, 24], B: 1, S: 2, numSteps: 1 }), (e: unknown) => e instanceof PonderError && e.code === 'GEN_TOKEN_ID');
  assert.throws(() => model.forward({ ids: [1], B: 1, S: 1, numSteps: 1, positions: Int32Array.of(64) }), (e: unknown) => e instanceof PonderError && e.code === 'GEN_CONTEXT');
  assert.throws(() => model.forward({ ids: [1], B: 1, S: 1, numSteps: -1 }), (e: unknown) => e instanceof PonderError && e.code === 'HUGINN_NUM_STEPS');
  assert.throws(() => model.newCache('latest-m5'), (e: unknown) => e instanceof PonderError && e.code === 'HUGINN_CACHE_STRATEGY');
});

test('huginn-0125 in bf16 (7.1 GB) needs several memory shards: bound on a one-memory wasm runtime it is refused before any tensor is read', async () => {
  const wasm = await createWasmRuntime();
  const cfg = parseHuginnConfig(HUGINN_0125_CONFIG);
  assert.throws(() => huginnFamily.load(cfg, huginn0125Infos(), wasm), (e: unknown) => e instanceof PonderError && e.code === 'MEM_SHARDS');
  const plan = planFamily(huginnFamily, cfg, huginn0125Infos(), wasm);
  assert.ok(plan.shards.length >= 2, `${plan.shards.length} shards`);
  assert.ok(plan.shards.reduce((a, s) => a + s.weightBytes, 0) > 6.5e9);
  for (const s of plan.shards) assert.ok(s.totalBytes <= MEMORY_PLAN_LIMIT_BYTES, `a shard of ${s.totalBytes} bytes`);
});

test('a sharded model directory (model.safetensors.index.json) loads like the in-memory weights', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { openModelDir } = await import('../src/node/model-dir.js');
  const raw = tinyConfig(SHAPE);
  const src = randomWeights(raw, 13);
  const dir = mkdtempSync(join(tmpdir(), 'huginn-shards-'));
  try {
    const all: TensorToWrite[] = src.names().map((n) => ({ name: n, dtype: 'F32', shape: src.info(n)!.shape, data: src.read(n) as Float32Array }));
    const half = Math.floor(all.length / 2);
    const shards = [['model-00001-of-00002.safetensors', all.slice(0, half)], ['model-00002-of-00002.safetensors', all.slice(half)]] as const;
    const weightMap: Record<string, string> = {};
    for (const [file, tensors] of shards) {
      writeFileSync(join(dir, file), writeSafetensors(tensors));
      for (const t of tensors) weightMap[t.name] = file;
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(raw));
    const md = openModelDir(dir);
    assert.equal(md.layout, 'sharded');
    const model = bindHuginn(parseHuginnConfig(md.config!.values, 'config.json'), md.weights, createScalarRuntime());
    assert.deepEqual(model.forward({ ids: IDS, B: 1, S: IDS.length, numSteps: 3, initScale: 0 }).logits, logitsOf(src));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bf16 activations: every logit and latent is a bf16 value, close to the f32 computation', () => {
  const raw = tinyConfig(SHAPE);
  const src = randomWeights(raw, 17, { dtype: 'BF16' });
  const cfg = parseHuginnConfig(raw);
  const f32 = bindHuginn(cfg, src, createScalarRuntime()).forward({ ids: IDS, B: 1, S: IDS.length, numSteps: 3, initScale: 0 });
  const bf16 = bindHuginn(cfg, src, createScalarRuntime(), { activations: 'bf16' }).forward({ ids: IDS, B: 1, S: IDS.length, numSteps: 3, initScale: 0 });
  const isBf16 = (x: number): boolean => (new Uint32Array(new Float32Array([x]).buffer)[0] & 0xffff) === 0;
  assert.ok(bf16.logits.every(isBf16) && bf16.latentStates.every(isBf16));
  assert.ok(!f32.logits.every(isBf16));
  let maxDiff = 0;
  for (let i = 0; i < f32.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(f32.logits[i] - bf16.logits[i]));
  assert.ok(maxDiff > 0 && maxDiff < 0.25, `max |Δ| ${maxDiff}`);
});
