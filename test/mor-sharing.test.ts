/**
 * Parameter sharing (shared/research/mor.md §2): a routing-free recursive model under any sharing
 * strategy — including depths that do not divide and unshared norms — computes exactly what a plain
 * Llama holding copies of the shared weights computes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { bindMor } from '../src/models/mor.js';
import { parseMorConfig } from '../src/models/mor-config.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { fixtureWeights, makeFixture, mulberry32, randomIds } from './mor-fixture.js';

type Strategy = 'cycle' | 'sequence' | 'middle_cycle' | 'middle_sequence';

/** Position of the layer whose weights position p uses, written from upstream's sharing_strategy loops. */
function owner(p: number, strategy: Strategy, R: number, bd: number): number {
  for (let j = 0; j < bd; j++) {
    const group = Array.from({ length: R }, (_, r) =>
      strategy === 'cycle' ? j + r * bd : strategy === 'sequence' ? j * R + r : strategy === 'middle_cycle' ? 1 + j + r * bd : 1 + j * R + r);
    if (group.includes(p)) return group[0];
  }
  return p;
}

test('recursive baseline under every sharing strategy equals a plain Llama with copies of the shared weights', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 1 << 30 }), fc.constantFrom<Strategy>('cycle', 'sequence', 'middle_cycle', 'middle_sequence'),
    fc.integer({ min: 2, max: 4 }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.integer({ min: 1, max: 12 }),
    (seed, strategy, R, bd, extra, lnShare, T) => {
      const middle = strategy.startsWith('middle');
      const n = bd * R + (middle ? 2 : 0);           // layers after sharing_strategy's subsampling
      const L = n + (extra % R);                      // num_hidden_layers as configured
      const base = makeFixture({ variant: 'vanilla', bd: n - 2, seed });
      const rand = mulberry32(seed + 1);
      const tensors = new Map([...base.tensors].filter(([name]) => !name.startsWith('model.layers.')));
      const unique = new Map<string, { shape: number[]; data: Float32Array }>();
      for (const [name, t] of base.tensors) if (name.startsWith('model.layers.')) unique.set(name, t);
      // shared tensors: every alias carries the owner's values
      for (let p = 0; p < n; p++) {
        for (const [name, t] of unique) {
          const m = /^model\.layers\.(\d+)\.(.*)$/.exec(name)!;
          if (Number(m[1]) !== p) continue;
          const isNorm = m[2].includes('layernorm');
          const src = isNorm && !lnShare ? p : owner(p, strategy, R, bd);
          const srcT = unique.get(`model.layers.${src}.${m[2]}`)!;
          tensors.set(name, { shape: t.shape, data: isNorm && !lnShare ? Float32Array.from(t.data, (x) => Math.fround(x + 0.01 * rand())) : srcT.data });
        }
      }
      const vanillaConfig = structuredClone(base.config) as any;
      const recursiveConfig = structuredClone(base.config) as any;
      recursiveConfig.model_config.num_hidden_layers = L;
      recursiveConfig.cfg = { recursive: { enable: true, num_recursion: R, sharing: strategy, ln_share: lnShare, initialization: 'random' }, mor: { enable: false } };
      const ids = randomIds(seed, 1, T, 64);
      const run = (config: unknown) => {
        const model = bindMor(parseMorConfig(config), fixtureWeights(tensors), createScalarRuntime(), { maxLen: 16 });
        return model.forward(model.newSession(1, 16), ids).logits;
      };
      assert.deepEqual(Array.from(run(recursiveConfig)), Array.from(run(vanillaConfig)));
    }), { numRuns: 30 });
});

test('KV sharing with update_cache and every token selected equals the unshared use_cache=False forward (prefill)', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 1 << 30 }), fc.integer({ min: 2, max: 4 }), fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 12 }),
    (seed, R, bd, T) => {
      const fx = makeFixture({ variant: 'expert', sharing: 'middle_cycle', R, bd, seed, kvSharing: true, capacity: Array(R).fill(1) });
      const shared = structuredClone(fx.config) as any;
      shared.cfg.kv_sharing.update_cache = true;
      const ids = randomIds(seed, 1, T, 64);
      const model = bindMor(parseMorConfig(shared), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 16 });
      const refreshed = model.forward(model.newSession(1, 16), ids).logits;
      const unshared = model.forward(model.newSession(1, 16, { useCache: false }), ids).logits;
      const plainShared = bindMor(parseMorConfig(fx.config), fixtureWeights(fx.tensors), createScalarRuntime(), { maxLen: 16 });
      const stale = plainShared.forward(plainShared.newSession(1, 16), ids).logits;
      assert.deepEqual(Array.from(refreshed), Array.from(unshared));
      if (T > 1) assert.notDeepEqual(Array.from(stale), Array.from(unshared)); // sharing really reads recursion 0's K/V
    }), { numRuns: 20 });
});
