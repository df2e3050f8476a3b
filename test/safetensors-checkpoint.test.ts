/**
 * A model directory on disk feeds a family exactly the weights an in-memory file does: the Ouro
 * golden case's weights, re-written as a sharded Hugging Face checkpoint (config.json + two shards +
 * index), load through openModelDir's file-backed WeightSource and give bit-identical logits.
 * And a checkpoint that does not match its config is rejected with one BIND_MISMATCH listing every
 * problem, before any tensor data is read.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PonderError } from '../src/errors.js';
import { intTensor, tensorNames } from '../src/conform/golden.js';
import { readTensor, writeSafetensors, type TensorToWrite } from '../src/format/safetensors.js';
import { OuroModel, checkOuroWeights } from '../src/models/ouro.js';
import { ouroConfigFromJson } from '../src/models/ouro-config.js';
import { safetensorsWeights } from '../src/models/weights.js';
import { loadGoldenCase } from '../src/node/files.js';
import { openModelDir } from '../src/node/model-dir.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';

const root = mkdtempSync(join(tmpdir(), 'ponder-checkpoint-'));
after(() => rmSync(root, { recursive: true, force: true }));

const golden = loadGoldenCase('spec/golden/ouro/forward_all_loops');
/** The case's weights under their upstream state_dict names. */
const weights: TensorToWrite[] = tensorNames(golden, 'weights.').map((full) => {
  const info = golden.file.tensors.get(full)!;
  return { name: full.slice('weights.'.length), dtype: info.dtype, shape: info.shape, data: readTensor(golden.file, full) };
});

function checkpoint(name: string, tensors: TensorToWrite[]): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(golden.config, null, 2));
  const half = Math.ceil(tensors.length / 2);
  const shards = [tensors.slice(0, half), tensors.slice(half)];
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, k) => {
    const file = `model-0000${k + 1}-of-00002.safetensors`;
    writeFileSync(join(dir, file), writeSafetensors(shard, { format: 'pt' }));
    for (const t of shard) weightMap[t.name] = file;
  });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return dir;
}

test('a sharded checkpoint directory gives the same logits as the in-memory golden file, bit for bit', () => {
  const model = openModelDir(checkpoint('ouro-sharded', weights));
  assert.equal(model.layout, 'sharded');
  const ids = intTensor(golden, 'inputs.input_ids');
  const fromDisk = OuroModel.bind(ouroConfigFromJson(model.config!, model.config!.path), model.weights, createScalarRuntime());
  const inMemory = OuroModel.bind(ouroConfigFromJson(golden.config, golden.name), safetensorsWeights([golden.file], 'weights.', golden.name), createScalarRuntime());
  const a = fromDisk.forward(ids);
  const b = inMemory.forward(ids);
  assert.ok(a.logits.length > 0);
  assert.deepEqual(new Uint32Array(a.logits.buffer, a.logits.byteOffset, a.logits.length), new Uint32Array(b.logits.buffer, b.logits.byteOffset, b.logits.length));
});

test('BIND_MISMATCH lists every missing, extra and mis-shaped tensor of a checkpoint at once', () => {
  assert.equal(golden.config.tie_word_embeddings, false, 'this case keeps lm_head separate, so it is required');
  const norm = weights.find((t) => t.name === 'model.norm.weight')!;
  const broken = weights
    .filter((t) => t.name !== 'lm_head.weight')
    .map((t) => (t === norm ? { ...t, shape: [norm.shape[0] / 2, 2] } : t))
    .concat([{ name: 'model.extra.weight', dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
  const model = openModelDir(checkpoint('ouro-broken', broken));
  const runtime = createScalarRuntime();
  assert.throws(() => checkOuroWeights(model.weights, ouroConfigFromJson(model.config!, model.config!.path), runtime), (e: unknown) => {
    assert.ok(e instanceof PonderError);
    assert.equal(e.code, 'BIND_MISMATCH');
    assert.match(e.message, /3 problems/);
    assert.match(e.message, /missing lm_head\.weight/);
    assert.match(e.message, /mis-shaped model\.norm\.weight/);
    assert.match(e.message, /unexpected model\.extra\.weight/);
    return true;
  });
});
