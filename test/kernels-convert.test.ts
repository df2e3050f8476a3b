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

// The writes of a narrow KV cache: f32 → bf16 / half, round to nearest even.
const narrowings = [
  { kernel: 'f32ToBf16', widen: 'bf16ToF32', mantissa: 8, maxFinite: 0x7f7f, name: 'bf16' },
  { kernel: 'f32ToF16', widen: 'f16ToF32', mantissa: 11, maxFinite: 0x7bff, name: 'f16' },
] as const;

for (const { kernel, widen, name } of narrowings) {
  test(`${kernel} is bit-exact against its twin on random f32 bit patterns, NaN, ±Inf, subnormals and rounding ties`, () => {
    const edges = [0, -0, Infinity, -Infinity, NaN, 65504, 65519.996, 65520, -65520, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -26, 1e-40, 3.4e38, 3.3895e38, 3.3896e38, 1 + 2 ** -8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 3 * 2 ** -8];
    const n = 200_003;
    const x = arena.f32(n), bits = new Uint32Array(x.buffer, x.byteOffset, n);
    let seed = 0x9e3779b9;
    for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; bits[i] = seed; }
    x.set(edges);
    const y = arena.u16(n + 2);
    y[0] = 0xbeef; y[n + 1] = 0xbeef;
    wasm[kernel](y.subarray(1, n + 1), x, n);
    assert.equal(y[0], 0xbeef, 'wrote before the output');
    assert.equal(y[n + 1], 0xbeef, 'wrote after the output');
    const ref = new Uint16Array(n);
    twin[kernel](ref, x, n);
    for (let i = 0; i < n; i++) assert.equal(y[i + 1], ref[i], `${kernel}(${x[i]} = 0x${bits[i].toString(16)}): 0x${y[i + 1].toString(16)} vs twin 0x${ref[i].toString(16)}`);
  });

  test(`${kernel} then ${widen} is the identity on every ${name} value except NaN (which stays NaN)`, () => {
    const wide = arena.f32(65536), back = arena.u16(65536);
    wasm[widen](wide, all, 65536);
    wasm[kernel](back, wide, 65536);
    for (let h = 0; h < 65536; h++) {
      if (Number.isNaN(wide[h])) assert.ok(Number.isNaN(name === 'bf16' ? bf16(back[h]) : f16(back[h])), `0x${h.toString(16)} NaN`);
      else assert.equal(back[h], h, `0x${h.toString(16)} = ${wide[h]} came back as 0x${back[h].toString(16)}`);
    }
  });
}

const one32 = new Float32Array(1), one16 = new Uint16Array(1);
function bf16(h: number): number { one16[0] = h; twin.bf16ToF32(one32, one16, 1); return one32[0]; }
function f16(h: number): number { one16[0] = h; twin.f16ToF32(one32, one16, 1); return one32[0]; }

test('a narrow KV write rounds to nearest even within half an ulp: |x − w| ≤ 2^-8·|x| (bf16) and 2^-11·|x| (f16, normal range), f16 overflow from 65520 is ±Inf', () => {
  const n = 100_000;
  const x = arena.f32(n);
  let seed = 12345;
  for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; x[i] = ((seed / 2 ** 32) * 2 - 1) * 2 ** ((i % 60) - 30); }
  for (const { kernel, widen, mantissa } of narrowings) {
    const h = arena.u16(n), w = arena.f32(n);
    wasm[kernel](h, x, n);
    wasm[widen](w, h, n);
    for (let i = 0; i < n; i++) {
      const ax = Math.abs(x[i]);
      if (kernel === 'f32ToF16' && (ax < 2 ** -14 || ax >= 65520)) continue; // subnormal: absolute 2^-25; overflow below
      assert.ok(Math.abs(x[i] - w[i]) <= 2 ** -mantissa * ax, `${kernel}(${x[i]}) = ${w[i]}`);
    }
  }
  const big = arena.f32(4), out = arena.u16(4);
  big.set([65519, 65520, -1e5, 65504]);
  wasm.f32ToF16(out, big, 4);
  assert.deepEqual([...out].map(f16), [65504, Infinity, -Infinity, 65504]);
});
