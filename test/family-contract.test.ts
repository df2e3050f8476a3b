/**
 * The family contract (src/models/family.ts) holds for every registered family, on every bundled
 * checkpoint (the demo models and the golden cases): detection is one table; the tensor list is
 * exactly what the checkpoint holds; config keys the family never reads are reported; a tied
 * lm_head may be left out; token ids and positions are refused with one code per condition.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { loadModel } from '../src/api/load.js';
import { PonderError } from '../src/errors.js';
import { configObject, parseConfigJson, type ConfigObject } from '../src/format/config.js';
import { parseSafetensors, readTensor, writeSafetensors, type DType, type SafetensorsFile } from '../src/format/safetensors.js';
import { parseGoldenCase } from '../src/conform/golden.js';
import { FAMILIES, familyOf, findFamily, loadFamily } from '../src/models/registry.js';
import { safetensorsWeights } from '../src/models/weights.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';

const DEMOS = ['demo-huginn', 'demo-ouro', 'demo-mor'];

interface Checkpoint { name: string; config: ConfigObject; file: SafetensorsFile; prefix: string; family: string }

function checkpoints(): Checkpoint[] {
  const out: Checkpoint[] = DEMOS.map((m) => ({
    name: m, config: parseConfigJson(readFileSync(`models/${m}/config.json`, 'utf8'), `${m}/config.json`),
    file: parseSafetensors(new Uint8Array(readFileSync(`models/${m}/model.safetensors`)), m), prefix: '', family: m.slice('demo-'.length),
  }));
  for (const family of readdirSync('spec/golden', { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
    for (const f of readdirSync(`spec/golden/${family}`).filter((n) => n.endsWith('.json'))) {
      const base = `spec/golden/${family}/${f.slice(0, -5)}`;
      const c = parseGoldenCase(base, readFileSync(`${base}.json`, 'utf8'), new Uint8Array(readFileSync(`${base}.safetensors`)));
      out.push({ name: base, config: configObject(c.config, `${base}.json`), file: c.file, prefix: 'weights.', family: c.family });
    }
  }
  return out;
}

test('one detection table: every bundled config is its family\'s, and each family detects only its own', () => {
  const all = checkpoints();
  assert.ok(all.length >= 25, `${all.length} checkpoints`);
  for (const c of all) {
    assert.equal(familyOf(c.config).family, c.family, c.name);
    assert.deepEqual(FAMILIES.filter((f) => f.detect(c.config.values)).map((f) => f.family), [c.family], `${c.name}: exactly one family`);
  }
  assert.throws(() => familyOf({ model_type: 'llama' }), (e: unknown) => e instanceof PonderError && e.code === 'CFG_MODEL_TYPE');
  assert.equal(findFamily({ hidden_size: 3 }), undefined);
});

test('tensors(config) lists exactly what each checkpoint holds: every required tensor present, nothing unlisted, shapes equal', () => {
  for (const c of checkpoints()) {
    const family = familyOf(c.config);
    const specs = family.tensors(family.parseConfig(c.config));
    const stored = new Map([...c.file.tensors.values()].filter((t) => t.name.startsWith(c.prefix)).map((t) => [t.name.slice(c.prefix.length), t.shape]));
    const listed = new Map(specs.map((t) => [t.name, t]));
    for (const [name, shape] of stored) {
      assert.ok(listed.has(name), `${c.name}: ${name} is not in the family's tensor list`);
      assert.deepEqual([...listed.get(name)!.shape], [...shape], `${c.name}: ${name}`);
    }
    for (const t of specs) {
      // MoR checkpoints may keep one name per shared parameter (safetensors de-duplication)
      if (!t.optional && !t.sameAs) assert.ok(stored.has(t.name), `${c.name}: ${t.name} is missing`);
      assert.ok(t.group.length > 0 && ['linear', 'f32', 'embedding', 'buffer'].includes(t.bind), `${c.name}: ${t.name} has a group and a binding`);
      if (t.sameAs) assert.ok(listed.has(t.sameAs), `${c.name}: ${t.name} is the same parameter as ${t.sameAs}, which is listed`);
    }
  }
});

/** A demo model's files with config edits and tensors replaced or removed (undefined), in memory. */
function demoFiles(model: string, editConfig: (c: Record<string, unknown>) => void, tensors: Record<string, string | undefined> = {}) {
  const config = JSON.parse(readFileSync(`models/${model}/config.json`, 'utf8')) as Record<string, unknown>;
  editConfig(config);
  const file = parseSafetensors(new Uint8Array(readFileSync(`models/${model}/model.safetensors`)));
  const out = [];
  for (const t of file.tensors.values()) {
    if (t.name in tensors) {
      const from = tensors[t.name];
      if (from === undefined) continue;
      out.push({ name: t.name, dtype: file.tensors.get(from)!.dtype as DType, shape: [...t.shape], data: readTensor(file, from) });
    } else out.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], data: readTensor(file, t.name) });
  }
  return { config, files: { 'model.safetensors': writeSafetensors(out) }, label: model };
}

const EMBEDDING: Record<string, string> = { 'demo-huginn': 'transformer.wte.weight', 'demo-ouro': 'model.embed_tokens.weight', 'demo-mor': 'model.embed_tokens.weight' };
const tie = (model: string, tied: boolean) => (c: Record<string, unknown>): void => {
  if (model === 'demo-huginn') c.tie_embeddings = tied;
  else if (model === 'demo-mor') (c.model_config as Record<string, unknown>).tie_word_embeddings = tied;
  else c.tie_word_embeddings = tied;
};

test('a tied lm_head may be left out in every family: the model reads the embedding, logits equal to storing it; untied, it is BIND_MISMATCH', async () => {
  const runtime = createScalarRuntime();
  for (const model of DEMOS) {
    const embed = EMBEDDING[model];
    const stored = await loadModel(demoFiles(model, tie(model, true), { 'lm_head.weight': embed }), { runtime });
    const leftOut = await loadModel(demoFiles(model, tie(model, true), { 'lm_head.weight': undefined }), { runtime });
    assert.deepEqual(leftOut.forward([3, 1, 4]).logits, stored.forward([3, 1, 4]).logits, model);
    await assert.rejects(loadModel(demoFiles(model, tie(model, false), { 'lm_head.weight': undefined }), { runtime }),
      (e: unknown) => e instanceof PonderError && e.code === 'BIND_MISMATCH' && e.message.includes('lm_head.weight'), model);
  }
});

test('config keys a family never reads are on the load result (Model.unknownConfigKeys), by their full path', async () => {
  const runtime = createScalarRuntime();
  const typo: Record<string, [(c: Record<string, unknown>) => void, string[]]> = {
    'demo-huginn': [(c) => { c.mean_recurence = 8; }, ['mean_recurence']],
    'demo-ouro': [(c) => { c.total_ut_step = 2; }, ['total_ut_step']],
    'demo-mor': [(c) => { ((c.cfg as Record<string, unknown>).mor as Record<string, unknown>).capcity = '1.0,0.5,0.3'; }, ['cfg.mor.capcity']],
  };
  for (const model of DEMOS) {
    assert.deepEqual((await loadModel(demoFiles(model, () => {}), { runtime })).unknownConfigKeys, [], `${model} reads every key of its own config`);
    const [edit, keys] = typo[model];
    assert.deepEqual((await loadModel(demoFiles(model, edit), { runtime })).unknownConfigKeys, keys, model);
  }
});

test('one code per condition in every family\'s own forward: GEN_TOKEN_ID for an id outside the vocabulary, GEN_CONTEXT beyond the context', () => {
  const runtime = createScalarRuntime();
  for (const model of DEMOS) {
    const config = parseConfigJson(readFileSync(`models/${model}/config.json`, 'utf8'), model);
    const weights = safetensorsWeights([parseSafetensors(new Uint8Array(readFileSync(`models/${model}/model.safetensors`)))]);
    const { adapter } = loadFamily(config, weights, runtime);
    const control = { policy: { kind: 'default' as const }, cap: null, phase: 'prefill' as const, stepsSpent: 0 };
    for (const bad of [adapter.vocabSize, -1, 1.5]) {
      assert.throws(() => adapter.run(adapter.newSession(8, { seed: 0 }), [1, bad], control), (e: unknown) => e instanceof PonderError && e.code === 'GEN_TOKEN_ID', `${model}: id ${bad}`);
    }
    const long = new Array<number>(adapter.contextLength + 1).fill(1);
    assert.throws(() => adapter.run(adapter.newSession(long.length, { seed: 0 }), long, control), (e: unknown) => e instanceof PonderError && e.code === 'GEN_CONTEXT', `${model}: ${long.length} positions`);
  }
});
