/**
 * Bun runs the library from the built dist/ JS (binary from the `bun` npm package's platform
 * package): the golden conformance suite passes and every produced tensor is bit-identical to the
 * Node run; the demo models generate the same tokens with the same per-token depths.
 * Run with `npm run test:bun` (builds first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { defaultThreads } from '../../src/runtime/pool.js';
import { ROOT, assertSameAsNode, nodeReference, requireBuilt, runEntry } from '../portable/run-entry.js';

const BUN = join(ROOT, 'node_modules/.bin/bun');

test('under Bun every golden case passes bit-identical to Node, and generation streams the same tokens and depths', () => {
  const node = nodeReference();
  const bun = runEntry(BUN, [requireBuilt('dist/test/bun/bun-main.js')], { NO_COLOR: '1' });
  assert.match(bun.result.conformance.runtime, /^bun \d/);
  assert.equal(bun.status, 0, 'the Bun process exits 0');
  assertSameAsNode(bun.result, node);
  assert.equal(bun.result.defaultRuntimeThreads, defaultThreads(availableParallelism()), 'loadModel defaults to one kernel thread per core (Web Workers, unref\'d)');
});
