import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createWasmRuntime, type WasmRuntime } from '../src/kernels/wasm.js';
import { createNodeWasmRuntime, enableRelaxedSimd } from '../src/node/pool-worker.js';
import { LINEAR_TILES } from '../src/kernels/linear-tiles.js';
import { scalarKernels as twin } from '../src/kernels/scalar.js';
import { linearQuantI16 } from '../src/kernels/quant.js';
import type { QuantizedSource } from '../src/kernels/kernels.js';
import { prng, fillUniform, inArena, assertBitIdentical } from './kernels-support.js';

// The plain build under every tile, on 1 and 2 threads: each must equal the scalar twin bit for bit.
const runtimes: { label: string; rt: WasmRuntime }[] = [];
for (const tile of LINEAR_TILES) {
  runtimes.push({ label: `${tile} 1 thread`, rt: await createWasmRuntime({ linearTile: tile }) });
  runtimes.push({ label: `${tile} 2 threads`, rt: await createNodeWasmRuntime({ linearTile: tile, threads: 2 }) });
}
after(() => Promise.all(runtimes.map(({ rt }) => rt.dispose())));

// Every runtime is created here, before the first test: the runner may end the file's root test
// (and run these `after` hooks, closing the pools) while a later top-level await is pending, and a
// test declared after that await would then run its "2 threads" runtimes on one thread (seen with
// a test that counted the worker's share of a job: its int16 pool had been closed).

// The int16-activation mode (opt-in) on 1 and 2 threads, each equal to its scalar twin bit for bit
// (integer dots and an f32 epilogue that never fuses: the relaxed build runs the same code).
const int16Runtimes: { label: string; rt: WasmRuntime }[] = [
  { label: 'int16 1 thread', rt: await createWasmRuntime({ quantActivations: 'int16' }) },
  { label: 'int16 2 threads', rt: await createNodeWasmRuntime({ quantActivations: 'int16', threads: 2 }) },
];
after(() => Promise.all(int16Runtimes.map(({ rt }) => rt.dispose())));

// The int8-activation mode: the plain build runs the int16 kernels on int8-range activations, the
// relaxed build a byte dot at 4 bits; all of them, on 1 and 2 threads, equal the twin bit for bit
// (integer dots are exact, the f32 epilogue never fuses).
enableRelaxedSimd();
const int8Runtimes: { label: string; rt: WasmRuntime }[] = [
  { label: 'int8 1 thread', rt: await createWasmRuntime({ quantActivations: 'int8' }) },
  { label: 'int8 2 threads', rt: await createNodeWasmRuntime({ quantActivations: 'int8', threads: 2 }) },
  { label: 'int8 relaxed 1 thread', rt: await createWasmRuntime({ quantActivations: 'int8', relaxed: true }) },
  { label: 'int8 relaxed 2 threads', rt: await createNodeWasmRuntime({ quantActivations: 'int8', relaxed: true, threads: 2 }) },
];
after(() => Promise.all(int8Runtimes.map(({ rt }) => rt.dispose())));

/** f32 values that are exact bf16 (what scales and biases widened from a bf16 checkpoint look like). */
function bf16Values(n: number, rnd: () => number, scale: number): Float32Array {
  const a = fillUniform(new Float32Array(n), rnd, scale);
  const bits = new Uint32Array(a.buffer);
  for (let i = 0; i < n; i++) bits[i] &= 0xffff0000;
  return a;
}

/** Random codes (every bit pattern of the u32 words is a valid set of codes) and bf16-exact scales and biases. */
function randomQuantized(bits: 8 | 4, gs: number, N: number, K: number, rnd: () => number): QuantizedSource {
  const codes = new Uint32Array(N * K * bits / 32);
  for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(rnd() * 2 ** 32);
  return { dtype: bits === 8 ? 'q8' : 'q4', groupSize: gs, codes, scales: bf16Values(N * K / gs, rnd, 0.02), biases: bf16Values(N * K / gs, rnd, 0.1) };
}

const problem = fc.record({
  bits: fc.constantFrom(8 as const, 4 as const),
  gs: fc.constantFrom(32, 64, 128),
  M: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 9 }), fc.constant(37)),
  N: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constantFrom(16, 32, 72)),
  groups: fc.integer({ min: 1, max: 6 }),   // K = groups · gs: up to 768, past the 256 k-block
  withBias: fc.boolean(),
  seed: fc.integer(),
});

test('quantized linear equals its scalar twin bit for bit, under every tile and on 2 threads, writing only y', () => {
  fc.assert(fc.property(problem, ({ bits, gs, M, N, groups, withBias, seed }) => {
    const K = groups * gs, rnd = prng(seed);
    const src = randomQuantized(bits, gs, N, K, rnd);
    const xs = fillUniform(new Float32Array(M * K), rnd), bs = fillUniform(new Float32Array(N), rnd);
    const ref = new Float32Array(M * N);
    twin.linear(ref, xs, twin.bindLinear(src, N, K), M, withBias ? bs : null);
    for (const { label, rt } of runtimes) {
      const whole = rt.arena.f32(M * N + 2);
      whole.fill(-7);
      const y = whole.subarray(1, 1 + M * N);
      rt.kernels.linear(y, inArena(rt.arena, xs), rt.kernels.bindLinear(src, N, K), M, withBias ? inArena(rt.arena, bs) : null);
      assertBitIdentical(y, ref, `${label}: q${bits} g${gs} M=${M} N=${N} K=${K} bias=${withBias}`);
      assert.ok(whole[0] === -7 && whole[M * N + 1] === -7, `${label}: wrote outside y`);
    }
  }), { numRuns: 60, examples: [[{ bits: 4, gs: 64, M: 300, N: 130, groups: 8, withBias: true, seed: 1 }], [{ bits: 8, gs: 128, M: 37, N: 24, groups: 3, withBias: false, seed: 2 }]] });
  for (const { label, rt } of runtimes) if (rt.threads > 1) assert.ok(rt.splitJobs() > 0, `${label}: the big calls were split across the threads`);
});

test('on the unit vectors, quantized linear (twin and kernel) gives w = scale·code + bias with MLX\'s packing (low bits first in each u32 word)', () => {
  // one row, K = 32 at 4 bits: codes 0..15 then 15..0, in 4 words of 8 codes each. Row m of x = e_m,
  // so y[m] = +0 + (scale·code_m + bias·1): the dequantized weight, rounded as dequantizeValue does.
  const K = 32, codes = new Uint32Array(4);
  const want: number[] = [];
  for (let k = 0; k < K; k++) {
    const code = k < 16 ? k : 31 - k;
    codes[k >> 3] |= code << (4 * (k & 7));
    want.push(Math.fround(Math.fround(0.5 * code) + -3));
  }
  const src: QuantizedSource = { dtype: 'q4', groupSize: 32, codes, scales: new Float32Array([0.5]), biases: new Float32Array([-3]) };
  const eye = new Float32Array(K * K);
  for (let k = 0; k < K; k++) eye[k * K + k] = 1;
  const y = new Float32Array(K);
  twin.linear(y, eye, twin.bindLinear(src, 1, K), K);
  assert.deepEqual([...y], want);
  const rt = runtimes[0].rt, yk = rt.arena.f32(K);
  rt.kernels.linear(yk, inArena(rt.arena, eye), rt.kernels.bindLinear(src, 1, K), K);
  assert.deepEqual([...yk], want);
});

test('a quantized source that does not fit N, K and the group size is refused with KERNEL_BAD_ARGS', () => {
  const rt = runtimes[0].rt;
  const src = randomQuantized(4, 32, 2, 64, prng(1));
  for (const [N, K, gs] of [[2, 48, 32], [3, 64, 32], [2, 64, 0]]) {
    for (const kernels of [rt.kernels, twin]) {
      assert.throws(() => kernels.bindLinear({ ...src, groupSize: gs }, N, K), (e: { code?: string }) => e.code === 'KERNEL_BAD_ARGS', `${kernels.name} N=${N} K=${K} gs=${gs}`);
    }
  }
});

test('a quantized weight bound in another memory shard runs there (x and y staged from home) and equals the scalar twin bit for bit, on 1 and 2 threads', async () => {
  const rnd = prng(17);
  const bits = 4, gs = 64, M = 37, N = 72, K = 4 * gs;
  const src = randomQuantized(bits, gs, N, K, rnd);
  const xs = fillUniform(new Float32Array(M * K), rnd), bs = fillUniform(new Float32Array(N), rnd);
  const ref = new Float32Array(M * N);
  twin.linear(ref, xs, twin.bindLinear(src, N, K), M, bs);
  for (const rt of [await createWasmRuntime(), await createNodeWasmRuntime({ threads: 2 })]) {
    try {
      await rt.ensureShards(2);
      const before = rt.shardArenas[1].bytesUsed;
      const w = rt.kernels.bindLinear(src, N, K, 1);
      assert.ok(rt.shardArenas[1].bytesUsed - before >= w.bytes, 'the packed weight lives in shard 1');
      const y = rt.arena.f32(M * N);
      rt.kernels.linear(y, inArena(rt.arena, xs), w, M, inArena(rt.arena, bs));
      assertBitIdentical(y, ref, `${rt.threads} thread(s), weight in shard 1`);
      if (rt.threads > 1) assert.ok(rt.splitJobs() > 0, 'the call was split across the threads (pool jobs in shard 1)');
    } finally {
      await rt.dispose();
    }
  }
});

type Problem = typeof problem extends fc.Arbitrary<infer T> ? T : never;

// The integer-dot modes against their twin over random problems: every runtime of `runtimes` equal to
// linearQuantI16(…, xbits) bit for bit, writing only y.
function assertIntegerModeEqualsTwin(runtimes: { label: string; rt: WasmRuntime }[], xbits: 16 | 8, examples: [Problem, string][]): void {
  fc.assert(fc.property(problem, fc.constantFrom('uniform', 'zeros', 'spiky'), ({ bits, gs, M, N, groups, withBias, seed }, kind) => {
    const K = groups * gs, rnd = prng(seed);
    const src = randomQuantized(bits, gs, N, K, rnd);
    const xs = fillUniform(new Float32Array(M * K), rnd), bs = fillUniform(new Float32Array(N), rnd);
    if (kind === 'zeros') xs.fill(0, 0, Math.min(xs.length, 2 * gs)); // all-zero groups: amax = 0
    if (kind === 'spiky') for (let i = 0; i < xs.length; i += 37) xs[i] *= 1e4; // one large value per group or so: ties and saturation edges
    const ref = new Float32Array(M * N);
    linearQuantI16(ref, xs, src, N, K, M, withBias ? bs : null, xbits);
    for (const { label, rt } of runtimes) {
      const whole = rt.arena.f32(M * N + 2);
      whole.fill(-7);
      const y = whole.subarray(1, 1 + M * N);
      rt.kernels.linear(y, inArena(rt.arena, xs), rt.kernels.bindLinear(src, N, K), M, withBias ? inArena(rt.arena, bs) : null);
      assertBitIdentical(y, ref, `${label}: q${bits} g${gs} M=${M} N=${N} K=${K} bias=${withBias} ${kind}`);
      assert.ok(whole[0] === -7 && whole[M * N + 1] === -7, `${label}: wrote outside y`);
    }
  }), { numRuns: 60, examples });
}

test('int16 activations: quantized linear equals linearQuantI16 (its scalar twin) bit for bit, on 1 and 2 threads, writing only y', () => {
  assertIntegerModeEqualsTwin(int16Runtimes, 16, [[{ bits: 4, gs: 64, M: 300, N: 130, groups: 8, withBias: true, seed: 1 }, 'uniform'], [{ bits: 8, gs: 128, M: 37, N: 24, groups: 3, withBias: false, seed: 2 }, 'spiky']]);
  assert.ok(int16Runtimes[1].rt.splitJobs() > 0, 'the big calls were split across the threads');
});

test('int8 activations: quantized linear equals linearQuantI16(…, 8) bit for bit in the plain and the relaxed build, on 1 and 2 threads, writing only y', () => {
  assertIntegerModeEqualsTwin(int8Runtimes, 8, [[{ bits: 4, gs: 128, M: 300, N: 130, groups: 8, withBias: true, seed: 1 }, 'spiky'], [{ bits: 4, gs: 32, M: 1, N: 7, groups: 5, withBias: false, seed: 2 }, 'uniform']]);
  assert.ok(int8Runtimes[1].rt.splitJobs() > 0 && int8Runtimes[3].rt.splitJobs() > 0, 'the big calls were split across the threads');
});

test('int8 activations at the largest codes and activations of the widest group (g128, 4 bits) do not overflow the byte dot\'s i16 lanes', () => {
  const N = 8, K = 256, gs = 128;
  const src: QuantizedSource = { dtype: 'q4', groupSize: gs, codes: new Uint32Array(N * K / 8).fill(0xffffffff), scales: new Float32Array(N * K / gs).fill(1), biases: new Float32Array(N * K / gs) };
  for (const sign of [1, -1]) {
    const xs = new Float32Array(K).fill(sign * 0.5); // every xq = ±127, every code 15: Σ per group = ±15·127·128
    const ref = new Float32Array(N);
    linearQuantI16(ref, xs, src, N, K, 1, null, 8);
    assert.equal(ref[0], sign * 15 * 0.5 * K, 'the twin: 15 · x summed over K');
    for (const { label, rt } of int8Runtimes) {
      const y = rt.arena.f32(N);
      rt.kernels.linear(y, inArena(rt.arena, xs), rt.kernels.bindLinear(src, N, K), 1);
      assertBitIdentical(y, ref, `${label} sign ${sign}`);
    }
  }
});

test('int16 activations stay within the int16 rounding of the exact mode: |y_int16 − y_exact| ≤ Σ_g |scale|·(2^bits − 1)·gs·xscale_g/2 + f32 rounding', () => {
  const rnd = prng(5);
  for (const [bits, gs] of [[4, 64], [8, 32]] as const) {
    const M = 3, N = 20, K = 4 * gs;
    const src = randomQuantized(bits, gs, N, K, rnd);
    const xs = fillUniform(new Float32Array(M * K), rnd);
    const exact = new Float32Array(M * N), approx = new Float32Array(M * N);
    twin.linear(exact, xs, twin.bindLinear(src, N, K), M);
    linearQuantI16(approx, xs, src, N, K, M);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let bound = 0, mag = 0;
      for (let g = 0; g < K / gs; g++) {
        let amax = 0;
        for (let k = g * gs; k < (g + 1) * gs; k++) { amax = Math.max(amax, Math.abs(xs[m * K + k])); mag += Math.abs(xs[m * K + k]) * (Math.abs(src.scales[n * K / gs + g]) * (2 ** bits - 1) + Math.abs(src.biases[n * K / gs + g])); }
        bound += Math.abs(src.scales[n * K / gs + g]) * (2 ** bits - 1) * gs * (amax / 32767) / 2;
      }
      const d = Math.abs(approx[m * N + n] - exact[m * N + n]);
      assert.ok(d <= bound + 2 ** -20 * mag, `q${bits} [${m},${n}]: |${approx[m * N + n]} − ${exact[m * N + n]}| = ${d} > ${bound}`);
    }
  }
});
