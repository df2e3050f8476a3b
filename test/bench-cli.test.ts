/**
 * `ponder bench kernels`: the output's shape and the flag errors. No timing is asserted (speed is
 * measured by running the benchmark, never by unit tests); a tiny plan keeps this to seconds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main, type CliIO } from '../src/cli/main.js';
import { benchCommand } from '../src/cli/bench.js';
import type { BenchPlan } from '../bench/suite.js';

function fakeIO(): CliIO & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    out(t: string) { io.stdout += t; },
    err(t: string) { io.stderr += t; },
    bundledGoldenDir: '/nonexistent',
  };
  return io;
}

// One decode shape (cold, so the stream baseline runs), one prefill shape (M ≥ 64, so its bars
// apply), one attention length; a 1 MiB rotation and a few milliseconds per measurement.
const TINY_PLAN: BenchPlan = {
  linear: [{ M: 1, K: 32, N: 48 }, { M: 64, K: 16, N: 32 }],
  attention: [{ T: 8, headDim: 16 }],
  heads: 2,
  coldBytes: 1 << 20,
  timing: { warmupMs: 5, timeMs: 5, minSampleMs: 1, minSamples: 2, retries: 0, quietCores: 0.25 },
};

const isPositiveFinite = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x > 0;

test('bench kernels --json prints one array of rows with kernel, MxKxN shape, dtype, gflops and both peers', async () => {
  const io = fakeIO();
  const code = await benchCommand(['kernels', '--json', '--kernels', 'scalar'], io, TINY_PLAN);
  assert.equal(code, 0, io.stderr);
  const rows = JSON.parse(io.stdout) as Array<Record<string, unknown>>;
  assert.ok(Array.isArray(rows));
  // 2 linear shapes × {f32, bf16} + 1 attention length × {f32, bf16 KV cache}; the scalar kernels have no thread rows.
  assert.equal(rows.length, 6);
  for (const row of rows) {
    assert.ok(row.kernel === 'linear' || row.kernel === 'attention', `kernel ${String(row.kernel)}`);
    assert.match(String(row.shape), /^\d+x\d+x\d+$/);
    assert.ok(row.dtype === 'f32' || row.dtype === 'bf16');
    assert.ok(isPositiveFinite(row.gflops), `gflops ${String(row.gflops)}`);
    assert.equal(row.implementation, 'scalar');
    const peers = row.peers as Array<Record<string, unknown>>;
    if (row.kernel === 'attention' && row.dtype === 'bf16') { // the peers have no bf16 KV cache: compared with our f32 call
      assert.deepEqual(peers, []);
      assert.ok(isPositiveFinite(row.speedupVsF32), `speedupVsF32 ${String(row.speedupVsF32)}`);
      continue;
    }
    assert.deepEqual(peers.map((p) => p.name), ['tfjs-wasm', 'ort-web']);
    for (const p of peers) assert.ok(isPositiveFinite(p.gflops), `${String(p.name)} gflops ${String(p.gflops)}`);
  }
  const shapes = rows.map((r) => `${String(r.kernel)} ${String(r.shape)} ${String(r.dtype)}`);
  assert.deepEqual(shapes, ['linear 1x32x48 f32', 'linear 1x32x48 bf16', 'linear 64x16x32 f32', 'linear 64x16x32 bf16', 'attention 1x8x16 f32', 'attention 1x8x16 bf16']);
});

test('decode rows carry GB/s and their share of the same-run stream read; --no-peers leaves peers empty', async () => {
  const io = fakeIO();
  assert.equal(await benchCommand(['kernels', '--json', '--no-peers', '--kernels', 'scalar'], io, TINY_PLAN), 0, io.stderr);
  const rows = JSON.parse(io.stdout) as Array<Record<string, unknown>>;
  for (const row of rows.filter((r) => String(r.shape).startsWith('1x32x'))) {
    assert.equal(row.cold, true);
    assert.ok(isPositiveFinite(row.gbps) && isPositiveFinite(row.streamGbps) && isPositiveFinite(row.pctOfStream));
    // gbps and pctOfStream are two views of one measurement.
    assert.ok(Math.abs((row.pctOfStream as number) - (100 * (row.gbps as number)) / (row.streamGbps as number)) < 1e-9);
  }
  for (const row of rows.filter((r) => r.kernel === 'linear')) assert.deepEqual(row.peers, []);
  // attention streams its K and V: the same view of one measurement
  for (const row of rows.filter((r) => r.kernel === 'attention')) {
    assert.equal(row.cold, true);
    assert.ok(Math.abs((row.pctOfStream as number) - (100 * (row.gbps as number)) / (row.streamGbps as number)) < 1e-9);
  }
});

test('an operand larger than the cold rotation (a long KV cache) still gets its same-run stream read', async () => {
  const io = fakeIO();
  const plan: BenchPlan = { ...TINY_PLAN, linear: [], attention: [{ T: 4096, headDim: 64 }] }; // K and V: 4 MiB > 1 MiB
  assert.equal(await benchCommand(['kernels', '--json', '--no-peers', '--kernels', 'scalar'], io, plan), 0, io.stderr);
  const [row] = JSON.parse(io.stdout) as Array<Record<string, unknown>>;
  assert.equal(row.shape, '1x4096x64');
  assert.ok(isPositiveFinite(row.streamGbps) && isPositiveFinite(row.pctOfStream));
});

test('every row names the host CPU; prefill rows carry their share of the 128-bit SIMD issue rate, the tile and (f32) every tile', async () => {
  const io = fakeIO();
  assert.equal(await benchCommand(['kernels', '--json', '--no-peers'], io, TINY_PLAN), 0, io.stderr);
  const rows = JSON.parse(io.stdout) as Array<Record<string, unknown>>;
  for (const row of rows) assert.match(String(row.cpu), /\S/);
  const prefill = rows.filter((r) => r.kernel === 'linear' && String(r.shape).startsWith('64x'));
  assert.equal(prefill.length, 4);
  for (const row of prefill) {
    assert.ok(isPositiveFinite(row.clockGHz) && isPositiveFinite(row.peakGflops));
    assert.ok(Math.abs((row.pctOfPeak as number) - (100 * (row.gflops as number)) / (row.peakGflops as number)) < 1e-9);
    assert.ok(['2x16', '2x16i', '4x8'].includes(String(row.tile)), `tile ${String(row.tile)}`);
    const bars = (row.bars as Array<Record<string, unknown>>).map((b) => String(b.bar));
    if (row.threads === 1) assert.ok(bars.includes('prefill ≥ 85% of the 128-bit SIMD issue rate'), bars.join('; '));
  }
  const tiled = prefill.filter((r) => r.tiles !== undefined);
  assert.deepEqual(tiled.map((r) => `${String(r.dtype)} ${String(r.threads)}`), ['f32 1'], 'every tile is timed on the f32 one-thread row');
  assert.deepEqual((tiled[0].tiles as Array<Record<string, unknown>>).map((t) => t.name), ['2x16', '2x16i', '4x8']);
});

test('with the wasm kernels every prefill row (M >= 64) is followed by its 2-thread twin, carrying the speedup and its bar', async () => {
  const io = fakeIO();
  assert.equal(await benchCommand(['kernels', '--json', '--no-peers'], io, TINY_PLAN), 0, io.stderr);
  const rows = JSON.parse(io.stdout) as Array<Record<string, unknown>>;
  const linear = rows.filter((r) => r.kernel === 'linear').map((r) => `${String(r.shape)} ${String(r.dtype)} ${String(r.threads)}`);
  assert.deepEqual(linear, ['1x32x48 f32 1', '1x32x48 bf16 1', '64x16x32 f32 1', '64x16x32 f32 2', '64x16x32 bf16 1', '64x16x32 bf16 2']);
  for (const row of rows.filter((r) => r.kernel === 'linear')) assert.match(String(row.implementation), row.threads === 2 ? /^wasm-simd-x2$/ : /^wasm-simd$/);
  for (const row of rows.filter((r) => r.threads === 2)) {
    assert.ok(isPositiveFinite(row.speedupVsOneThread));
    const bars = row.bars as Array<Record<string, unknown>>;
    assert.equal(bars.length, 1);
    assert.equal(bars[0].pass, (row.speedupVsOneThread as number) >= 1.8);
  }
});

test('bench kernels text output names the machine, the noise caveat and the acceptance bars', async () => {
  const io = fakeIO();
  assert.equal(await benchCommand(['kernels', '--kernels', 'scalar'], io, TINY_PLAN), 0, io.stderr);
  assert.match(io.stdout, /Node v\d+/);
  assert.match(io.stdout, /^CPU: .+ flop\/cycle plain/m);
  assert.match(io.stdout, /shared machine/);
  assert.match(io.stdout, /(PASS|FAIL) prefill ≥ 1\.5× tfjs-wasm/);
  assert.match(io.stdout, /(PASS|FAIL) prefill ≥ 1\.5× ort-web/);
});

for (const argv of [
  ['bench', 'kernels', '--bogus'],
  ['bench'],
  ['bench', 'matmul'],
  ['bench', 'kernels', '--kernels', 'gpu'],
  ['bench', 'kernels', '--kernels'],
  ['bench', 'kernels', 'extra'],
  ['bench', 'kernels', '--relaxed', '--kernels', 'scalar'],
  ['bench', 'kernels', '--wait-quiet', 'soon'],
]) {
  test(`bad usage \`ponder ${argv.join(' ')}\` exits 2 with an error[ARG_*] line`, async () => {
    const io = fakeIO();
    assert.equal(await main(argv, io), 2);
    assert.match(io.stderr, /^error\[ARG_[A-Z_]+\]: /);
    assert.equal(io.stdout, '');
  });
}

test('bench --help shows an example and exits 0', async () => {
  const io = fakeIO();
  assert.equal(await main(['bench', '--help'], io), 0);
  assert.match(io.stdout, /Examples:\n {2}ponder bench kernels/);
});
