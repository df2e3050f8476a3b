/**
 * model.score: teacher-forced scoring one token per call. It replays what generate computes (a
 * greedy generation scored gives the same depths, exit reasons, criterion values and FLOPs per
 * position, and each position's argmax is the id generated next), its log-probabilities are those
 * of an uncached forward over the prefix, windows are independent sequences that score every id
 * but the first once, the totals are the sums of the chunks, and aborting or bad arguments give
 * their typed errors before or instead of a partial result.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, exit, fixed, router, budget, describePolicy, type Model, type DepthPolicy, type ScoreChunk } from '../src/node/index.js';
import { isPonderError } from '../src/errors.js';

const models = new Map<string, Model>();
async function model(name: string): Promise<Model> {
  if (!models.has(name)) models.set(name, await loadModel(`models/${name}`));
  return models.get(name)!;
}

const PROMPT = 'The Congress of the United States';

/** Each family's trained model with a fixed depth and its adaptive rule (real compute skipped). */
const CASES: Array<[string, DepthPolicy[]]> = [
  ['huginn-sotu', [fixed(2), exit('latent-diff', 0.05), exit('kl', 0.01)]],
  ['ouro-sotu', [fixed(3), exit('gate', 0.5), exit('kl', 0.01)]],
  ['mor-sotu', [fixed(2), router('causal', 0.5), exit('kl', 0.01)]],
];

async function chunks(m: Model, ids: readonly number[], options: Parameters<Model['score']>[1]): Promise<ScoreChunk[]> {
  const out: ScoreChunk[] = [];
  for await (const c of m.score(ids, options)) out.push(c);
  return out;
}

function logSoftmaxAt(logits: Float32Array, id: number): number {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  return logits[id] - max - Math.log(sum);
}

for (const [name, policies] of CASES) {
  for (const policy of policies) {
    test(`${name}, ${describePolicy(policy)}: scoring a greedy generation replays its depths, exit reasons, criterion values and FLOPs, and each argmax is the next generated id`, async () => {
      const m = await model(name);
      const g = await m.generate(PROMPT, { maxNewTokens: 20, policy, sampling: { temperature: 0 } }).result();
      // a multi-token prompt is one prefill call in generate: replay from a one-token prompt so every position is its own call
      const one = await m.generate(g.ids.slice(0, 1), { maxNewTokens: 24, policy, sampling: { temperature: 0 } }).result();
      const ids = one.ids;
      const [chunk] = await chunks(m, ids, { policy });
      assert.equal(chunk.tokens.length, ids.length - 1);
      for (let i = 0; i < ids.length - 1; i++) {
        const want = one.trace.tokens[i], got = chunk.tokens[i];
        assert.deepEqual([got.id, got.phase, got.steps, got.maxSteps, got.exitReason, got.criterionValues, got.routerScores, got.flops],
          [want.id, want.phase, want.steps, want.maxSteps, want.exitReason, want.criterionValues, want.routerScores, want.flops], `position ${i}`);
        assert.equal(chunk.argmax[i], ids[i + 1], `position ${i}: greedy picked the argmax`);
        assert.ok(chunk.logProbs[i] <= 0 && chunk.logProbs[i] > -Infinity);
      }
    });
  }
  test(`${name}: under a fixed depth each log-probability is the log-softmax of an uncached forward over the prefix`, async () => {
    const m = await model(name);
    const ids = m.encode(PROMPT + ' and the people');
    const policy = policies[0];
    const all = await chunks(m, ids, { policy, window: 4 });
    for (const c of all) {
      for (let i = 0; i < c.ids.length; i++) {
        const f = m.forward(ids.slice(c.start, c.start + i + 1), { policy });
        assert.ok(Math.abs(c.logProbs[i] - logSoftmaxAt(f.logits, c.targets[i])) < 1e-4, `window ${c.window} position ${i}`);
      }
    }
  });
}

test('windows are independent sequences that score every id but the first exactly once', async () => {
  const m = await model('huginn-sotu');
  const ids = m.encode('Fellow-Citizens of the Senate and House of Representatives: the state of the Union is strong.');
  const W = 5;
  const windowed = await chunks(m, ids, { policy: exit('latent-diff', 0.05), window: W });
  assert.equal(windowed.length, Math.ceil((ids.length - 1) / W));
  assert.deepEqual(windowed.flatMap((c) => c.targets), ids.slice(1));
  assert.deepEqual(windowed.flatMap((c) => c.ids), ids.slice(0, -1));
  for (const c of windowed) {
    assert.equal(c.start, c.window * W);
    const [alone] = await chunks(m, ids.slice(c.start, c.start + c.ids.length + 1), { policy: exit('latent-diff', 0.05) });
    assert.deepEqual([...c.logProbs], [...alone.logProbs], `window ${c.window}`);
    assert.deepEqual(c.tokens.map((t) => t.steps), alone.tokens.map((t) => t.steps));
    assert.equal(c.tokens[0].phase, 'prefill');
    assert.ok(c.tokens.slice(1).every((t) => t.phase === 'decode'));
  }
});

test('the totals are the sums over the chunks, and progress reaches every position', async () => {
  const m = await model('ouro-sotu');
  const ids = m.encode('It is with deep concern I am now to inform you that the favorable prospect has been over-clouded.');
  const progress: number[] = [];
  const scoring = m.score(ids, { policy: exit('gate', 0.4), window: 7, onProgress: (p) => { assert.equal(p.positionsTotal, ids.length - 1); progress.push(p.positionsDone); } });
  let nats = 0, steps = 0, flops = 0, top1 = 0, n = 0, minDepth = Infinity, maxDepth = 0;
  const reasons: Record<string, number> = {};
  for await (const c of scoring) {
    c.logProbs.forEach((lp, i) => { nats -= lp; if (c.argmax[i] === c.targets[i]) top1++; });
    for (const t of c.tokens) { steps += t.steps; flops += t.flops; n++; minDepth = Math.min(minDepth, t.steps); maxDepth = Math.max(maxDepth, t.steps); reasons[t.exitReason] = (reasons[t.exitReason] ?? 0) + 1; }
  }
  const s = await scoring.result();
  assert.equal(s.positions, n);
  assert.equal(s.windows, Math.ceil(n / 7));
  assert.ok(Math.abs(s.nats - nats) < 1e-9);
  assert.ok(Math.abs(s.bitsPerToken - nats / n / Math.LN2) < 1e-12);
  assert.ok(Math.abs(s.perplexity - Math.exp(nats / n)) < 1e-9 * s.perplexity);
  assert.equal(s.top1, top1 / n);
  assert.equal(s.meanDepth, steps / n);
  assert.deepEqual([s.stepsUsed, s.minDepth, s.maxDepth, s.flops, s.exitReasons], [steps, minDepth, maxDepth, flops, reasons]);
  assert.equal(s.policy, 'exit(gate, 0.4)');
  assert.deepEqual(progress, progress.slice().sort((a, b) => a - b));
  assert.equal(progress.at(-1), n);
  // result() without iterating gives the same totals
  const again = await m.score(ids, { policy: exit('gate', 0.4), window: 7 }).result();
  assert.equal(again.nats, s.nats);
});

test('a budget is spent by the decode positions of each window: each gets at most what is left (at least 1)', async () => {
  const m = await model('huginn-sotu');
  const ids = m.encode('The Congress of the United States and the people of the several States');
  for (const c of await chunks(m, ids, { policy: budget(12, fixed(3)), window: 8 })) {
    assert.equal(c.tokens[0].steps, 3, 'the first position starts the sequence, outside the budget');
    let spent = 0;
    for (const t of c.tokens.slice(1)) {
      assert.equal(t.steps, Math.min(3, Math.max(1, 12 - spent)), `window ${c.window}`);
      spent += t.steps;
    }
  }
});

test('aborting stops the scoring with ABORTED, never a partial result; the model scores normally afterwards', async () => {
  const m = await model('mor-sotu');
  const ids = m.encode('At the period of our last meeting I had the satisfaction of communicating an adjustment');
  const before = await m.score(ids, { window: 4 }).result();
  const controller = new AbortController();
  const scoring = m.score(ids, { window: 4, signal: controller.signal });
  let seen = 0;
  await assert.rejects(async () => { for await (const _c of scoring) { seen++; controller.abort(); } }, (e) => isPonderError(e) && e.code === 'ABORTED');
  assert.equal(seen, 1);
  await assert.rejects(scoring.result(), (e) => isPonderError(e) && e.code === 'ABORTED');
  const pre = new AbortController();
  pre.abort();
  await assert.rejects(m.score(ids, { signal: pre.signal }).result(), (e) => isPonderError(e) && e.code === 'ABORTED');
  // leaving the iteration early is no result either
  const left = m.score(ids, { window: 4 });
  for await (const _c of left) break;
  await assert.rejects(left.result(), (e) => isPonderError(e) && e.code === 'ABORTED');
  const after = await m.score(ids, { window: 4 }).result();
  assert.equal(after.nats, before.nats);
});

test('bad arguments are typed errors before any compute', async () => {
  const m = await model('huginn-sotu');
  const code = (f: () => unknown, c: string): void => assert.throws(f, (e) => isPonderError(e) && e.code === c, c);
  code(() => m.score([5]), 'GEN_EMPTY');
  code(() => m.score(''), 'GEN_EMPTY');
  code(() => m.score([1, 2, m.vocabSize]), 'GEN_TOKEN_ID');
  code(() => m.score([1, 2, 3], { window: 0 }), 'ARG_INVALID');
  code(() => m.score([1, 2, 3], { window: m.contextLength + 1 }), 'ARG_INVALID');
  code(() => m.score([1, 2, 3], { policy: router('causal', 0.5) }), 'ARG_POLICY');
  code(() => m.score([1, 2, 3], { seed: -1 }), 'ARG_INVALID');
  code(() => m.score([1, 2, 3], { signal: {} as AbortSignal }), 'ARG_INVALID');
  code(() => m.score(42 as unknown as number[]), 'ARG_INVALID');
  const noTokenizer = await loadModel('models/huginn-sotu', { tokenizer: false });
  code(() => noTokenizer.score('some text'), 'GEN_NO_TOKENIZER');
  code(() => (models.get('huginn-sotu')!).score([1, 2], { kvStrategy: 'frobnicate' }), 'HUGINN_CACHE_STRATEGY');
});
