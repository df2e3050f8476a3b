/**
 * The server every runtime serves natively in the portable serve tests (test/deno, test/bun): the
 * bundled demo-ouro model loaded from in-memory bytes, behind the same createServer core that
 * node:http serves. Log lines go to `log` (the Node side reads them from stdout).
 */
import { loadModel } from '../../src/api/load.js';
import { createServer, type PonderServer } from '../../src/serve/server.js';
import type { ModelFileReader } from './generation.js';

export const SERVED_MODEL = 'demo-ouro';

export function demoServer(files: ModelFileReader, log: (line: string) => void): PonderServer {
  return createServer({
    id: SERVED_MODEL,
    log,
    model: async () => loadModel({
      config: await files.readText('config.json'),
      files: { 'model.safetensors': await files.readBytes('model.safetensors') },
      tokenizer: await files.readText('tokenizer.json'),
      label: SERVED_MODEL,
    }, { importTokenizers: () => import('@huggingface/tokenizers') }),
  });
}

/** SIGTERM: stop accepting connections (`closeHttp`), let the requests in flight finish, then exit 0. */
export async function drainAndExit(server: PonderServer, closeHttp: () => Promise<void> | void, exit: (code: number) => never): Promise<never> {
  const closing = closeHttp(); // no new connections; the open ones finish
  await server.drain();
  await closing;
  console.log('stopped');
  return exit(0);
}
