/**
 * `ponder serve` driven by the official `openai` client (spec/serve.md): completions and chat,
 * streamed and not, usage, seeds, the `depth` extension and the `policy` field, and every error a
 * client can get (bad model name, bad or unknown field, missing or wrong key, a prompt too long, a
 * body too large, a full queue), against the bundled demo-ouro model served in this process on
 * node:http. Outputs are compared with the library generating the same request.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { loadModel, type Model } from '../src/node/index.js';
import { listen, type Listening } from '../src/node/serve.js';
import { createServer, type ServeOptions } from '../src/serve/server.js';
import type { DepthInfo } from '../src/serve/openai.js';

// demo-ouro's files plus a ChatML template (the bundled demo models have none: they are not chat models)
const chatDir = mkdtempSync(join(tmpdir(), 'ponder-serve-'));
for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) copyFileSync(join('models/demo-ouro', f), join(chatDir, f));
const chatml = JSON.parse(readFileSync('test/fixtures/chat/chatml-default-system.json', 'utf8')) as { template: string; tokenizer_config: Record<string, unknown> };
writeFileSync(join(chatDir, 'tokenizer_config.json'), JSON.stringify({ ...chatml.tokenizer_config, chat_template: chatml.template }));

// the served model: demo-ouro's weights and tokenizer, with the template (the server chats through model.chat)
const model = await loadModel(chatDir);
const template = model.chatTemplate!;
const servers: Listening[] = [];
after(async () => {
  for (const s of servers) await s.close();
  rmSync(chatDir, { recursive: true, force: true });
});

async function serve(options: Partial<ServeOptions> = {}, log?: string[]): Promise<{ url: string; client: OpenAI }> {
  const server = createServer({ model, id: 'demo-ouro', log: log ? (l) => log.push(l) : undefined, ...options });
  await server.ready;
  const listening = await listen(server, { port: 0 });
  servers.push(listening);
  return { url: listening.url, client: new OpenAI({ baseURL: `${listening.url}/v1`, apiKey: options.apiKey ?? 'unused', maxRetries: 0 }) };
}

const main = await serve();
const client = main.client;

/** The depth extension of a choice or chunk (not in the client's types). */
function depthOf(choice: unknown): DepthInfo {
  const depth = (choice as { depth?: DepthInfo }).depth;
  assert.ok(depth, 'the choice carries a depth object');
  return depth;
}

function assertDepthConsistent(depth: DepthInfo, tokens: number): void {
  assert.equal(depth.steps.length, tokens);
  assert.equal(depth.max_steps.length, tokens);
  assert.equal(depth.exit_reasons.length, tokens);
  const used = depth.steps.reduce((a, b) => a + b, 0), full = depth.max_steps.reduce((a, b) => a + b, 0);
  assert.ok(depth.steps.every((s, i) => s >= 0 && s <= depth.max_steps[i]));
  assert.equal(depth.mean_depth, tokens ? used / tokens : 0);
  assert.equal(depth.compute_saved, full ? 1 - used / full : 0);
}

async function expectError(promise: Promise<unknown>, status: number, fields: { param?: string | null; code?: string }): Promise<InstanceType<typeof OpenAI.APIError>> {
  const e = await promise.then(() => null, (err: unknown) => err);
  assert.ok(e instanceof OpenAI.APIError, `expected an API error, got ${String(e)}`);
  assert.equal(e.status, status, e.message);
  if ('param' in fields) assert.equal(e.param, fields.param);
  if (fields.code) assert.equal(e.code, fields.code);
  return e;
}

async function library(prompt: string | number[], options: Parameters<Model['generate']>[1]) {
  const r = await model.generate(prompt, options).result();
  return { text: r.text, steps: r.trace.tokens.filter((t) => t.phase === 'decode').map((t) => t.steps), prompt: r.promptIds.length, finish: r.finishReason };
}

test('a completion returns the text, usage and per-token depth of the same generation run through the library', async () => {
  const r = await client.completions.create({ model: 'demo-ouro', prompt: 'Once upon a time', max_tokens: 12, temperature: 0.8, seed: 5 });
  const want = await library('Once upon a time', { maxNewTokens: 12, sampling: { temperature: 0.8 }, seed: 5 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.model, 'demo-ouro');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].text, want.text);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.deepEqual(r.usage, { prompt_tokens: want.prompt, completion_tokens: 12, total_tokens: want.prompt + 12 });
  const depth = depthOf(r.choices[0]);
  assert.deepEqual(depth.steps, want.steps);
  assert.equal(depth.policy, 'default');
  assertDepthConsistent(depth, 12);
});

test('token-id prompts, echo, and the default of 16 tokens', async () => {
  const ids = model.encode('abc');
  const r = await client.completions.create({ model: 'demo-ouro', prompt: ids, echo: true });
  const want = await library(ids, { maxNewTokens: 16 });
  assert.equal(r.choices[0].text, 'abc' + want.text);
  assert.equal(r.usage?.completion_tokens, 16);
});

test('a streamed completion sends the same text and depths chunk by chunk, then the whole choice\'s depth, usage and [DONE]', async () => {
  const request = { model: 'demo-ouro', prompt: 'The cat', max_tokens: 10, temperature: 1, top_p: 0.9, seed: 11 };
  const whole = await client.completions.create(request);
  const stream = await client.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  let text = '';
  const steps: number[] = [];
  let finishDepth: DepthInfo | null = null;
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) { usage = chunk.usage; assert.equal(chunk.choices.length, 0); continue; }
    const choice = chunk.choices[0];
    text += choice.text;
    if (choice.finish_reason) { finish = choice.finish_reason; finishDepth = depthOf(choice); } else steps.push(...depthOf(choice).steps);
  }
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, 'length');
  assert.deepEqual(steps, depthOf(whole.choices[0]).steps);
  assert.deepEqual(finishDepth, depthOf(whole.choices[0]));
  assert.deepEqual(usage, whole.usage);
  // without include_usage there is no usage chunk
  const plain = await client.completions.create({ ...request, stream: true });
  for await (const chunk of plain) assert.ok(chunk.choices.length === 1 && !chunk.usage);
});

test('chat completions render the conversation with the model\'s template and stop at its end-of-turn text; streamed chat gives the same message', async () => {
  const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: [{ type: 'text' as const, text: 'Hi' }, { type: 'text' as const, text: 'there' }] }];
  const r = await client.chat.completions.create({ model: 'demo-ouro', messages, max_completion_tokens: 20, seed: 3, temperature: 0.7 });
  const prompt = template.render([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi\nthere' }], { addGenerationPrompt: true });
  const want = await library(prompt, { maxNewTokens: 20, seed: 3, sampling: { temperature: 0.7 }, addSpecialTokens: false, stopStrings: ['<|im_end|>'] });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, want.text);
  assert.equal(r.usage?.prompt_tokens, want.prompt);
  assert.deepEqual(depthOf(r.choices[0]).steps, want.steps);

  const stream = await client.chat.completions.create({ model: 'demo-ouro', messages, max_tokens: 20, seed: 3, temperature: 0.7, stream: true });
  let content = '';
  let role = null;
  for await (const chunk of stream) {
    role ??= chunk.choices[0]?.delta.role ?? null;
    content += chunk.choices[0]?.delta.content ?? '';
  }
  assert.equal(role, 'assistant');
  assert.equal(content, want.text);
});

test('chat completions are the library\'s model.chat: a chat model stops at its end-of-turn token (a stop id), streamed or not', async () => {
  const dir = 'test/fixtures/chat-models/ouro-chatml'; // a scripted model that answers "<think>hm</think>\n\nHello!<|im_end|>"
  const chatModel = await loadModel(dir);
  const { client: greeter } = await serve({ model: chatModel });
  const messages = [{ role: 'user' as const, content: 'Hi' }];
  const want = await chatModel.chat(messages, { maxNewTokens: 50 }).result();
  assert.equal(want.finishReason, 'stop_id');
  const r = await greeter.chat.completions.create({ model: 'demo-ouro', messages, max_tokens: 50 });
  assert.equal(r.choices[0].message.content, want.text);
  assert.equal(r.choices[0].message.content, '<think>hm</think>\n\nHello!');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.deepEqual(r.usage, { prompt_tokens: want.promptIds.length, completion_tokens: want.generatedIds.length, total_tokens: want.ids.length });
  let content = '';
  for await (const chunk of await greeter.chat.completions.create({ model: 'demo-ouro', messages, max_tokens: 50, stream: true })) content += chunk.choices[0]?.delta.content ?? '';
  assert.equal(content, want.text);
});

test('the same seed gives the same text; another seed another text; omitted sampling fields take the model\'s defaults (greedy here)', async () => {
  const ask = (seed?: number, temperature?: number) => client.completions.create({ model: 'demo-ouro', prompt: 'x', max_tokens: 16, seed, temperature }).then((r) => r.choices[0].text);
  assert.equal(await ask(42, 1), await ask(42, 1));
  assert.notEqual(await ask(42, 1), await ask(43, 1));
  assert.equal(await ask(undefined, undefined), (await library('x', { maxNewTokens: 16 })).text);
});

test('the policy field sets each request\'s depth policy, and the depth object reports it', async () => {
  const fixed = await client.completions.create({ model: 'demo-ouro', prompt: 'hello', max_tokens: 6, policy: 'fixed(2)' } as OpenAI.CompletionCreateParamsNonStreaming);
  const depth = depthOf(fixed.choices[0]);
  assert.equal(depth.policy, 'fixed(2)');
  assert.deepEqual(depth.steps, [2, 2, 2, 2, 2, 2]);
  assert.deepEqual(depth.exit_reasons, Array(6).fill('fixed'));
  assert.equal(depth.compute_saved, 0.5);
  const gate = await client.completions.create({ model: 'demo-ouro', prompt: 'hello', max_tokens: 6, policy: 'exit(gate, 0.5)' } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.deepEqual(depthOf(gate.choices[0]).steps, (await library('hello', { maxNewTokens: 6, policy: { kind: 'exit', criterion: 'gate', threshold: 0.5 } })).steps);
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'hello', policy: 'router' } as OpenAI.CompletionCreateParamsNonStreaming), 400, { param: 'policy', code: 'ARG_POLICY' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'hello', policy: 'fixed(' } as OpenAI.CompletionCreateParamsNonStreaming), 400, { param: 'policy', code: 'ARG_POLICY' });
});

test('errors in OpenAI\'s shape: a bad model name is 404, a bad, unknown or unsupported field a 400 naming it', async () => {
  const e = await expectError(client.completions.create({ model: 'gpt-4o', prompt: 'x' }), 404, { param: 'model', code: 'model_not_found' });
  assert.match(e.message, /demo-ouro/);
  await expectError(client.models.retrieve('gpt-4o'), 404, { code: 'model_not_found' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x', temperature: 'hot' as unknown as number }), 400, { param: 'temperature', code: 'invalid_type' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x', temperature: -1 }), 400, { param: 'temperature', code: 'ARG_INVALID' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x', top_p: 0 }), 400, { param: 'top_p' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x', max_tokens: 1.5 }), 400, { param: 'max_tokens', code: 'invalid_type' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x', n: 2 }), 400, { param: 'n', code: 'unsupported_value' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x', seed: -1 }), 400, { param: 'seed' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x', frequency_penalty: 0.5 }), 400, { param: 'frequency_penalty' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x', logprobs: 2 }), 400, { param: 'logprobs' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: ['a', 'b'] }), 400, { param: 'prompt' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x', colour: 'red' } as OpenAI.CompletionCreateParamsNonStreaming), 400, { param: 'colour', code: 'unknown_parameter' });
  await expectError(client.chat.completions.create({ model: 'demo-ouro', messages: [] }), 400, { param: 'messages' });
  await expectError(client.chat.completions.create({ model: 'demo-ouro', messages: [{ role: 'wizard', content: 'x' } as never] }), 400, { param: 'messages[0].role' });
  await expectError(client.chat.completions.create({ model: 'demo-ouro', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }), 400, { param: 'messages[0].content[0].type' });
  await expectError(client.chat.completions.create({ model: 'demo-ouro', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f' } }] }), 400, { param: 'tools' });
  await expectError(client.chat.completions.create({ model: 'demo-ouro', messages: [{ role: 'user', content: 'x' }], logprobs: true }), 400, { param: 'logprobs' });
  await expectError(client.chat.completions.create({ model: 'demo-ouro', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_object' } }), 400, { param: 'response_format' });
  await expectError(client.completions.create({ model: 'demo-ouro', prompt: 'x'.repeat(model.contextLength + 1) }), 400, { param: 'prompt', code: 'context_length_exceeded' });
  // fields clients commonly send that ask for nothing are accepted
  const ok = await client.chat.completions.create({ model: 'demo-ouro', messages: [{ role: 'user', content: 'x' }], max_tokens: 2, user: 'u1', n: 1, logprobs: false, presence_penalty: 0, stream: false, tool_choice: 'none', response_format: { type: 'text' } });
  assert.equal(ok.usage?.completion_tokens, 2);
});

test('a server without a chat template answers chat requests with a 400 that says so', async () => {
  const { client: plain } = await serve({ model: await loadModel('models/demo-ouro') });
  await expectError(plain.chat.completions.create({ model: 'demo-ouro', messages: [{ role: 'user', content: 'x' }] }), 400, { param: 'messages', code: 'CHAT_TEMPLATE_MISSING' });
});

test('with an API key, /v1 needs it (401 without it or with another), /health does not', async () => {
  const { url } = await serve({ apiKey: 'sesame' });
  const keyed = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sesame', maxRetries: 0 });
  const wrong = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sesamo', maxRetries: 0 });
  assert.equal((await keyed.models.list()).data[0].id, 'demo-ouro');
  await expectError(wrong.models.list(), 401, { code: 'invalid_api_key' });
  await expectError(wrong.completions.create({ model: 'demo-ouro', prompt: 'x' }), 401, { code: 'invalid_api_key' });
  const bare = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'demo-ouro', prompt: 'x' }) });
  assert.equal(bare.status, 401);
  assert.equal(bare.headers.get('www-authenticate'), 'Bearer');
  assert.equal((await fetch(`${url}/health`)).status, 200);
});

test('/v1/models and /health describe the model; unknown paths are 404, wrong methods 405, bodies over the limit 413, broken JSON 400', async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => [m.id, m.object, (m as unknown as { family: string }).family]), [['demo-ouro', 'model', 'ouro']]);
  assert.equal((await client.models.retrieve('demo-ouro')).id, 'demo-ouro');
  const health = await (await fetch(`${main.url}/health`)).json();
  assert.equal(health.status, 'ready');
  assert.equal((await fetch(`${main.url}/v1/embeddings`, { method: 'POST', body: '{}' })).status, 404);
  const wrongMethod = await fetch(`${main.url}/v1/completions`);
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.get('allow'), 'POST');
  const { url } = await serve({ maxBodyBytes: 100 });
  const big = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ model: 'demo-ouro', prompt: 'x'.repeat(200) }) });
  assert.equal(big.status, 413);
  assert.equal((await big.json()).error.code, 'request_too_large');
  const broken = await fetch(`${main.url}/v1/completions`, { method: 'POST', body: '{"model": "demo-ouro",' });
  assert.equal(broken.status, 400);
  assert.equal((await broken.json()).error.code, 'invalid_json');
});

test('while the model loads, /health says loading (with progress) and the API answers 503', async () => {
  let finish!: (m: Model) => void;
  const server = createServer({ model: (onProgress) => { onProgress({ bytesDone: 5, bytesTotal: 10 }); return new Promise((r) => { finish = r; }); }, id: 'demo-ouro' });
  const health = await server.handle(new Request('http://x/health'));
  assert.equal(health.status, 503);
  assert.deepEqual(await health.json(), { status: 'loading', progress: { bytes_done: 5, bytes_total: 10 } });
  const early = await server.handle(new Request('http://x/v1/completions', { method: 'POST', body: JSON.stringify({ model: 'demo-ouro', prompt: 'x' }) }));
  assert.equal(early.status, 503);
  assert.equal((await early.json()).error.code, 'model_loading');
  finish(model);
  await server.ready;
  assert.equal((await server.handle(new Request('http://x/health'))).status, 200);
});

/** Starts a long streamed completion and resolves once its first chunk has arrived (it then runs for a while). */
async function longStream(c: OpenAI, controller: AbortController) {
  const stream = await c.completions.create({ model: 'demo-ouro', prompt: 'a', max_tokens: 250, stream: true }, { signal: controller.signal });
  const iterator = stream[Symbol.asyncIterator]();
  await iterator.next();
  return iterator;
}

test('a client that disconnects stops its generation and frees its turn: the next request runs at once', async () => {
  const log: string[] = [];
  const { url, client: c } = await serve({}, log);
  const controller = new AbortController();
  await longStream(c, controller);
  controller.abort();
  const next = await c.completions.create({ model: 'demo-ouro', prompt: 'b', max_tokens: 3 });
  assert.equal(next.usage?.completion_tokens, 3);
  const line = log.find((l) => l.includes('client disconnected after'));
  assert.ok(line, log.join('\n'));
  assert.ok(Number(/after (\d+) tokens/.exec(line)![1]) < 250, line);
  assert.deepEqual((await (await fetch(`${url}/health`)).json()).queue, { running: 0, waiting: 0, capacity: 16 });
});

test('the line is FIFO and bounded: one more request than it holds gets 429 with Retry-After; a time limit gives 504', async () => {
  const { url, client: c } = await serve({ maxQueue: 1 });
  const first = new AbortController();
  await longStream(c, first);
  const second = c.completions.create({ model: 'demo-ouro', prompt: 'b', max_tokens: 2 });
  // the second one takes its place in line (the first runs for a while yet)
  while ((await (await fetch(`${url}/health`)).json()).queue.waiting < 1) await new Promise((r) => setTimeout(r, 5));
  const e = await expectError(c.completions.create({ model: 'demo-ouro', prompt: 'c', max_tokens: 2 }), 429, { code: 'queue_full' });
  assert.ok(Number(e.headers?.get('retry-after')) >= 1);
  first.abort();
  assert.equal((await second).usage?.completion_tokens, 2);

  const { client: hasty } = await serve({ timeoutMs: 50 });
  await expectError(hasty.completions.create({ model: 'demo-ouro', prompt: 'a', max_tokens: 250 }), 504, { code: 'request_timeout' });
  // streamed, the limit passes after the headers were sent: it arrives as an error event, which the client throws
  const streamed = await hasty.completions.create({ model: 'demo-ouro', prompt: 'a', max_tokens: 250, stream: true }).then(async (s) => { for await (const _ of s) { /* read */ } }).then(() => null, (x: unknown) => x);
  assert.ok(streamed instanceof OpenAI.APIError && streamed.code === 'request_timeout', String(streamed));
});

test('the README\'s command and curl example work as written (on a free port)', async () => {
  const block = /```bash\n([\s\S]*?)```/.exec(readFileSync('README.md', 'utf8'))![1];
  const dir = /npx ponder serve --model (\S+)/.exec(block)![1];
  const curl = /curl http:\/\/127\.0\.0\.1:8080(\S+) .*?-d '([^']*)'/s.exec(block)!;
  const server = createServer({ model: await loadModel(dir) }); // the id is the directory's name, as the CLI's
  const listening = await listen(server, { port: 0 });
  servers.push(listening);
  const response = await fetch(`${listening.url}${curl[1]}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: curl[2] });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.usage.completion_tokens, JSON.parse(curl[2]).max_tokens);
  assert.equal(body.choices[0].depth.policy, JSON.parse(curl[2]).policy);
});
