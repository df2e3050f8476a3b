import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { exitDistribution, resolveReadout, thresholdExitStep } from '../src/models/ouro-exit.js';
import { specAndIds, smallModel } from './ouro-fixture.js';

const RUNS = { numRuns: 25 };
const lambdas = (T: number) => fc.array(fc.float({ min: 0, max: 1, noNaN: true }), { minLength: T, maxLength: T });

test('exit distribution sums to 1 per token (pdf ≥ 0, cdf non-decreasing, last gate unused)', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 8 }).chain((T) => lambdas(T).map((l) => ({ T, l }))), ({ T, l }) => {
    const { pdf, cdf } = exitDistribution(l, T);
    let sum = 0;
    for (let t = 0; t < T; t++) { assert.ok(pdf[t] >= 0); sum += pdf[t]; }
    assert.ok(Math.abs(sum - 1) <= 1e-6, `Σp = ${sum}`);
    for (let t = 1; t < T; t++) assert.ok(cdf[t] >= cdf[t - 1]);
    assert.ok(Math.abs(cdf[T - 1] - 1) <= 1e-6);
    assert.equal(pdf[0], T === 1 ? 1 : Math.fround(l[0])); // p_0 == λ_0 bit-exactly; T = 1 gives p = [1]
    const perturbed = [...l]; perturbed[T - 1] = 1 - perturbed[T - 1];
    assert.deepEqual(exitDistribution(perturbed, T).pdf, pdf);
  }));
});

test('exit distribution sums to 1 per token in a model forward', () => {
  fc.assert(fc.property(specAndIds(), ({ spec, ids }) => {
    const r = smallModel(spec).forward(ids);
    const T = spec.loops;
    for (let i = 0; i < ids.length; i++) {
      let sum = 0;
      for (let t = 0; t < T; t++) sum += r.pdf[i * T + t];
      assert.ok(Math.abs(sum - 1) <= 1e-6, `token ${i}: Σp = ${sum}`);
    }
  }), RUNS);
});

test('a lower threshold never exits later than a higher one (exit step non-decreasing in τ)', () => {
  fc.assert(fc.property(specAndIds(), fc.double({ min: -0.2, max: 1.2, noNaN: true }), fc.double({ min: -0.2, max: 1.2, noNaN: true }), ({ spec, ids }, a, b) => {
    const [lo, hi] = a <= b ? [a, b] : [b, a];
    const model = smallModel(spec);
    const low = model.forward(ids, { exitThreshold: lo }).exitSteps!;
    const high = model.forward(ids, { exitThreshold: hi }).exitSteps!;
    for (let i = 0; i < ids.length; i++) assert.ok(low[i] <= high[i], `token ${i}: τ=${lo} → ${low[i]}, τ=${hi} → ${high[i]}`);
    if (lo <= 0) assert.ok(low.every((e) => e === 0));
    if (hi > 1) assert.ok(high.every((e) => e === spec.loops - 1));
  }), RUNS);
});

test('the threshold read-out equals exit_at_step at each token\'s exit step', () => {
  fc.assert(fc.property(specAndIds(), fc.double({ min: 0, max: 1, noNaN: true }), ({ spec, ids }, tau) => {
    const model = smallModel(spec);
    const V = spec.vocab;
    const byThreshold = model.forward(ids, { exitThreshold: tau });
    const perStep = Array.from({ length: spec.loops }, (_, t) => model.forward(ids, { exitAtStep: t }).logits);
    for (let i = 0; i < ids.length; i++) {
      const e = byThreshold.exitSteps![i];
      assert.equal(e, thresholdExitStep(byThreshold.cdf.subarray(i * spec.loops, (i + 1) * spec.loops), spec.loops, tau));
      assert.deepEqual(byThreshold.logits.subarray(i * V, (i + 1) * V), perStep[e].subarray(i * V, (i + 1) * V));
    }
  }), RUNS);
});

test('exit_at_step = T−1 equals the all-loops result, and an out-of-range exit_at_step is ignored', () => {
  fc.assert(fc.property(specAndIds(), ({ spec, ids }) => {
    const model = smallModel(spec);
    model.earlyExitThreshold = null; // plain last-loop read-out, as a config with early_exit_threshold null
    const allLoops = model.forward(ids);
    assert.equal(allLoops.readout.kind, 'last');
    assert.deepEqual(model.forward(ids, { exitAtStep: spec.loops - 1 }).logits, allLoops.logits);
    assert.deepEqual(model.forward(ids, { exitAtStep: spec.loops }).logits, allLoops.logits);
    assert.deepEqual(model.forward(ids, { exitAtStep: -1 }).logits, allLoops.logits);
    // skip mode with exit_at_step = T−1 runs every loop: the same numbers
    assert.deepEqual(model.forward(ids, { exitAtStep: spec.loops - 1, exitMode: 'skip' }).logits, allLoops.logits);
  }), RUNS);
});

test('selection never changes state: hidden states, gates and cache are identical across read-outs', () => {
  fc.assert(fc.property(specAndIds(), fc.double({ min: 0, max: 1, noNaN: true }), ({ spec, ids }, tau) => {
    const model = smallModel(spec);
    const a = model.newCache(ids.length), b = model.newCache(ids.length);
    const ra = model.forward(ids, { cache: a, exitThreshold: tau });
    const rb = model.forward(ids, { cache: b, useWeightedExit: true, exitAtStep: 0 });
    assert.deepEqual(ra.hidden, rb.hidden);
    assert.deepEqual(ra.gateLogits, rb.gateLogits);
    for (let s = 0; s < a.slots; s++) { assert.deepEqual(a.keys[s], b.keys[s]); assert.deepEqual(a.values[s], b.values[s]); }
  }), RUNS);
});

test('read-out precedence: valid exit_at_step > threshold (argument or config) > weighted > last loop', () => {
  const d = { earlyExitStep: null, earlyExitThreshold: 1.0 };
  assert.deepEqual(resolveReadout(4, { exitAtStep: 2, exitThreshold: 0.5, useWeightedExit: true }, d), { kind: 'exit-at-step', step: 2 });
  assert.deepEqual(resolveReadout(4, { exitAtStep: 4, useWeightedExit: true }, d), { kind: 'threshold', threshold: 1.0 });
  assert.deepEqual(resolveReadout(4, { exitThreshold: null, useWeightedExit: true }, d), { kind: 'threshold', threshold: 1.0 });
  assert.deepEqual(resolveReadout(4, { useWeightedExit: true }, { earlyExitStep: null, earlyExitThreshold: null }), { kind: 'weighted' });
  assert.deepEqual(resolveReadout(4, {}, { earlyExitStep: null, earlyExitThreshold: null }), { kind: 'last' });
  assert.deepEqual(resolveReadout(4, {}, { earlyExitStep: 1, earlyExitThreshold: 1.0 }), { kind: 'exit-at-step', step: 1 });
});

test('the weighted read-out equals Σ_t p_t · logits_t within float tolerance', () => {
  fc.assert(fc.property(specAndIds(), ({ spec, ids }) => {
    const model = smallModel(spec);
    model.earlyExitThreshold = null;
    const r = model.forward(ids, { useWeightedExit: true });
    const V = spec.vocab, T = spec.loops;
    for (let i = 0; i < ids.length; i++) {
      for (let v = 0; v < V; v++) {
        let expected = 0;
        for (let t = 0; t < T; t++) expected += r.pdf[i * T + t] * r.stepLogits![t][i * V + v];
        assert.ok(Math.abs(r.logits[i * V + v] - expected) <= 1e-5 * (1 + Math.abs(expected)));
      }
    }
  }), RUNS);
});

test('logits_to_keep = k returns the last k rows of the full read-out', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2 }), fc.integer({ min: 1, max: 12 }), ({ spec, ids }, keepArg) => {
    const model = smallModel(spec);
    const V = spec.vocab, keep = Math.min(keepArg, ids.length);
    for (const opts of [{}, { useWeightedExit: true, exitThreshold: null }, { exitThreshold: 0.5 }]) {
      const full = model.forward(ids, opts).logits;
      const kept = model.forward(ids, { ...opts, logitsToKeep: keepArg });
      assert.equal(kept.keep, keep);
      for (let j = 0; j < keep * V; j++) assert.ok(Math.abs(kept.logits[j] - full[(ids.length - keep) * V + j]) <= 1e-6 * (1 + Math.abs(full[(ids.length - keep) * V + j])));
    }
  }), RUNS);
});

test('per-loop logits are lm_head(h_t): they equal exit_at_step = t for every loop', () => {
  fc.assert(fc.property(specAndIds(), ({ spec, ids }) => {
    const model = smallModel(spec);
    const r = model.forward(ids, { loopLogits: true });
    for (let t = 0; t < spec.loops; t++) assert.deepEqual(r.loopLogits![t], model.forward(ids, { exitAtStep: t }).logits);
  }), RUNS);
});
