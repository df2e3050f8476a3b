/**
 * ponder's hard limits (src/limits.ts, spec/limits.md): spec and code agree cell for cell; every
 * count read from a config is refused over its limit while the config is parsed (before any tensor
 * list exists) and accepted at it; every count from a caller is refused before any compute, or
 * runs lazily; and each reproduction of issue 11 that used to exhaust memory or never end is now
 * one typed error line.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LIMITS, type LimitName } from '../src/limits.js';
import { PonderError } from '../src/errors.js';
import { configObject } from '../src/format/config.js';
import { FAMILIES } from '../src/models/registry.js';
import { budget, depthFunction, exit, fixed, parsePolicy } from '../src/depth/policy.js';
import { loadModel } from '../src/node/index.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { totalSteps } from '../src/models/huginn.js';
import { assertUsageError, ponder } from './cli-support.js';

const root = mkdtempSync(join(tmpdir(), 'ponder-limits-'));
after(() => rmSync(root, { recursive: true, force: true }));

const isCode = (code: string, field?: string) => (e: unknown): boolean => {
  assert.ok(e instanceof PonderError, `expected PonderError ${code}, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (field !== undefined) assert.equal(e.field, field, e.message);
  return true;
};

const demoConfig = (model: string): Record<string, unknown> => JSON.parse(readFileSync(join('models', model, 'config.json'), 'utf8'));

/** A copy of a bundled model whose config.json is edited. */
function modelWith(model: string, edit: (c: Record<string, any>) => void): string {
  const dir = mkdtempSync(join(root, `${model}-`));
  for (const f of ['model.safetensors', 'tokenizer.json']) copyFileSync(join('models', model, f), join(dir, f));
  const config = demoConfig(model);
  edit(config);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

function setPath(o: Record<string, any>, path: string, value: unknown): void {
  const parts = path.split('.');
  let at = o;
  for (const p of parts.slice(0, -1)) at = at[p];
  at[parts[parts.length - 1]] = value;
}

test('spec/limits.md lists every limit of src/limits.ts with its value', () => {
  const rows = new Map<string, string>();
  for (const line of readFileSync('spec/limits.md', 'utf8').split('\n')) {
    const m = /^\| `(\w+)` \| (\d+) \|/.exec(line);
    if (m) rows.set(m[1], m[2]);
  }
  assert.deepEqual([...rows.keys()].sort(), Object.keys(LIMITS).sort());
  for (const [name, value] of Object.entries(LIMITS)) assert.equal(rows.get(name), String(value), name);
});

/** Every count each family reads from config.json, by its field path, with the limit that bounds it. */
const CONFIG_COUNTS: Record<string, { model: string; counts: [string, LimitName][] }> = {
  huginn: {
    model: 'demo-huginn',
    counts: [['n_embd', 'width'], ['n_heads', 'heads'], ['num_key_value_heads', 'heads'], ['intermediate_size', 'intermediate'], ['vocab_size', 'vocab'],
      ['block_size', 'context'], ['n_layers_in_prelude', 'layers'], ['n_layers_in_recurrent_block', 'layers'], ['n_layers_in_coda', 'layers'], ['mean_recurrence', 'depth']],
  },
  ouro: {
    model: 'demo-ouro',
    counts: [['hidden_size', 'width'], ['num_attention_heads', 'heads'], ['num_key_value_heads', 'heads'], ['head_dim', 'width'], ['vocab_size', 'vocab'],
      ['intermediate_size', 'intermediate'], ['num_hidden_layers', 'layers'], ['max_position_embeddings', 'context'], ['total_ut_steps', 'depth']],
  },
  mor: {
    model: 'demo-mor',
    counts: [['model_config.hidden_size', 'width'], ['model_config.num_attention_heads', 'heads'], ['model_config.num_key_value_heads', 'heads'], ['model_config.head_dim', 'width'],
      ['model_config.vocab_size', 'vocab'], ['model_config.intermediate_size', 'intermediate'], ['model_config.num_hidden_layers', 'layers'],
      ['model_config.max_position_embeddings', 'context'], ['cfg.recursive.num_recursion', 'depth']],
  },
};

test('every count a config holds is CFG_FIELD one past its limit, naming the field and the limit, while the config is parsed', () => {
  for (const family of FAMILIES) {
    const { model, counts } = CONFIG_COUNTS[family.family];
    for (const [field, limit] of counts) {
      for (const value of [LIMITS[limit] + 1, 2 ** 31, 1e9]) {
        const config = demoConfig(model);
        setPath(config, field, value);
        assert.throws(() => family.parseConfig(configObject(config, `${model}/config.json`)), (e: unknown) => {
          isCode('CFG_FIELD', field)(e);
          assert.match((e as Error).message, new RegExp(`ponder's limit on ${limit}, spec/limits\\.md`));
          return true;
        }, `${family.family} ${field} = ${value}`);
      }
    }
  }
});

test('a config at the layer and depth limits is accepted, and its tensor list is listed at once', () => {
  const huginn = FAMILIES.find((f) => f.family === 'huginn')!;
  const config = demoConfig('demo-huginn');
  Object.assign(config, { n_layers_in_prelude: LIMITS.layers, n_layers_in_recurrent_block: LIMITS.layers, n_layers_in_coda: LIMITS.layers, mean_recurrence: LIMITS.depth });
  const parsed = huginn.parseConfig(configObject(config, 'config.json'));
  assert.equal(huginn.tensors(parsed).filter((t) => t.name.startsWith('transformer.coda.')).length, 9 * LIMITS.layers);
});

test('issue 11: configs with counts of 1e9, 2^31 and 1e6 are one CFG_FIELD line from inspect and run, not an exhausted heap or a hang', async () => {
  const cases: [string, string, number][] = [
    ['demo-huginn', 'mean_recurrence', 1e9],
    ['demo-huginn', 'n_layers_in_prelude', 1e9],
    ['demo-huginn', 'n_layers_in_coda', 2 ** 31],
    ['demo-ouro', 'num_hidden_layers', 1e6],
    ['demo-ouro', 'total_ut_steps', 1e6],
    ['demo-mor', 'model_config.num_hidden_layers', 1e6],
    ['demo-mor', 'model_config.num_hidden_layers', 1e4],
  ];
  for (const [model, field, value] of cases) {
    const dir = modelWith(model, (c) => setPath(c, field, value));
    for (const argv of [['inspect', dir], ['run', '-m', dir, '-n', '2']]) {
      const r = await ponder(argv);
      assertUsageError(r, 'CFG_FIELD');
      assert.match(r.err, new RegExp(`"${field.replace(/\./g, '\\.')}" is ${value}`), `${argv[0]} ${model} ${field}`);
    }
  }
});

test('a config that implies thousands of absent layers is one short BIND_MISMATCH line: the first problems and a count of the rest', async () => {
  const dir = modelWith('demo-ouro', (c) => { c.num_hidden_layers = LIMITS.layers; });
  const r = await ponder(['run', '-m', dir, '-n', '2']);
  assertUsageError(r, 'BIND_MISMATCH');
  assert.ok(r.err.length < 10_000, `${r.err.length} characters`);
  assert.match(r.err, /\(11242 problems\)/); // 1022 absent layers × 11 tensors
  assert.match(r.err, /… and 11222 more: missing model\.layers\.\d+\.\S+ \[\d+(, \d+)?\] … missing model\.layers\.1023\.\S+ \[\d+(, \d+)?\] \(11222 missing\)/);
});

test('issue 11: fixed(1e9) on the command line and fixed(2^31) through the API are ARG_POLICY before any compute', async () => {
  assertUsageError(await ponder(['run', '-n', '2', '--policy', 'fixed(1000000000)']), 'ARG_POLICY');
  const model = await loadModel('models/demo-huginn', { runtime: await createWasmRuntime() });
  assert.throws(() => model.generate([1], { policy: { kind: 'fixed', steps: 2 ** 31 } }), isCode('ARG_POLICY', 'policy'));
  assert.throws(() => fixed(1e9), isCode('ARG_POLICY'));
  assert.throws(() => exit('kl', 'auto', { maxSteps: LIMITS.depth + 1 }), isCode('ARG_POLICY'));
  assert.throws(() => exit('kl', 'auto', { minSteps: 1e9 }), isCode('ARG_POLICY'));
  assert.throws(() => exit('kl', 'auto', { checkEvery: 2 ** 31 }), isCode('ARG_POLICY'));
  assert.throws(() => depthFunction(() => 'continue', { maxSteps: 1e9 }), isCode('ARG_POLICY'));
  assert.throws(() => budget(2 ** 31), isCode('ARG_POLICY'));
  assert.throws(() => model.generate([1], { maxNewTokens: 2 ** 31 }), isCode('ARG_INVALID', 'maxNewTokens'));
  // at the limit, and a budget far beyond any generation, run (lazily: nothing is sized by them)
  assert.equal((await model.generate([1], { maxNewTokens: 2, policy: fixed(LIMITS.depth) }).result()).generatedIds.length, 2);
  assert.equal((await model.generate([1], { maxNewTokens: 2, policy: budget(1e9) }).result()).generatedIds.length, 2);
  const long = await model.generate([1], { maxNewTokens: 1e6 }).result();
  assert.equal(long.finishReason, 'context');
  assert.equal(long.ids.length, model.contextLength);
});

test('issue 11: a policy nested 5,000 deep, or longer than the limit, is ARG_POLICY (no stack overflow, no quadratic parse)', async () => {
  const deep = `${'budget(4, '.repeat(5000)}fixed(2)${')'.repeat(5000)}`;
  assert.throws(() => parsePolicy(deep), isCode('ARG_POLICY'));
  assert.throws(() => parsePolicy(`fixed(${'('.repeat(LIMITS.policyNesting)}2${')'.repeat(LIMITS.policyNesting)})`), isCode('ARG_POLICY'));
  assert.throws(() => parsePolicy(`exit(${'k'.repeat(LIMITS.policyText)})`), isCode('ARG_POLICY'));
  assert.throws(() => parsePolicy('fixed(2'), isCode('ARG_POLICY'));
  assert.deepEqual(parsePolicy('budget(64, exit(kl, 5e-4))'), budget(64, exit('kl', 5e-4)));
  assertUsageError(await ponder(['run', '-n', '2', '--policy', deep]), 'ARG_POLICY');
});

test('kernel threads are bounded by the threads limit', async () => {
  await assert.rejects(createWasmRuntime({ threads: LIMITS.threads + 1 }), isCode('ARG_INVALID', 'threads'));
  assertUsageError(await ponder(['run', '-m', 'models/demo-ouro', '--threads', '100000']), 'ARG_INVALID');
});

test('a golden case\'s num_steps (n, or n + k) is bounded in sum by the depth limit', () => {
  assert.equal(totalSteps([LIMITS.depth / 2, LIMITS.depth / 2]), LIMITS.depth);
  assert.throws(() => totalSteps([LIMITS.depth, 1]), isCode('HUGINN_NUM_STEPS'));
  assert.throws(() => totalSteps(1e9), isCode('HUGINN_NUM_STEPS'));
});
