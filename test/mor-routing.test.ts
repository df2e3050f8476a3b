/**
 * Expert- and token-choice routing invariants (shared/research/mor.md §10) on small random
 * checkpoints, upstream mode, scalar kernels.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bindMor, type RowCaptures } from '../src/models/mor.js';
import { parseMorConfig } from '../src/models/mor-config.js';
import { topKAscending, assignRecursion } from '../src/models/mor-routing.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { PonderError } from '../src/errors.js';
import { fixtureWeights, makeFixture, randomIds, type FixtureSpec } from './mor-fixture.js';

const RUNS = 20;

const expertSpec = fc.record({
  seed: fc.integer({ min: 1, max: 1 << 30 }),
  sharing: fc.constantFrom('cycle' as const, 'middle_cycle' as const),
  R: fc.integer({ min: 2, max: 4 }),
  bd: fc.integer({ min: 1, max: 2 }),
  caps: fc.array(fc.double({ min: 0.05, max: 1, noNaN: true }), { minLength: 4, maxLength: 4 }),
  T: fc.integer({ min: 1, max: 20 }),
  B: fc.integer({ min: 1, max: 3 }),
}).map((a) => ({ ...a, capacity: [...a.caps.slice(0, a.R)].sort((x, y) => y - x) }));

function runExpert(a: { seed: number; sharing: 'cycle' | 'middle_cycle'; R: number; bd: number; capacity: number[]; T: number; B: number }) {
  const spec: FixtureSpec = { variant: 'expert', sharing: a.sharing, R: a.R, bd: a.bd, capacity: a.capacity, seed: a.seed };
  const fx = makeFixture(spec);
  const model = bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 32 });
  const ids = randomIds(a.seed, a.B, a.T, 64);
  const session = model.newSession(a.B, 32);
  return { model, ids, result: model.forward(session, ids, { capture: true }) };
}

const ints = (cap: RowCaptures, name: string): number[] => Array.from(cap.get(name)!.data);

test('expert-choice: the step r+1 selection is a subset of the step r selection', () => {
  fc.assert(fc.property(expertSpec, (a) => {
    const { result } = runExpert(a);
    for (const cap of result.captures!) {
      for (let r = 1; r < a.R; r++) {
        const prev = new Set(ints(cap, `rec${r - 1}.selected`));
        for (const t of ints(cap, `rec${r}.selected`)) assert.ok(prev.has(t), `step ${r} selected ${t}, which step ${r - 1} did not`);
        assert.deepEqual(ints(cap, `rec${r}.candidates`), ints(cap, `rec${r - 1}.selected`));
      }
    }
  }), { numRuns: RUNS });
});

test('expert-choice: exactly k_r = max(1, int(c_r·T)) tokens are selected per row, ascending', () => {
  fc.assert(fc.property(expertSpec, (a) => {
    const { result } = runExpert(a);
    for (const cap of result.captures!) {
      for (let r = 0; r < a.R; r++) {
        const sel = ints(cap, `rec${r}.selected`);
        assert.equal(sel.length, Math.max(1, Math.trunc(a.capacity[r] * a.T)));
        for (let i = 1; i < sel.length; i++) assert.ok(sel[i - 1] < sel[i]);
        assert.equal(ints(cap, `rec${r}.selected_mask`).reduce((x, y) => x + y, 0), sel.length);
      }
    }
  }), { numRuns: RUNS });
});

test('expert-choice: selected tokens are the top-k router scores among the candidates', () => {
  fc.assert(fc.property(expertSpec, (a) => {
    const { result } = runExpert(a);
    for (const cap of result.captures!) {
      for (let r = 0; r < a.R; r++) {
        const cand = ints(cap, `rec${r}.candidates`);
        const probs = Array.from(cap.get(`rec${r}.router_probs`)!.data);
        const chosen = new Set(ints(cap, `rec${r}.selected`));
        const minChosen = Math.min(...cand.map((t, i) => (chosen.has(t) ? probs[i] : Infinity)));
        const maxOther = Math.max(...cand.map((t, i) => (chosen.has(t) ? -Infinity : probs[i])));
        assert.ok(minChosen >= maxOther, `a dropped candidate outscored a selected one at step ${r}`);
      }
    }
  }), { numRuns: RUNS });
});

test('expert-choice: unselected rows are bitwise unchanged by a recursion step; selected rows move by g·Block(h)', () => {
  fc.assert(fc.property(expertSpec, (a) => {
    const { result } = runExpert(a);
    const H = 32;
    for (const cap of result.captures!) {
      for (let r = 0; r < a.R; r++) {
        const before = cap.get(r === 0 ? (a.sharing === 'middle_cycle' ? 'hidden.layer0_out' : 'hidden.embed') : `rec${r - 1}.hidden_out`)!.data as Float32Array;
        const after = cap.get(`rec${r}.hidden_out`)!.data as Float32Array;
        const sel = ints(cap, `rec${r}.selected`);
        const gate = cap.get(`rec${r}.gate`)!.data;
        const y = cap.get(`rec${r}.block_layer${a.bd - 1}.out`)!.data;
        const selected = new Set(sel);
        for (let t = 0; t < a.T; t++) {
          if (selected.has(t)) continue;
          for (let i = 0; i < H; i++) assert.ok(Object.is(before[t * H + i], after[t * H + i]), `unselected token ${t} changed at step ${r}`);
        }
        sel.forEach((t, j) => {
          for (let i = 0; i < H; i++) {
            const want = before[t * H + i] + gate[j] * y[j * H + i];
            assert.ok(Math.abs(after[t * H + i] - want) <= 1e-6 * (1 + Math.abs(want)));
          }
        });
      }
    }
  }), { numRuns: RUNS });
});

test('expert-choice: batch rows are independent (a row gives the same logits alone or in a batch)', () => {
  fc.assert(fc.property(expertSpec, (a) => {
    const { model, ids, result } = runExpert({ ...a, B: Math.max(2, a.B) });
    const V = 64;
    for (let b = 0; b < ids.length; b++) {
      const alone = model.forward(model.newSession(1, 32), [ids[b]]).logits;
      const inBatch = result.logits.subarray(b * a.T * V, (b + 1) * a.T * V);
      assert.deepEqual(Array.from(alone), Array.from(inBatch));
    }
  }), { numRuns: 10 });
});

test('token-choice: depth = argmax + 1 and the gate is the unbiased router prob at the argmax', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 1 << 30 }), fc.integer({ min: 2, max: 4 }), fc.integer({ min: 1, max: 16 }),
    fc.constantFrom('softmax' as const, 'sigmoid' as const), fc.boolean(), fc.constantFrom('cycle' as const, 'middle_cycle' as const),
    (seed, R, T, func, lossFree, sharing) => {
      const fx = makeFixture({ variant: 'token', R, seed, tokenRouterFunc: func, lossFree, sharing });
      const model = bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 32 });
      const r = model.forward(model.newSession(1, 32), randomIds(seed, 1, T, 64), { capture: true });
      const cap = r.captures![0];
      const probs = cap.get('router_probs')!.data, e = ints(cap, 'assigned_expert'), gate = cap.get('gate')!.data;
      const bias = lossFree ? fx.tensors.get(`${sharing === 'middle_cycle' ? 'model.layers.1.' : 'model.layers.'}router_bias`)!.data : null;
      for (let t = 0; t < T; t++) {
        assert.equal(r.trace.depth[t], e[t] + 1);
        assert.equal(gate[t], probs[t * R + e[t]]);
        for (let i = 0; i < R; i++) {
          const q = (x: number) => Math.fround(probs[t * R + x] + (bias ? bias[x] : 0));
          assert.ok(q(e[t]) >= q(i));
        }
        for (let rr = 0; rr < R; rr++) assert.equal(ints(cap, `rec${rr}.processed`).includes(t), e[t] >= rr);
      }
    }), { numRuns: RUNS });
});

test('top-k ties go to the lower index and NaN scores are rejected with NUM_NONFINITE', () => {
  assert.deepEqual(topKAscending([0.5, 0.7, 0.7, 0.1], 4, 2, 'x'), [1, 2]);
  assert.deepEqual(topKAscending([0.7, 0.5, 0.7, 0.7], 4, 2, 'x'), [0, 2]);
  assert.throws(() => topKAscending([0.5, NaN], 2, 1, 'x'), (e: unknown) => e instanceof PonderError && e.code === 'NUM_NONFINITE');
  assert.equal(assignRecursion([0.2, 0.4, 0.4], 0, 3, null, 'x'), 1);
  assert.throws(() => assignRecursion([0.2, NaN, 0.4], 0, 3, null, 'x'), (e: unknown) => e instanceof PonderError && e.code === 'NUM_NONFINITE');
});

test('cache slots: recursion r holds k_r tokens after an expert prefill and every decode step adds one to every slot; KV sharing keeps bd+2 full-length slots', () => {
  fc.assert(fc.property(expertSpec, fc.integer({ min: 1, max: 4 }), fc.boolean(), (a, steps, kvSharing) => {
    const fx = makeFixture({ variant: 'expert', sharing: 'middle_cycle', R: a.R, bd: a.bd, capacity: [1, ...a.capacity.slice(1)], seed: a.seed, kvSharing });
    const model = bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 32 });
    const session = model.newSession(1, 32);
    const ids = randomIds(a.seed, 1, a.T + steps, 64);
    model.forward(session, [ids[0].slice(0, a.T)]);
    const expected = (extra: number): Map<number, number> => {
      const m = new Map<number, number>();
      if (kvSharing) { for (let s = 0; s < a.bd + 2; s++) m.set(s, a.T + extra); return m; }
      m.set(0, a.T + extra);
      const caps = [1, ...a.capacity.slice(1)];
      for (let r = 0; r < a.R; r++) for (let j = 0; j < a.bd; j++) m.set(1 + j + r * a.bd, Math.max(1, Math.trunc(caps[r] * a.T)) + extra);
      m.set(a.R * a.bd + 1, a.T + extra);
      return m;
    };
    assert.deepEqual(session.slotLengths(), expected(0));
    for (let s = 0; s < steps; s++) model.forward(session, [[ids[0][a.T + s]]]);
    assert.deepEqual(session.slotLengths(), expected(steps));
  }), { numRuns: 20 });
});
