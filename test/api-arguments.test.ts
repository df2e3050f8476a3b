/**
 * Every public API entry checks its arguments and throws PonderError with a code from
 * spec/errors.md — never a raw TypeError from deep inside: the reproductions of issue 11, then
 * every entry of `ponder/node` called with values of every wrong type, and every option of the
 * main calls set to each of them.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as api from '../src/node/index.js';
import { PonderError } from '../src/errors.js';
import type { Model } from '../src/api/model.js';

const isCode = (code: string) => (e: unknown): boolean => {
  assert.ok(e instanceof PonderError, `expected PonderError ${code}, got ${String((e as Error)?.stack ?? e)}`);
  assert.equal(e.code, code, e.message);
  return true;
};

let huginn: Model;
let ouro: Model;
before(async () => {
  huginn = await api.loadModel('models/demo-huginn', { runtime: await api.createWasmRuntime() });
  ouro = await api.loadModel('models/demo-ouro', { runtime: await api.createWasmRuntime() });
});

test('issue 11: generate(null), generate({a: 1}), generate([1], null) and Huginn {kvStrategy: 42} are ARG_INVALID (before: raw TypeErrors)', () => {
  assert.throws(() => huginn.generate(null as never), isCode('ARG_INVALID'));
  assert.throws(() => huginn.generate({ a: 1 } as never), isCode('ARG_INVALID'));
  assert.throws(() => huginn.generate([1], null as never), isCode('ARG_INVALID'));
  assert.throws(() => huginn.generate([1], { kvStrategy: 42 as never }), isCode('ARG_INVALID'));
  assert.throws(() => huginn.forward([1], { kvStrategy: 42 as never }), isCode('ARG_INVALID'));
  assert.throws(() => huginn.generate([1], { maxNewToken: 2 } as never), (e: unknown) => isCode('ARG_INVALID')(e) && /unknown option "maxNewToken"/.test((e as Error).message));
  assert.throws(() => huginn.generate([1], { sampling: { temprature: 0.5 } as never }), isCode('ARG_INVALID'));
});

test('issue 11: a throwing onProgress is ARG_CALLBACK with the callback\'s error as cause (before: the raw error); so is a throwing depth function', async () => {
  const oops = new Error('oops');
  await assert.rejects(api.loadModel('models/demo-ouro', { onProgress: () => { throw oops; } }), (e: unknown) => isCode('ARG_CALLBACK')(e) && (e as Error).cause === oops);
  const policy = api.depthFunction(() => { throw oops; });
  await assert.rejects(huginn.generate([1], { maxNewTokens: 2, policy }).result(), (e: unknown) => isCode('ARG_CALLBACK')(e) && (e as Error).cause === oops);
  const silent = api.depthFunction((() => undefined) as never);
  await assert.rejects(huginn.generate([1], { maxNewTokens: 2, policy: silent }).result(), isCode('ARG_CALLBACK'));
  // the model stays usable
  assert.equal((await huginn.generate([1], { maxNewTokens: 2 }).result()).generatedIds.length, 2);
});

/** Values of every wrong type, and counts past every limit. */
const GARBAGE: unknown[] = [undefined, null, 0, -1, NaN, Infinity, 1e9, 2 ** 31, '', 'x', true, {}, { a: 1 }, [], [1], [null], ['x'], () => 1,
  Symbol('s'), 10n, new Uint8Array(3), new Float32Array(2), { kind: 'fixed', steps: 2 ** 31 }, { then: 1 }];

/** Calls `f`, awaits what it returns (and a Generation's result): it must succeed or throw a PonderError. */
async function typedOrFine(what: string, f: () => unknown): Promise<void> {
  try {
    const r = f() as { then?: unknown; result?: () => Promise<unknown> } | undefined;
    if (r && typeof r.then === 'function') await r;
    if (r && typeof r.result === 'function') await r.result();
  } catch (e) {
    assert.ok(e instanceof PonderError, `${what}: ${String((e as Error)?.stack ?? e)}`);
  }
}

const show = (v: unknown): string => (typeof v === 'symbol' ? 'symbol' : typeof v === 'bigint' ? `${v}n` : typeof v === 'function' ? 'fn' : JSON.stringify(v) ?? String(v));

test('every public entry of ponder/node, given arguments of every wrong type, succeeds or throws PonderError', async () => {
  const entries: [string, (a: any, b: any) => unknown][] = [
    ['generate', (a, b) => huginn.generate(a, b)], ['ouro.generate', (a, b) => ouro.generate(a, b)], ['forward', (a, b) => huginn.forward(a, b)],
    ['encode', (a, b) => huginn.encode(a, b)], ['decode', (a) => huginn.decode(a)], ['Model.checkPolicy', (a) => huginn.checkPolicy(a)],
    ['fixed', (a) => api.fixed(a)], ['router', (a, b) => api.router(a, b)], ['exit', (a, b) => api.exit(a, b)], ['budget', (a, b) => api.budget(a, b)],
    ['depthFunction', (a, b) => api.depthFunction(a, b)], ['checkPolicy', (a) => api.checkPolicy(a)], ['describePolicy', (a) => api.describePolicy(a)],
    ['parsePolicy', (a, b) => api.parsePolicy(a, b)], ['detectFamily', (a, b) => api.detectFamily(a, b)], ['loadModel', (a, b) => api.loadModel(a, b)],
    ['parseSafetensors', (a, b) => api.parseSafetensors(a, b)], ['parseSafetensorsHeader', (a, b) => api.parseSafetensorsHeader(a, b)],
    ['writeSafetensors', (a, b) => api.writeSafetensors(a, b)], ['parseConfigJson', (a, b) => api.parseConfigJson(a, b)], ['configObject', (a, b) => api.configObject(a, b)],
    ['safetensorsWeights', (a, b) => api.safetensorsWeights(a, b)], ['openPytorchCheckpoint', (a) => api.openPytorchCheckpoint(a)], ['bytesSource', (a, b) => api.bytesSource(a, b)],
    ['Sampler', (a, b) => new api.Sampler(a, b)], ['resolveSamplingOptions', (a, b) => api.resolveSamplingOptions(a, b)],
    ['samplingFromGenerationConfig', (a) => api.samplingFromGenerationConfig(a)], ['StopCondition', (a) => new api.StopCondition(a)],
    ['loadTokenizer', (a, b) => api.loadTokenizer(a, b)], ['compileChatTemplate', (a, b) => api.compileChatTemplate(a, b)], ['loadChatTemplate', (a, b) => api.loadChatTemplate(a, b)],
    ['specialTokenVariables', (a, b) => api.specialTokenVariables(a, b)], ['checkTrace', (a) => api.checkTrace(a)], ['summarizeTrace', (a) => api.summarizeTrace(a)],
    ['traceToJSON', (a, b) => api.traceToJSON(a, b)], ['parseTraceJSON', (a) => api.parseTraceJSON(a)], ['renderTraceHtml', (a, b) => api.renderTraceHtml(a, b)],
    ['colorTokenByDepth', (a, b) => api.colorTokenByDepth(a, b, 4, true)], ['depthLegend', (a, b) => api.depthLegend(a, b)], ['formatSummary', (a) => api.formatSummary(a)],
    ['createWasmRuntime', (a) => api.createWasmRuntime(a)], ['createNodeWasmRuntime', (a) => api.createNodeWasmRuntime(a)], ['openModelDir', (a) => api.openModelDir(a)],
    ['loadModelDir', (a, b) => api.loadModelDir(a, b)], ['openFileSource', (a) => api.openFileSource(a)], ['convertMor', (a) => api.convertMor(a)],
    ['morConfigFromRelease', (a, b) => api.morConfigFromRelease(a, b, {}, 'exp.yaml')], ['parseExperimentYaml', (a, b) => api.parseExperimentYaml(a, b)],
    ['planMorConversion', (a, b) => api.planMorConversion(a, b, 'config')],
  ];
  for (const [name, f] of entries) {
    for (const a of GARBAGE) {
      await typedOrFine(`${name}(${show(a)})`, () => f(a, undefined));
      await typedOrFine(`${name}([1, 2], ${show(a)})`, () => f([1, 2], a));
      await typedOrFine(`${name}("hi", ${show(a)})`, () => f('hi', a));
    }
  }
});

test('every option of generate, forward, sampling and loadModel, set to a value of every wrong type, succeeds or throws PonderError', async () => {
  const options: [string, string[], (o: Record<string, unknown>) => unknown][] = [
    ['generate', ['maxNewTokens', 'stopIds', 'stopStrings', 'seed', 'sampling', 'policy', 'signal', 'addSpecialTokens', 'kvStrategy', 'initialStates'], (o) => huginn.generate([1, 2], { maxNewTokens: 1, ...o })],
    ['ouro generate', ['kvStrategy', 'initialStates', 'policy'], (o) => ouro.generate([1, 2], { maxNewTokens: 1, ...o })],
    ['sampling', ['temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'seed'], (o) => huginn.generate([1, 2], { maxNewTokens: 1, sampling: o })],
    ['forward', ['policy', 'seed', 'kvStrategy', 'initialStates'], (o) => huginn.forward([1, 2], o)],
    ['loadModel', ['runtime', 'onProgress', 'signal', 'seed', 'tokenizer', 'importTokenizers', 'fetch'], (o) => api.loadModel('models/demo-ouro', o)],
    ['loadModel in memory', ['config', 'files', 'tokenizer', 'tokenizerConfig', 'generationConfig', 'label'], (o) => api.loadModel({ config: '{}', files: {}, ...o } as never)],
  ];
  for (const [call, keys, f] of options) {
    for (const key of keys) for (const value of GARBAGE) await typedOrFine(`${call} { ${key}: ${show(value)} }`, () => f({ [key]: value }));
  }
});

test('the chat calls check their arguments like generate: an unknown option, a template option of the wrong type, a conversation that is not a list, a session option of the wrong type', async () => {
  const { readFileSync } = await import('node:fs');
  const { GREETER, QWEN2, QWEN2_TOKENIZER, fixtureTokenizerConfig, safetensorsBytes, scriptedOuro } = await import('./chat-fixture.js');
  const { config, tensors } = scriptedOuro(GREETER, { vocab: 512, bosEosId: QWEN2.endoftext });
  const chat = await api.loadModel({ config, files: { 'model.safetensors': safetensorsBytes(tensors) }, tokenizer: readFileSync(QWEN2_TOKENIZER, 'utf8'), tokenizerConfig: JSON.stringify(fixtureTokenizerConfig('chatml-default-system')) }, { runtime: await api.createWasmRuntime() });
  const hi = [{ role: 'user', content: 'hi' }];
  assert.throws(() => chat.chat(hi, { maxNewToken: 2 } as never), (e: unknown) => isCode('ARG_INVALID')(e) && /unknown option "maxNewToken"/.test((e as Error).message));
  assert.throws(() => chat.chat(hi, { initialStates: new Float32Array(16) } as never), isCode('ARG_INVALID'));
  assert.throws(() => chat.chat(hi, null as never), isCode('ARG_INVALID'));
  assert.throws(() => chat.chat(hi, { templateKwargs: 'thinking' as never }), isCode('ARG_INVALID'));
  assert.throws(() => chat.chat(hi, { tools: {} as never }), isCode('ARG_INVALID'));
  assert.throws(() => chat.chat(hi, { continueFinalMessage: 'yes' as never }), isCode('ARG_INVALID'));
  assert.throws(() => chat.chat(hi, { maxNewTokens: -1 }), isCode('ARG_INVALID'));
  assert.throws(() => chat.renderChat(hi, { templateName: 7 as never }), isCode('ARG_INVALID'));
  assert.throws(() => chat.chat(null as never), isCode('CHAT_MESSAGES'));
  assert.throws(() => chat.chatSession({ sytem: 'Be brief.' } as never), isCode('ARG_INVALID'));
  assert.throws(() => chat.chatSession({ capacity: '8' as never }), isCode('ARG_INVALID'));
  const session = chat.chatSession();
  assert.throws(() => session.send(42 as never), isCode('ARG_INVALID'));
  assert.throws(() => session.send('hi', { stopIds: ['x'] as never }), isCode('ARG_INVALID'));
  assert.throws(() => session.chat({ role: 'user' } as never), isCode('CHAT_MESSAGES'));
  assert.equal(session.messages.length, 0, 'a refused turn leaves the history as it was');
  const ok = await session.send('hi', { maxNewTokens: 3 }).result();
  assert.equal(ok.generatedIds.length > 0, true);
});
