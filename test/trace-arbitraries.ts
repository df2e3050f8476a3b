/** fast-check generators of valid traces, shared by the trace-*.test.ts files. */
import fc from 'fast-check';
import { EXIT_REASONS, type RunTrace, type TokenTrace } from '../src/trace/trace.js';

const stepValue = fc.oneof(
  { weight: 8, arbitrary: fc.double({ min: 1e-9, max: 50, noNaN: true }) },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constantFrom(NaN, Infinity, -Infinity, 0, -1) },
);

export const tokenTraceArb: fc.Arbitrary<TokenTrace> = fc.integer({ min: 1, max: 16 }).chain((maxSteps) =>
  fc.record({
    id: fc.integer({ min: 0, max: 65535 }),
    text: fc.option(fc.string({ maxLength: 8 }), { nil: undefined }),
    phase: fc.constantFrom<'prefill' | 'decode' | undefined>('prefill', 'decode', undefined),
    steps: fc.integer({ min: 0, max: maxSteps }),
    maxSteps: fc.constant(maxSteps),
    exitReason: fc.constantFrom(...EXIT_REASONS),
    criterion: fc.option(fc.constantFrom('kl', 'entropy-diff', 'latent-diff'), { nil: undefined }),
    threshold: fc.option(fc.double({ min: 1e-6, max: 1, noNaN: true }), { nil: undefined }),
    criterionValues: fc.array(stepValue, { maxLength: maxSteps }),
    routerScores: fc.array(stepValue, { maxLength: maxSteps }),
    flops: fc.integer({ min: 0, max: 1e9 }),
    kvBytes: fc.integer({ min: 0, max: 1e8 }),
  }, { requiredKeys: ['id', 'steps', 'maxSteps', 'exitReason', 'criterionValues', 'routerScores', 'flops', 'kvBytes'] }),
);

export const runTraceArb: fc.Arbitrary<RunTrace> = fc.record({
  family: fc.constantFrom('mor', 'huginn', 'ouro'),
  model: fc.option(fc.string({ maxLength: 12 }), { nil: undefined }),
  policy: fc.constantFrom('fixed(4)', 'exit(kl, 5e-4)', 'router', 'budget(64)'),
  tokens: fc.array(tokenTraceArb, { maxLength: 12 }),
  decodeMs: fc.oneof(fc.constant(0), fc.double({ min: 1e-3, max: 1e5, noNaN: true })),
}, { requiredKeys: ['family', 'policy', 'tokens', 'decodeMs'] });

/** A small hand-made trace: three generated tokens of a Huginn-style exit(kl) run. */
export function sampleRun(texts: string[] = ['Hello', ' world', '!']): RunTrace {
  return {
    family: 'huginn',
    model: 'spec/golden/huginn/tiny',
    policy: 'exit(kl, 0.001)',
    sampling: { temperature: 0, topK: null, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0 },
    decodeMs: 150,
    tokens: texts.map((text, i) => {
      const steps = [2, 4, 3][i % 3];
      return {
        id: 100 + i,
        text,
        steps,
        maxSteps: 4,
        exitReason: steps === 4 ? 'cap' : 'criterion',
        criterion: 'kl',
        threshold: 0.001,
        // a criterion exit ends below the threshold; a capped token never got there
        criterionValues: Array.from({ length: steps }, (_, s) => (steps === 4 ? 0.5 / (s + 1) : s === steps - 1 ? 1e-4 : 0.5 / 10 ** s)),
        routerScores: [],
        flops: 1000 * steps,
        kvBytes: 4096 * (i + 1),
      };
    }),
  };
}
