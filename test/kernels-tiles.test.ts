import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createWasmRuntime, hostLinearTile, type WasmRuntime } from '../src/kernels/wasm.js';
import { LINEAR_TILES } from '../src/kernels/linear-tiles.js';
import { createNodeWasmRuntime } from '../src/node/pool-worker.js';
import { runPortableConformance } from '../src/conform/portable.js';
import { goldenFiles } from './golden-files.js';
import { prng, fillUniform, inArena, assertBitIdentical } from './kernels-support.js';

// One runtime per tile and thread count; the first is the reference every other must match.
const runtimes: { label: string; rt: WasmRuntime }[] = [];
for (const tile of LINEAR_TILES) {
  runtimes.push({ label: `${tile} 1 thread`, rt: await createWasmRuntime({ linearTile: tile }) });
  runtimes.push({ label: `${tile} 2 threads`, rt: await createNodeWasmRuntime({ linearTile: tile, threads: 2 }) });
}
after(() => Promise.all(runtimes.map(({ rt }) => rt.dispose())));

function bf16Of(a: Float32Array): Uint16Array {
  return new Uint16Array(new Uint32Array(a.buffer, a.byteOffset, a.length).map((b) => b >>> 16));
}

test('every linear tile gives the same bits, on 1 and 2 threads, for f32 and bf16 weights', () => {
  fc.assert(fc.property(
    // M: decode, the 4x8 tile's leftover rows (M mod 4), and batches large enough to k-block f32 (M·K > 128 Ki)
    fc.oneof(fc.integer({ min: 1, max: 13 }), fc.integer({ min: 14, max: 70 }), fc.constant(300)),
    // N: partial panels, a last panel of ≤ 8 columns (the 4x8 tile skips its second half)
    fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constantFrom(8, 16, 24, 72, 130)),
    fc.oneof(fc.integer({ min: 0, max: 40 }), fc.constantFrom(255, 256, 257, 500, 700)),
    fc.constantFrom('f32' as const, 'bf16' as const), fc.boolean(), fc.integer(),
    (M, N, K, dtype, withBias, seed) => {
      const rnd = prng(seed);
      const wf = fillUniform(new Float32Array(N * K), rnd);
      const src = dtype === 'f32' ? { dtype, data: wf } : { dtype, data: bf16Of(wf) };
      const xs = fillUniform(new Float32Array(M * K), rnd), bs = fillUniform(new Float32Array(N), rnd);
      const outputs = runtimes.map(({ rt }) => {
        const y = rt.arena.f32(M * N);
        rt.kernels.linear(y, inArena(rt.arena, xs), rt.kernels.bindLinear(src, N, K), M, withBias ? inArena(rt.arena, bs) : null);
        return y;
      });
      for (let i = 1; i < runtimes.length; i++) {
        assertBitIdentical(outputs[i], outputs[0], `${runtimes[i].label} vs ${runtimes[0].label}: M=${M} N=${N} K=${K} ${dtype} bias=${withBias}`);
      }
    }), { numRuns: 40, examples: [[300, 130, 500, 'f32', true, 1], [300, 24, 700, 'bf16', false, 2], [7, 8, 257, 'bf16', true, 3], [6, 72, 256, 'f32', false, 4]] });
  for (const { label, rt } of runtimes) if (rt.threads > 1) assert.ok(rt.splitJobs() > 0, `${label}: the big calls were split across the threads`);
});

test('the golden conformance digest is the same under every tile and thread count', async () => {
  const files = goldenFiles();
  const digests: string[] = [];
  for (const { label, rt } of runtimes) {
    const s = await runPortableConformance('node', files, rt);
    assert.equal(s.failed, 0, `${label}: every golden case passes`);
    digests.push(s.digest);
  }
  for (let i = 1; i < digests.length; i++) assert.equal(digests[i], digests[0], `${runtimes[i].label}: same tensor digest as ${runtimes[0].label}`);
});

test('the host tile is measured once per process: one of the tiles, each with a positive rate', async () => {
  const a = await hostLinearTile(false), b = await hostLinearTile(false);
  assert.equal(a, b, 'cached: the same measurement object');
  assert.ok(LINEAR_TILES.includes(a.tile));
  for (const tile of LINEAR_TILES) assert.ok(a.gflops[tile] > 0 && Number.isFinite(a.gflops[tile]), `${tile}: ${a.gflops[tile]} GFLOP/s`);
  assert.equal(a.tile, LINEAR_TILES.reduce((best, t) => (a.gflops[t] > a.gflops[best] ? t : best)), 'the fastest tile is chosen');
  const auto = await createWasmRuntime();
  assert.equal(auto.linearTile, a.tile);
  assert.equal(auto.linearTileMeasurement, a);
});

test('a tile that does not exist is refused with the list of tiles', async () => {
  await assert.rejects(createWasmRuntime({ linearTile: '3x16' as never }), (e: { code?: string; message?: string }) =>
    e.code === 'ARG_INVALID' && LINEAR_TILES.every((t) => e.message!.includes(t)));
});

test('in Node, PONDER_LINEAR_TILE names the tile when the option does not; a name that is no tile is refused', async () => {
  const saved = process.env.PONDER_LINEAR_TILE;
  try {
    process.env.PONDER_LINEAR_TILE = '4x8';
    const env = await createNodeWasmRuntime();
    assert.equal(env.linearTile, '4x8');
    assert.equal(env.linearTileMeasurement, undefined, 'named, not measured');
    assert.equal((await createNodeWasmRuntime({ linearTile: '2x16' })).linearTile, '2x16', 'the option wins');
    process.env.PONDER_LINEAR_TILE = 'auto';
    assert.equal((await createNodeWasmRuntime()).linearTile, (await hostLinearTile(false)).tile);
    process.env.PONDER_LINEAR_TILE = '8x8';
    await assert.rejects(createNodeWasmRuntime(), (e: { code?: string; message?: string }) => e.code === 'ARG_INVALID' && /PONDER_LINEAR_TILE=8x8/.test(e.message ?? ''));
  } finally {
    if (saved === undefined) delete process.env.PONDER_LINEAR_TILE; else process.env.PONDER_LINEAR_TILE = saved;
  }
});
