/**
 * checkModelOutDir, the one OUT check of `ponder convert mor` and `ponder quantize`: OUT is absent,
 * empty, or a previous run's output (only its files, each regular, model.safetensors marked by
 * that command); anything else is IO_WRITE naming the path, and nothing is touched.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkModelOutDir, type ModelOutDir } from '../src/node/convert.js';
import { writeSafetensors } from '../src/format/safetensors.js';
import { PonderError } from '../src/errors.js';

const root = mkdtempSync(join(tmpdir(), 'ponder-out-dir-'));
after(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
const fresh = (): string => join(root, `out${counter++}`);

const QUANTIZE: ModelOutDir = { files: ['config.json', 'model.safetensors', 'tokenizer.json'], writtenBy: { key: 'quantized_by', value: 'ponder quantize' } };
const CONVERT: ModelOutDir = { files: ['config.json', 'model.safetensors'], writtenBy: { key: 'converted_by', value: 'ponder convert mor' } };

/** OUT holding a previous run's files: model.safetensors marked with `metadata`, and the others. */
function previousRun(metadata: Record<string, string>, others: readonly string[] = ['config.json']): string {
  const out = fresh();
  mkdirSync(out);
  writeFileSync(join(out, 'model.safetensors'), writeSafetensors([{ name: 'w', dtype: 'F32', shape: [1], data: new Float32Array([1]) }], metadata));
  for (const name of others) writeFileSync(join(out, name), '{}');
  return out;
}

const ioWrite = (path: string, text: RegExp) => (e: unknown) => {
  assert.ok(e instanceof PonderError, String(e));
  assert.equal(e.code, 'IO_WRITE');
  assert.equal(e.path, path);
  assert.match(e.message, text);
  assert.ok(e.hint);
  return true;
};

test('an absent OUT is to be created; an empty one, or one holding only leftovers of its own files, is used as it is', () => {
  for (const dir of [CONVERT, QUANTIZE]) {
    assert.equal(checkModelOutDir(fresh(), dir), true);
    const empty = fresh();
    mkdirSync(empty);
    writeFileSync(join(empty, '.model.safetensors.1234.k3j9x2ab.tmp'), 'partial');
    writeFileSync(join(empty, '.config.json.99.zz.tmp'), 'partial');
    assert.equal(checkModelOutDir(empty, dir), false);
  }
});

test('a temporary-looking file of a name the command does not write is not a leftover: IO_WRITE', () => {
  for (const dir of [CONVERT, QUANTIZE]) {
    const out = fresh();
    mkdirSync(out);
    writeFileSync(join(out, '.notes.txt.1234.abcd.tmp'), 'mine');
    assert.throws(() => checkModelOutDir(out, dir), ioWrite(out, /not empty \(\.notes\.txt\.1234\.abcd\.tmp\)/));
    assert.deepEqual(readdirSync(out), ['.notes.txt.1234.abcd.tmp']);
  }
});

test('a previous run of the same command is replaced; of another command, or with other files, it is IO_WRITE', () => {
  assert.equal(checkModelOutDir(previousRun({ converted_by: 'ponder convert mor' }), CONVERT), false);
  assert.equal(checkModelOutDir(previousRun({ quantized_by: 'ponder quantize' }, ['config.json', 'tokenizer.json']), QUANTIZE), false);
  const other = previousRun({ quantized_by: 'ponder quantize' });
  assert.throws(() => checkModelOutDir(other, CONVERT), ioWrite(other, /not a previous `ponder convert mor` output/));
  const extra = previousRun({ converted_by: 'ponder convert mor' }, ['config.json', 'tokenizer.json']);
  assert.throws(() => checkModelOutDir(extra, CONVERT), ioWrite(extra, /not a previous/));
});

test('an entry of a previous run that is not a regular file is IO_WRITE naming it, for either command', () => {
  for (const [dir, metadata] of [[CONVERT, { converted_by: 'ponder convert mor' }], [QUANTIZE, { quantized_by: 'ponder quantize' }]] as const) {
    const out = previousRun(metadata, []);
    mkdirSync(join(out, 'config.json'));
    assert.throws(() => checkModelOutDir(out, dir), ioWrite(join(out, 'config.json'), /is not a regular file/));
  }
});

test('OUT that is a file is IO_WRITE', () => {
  const file = join(root, 'a-file');
  writeFileSync(file, 'keep');
  assert.throws(() => checkModelOutDir(file, CONVERT), ioWrite(file, /not a directory/));
});
