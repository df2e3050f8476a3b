import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { assertUsageError, ponder } from './cli-support.js';
import { compareModels, defaultComparePolicies, windowsOf } from '../src/compare/quality.js';
import { loadModelDir } from '../src/node/index.js';
import { quantizeModel } from '../src/node/quantize.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';

const tmp = mkdtempSync(join(tmpdir(), 'ponder-compare-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
const load = async (dir: string) => loadModelDir(dir, { runtime: await createWasmRuntime() });
const IDS = [[3, 17, 5, 42, 8, 11, 29, 2, 7, 7, 19], [4, 4, 9, 12]];

for (const family of ['ouro', 'mor', 'huginn'] as const) {
  test(`${family}: a model against itself agrees exactly at every depth and under every adaptive policy`, async () => {
    const a = await load(`models/${family}-sotu`), b = await load(`models/${family}-sotu`);
    const report = compareModels(a, b, IDS);
    assert.equal(report.positions, 10 + 3);
    assert.deepEqual(report.rows.filter((r) => r.kind === 'fixed').map((r) => r.policy), Array.from({ length: a.defaultDepth }, (_, i) => `fixed(${i + 1})`));
    assert.ok(report.rows.some((r) => r.kind === 'adaptive'));
    for (const r of report.rows) {
      assert.equal(r.kl, 0, r.policy); assert.equal(r.klMax, 0, r.policy);
      assert.equal(r.top1, 1, r.policy); assert.equal(r.exitAgreement, 1, r.policy);
      assert.equal(r.meanStepsA, r.meanStepsB, r.policy);
    }
  });
}

test('against its 4-bit quantization: A\'s steps are its own, fixed depths agree on steps, KL is positive and top-1 is a fraction', async () => {
  const out = join(tmp, 'ouro-4');
  await quantizeModel({ input: 'models/ouro-sotu', out, bits: 4 });
  const a = await load('models/ouro-sotu'), b = await load(out), self = await load('models/ouro-sotu');
  const policies = defaultComparePolicies(a);
  const report = compareModels(a, b, IDS, { policies });
  const alone = compareModels(a, self, IDS, { policies });
  report.rows.forEach((r, i) => {
    assert.equal(r.meanStepsA, alone.rows[i].meanStepsA, `${r.policy}: A's depth does not depend on B`);
    assert.ok(r.kl > 0 && r.klMax >= r.kl, `${r.policy}: KL ${r.kl}, max ${r.klMax}`);
    assert.ok(r.top1 >= 0 && r.top1 <= 1 && r.exitAgreement >= 0 && r.exitAgreement <= 1);
    if (r.kind === 'fixed') assert.equal(r.exitAgreement, 1, r.policy);
  });
});

test('models of different families, ids outside the vocabulary and windows past the context are refused before any compute', async () => {
  const ouro = await load('models/ouro-sotu'), mor = await load('models/mor-sotu');
  assert.throws(() => compareModels(ouro, mor, IDS), (e: { code?: string }) => e.code === 'ARG_INVALID');
  assert.throws(() => compareModels(ouro, ouro, [[1, ouro.vocabSize]]), (e: { code?: string }) => e.code === 'GEN_TOKEN_ID');
  assert.throws(() => compareModels(ouro, ouro, [new Array(ouro.contextLength + 2).fill(1)]), (e: { code?: string }) => e.code === 'GEN_CONTEXT');
  assert.throws(() => compareModels(ouro, ouro, [[1]]), (e: { code?: string }) => e.code === 'ARG_INVALID');
  assert.deepEqual(windowsOf([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
});

test('ponder eval --compare A A --ids FILE --json: one row per policy, all in exact agreement', () => {
  const ids = join(tmp, 'ids.txt');
  writeFileSync(ids, '# two windows\n3 17 5 42 8\n4,4,9\n');
  const stdout = execFileSync(process.execPath, ['bin/ponder.js', 'eval', '--compare', 'models/huginn-sotu', 'models/huginn-sotu', '--ids', ids, '--policy', 'fixed(2)', '--policy', 'exit(kl, 1e-2)', '--json', '--threads', '1'], { encoding: 'utf8' });
  const report = JSON.parse(stdout);
  assert.deepEqual(report.rows.map((r: { policy: string }) => r.policy), ['fixed(2)', 'exit(kl, 0.01)']);
  assert.equal(report.positions, 4 + 2);
  for (const r of report.rows) assert.ok(r.kl === 0 && r.top1 === 1 && r.exitAgreement === 1);
});

test('ponder eval --compare Q Q --quant-activations-b int16: B runs the int16 mode (a small positive KL, the same depths); bad modes are ARG_INVALID before any load', async () => {
  const q = join(tmp, 'ouro-4-int16');
  await quantizeModel({ input: 'models/ouro-sotu', out: q, bits: 4 });
  const ids = join(tmp, 'ids-int16.txt');
  writeFileSync(ids, '3 17 5 42 8 11 29 2 7 7 19\n');
  const stdout = execFileSync(process.execPath, ['bin/ponder.js', 'eval', '--compare', q, q, '--quant-activations-b', 'int16', '--ids', ids, '--policy', 'fixed(4)', '--json', '--threads', '1'], { encoding: 'utf8' });
  const [row] = JSON.parse(stdout).rows;
  assert.ok(row.kl > 0 && row.kl < 1e-4, `KL ${row.kl}: int16 activations deviate from the exact mode, by little`);
  assert.equal(row.exitAgreement, 1);
  for (const [flags, field] of [[['--quant-activations', 'int4'], 'quant-activations'], [['--quant-activations-b', 'f16'], 'quant-activations-b'], [['--kernels', 'scalar', '--quant-activations', 'int16'], 'quant-activations']] as const) {
    const r = await ponder(['eval', '--compare', q, q, '--ids', ids, ...flags]);
    assertUsageError(r, 'ARG_INVALID');
    assert.match(r.err, new RegExp(`--${field}`));
  }
});

test('ponder eval --compare Q Q --quant-activations-b int8, B deviates more than int16 but keeps the depths; --relaxed runs it; conform and --kernels scalar refuse --relaxed', async () => {
  const q = join(tmp, 'ouro-4-int8');
  await quantizeModel({ input: 'models/ouro-sotu', out: q, bits: 4 });
  const ids = join(tmp, 'ids-int8.txt');
  writeFileSync(ids, '3 17 5 42 8 11 29 2 7 7 19\n');
  const rows = (extra: string[]) => JSON.parse(execFileSync(process.execPath, ['bin/ponder.js', 'eval', '--compare', q, q, '--ids', ids, '--policy', 'fixed(4)', '--json', '--threads', '1', ...extra], { encoding: 'utf8' })).rows[0];
  const int16 = rows(['--quant-activations-b', 'int16']), int8 = rows(['--quant-activations-b', 'int8']);
  assert.ok(int8.kl > int16.kl && int8.kl < 1e-2, `KL int8 ${int8.kl} vs int16 ${int16.kl}: int8 rounds 256 times coarser, still far below the 4-bit weights' own error`);
  assert.equal(int8.exitAgreement, 1);
  // --relaxed with int8 for A and B: the byte-dot path runs end to end and is deterministic (the
  // kernels' bit-identity with the default build's int8 is test/kernels-quant.test.ts's)
  const relaxed = rows(['--quant-activations', 'int8', '--relaxed']);
  assert.ok(relaxed.kl === 0 && relaxed.top1 === 1, `KL ${relaxed.kl}: the same run twice`);
  for (const [flags, field] of [[['conform', '--relaxed'], 'relaxed'], [['run', '--model', q, '--kernels', 'scalar', '--relaxed', '--prompt', 'a'], 'relaxed']] as const) {
    const r = await ponder([...flags]);
    assertUsageError(r, 'ARG_INVALID');
    assert.match(r.err, new RegExp(`--${field}`));
  }
});

test('ponder eval --compare --ids reads ponder eval\'s formats: JSON windows give the report of the same lines; a bad line is EVAL_INPUT naming it', async () => {
  const lines = join(tmp, 'same.txt'), json = join(tmp, 'same.json'), bad = join(tmp, 'bad.txt');
  writeFileSync(lines, '3 17 5 42 8\n4,4,9\n');
  writeFileSync(json, JSON.stringify({ windows: [{ ids: [3, 17, 5, 42, 8] }, { ids: [4, 4, 9] }] }));
  writeFileSync(bad, '3 17 5\n4 four 9\n');
  const argv = (ids: string): string[] => ['eval', '--compare', 'models/ouro-sotu', 'models/ouro-sotu', '--ids', ids, '--policy', 'fixed(2)', '--json', '--threads', '1'];
  const a = await ponder(argv(lines)), b = await ponder(argv(json));
  assert.equal(a.code, 0, a.err);
  assert.equal(b.code, 0, b.err);
  const [ra, rb] = [JSON.parse(a.out), JSON.parse(b.out)];
  assert.equal(ra.positions, 4 + 2);
  assert.deepEqual({ ...rb, b: ra.b, a: ra.a }, ra);
  const r = await ponder(argv(bad));
  assertUsageError(r, 'EVAL_INPUT');
  assert.match(r.err, /bad\.txt:2: "four" is not a token id/);
});

test('ponder eval --compare --text or --ids naming a missing file is IO_NOT_FOUND naming it, not an internal error', async () => {
  for (const flag of ['--text', '--ids']) {
    const missing = join(tmp, `missing-${flag.slice(2)}.txt`);
    const r = await ponder(['eval', '--compare', 'models/ouro-sotu', 'models/ouro-sotu', flag, missing, '--threads', '1']);
    assertUsageError(r, 'IO_NOT_FOUND');
    assert.ok(r.err.includes(missing), `${flag}: the message names the file: ${r.err}`);
  }
});
