/**
 * `ponder serve` as a real process: it logs load progress and says where it listens; a seeded
 * request gives the text and depths `ponder run` prints with the same options; SIGTERM lets the
 * request in flight finish, then the process exits 0; a taken port is SERVE_LISTEN (exit 2).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import OpenAI from 'openai';
import { main, type CliIO } from '../src/cli/main.js';
import { parseTraceJSON } from '../src/trace/trace.js';

interface Served { child: ChildProcess; url: string; stderr: () => string; exited: Promise<number | null> }

/** Starts `ponder serve ARGS --port 0` and resolves once it says it is ready. */
function start(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/ponder-cli.ts', 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const url = /listening on (http:\/\/\S+)/.exec(err)?.[1];
      if (url && /ready: /.test(err)) resolve({ child, url, stderr: () => err, exited });
    });
    void exited.then((code) => reject(new Error(`ponder serve exited ${code} before it was ready:\n${err}`)));
  });
}

async function ponder(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const io: CliIO = { out: (t) => { out += t; }, err: (t) => { err += t; }, bundledGoldenDir: 'spec/golden' };
  return { code: await main(argv, io), out, err };
}

test('a seeded request gives the text and per-token depths of `ponder run` with the same options; SIGTERM finishes the request in flight and exits 0', { timeout: 120_000 }, async () => {
  const served = await start(['--model', 'models/demo-mor']);
  assert.match(served.stderr(), /loading: 100%/);
  const client = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const options = ['--prompt', 'Once', '--max-new-tokens', '12', '--temperature', '0.9', '--top-k', '40', '--seed', '1234', '--policy', 'fixed(2)'];
  const r = await client.completions.create({ model: 'demo-mor', prompt: 'Once', max_tokens: 12, temperature: 0.9, top_k: 40, seed: 1234, policy: 'fixed(2)' } as OpenAI.CompletionCreateParamsNonStreaming);

  const run = await ponder(['run', '--model', 'models/demo-mor', ...options]);
  assert.equal(run.code, 0, run.err);
  // plain (not a terminal): a legend line, the text, then a newline and two summary lines
  const lines = run.out.split('\n');
  const printed = lines.slice(1, -3).join('\n');
  const visible = r.choices[0].text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) => String.fromCodePoint(c === '\u007f' ? 0x2421 : 0x2400 + c.charCodeAt(0)));
  assert.equal(visible, printed);
  const json = await ponder(['run', '--model', 'models/demo-mor', ...options, '--json']);
  const steps = parseTraceJSON(json.out).tokens.filter((t) => t.phase === 'decode').map((t) => t.steps);
  assert.deepEqual((r.choices[0] as unknown as { depth: { steps: number[] } }).depth.steps, steps);

  // SIGTERM while a streamed request runs: it completes, new connections are refused, exit 0
  const stream = await client.completions.create({ model: 'demo-mor', prompt: 'a', max_tokens: 40, stream: true });
  const iterator = stream[Symbol.asyncIterator]();
  await iterator.next();
  served.child.kill('SIGTERM');
  let chunks = 1, finish = null;
  for (;;) {
    const next = await iterator.next();
    if (next.done) break;
    chunks++;
    finish = next.value.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, 'length', 'the request in flight ran to its end');
  assert.ok(chunks >= 40);
  assert.equal(await served.exited, 0, served.stderr());
  assert.match(served.stderr(), /SIGTERM: not taking new requests/);
  assert.match(served.stderr(), /stopped/);
  await assert.rejects(fetch(`${served.url}/health`));
});

test('a port already in use is SERVE_LISTEN with a hint (exit 2); a missing --model is ARG_INVALID', { timeout: 120_000 }, async () => {
  const served = await start(['--model', 'models/demo-ouro']);
  const port = new URL(served.url).port;
  const taken = await ponder(['serve', '--model', 'models/demo-ouro', '--port', port]);
  assert.equal(taken.code, 2);
  assert.match(taken.err, /^error\[SERVE_LISTEN\]: cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/m);
  assert.match(taken.err, /hint: another process uses this port/);
  served.child.kill('SIGTERM');
  assert.equal(await served.exited, 0);
  const missing = await ponder(['serve']);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /error\[ARG_INVALID\]: serve: --model DIR is required/);
  const help = await ponder(['serve', '--help']);
  assert.match(help.out, /--api-key KEY/);
});
