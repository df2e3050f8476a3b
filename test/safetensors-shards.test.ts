/**
 * Model directories and sharded checkpoints (src/node/model-dir.ts): layouts that must open, and
 * one test per shard/index rule. Each test writes its own small directory under the OS temp dir.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../src/format/safetensors.js';
import { openModelDir, readSafetensorsHeaderFile } from '../src/node/model-dir.js';
import { expectPonderError, stFile } from './fixtures/safetensors-bytes.js';
import { loadModel } from '../src/api/load.js';
import { PonderError } from '../src/errors.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';

const root = mkdtempSync(join(tmpdir(), 'ponder-shards-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirCount = 0;

/** A fresh directory holding `files` (name → bytes or text). */
function modelDir(files: Record<string, Uint8Array | string>): string {
  const dir = join(root, `m${dirCount++}`);
  mkdirSync(dir);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}

function f32(name: string, values: number[], shape = [values.length]): TensorToWrite {
  return { name, dtype: 'F32', shape, data: new Float32Array(values) };
}

const embed = f32('model.embed_tokens.weight', [1, 2, 3, 4, 5, 6], [3, 2]);
const norm = f32('model.norm.weight', [0.5, -0.25]);
const head = f32('lm_head.weight', [7, 8, 9, 10, 11, 12], [3, 2]);
const config = JSON.stringify({ model_type: 'ouro', hidden_size: 2, vocab_size: 3, total_ut_steps: 4 });

function index(map: Record<string, string>, extra = ''): string {
  return `{"metadata": {"total_size": 56}${extra}, "weight_map": ${JSON.stringify(map)}}`;
}

const shardA = writeSafetensors([embed, norm]);
const shardB = writeSafetensors([head]);
const goodMap = { 'model.embed_tokens.weight': 'model-00001-of-00002.safetensors', 'model.norm.weight': 'model-00001-of-00002.safetensors', 'lm_head.weight': 'model-00002-of-00002.safetensors' };

test('a sharded directory opens: config, index, every tensor read back bit-exactly from its shard', () => {
  const dir = modelDir({ 'config.json': config, 'model.safetensors.index.json': index(goodMap), 'model-00001-of-00002.safetensors': shardA, 'model-00002-of-00002.safetensors': shardB });
  const model = openModelDir(dir);
  assert.equal(model.layout, 'sharded');
  assert.equal(model.config!.values.model_type, 'ouro');
  assert.equal(model.files.length, 2);
  assert.deepEqual(model.weights.names().sort(), Object.keys(goodMap).sort());
  for (const t of [embed, norm, head]) {
    assert.deepEqual(model.weights.info(t.name)!.shape, t.shape);
    assert.deepEqual(model.weights.read(t.name), t.data);
  }
});

test('a single-file directory, a bare .safetensors file and a bare index file open', () => {
  const dir = modelDir({ 'config.json': config, 'generation_config.json': '{"max_new_tokens": 8}', 'model.safetensors': writeSafetensors([embed, head]) });
  const single = openModelDir(dir);
  assert.equal(single.layout, 'single');
  assert.equal(single.generationConfig!.values.max_new_tokens, 8);
  assert.deepEqual(single.weights.read('lm_head.weight'), head.data);
  const file = openModelDir(join(dir, 'model.safetensors'));
  assert.equal(file.layout, 'file');
  assert.equal(file.config, undefined);
  const sharded = modelDir({ 'model.safetensors.index.json': index(goodMap), 'model-00001-of-00002.safetensors': shardA, 'model-00002-of-00002.safetensors': shardB });
  assert.equal(openModelDir(join(sharded, 'model.safetensors.index.json')).layout, 'sharded');
});

test('tensors at unaligned file offsets are read from disk bit-exactly', () => {
  const data = new Uint8Array(1 + 8);
  data.set(new Uint8Array(new Float32Array([1.25, -3]).buffer), 1);
  const dir = modelDir({ 'model.safetensors': stFile('{"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"f":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}} ', data) });
  assert.deepEqual(openModelDir(dir).weights.read('f'), new Float32Array([1.25, -3]));
});

test('readSafetensorsHeaderFile validates a file from its header and size, reporting its tensors and data length', () => {
  const header = readSafetensorsHeaderFile(join(modelDir({ 'model.safetensors': writeSafetensors([embed, head]) }), 'model.safetensors'));
  assert.equal(header.tensors.size, 2);
  assert.equal(header.dataLength, 48);
});

test('SHARD_MISSING_FILE: the index names a shard that is not there', () => {
  const dir = modelDir({ 'model.safetensors.index.json': index(goodMap), 'model-00001-of-00002.safetensors': shardA });
  const err = expectPonderError(() => openModelDir(dir), 'SHARD_MISSING_FILE', { path: join(dir, 'model-00002-of-00002.safetensors'), tensor: 'lm_head.weight' });
  assert.match(err.message, /model-00002-of-00002\.safetensors/);
});

test('SHARD_DUPLICATE_TENSOR: a tensor held by two shards, or listed twice in the index', () => {
  const both = modelDir({
    'model.safetensors.index.json': index(goodMap),
    'model-00001-of-00002.safetensors': writeSafetensors([embed, norm, head]),
    'model-00002-of-00002.safetensors': shardB,
  });
  const err = expectPonderError(() => openModelDir(both), 'SHARD_DUPLICATE_TENSOR', { path: join(both, 'model-00002-of-00002.safetensors'), tensor: 'lm_head.weight' });
  assert.match(err.message, /model-00001-of-00002\.safetensors/);
  const twice = modelDir({
    'model.safetensors.index.json': '{"weight_map": {"lm_head.weight": "a.safetensors", "lm_head.weight": "b.safetensors"}}',
    'a.safetensors': shardB, 'b.safetensors': shardB,
  });
  expectPonderError(() => openModelDir(twice), 'SHARD_DUPLICATE_TENSOR', { path: join(twice, 'model.safetensors.index.json'), tensor: 'lm_head.weight' });
});

test('SHARD_MISSING_TENSOR: an index entry absent from the shard it names', () => {
  const dir = modelDir({
    'model.safetensors.index.json': index({ ...goodMap, 'model.norm.weight': 'model-00002-of-00002.safetensors' }),
    'model-00001-of-00002.safetensors': writeSafetensors([embed]),
    'model-00002-of-00002.safetensors': shardB,
  });
  expectPonderError(() => openModelDir(dir), 'SHARD_MISSING_TENSOR', { path: join(dir, 'model-00002-of-00002.safetensors'), tensor: 'model.norm.weight' });
});

const BAD_INDEXES = ['{"weight_map": ', '[]', '{"metadata": {}}', '{"weight_map": []}', '{"weight_map": {}}', '{"weight_map": {"a": 3}}',
  '{"weight_map": {"a": "../outside.safetensors"}}', '{"weight_map": {"a": "/etc/passwd"}}', '{"weight_map": {"a": "C:\\\\x.safetensors"}}', '<!doctype html><html>404</html>',
  '{"weight_map": {"a": "x.safetensors"}, "weight_map": {"a": "x.safetensors"}}'];

test('SHARD_INDEX: malformed indexes, shard paths outside the directory, tensors the index does not list', () => {
  const shards = { 'model-00001-of-00002.safetensors': shardA, 'model-00002-of-00002.safetensors': shardB };
  for (const text of BAD_INDEXES) {
    const dir = modelDir({ 'model.safetensors.index.json': text, ...shards });
    expectPonderError(() => openModelDir(dir), 'SHARD_INDEX', { path: join(dir, 'model.safetensors.index.json') });
  }
  const { 'model.norm.weight': _dropped, ...partial } = goodMap;
  const dir = modelDir({ 'model.safetensors.index.json': index(partial), ...shards });
  const err = expectPonderError(() => openModelDir(dir), 'SHARD_INDEX', { path: join(dir, 'model.safetensors.index.json') });
  assert.match(err.message, /model\.norm\.weight/);
});

test('a broken shard reports the safetensors rule it breaks, naming the shard', () => {
  const dir = modelDir({ 'model.safetensors.index.json': index(goodMap), 'model-00001-of-00002.safetensors': shardA, 'model-00002-of-00002.safetensors': shardB.subarray(0, shardB.length - 3) });
  expectPonderError(() => openModelDir(dir), 'ST_INCOMPLETE_BUFFER', { path: join(dir, 'model-00002-of-00002.safetensors') });
});

test('MODEL_NO_WEIGHTS: a directory without safetensors weights says what it found instead', () => {
  const empty = modelDir({ 'config.json': config });
  expectPonderError(() => openModelDir(empty), 'MODEL_NO_WEIGHTS', { path: empty });
  const torch = modelDir({ 'config.json': config, 'pytorch_model.bin': new Uint8Array([0x50, 0x4b, 3, 4]) });
  const err = expectPonderError(() => openModelDir(torch), 'MODEL_NO_WEIGHTS', { path: torch });
  assert.match(err.message, /pytorch_model\.bin/);
  const two = modelDir({ 'a.safetensors': shardA, 'b.safetensors': shardB });
  expectPonderError(() => openModelDir(two), 'MODEL_NO_WEIGHTS', { path: two });
});

test('IO errors: a missing path and a dangling symlink are IO_NOT_FOUND', () => {
  const missing = join(root, 'does-not-exist');
  expectPonderError(() => openModelDir(missing), 'IO_NOT_FOUND', { path: missing });
  const dir = modelDir({});
  symlinkSync(join(dir, 'nowhere.safetensors'), join(dir, 'model.safetensors'));
  expectPonderError(() => openModelDir(join(dir, 'model.safetensors')), 'IO_NOT_FOUND', { path: join(dir, 'model.safetensors') });
});

test('CFG_JSON: a config.json that is HTML, invalid JSON, invalid UTF-8 or not an object', () => {
  const weights = writeSafetensors([head]);
  for (const text of ['<!DOCTYPE html><html></html>', '{"hidden_size": 2,}', '[1, 2]', '{"a": 1, "a": 2}', Uint8Array.from([0x7b, 0xff, 0x7d])]) {
    const dir = modelDir({ 'config.json': text, 'model.safetensors': weights });
    expectPonderError(() => openModelDir(dir), 'CFG_JSON', { path: join(dir, 'config.json') });
  }
});

test('the in-memory (browser) loader reads an index as strictly as a model directory: the same codes for the same files', async () => {
  const shards = { 'model-00001-of-00002.safetensors': shardA, 'model-00002-of-00002.safetensors': shardB };
  const load = (files: Record<string, Uint8Array | string>) => loadModel({
    config, label: 'mem', files: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, typeof v === 'string' ? new TextEncoder().encode(v) : v])),
  }, { runtime: createScalarRuntime() });
  const sameCode = async (files: Record<string, Uint8Array | string>, code: string) => {
    const what = `${code}: ${JSON.stringify(files['model.safetensors.index.json'])}`;
    assert.throws(() => openModelDir(modelDir(files)), (e: unknown) => e instanceof PonderError && e.code === code, `on disk, ${what}`);
    await assert.rejects(load(files), (e: unknown) => e instanceof PonderError && e.code === code, `in memory, ${what}`);
  };
  for (const text of BAD_INDEXES) await sameCode({ 'model.safetensors.index.json': text, ...shards }, 'SHARD_INDEX');
  const { 'model.norm.weight': _dropped, ...partial } = goodMap;
  await sameCode({ 'model.safetensors.index.json': index(partial), ...shards }, 'SHARD_INDEX');
  await sameCode({ 'model.safetensors.index.json': index(goodMap), 'model-00001-of-00002.safetensors': shardA }, 'SHARD_MISSING_FILE');
  await sameCode({ 'model.safetensors.index.json': index({ ...goodMap, 'model.norm.weight': 'model-00002-of-00002.safetensors' }), 'model-00001-of-00002.safetensors': writeSafetensors([embed]), 'model-00002-of-00002.safetensors': shardB }, 'SHARD_MISSING_TENSOR');
  await sameCode({ 'model.safetensors.index.json': index(goodMap), 'model-00001-of-00002.safetensors': shardA, 'model-00002-of-00002.safetensors': writeSafetensors([head, norm]) }, 'SHARD_DUPLICATE_TENSOR');
});
