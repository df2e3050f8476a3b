import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { scalarKernels as twin } from '../src/kernels/scalar.js';
import type { LinearSource } from '../src/kernels/kernels.js';
import { U, prng, fillUniform, injectSpecials, guardedF32, inArena, assertClose, assertBitIdentical } from './kernels-support.js';

const rt = await createWasmRuntime();
const { kernels: wasm, arena } = rt;

// bf16 bits of values in about ±[2^-8, 2): random sign, exponent 119..127, mantissa.
function randomBF16(n: number, rnd: () => number): Uint16Array {
  const a = new Uint16Array(n);
  for (let i = 0; i < n; i++) a[i] = (rnd() < 0.5 ? 0x8000 : 0) | ((119 + Math.floor(rnd() * 9)) << 7) | Math.floor(rnd() * 128);
  return a;
}

function source(dtype: 'f32' | 'bf16', N: number, K: number, rnd: () => number): LinearSource {
  return dtype === 'f32' ? { dtype, data: fillUniform(new Float32Array(N * K), rnd) } : { dtype, data: randomBF16(N * K, rnd) };
}

// Sequential f32 accumulation of K products: |error| ≤ (K + 2)·u·(Σ|x·w| + |bias|), plus a floor
// for products that underflow f32 but not the twin's f64.
function linearBound(x: Float32Array, wRow: (k: number) => number, m: number, K: number, bias: number): number {
  let mag = Math.abs(bias);
  for (let k = 0; k < K; k++) mag += Math.abs(x[m * K + k] * wRow(k));
  return (K + 2) * U * mag + K * 2 ** -140 + 1e-38;
}

// Large enough that linear k-blocks by 256 (linearBlockK), with K not a multiple of 256.
const kBlockedExamples: [Shape][] = [
  [{ M: 521, N: 21, K: 300, dtype: 'f32', withBias: true, seed: 1 }],
  [{ M: 260, N: 17, K: 700, dtype: 'bf16', withBias: true, seed: 2 }],
];
type Shape = { M: number; N: number; K: number; dtype: 'f32' | 'bf16'; withBias: boolean; seed: number };

const shape = fc.record({
  M: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 9 })),
  N: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constantFrom(16, 32, 48)),
  // below/at/above the vector width and the 256 k-block, odd sizes, and K = 0 (y = bias)
  K: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.constantFrom(1, 3, 4, 16, 17, 255, 256, 257, 600)),
  dtype: fc.constantFrom('f32' as const, 'bf16' as const),
  withBias: fc.boolean(),
  seed: fc.integer(),
});

test('linear matches its scalar twin within a K-scaled f32 accumulation bound, writing only y', () => {
  fc.assert(fc.property(shape, ({ M, N, K, dtype, withBias, seed }) => {
    const rnd = prng(seed);
    const src = source(dtype, N, K, rnd);
    const x = inArena(arena, fillUniform(new Float32Array(M * K), rnd));
    const bias = withBias ? inArena(arena, fillUniform(new Float32Array(N), rnd)) : null;
    const y = guardedF32(arena, M * N);
    wasm.linear(y.view, x, wasm.bindLinear(src, N, K), M, bias);
    y.check('linear');
    const tw = twin.bindLinear(src, N, K) as unknown as { w: Float32Array };
    const ref = new Float32Array(M * N);
    twin.linear(ref, x, twin.bindLinear(src, N, K), M, bias);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      const bound = linearBound(x, (k) => tw.w[n * K + k], m, K, bias ? bias[n] : 0);
      assertClose(y.view[m * N + n], ref[m * N + n], bound, `${dtype} M=${M} N=${N} K=${K} y[${m},${n}]`);
    }
  }), { numRuns: 120, examples: kBlockedExamples });
});

test('linear rows do not depend on the batch: each row of an M-row call equals the M=1 call bit for bit', () => {
  fc.assert(fc.property(shape, ({ M, N, K, dtype, withBias, seed }) => {
    const rnd = prng(seed);
    const w = wasm.bindLinear(source(dtype, N, K, rnd), N, K);
    const x = inArena(arena, fillUniform(new Float32Array(M * K), rnd));
    const bias = withBias ? inArena(arena, fillUniform(new Float32Array(N), rnd)) : null;
    const batched = arena.f32(M * N);
    wasm.linear(batched, x, w, M, bias);
    const one = arena.f32(N);
    for (let m = 0; m < M; m++) {
      wasm.linear(one, x.subarray(m * K, (m + 1) * K), w, 1, bias);
      assertBitIdentical(one, batched.subarray(m * N, (m + 1) * N), `row ${m} of M=${M} N=${N} K=${K} ${dtype}`);
    }
  }), { numRuns: 60, examples: kBlockedExamples });
});

test('linear propagates NaN and Inf like the reference (NaN in ⇒ NaN out, ±Inf kept)', () => {
  fc.assert(fc.property(shape, ({ M, N, K, dtype, withBias, seed }) => {
    const rnd = prng(seed);
    const specials = [0, -0, Infinity, -Infinity, NaN, 1e-40, 1e-30];
    const xs = fillUniform(new Float32Array(M * K), rnd);
    injectSpecials(xs, rnd, 0.05, specials);
    let src = source(dtype, N, K, rnd);
    if (dtype === 'f32') injectSpecials((src as { data: Float32Array }).data, rnd, 0.05, specials);
    else { const d = (src as { data: Uint16Array }).data; for (let i = 0; i < d.length; i++) if (rnd() < 0.05) d[i] = [0x7f80, 0xff80, 0x7fc0, 0x8000, 0x0001][Math.floor(rnd() * 5)]; src = { dtype, data: d }; }
    const x = inArena(arena, xs);
    const bias = withBias ? inArena(arena, fillUniform(new Float32Array(N), rnd)) : null;
    if (bias) injectSpecials(bias, rnd, 0.1, specials);
    const y = guardedF32(arena, M * N);
    wasm.linear(y.view, x, wasm.bindLinear(src, N, K), M, bias);
    y.check('linear specials');
    const tw = twin.bindLinear(src, N, K);
    const ref = new Float32Array(M * N);
    twin.linear(ref, x, tw, M, bias);
    const tww = (tw as unknown as { w: Float32Array }).w;
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      const bound = linearBound(x, (k) => tww[n * K + k], m, K, bias ? bias[n] : 0);
      assertClose(y.view[m * N + n], ref[m * N + n], Number.isFinite(bound) ? bound : Infinity, `${dtype} y[${m},${n}]`);
    }
  }), { numRuns: 80 });
});

test('linear refuses y overlapping x, buffers from outside the arena, short buffers and foreign weights', () => {
  const w = wasm.bindLinear({ dtype: 'f32', data: new Float32Array(8 * 4).fill(1) }, 8, 4);
  const x = arena.f32(2 * 8);
  assert.throws(() => wasm.linear(x, x, w, 2), { code: 'KERNEL_BAD_ARGS' });
  assert.throws(() => wasm.linear(arena.f32(16), new Float32Array(8), w, 2), { code: 'KERNEL_FOREIGN_BUFFER' });
  assert.throws(() => wasm.linear(arena.f32(15), arena.f32(8), w, 2), { code: 'KERNEL_BAD_ARGS' });
  assert.throws(() => wasm.linear(arena.f32(16), arena.f32(8), w, 2, arena.f32(7)), { code: 'KERNEL_BAD_ARGS' });
  assert.throws(() => wasm.linear(arena.f32(16), arena.f32(8), twin.bindLinear({ dtype: 'f32', data: new Float32Array(32) }, 8, 4), 2), { code: 'KERNEL_FOREIGN_BUFFER' });
  assert.throws(() => wasm.bindLinear({ dtype: 'f32', data: new Float32Array(31) }, 8, 4), { code: 'KERNEL_BAD_ARGS' });
});
