import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PonderError } from '../src/errors.js';
import { HuginnCache, parseCacheStrategy, type CacheEntry } from '../src/models/huginn-cache.js';

const entry = (tag: number): CacheEntry => ({ k: Float32Array.of(tag), v: Float32Array.of(-tag) });
const tags = (es: CacheEntry[]): number[] => es.map((e) => e.k[0]);

/** Files one token (position = seenTokens) through prelude slots 0,1 and core slots 2.. for `iterations`, P=2, R=4. */
function fileToken(cache: HuginnCache, iterations: number, tag: number): void {
  cache.update(0, [entry(tag)]);
  cache.update(1, [entry(tag)]);
  for (let k = 0; k < iterations; k++) for (let j = 0; j < 4; j++) cache.update(2 + 4 * k + j, [entry(tag * 100 + k)]);
}

test('compression remaps only core slots (> 1) as upstream: ring (s), runs (r), anchor after 8 iterations', () => {
  const s4 = new HuginnCache('compress-s4'), r2 = new HuginnCache('compress-r2'), anchor = new HuginnCache('compress-anchor');
  for (const c of [s4, r2, anchor]) for (const slot of [-2, -1, 0, 1]) assert.equal(c.storageSlot(slot), slot);
  assert.deepEqual([2, 3, 5, 6, 9, 13].map((s) => s4.storageSlot(s)), [2, 3, 5, 2, 5, 5]);
  assert.deepEqual([2, 3, 4, 5, 9].map((s) => r2.storageSlot(s)), [2, 2, 3, 3, 5]);
  assert.deepEqual([2, 33, 34, 37, 38, 41, 130].map((s) => anchor.storageSlot(s)), [2, 33, 34, 37, 34, 37, 34]);
});

test('strategy names are matched like upstream (lookup prefix, compress- substring) and typos are rejected', () => {
  assert.deepEqual(parseCacheStrategy('latest-m4-compress-s16'), { lookup: 'latest-m4', compression: { kind: 's', n: 16 } });
  assert.deepEqual(parseCacheStrategy('compress-anchor'), { lookup: 'full', compression: { kind: 'anchor' } });
  for (const bad of ['lastest-m4', 'full-compress-x3', 'skip-compress-s0']) {
    assert.throws(() => parseCacheStrategy(bad), (e: unknown) => e instanceof PonderError && e.code === 'HUGINN_CACHE_STRATEGY', bad);
  }
});

test('a token that exited early leaves holes that each lookup fills as upstream does', () => {
  const make = (strategy: string): HuginnCache => {
    const c = new HuginnCache(strategy, (n) => n - 1); // "random" pick: always the latest candidate
    fileToken(c, 3, 1); // position 0 ran 3 iterations
    fileToken(c, 1, 2); // position 1 exited after 1
    return c;
  };
  // the current token (position 2) at iteration 2, core layer 0 → slot 10
  const at = (strategy: string): number[] => {
    const c = make(strategy);
    fileToken(c, 2, 3);
    return tags(c.update(10, [entry(999)]));
  };
  assert.deepEqual(at('full'), [102, 999]); // position 1 has no slot 10: invisible
  assert.deepEqual(at('skip'), [102, 999]);
  assert.deepEqual(at('latest-m4'), [102, 200, 999]); // position 1: its latest layer-0 entry (iteration 0)
  assert.deepEqual(at('available-m4'), [102, 200, 999]);
  assert.deepEqual(at('always-last-m4'), [102, 200, 999]);
  assert.deepEqual(at('randomized'), [102, 200, 999]); // candidates: every same-layer slot up to the current one
  // always-last-m4 may look past the current slot: at iteration 0 position 0 contributes its iteration-2 keys
  const c = new HuginnCache('always-last-m4');
  fileToken(c, 3, 1);
  fileToken(c, 1, 2);
  c.update(0, [entry(3)]); c.update(1, [entry(3)]);
  c.update(2, [entry(300)]);
  // slot 2 holds every position, so the fast path returns it unchanged
  assert.deepEqual(tags([c.entry(2, 0)!, c.entry(2, 1)!, c.entry(2, 2)!]), [100, 200, 300]);
});

test('clearing the last k positions drops them from every slot and rewinds the position counter', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 6 }), fc.nat(), (iterations, kSeed) => {
    const c = new HuginnCache('full');
    iterations.forEach((n, i) => fileToken(c, n, i + 1));
    const k = kSeed % (iterations.length + 1);
    c.clearLastK(k);
    assert.equal(c.seenTokens, iterations.length - k);
    for (const slot of c.slotIds()) for (let p = 0; p < iterations.length; p++) assert.equal(c.has(slot, p), p < iterations.length - k && (slot < 2 || iterations[p] > Math.floor((slot - 2) / 4)));
    const bytesPerEntry = 2 * 4;
    let entries = 0;
    for (const slot of c.slotIds()) for (let p = 0; p < c.seenTokens; p++) if (c.has(slot, p)) entries++;
    assert.equal(c.memoryBytes(), entries * bytesPerEntry);
  }), { numRuns: 40 });
});

test('the m4 lookups report a missing candidate instead of crashing', () => {
  const c = new HuginnCache('latest-m4');
  c.update(0, [entry(1)]);
  c.update(0, [entry(2)]);
  assert.throws(() => c.update(3, [entry(5)]), (e: unknown) => e instanceof PonderError && e.code === 'HUGINN_CACHE_LOOKUP');
});

/** Files one token through prelude slots 0..P-1, core slots P + k·R + j for `iterations`, then coda slots -1..-C. */
function fileShaped(cache: HuginnCache, P: number, R: number, iterations: number, tag: number): void {
  for (let i = 0; i < P; i++) cache.update(i, [entry(tag)]);
  for (let k = 0; k < iterations; k++) for (let j = 0; j < R; j++) cache.update(P + k * R + j, [entry(tag * 100 + k * 10 + j)]);
  cache.update(-1, [entry(-tag)]);
}

test('the "latest" lookup is latest-m4 on huginn-0125\'s shape (P=2, R=4)', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 4 }), fc.nat(3), (past, iteration, j) => {
    const read = (strategy: string): number[] => {
      const c = new HuginnCache(strategy, null, 'f32', { prelude: 2, core: 4 });
      past.forEach((n, i) => fileShaped(c, 2, 4, n, i + 1));
      fileShaped(c, 2, 4, iteration - 1, 9);
      for (let jj = 0; jj < j; jj++) c.update(2 + (iteration - 1) * 4 + jj, [entry(-1)]);
      return tags(c.update(2 + (iteration - 1) * 4 + j, [entry(999)]));
    };
    assert.deepEqual(read('latest'), read('latest-m4'));
  }), { numRuns: 60 });
});

test('on any shape the "latest" lookup gives an exited position the same core layer\'s entry of its last iteration', () => {
  fc.assert(fc.property(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }), fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 6 }), (P, R, past, iteration) => {
    const c = new HuginnCache('latest', null, 'f32', { prelude: P, core: R });
    past.forEach((n, i) => fileShaped(c, P, R, n, i + 1));
    for (let i = 0; i < P; i++) c.update(i, [entry(9)]);
    for (let k = 0; k < iteration; k++) {
      for (let j = 0; j < R; j++) {
        const seen = tags(c.update(P + k * R + j, [entry(900 + k * 10 + j)]));
        // every past position is visible, at its own iteration k if it ran it, else at its last one
        assert.deepEqual(seen, [...past.map((n, i) => (i + 1) * 100 + Math.min(k, n - 1) * 10 + j), 900 + k * 10 + j]);
      }
    }
    // prelude and coda slots hold every position: nothing is filled there
    assert.deepEqual(tags(c.update(-1, [entry(-9)])), [...past.map((_, i) => -(i + 1)), -9]);
  }), { numRuns: 80 });
});

test('the "latest" lookup needs the model\'s shape, is matched whole and takes no compression', () => {
  for (const make of [() => new HuginnCache('latest'), () => new HuginnCache('latest-compress-s4', null, 'f32', { prelude: 1, core: 1 })]) {
    assert.throws(make, (e: unknown) => e instanceof PonderError && e.code === 'HUGINN_CACHE_STRATEGY');
  }
  assert.equal(parseCacheStrategy('latest-m4').lookup, 'latest-m4');
  assert.equal(parseCacheStrategy('latest').lookup, 'latest');
  for (const typo of ['latest-m5', 'latestm4', 'latest-compress-s4']) assert.throws(() => parseCacheStrategy(typo), (e: unknown) => e instanceof PonderError && e.code === 'HUGINN_CACHE_STRATEGY', typo);
});
