import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PonderError } from '../src/errors.js';
import { Sampler } from '../src/generate/sampling.js';
import { seededInitialStates } from '../src/models/huginn.js';
import { createExitEvaluator, EXIT_CRITERIA, numStepsEvaluator } from '../src/depth/criteria.js';
import { generateAdaptive, generateMinimal, generateSpeculative } from '../src/models/huginn-generate.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { SMALL_SHAPES, tinyModel } from './huginn-fixture.js';

const runtime = createScalarRuntime();
const model = tinyModel(SMALL_SHAPES[0], 1, runtime);
const prompt = [3, 1, 4, 1];

test('sampled generation with a seeded sampler is reproducible, and another seed can differ', () => {
  const run = (seed: number): number[] => {
    const sampler = new Sampler(model.config.vocabSize, { temperature: 1.5, seed });
    return generateMinimal(model, { inputIds: prompt, B: 1, maxNewTokens: 12, numSteps: 2, initScale: 0, sampler: (l, ctx) => sampler.sample(l, ctx) }).sequences[0];
  };
  assert.deepEqual(run(5), run(5));
  assert.ok([6, 7, 8, 9].some((s) => run(s).join() !== run(5).join()));
});

test('generation stops after a stop token', () => {
  const free = generateMinimal(model, { inputIds: prompt, B: 1, maxNewTokens: 6, numSteps: 2, initScale: 0 }).sequences[0];
  const stopAt = free[prompt.length + 2];
  const stopped = generateMinimal(model, { inputIds: prompt, B: 1, maxNewTokens: 6, numSteps: 2, initScale: 0, stopTokens: [stopAt] }).sequences[0];
  const first = free.indexOf(stopAt, prompt.length);
  assert.deepEqual(stopped, free.slice(0, first + 1));
});

test('the adaptive trace is consistent: an exit by criterion happens at a check whose value passed the threshold', () => {
  fc.assert(fc.property(fc.constantFrom(...EXIT_CRITERIA), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 0, max: 50 }), (criterion, minSteps, every, seed) => {
    const evaluator = createExitEvaluator(criterion, criterion === 'argmax-stability' ? 2 : 0.5, model.config.vocabSize);
    const r = generateAdaptive(model, { inputIds: prompt, B: 1, maxNewTokens: 4, numSteps: 6, minSteps, checkCriterionEveryNSteps: every, evaluator, initialStates: seededInitialStates(seed) });
    for (const t of r.trace) {
      for (const c of t.checks) assert.ok(c.iteration - 1 >= minSteps && (c.iteration - 1 - minSteps) % every === 0);
      if (t.exitReason[0] === 'criterion') {
        const last = t.checks[t.checks.length - 1];
        assert.equal(last.iteration, t.steps[0]);
        assert.equal(t.iterationsRun, t.steps[0]);
        assert.ok(criterion === 'argmax-stability' ? last.values[0] >= evaluator.threshold : last.values[0] < evaluator.threshold);
      } else {
        assert.equal(t.steps[0], 6);
        assert.ok(t.checks.every((c) => !(criterion === 'argmax-stability' ? c.values[0] >= evaluator.threshold : c.values[0] < evaluator.threshold)));
      }
    }
  }), { numRuns: 20 });
});

test('do_not_exit_in_prefill runs the prefill to the cap without checks', () => {
  const r = generateAdaptive(model, { inputIds: prompt, B: 1, maxNewTokens: 3, numSteps: 5, doNotExitInPrefill: true, evaluator: numStepsEvaluator(() => 1), initialStates: seededInitialStates(1) });
  assert.equal(r.trace[0].checks.length, 0);
  assert.equal(r.trace[0].steps[0], 5);
  assert.ok(r.trace.slice(1).every((t) => t.steps[0] === 1 && t.iterationsRun === 1));
});

test('a fixed per-token step count (NumStepsGenerator) runs exactly that many iterations per token', () => {
  const plan = [3, 1, 4, 2];
  const r = generateAdaptive(model, { inputIds: prompt, B: 1, maxNewTokens: 4, numSteps: 3, evaluator: numStepsEvaluator((i) => plan[i]), initialStates: seededInitialStates(2) });
  assert.deepEqual(r.trace.map((t) => t.iterationsRun), plan.map((p) => Math.min(p, 3)));
});

test('continuous speculative decoding with lookahead > 1 is refused (upstream fails in torch.cat)', () => {
  assert.throws(() => generateSpeculative(model, { inputIds: prompt, B: 1, maxNewTokens: 3, lookaheadForDraft: 2, continuousCompute: true }),
    (e: unknown) => e instanceof PonderError && e.code === 'HUGINN_INPUT');
  const r = generateSpeculative(model, { inputIds: prompt, B: 1, maxNewTokens: 3, numSteps: 3, draftSteps: 1, lookaheadForDraft: 1, continuousCompute: true, initialStates: seededInitialStates(3) });
  assert.ok(r.sequences[0].length >= prompt.length + 3);
  assert.ok(r.forwardCalls.slice(1).every((c) => c.inputStates !== null && c.inputStates.length === model.config.nEmbd));
});

test('continuous CoT (generate_minimal) hands every call after the prefill a one-position ln_f-normalised latent', () => {
  const E = model.config.nEmbd;
  const m = generateMinimal(model, { inputIds: prompt, B: 1, maxNewTokens: 3, numSteps: 2, continuousCompute: true, initialStates: seededInitialStates(4) });
  for (let i = 1; i < m.forwardCalls.length; i++) {
    const s = m.forwardCalls[i].inputStates!;
    assert.equal(s.length, E);
    let ss = 0;
    for (let j = 0; j < E; j++) ss += s[j] * s[j];
    assert.ok(Math.abs(Math.sqrt(ss / E) - 1) < 0.3, 'an ln_f output has RMS near the norm weight scale');
  }
  const fixedDepth = generateMinimal(model, { inputIds: prompt, B: 1, maxNewTokens: 3, numSteps: 2, initialStates: seededInitialStates(4) });
  assert.equal(m.sequences[0].length, fixedDepth.sequences[0].length);
});
