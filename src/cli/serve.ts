/**
 * `ponder serve`: the OpenAI-compatible server (src/serve/) on node:http. It listens at once, so
 * /health answers "loading" while the weights are read (progress on stderr); SIGTERM or Ctrl-C
 * stops taking requests, lets the ones in flight finish and returns 0; a second signal ends the
 * process at once.
 */
import { basename, resolve } from 'node:path';
import { PonderError } from '../errors.js';
import { loadModelDir } from '../node/index.js';
import { listen } from '../node/serve.js';
import { createServer } from '../serve/server.js';
import { intFlag, parseFlags } from './args.js';
import { RUNTIME_FLAGS } from './runtime-flags.js';
import { runtimeFromFlags } from './run.js';
import { MEMORY_FLAGS, MEMORY_HELP, memoryOptions } from './memory-flags.js';
import type { CliIO } from './io.js';

export const SERVE_HELP = `ponder serve --model DIR [options]

Serves one model over HTTP with the OpenAI API, so OpenAI clients, editor plugins and chat UIs can
use it: POST /v1/chat/completions and /v1/completions (streaming with "stream": true), GET /v1/models,
GET /health ("loading" / "ready"). Each choice and streamed chunk also carries a "depth" object
(steps per token, exit reasons, compute saved), and a request may set "policy" (a depth policy, as
--policy of ponder run). One generation runs at a time; others wait in line. spec/serve.md has it all.

  --model DIR, -m     model directory (config.json, weights, tokenizer.json; a chat template in
                      tokenizer_config.json or chat_template.jinja for /v1/chat/completions)
  --host ADDR         address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)
  --port N            port (default 8080; 0 picks a free one)
  --api-key KEY       require "Authorization: Bearer KEY" on /v1 (default: the PONDER_API_KEY
                      environment variable, else no key)
  --name ID           the model name clients send and /v1/models lists (default: DIR's name)
  --queue N           requests that may wait behind the running one; more get 429 (default 16)
  --timeout S         time limit of one request in seconds, waiting included (default 600)
  --max-body BYTES    largest request body (default 1048576)
  --kernels wasm|scalar   kernels to run on (default wasm)
  --threads N         WASM kernel threads (default: the available cores, at most 8; results are
                      bit-identical on any count)
  --quant-activations f32|int16|int8
                      activations of quantized weights: f32 (default, exact), int16 or int8
                      (faster decode, a measured small deviation; see ponder run --help)
  --relaxed           the relaxed-SIMD kernels (see ponder run --help)
${MEMORY_HELP}
Example:
  ponder serve --model models/demo-ouro --port 8080
  curl http://127.0.0.1:8080/v1/completions -H 'content-type: application/json' \\
    -d '{"model": "demo-ouro", "prompt": "Once upon a time", "max_tokens": 16, "policy": "exit(gate, 0.5)"}'
`;

export async function serveCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('serve', argv, {
    model: { type: 'string', short: 'm' }, host: { type: 'string' }, port: { type: 'string' }, 'api-key': { type: 'string' },
    name: { type: 'string' }, queue: { type: 'string' }, timeout: { type: 'string' }, 'max-body': { type: 'string' },
    threads: { type: 'string' }, ...RUNTIME_FLAGS, ...MEMORY_FLAGS,
  });
  if (values.help) { io.out(SERVE_HELP); return 0; }
  if (positionals.length > 0) throw new PonderError('ARG_INVALID', `serve: unexpected argument ${JSON.stringify(positionals[0])}`, { hint: 'give the model with --model DIR; see `ponder serve --help`' });
  if (values.model === undefined) throw new PonderError('ARG_INVALID', 'serve: --model DIR is required', { field: 'model', hint: 'e.g. ponder serve --model models/demo-ouro' });
  const dir = String(values.model);
  const port = values.port === '0' ? 0 : intFlag('serve', 'port', values.port, 8080);
  if (port > 65535) throw new PonderError('ARG_INVALID', `serve: --port must be at most 65535, got ${port}`, { field: 'port', hint: 'e.g. --port 8080' });
  const apiKey = values['api-key'] !== undefined ? String(values['api-key']) : process.env.PONDER_API_KEY || undefined;
  if (apiKey === '') throw new PonderError('ARG_INVALID', 'serve: --api-key may not be empty', { field: 'api-key', hint: 'leave it out for a server without a key' });
  const queue = values.queue === '0' ? 0 : intFlag('serve', 'queue', values.queue, 16);
  const timeoutS = intFlag('serve', 'timeout', values.timeout, 600);
  const maxBody = intFlag('serve', 'max-body', values['max-body'], 1 << 20);
  const memory = memoryOptions(values);
  const runtime = await runtimeFromFlags('serve', values);

  const log = (line: string): void => io.err(`${new Date().toISOString()} ${line}\n`);
  const server = createServer({
    model: (onProgress) => loadModelDir(dir, { runtime, onProgress, ...memory }),
    id: values.name !== undefined ? String(values.name) : basename(resolve(dir)),
    apiKey, maxQueue: queue, timeoutMs: timeoutS * 1000, maxBodyBytes: maxBody, log,
  });
  const listening = await listen(server, { host: values.host !== undefined ? String(values.host) : undefined, port });
  log(`listening on ${listening.url} (model ${dir} loading${apiKey ? ', API key required' : ''})`);

  let closing: Promise<void> | null = null;
  const signalled = new Promise<void>((resolveSignal) => {
    const onSignal = (signal: string): void => {
      if (closing) { log(`${signal} again: exiting now`); process.exit(1); }
      log(`${signal}: not taking new requests; finishing those in flight`);
      closing = listening.close();
      resolveSignal();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  try {
    await Promise.race([server.ready, signalled]);
  } catch (e) {
    await listening.close(); // the model failed to load
    throw e;
  }
  await signalled;
  await closing;
  log('stopped');
  return 0;
}
