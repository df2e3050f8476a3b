/**
 * The public API (src/api): streaming order, cancellation, seeded reproducibility, argument
 * validation before compute, and the upstream-exact policies reproducing upstream's generation
 * (golden greedy decodes for MoR and Ouro; Huginn's golden-tested generation loops).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadModel, exit, fixed, router } from '../src/node/index.js';
import { modelFromFiles } from '../src/api/load.js';
import { PonderError } from '../src/errors.js';
import { loadGoldenCase } from '../src/node/files.js';
import { intTensor } from '../src/conform/golden.js';
import { safetensorsWeights } from '../src/models/weights.js';
import { configObject } from '../src/format/config.js';
import { seededInitialStates } from '../src/models/huginn.js';
import { huginnFamily } from '../src/models/huginn-family.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';
import { generateAdaptive, generateMinimal } from '../src/models/huginn-generate.js';
import { createExitEvaluator } from '../src/depth/criteria.js';
import { detectFamily } from '../src/models/registry.js';
import { checkTrace } from '../src/trace/trace.js';

const FAMILIES = ['huginn', 'mor', 'ouro'] as const;
const models = Object.fromEntries(await Promise.all(FAMILIES.map(async (f) => [f, await loadModel(`models/demo-${f}`)] as const)));

function assertCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (e: unknown) => e instanceof PonderError && e.code === code, `expected ${code}`);
}

test('events stream in order, one per generated token, and agree with the result (every family)', async () => {
  for (const family of FAMILIES) {
    const model = models[family];
    const generation = model.generate('Hi there', { maxNewTokens: 6 });
    const events = [];
    for await (const event of generation) events.push(event);
    const result = await generation.result();
    assert.deepEqual(events.map((e) => e.index), [0, 1, 2, 3, 4, 5], family);
    assert.deepEqual(events.map((e) => e.id), result.generatedIds, family);
    assert.equal(events.map((e) => e.text).join(''), result.text, family);
    assert.equal(result.text, model.decode(result.generatedIds), `${family}: streamed text = one-shot decode`);
    assert.deepEqual(result.ids, [...result.promptIds, ...result.generatedIds]);
    const decodeTraces = result.trace.tokens.filter((t) => t.phase === 'decode');
    assert.deepEqual(decodeTraces.map((t) => t.id), result.generatedIds);
    assert.equal(result.trace.tokens.filter((t) => t.phase === 'prefill').length, result.promptIds.length);
    assert.equal(events.at(-1)!.finishReason, 'length');
    assert.ok(events.slice(0, -1).every((e) => e.finishReason === undefined));
    checkTrace(result.trace);
  }
});

test('aborting mid-generation ends the stream cleanly with the tokens so far, and the model stays usable', async () => {
  for (const family of FAMILIES) {
    const model = models[family];
    const full = await model.generate([1, 2, 3, 4], { maxNewTokens: 8 }).result();
    const controller = new AbortController();
    const generation = model.generate([1, 2, 3, 4], { maxNewTokens: 8, signal: controller.signal });
    const seen: number[] = [];
    for await (const event of generation) {
      seen.push(event.id);
      if (seen.length === 3) controller.abort();
    }
    const aborted = await generation.result();
    assert.equal(aborted.finishReason, 'aborted', family);
    assert.deepEqual(aborted.generatedIds, seen);
    assert.deepEqual(seen, full.generatedIds.slice(0, 3), `${family}: the tokens before the abort are the same as without it`);
    const again = await model.generate([1, 2, 3, 4], { maxNewTokens: 8 }).result();
    assert.deepEqual(again.generatedIds, full.generatedIds, `${family}: a generation after the abort succeeds and is unchanged`);
  }
});

test('two generations on one model, advanced alternately, each give what they give alone (every family)', async () => {
  for (const family of FAMILIES) {
    const model = models[family];
    const aloneA = await model.generate([3, 4, 5], { maxNewTokens: 5 }).result();
    const aloneB = await model.generate([9, 8], { maxNewTokens: 5, seed: 2, sampling: { temperature: 1 } }).result();
    const a = model.generate([3, 4, 5], { maxNewTokens: 5 })[Symbol.asyncIterator]();
    const b = model.generate([9, 8], { maxNewTokens: 5, seed: 2, sampling: { temperature: 1 } })[Symbol.asyncIterator]();
    const idsA: number[] = [], idsB: number[] = [];
    for (let k = 0; k < 5; k++) {
      idsA.push((await a.next()).value!.id);
      idsB.push((await b.next()).value!.id);
    }
    assert.deepEqual(idsA, aloneA.generatedIds, family);
    assert.deepEqual(idsB, aloneB.generatedIds, family);
  }
});

test('a signal aborted before the start yields no token; breaking out of the loop ends the generation as aborted', async () => {
  const model = models.ouro;
  const controller = new AbortController();
  controller.abort();
  const none = await model.generate([5, 6], { maxNewTokens: 4, signal: controller.signal }).result();
  assert.equal(none.finishReason, 'aborted');
  assert.deepEqual(none.generatedIds, []);
  const generation = model.generate([5, 6], { maxNewTokens: 10 });
  for await (const event of generation) if (event.index === 1) break;
  const r = await generation.result();
  assert.equal(r.finishReason, 'aborted');
  assert.equal(r.generatedIds.length, 2);
});

test('seeded sampling is reproducible on every family (same seed, same ids and depths)', async () => {
  for (const family of FAMILIES) {
    const model = models[family];
    const options = { maxNewTokens: 8, seed: 1234, sampling: { temperature: 1.3, topK: 40, topP: 0.95, repetitionPenalty: 1.1 } };
    const a = await model.generate('abc', options).result();
    const b = await model.generate('abc', options).result();
    assert.deepEqual(a.generatedIds, b.generatedIds, family);
    assert.deepEqual(a.trace.tokens.map((t) => t.steps), b.trace.tokens.map((t) => t.steps), family);
    assert.equal(a.trace.sampling!.seed, 1234);
  }
});

test('stop ids end generation on the id; stop strings never appear in the text', async () => {
  const model = models.huginn;
  const free = await model.generate('Hello', { maxNewTokens: 8 }).result();
  const stopAt = free.generatedIds[2];
  const first = free.generatedIds.indexOf(stopAt);
  const stopped = await model.generate('Hello', { maxNewTokens: 8, stopIds: [stopAt] }).result();
  assert.equal(stopped.finishReason, 'stop_id');
  assert.deepEqual(stopped.generatedIds, free.generatedIds.slice(0, first + 1));
  const piece = model.decode([stopAt]);
  const byString = await model.generate('Hello', { maxNewTokens: 8, stopStrings: [piece] }).result();
  assert.equal(byString.finishReason, 'stop_string');
  assert.ok(!byString.text.includes(piece));
});

test('bad arguments are typed errors before any compute: ids, context, empty prompt, no tokenizer, policy', async () => {
  const model = models.mor;
  assertCode(() => model.generate([1, model.vocabSize]), 'GEN_TOKEN_ID');
  assertCode(() => model.generate([1, -1]), 'GEN_TOKEN_ID');
  assertCode(() => model.generate([1, 2.5]), 'GEN_TOKEN_ID');
  assertCode(() => model.generate([]), 'GEN_EMPTY');
  assertCode(() => model.generate(new Array(model.contextLength + 1).fill(1)), 'GEN_CONTEXT');
  assertCode(() => model.generate([1], { maxNewTokens: -1 }), 'ARG_INVALID');
  assertCode(() => model.generate([1], { sampling: { temperature: -1 } }), 'ARG_INVALID');
  assertCode(() => model.generate([1], { policy: exit('gate', 0.5) }), 'ARG_POLICY');
  const idsOnly = await loadModel('models/demo-ouro', { tokenizer: false });
  assert.equal(idsOnly.tokenizer, null);
  assertCode(() => idsOnly.generate('text needs a tokenizer'), 'GEN_NO_TOKENIZER');
  const r = await idsOnly.generate([1, 2], { maxNewTokens: 2 }).result();
  assert.equal(r.text, '');
  assert.equal(r.generatedIds.length, 2);
});

test('generation stops at the context length with finishReason "context"', async () => {
  const model = models.mor;
  const prompt = new Array(model.contextLength - 2).fill(7);
  const r = await model.generate(prompt, { maxNewTokens: 10 }).result();
  assert.equal(r.finishReason, 'context');
  assert.equal(r.ids.length, model.contextLength);
});

test('the demo tokenizers round-trip text: any UTF-8 with 256 byte tokens (MoR, Ouro), ASCII with 128 (Huginn)', () => {
  for (const text of ['héllo wörld ✓ 🙂\n\ttab', 'plain ASCII, with punctuation!']) {
    assert.equal(models.mor.decode(models.mor.encode(text)), text);
    assert.equal(models.ouro.decode(models.ouro.encode(text)), text);
  }
  const ascii = 'The quick brown fox {jumps} over 13 lazy dogs.\n';
  assert.equal(models.huginn.decode(models.huginn.encode(ascii)), ascii);
  assert.ok(models.huginn.encode(ascii).every((id) => id < models.huginn.vocabSize));
});

test('family detection: MoR, Huginn and Ouro configs; an unknown model type names the supported ones', () => {
  for (const family of FAMILIES) {
    const config = JSON.parse(readFileSync(`models/demo-${family}/config.json`, 'utf8'));
    assert.equal(detectFamily(config), family);
  }
  assert.throws(() => detectFamily({ model_type: 'llama' }), (e: unknown) => e instanceof PonderError && e.code === 'CFG_MODEL_TYPE' && /ouro/.test(e.hint) && /llama/.test(e.message));
  assert.throws(() => detectFamily({ hidden_size: 3 }), (e: unknown) => e instanceof PonderError && e.code === 'CFG_MODEL_TYPE');
});

test('in-memory loading gives the same logits as the directory, reports progress up to the total, and honours an abort', async () => {
  const dir = 'models/demo-ouro';
  const files = { 'model.safetensors': new Uint8Array(readFileSync(`${dir}/model.safetensors`)) };
  const progress: number[][] = [];
  const memory = await loadModel({ config: readFileSync(`${dir}/config.json`, 'utf8'), files, tokenizer: readFileSync(`${dir}/tokenizer.json`, 'utf8') }, {
    onProgress: (p) => progress.push([p.bytesDone, p.bytesTotal]),
  });
  assert.ok(progress.length > 1);
  const last = progress.at(-1)!;
  assert.equal(last[0], last[1], 'progress ends at the total');
  assert.ok(progress.every(([d], i) => i === 0 || d >= progress[i - 1][0]), 'progress never goes back');
  const a = memory.forward([3, 1, 4, 1, 5]);
  const b = models.ouro.forward([3, 1, 4, 1, 5]);
  assert.deepEqual(a.logits, b.logits);
  for (const family of FAMILIES) {
    const fromDir: number[][] = [];
    await loadModel(`models/demo-${family}`, { onProgress: (p) => fromDir.push([p.bytesDone, p.bytesTotal]) });
    assert.deepEqual(fromDir.at(-1), [fromDir[0][1], fromDir[0][1]], `${family}: a directory load ends at its total`);
    assert.ok(fromDir.every(([d, t], i) => t === fromDir[0][1] && (i === 0 || d >= fromDir[i - 1][0])));
  }
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(loadModel(dir, { signal: controller.signal }), (e: unknown) => e instanceof PonderError && e.code === 'ABORTED');
  let reads = 0;
  const midway = new AbortController();
  await assert.rejects(loadModel({ config: readFileSync(`${dir}/config.json`, 'utf8'), files }, {
    onProgress: () => { if (++reads === 3) midway.abort(); }, signal: midway.signal,
  }), (e: unknown) => e instanceof PonderError && e.code === 'ABORTED');
});

test('URL loading fetches config, weights and tokenizer (fetch injected) and gives the same logits', async () => {
  const dir = 'models/demo-mor';
  const fakeFetch = (async (url: string) => {
    const name = String(url).slice('https://example.test/demo/'.length);
    try {
      return new Response(new Uint8Array(readFileSync(`${dir}/${name}`)));
    } catch {
      return new Response('not found', { status: 404 });
    }
  }) as unknown as typeof fetch;
  const model = await loadModel('https://example.test/demo', { fetch: fakeFetch });
  assert.equal(model.family, 'mor');
  assert.ok(model.tokenizer);
  assert.deepEqual(model.forward([9, 8, 7]).logits, models.mor.forward([9, 8, 7]).logits);
});

// ---- exact reproduction of upstream through the API ------------------------------------------

async function goldenModel(casePath: string, runtime?: Runtime) {
  const c = loadGoldenCase(casePath);
  const model = await modelFromFiles({ config: configObject(c.config, `${c.name}.json`), weights: safetensorsWeights([c.file], 'weights.', c.name), label: c.name }, { runtime });
  return { c, model };
}

test('default policies reproduce the golden greedy decodes: MoR expert- and token-choice (router upstream), Ouro (config read-out)', async () => {
  for (const [path, policy] of [
    ['spec/golden/mor/mor_expert_decode', router('upstream')],
    ['spec/golden/mor/mor_token_decode', undefined],
    ['spec/golden/ouro/decode_cached', undefined],
    ['spec/golden/ouro/decode_cached_threshold', exit('gate', 0.6, { mode: 'select' })],
  ] as const) {
    const { c, model } = await goldenModel(path);
    const prompt = intTensor(c, 'inputs.input_ids');
    const expected = intTensor(c, 'expected.decode.generated_ids');
    const r = await model.generate(prompt, { maxNewTokens: expected.length, stopIds: [], ...(policy ? { policy } : {}) }).result();
    assert.deepEqual(r.generatedIds, expected, path);
  }
});

test('Huginn through the API equals upstream generate_minimal (fixed depth) and generate_with_adaptive_compute (every criterion, several cache strategies)', async () => {
  const runtime = createScalarRuntime();
  const { c, model } = await goldenModel('spec/golden/huginn/adaptive_exits', runtime);
  // the same weights bound on their own on the same kernels (no reaching into the API's model)
  const huginn = huginnFamily.load(huginnFamily.parseConfig(configObject(c.config, c.name)), safetensorsWeights([c.file], 'weights.', c.name), runtime);
  const prompt = intTensor(c, 'inputs.input_ids').slice(0, 6);
  const n = 6;
  const api = await model.generate(prompt, { maxNewTokens: n, policy: fixed(5), seed: 11, stopIds: [] }).result();
  const minimal = generateMinimal(huginn, { inputIds: prompt, B: 1, maxNewTokens: n, numSteps: 5, initialStates: seededInitialStates(11), stopTokens: [] });
  assert.deepEqual(api.generatedIds, minimal.sequences[0].slice(prompt.length));
  for (const criterion of ['entropy-diff', 'latent-diff', 'kl', 'minp-kl', 'argmax-stability', 'cosine']) {
    const r = await model.generate(prompt, { maxNewTokens: n, policy: exit(criterion, 'auto'), seed: 3, stopIds: [] }).result();
    const ref = generateAdaptive(huginn, {
      inputIds: prompt, B: 1, maxNewTokens: n, evaluator: createExitEvaluator(criterion, 'auto', huginn.config.vocabSize),
      initialStates: seededInitialStates(3), stopTokens: [],
    });
    assert.deepEqual(r.generatedIds, ref.sequences[0].slice(prompt.length), criterion);
    // upstream's trace entry k is the call that produced token k: our prefill's last position, then decode token k−1
    const ours = [r.trace.tokens[prompt.length - 1], ...r.trace.tokens.filter((t) => t.phase === 'decode')].map((t) => t.steps).slice(0, n);
    assert.deepEqual(ours, ref.trace.map((t) => t.steps[0]), `${criterion}: steps per token`);
  }
  for (const strategy of ['latest-m4', 'available-m4', 'latest-m4-compress-s4', 'skip']) {
    const r = await model.generate(prompt, { maxNewTokens: n, policy: exit('kl', 1e-3), seed: 5, stopIds: [], kvStrategy: strategy }).result();
    const ref = generateAdaptive(huginn, {
      inputIds: prompt, B: 1, maxNewTokens: n, evaluator: createExitEvaluator('kl', 1e-3, huginn.config.vocabSize),
      initialStates: seededInitialStates(5), stopTokens: [], cacheLookupStrategy: strategy,
    });
    assert.deepEqual(r.generatedIds, ref.sequences[0].slice(prompt.length), strategy);
  }
});
