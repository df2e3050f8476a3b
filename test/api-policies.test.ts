/**
 * Depth policies on every family that claims them (spec/policies.md): each run's trace is valid,
 * its depths follow the policy, and the FLOPs it reports equal the FLOPs the kernels were actually
 * asked to do (counted by a kernel wrapper: 2·M·N·K per linear, 4·headDim·heads per visible
 * query-key pair). Unsupported combinations are ARG_POLICY before any compute.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { loadModel, budget, defaultDepth, depthFunction, exit, fixed, parsePolicy, router, type DepthPolicy, type Model, type StepSummary } from '../src/node/index.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';
import type { Kernels } from '../src/kernels/kernels.js';
import { PonderError } from '../src/errors.js';
import { ouroFamily } from '../src/models/ouro-family.js';
import { openModelDir } from '../src/node/model-dir.js';
import { checkTrace, type TokenTrace } from '../src/trace/trace.js';

/** A scalar runtime whose linear and attention kernels add up the work they do. */
function countingRuntime(): { runtime: Runtime; counter: { flops: number } } {
  const base = createScalarRuntime();
  const counter = { flops: 0 };
  const k = base.kernels;
  const kernels: Kernels = {
    ...k,
    linear: (y, x, w, M, bias) => { counter.flops += 2 * M * w.N * w.K; k.linear(y, x, w, M, bias); },
    attention: (out, q, keys, v, Tq, Tk, nHeads, nKvHeads, headDim, scale, qPos, kPos, allowed) => {
      let pairs = 0;
      for (let i = 0; i < Tq; i++) {
        for (let j = 0; j < Tk; j++) {
          if (qPos && kPos && kPos[j] > qPos[i]) continue;
          if (allowed && !allowed[i * Tk + j]) continue;
          pairs++;
        }
      }
      counter.flops += 4 * headDim * nHeads * pairs;
      k.attention(out, q, keys, v, Tq, Tk, nHeads, nKvHeads, headDim, scale, qPos, kPos, allowed);
    },
  };
  return { runtime: { kernels, arena: base.arena }, counter };
}

const counted = await Promise.all((['huginn', 'mor', 'ouro'] as const).map(async (family) => {
  const { runtime, counter } = countingRuntime();
  return [family, { model: await loadModel(`models/demo-${family}`, { runtime }), counter }] as const;
}));
const MODELS = Object.fromEntries(counted) as Record<'huginn' | 'mor' | 'ouro', { model: Model; counter: { flops: number } }>;

const PROMPT = [10, 20, 30, 40, 50];
const NEW = 6;

async function runCounted(family: 'huginn' | 'mor' | 'ouro', policy: DepthPolicy, kvStrategy?: string) {
  const { model, counter } = MODELS[family];
  counter.flops = 0;
  const result = await model.generate(PROMPT, { maxNewTokens: NEW, policy, stopIds: [], kvStrategy }).result();
  checkTrace(result.trace);
  assert.equal(result.summary.flops, counter.flops, `${family} ${result.trace.policy}: trace FLOPs = FLOPs the kernels did`);
  for (const t of result.trace.tokens) assert.ok(t.steps >= 1 && t.steps <= t.maxSteps && t.kvBytes > 0 && t.flops > 0);
  return result;
}

const decodeTokens = (tokens: TokenTrace[]): TokenTrace[] => tokens.filter((t) => t.phase === 'decode');

test('fixed(n): every token runs n steps (Huginn any n, Ouro 1..total_ut_steps, expert-choice MoR 1..num_recursion)', async () => {
  for (const n of [1, 3, 7]) {
    const r = await runCounted('huginn', fixed(n));
    assert.ok(r.trace.tokens.every((t) => t.steps === n && t.maxSteps === n && t.exitReason === 'fixed'));
  }
  const T = MODELS.ouro.model.defaultDepth;
  for (let n = 1; n <= T; n++) {
    const r = await runCounted('ouro', fixed(n));
    assert.ok(r.trace.tokens.every((t) => t.steps === n && t.exitReason === 'fixed'), `ouro fixed(${n})`);
  }
  assert.throws(() => MODELS.ouro.model.checkPolicy(fixed(T + 1)), isPolicyError);
  for (let n = 1; n <= MODELS.mor.model.defaultDepth; n++) {
    const r = await runCounted('mor', fixed(n)); // expert choice: our per-recursion hook replaces the routers
    assert.ok(r.trace.tokens.every((t) => t.steps === n && t.exitReason === 'fixed'), `mor fixed(${n})`);
  }
  assert.throws(() => MODELS.mor.model.checkPolicy(fixed(MODELS.mor.model.defaultDepth + 1)), isPolicyError);
});

test('Huginn exit(criterion, threshold): a token stops at the first check that crosses, or at the cap; values are recorded per step', async () => {
  const lessIsExit = new Set(['entropy-diff', 'latent-diff', 'kl', 'minp-kl', 'cosine']);
  for (const [criterion, threshold] of [['entropy-diff', 1e-3], ['latent-diff', 0.03], ['kl', 5e-4], ['minp-kl', 1e-5], ['cosine', 1e-3], ['argmax-stability', 3]] as const) {
    const r = await runCounted('huginn', exit(criterion, threshold));
    for (const t of r.trace.tokens) {
      assert.equal(t.criterion, criterion);
      assert.equal(t.criterionValues.length, t.steps);
      if (t.exitReason === 'criterion' && lessIsExit.has(criterion)) assert.ok((t.criterionValues[t.steps - 1] as number) < threshold, `${criterion}: the last check crossed`);
      if (t.exitReason === 'cap') assert.equal(t.steps, t.maxSteps);
      if (lessIsExit.has(criterion) && criterion !== 'entropy-diff' && criterion !== 'latent-diff') {
        // earlier checks did not cross (entropy-diff / latent-diff compare with the previous check, which NaN may hide)
        for (let s = 0; s < t.steps - 1; s++) { const v = t.criterionValues[s]; if (v !== null && Number.isFinite(v)) assert.ok(!(v < threshold), `${criterion} step ${s + 1}`); }
      }
    }
  }
  const sparse = await runCounted('huginn', exit('kl', 1e-4, { minSteps: 2, checkEvery: 3 }));
  for (const t of sparse.trace.tokens) {
    t.criterionValues.forEach((v, s) => assert.equal(v !== null, s >= 2 && (s - 2) % 3 === 0, `step ${s + 1} checked iff min/every say so`));
  }
});

test('exit thresholds are monotone: a looser KL threshold never uses more steps on the first generated token', async () => {
  const { model } = MODELS.huginn;
  await fc.assert(fc.asyncProperty(fc.double({ min: 1e-6, max: 1e-1, noNaN: true }), fc.double({ min: 1, max: 100, noNaN: true }), async (tight, factor) => {
    const loose = Math.min(tight * factor, 1);
    const a = model.forward(PROMPT, { policy: exit('kl', tight) }).trace.tokens[0].steps;
    const b = model.forward(PROMPT, { policy: exit('kl', loose) }).trace.tokens[0].steps;
    assert.ok(b <= a, `kl ${loose} used ${b} steps, kl ${tight} used ${a}`);
  }), { numRuns: 12 });
});

test('Ouro exit(gate, threshold): skip runs loops up to the exit; select runs every loop and reads out at the same exit (upstream)', async () => {
  const T = MODELS.ouro.model.defaultDepth;
  for (const threshold of [0.2, 0.5, 0.9]) {
    const skip = await runCounted('ouro', exit('gate', threshold));
    const select = await runCounted('ouro', exit('gate', threshold, { mode: 'select' }));
    for (const t of [...skip.trace.tokens, ...select.trace.tokens]) {
      assert.equal(t.criterion, 'gate');
      const cdf = t.criterionValues as number[];
      const crossed = cdf.findIndex((v) => v >= Math.fround(threshold));
      if (t.exitReason === 'criterion') assert.ok(crossed >= 0);
    }
    for (const t of skip.trace.tokens) {
      const cdf = t.criterionValues as number[];
      assert.equal(cdf.length, t.steps);
      const crossed = cdf.findIndex((v) => v >= Math.fround(threshold));
      assert.equal(t.steps, crossed === -1 ? T : crossed + 1, 'skip mode stops at the first loop whose CDF reaches the threshold');
    }
    assert.ok(select.trace.tokens.every((t) => t.steps === T), 'select mode computes every loop');
    assert.equal(select.summary.flops >= skip.summary.flops, true);
  }
});

test('MoR router(causal, t): a token runs recursion r+1 iff its router passed every earlier step; router(upstream) reports the routers\' choices', async () => {
  for (const threshold of [0.3, 0.5, 0.52, 0.7]) {
    const r = await runCounted('mor', router('causal', threshold));
    for (const t of r.trace.tokens) {
      assert.equal(t.exitReason, 'router');
      const R = t.maxSteps;
      const scored = t.routerScores.filter((v) => v !== null).length;
      assert.equal(scored, Math.min(t.steps + 1, R), 'scored at every step it reached, and at the one that stopped it');
      // a step of capacity 1 (the first, here) runs every token; a later step ran because its score passed
      for (let s = 1; s < t.steps; s++) assert.ok((t.routerScores[s] as number) >= threshold);
      if (t.steps < R) assert.ok((t.routerScores[t.steps] as number) < threshold, 'the step that stopped it scored below the threshold');
    }
  }
  const upstream = await runCounted('mor', router('upstream'));
  assert.ok(upstream.trace.tokens.every((t) => t.exitReason === 'router' && t.routerScores.length === t.maxSteps));
  const byDefault = await runCounted('mor', defaultDepth());
  assert.deepEqual(byDefault.generatedIds, upstream.generatedIds, 'default = router(upstream)');
});

test('budget(n): generated tokens spend at most the remaining budget (at least one step each); Huginn, Ouro, expert-choice MoR', async () => {
  for (const [family, policy] of [
    ['huginn', budget(20)], ['huginn', budget(30, exit('kl', 1e-4))], ['huginn', budget(9, fixed(4))],
    ['ouro', budget(10)], ['ouro', budget(7, fixed(3))], ['ouro', budget(9, exit('kl', 0.3))],
    ['mor', budget(8)], ['mor', budget(9, exit('kl', 1e-3))],
  ] as const) {
    const r = await runCounted(family, policy);
    const b = policy.kind === 'budget' ? policy.maxStepsPerSequence : 0;
    let spent = 0;
    for (const t of decodeTokens(r.trace.tokens)) {
      const left = Math.max(1, b - spent);
      assert.ok(t.steps <= left, `${family} ${r.trace.policy}: ${t.steps} steps with ${left} left`);
      if (t.exitReason === 'budget') assert.equal(t.steps, left);
      spent += t.steps;
    }
    assert.ok(spent <= b + decodeTokens(r.trace.tokens).length, 'overspend only by the one step each token always gets');
  }
});

test('a depth function decides after every step; Huginn gives it the step, the latent change and lazy logits', async () => {
  const calls: number[] = [];
  const stopAt3 = depthFunction((step: number) => { calls.push(step); return step >= 3 ? 'stop' : 'continue'; }, { name: 'three' });
  const r = await runCounted('huginn', stopAt3);
  assert.ok(r.trace.tokens.every((t) => t.steps === 3 && t.exitReason === 'policy'));
  assert.equal(r.trace.policy, 'function(three)');
  assert.deepEqual(calls.slice(0, 3), [1, 2, 3]);
  const seen: StepSummary[] = [];
  const byLogits = depthFunction((step, state) => {
    seen.push({ ...state });
    const logits = state.logits();
    assert.equal(logits.length, MODELS.huginn.model.vocabSize);
    return step < 2;
  });
  const r2 = await runCounted('huginn', byLogits);
  assert.ok(r2.trace.tokens.every((t) => t.steps === 2));
  assert.ok(seen.every((s) => s.maxSteps === MODELS.huginn.model.defaultDepth && (Number.isFinite(s.latentChange) || Number.isNaN(s.latentChange))));
});

test('Ouro with Huginn criteria and depth functions (our extension): a token stops looping at the first crossing, with real compute skipped', async () => {
  const T = MODELS.ouro.model.defaultDepth;
  for (const [criterion, threshold] of [['kl', 0.3], ['kl', 0.45], ['latent-diff', 0.8], ['cosine', 0.3]] as const) {
    const r = await runCounted('ouro', exit(criterion, threshold));
    let exits = 0;
    for (const t of r.trace.tokens) {
      assert.equal(t.criterion, criterion);
      const checked = t.criterionValues.slice(0, t.steps);
      const firstCrossing = checked.findIndex((v) => v !== null && v < threshold);
      if (t.exitReason === 'criterion') { exits++; assert.equal(t.steps - 1, firstCrossing, `${criterion}: stopped at the first crossing`); }
      else { assert.equal(t.exitReason, 'cap'); assert.equal(t.steps, T); assert.equal(firstCrossing, -1); }
    }
    if (criterion === 'kl' && threshold === 0.45) assert.ok(exits > 0, 'a loose KL threshold exits somewhere on the demo model');
  }
  const seen: number[] = [];
  const r = await runCounted('ouro', depthFunction((step, state) => { seen.push(step); assert.equal(state.logits().length, MODELS.ouro.model.vocabSize); return step < 2 ? 'continue' : 'stop'; }));
  assert.ok(r.trace.tokens.every((t) => t.steps === 2 && t.exitReason === 'policy'));
  assert.equal(seen.length, 2 * r.trace.tokens.length, 'asked after loops 1 and 2 of every token');
  assert.equal(seen.filter((s) => s === 1).length, r.trace.tokens.length);
});

test('expert-choice MoR with exit criteria and depth functions (our extension): recursions stop at the first crossing of the early read-out', async () => {
  const R = MODELS.mor.model.defaultDepth;
  for (const [criterion, threshold] of [['kl', 0.05], ['kl', 1e-3], ['latent-diff', 0.05], ['entropy-diff', 0.01]] as const) {
    const r = await runCounted('mor', exit(criterion, threshold));
    for (const t of r.trace.tokens) {
      assert.equal(t.criterion, criterion);
      const firstCrossing = t.criterionValues.findIndex((v) => v !== null && v < threshold);
      if (t.exitReason === 'criterion') assert.equal(t.steps - 1, firstCrossing, `${criterion}: stopped after the recursion whose check crossed`);
      else { assert.equal(t.exitReason, 'cap'); assert.equal(t.steps, R); assert.equal(firstCrossing, -1); }
    }
  }
  const r = await runCounted('mor', depthFunction((step, state) => { assert.equal(state.logits().length, MODELS.mor.model.vocabSize); return step < 2; }));
  assert.ok(r.trace.tokens.every((t) => t.steps === 2 && t.exitReason === 'policy'));
});

test('Ouro fixed(n) gives upstream exit_at_step = n − 1 logits while skipping the later loops', async () => {
  const { model } = MODELS.ouro;
  // the demo's weights bound on their own (no reaching into the API's model)
  const dir = openModelDir('models/demo-ouro');
  const ouro = ouroFamily.load(ouroFamily.parseConfig(dir.config!), dir.weights, createScalarRuntime());
  const T = model.defaultDepth;
  for (let n = 1; n <= T; n++) {
    const ours = model.forward(PROMPT, { policy: fixed(n) });
    const upstream = ouro.forward(PROMPT, { exitAtStep: n - 1, logitsToKeep: 1 }); // select mode: every loop computed
    assert.deepEqual(ours.logits, upstream.logits.slice(0, model.vocabSize), `fixed(${n})`);
    assert.ok(ours.trace.tokens.every((t) => t.steps === n));
  }
});

test('KV strategies: Huginn lookups and compression, Ouro copy-forward / exclude; FLOPs still equal the kernels\' and compression holds fewer bytes', async () => {
  const peak = (r: { trace: { tokens: TokenTrace[] } }): number => Math.max(...r.trace.tokens.map((t) => t.kvBytes));
  const full = await runCounted('huginn', exit('kl', 1e-3), 'full');
  for (const strategy of ['skip', 'latest-m4', 'available-m4', 'always-last-m4', 'latest-m4-compress-s4', 'latest-m4-compress-r4', 'full-compress-anchor']) {
    const r = await runCounted('huginn', exit('kl', 1e-3), strategy);
    if (strategy.includes('compress')) assert.ok(peak(r) < peak(full), `${strategy} holds fewer KV bytes than full`);
  }
  for (const missing of ['copy-forward', 'exclude']) await runCounted('ouro', exit('gate', 0.4), missing);
  await assert.rejects(async () => MODELS.huginn.model.generate(PROMPT, { kvStrategy: 'newest' }), (e: unknown) => e instanceof PonderError && e.code === 'HUGINN_CACHE_STRATEGY');
  await assert.rejects(async () => MODELS.ouro.model.generate(PROMPT, { kvStrategy: 'full' }), (e: unknown) => e instanceof PonderError && e.code === 'ARG_INVALID');
  await assert.rejects(async () => MODELS.mor.model.generate(PROMPT, { kvStrategy: 'full' }), (e: unknown) => e instanceof PonderError && e.code === 'ARG_INVALID');
});

function isPolicyError(e: unknown): boolean {
  return e instanceof PonderError && e.code === 'ARG_POLICY' && e.hint.length > 0;
}

test('unsupported family/policy combinations are ARG_POLICY naming what the family supports, before any compute', () => {
  const cases: [keyof typeof MODELS, DepthPolicy][] = [
    ['huginn', router('causal', 0.5)], ['huginn', exit('gate', 0.5)], ['huginn', exit('no-such-criterion', 1)],
    ['ouro', router('upstream')], ['ouro', exit('no-such-criterion', 1)], ['ouro', exit('kl', 1e-3, { mode: 'select' })], ['ouro', budget(5, exit('gate', 0.5))],
    ['mor', exit('gate', 0.5)], ['mor', exit('kl', 1e-3, { mode: 'select' })], ['mor', budget(10, router('causal', 0.5))], ['mor', fixed(4)],
  ];
  for (const [family, policy] of cases) {
    const { model, counter } = MODELS[family];
    counter.flops = 0;
    assert.throws(() => model.generate(PROMPT, { policy }), isPolicyError, `${family} ${JSON.stringify(policy)}`);
    assert.equal(counter.flops, 0, 'nothing ran');
  }
  assert.throws(() => fixed(0), isPolicyError);
  assert.throws(() => router('upstream', 0.5), isPolicyError);
  assert.throws(() => budget(-1), isPolicyError);
});

test('parsePolicy reads the CLI spelling and describePolicy writes it back', () => {
  assert.deepEqual(parsePolicy('fixed(8)'), fixed(8));
  assert.deepEqual(parsePolicy('fixed:8'), fixed(8));
  assert.deepEqual(parsePolicy('router'), router('upstream'));
  assert.deepEqual(parsePolicy('router(causal)', 0.3), router('causal', 0.3));
  assert.deepEqual(parsePolicy('router(causal, 0.7)'), router('causal', 0.7));
  assert.deepEqual(parsePolicy('exit(kl, 5e-4)'), exit('kl', 5e-4));
  assert.deepEqual(parsePolicy('exit(kl)', 1e-3), exit('kl', 1e-3));
  assert.deepEqual(parsePolicy('exit(gate, 0.5, select)'), exit('gate', 0.5, { mode: 'select' }));
  assert.deepEqual(parsePolicy('budget(64, exit(kl, auto))'), budget(64, exit('kl', 'auto')));
  for (const bad of ['', 'fixed', 'fixed(x)', 'warp(3)', 'exit()', 'router(sideways)', 'budget()']) assert.throws(() => parsePolicy(bad), isPolicyError, bad);
});
