import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { specAndIds, smallModel } from './ouro-fixture.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';

const RUNS = { numRuns: 25 };

test('cached decode equals the full forward (logits, exit steps, hidden states, bit for bit)', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2, maxLength: 12 }), fc.integer({ min: 1, max: 11 }), fc.double({ min: 0, max: 1.1, noNaN: true }),
    ({ spec, ids }, promptArg, tau) => {
      const model = smallModel(spec);
      const V = spec.vocab, H = spec.hidden, T = spec.loops;
      const P = Math.min(promptArg, ids.length - 1);
      const full = model.forward(ids, { exitThreshold: tau });
      const cache = model.newCache(ids.length);
      const prefill = model.forward(ids.slice(0, P), { cache, exitThreshold: tau });
      assert.deepEqual(prefill.logits, full.logits.subarray(0, P * V));
      for (let i = P; i < ids.length; i++) {
        const step = model.forward([ids[i]], { cache, exitThreshold: tau });
        assert.equal(step.positions[0], i);
        assert.deepEqual(step.logits, full.logits.subarray(i * V, (i + 1) * V), `token ${i}`);
        assert.equal(step.exitSteps![0], full.exitSteps![i]);
        for (let t = 0; t < T; t++) assert.deepEqual(step.hidden[t], full.hidden[t].subarray(i * H, (i + 1) * H));
      }
      assert.equal(cache.length, ids.length);
    }), RUNS);
});

test('chunked prefill equals one prefill within float tolerance', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2, maxLength: 12 }), fc.integer({ min: 1, max: 11 }), ({ spec, ids }, splitArg) => {
    const model = smallModel(spec);
    const split = Math.min(splitArg, ids.length - 1);
    const one = model.forward(ids);
    const cache = model.newCache(ids.length);
    const a = model.forward(ids.slice(0, split), { cache });
    const b = model.forward(ids.slice(split), { cache });
    const joined = new Float32Array([...a.logits, ...b.logits]);
    for (let j = 0; j < joined.length; j++) assert.ok(Math.abs(joined[j] - one.logits[j]) <= 1e-5 * (1 + Math.abs(one.logits[j])));
  }), RUNS);
});

test('causality: logits at position i do not depend on later tokens', () => {
  fc.assert(fc.property(specAndIds({ minLength: 2 }), fc.integer({ min: 0, max: 40 }), ({ spec, ids }, replacement) => {
    const model = smallModel(spec);
    const V = spec.vocab;
    const changed = [...ids];
    changed[ids.length - 1] = replacement % V;
    const a = model.forward(ids).logits, b = model.forward(changed).logits;
    assert.deepEqual(a.subarray(0, (ids.length - 1) * V), b.subarray(0, (ids.length - 1) * V));
  }), RUNS);
});

test('every one of the T·L cache slots holds one row per token after prefill and decode', () => {
  const model = smallModel({ vocab: 20, hidden: 16, inter: 24, layers: 2, heads: 2, kvHeads: 1, headDim: 8, loops: 3, seed: 5, gateBias: 0 });
  const cache = model.newCache(6);
  model.forward([1, 2, 3, 4], { cache });
  model.forward([5], { cache });
  assert.equal(cache.slots, 3 * 2);
  assert.equal(cache.length, 5);
  for (let s = 0; s < cache.slots; s++) {
    // filled rows are non-zero keys (RoPE'd projections of non-zero states); the row past the end is untouched
    for (let p = 0; p < 5; p++) assert.ok(cache.keys[s].subarray(p * 8, (p + 1) * 8).some((x) => x !== 0), `slot ${s} row ${p}`);
    assert.ok(cache.keys[s].subarray(5 * 8, 6 * 8).every((x) => x === 0));
  }
});

test('cached decode equals the full forward on the wasm kernels (within 1e-5, same exit steps)', async () => {
  const runtime = await createWasmRuntime();
  for (const seed of [1, 2, 3, 4, 5]) {
    const spec = { vocab: 30, hidden: 32, inter: 40, layers: 2, heads: 4, kvHeads: 2, headDim: 8, loops: 4, seed, gateBias: 0 };
    const model = smallModel(spec, runtime);
    const ids = Array.from({ length: 12 }, (_, i) => (i * 7 + seed) % spec.vocab);
    for (const opts of [{ exitThreshold: 0.5 }, { exitThreshold: 0.5, exitMode: 'skip' as const }]) {
      const full = model.forward(ids, opts);
      const cache = model.newCache(ids.length);
      for (let i = 0; i < ids.length; i++) {
        const step = model.forward([ids[i]], { ...opts, cache });
        assert.equal(step.exitSteps![0], full.exitSteps![i], `seed ${seed} token ${i}`);
        for (let v = 0; v < spec.vocab; v++) {
          const e = full.logits[i * spec.vocab + v];
          assert.ok(Math.abs(step.logits[v] - e) <= 1e-5 * (1 + Math.abs(e)), `seed ${seed} token ${i} logit ${v}`);
        }
      }
    }
  }
});
