/**
 * `ponder convert mor`: the MoR release layout (torch.save state dict with every alias, SmolLM
 * base config.json, Hydra experiment YAML) becomes a model directory that reproduces the golden
 * case the weights came from; bad inputs are typed errors and never leave a half-written OUT.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ponder } from './cli-support.js';
import { convertMor } from '../src/node/convert.js';
import { morConfigFromRelease } from '../src/convert/mor.js';
import { loadGoldenCase } from '../src/node/files.js';
import { parseGoldenCase } from '../src/conform/golden.js';
import { runGoldenCase } from '../src/conform/runner.js';
import { parseSafetensors, readTensor, writeSafetensors, type TensorToWrite } from '../src/format/safetensors.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { PonderError } from '../src/errors.js';

const FIXTURE = 'test/fixtures/mor-release'; // scripts/make-mor-pytorch-fixture.py, from the golden case below
const CASE = 'spec/golden/mor/mor_expert_middle_cycle_fwd';
const release = { weights: `${FIXTURE}/pytorch_model.bin`, config: `${FIXTURE}/config.json`, experiment: `${FIXTURE}/experiment.yaml` };

const root = mkdtempSync(join(tmpdir(), 'ponder-convert-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const fresh = (): string => join(root, `out${counter++}`);

const isCode = (code: string, text?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof PonderError, `expected PonderError ${code}, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (text) assert.match(e.message, text);
  return true;
};


/** The golden case with its weights replaced by the converted model's, and its config by the converted config. */
function caseWithConvertedModel(out: string) {
  const golden = loadGoldenCase(CASE);
  const converted = parseSafetensors(new Uint8Array(readFileSync(join(out, 'model.safetensors'))), 'model.safetensors');
  const tensors: TensorToWrite[] = [];
  for (const [name, info] of converted.tensors) tensors.push({ name: `weights.${name}`, dtype: info.dtype, shape: info.shape, data: readTensor(converted, name) });
  for (const [name, info] of golden.file.tensors) {
    if (!name.startsWith('weights.')) tensors.push({ name, dtype: info.dtype, shape: info.shape, data: readTensor(golden.file, name) });
  }
  const json = { ...golden.json, config: JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) };
  return parseGoldenCase(`converted/${golden.name}`, JSON.stringify(json), writeSafetensors(tensors), 'converted');
}

test('the release files convert, and the converted model reproduces the golden case the weights came from', async () => {
  const out = fresh();
  const result = await convertMor({ ...release, out });
  assert.deepEqual(readdirSync(out).sort(), ['config.json', 'model.safetensors']);
  // 78 state-dict entries: 36 aliases of the recursion-0 block dropped, the tied lm_head left out (the loader reads the embedding)
  assert.equal(result.tensors, 41);
  assert.deepEqual(result.notes, [
    '36 shared-layer aliases dropped (each equal to the first layer of its group, which is written once)',
    'lm_head.weight: the tied head (equal to model.embed_tokens.weight) is not written; the loader reads the embedding',
  ]);
  assert.ok(!parseSafetensors(new Uint8Array(readFileSync(join(out, 'model.safetensors'))), 'out').tensors.has('lm_head.weight'));

  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.model_config.max_position_embeddings, 64, 'max_length of the YAML replaces the base config\'s 2048');
  assert.equal(config.model_config.model_type, 'llama');
  assert.equal(config.cfg.attn_implementation, 'flash_attention_2');
  assert.equal(config.cfg.mor.capacity, null, 'left to the loader\'s default, as preprocess_config fills it');
  assert.equal(config.cfg.name, undefined, 'training-only YAML keys are not part of the model config');

  const report = await runGoldenCase(caseWithConvertedModel(out), createScalarRuntime());
  assert.ok(report.pass, report.error ?? report.tensors.filter((t) => !t.pass).map((t) => `${t.name}: ${JSON.stringify(t)}`).join('\n'));
  assert.ok(report.tensors.length > 10);
});

test('`ponder convert mor` writes a directory `ponder run` loads; converting again over it is allowed', async () => {
  const out = fresh();
  const argv = ['convert', 'mor', '--weights', release.weights, '--config', release.config, '--experiment', release.experiment, out];
  const first = await ponder(argv);
  assert.equal(first.code, 0, first.err);
  assert.match(first.out, /wrote .*: config\.json, model\.safetensors \(41 tensors/);
  const run = await ponder(['run', '--model', out, '--ids', '5,6,7', '-n', '3', '--json']);
  assert.equal(run.code, 0, run.err);
  const tokens = JSON.parse(run.out).tokens as { phase?: string }[];
  assert.equal(tokens.filter((t) => (t.phase ?? 'decode') === 'decode').length, 3);
  const again = await ponder(argv);
  assert.equal(again.code, 0, again.err);
  assert.deepEqual(readdirSync(out).sort(), ['config.json', 'model.safetensors'], 'no temporary files left');
});

test('OUT that is a file, or a directory with other contents, is IO_WRITE and stays untouched', async () => {
  const file = join(root, 'a-file');
  writeFileSync(file, 'keep');
  await assert.rejects(convertMor({ ...release, out: file }), isCode('IO_WRITE', /not a directory/));
  assert.equal(readFileSync(file, 'utf8'), 'keep');

  const foreign = fresh();
  mkdirSync(foreign);
  writeFileSync(join(foreign, 'config.json'), '{"mine": true}');
  await assert.rejects(convertMor({ ...release, out: foreign }), isCode('IO_WRITE', /not a previous/));
  assert.deepEqual(readdirSync(foreign), ['config.json']);
  assert.equal(readFileSync(join(foreign, 'config.json'), 'utf8'), '{"mine": true}');

  // a previous conversion whose model.safetensors was replaced by a directory
  const previous = fresh();
  await convertMor({ ...release, out: previous });
  const modelPath = join(previous, 'model.safetensors');
  rmSync(modelPath);
  mkdirSync(modelPath);
  await assert.rejects(convertMor({ ...release, out: previous }), isCode('IO_WRITE'));
  assert.ok(statSync(modelPath).isDirectory());
});

test('a YAML that does not match the weights is refused before anything is written', async () => {
  const yaml = readFileSync(release.experiment, 'utf8').replace('num_recursion: 3', 'num_recursion: 2');
  const experiment = join(root, 'rec2.yaml');
  writeFileSync(experiment, yaml);
  const out = fresh();
  await assert.rejects(convertMor({ ...release, experiment, out }), isCode('CONVERT_TENSORS', /missing|unexpected|mis-shaped/));
  assert.equal(existsSync(out), false, 'OUT is not created');

  const relaxed = join(root, 'relaxed.yaml');
  writeFileSync(relaxed, readFileSync(release.experiment, 'utf8').replace(/relaxation:\n {2}enable: false/, 'relaxation:\n  enable: true'));
  await assert.rejects(convertMor({ ...release, experiment: relaxed, out: fresh() }), isCode('CFG_FIELD', /relaxation\.enable/));

  await assert.rejects(convertMor({ ...release, out: fresh(), importYaml: () => Promise.reject(new Error('Cannot find package')) }), (e: unknown) => {
    assert.ok(e instanceof PonderError && e.code === 'CONVERT_UNAVAILABLE', String(e));
    assert.match(e.hint, /npm install yaml/);
    return true;
  });

  const broken = join(root, 'broken.yaml');
  writeFileSync(broken, 'recursive:\n  enable: true\n  enable: false\n');
  await assert.rejects(convertMor({ ...release, experiment: broken, out: fresh() }), isCode('CFG_YAML'));
});

test('the config is built as upstream builds it: model_config overrides, head_dim, max_length, kv_sharing from recursive', () => {
  const base = JSON.stringify({ model_type: 'llama', hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 8, vocab_size: 256, intermediate_size: 128, max_position_embeddings: 2048 });
  const experiment = {
    model: 'smollm', max_length: 128, model_config: { hidden_size: 96, num_attention_heads: 6, rope_theta: 5e5 },
    recursive: { enable: true, num_recursion: 2, sharing: 'middle_cycle' },
    kv_sharing: { enable: true, num_recursion: null, sharing: null }, wandb: true,
  };
  const config = morConfigFromRelease(base, 'config.json', experiment, 'exp.yaml');
  assert.equal(config.model_config.hidden_size, 96);
  assert.equal(config.model_config.head_dim, 16);
  assert.equal(config.model_config.rope_theta, 5e5);
  assert.equal(config.model_config.max_position_embeddings, 128);
  assert.deepEqual(config.cfg.kv_sharing, { enable: true, num_recursion: 2, sharing: 'middle_cycle' });
  assert.equal('wandb' in config.cfg, false);
  assert.throws(() => morConfigFromRelease(base, 'config.json', { ...experiment, model_config: { frobnicate: 1 } }, 'exp.yaml'), isCode('CFG_FIELD', /model_config\.frobnicate/));
  assert.throws(() => morConfigFromRelease(base, 'config.json', { ...experiment, model: 'gemma' }, 'exp.yaml'), isCode('CFG_FIELD', /model is "gemma"/));
  assert.throws(() => morConfigFromRelease(base.replace('llama', 'gpt2'), 'config.json', experiment, 'exp.yaml'), isCode('CFG_MODEL_TYPE'));
});

/** The golden weights as a safetensors state dict, edited by `edit`. */
function goldenWeightsFile(edit: (tensors: Map<string, TensorToWrite>) => void): string {
  const golden = loadGoldenCase(CASE);
  const tensors = new Map<string, TensorToWrite>();
  for (const [full, info] of golden.file.tensors) {
    if (full.startsWith('weights.')) tensors.set(full.slice(8), { name: full.slice(8), dtype: info.dtype, shape: info.shape, data: readTensor(golden.file, full) });
  }
  edit(tensors);
  const path = join(root, `weights${counter++}.safetensors`);
  writeFileSync(path, writeSafetensors([...tensors.values()]));
  return path;
}

test('a safetensors state dict without the tied lm_head (a save_pretrained export) converts to the same files', async () => {
  const weights = goldenWeightsFile((t) => {
    t.delete('lm_head.weight');
    t.set('model.rotary_emb.inv_freq', { name: 'model.rotary_emb.inv_freq', dtype: 'F32', shape: [8], data: new Float32Array(8) });
  });
  const out = fresh();
  const result = await convertMor({ ...release, weights, out });
  assert.ok(!result.notes.some((n) => /lm_head/.test(n)), result.notes.join('\n'));
  assert.equal(result.tensors, 41);
  assert.ok(result.notes.some((n) => /RoPE buffer/.test(n)), result.notes.join('\n'));
  const report = await runGoldenCase(caseWithConvertedModel(out), createScalarRuntime());
  assert.ok(report.pass, report.error);
});

test('an alias whose values differ (a tied lm_head too), an unknown tensor, or a non-float weight is CONVERT_TENSORS naming it', async () => {
  const differs = goldenWeightsFile((t) => {
    const name = 'model.layers.3.block.1.mlp.up_proj.weight';
    const data = Float32Array.from(t.get(name)!.data as Float32Array);
    data[7] += 1;
    t.set(name, { ...t.get(name)!, data });
  });
  await assert.rejects(convertMor({ ...release, weights: differs, out: fresh() }), isCode('CONVERT_TENSORS', /model\.layers\.3\.block\.1\.mlp\.up_proj\.weight differs from model\.layers\.1\.block\.1\.mlp\.up_proj\.weight/));
  const head = goldenWeightsFile((t) => {
    const data = Float32Array.from(t.get('lm_head.weight')!.data as Float32Array);
    data[0] += 1;
    t.set('lm_head.weight', { ...t.get('lm_head.weight')!, data });
  });
  await assert.rejects(convertMor({ ...release, weights: head, out: fresh() }), isCode('CONVERT_TENSORS', /lm_head\.weight differs from model\.embed_tokens\.weight, though tie_word_embeddings is true/));
  const extra = goldenWeightsFile((t) => t.set('model.layers.0.lora_A', { name: 'model.layers.0.lora_A', dtype: 'F32', shape: [2], data: new Float32Array(2) }));
  await assert.rejects(convertMor({ ...release, weights: extra, out: fresh() }), isCode('CONVERT_TENSORS', /unexpected model\.layers\.0\.lora_A/));
  const ints = goldenWeightsFile((t) => t.set('model.norm.weight', { name: 'model.norm.weight', dtype: 'I32', shape: [64], data: new Int32Array(64) }));
  await assert.rejects(convertMor({ ...release, weights: ints, out: fresh() }), isCode('CONVERT_TENSORS', /model\.norm\.weight is I32/));
});

test('convert --help, and missing flags are usage errors', async () => {
  const help = await ponder(['convert', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /ponder convert mor --weights FILE --config FILE --experiment FILE OUT/);
  const missing = await ponder(['convert', 'mor', '--weights', release.weights, fresh()]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /^error\[ARG_MISSING_PATH\]: convert mor: --config FILE is required/);
  const kind = await ponder(['convert', 'ouro', fresh()]);
  assert.match(kind.err, /^error\[ARG_INVALID\]/);
});
