/**
 * Bun serves `ponder serve`'s core natively with Bun.serve (test/bun/bun-serve.ts, built JS): the
 * openai client gets the Node library's text and depths, a disconnect stops its generation,
 * SIGTERM drains and exits 0. Run with `npm run test:bun` (builds first).
 */
import { test } from 'node:test';
import { join } from 'node:path';
import { ROOT, requireBuilt } from '../portable/run-entry.js';
import { checkNativeServer } from '../portable/serve-check.js';

test('Bun.serve runs the server core: same text and depths as Node, disconnects stop generations, SIGTERM drains', { timeout: 300_000 }, async () => {
  await checkNativeServer(join(ROOT, 'node_modules/.bin/bun'), [requireBuilt('dist/test/bun/bun-serve.js')], { NO_COLOR: '1' });
});
