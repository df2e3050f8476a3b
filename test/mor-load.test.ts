/**
 * Loading by upstream state_dict names: every missing, extra, mis-shaped or inconsistent tensor is
 * reported before any compute, naming it; config errors name the field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bindMor } from '../src/models/mor.js';
import { parseMorConfig } from '../src/models/mor-config.js';
import { PonderError } from '../src/errors.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { fixtureWeights, makeFixture, type FixtureSpec } from './mor-fixture.js';

const specArb: fc.Arbitrary<FixtureSpec> = fc.record({
  seed: fc.integer({ min: 1, max: 1 << 30 }),
  variant: fc.constantFrom('expert' as const, 'token' as const, 'vanilla' as const, 'recursive' as const),
  sharing: fc.constantFrom('cycle' as const, 'middle_cycle' as const),
  R: fc.integer({ min: 2, max: 3 }),
  bd: fc.integer({ min: 1, max: 2 }),
  lossFree: fc.boolean(),
  kvSharing: fc.boolean(),
});

function rejects(fn: () => unknown, code: string, mentions: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PonderError, `not a PonderError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const m of mentions) assert.ok(e.message.includes(m), `message does not name ${m}:\n${e.message}`);
    return true;
  });
}

test('a complete upstream state dict (every alias present) loads', () => {
  fc.assert(fc.property(specArb, (spec) => {
    const fx = makeFixture(spec);
    bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 16 });
  }), { numRuns: 30 });
});

test('loading a checkpoint with any tensor removed, renamed or reshaped fails with an error that names it', () => {
  fc.assert(fc.property(specArb, fc.nat(), fc.constantFrom('remove', 'rename', 'reshape'), (spec, pick, how) => {
    const fx = makeFixture(spec);
    const names = [...fx.tensors.keys()];
    const name = names[pick % names.length];
    const t = fx.tensors.get(name)!;
    const mentions = [name];
    if (how === 'remove') fx.tensors.delete(name);
    if (how === 'rename') { fx.tensors.delete(name); fx.tensors.set(name + '_renamed', t); mentions.push(name + '_renamed'); }
    if (how === 'reshape') fx.tensors.set(name, { shape: [...t.shape.slice(0, -1), t.shape[t.shape.length - 1] + 1], data: new Float32Array(t.data.length + 1) });
    const load = () => bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 16 });
    const tied = (fx.config as { model_config: { tie_word_embeddings?: boolean } }).model_config.tie_word_embeddings === true;
    if (how === 'remove' && name === 'lm_head.weight' && tied) load(); // a tied head may be left out: it is the embedding
    else rejects(load, 'BIND_MISMATCH', mentions);
  }), { numRuns: 60 });
});

test('every problem is listed in one error: two removed tensors and one extra are all named', () => {
  const fx = makeFixture({ variant: 'expert', seed: 7 });
  fx.tensors.delete('model.layers.2.block.0.mlp.up_proj.weight');
  fx.tensors.delete('model.norm.weight');
  fx.tensors.set('model.layers.9.mor_router.router.weight', { shape: [1, 32], data: new Float32Array(32) });
  rejects(() => bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime()), 'BIND_MISMATCH',
    ['model.layers.2.block.0.mlp.up_proj.weight', 'model.norm.weight', 'model.layers.9.mor_router.router.weight']);
});

test('aliases of one shared parameter must hold the same values', () => {
  const fx = makeFixture({ variant: 'expert', seed: 3 });
  const name = 'model.layers.3.block.0.self_attn.k_proj.weight';
  const t = fx.tensors.get(name)!;
  const changed = Float32Array.from(t.data);
  changed[5] += 1;
  fx.tensors.set(name, { shape: t.shape, data: changed });
  rejects(() => bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime()), 'BIND_MISMATCH', [name, 'model.layers.1.block.0.self_attn.k_proj.weight']);
});

test('config errors name the field', () => {
  const fx = makeFixture({ variant: 'expert', seed: 1 });
  const withCfg = (edit: (cfg: any) => void) => { const c = structuredClone(fx.config) as any; edit(c); return c; };
  const load = (config: unknown) => () => bindMor(parseMorConfig(config), fixtureWeights(fx.tensors), createScalarRuntime());
  const field = (fn: () => unknown, name: string) => assert.throws(fn, (e: unknown) => e instanceof PonderError && e.code.startsWith('CFG_') && (e.field === name || e.message.includes(name)));
  field(load(withCfg((c) => { c.cfg.mor.capacity = '1.0,abc,0.3'; })), 'cfg.mor.capacity');
  field(load(withCfg((c) => { c.cfg.mor.capacity = '0.5,1.0,0.3'; })), 'cfg.mor.capacity');
  field(load(withCfg((c) => { c.cfg.recursive.sharing = 'sequence'; })), 'recursive.sharing');
  field(load(withCfg((c) => { c.cfg.mor.rand_router = true; })), 'mor.rand_router');
  field(load(withCfg((c) => { c.model_config.hidden_size = '32'; })), 'hidden_size');
  field(load(withCfg((c) => { c.model_config.num_key_value_heads = 3; })), 'num_key_value_heads');
  field(load(withCfg((c) => { c.cfg.mor.expert.router_func = 'relu'; })), 'router_func');
});

test('a model that cannot fit the WASM memory fails before binding with MEM_MODEL_TOO_LARGE; a context over ponder\'s limit is CFG_FIELD before that', () => {
  const fx = makeFixture({ variant: 'vanilla', seed: 1 });
  const big = structuredClone(fx.config) as any;
  big.model_config.hidden_size = 8192; // the plan is computed from the config, before the (small) weights are checked against it
  big.model_config.intermediate_size = 65536;
  assert.throws(() => bindMor(parseMorConfig(big), fixtureWeights(fx.tensors), createScalarRuntime()), (e: unknown) => e instanceof PonderError && e.code === 'MEM_MODEL_TOO_LARGE');
  const long = structuredClone(fx.config) as any;
  long.model_config.max_position_embeddings = 1 << 26;
  assert.throws(() => parseMorConfig(long), (e: unknown) => e instanceof PonderError && e.code === 'CFG_FIELD' && e.field === 'model_config.max_position_embeddings');
});

test('bad inputs are typed errors: out-of-vocab ids, ragged rows, overlong sessions, mixed decode modes', () => {
  const fx = makeFixture({ variant: 'expert', seed: 2 });
  const model = bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 8 });
  const code = (fn: () => unknown, c: string) => assert.throws(fn, (e: unknown) => e instanceof PonderError && e.code === c);
  code(() => model.forward(model.newSession(1, 8), [[1, 64]]), 'GEN_TOKEN_ID');
  code(() => model.forward(model.newSession(2, 8), [[1, 2], [3]]), 'INPUT_SHAPE');
  code(() => model.forward(model.newSession(1, 4), [[1, 2, 3, 4, 5]]), 'CACHE_FULL');
  code(() => model.newSession(1, 9), 'GEN_CONTEXT');
  const s = model.newSession(1, 8);
  model.forward(s, [[1, 2]], { mode: 'causal' });
  code(() => model.forward(s, [[3]]), 'INPUT_SESSION');
});

test('NaN in the weights is a NUM_NONFINITE error, and the failed session refuses further calls', () => {
  const fx = makeFixture({ variant: 'expert', seed: 5 });
  const e = fx.tensors.get('model.embed_tokens.weight')!;
  const poisoned = Float32Array.from(e.data);
  poisoned.fill(NaN, 3 * 32, 4 * 32); // token id 3
  fx.tensors.set('model.embed_tokens.weight', { shape: e.shape, data: poisoned });
  const model = bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 8 });
  const s = model.newSession(1, 8);
  assert.throws(() => model.forward(s, [[1, 3, 2]]), (err: unknown) => err instanceof PonderError && err.code === 'NUM_NONFINITE');
  assert.throws(() => model.forward(s, [[1]]), (err: unknown) => err instanceof PonderError && err.code === 'INPUT_SESSION');
});

test('a de-duplicated checkpoint (one name kept per shared parameter) loads and computes the same logits', () => {
  fc.assert(fc.property(specArb.filter((s) => s.variant !== 'vanilla'), fc.nat(), (spec, pick) => {
    const fx = makeFixture(spec);
    const full = bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 16 });
    // group aliases by identity of their value arrays (the fixture stores one array per shared parameter)
    const byData = new Map<Float32Array, string[]>();
    for (const [name, t] of fx.tensors) if (name.startsWith('model.layers.')) byData.set(t.data, [...(byData.get(t.data) ?? []), name]);
    const dedup = new Map(fx.tensors);
    let k = pick;
    for (const names of byData.values()) {
      if (names.length < 2) continue;
      const keep = names[k++ % names.length];
      for (const n of names) if (n !== keep) dedup.delete(n);
    }
    const model = bindMor(parseMorConfig(fx.config), fixtureWeights(dedup), createScalarRuntime(), { maxLen: 16 });
    const ids = [[1, 5, 9, 2]];
    assert.deepEqual(Array.from(model.forward(model.newSession(1, 16), ids).logits), Array.from(full.forward(full.newSession(1, 16), ids).logits));
  }), { numRuns: 20 });
});
