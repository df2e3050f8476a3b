/**
 * Model.chat and chat sessions (spec/api.md §Chat): the default stop ids and where each comes
 * from, the rendered prompt encoded as transformers encodes it, the end-of-turn stop, and sessions:
 * a turn whose prompt extends what the cache holds feeds only the rest and computes what one prefill
 * of the same ids computes (where the family continues a cache); every other turn falls back to a
 * full prefill and computes exactly that. Models: a scripted Ouro (test/chat-fixture.ts) and small
 * random Ouro, Huginn and MoR models with tokenizers and templates built like the checkpoints'.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, createWasmRuntime, fixed, router, exit, PonderError, type Model, type ChatOptions, type GenerationResult } from '../src/node/index.js';
import { writeSafetensors } from '../src/format/safetensors.js';
import { loadTokenizer, type TextTokenizer } from '../src/tokenizer.js';
import type { WeightSource } from '../src/models/weights.js';
import { GREETER, QWEN2, QWEN2_TOKENIZER, fixtureTokenizerConfig, safetensorsBytes, scriptedOuro } from './chat-fixture.js';
import { smallConfigJson, smallWeights } from './ouro-fixture.js';
import { ouroConfigFromJson } from '../src/models/ouro-config.js';
import { randomWeights, tinyConfig } from './huginn-fixture.js';
import { makeFixture } from './mor-fixture.js';
import type { Runtime } from '../src/runtime/runtime.js';

/**
 * A fixture tokenizer with every id below `size` decodable: the ids it lacks become plain vocabulary
 * entries "<unusedN>" (never produced by encoding), so a random model can sample any id of its
 * vocabulary and the text stream can still decode it.
 */
async function covering(path: string, size: number): Promise<TextTokenizer> {
  const json = JSON.parse(readFileSync(path, 'utf8')) as { model: { vocab: Record<string, number> }; added_tokens: { id: number }[] };
  const used = new Set([...Object.values(json.model.vocab), ...json.added_tokens.map((t) => t.id)]);
  for (let id = 0; id < size; id++) if (!used.has(id)) json.model.vocab[`<unused${id}>`] = id;
  return loadTokenizer(JSON.stringify(json));
}
const QWEN_JSON = readFileSync(QWEN2_TOKENIZER, 'utf8');
const QWEN_512 = await covering(QWEN2_TOKENIZER, 512);
const HUGINN_65536 = await covering('test/fixtures/tokenizer-huginn-style.json', 65536);
const isCode = (code: string) => (e: unknown): boolean => e instanceof PonderError && e.code === code;

function sourceBytes(source: WeightSource): Uint8Array {
  return writeSafetensors(source.names().map((name) => {
    const info = source.info(name)!;
    return { name, dtype: info.dtype, shape: info.shape, data: source.read(name) as ArrayBufferView };
  }));
}

const tokenizerConfig = (fixture: string, edit: (c: Record<string, unknown>) => void = () => {}): string => {
  const c = fixtureTokenizerConfig(fixture);
  edit(c);
  return JSON.stringify(c);
};

function ouro(template: string, seed = 5, runtime?: Runtime): Promise<Model> {
  const config = { ...smallConfigJson({ vocab: 512, hidden: 16, inter: 32, layers: 2, heads: 2, kvHeads: 1, headDim: 8, loops: 4, seed, gateBias: 0 }), max_position_embeddings: 1024, model_type: 'ouro' };
  const tensors = smallWeights(ouroConfigFromJson(config), seed, 0);
  return loadModel({ config, files: { 'model.safetensors': safetensorsBytes(tensors) }, tokenizer: QWEN_512, tokenizerConfig: tokenizerConfig(template), label: `ouro-${template}`, ...(runtime ? { runtime } : {}) });
}

function scripted(template = 'chatml-default-system'): Promise<Model> {
  const { config, tensors } = scriptedOuro(GREETER, { vocab: 512, bosEosId: QWEN2.endoftext });
  return loadModel({ config, files: { 'model.safetensors': safetensorsBytes(tensors) }, tokenizer: QWEN_JSON, tokenizerConfig: tokenizerConfig(template), label: `scripted-${template}` });
}

function huginn(generationConfig?: Record<string, unknown>): Promise<Model> {
  const config = tinyConfig({ E: 16, H: 2, P: 1, R: 1, C: 1, V: 65536, I: 32, meanRecurrence: 4, blockSize: 1024 });
  return loadModel({
    config, files: { 'model.safetensors': sourceBytes(randomWeights(config, 7)) }, tokenizer: HUGINN_65536,
    tokenizerConfig: tokenizerConfig('huginn-headers'), ...(generationConfig ? { generationConfig } : {}), label: 'huginn-headers',
  });
}

function mor(variant: 'expert' | 'token', edit: (cfg: Record<string, unknown>) => void = () => {}): Promise<Model> {
  const fx = makeFixture({ variant, vocab: 512, hidden: 16, heads: 2, kvHeads: 1, headDim: 8, intermediate: 24, seed: 11 });
  (fx.config.model_config as Record<string, unknown>).max_position_embeddings = 1024;
  edit(fx.config);
  return loadModel({ config: fx.config, files: { 'model.safetensors': safetensorsBytes(fx.tensors) }, tokenizer: QWEN_512, tokenizerConfig: tokenizerConfig('chatml-default-system'), label: `mor-${variant}` });
}

/** What one prefill of the turn's prompt ids (model.generate) computes, with the chat's stops. */
async function fullPrefill(model: Model, turn: GenerationResult, options: ChatOptions = {}): Promise<GenerationResult> {
  const { templateKwargs: _k, ...generate } = options;
  return model.generate(turn.promptIds, { ...generate, stopIds: model.stopIds({ chat: true }).map((s) => s.id) }).result();
}

const decodeSteps = (r: GenerationResult): number[] => r.trace.tokens.filter((t) => t.phase === 'decode').map((t) => t.steps);

test('stop ids name their sources: generation_config eos (an id or a list) or, without that file, config.json eos; Huginn\'s upstream stops inside the vocabulary; chat adds the template end of turn and the tokenizer eos', async () => {
  const h = await huginn({ eos_token_id: [65505, 65508] });
  assert.deepEqual(h.stopIds(), [
    { id: 65505, token: '<|end_text|>', sources: ['generation_config.json eos_token_id', 'Huginn upstream: generation always stops on it (_get_stops)'] },
    { id: 65508, token: '<|end_turn|>', sources: ['generation_config.json eos_token_id', 'Huginn upstream: generation always stops on it (_get_stops)'] },
    { id: 65504, token: '<|begin_text|>', sources: ['Huginn upstream: generation always stops on it (_get_stops)'] },
  ]);
  assert.equal(h.assistantRole, 'Huginn');
  const chat = h.stopIds({ chat: true });
  assert.deepEqual(chat.find((s) => s.id === 65508)!.sources.at(-1), 'chat template: ends an answer');
  assert.deepEqual(chat.find((s) => s.id === 65505)!.sources.at(-1), 'tokenizer eos_token');
  assert.deepEqual((await huginn({ eos_token_id: 7 })).stopIds().map((s) => [s.id, s.sources[0]]), [[7, 'generation_config.json eos_token_id'], [65504, 'Huginn upstream: generation always stops on it (_get_stops)'], [65505, 'Huginn upstream: generation always stops on it (_get_stops)'], [65508, 'Huginn upstream: generation always stops on it (_get_stops)']]);

  const demoHuginn = await loadModel('models/demo-huginn');
  assert.deepEqual(demoHuginn.stopIds(), [], 'vocab 128: the built-in ids cannot be generated, and there is no eos');
  const demoOuro = await loadModel('models/demo-ouro');
  assert.deepEqual(demoOuro.stopIds(), [{ id: 2, token: '\u0002', sources: ['config.json eos_token_id'] }]);
  const withFile = await loadModel({ config: readFileSync('models/demo-ouro/config.json', 'utf8'), files: { 'model.safetensors': new Uint8Array(readFileSync('models/demo-ouro/model.safetensors')) }, generationConfig: { do_sample: false } });
  assert.deepEqual(withFile.stopIds(), [], 'a generation_config.json without eos_token_id: transformers does not fall back to config.json');

  const chatml = await scripted();
  assert.equal(chatml.assistantRole, 'assistant');
  assert.deepEqual(chatml.stopIds({ chat: true }), [
    { id: QWEN2.endoftext, token: '<|endoftext|>', sources: ['config.json eos_token_id'] },
    { id: QWEN2.imEnd, token: '<|im_end|>', sources: ['chat template: ends an answer', 'tokenizer eos_token'] },
  ]);
});

test('chat renders the template, encodes it without special tokens (the template writes them), and ends on the end-of-turn token without showing it', async () => {
  const model = await scripted();
  const messages = [{ role: 'user', content: 'Hi' }];
  const r = await model.chat(messages, { maxNewTokens: 20 }).result();
  assert.equal(r.promptText, '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
  assert.deepEqual(r.promptIds, model.encode(r.promptText!, false));
  assert.equal(r.finishReason, 'stop_id');
  assert.equal(r.generatedIds.at(-1), QWEN2.imEnd);
  assert.equal(r.text, '<think>hm</think>\n\nHello!');
  const unstopped = await model.chat(messages, { maxNewTokens: 12, stopIds: [] }).result();
  assert.equal(unstopped.finishReason, 'length');
  assert.ok(unstopped.generatedIds.includes(QWEN2.imEnd));

  const h = await huginn();
  const rendered = h.renderChat(messages);
  assert.equal(rendered, '<|begin_text|><|begin_header|>user<|end_header|>\n\nHi<|end_turn|><|begin_header|>Huginn<|end_header|>\n\n');
  const plain = await h.chat(messages, { maxNewTokens: 1, stopIds: [] }).result();
  const special = await h.chat(messages, { maxNewTokens: 1, stopIds: [], addSpecialTokens: true }).result();
  assert.deepEqual(plain.promptIds.slice(0, 2), [65504, 65506], 'one <|begin_text|>: the template\'s');
  assert.deepEqual(special.promptIds.slice(0, 2), [65504, 65504], 'addSpecialTokens adds the post-processor\'s too');
});

const CONTINUING: [string, () => Promise<Model>, ChatOptions][] = [
  ['Ouro, the default read-out', () => ouro('chatml-default-system'), {}],
  ['Ouro, exit(gate, 0.5)', () => ouro('chatml-default-system', 6), { policy: exit('gate', 0.5) }],
  ['Huginn, fixed(3)', () => huginn(), { policy: fixed(3) }],
  ['MoR token-choice', () => mor('token'), {}],
  ['MoR expert-choice, causal routing', () => mor('expert'), { policy: router('causal', 0.5) }],
];

for (const [name, make, options] of CONTINUING) {
  test(`a session continues its KV cache when the new prompt extends it, and computes what one prefill of the same ids computes: ${name}`, async () => {
    const model = await make();
    const session = model.chatSession({ system: 'Be brief.' });
    const turn = { ...options, maxNewTokens: 6, stopIds: [] as number[] };
    const first = await session.send('Hello there', turn).result();
    assert.equal(first.cachedTokens, 0);
    const second = await session.send('And then?', turn).result();
    assert.equal(second.cachedTokens, first.promptIds.length + first.generatedIds.length, 'the whole first turn came from the cache');
    assert.deepEqual(second.promptIds.slice(0, second.cachedTokens), first.ids);
    assert.equal(second.trace.tokens.filter((t) => t.phase === 'prefill').length, second.promptIds.length - second.cachedTokens, 'only the rest was computed');
    const full = await model.generate(second.promptIds, { ...options, maxNewTokens: 6, stopIds: [] }).result();
    assert.deepEqual(second.generatedIds, full.generatedIds);
    assert.deepEqual(decodeSteps(second), decodeSteps(full));
    assert.equal(session.cachedTokens, second.ids.length);
  });
}

test('Huginn under an adaptive exit still continues its cache (earlier turns keep the depths they were computed with)', async () => {
  const model = await huginn();
  const session = model.chatSession();
  const turn: ChatOptions = { policy: exit('kl', 1e-3), maxNewTokens: 4, stopIds: [] };
  const first = await session.send('Hi', turn).result();
  const second = await session.send('More', turn).result();
  assert.equal(second.cachedTokens, first.ids.length);
});

/** Each fallback: the turn is a full prefill (cachedTokens 0) and computes exactly what generate computes on its prompt ids. */
async function assertFullPrefill(model: Model, turn: GenerationResult, options: ChatOptions): Promise<void> {
  assert.equal(turn.cachedTokens, 0);
  assert.equal(turn.trace.tokens.filter((t) => t.phase === 'prefill').length, turn.promptIds.length);
  const full = await fullPrefill(model, turn, options);
  assert.deepEqual(turn.generatedIds, full.generatedIds);
  assert.deepEqual(decodeSteps(turn), decodeSteps(full));
}

test('a re-render that changes an earlier turn (the template drops the answer\'s reasoning) falls back to a full prefill on the same buffers', async () => {
  const model = await scripted('chatml-thinking');
  const session = model.chatSession();
  const first = await session.send('Is 91 prime?', { maxNewTokens: 12 }).result();
  assert.equal(first.text, '<think>hm</think>\n\nHello!');
  const second = await session.send('And 97?', { maxNewTokens: 12 }).result();
  assert.ok(!second.promptText!.includes('hm</think>'), 'the template re-rendered the first answer without its reasoning');
  await assertFullPrefill(model, second, { maxNewTokens: 12 });
  const third = await session.send('And 101?', { maxNewTokens: 12 }).result();
  await assertFullPrefill(model, third, { maxNewTokens: 12 });
});

test('fallbacks: a replaced history, another KV strategy, added special tokens, a cache too small, MoR expert-choice upstream, update_cache KV sharing', async () => {
  const o = await ouro('chatml-default-system');
  const turn: ChatOptions = { maxNewTokens: 5, stopIds: [] };
  let session = o.chatSession();
  await session.send('one', turn).result();
  session.reset([{ role: 'user', content: 'other' }, { role: 'assistant', content: 'words' }]);
  await assertFullPrefill(o, await session.send('two', turn).result(), turn);
  const exclude: ChatOptions = { ...turn, kvStrategy: 'exclude' };
  await assertFullPrefill(o, await session.send('three', exclude).result(), exclude);
  const special: ChatOptions = { ...turn, addSpecialTokens: true };
  await assertFullPrefill(o, await session.send('four', special).result(), special);

  // a fresh model: its cache pool is empty, so the session gets exactly the 70 positions it asks for
  session = (await ouro('chatml-default-system')).chatSession({ capacity: 70 });
  const first = await session.send('one', turn).result();
  assert.ok(first.ids.length <= 70);
  await assertFullPrefill(o, await session.send('two', turn).result(), turn); // 70 positions cannot hold two turns
  assert.ok((await session.send('three', turn).result()).cachedTokens > 0, 'the larger cache then continues');

  for (const model of [await mor('expert'), await mor('token', (c) => { const cfg = c.cfg as Record<string, Record<string, unknown>>; cfg.kv_sharing = { enable: true, num_recursion: 3, sharing: 'middle_cycle', update_cache: true, base_depth: null }; })]) {
    session = model.chatSession();
    await session.send('one', turn).result();
    await assertFullPrefill(model, await session.send('two', turn).result(), turn);
  }
});

test('a template whose eos_token the vocabulary lacks: chat calls stop at its text, as a stop string', async () => {
  const { config, tensors } = scriptedOuro(GREETER, { vocab: 512, bosEosId: QWEN2.endoftext });
  const model = await loadModel({ config, files: { 'model.safetensors': safetensorsBytes(tensors) }, tokenizer: QWEN_JSON, tokenizerConfig: tokenizerConfig('chatml-default-system', (c) => { c.eos_token = 'llo!'; }), label: 'scripted-eos-text' });
  assert.equal(model.tokenizer!.tokenToId('llo!'), undefined);
  assert.equal(model.chatStopText(), 'llo!');
  const answer = await model.chat([{ role: 'user', content: 'Hi' }], { maxNewTokens: 12 }).result();
  assert.equal(answer.finishReason, 'stop_string');
  assert.ok(answer.text.endsWith('He') && !answer.text.includes('llo!'), JSON.stringify(answer.text));
  // given stopIds replace every default stop, this one too; a plain generate never has it
  assert.equal((await model.chat([{ role: 'user', content: 'Hi' }], { maxNewTokens: 12, stopIds: [QWEN2.imEnd] }).result()).finishReason, 'stop_id');
  assert.equal((await scripted()).chatStopText(), null, 'ChatML\'s <|im_end|> is a token: the stop ids cover it');
});

test('close() gives the session\'s KV cache back: the next session allocates no arena memory, and the closed session\'s next turn is a full prefill', async () => {
  const runtime = await createWasmRuntime();
  const model = await ouro('chatml-default-system', 5, runtime);
  const turn: ChatOptions = { maxNewTokens: 5, stopIds: [] };
  const session = model.chatSession({ capacity: 200 });
  await session.send('one', turn).result();
  session.close();
  assert.equal(session.cachedTokens, 0);
  assert.deepEqual(session.messages.map((m) => m.role), ['user', 'assistant'], 'the history stays');
  const used = runtime.arena.bytesUsed;
  const other = model.chatSession({ capacity: 200 });
  await other.send('one', turn).result();
  assert.equal(runtime.arena.bytesUsed, used, 'the second session took the first one\'s cache');
  other.close();
  await assertFullPrefill(model, await session.send('two', turn).result(), turn);
});

test('an aborted answer joins the history as far as it got and the next turn continues the cache; one aborted before any token is dropped', async () => {
  const model = await ouro('chatml-default-system');
  const session = model.chatSession();
  const controller = new AbortController();
  const generation = session.send('Hi', { maxNewTokens: 30, stopIds: [], signal: controller.signal });
  for await (const event of generation) if (event.index === 2) controller.abort();
  const partial = await generation.result();
  assert.equal(partial.finishReason, 'aborted');
  assert.equal(partial.generatedIds.length, 3);
  assert.deepEqual(session.messages.map((m) => m.role), ['user', 'assistant']);
  assert.equal(session.messages[1].content, partial.text);
  const next = await session.send('Go on', { maxNewTokens: 3, stopIds: [] }).result();
  assert.equal(next.cachedTokens, partial.ids.length);

  const before = session.messages;
  const dropped = await session.send('never', { maxNewTokens: 3, signal: AbortSignal.abort() }).result();
  assert.equal(dropped.finishReason, 'aborted');
  assert.deepEqual(session.messages, before);
  assert.ok((await session.send('after', { maxNewTokens: 2, stopIds: [] }).result()).cachedTokens > 0);
});

test('one turn at a time: CHAT_SESSION_BUSY while an answer is generating, or when a turn prepared earlier starts after another ran', async () => {
  const model = await ouro('chatml-default-system');
  const session = model.chatSession();
  const running = session.send('a', { maxNewTokens: 4, stopIds: [] });
  const iterator = running[Symbol.asyncIterator]();
  await iterator.next();
  assert.throws(() => session.send('b'), isCode('CHAT_SESSION_BUSY'));
  assert.throws(() => session.reset(), isCode('CHAT_SESSION_BUSY'));
  await running.result();
  const early = session.send('c', { maxNewTokens: 2 });
  await session.send('d', { maxNewTokens: 2 }).result();
  await assert.rejects(early.result(), isCode('CHAT_SESSION_BUSY'));
});

test('session.chat answers a whole conversation (the history becomes it plus the answer); continueFinalMessage extends the last message', async () => {
  const model = await scripted();
  const session = model.chatSession();
  const conversation = [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hel' }];
  const r = await session.chat(conversation, { continueFinalMessage: true, maxNewTokens: 3, stopIds: [] }).result();
  assert.ok(r.promptText!.endsWith('<|im_start|>assistant\nHel'));
  assert.deepEqual(session.messages, [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: `Hel${r.text}` }]);
  const whole = await session.chat([{ role: 'user', content: 'Bye' }], { maxNewTokens: 12 }).result();
  assert.deepEqual(session.messages, [{ role: 'user', content: 'Bye' }, { role: 'assistant', content: whole.text }]);
});

test('a model without a template: CHAT_TEMPLATE_MISSING; a broken template loads the model and fails the chat call; no tokenizer: GEN_NO_TOKENIZER', async () => {
  const demo = await loadModel('models/demo-ouro');
  assert.equal(demo.chatTemplate, null);
  assert.equal(demo.assistantRole, null);
  assert.throws(() => demo.chat([{ role: 'user', content: 'x' }]), isCode('CHAT_TEMPLATE_MISSING'));
  assert.throws(() => demo.chatSession(), isCode('CHAT_TEMPLATE_MISSING'));
  assert.throws(() => demo.stopIds({ chat: true }), isCode('CHAT_TEMPLATE_MISSING'));
  const { config, tensors } = scriptedOuro(GREETER, { vocab: 512 });
  const files = { 'model.safetensors': safetensorsBytes(tensors) };
  const broken = await loadModel({ config, files, tokenizer: QWEN_JSON, tokenizerConfig: JSON.stringify({ chat_template: '{% for m in messages %}' }) });
  assert.throws(() => broken.chat([{ role: 'user', content: 'x' }]), isCode('CHAT_TEMPLATE_SYNTAX'));
  assert.equal((await broken.generate('Hi', { maxNewTokens: 1 }).result()).generatedIds.length, 1, 'text generation still works');
  const noTokenizer = await loadModel({ config, files, tokenizerConfig: tokenizerConfig('chatml-default-system') });
  assert.throws(() => noTokenizer.chat([{ role: 'user', content: 'x' }]), isCode('GEN_NO_TOKENIZER'));
  const skipped = await loadModel({ config, files, tokenizer: QWEN_JSON, tokenizerConfig: tokenizerConfig('chatml-default-system') }, { chatTemplate: false });
  assert.equal(skipped.chatTemplate, null);
});

test('chat_template.jinja wins over tokenizer_config.json and special_tokens_map.json overrides its tokens: from a directory, from memory and over HTTP', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ponder-chat-'));
  try {
    cpSync('test/fixtures/chat-models/ouro-chatml', dir, { recursive: true });
    const jinja = "{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}\n";
    writeFileSync(join(dir, 'chat_template.jinja'), jinja);
    writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: '<|endoftext|>' }));
    const expected = '[user] Hi<|endoftext|>[assistant] ';
    const fromDir = await loadModel(dir);
    assert.equal(fromDir.renderChat([{ role: 'user', content: 'Hi' }]), expected);
    assert.equal(fromDir.chatTemplate!.origin, 'chat_template.jinja');
    assert.deepEqual(fromDir.stopIds({ chat: true }).map((s) => [s.id, s.sources]), [[QWEN2.endoftext, ['config.json eos_token_id', 'chat template: ends an answer', 'tokenizer eos_token']]]);
    const read = (name: string): string => readFileSync(join(dir, name), 'utf8');
    const fromMemory = await loadModel({
      config: read('config.json'), files: { 'model.safetensors': new Uint8Array(readFileSync(join(dir, 'model.safetensors'))) },
      tokenizer: read('tokenizer.json'), tokenizerConfig: read('tokenizer_config.json'), chatTemplate: jinja, specialTokensMap: read('special_tokens_map.json'),
    });
    assert.equal(fromMemory.renderChat([{ role: 'user', content: 'Hi' }]), expected);
    const fetched: string[] = [];
    const fakeFetch = (async (url: string) => {
      const name = String(url).slice('https://models.example/chat/'.length);
      fetched.push(name);
      try { return new Response(new Uint8Array(readFileSync(join(dir, name)))); } catch { return new Response('missing', { status: 404 }); }
    }) as typeof fetch;
    const overHttp = await loadModel('https://models.example/chat/', { fetch: fakeFetch });
    assert.equal(overHttp.renderChat([{ role: 'user', content: 'Hi' }]), expected);
    assert.ok(fetched.includes('chat_template.jinja') && fetched.includes('special_tokens_map.json'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
