/**
 * Invariants of huginn.md §10 as fast-check properties over small random models (our seeded PRNG
 * weights, several shapes). Runs are kept few: the models are tiny but the machine is shared.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PonderError } from '../src/errors.js';
import { seededInitialStates, type HuginnModel, type InitialStates } from '../src/models/huginn.js';
import { createExitEvaluator, EXIT_CRITERIA, type ExitCriterion } from '../src/depth/criteria.js';
import { generateAdaptive, generateMinimal, generateSpeculative } from '../src/models/huginn-generate.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { SMALL_SHAPES, tinyModel, type TinyShape } from './huginn-fixture.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';

const runtime = createScalarRuntime();
const models = new Map<string, HuginnModel>();
function model(shapeIndex: number, seed: number): HuginnModel {
  const key = `${shapeIndex}/${seed}`;
  if (!models.has(key)) models.set(key, tinyModel(SMALL_SHAPES[shapeIndex], seed, runtime));
  return models.get(key)!;
}
const HUGINN_LIKE = 3; // P=2, R=4: the shape the m4 lookups hard-code
const shapeArb = fc.integer({ min: 0, max: SMALL_SHAPES.length - 1 });
const seedArb = fc.integer({ min: 1, max: 4 });
const promptArb = (shape: TinyShape, maxLen = 5): fc.Arbitrary<number[]> => fc.array(fc.integer({ min: 0, max: shape.V - 1 }), { minLength: 1, maxLength: maxLen });

/** Wraps a source and keeps every draw, in call order. */
function recording(source: InitialStates): { source: InitialStates; draws: Float32Array[] } {
  const draws: Float32Array[] = [];
  return { draws, source: { next: (B, S, E, sigma, scale) => { const s = source.next(B, S, E, sigma, scale); draws.push(s); return s; } } };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

test('cached incremental decoding equals the full forward at a fixed step count', () => {
  fc.assert(fc.property(shapeArb, seedArb, fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 1000 }), (si, seed, numSteps, maxNew, stateSeed) => {
    const m = model(si, seed);
    const prompt = fc.sample(promptArb(SMALL_SHAPES[si]), { seed: stateSeed, numRuns: 1 })[0];
    const rec = recording(seededInitialStates(stateSeed));
    const gen = generateMinimal(m, { inputIds: prompt, B: 1, maxNewTokens: maxNew, numSteps, initialStates: rec.source, recordForwardLogits: true });
    const seq = gen.sequences[0];
    const full = m.forward({ ids: seq.slice(0, -1), B: 1, S: seq.length - 1, numSteps, inputStates: concat(rec.draws) });
    assert.ok(maxAbsDiff(concat(gen.forwardCalls.map((c) => c.logits!)), full.logits) <= 1e-5);
  }), { numRuns: 12 });
});

test('no token exceeds the step cap, even with NaN in the state: a check that reads the NaN is NUM_NONFINITE, never a silent run to the cap', () => {
  const nanStates: InitialStates = { next: (B, S, E) => new Float32Array(B * S * E).fill(NaN) };
  fc.assert(fc.property(shapeArb, fc.constantFrom(...EXIT_CRITERIA), fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.boolean(), (si, criterion, cap, minSteps, every, continuous) => {
    const m = model(si, 1);
    let r;
    try {
      r = generateAdaptive(m, {
        inputIds: [1, 2, 3], B: 1, maxNewTokens: 3, numSteps: cap, minSteps, checkCriterionEveryNSteps: every, continuousCompute: continuous,
        evaluator: createExitEvaluator(criterion, 'auto', m.config.vocabSize), initialStates: nanStates,
      });
    } catch (e) {
      // a check ran on the NaN state: it must say so (a criterion never met would run every token to the cap)
      assert.ok(e instanceof PonderError && e.code === 'NUM_NONFINITE' && /step \d+/.test(e.message), String(e));
      assert.ok(cap > minSteps, `${criterion}: no check can run with cap ${cap} and minSteps ${minSteps}, yet one raised`);
      return;
    }
    assert.equal(r.sequences[0].length, 3 + 3);
    for (const t of r.trace) {
      assert.ok(t.iterationsRun <= cap && t.steps[0] <= cap, `${criterion}: ${t.iterationsRun} iterations, ${t.steps[0]} steps, cap ${cap}`);
      assert.ok(t.checks.every((c) => c.iteration <= cap));
    }
  }), { numRuns: 25 });
});

const LESS_THAN: ExitCriterion[] = ['entropy-diff', 'latent-diff', 'kl', 'minp-kl', 'cosine'];

test('a stricter threshold never exits earlier (prefill token step, fixed trajectory)', () => {
  fc.assert(fc.property(shapeArb, seedArb, fc.constantFrom(...LESS_THAN), fc.double({ min: 1e-4, max: 0.9, noNaN: true }), fc.double({ min: 1e-4, max: 0.9, noNaN: true }), (si, seed, criterion, t1, t2) => {
    const m = model(si, seed);
    const [strict, loose] = t1 <= t2 ? [t1, t2] : [t2, t1];
    const steps = (thr: number): number => generateAdaptive(m, {
      inputIds: [4, 2, 7], B: 1, maxNewTokens: 1, numSteps: 8, evaluator: createExitEvaluator(criterion, thr, m.config.vocabSize), initialStates: seededInitialStates(seed),
    }).trace[0].steps[0];
    assert.ok(steps(strict) >= steps(loose));
  }), { numRuns: 20 });
  fc.assert(fc.property(shapeArb, seedArb, fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 6 }), (si, seed, c1, c2) => {
    const m = model(si, seed);
    const steps = (count: number): number => generateAdaptive(m, {
      inputIds: [4, 2, 7], B: 1, maxNewTokens: 1, numSteps: 8, evaluator: createExitEvaluator('argmax-stability', count, m.config.vocabSize), initialStates: seededInitialStates(seed),
    }).trace[0].steps[0];
    const [stricter, looser] = c1 >= c2 ? [c1, c2] : [c2, c1];
    assert.ok(steps(stricter) >= steps(looser));
  }), { numRuns: 10 });
});

function adaptiveRun(m: HuginnModel, strategy: string, thr: number, stateSeed: number, prompt: number[]) {
  return generateAdaptive(m, {
    inputIds: prompt, B: 1, maxNewTokens: 5, numSteps: 6, cacheLookupStrategy: strategy,
    evaluator: createExitEvaluator('latent-diff', thr, m.config.vocabSize), initialStates: seededInitialStates(stateSeed),
  });
}

/** Thresholds where these random models exit early often (their relative state change stays around 0.3–0.7). */
const exitingThreshold = fc.double({ min: 0.35, max: 0.9, noNaN: true });
const exitedEarly = (steps: number[][], cap: number): boolean => steps.some((s) => s[0] < cap);

test('full and skip lookups agree, also after early exits', () => {
  let runsWithEarlyExits = 0;
  fc.assert(fc.property(shapeArb, seedArb, exitingThreshold, fc.integer({ min: 0, max: 100 }), (si, seed, thr, stateSeed) => {
    const m = model(si, seed);
    const prompt = [1, 5, 2, 3].map((x) => x % SMALL_SHAPES[si].V);
    const full = adaptiveRun(m, 'full', thr, stateSeed, prompt);
    const skip = adaptiveRun(m, 'skip', thr, stateSeed, prompt);
    assert.deepEqual(skip.sequences, full.sequences);
    assert.deepEqual(skip.trace.map((t) => t.steps), full.trace.map((t) => t.steps));
    assert.deepEqual(skip.nextTokenLogits, full.nextTokenLogits);
    if (exitedEarly(full.trace.map((t) => t.steps), 6)) runsWithEarlyExits++;
  }), { numRuns: 12 });
  assert.ok(runsWithEarlyExits > 0, 'no run exercised an early exit');
});

test('latest-m4 and available-m4 agree on the huginn layout (P=2, R=4)', () => {
  let runsWithEarlyExits = 0;
  fc.assert(fc.property(seedArb, exitingThreshold, fc.integer({ min: 0, max: 100 }), (seed, thr, stateSeed) => {
    const m = model(HUGINN_LIKE, seed);
    const latest = adaptiveRun(m, 'latest-m4', thr, stateSeed, [3, 1, 4]);
    const available = adaptiveRun(m, 'available-m4', thr, stateSeed, [3, 1, 4]);
    assert.deepEqual(available.sequences, latest.sequences);
    assert.deepEqual(available.nextTokenLogits, latest.nextTokenLogits);
    if (exitedEarly(latest.trace.map((t) => t.steps), 6)) runsWithEarlyExits++;
  }), { numRuns: 8 });
  assert.ok(runsWithEarlyExits > 0, 'no run exercised an early exit');
});

test('every lookup strategy gives the same tokens at a fixed depth (no early exits, no compression)', () => {
  const m = model(HUGINN_LIKE, 2);
  const run = (strategy: string) => generateMinimal(m, { inputIds: [5, 6, 7], B: 1, maxNewTokens: 4, numSteps: 3, cacheLookupStrategy: strategy, initialStates: seededInitialStates(9) });
  const full = run('full');
  for (const s of ['skip', 'latest-m4', 'available-m4', 'always-last-m4', 'randomized']) {
    const r = run(s);
    assert.deepEqual(r.sequences, full.sequences, s);
    assert.deepEqual(r.nextTokenLogits, full.nextTokenLogits, s);
  }
});

test('compressed caches hold fewer bytes than the full cache, which holds one entry per slot and position', () => {
  const m = model(HUGINN_LIKE, 2);
  const bytes = (strategy: string): number => generateMinimal(m, { inputIds: [5, 6, 7], B: 1, maxNewTokens: 4, numSteps: 6, cacheLookupStrategy: strategy, initialStates: seededInitialStates(9) }).cache.memoryBytes();
  const { nPrelude: P, nCore: R, nCoda: C, nKvHeads, headDim } = m.config;
  const positions = 3 + 4 - 1;
  assert.equal(bytes('full'), (P + 6 * R + C) * positions * 2 * nKvHeads * headDim * 4);
  for (const s of ['compress-s4', 'compress-r2', 'latest-m4-compress-s8']) assert.ok(bytes(s) < bytes('full'), s);
});

test('speculative greedy decoding equals plain greedy decoding at the verify depth', () => {
  fc.assert(fc.property(shapeArb, seedArb, fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 5 }), fc.integer({ min: 1, max: 7 }), (si, seed, draftSteps, lookahead, numSteps, maxNew) => {
    const m = model(si, seed);
    const prompt = [2, 7, 1].map((x) => x % SMALL_SHAPES[si].V);
    const plain = generateMinimal(m, { inputIds: prompt, B: 1, maxNewTokens: maxNew, numSteps, initScale: 0 });
    const spec = generateSpeculative(m, { inputIds: prompt, B: 1, maxNewTokens: maxNew, numSteps, draftSteps, lookaheadForDraft: lookahead, verificationThreshold: 1, initScale: 0 });
    assert.ok(spec.sequences[0].length >= prompt.length + maxNew);
    assert.deepEqual(spec.sequences[0].slice(0, prompt.length + maxNew), plain.sequences[0]);
  }), { numRuns: 15 });
});

test('zero init is deterministic and a seeded init is reproducible', () => {
  fc.assert(fc.property(shapeArb, seedArb, fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (si, seed, s1, s2) => {
    const m = model(si, seed);
    const ids = [1, 2, 3, 4].map((x) => x % SMALL_SHAPES[si].V);
    const zeroA = m.forward({ ids, B: 1, S: 4, numSteps: 2, initScale: 0, initialStates: seededInitialStates(s1) });
    const zeroB = m.forward({ ids, B: 1, S: 4, numSteps: 2, initScale: 0, initialStates: seededInitialStates(s2) });
    assert.deepEqual(zeroA.logits, zeroB.logits);
    const E = m.config.nEmbd;
    const draw = (s: number): Float32Array => m.initialState(2, 3, 1, seededInitialStates(s));
    assert.deepEqual(draw(s1), draw(s1));
    if (s1 !== s2) assert.notDeepEqual(draw(s1), draw(s2));
    const cut = 3 * m.config.initStd * m.config.embedScale * (1 + 1e-6);
    assert.ok(draw(s1).every((x) => Math.abs(x) <= cut));
    assert.ok(m.initialState(2, 3, 0, seededInitialStates(s1)).every((x) => x === 0));
    assert.equal(draw(s1).length, 2 * 3 * E);
  }), { numRuns: 15 });
});

test('adaptive generation with criterion none equals fixed-depth generation with the same draws', () => {
  fc.assert(fc.property(shapeArb, seedArb, fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 100 }), (si, seed, numSteps, stateSeed) => {
    const m = model(si, seed);
    const prompt = [3, 2, 1].map((x) => x % SMALL_SHAPES[si].V);
    const fixed = generateMinimal(m, { inputIds: prompt, B: 1, maxNewTokens: 4, numSteps, initialStates: seededInitialStates(stateSeed) });
    const none = generateAdaptive(m, { inputIds: prompt, B: 1, maxNewTokens: 4, numSteps, evaluator: createExitEvaluator('none'), initialStates: seededInitialStates(stateSeed) });
    assert.deepEqual(none.sequences, fixed.sequences);
    assert.ok(maxAbsDiff(concat(none.nextTokenLogits), concat(fixed.nextTokenLogits)) === 0);
    assert.ok(none.trace.every((t) => t.steps[0] === numSteps && t.exitReason[0] === 'max-steps'));
  }), { numRuns: 10 });
});

test('num_steps (n, k) equals n + k steps, and an m-step run starts with the n-step states', () => {
  fc.assert(fc.property(shapeArb, seedArb, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 100 }), (si, seed, n, k, stateSeed) => {
    const m = model(si, seed);
    const ids = [1, 3, 2].map((x) => x % SMALL_SHAPES[si].V);
    const s0 = m.initialState(1, 3, 1, seededInitialStates(stateSeed));
    const pair = m.forward({ ids, B: 1, S: 3, numSteps: [n, k], inputStates: s0 });
    const total = { preludeLayers: [], adapterOut: [], states: [] as Float32Array[] };
    const sum = m.forward({ ids, B: 1, S: 3, numSteps: n + k, inputStates: s0, trace: total });
    assert.deepEqual(pair.logits, sum.logits);
    const short = { preludeLayers: [], adapterOut: [], states: [] as Float32Array[] };
    m.forward({ ids, B: 1, S: 3, numSteps: n, inputStates: s0, trace: short });
    short.states.forEach((s, i) => assert.deepEqual(s, total.states[i]));
  }), { numRuns: 10 });
});

test('logits at a position do not depend on later tokens or later initial states (causality)', () => {
  fc.assert(fc.property(shapeArb, seedArb, fc.integer({ min: 0, max: 100 }), (si, seed, stateSeed) => {
    const m = model(si, seed);
    const V = m.config.vocabSize, E = m.config.nEmbd;
    const s0 = m.initialState(1, 5, 1, seededInitialStates(stateSeed));
    const a = m.forward({ ids: [1, 2, 3, 4, 5].map((x) => x % V), B: 1, S: 5, numSteps: 2, inputStates: s0 });
    const s1 = Float32Array.from(s0);
    s1.fill(0.5, 3 * E);
    const b = m.forward({ ids: [1, 2, 3, 0, 0], B: 1, S: 5, numSteps: 2, inputStates: s1 });
    assert.deepEqual(a.logits.subarray(0, 3 * V), b.logits.subarray(0, 3 * V));
  }), { numRuns: 8 });
});

test('a batch of two prompts decodes like each prompt alone', () => {
  const m = model(0, 1);
  const E = m.config.nEmbd;
  const s = m.initialState(1, 4, 1, seededInitialStates(5));
  const t = m.initialState(1, 4, 1, seededInitialStates(6));
  const both = m.forward({ ids: [1, 2, 3, 4, 5, 6, 7, 8], B: 2, S: 4, numSteps: 3, inputStates: concat([s, t]) });
  const first = m.forward({ ids: [1, 2, 3, 4], B: 1, S: 4, numSteps: 3, inputStates: s });
  const second = m.forward({ ids: [5, 6, 7, 8], B: 1, S: 4, numSteps: 3, inputStates: t });
  assert.deepEqual(both.logits, concat([first.logits, second.logits]));
  assert.equal(both.latentStates.length, 2 * 4 * E);
});

test('the wasm kernels compute the scalar forward (logits within 1e-4) through the cached decode path', async () => {
  const wasm = await createWasmRuntime();
  for (const si of [0, HUGINN_LIKE]) {
    const scalarModel = model(si, 3);
    const wasmModel = tinyModel(SMALL_SHAPES[si], 3, wasm);
    const prompt = [1, 2, 3, 4, 5].map((x) => x % SMALL_SHAPES[si].V);
    const run = (m: HuginnModel) => generateMinimal(m, { inputIds: prompt, B: 1, maxNewTokens: 4, numSteps: 3, initialStates: seededInitialStates(8), recordForwardLogits: true });
    const a = run(scalarModel), b = run(wasmModel);
    const n = Math.min(a.forwardCalls.length, b.forwardCalls.length);
    // the first call (prefill) sees identical inputs; compare it, and the rest while the tokens agree
    for (let i = 0; i < n; i++) {
      assert.ok(maxAbsDiff(a.forwardCalls[i].logits!, b.forwardCalls[i].logits!) <= 1e-4, `shape ${si}, call ${i}`);
      if (a.sequences[0][prompt.length + i] !== b.sequences[0][prompt.length + i]) break;
    }
  }
});

test('the cache holds a core entry for a position iff that token ran that iteration; prelude and coda slots hold every position', () => {
  fc.assert(fc.property(shapeArb, seedArb, exitingThreshold, fc.integer({ min: 0, max: 100 }), (si, seed, thr, stateSeed) => {
    const m = model(si, seed);
    const { nPrelude: P, nCore: R, nCoda: C } = m.config;
    const prompt = [2, 4, 6].map((x) => x % SMALL_SHAPES[si].V);
    const r = adaptiveRun(m, 'full', thr, stateSeed, prompt);
    // position p was consumed by token step 0 (the prompt) or by step p − L + 1
    const stepsAt = (p: number): number => r.trace[p < prompt.length ? 0 : p - prompt.length + 1].steps[0];
    for (let p = 0; p < r.cache.seenTokens; p++) {
      for (let i = 0; i < P; i++) assert.ok(r.cache.has(i, p));
      for (let c = 1; c <= C; c++) assert.ok(r.cache.has(-c, p));
      for (let k = 0; k < 6; k++) for (let j = 0; j < R; j++) assert.equal(r.cache.has(P + k * R + j, p), k < stepsAt(p));
    }
  }), { numRuns: 10 });
});

test('KV compression changes nothing for the prompt itself (the prefill logits equal the full cache\'s)', () => {
  const m = model(HUGINN_LIKE, 1);
  const run = (strategy: string) => generateMinimal(m, { inputIds: [5, 6, 7, 8], B: 1, maxNewTokens: 3, numSteps: 5, cacheLookupStrategy: strategy, initialStates: seededInitialStates(4), recordForwardLogits: true });
  const full = run('full');
  for (const s of ['compress-s4', 'compress-s2', 'compress-r2', 'compress-anchor', 'latest-m4-compress-s4']) {
    assert.deepEqual(run(s).forwardCalls[0].logits, full.forwardCalls[0].logits, s);
  }
});
