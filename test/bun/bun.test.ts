/**
 * Bun runs the library from the built dist/ JS (binary from the `bun` npm package's platform
 * package): the golden conformance suite passes and every produced tensor is bit-identical to the
 * Node run. Run with `npm run test:bun` (builds first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ROOT, comparableConformance, nodeReference, requireBuilt, runEntry } from '../portable/run-entry.js';

const BUN = join(ROOT, 'node_modules/.bin/bun');

test('under Bun every golden case passes and every produced tensor is bit-identical to Node', () => {
  const node = nodeReference();
  const bun = runEntry(BUN, [requireBuilt('dist/test/bun/bun-main.js')], { NO_COLOR: '1' });
  assert.match(bun.result.conformance.runtime, /^bun \d/);
  assert.equal(bun.status, 0, 'the Bun process exits 0');
  assert.equal(bun.result.conformance.failed, 0);
  assert.ok(bun.result.conformance.passed >= 22, `expected all golden cases, got ${bun.result.conformance.passed}`);
  assert.deepEqual(comparableConformance(bun.result.conformance), comparableConformance(node.conformance));
});
