/**
 * The smaller findings of issue 11, each through the CLI: the error line always comes first (notes
 * follow only once every argument checked out), negative numbers reach their flag's own check, a
 * --threshold nothing reads is an error, inspect names every family, and a malformed golden case
 * is bad input (exit 2 before any case runs), not a failing case.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAMILIES } from '../src/models/registry.js';
import { assertUsageError, ponder } from './cli-support.js';
import { DEFAULT_MODEL } from '../src/defaults.js';

const root = mkdtempSync(join(tmpdir(), 'ponder-cli-input-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('issue 11: inspect names the family of every bundled model, MoR included (before: "family unknown")', async () => {
  for (const family of FAMILIES) {
    const r = await ponder(['inspect', `models/demo-${family.family}`]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`family ${family.family}\\b`));
  }
});

test('issue 11: without --model, a bad argument prints its error line first and no "no --model given" notice (before: the notice came first)', async () => {
  for (const [argv, code] of [[['run', '--ids', '99999', '-n', '2'], 'GEN_TOKEN_ID'], [['run', '--policy', 'router', '-n', '2'], 'ARG_POLICY']] as const) {
    const r = await ponder([...argv]);
    assertUsageError(r, code);
    assert.doesNotMatch(r.err, /no --model given/, 'the notice is not printed when an argument is refused');
  }
  const ok = await ponder(['run', '--ids', '1,2', '-n', '1']);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.err, new RegExp(`^no --model given: using the bundled trained model ${DEFAULT_MODEL}`));
});

test('issue 11: -n -5 says what is wrong with -5 (before: "argument is ambiguous"); other negative values reach their checks too', async () => {
  const r = await ponder(['run', '-m', 'models/demo-ouro', '-n', '-5']);
  assertUsageError(r, 'ARG_INVALID');
  assert.match(r.err, /--max-new-tokens must be a positive integer, got "-5"/);
  const t = await ponder(['run', '-m', 'models/demo-ouro', '--ids', '1', '-n', '1', '--temperature', '-1']);
  assertUsageError(t, 'ARG_INVALID');
  assert.match(t.err, /temperature must be a finite number ≥ 0, got -1/);
  const seed = await ponder(['run', '-m', 'models/demo-ouro', '--seed', '-3']);
  assertUsageError(seed, 'ARG_INVALID');
  assert.match(seed.err, /--seed must be an integer in \[0, 4294967295\], got "-3"/);
});

test('issue 11: --threshold with a policy that reads none (fixed, default, a threshold written in the policy) is ARG_POLICY (before: silently ignored)', async () => {
  for (const policy of ['fixed(4)', 'default', 'exit(kl, 5e-4)', 'budget(8)']) {
    const r = await ponder(['run', '-m', 'models/demo-huginn', '--ids', '1', '-n', '1', '--policy', policy, '--threshold', '0.5']);
    assertUsageError(r, 'ARG_POLICY');
    assert.match(r.err, /a separate threshold \(0\.5\) does not apply to /);
  }
  const used = await ponder(['run', '-m', 'models/demo-huginn', '--ids', '1', '-n', '1', '--policy', 'budget(8, exit(kl))', '--threshold', '5e-4', '--json']);
  assert.equal(used.code, 0, used.err);
  assert.equal(JSON.parse(used.out).policy, 'budget(8, exit(kl, 0.0005))');
});

test('issue 11: a malformed CASE.json is exit 2 with one error line and nothing on stdout, before any case runs (before: a failing case, exit 1)', async () => {
  const dir = mkdtempSync(join(root, 'golden-'));
  copyFileSync('spec/golden/ouro/decode_cached.json', join(dir, 'a_good.json'));
  copyFileSync('spec/golden/ouro/decode_cached.safetensors', join(dir, 'a_good.safetensors'));
  for (const [name, text] of [['b_syntax', '{"family": "ouro",'], ['b_null', 'null'], ['b_fields', '{"family": "ouro", "config": {}, "procedure": {}, "tolerance": {}}'], ['b_family', '{"family": 5, "config": {}, "procedure": [], "tolerance": {}}']]) {
    const bad = mkdtempSync(join(root, 'golden-'));
    copyFileSync(join(dir, 'a_good.json'), join(bad, 'a_good.json'));
    copyFileSync(join(dir, 'a_good.safetensors'), join(bad, 'a_good.safetensors'));
    writeFileSync(join(bad, `${name}.json`), text);
    copyFileSync(join(dir, 'a_good.safetensors'), join(bad, `${name}.safetensors`));
    assertUsageError(await ponder(['conform', bad]), 'GOLDEN_JSON');
  }
  const truncated = mkdtempSync(join(root, 'golden-'));
  copyFileSync(join(dir, 'a_good.json'), join(truncated, 'case.json'));
  writeFileSync(join(truncated, 'case.safetensors'), new Uint8Array(5));
  assertUsageError(await ponder(['conform', truncated]), 'ST_HEADER_TOO_SMALL');
  const good = await ponder(['conform', dir]);
  assert.equal(good.code, 0, good.err);
  assert.match(good.out, /1 passed, 0 failed/);
});

test('a sampling value in generation_config.json that does not fit the model (top_k over the vocabulary) is CFG_FIELD naming the file and field, not ARG_INVALID naming an option never given', async () => {
  const dir = mkdtempSync(join(root, 'gen-'));
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) copyFileSync(join('models/demo-ouro', f), join(dir, f));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ do_sample: true, top_k: 2 ** 31 }));
  const r = await ponder(['run', '-m', dir, '--ids', '1', '-n', '1']);
  assertUsageError(r, 'CFG_FIELD');
  assert.match(r.err, /generation_config\.json: "top_k" cannot be used: topK must be an integer in \[1, 256\]/);
  const given = await ponder(['run', '-m', dir, '--ids', '1', '-n', '1', '--top-k', '300']);
  assertUsageError(given, 'ARG_INVALID'); // the caller's own option keeps its code
});
