/**
 * Deno runs the library from the built dist/ JS (binary from the `deno` npm package): the golden
 * conformance suite passes and every produced tensor is bit-identical to the Node run; the demo
 * models generate the same tokens with the same per-token depths.
 * Run with `npm run test:deno` (builds first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ROOT, assertSameAsNode, nodeReference, requireBuilt, runEntry } from '../portable/run-entry.js';

const DENO = join(ROOT, 'node_modules/.bin/deno');

test('under Deno every golden case passes bit-identical to Node, and generation streams the same tokens and depths', () => {
  const node = nodeReference();
  const deno = runEntry(DENO, ['run', '--allow-read', requireBuilt('dist/test/deno/deno-main.js')], { DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' });
  assert.match(deno.result.conformance.runtime, /^deno \d/);
  assert.equal(deno.status, 0, 'the Deno process exits 0');
  assertSameAsNode(deno.result, node);
  assert.equal(deno.result.defaultRuntimeThreads, 1, 'no implicit pool under Deno: its live Workers would keep the process running');
});
