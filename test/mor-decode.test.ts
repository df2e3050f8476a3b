/**
 * Cached decoding: upstream-compatible mode (token-choice and KV sharing reproduce their full
 * forward; expert-choice decode runs every recursion) and the causal threshold mode (spec/mor.md).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bindMor, type ForwardOptions, type MorModel } from '../src/models/mor.js';
import { parseMorConfig } from '../src/models/mor-config.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';
import { fixtureWeights, makeFixture, randomIds, type FixtureSpec } from './mor-fixture.js';

const V = 64, RUNS = 15;

// Every property runs on the scalar twins and on the WASM SIMD kernels (one runtime, reused).
const wasm = await createWasmRuntime();
const RUNTIMES: [string, () => Runtime][] = [['scalar', createScalarRuntime], ['wasm', () => wasm]];
let runtime: () => Runtime = createScalarRuntime;

function load(spec: FixtureSpec): MorModel {
  const fx = makeFixture(spec);
  return bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), runtime(), { maxLen: 40 });
}

/** Declares the test once per runtime. */
function both(name: string, body: () => void): void {
  for (const [label, make] of RUNTIMES) test(`${name} [${label}]`, () => { runtime = make; body(); });
}
test.after(() => wasm.dispose());

/** Max |decode logits − full forward logits| over the decoded positions: prefill P tokens, then feed the rest one by one. */
function decodeVsForward(model: MorModel, ids: number[][], P: number, opts: ForwardOptions): { maxDiff: number; stepDepths: number[] } {
  const B = ids.length, T = ids[0].length;
  const full = model.forward(model.newSession(B, 40), ids, opts).logits;
  const session = model.newSession(B, 40);
  const prefill = model.forward(session, ids.map((r) => r.slice(0, P)), opts).logits;
  let maxDiff = 0;
  for (let b = 0; b < B; b++) for (let t = 0; t < P; t++) for (let i = 0; i < V; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(prefill[(b * P + t) * V + i] - full[(b * T + t) * V + i]));
  }
  const stepDepths: number[] = [];
  for (let t = P; t < T; t++) {
    const step = model.forward(session, ids.map((r) => [r[t]]), opts);
    stepDepths.push(...step.trace.depth);
    for (let b = 0; b < B; b++) for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(step.logits[b * V + i] - full[(b * T + t) * V + i]));
  }
  return { maxDiff, stepDepths };
}

const shape = fc.record({
  seed: fc.integer({ min: 1, max: 1 << 30 }),
  R: fc.integer({ min: 2, max: 4 }),
  bd: fc.integer({ min: 1, max: 2 }),
  sharing: fc.constantFrom('cycle' as const, 'middle_cycle' as const),
  B: fc.integer({ min: 1, max: 2 }),
  P: fc.integer({ min: 1, max: 10 }),
  n: fc.integer({ min: 1, max: 6 }),
});

both('token-choice: cached decode equals the full forward', () => {
  fc.assert(fc.property(shape, fc.constantFrom('softmax' as const, 'sigmoid' as const), fc.boolean(), (a, func, lossFree) => {
    const model = load({ variant: 'token', sharing: a.sharing, R: a.R, bd: a.bd, seed: a.seed, tokenRouterFunc: func, lossFree });
    const { maxDiff } = decodeVsForward(model, randomIds(a.seed, a.B, a.P + a.n, V), a.P, {});
    assert.ok(maxDiff <= 1e-5, `decode differs from the forward by ${maxDiff}`);
  }), { numRuns: RUNS });
});

both('KV sharing: decode equals its forward (token-choice; expert-choice at full capacity; expert-choice causal mode)', () => {
  fc.assert(fc.property(shape, fc.constantFrom('token', 'expert-full', 'expert-causal'), (a, kind) => {
    const spec: FixtureSpec = kind === 'token'
      ? { variant: 'token', sharing: a.sharing, R: a.R, bd: a.bd, seed: a.seed, kvSharing: true }
      : { variant: 'expert', sharing: a.sharing, R: a.R, bd: a.bd, seed: a.seed, kvSharing: true, capacity: kind === 'expert-full' ? Array(a.R).fill(1) : undefined };
    const model = load(spec);
    const { maxDiff } = decodeVsForward(model, randomIds(a.seed, a.B, a.P + a.n, V), a.P, kind === 'expert-causal' ? { mode: 'causal' } : {});
    assert.ok(maxDiff <= 1e-5, `decode differs from the forward by ${maxDiff}`);
  }), { numRuns: RUNS });
});

both('vanilla and recursive baselines: cached decode equals the full forward', () => {
  fc.assert(fc.property(shape, fc.constantFrom('vanilla' as const, 'recursive' as const), fc.boolean(), (a, variant, kvSharing) => {
    const model = load({ variant, sharing: a.sharing, R: a.R, bd: a.bd, seed: a.seed, kvSharing: variant === 'recursive' && kvSharing });
    const { maxDiff } = decodeVsForward(model, randomIds(a.seed, a.B, a.P + a.n, V), a.P, {});
    assert.ok(maxDiff <= 1e-5, `decode differs from the forward by ${maxDiff}`);
  }), { numRuns: RUNS });
});

both('expert-choice upstream mode: every decoded token runs every recursion', () => {
  fc.assert(fc.property(shape, (a) => {
    const model = load({ variant: 'expert', sharing: a.sharing, R: a.R, bd: a.bd, seed: a.seed });
    const { stepDepths } = decodeVsForward(model, randomIds(a.seed, a.B, a.P + a.n, V), a.P, {});
    assert.deepEqual(stepDepths, Array(stepDepths.length).fill(a.R));
  }), { numRuns: RUNS });
});

both('causal mode: prefill then decode equals one causal forward over the whole sequence', () => {
  fc.assert(fc.property(shape, fc.double({ min: 0.05, max: 0.95, noNaN: true }), (a, threshold) => {
    const model = load({ variant: 'expert', sharing: a.sharing, R: a.R, bd: a.bd, seed: a.seed });
    const { maxDiff } = decodeVsForward(model, randomIds(a.seed, a.B, a.P + a.n, V), a.P, { mode: 'causal', threshold });
    assert.ok(maxDiff <= 1e-5, `decode differs from the causal forward by ${maxDiff}`);
  }), { numRuns: RUNS });
});

both('causal mode: with the same cached context, a higher threshold never gives a token more recursions', () => {
  fc.assert(fc.property(shape, fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }),
    (a, t0, x, y) => {
      const [low, high] = x <= y ? [x, y] : [y, x];
      const model = load({ variant: 'expert', sharing: a.sharing, R: a.R, bd: a.bd, seed: a.seed });
      const ids = randomIds(a.seed, a.B, a.P + 1, V);
      const depthAt = (threshold: number): Int32Array => {
        const session = model.newSession(a.B, 40);
        model.forward(session, ids.map((r) => r.slice(0, a.P)), { mode: 'causal', threshold: t0 });
        return model.forward(session, ids.map((r) => [r[a.P]]), { mode: 'causal', threshold }).trace.depth;
      };
      const dLow = depthAt(low), dHigh = depthAt(high);
      for (let b = 0; b < a.B; b++) assert.ok(dHigh[b] <= dLow[b], `threshold ${high} gave ${dHigh[b]} recursions, ${low} gave ${dLow[b]}`);
      // a one-token sequence has no context at all: the same holds for a fresh forward
      const fresh = (threshold: number) => model.forward(model.newSession(1, 40), [[ids[0][0]]], { mode: 'causal', threshold }).trace.depth[0];
      assert.ok(fresh(high) <= fresh(low));
    }), { numRuns: RUNS });
});

both('causal mode: compute counted equals the sum of per-token depths, and a stopped token does no further compute', () => {
  fc.assert(fc.property(shape, fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean(), (a, threshold, kvSharing) => {
    const model = load({ variant: 'expert', sharing: a.sharing, R: a.R, bd: a.bd, seed: a.seed, kvSharing });
    const ids = randomIds(a.seed, a.B, a.P + a.n, V);
    const session = model.newSession(a.B, 40);
    const calls = [ids.map((r) => r.slice(0, a.P)), ...Array.from({ length: a.n }, (_, s) => ids.map((r) => [r[a.P + s]]))];
    const fixedLayers = a.sharing === 'middle_cycle' ? 2 : 0;
    for (const call of calls) {
      const { trace } = model.forward(session, call, { mode: 'causal', threshold });
      const sum = (xs: Int32Array) => xs.reduce((s, x) => s + x, 0);
      assert.equal(sum(trace.blockRuns), sum(trace.depth));
      for (let i = 0; i < trace.depth.length; i++) {
        assert.equal(trace.blockRuns[i], trace.depth[i]);
        assert.equal(trace.layerRuns[i], fixedLayers + a.bd * trace.depth[i]);
        for (let r = trace.depth[i] + 1; r < a.R; r++) assert.ok(Number.isNaN(trace.routerLogits[i * a.R + r]), 'a stopped token was scored by a later router');
      }
    }
  }), { numRuns: RUNS });
});
