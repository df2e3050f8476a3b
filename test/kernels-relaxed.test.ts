import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { createNodeWasmRuntime } from '../src/node/pool-worker.js';
import { scalarKernels as twin } from '../src/kernels/scalar.js';
import { U, prng, fillUniform, inArena, assertClose } from './kernels-support.js';

test('the relaxed build is used only when asked for by name', async () => {
  assert.doesNotMatch((await createWasmRuntime()).kernels.name, /relaxed/);
  assert.match((await createNodeWasmRuntime({ relaxed: true })).kernels.name, /relaxed/);
});

test('relaxed linear (fused multiply-add) stays within the same K-scaled bound as the default build', async () => {
  const { kernels: wasm, arena } = await createNodeWasmRuntime({ relaxed: true });
  fc.assert(fc.property(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 300 }), fc.integer(), (M, N, K, seed) => {
    const rnd = prng(seed);
    const wf = fillUniform(new Float32Array(N * K), rnd);
    const x = inArena(arena, fillUniform(new Float32Array(M * K), rnd));
    const y = arena.f32(M * N), ref = new Float32Array(M * N);
    wasm.linear(y, x, wasm.bindLinear({ dtype: 'f32', data: wf }, N, K), M);
    twin.linear(ref, x, twin.bindLinear({ dtype: 'f32', data: wf }, N, K), M);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let mag = 0;
      for (let k = 0; k < K; k++) mag += Math.abs(x[m * K + k] * wf[n * K + k]);
      assertClose(y[m * N + n], ref[m * N + n], (K + 2) * U * mag + 1e-38, `relaxed y[${m},${n}] K=${K}`);
    }
  }), { numRuns: 60 });
});
