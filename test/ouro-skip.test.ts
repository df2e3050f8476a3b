import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { MissingKvPolicy } from '../src/models/ouro.js';
import { specAndIds, smallModel } from './ouro-fixture.js';

const RUNS = { numRuns: 25 };
const policy = fc.constantFrom<MissingKvPolicy>('copy-forward', 'exclude');
const threshold = fc.double({ min: 0, max: 1, noNaN: true });

test('in real-exit mode the compute counted equals the sum of per-token loops', () => {
  fc.assert(fc.property(specAndIds({ minLength: 1, maxLength: 10 }), threshold, policy, ({ spec, ids }, tau, missingKv) => {
    const model = smallModel(spec);
    const cache = model.newCache(ids.length + 3);
    const before = model.counters.layerRows;
    const traces = [model.forward(ids, { cache, exitThreshold: tau, exitMode: 'skip', missingKv }).trace];
    for (const id of [0, 1, 2]) traces.push(model.forward([id % spec.vocab], { cache, exitThreshold: tau, exitMode: 'skip', missingKv }).trace);
    const loops = traces.flat().reduce((n, t) => n + t.steps, 0);
    assert.equal(model.counters.layerRows - before, spec.layers * loops);
    for (const t of traces.flat()) {
      assert.ok(t.steps >= 1 && t.steps <= spec.loops);
      assert.equal(t.exitStep, t.steps - 1);
      assert.equal(t.gates.length, t.steps);
      assert.ok(t.flops > 0);
    }
    // the cache records the same loop counts
    assert.deepEqual(Array.from(cache.loopsRun.subarray(0, cache.length)), traces.flat().map((t) => t.steps));
  }), RUNS);
});

test('a token\'s flops grow with the loops it ran: one more loop costs at least one more loop of layers', () => {
  const model = smallModel({ vocab: 30, hidden: 32, inter: 48, layers: 2, heads: 4, kvHeads: 2, headDim: 8, loops: 4, seed: 11, gateBias: 0 });
  const flops = [0, 1, 2, 3].map((k) => model.forward([3], { exitAtStep: k, exitMode: 'skip' }).trace[0].flops);
  for (let k = 1; k < 4; k++) assert.equal(flops[k] - flops[k - 1], flops[1] - flops[0]);
});

test('real-exit mode equals upstream when no token exits before the last loop', () => {
  fc.assert(fc.property(specAndIds(), policy, fc.double({ min: 1.0001, max: 3, noNaN: true }), ({ spec, ids }, missingKv, tau) => {
    const model = smallModel(spec);
    const select = model.forward(ids, { exitThreshold: tau });
    const skip = model.forward(ids, { exitThreshold: tau, exitMode: 'skip', missingKv });
    assert.deepEqual(skip.logits, select.logits);
    assert.deepEqual(skip.exitSteps, select.exitSteps);
  }), RUNS);
});

test('running only the first k+1 loops equals upstream exit_at_step = k (prefix property), cached or not', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2 }), fc.nat(), ({ spec, ids }, kArg) => {
    const model = smallModel(spec);
    const k = kArg % spec.loops, V = spec.vocab;
    const select = model.forward(ids, { exitAtStep: k });
    assert.deepEqual(model.forward(ids, { exitAtStep: k, exitMode: 'skip' }).logits, select.logits);
    const cache = model.newCache(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const step = model.forward([ids[i]], { cache, exitAtStep: k, exitMode: 'skip' });
      assert.equal(step.trace[0].steps, k + 1);
      assert.deepEqual(step.logits, select.logits.subarray(i * V, (i + 1) * V));
    }
  }), RUNS);
});

test('real-exit mode equals upstream up to and including the first token that exits early', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2 }), threshold, policy, ({ spec, ids }, tau, missingKv) => {
    const model = smallModel(spec);
    const V = spec.vocab, T = spec.loops;
    const select = model.forward(ids, { exitThreshold: tau });
    const skip = model.forward(ids, { exitThreshold: tau, exitMode: 'skip', missingKv });
    const firstEarly = Array.from(select.exitSteps!).findIndex((e) => e < T - 1);
    const exactUpTo = firstEarly < 0 ? ids.length - 1 : firstEarly;
    for (let i = 0; i <= exactUpTo; i++) {
      assert.equal(skip.exitSteps![i], select.exitSteps![i], `token ${i}`);
      assert.deepEqual(skip.logits.subarray(i * V, (i + 1) * V), select.logits.subarray(i * V, (i + 1) * V), `token ${i}`);
    }
  }), RUNS);
});

test('real-exit cached decode equals the real-exit full forward (same missing-KV rule in prefill and decode)', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2 }), threshold, policy, ({ spec, ids }, tau, missingKv) => {
    const model = smallModel(spec);
    const V = spec.vocab;
    const opts = { exitThreshold: tau, exitMode: 'skip' as const, missingKv };
    const full = model.forward(ids, opts);
    const cache = model.newCache(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const step = model.forward([ids[i]], { ...opts, cache });
      assert.equal(step.exitSteps![0], full.exitSteps![i]);
      assert.deepEqual(step.logits, full.logits.subarray(i * V, (i + 1) * V));
    }
  }), RUNS);
});

test('copy-forward keeps one row per token in every slot: a skipped loop holds the exit loop\'s KV', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2 }), threshold, ({ spec, ids }, tau) => {
    const model = smallModel(spec);
    const cache = model.newCache(ids.length);
    const r = model.forward(ids, { cache, exitThreshold: tau, exitMode: 'skip' });
    const L = spec.layers, kvDim = spec.kvHeads * spec.headDim;
    assert.equal(cache.length, ids.length);
    for (let p = 0; p < ids.length; p++) {
      const e = r.exitSteps![p];
      for (let t = e + 1; t < spec.loops; t++) {
        for (let l = 0; l < L; l++) {
          assert.deepEqual(cache.keys[t * L + l].subarray(p * kvDim, (p + 1) * kvDim), cache.keys[e * L + l].subarray(p * kvDim, (p + 1) * kvDim));
          assert.deepEqual(cache.values[t * L + l].subarray(p * kvDim, (p + 1) * kvDim), cache.values[e * L + l].subarray(p * kvDim, (p + 1) * kvDim));
        }
      }
    }
  }), RUNS);
});

test('a higher threshold never runs fewer loops for the first token in real-exit mode', () => {
  fc.assert(fc.property(specAndIds(), threshold, threshold, ({ spec, ids }, a, b) => {
    const model = smallModel(spec);
    const [lo, hi] = a <= b ? [a, b] : [b, a];
    const low = model.forward(ids, { exitThreshold: lo, exitMode: 'skip' }).trace[0].steps;
    const high = model.forward(ids, { exitThreshold: hi, exitMode: 'skip' }).trace[0].steps;
    assert.ok(low <= high);
  }), RUNS);
});
