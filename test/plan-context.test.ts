/**
 * A config may allow more positions than the machine holds (max_position_embeddings, block_size):
 * without a context asked for, the memory plan takes the longest that fits, and the model is built
 * for that context — its work buffers, rope tables and KV caches — not for the config's maximum.
 * (The fuzzer found MoR sizing its buffers by max_position_embeddings = 10^6 and failing late.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../src/node/index.js';

const MiB = 2 ** 20;
const LONG = 1_000_000;

/** A copy of a bundled demo model with its context field raised to LONG. */
function longContextCopy(name: string, setContext: (config: Record<string, any>) => void): string {
  const dir = mkdtempSync(join(tmpdir(), `ponder-${name}-`));
  cpSync(join('models', name), dir, { recursive: true });
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  setContext(config);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

const cases: [string, (c: Record<string, any>) => void][] = [
  ['demo-mor', (c) => { c.model_config.max_position_embeddings = LONG; }],
  ['demo-ouro', (c) => { c.max_position_embeddings = LONG; }],
];
// (Huginn's context is block_size, which also shapes the freqs_cis table stored in its checkpoint:
// raising it alone is a mis-shaped checkpoint, BIND_MISMATCH, tested elsewhere.)

for (const [name, setContext] of cases) {
  test(`${name}: a config allowing ${LONG} positions under a 256 MiB limit loads at the plan's context, within the plan, and generates`, async () => {
    const dir = longContextCopy(name, setContext);
    try {
      const model = await loadModel(dir, { maxMemory: 256 * MiB });
      try {
        const plan = model.memoryPlan!;
        assert.ok(plan.context < LONG, `the plan's context ${plan.context} is under the config's ${LONG}`);
        assert.equal(model.contextLength, plan.context, 'the model is built for the planned context');
        assert.ok(plan.totalBytes <= 256 * MiB, `plan ${plan.totalBytes} bytes`);
        const out = await model.generate([1, 2, 3], { maxNewTokens: 2, seed: 1 }).result();
        assert.equal(out.generatedIds.length, 2);
      } finally {
        await model.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
