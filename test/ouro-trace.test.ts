/**
 * Ouro's per-token traces as the API builds them (src/models/ouro-family.ts): valid by
 * spec/trace.md, one criterion value per loop run, and a compute saving that matches the loops the
 * gate skipped.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { exit, fixed, type DepthPolicy } from '../src/depth/policy.js';
import { ouroFamily } from '../src/models/ouro-family.js';
import { checkTrace, summarizeTrace, type TokenTrace } from '../src/trace/trace.js';
import { specAndIds, smallModel, type SmallOuroSpec } from './ouro-fixture.js';

/** The prompt's first token as the prefill, then the others fed one at a time, as the API feeds generated tokens. */
function traces(spec: SmallOuroSpec, ids: number[], policy: DepthPolicy, prefillLength = 1): TokenTrace[] {
  const adapter = ouroFamily.adapter(smallModel(spec));
  const session = adapter.newSession(ids.length, { seed: 0 });
  const control = (phase: 'prefill' | 'decode') => ({ policy, cap: null, phase, stepsSpent: 0 });
  const tokens = adapter.run(session, ids.slice(0, prefillLength), control('prefill')).tokens;
  for (const id of ids.slice(prefillLength)) tokens.push(...adapter.run(session, [id], control('decode')).tokens);
  return tokens;
}

test('the trace of a real-exit run is valid and its compute saved matches the loops skipped', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2 }), fc.double({ min: 0, max: 1, noNaN: true }), ({ spec, ids }, tau) => {
    const tokens = traces(spec, ids, exit('gate', tau));
    const run = { family: 'ouro', policy: `exit(gate, ${tau})`, tokens, decodeMs: 1 };
    checkTrace(run);
    const decoded = tokens.filter((t) => t.phase === 'decode');
    const summary = summarizeTrace(run);
    assert.equal(summary.stepsUsed, decoded.reduce((n, t) => n + t.steps, 0));
    assert.ok(Math.abs(summary.computeSaved - (1 - summary.stepsUsed / (spec.loops * decoded.length))) < 1e-12);
    for (const t of tokens) {
      assert.equal(t.criterionValues.length, t.steps);
      const crossed = t.criterionValues.findIndex((v) => v !== null && v >= Math.fround(tau));
      assert.equal(t.exitReason, crossed === -1 ? 'cap' : 'criterion');
      if (crossed !== -1) assert.equal(crossed, t.steps - 1, 'a token stops looping at the loop whose CDF crosses');
    }
    assert.equal(summary.kvBytesPeak, ids.length * spec.loops * spec.layers * 2 * spec.kvHeads * spec.headDim * 4);
  }), { numRuns: 20 });
});

test('select mode traces every token at full depth; fixed(n) skips the loops after n', () => {
  const spec = { vocab: 20, hidden: 16, inter: 24, layers: 2, heads: 2, kvHeads: 1, headDim: 8, loops: 4, seed: 9, gateBias: 1 };
  const ids = [1, 2, 3, 4, 5];
  for (const t of traces(spec, ids, exit('gate', 0.2, { mode: 'select' }), ids.length)) assert.equal(t.steps, 4);
  for (const t of traces(spec, ids, fixed(2), ids.length)) {
    assert.equal(t.steps, 2);
    assert.equal(t.exitReason, 'fixed');
  }
});
