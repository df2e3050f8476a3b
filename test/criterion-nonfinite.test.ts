/**
 * NaN or Infinity in anything an exit check reads — the state, the read-out logits, Ouro's exit
 * gate — is NUM_NONFINITE naming the tensor and the step, in every family: a NaN never meets a
 * threshold, so such a token would otherwise run silently to its cap (and the trace would say no
 * check ran). Where nothing reads the bad tensor, the output is the model's, unchanged.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PonderError } from '../src/errors.js';
import { parseSafetensors, readTensor, writeSafetensors } from '../src/format/safetensors.js';
import { loadModel } from '../src/node/index.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { depthFunction, exit, fixed } from '../src/depth/policy.js';
import { createServer } from '../src/serve/server.js';
import { assertUsageError, ponder } from './cli-support.js';

const root = mkdtempSync(join(tmpdir(), 'ponder-nonfinite-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A copy of a bundled model with every value of `tensor` set to `value`. */
function modelWith(model: string, tensor: string, value: number): string {
  const dir = mkdtempSync(join(root, `${model}-`));
  for (const f of ['config.json', 'tokenizer.json']) copyFileSync(join('models', model, f), join(dir, f));
  const file = parseSafetensors(new Uint8Array(readFileSync(join('models', model, 'model.safetensors'))), model);
  assert.ok(file.tensors.has(tensor), tensor);
  const tensors = [...file.tensors.values()].map((t) => {
    const a = readTensor(file, t.name);
    const data = new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
    if (t.name === tensor) {
      if (t.dtype === 'F32') new Float32Array(data.buffer).fill(value);
      else new Uint16Array(data.buffer).fill(new Uint32Array(new Float32Array([value]).buffer)[0] >>> 16); // BF16: the f32's top half
    }
    return { name: t.name, dtype: t.dtype, shape: t.shape, data };
  });
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors, file.metadata));
  return dir;
}

const nonFinite = (pattern: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof PonderError && e.code === 'NUM_NONFINITE', String(e));
  assert.match(e.message, pattern);
  return true;
};

test('issue 11: Ouro with NaN exit-gate weights is NUM_NONFINITE naming the gate and the loop, wherever the read-out decides on the gate (before: every loop ran, exit 0, criterion null)', async () => {
  for (const value of [NaN, Infinity]) {
    const dir = modelWith('demo-ouro', 'model.early_exit_gate.weight', value);
    for (const policy of ['default', 'exit(gate, 0.5)', 'exit(gate, 0.5, select)']) {
      const r = await ponder(['run', '-m', dir, '--ids', '1,2,3', '-n', '2', '--policy', policy]);
      assertUsageError(r, 'NUM_NONFINITE');
      assert.match(r.err, /exit gate's logit \(model\.early_exit_gate.*\) is (NaN|-?Infinity) after loop 1 for the token at position 0/, `${policy}: ${r.err}`);
    }
    const model = await loadModel(dir, { runtime: await createWasmRuntime() });
    await assert.rejects(model.generate([1, 2, 3], { maxNewTokens: 2 }).result(), (e: unknown) => nonFinite(/early_exit_gate/)(e) && (e as PonderError).tensor === 'model.early_exit_gate.weight');
  }
});

test('where no read-out reads the gate (fixed depth, a Huginn criterion), NaN gate weights change nothing: the same tokens as the intact model', async () => {
  const broken = await loadModel(modelWith('demo-ouro', 'model.early_exit_gate.weight', NaN), { runtime: await createWasmRuntime() });
  const intact = await loadModel('models/demo-ouro', { runtime: await createWasmRuntime() });
  for (const policy of [fixed(2), exit('kl')]) {
    const a = await broken.generate([1, 2, 3], { maxNewTokens: 3, policy }).result();
    const b = await intact.generate([1, 2, 3], { maxNewTokens: 3, policy }).result();
    assert.deepEqual(a.ids, b.ids);
    assert.deepEqual(a.trace.tokens.map((t) => t.steps), b.trace.tokens.map((t) => t.steps));
  }
});

test('NaN weights under a criterion are NUM_NONFINITE at the first check, naming the input: Huginn\'s state, MoR\'s read-out, Ouro\'s hidden state', async () => {
  const huginn = await loadModel(modelWith('demo-huginn', 'transformer.core_block.0.mlp.proj.weight', NaN), { runtime: await createWasmRuntime() });
  await assert.rejects(huginn.generate([1, 2], { maxNewTokens: 2, policy: exit('kl') }).result(), nonFinite(/^the recurrent state s_t \(before ln_f\) is NaN at step 1 \(position 0, index \d+\), an input of the exit criterion kl$/));
  await assert.rejects(huginn.generate([1, 2], { maxNewTokens: 2, policy: depthFunction(() => 'continue') }).result(), nonFinite(/recurrent state .* step 1 .* an input of the depth function/));
  const mor = await loadModel(modelWith('demo-mor', 'model.norm.weight', NaN), { runtime: await createWasmRuntime() });
  await assert.rejects(mor.generate([1, 2], { maxNewTokens: 2, policy: exit('entropy-diff') }).result(), nonFinite(/^the early read-out lm_head\(norm\(h\)\) is NaN at step 1/));
  const ouro = await loadModel(modelWith('demo-ouro', 'model.norm.weight', NaN), { runtime: await createWasmRuntime() });
  await assert.rejects(ouro.generate([1, 2], { maxNewTokens: 2, policy: exit('latent-diff') }).result(), nonFinite(/^the hidden state h_t after model\.norm is NaN at step 1/));
});

test('NaN in the key projection (every score of a query NaN) is NaN out of attention, not a query that sees no key: NUM_NONFINITE in every family (before: zeros, and silent tokens)', async () => {
  const cases: [string, string][] = [
    ['demo-ouro', 'model.layers.0.self_attn.k_proj.weight'],
    ['demo-mor', 'model.layers.0.self_attn.k_proj.weight'],
    ['demo-huginn', 'transformer.coda.0.attn.Wqkv.weight'],
  ];
  for (const [name, tensor] of cases) {
    const model = await loadModel(modelWith(name, tensor, NaN), { runtime: await createWasmRuntime() });
    await assert.rejects(model.generate([1, 2, 3], { maxNewTokens: 3 }).result(), nonFinite(/NaN/), `${name}: ${tensor} all NaN`);
  }
});

test('a check that ran is never null in a trace: Ouro\'s gate values and every criterion value are numbers for each step run', async () => {
  const model = await loadModel('models/demo-ouro', { runtime: await createWasmRuntime() });
  for (const policy of [exit('gate', 0.9), exit('kl', 1e-9)]) {
    const { trace } = await model.generate([1, 2, 3], { maxNewTokens: 3, policy }).result();
    for (const t of trace.tokens) {
      const ran = policy.kind === 'exit' && policy.criterion === 'gate' ? t.steps : t.steps - (t.steps === t.maxSteps ? 1 : 0); // no check follows the last loop
      assert.ok(t.criterionValues.slice(0, ran).every((v) => typeof v === 'number'), JSON.stringify(t.criterionValues));
    }
  }
});

test('under ponder serve, a NaN met while generating is the served model\'s fault, typed: a 500 server_error with NUM_NONFINITE (no retry), or the stream\'s last event carrying the code', async () => {
  const broken = await loadModel(modelWith('demo-ouro', 'lm_head.weight', NaN), { runtime: await createWasmRuntime() });
  const server = createServer({ model: broken, id: 'broken' });
  const post = (body: object): Promise<Response> => server.handle(new Request('http://x/v1/completions', { method: 'POST', body: JSON.stringify({ model: 'broken', prompt: 'Hi', max_tokens: 2, ...body }) }));
  const plain = await post({});
  assert.equal(plain.status, 500);
  assert.equal(plain.headers.get('x-should-retry'), 'false'); // OpenAI's clients would retry a 500 that fails the same way again
  const body = (await plain.json()) as { error: { code: string; type: string; param: unknown; message: string } };
  assert.deepEqual([body.error.code, body.error.type, body.error.param], ['NUM_NONFINITE', 'server_error', null]);
  assert.match(body.error.message, /logits.*NaN.*\(.+\)$/);
  const streamed = await post({ stream: true });
  assert.equal(streamed.status, 200); // the headers went out before the first token
  const events = (await streamed.text()).split('\n\n').filter(Boolean);
  const last = JSON.parse(events[events.length - 1].slice('data: '.length)) as { error: { code: string; type: string; message: string } };
  assert.equal(last.error.code, 'NUM_NONFINITE');
  assert.equal(last.error.type, 'server_error');
  assert.match(last.error.message, /logits.*NaN.*\(.+\)$/); // the message, then the hint
});

test('under ponder serve, a non-finite logit the request\'s own repetition_penalty made is the request\'s fault: a 400 NUM_NONFINITE', async () => {
  const model = await loadModel('models/ouro-sotu', { runtime: await createWasmRuntime() });
  const server = createServer({ model, id: 'ouro' });
  const response = await server.handle(new Request('http://x/v1/completions', { method: 'POST', body: JSON.stringify({ model: 'ouro', prompt: 'The quick brown fox jumps over the lazy dog and then', max_tokens: 3, repetition_penalty: 1e38 }) }));
  assert.equal(response.status, 400);
  const body = (await response.json()) as { error: { code: string; type: string; message: string } };
  assert.deepEqual([body.error.code, body.error.type], ['NUM_NONFINITE', 'invalid_request_error']);
  assert.match(body.error.message, /with repetitionPenalty 1e\+38 is -?Infinity in float32/);
});
