/**
 * The published full-size checkpoints, from their headers only (scripts/synthetic-checkpoint.ts
 * writes the same configs and tensor lists with data for hand-run checks): their config.json
 * parses with nothing left unread, the memory plan places them in memory shards, and a request
 * over the machine limit is refused by the family's load before any tensor byte is read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configObject, unknownKeys } from '../src/format/config.js';
import { huginnFamily } from '../src/models/huginn-family.js';
import { ouroFamily } from '../src/models/ouro-family.js';
import { planFamily } from '../src/models/placement.js';
import type { FamilyDefinition } from '../src/models/family.js';
import type { WeightInfo, WeightSource } from '../src/models/weights.js';
import { MEMORY_PLAN_LIMIT_BYTES } from '../src/runtime/plan.js';
import { PonderError } from '../src/errors.js';
import { huginnCheckpoint, huginnPublishedConfig, ouroCheckpoint, ouroPublishedConfig, type SyntheticCheckpoint } from '../scripts/synthetic-checkpoint.js';

const GiB = 2 ** 30;

/** The checkpoint's headers (every tensor the writer would write, bf16); reading any data fails the test. */
function headersOf(checkpoint: SyntheticCheckpoint, label: string): WeightSource {
  const infos = new Map<string, WeightInfo>(checkpoint.tensors.map((t) => [t.name, { dtype: 'BF16', shape: [...t.shape] }]));
  return { label, names: () => [...infos.keys()], info: (n) => infos.get(n), read: (n) => assert.fail(`tensor ${n} was read`) };
}

const models: [string, FamilyDefinition<unknown>, SyntheticCheckpoint][] = [
  ['huginn-0125', huginnFamily as FamilyDefinition<unknown>, huginnCheckpoint(huginnPublishedConfig())],
  ['ouro-2.6b', ouroFamily as FamilyDefinition<unknown>, ouroCheckpoint(ouroPublishedConfig(48))],
];

for (const [name, family, checkpoint] of models) {
  test(`${name}: the published config.json is read with no key left over, and every tensor the writer lists is one the family expects`, () => {
    const raw = configObject(JSON.parse(JSON.stringify(checkpoint.config)), 'config.json');
    const config = family.parseConfig(raw);
    assert.deepEqual(unknownKeys(raw), []);
    const expected = new Map(family.tensors(config).map((t) => [t.name, t.shape]));
    for (const t of checkpoint.tensors) assert.deepEqual(expected.get(t.name), t.shape, t.name);
  });

  test(`${name}: the bf16 plan needs more than one 4 GiB memory and splits into shards each within one memory`, () => {
    const config = family.parseConfig(configObject(checkpoint.config, 'config.json'));
    const plan = planFamily(family, config, headersOf(checkpoint, name), {}, { context: 256 });
    assert.ok(plan.shards.length >= 2, `${plan.shards.length} shards`);
    for (const s of plan.shards) assert.ok(s.totalBytes <= MEMORY_PLAN_LIMIT_BYTES);
    const weights = plan.shards.reduce((a, s) => a + s.weightBytes, 0);
    const stored = checkpoint.tensors.reduce((a, t) => a + 2 * t.shape.reduce((x, y) => x * y, 1), 0);
    assert.ok(weights > 0.8 * stored && weights < 1.1 * stored, `bound ${weights} vs stored ${stored} bytes`);
  });

  test(`${name}: a context over the machine limit is refused by load (MEM_OVER_LIMIT, naming what fits) before any tensor is read`, () => {
    const config = family.parseConfig(configObject(checkpoint.config, 'config.json'));
    const context = name === 'huginn-0125' ? 4096 : 65536;
    assert.throws(() => family.load(config, headersOf(checkpoint, name), { kernels: {} as never, arena: {} as never }, { context, maxMemory: 16 * GiB }), (e: unknown) => {
      assert.ok(e instanceof PonderError && e.code === 'MEM_OVER_LIMIT', String(e));
      assert.match(e.message, new RegExp(`${context} tokens`));
      assert.match(e.hint ?? '', /a context of at most \d+ tokens/);
      return true;
    });
  });
}
