import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ouroTokenTraces } from '../src/models/ouro-trace.js';
import { checkTrace, summarizeTrace } from '../src/trace/trace.js';
import { specAndIds, smallModel } from './ouro-fixture.js';

test('the shared trace of a real-exit run is valid and its compute saved matches the loops skipped', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2 }), fc.double({ min: 0, max: 1, noNaN: true }), ({ spec, ids }, tau) => {
    const model = smallModel(spec);
    const cache = model.newCache(ids.length);
    const opts = { exitThreshold: tau, exitMode: 'skip' as const };
    const prefill = model.forward(ids.slice(0, 1), { ...opts, cache });
    const tokens = ouroTokenTraces(model, prefill, ids.slice(0, 1), 'prefill');
    for (const id of ids.slice(1)) tokens.push(...ouroTokenTraces(model, model.forward([id], { ...opts, cache }), [id], 'decode'));
    const run = { family: 'ouro', policy: `exit(gate, ${tau})`, tokens, decodeMs: 1 };
    checkTrace(run);
    const decoded = tokens.filter((t) => t.phase === 'decode');
    const summary = summarizeTrace(run);
    assert.equal(summary.stepsUsed, decoded.reduce((n, t) => n + t.steps, 0));
    assert.ok(Math.abs(summary.computeSaved - (1 - summary.stepsUsed / (spec.loops * decoded.length))) < 1e-12);
    for (const t of tokens) {
      assert.equal(t.criterionValues.length, t.steps);
      assert.equal(t.exitReason, t.steps < spec.loops ? 'criterion' : 'cap');
      if (t.exitReason === 'criterion') assert.ok((t.criterionValues.at(-1) as number) >= Math.fround(tau));
    }
    assert.equal(summary.kvBytesPeak, ids.length * spec.loops * spec.layers * 2 * spec.kvHeads * spec.headDim * 4);
  }), { numRuns: 20 });
});

test('select mode traces every token at full depth; exit_at_step in skip mode is a fixed depth', () => {
  const model = smallModel({ vocab: 20, hidden: 16, inter: 24, layers: 2, heads: 2, kvHeads: 1, headDim: 8, loops: 4, seed: 9, gateBias: 1 });
  const ids = [1, 2, 3, 4, 5];
  for (const t of ouroTokenTraces(model, model.forward(ids, { exitThreshold: 0.2 }), ids, 'prefill')) {
    assert.equal(t.steps, 4);
    assert.equal(t.exitReason, 'cap');
  }
  for (const t of ouroTokenTraces(model, model.forward(ids, { exitAtStep: 1, exitMode: 'skip' }), ids, 'prefill')) {
    assert.equal(t.steps, 2);
    assert.equal(t.exitReason, 'fixed');
  }
});
