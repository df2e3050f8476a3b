/**
 * Test-side (Node): runs another runtime's native server entry (test/deno/deno-serve.ts,
 * test/bun/bun-serve.ts) as a child process and drives it with the openai client: a seeded
 * completion gives the text and per-token depths of the Node library, a stream the same again, a
 * client that disconnects stops its generation and frees its turn, and SIGTERM lets a streamed
 * request finish before the process exits 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import OpenAI from 'openai';
import { loadModel } from '../../src/node/index.js';
import { ROOT } from './run-entry.js';
import { SERVED_MODEL } from './serve-model.js';

export async function checkNativeServer(command: string, args: string[], env: Record<string, string> = {}): Promise<void> {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr!.on('data', (d: Buffer) => { out += `[stderr] ${d.toString()}`; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const found = /LISTENING (\S+)/.exec(out)?.[1];
      if (found) resolve(found);
    });
    void exited.then((code) => reject(new Error(`${command} exited ${code} before listening:\n${out}`)));
  });
  try {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const model = await loadModel(`models/${SERVED_MODEL}`);
    const request = { model: SERVED_MODEL, prompt: 'The recursive model', max_tokens: 12, temperature: 0.8, seed: 9, policy: 'exit(gate, 0.5)' };
    const want = await model.generate(request.prompt, { maxNewTokens: 12, seed: 9, sampling: { temperature: 0.8 }, policy: { kind: 'exit', criterion: 'gate', threshold: 0.5 } }).result();
    const steps = want.trace.tokens.filter((t) => t.phase === 'decode').map((t) => t.steps);

    const r = await client.completions.create(request as OpenAI.CompletionCreateParamsNonStreaming);
    assert.equal(r.choices[0].text, want.text);
    assert.deepEqual((r.choices[0] as unknown as { depth: { steps: number[] } }).depth.steps, steps);
    assert.equal(r.usage?.prompt_tokens, want.promptIds.length);

    let streamed = '';
    const streamedSteps: number[] = [];
    for await (const chunk of await client.completions.create({ ...request, stream: true } as OpenAI.CompletionCreateParamsStreaming)) {
      streamed += chunk.choices[0].text;
      if (!chunk.choices[0].finish_reason) streamedSteps.push(...(chunk.choices[0] as unknown as { depth: { steps: number[] } }).depth.steps);
    }
    assert.equal(streamed, want.text);
    assert.deepEqual(streamedSteps, steps);

    // a client that goes away: its generation stops early and the next request runs
    const controller = new AbortController();
    const long = await client.completions.create({ model: SERVED_MODEL, prompt: 'a', max_tokens: 250, stream: true }, { signal: controller.signal });
    await long[Symbol.asyncIterator]().next();
    controller.abort();
    const next = await client.completions.create({ model: SERVED_MODEL, prompt: 'b', max_tokens: 3 });
    assert.equal(next.usage?.completion_tokens, 3);
    const gone = /client disconnected after (\d+) tokens/.exec(out);
    assert.ok(gone && Number(gone[1]) < 250, `the disconnect was seen and stopped the generation:\n${out}`);

    // SIGTERM with a streamed request in flight: it runs to its end, then exit 0
    const inFlight = await client.completions.create({ model: SERVED_MODEL, prompt: 'c', max_tokens: 60, stream: true });
    const it = inFlight[Symbol.asyncIterator]();
    await it.next();
    child.kill('SIGTERM');
    let finish = null;
    for (;;) { const n = await it.next(); if (n.done) break; finish = n.value.choices[0]?.finish_reason ?? finish; }
    assert.equal(finish, 'length');
    assert.equal(await exited, 0, out);
    assert.match(out, /stopped/);
  } finally {
    child.kill('SIGKILL');
    for (const line of out.split('\n')) if (line) console.log(`  ${line}`);
  }
}
