import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { scalarKernels as twin } from '../src/kernels/scalar.js';
import { guardedF32, sameF32 } from './kernels-support.js';

const { kernels: wasm, arena } = await createWasmRuntime();

// All 65536 bit patterns, then again from an odd offset so the vector body and the scalar tail
// each see every pattern.
const patterns = arena.u16(65536 + 3);
for (let i = 0; i < 65536; i++) patterns[i + 3] = i;
const all = patterns.subarray(3);

for (const kernel of ['bf16ToF32', 'f16ToF32'] as const) {
  test(`${kernel} is bit-exact against its twin over all 65536 patterns (NaN stays NaN)`, () => {
    for (const [label, src] of [['aligned', all], ['unaligned tail', patterns.subarray(0, 65536 + 3)]] as const) {
      const y = guardedF32(arena, src.length);
      wasm[kernel](y.view, src, src.length);
      y.check(kernel);
      const ref = new Float32Array(src.length);
      twin[kernel](ref, src, src.length);
      const bits = new Uint32Array(y.view.buffer, y.view.byteOffset, y.view.length);
      const refBits = new Uint32Array(ref.buffer);
      for (let i = 0; i < src.length; i++) {
        if (Number.isNaN(ref[i])) assert.ok(Number.isNaN(y.view[i]), `${kernel} ${label} 0x${src[i].toString(16)}: expected NaN`);
        else assert.equal(bits[i], refBits[i], `${kernel} ${label} 0x${src[i].toString(16)}: ${y.view[i]} vs ${ref[i]}`);
      }
    }
  });
}

for (const kernel of ['bf16ToF32', 'f16ToF32'] as const) {
  test(`${kernel} of n elements converts exactly those n and writes nothing else, for every n up to 19`, () => {
    for (let n = 0; n < 20; n++) {
      const src = all.subarray(0x3bf5, 0x3bf5 + n);
      const y = guardedF32(arena, n);
      wasm[kernel](y.view, src, n);
      y.check(`n=${n}`);
      const ref = new Float32Array(n);
      twin[kernel](ref, src, n);
      for (let i = 0; i < n; i++) assert.ok(sameF32(y.view[i], ref[i]), `n=${n} element ${i}: ${y.view[i]} vs ${ref[i]}`);
    }
  });
}
