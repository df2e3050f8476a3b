import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { scalarKernels as twin } from '../src/kernels/scalar.js';
import { U, SPECIALS, prng, fillUniform, injectSpecials, guardedF32, inArena, assertClose, assertBitIdentical } from './kernels-support.js';

const { kernels: wasm, arena } = await createWasmRuntime();

// Lengths below, at and above the vector width (4) and the unrolled bodies (8), odd sizes.
const length = fc.oneof(fc.integer({ min: 0, max: 19 }), fc.constantFrom(31, 32, 33, 100, 257));
const seed = fc.integer();
const withSpecials = fc.boolean();

/** x filled with uniform values in ±scale, optionally 10% special values (±0, ±Inf, NaN, huge, tiny). */
function input(n: number, rnd: () => number, specials: boolean, scale = 4, list: readonly number[] = SPECIALS): Float32Array {
  const a = fillUniform(new Float32Array(n), rnd, scale);
  if (specials) injectSpecials(a, rnd, 0.1, list);
  return inArena(arena, a);
}

// Relative error of a few f32 roundings plus the SIMD exp (≤ 2 ulp), with an absolute floor in the
// subnormal range where f32 has fewer bits than the f64 twin.
const elementBound = (ulps: number) => (ref: number) => ulps * U * Math.abs(ref) + 1e-42;

type Unary = 'silu' | 'sigmoid';
for (const [name, ulps] of [['silu', 8], ['sigmoid', 8]] as [Unary, number][]) {
  test(`${name} matches its twin within ${ulps} ulp, special values included, and works in place`, () => {
    fc.assert(fc.property(length, seed, withSpecials, (n, s, sp) => {
      const rnd = prng(s);
      const x = input(n, rnd, sp, 30);
      const y = guardedF32(arena, n);
      wasm[name](y.view, x, n);
      y.check(name);
      const ref = new Float32Array(n);
      twin[name](ref, x, n);
      for (let i = 0; i < n; i++) assertClose(y.view[i], ref[i], elementBound(ulps)(ref[i]), `${name}(${x[i]})`);
      wasm[name](x, x, n);
      assertBitIdentical(x, y.view, `${name} in place`);
    }), { numRuns: 150 });
  });
}

test('siluMul matches its twin within 10 ulp and works in place on gate', () => {
  fc.assert(fc.property(length, seed, withSpecials, (n, s, sp) => {
    const rnd = prng(s);
    const gate = input(n, rnd, sp, 30), up = input(n, rnd, sp);
    const y = guardedF32(arena, n);
    wasm.siluMul(y.view, gate, up, n);
    y.check('siluMul');
    const ref = new Float32Array(n);
    twin.siluMul(ref, gate, up, n);
    for (let i = 0; i < n; i++) assertClose(y.view[i], ref[i], elementBound(10)(ref[i]), `siluMul(${gate[i]}, ${up[i]})`);
    wasm.siluMul(gate, gate, up, n);
    assertBitIdentical(gate, y.view, 'siluMul in place');
  }), { numRuns: 150 });
});

test('add and scale are bit-exact against their twins; axpy within 1 ulp (mul then add); all work in place', () => {
  fc.assert(fc.property(length, seed, withSpecials, fc.double({ min: -10, max: 10, noNaN: true }), (n, s, sp, alpha) => {
    const rnd = prng(s);
    const a = input(n, rnd, sp), b = input(n, rnd, sp);
    const y = guardedF32(arena, n), ref = new Float32Array(n);
    wasm.add(y.view, a, b, n); y.check('add');
    twin.add(ref, a, b, n);
    assertBitIdentical(y.view, ref, 'add');
    wasm.scale(y.view, alpha, a, n); y.check('scale');
    twin.scale(ref, alpha, a, n);
    assertBitIdentical(y.view, ref, 'scale');
    const acc = inArena(arena, b);
    ref.set(b);
    wasm.axpy(acc, alpha, a, n);
    twin.axpy(ref, alpha, a, n);
    for (let i = 0; i < n; i++) assertClose(acc[i], ref[i], U * (Math.abs(ref[i]) + Math.abs(Math.fround(alpha) * a[i])) * 2 + 1e-45, `axpy ${b[i]} + ${alpha}·${a[i]}`);
    const inPlace = inArena(arena, a);
    wasm.add(inPlace, inPlace, b, n);
    twin.add(ref, a, b, n);
    assertBitIdentical(inPlace, ref, 'add in place');
    inPlace.set(a);
    wasm.scale(inPlace, alpha, inPlace, n);
    twin.scale(ref, alpha, a, n);
    assertBitIdentical(inPlace, ref, 'scale in place');
  }), {
    numRuns: 150,
    // found in CI: −Inf + α·3e38, where the f32 product overflows to +Inf and the sum is NaN (the twin once kept the product in f64)
    examples: [[32, -1550707648, true, 1.1342745423316958]],
  });
});

const rowsArb = fc.integer({ min: 1, max: 4 });

test('rmsnorm matches its twin within a dim-scaled bound (with and without weight) and works in place', () => {
  fc.assert(fc.property(rowsArb, length, seed, withSpecials, fc.boolean(), (rows, dim, s, sp, useWeight) => {
    const rnd = prng(s);
    // no huge values: the f32 sum of squares overflows where the f64 twin does not (spec/numerics.md)
    const x = input(rows * dim, rnd, sp, 4, [0, -0, Infinity, -Infinity, NaN, 1e-40, 1e-30, 1e15]);
    const weight = useWeight ? input(dim, rnd, false) : null;
    const y = guardedF32(arena, rows * dim);
    wasm.rmsnorm(y.view, x, weight, rows, dim, 1e-6);
    y.check('rmsnorm');
    const ref = new Float32Array(rows * dim);
    twin.rmsnorm(ref, x, weight, rows, dim, 1e-6);
    for (let i = 0; i < rows * dim; i++) assertClose(y.view[i], ref[i], (dim + 8) * U * Math.abs(ref[i]) + 1e-42, `rmsnorm[${i}]`);
    wasm.rmsnorm(x, x, weight, rows, dim, 1e-6);
    assertBitIdentical(x, y.view, 'rmsnorm in place');
  }), { numRuns: 150 });
});

test('softmax matches its twin within a length-scaled bound, rows of -Inf give zeros, works in place', () => {
  fc.assert(fc.property(rowsArb, length, seed, withSpecials, (rows, n, s, sp) => {
    const rnd = prng(s);
    const x = input(rows * n, rnd, sp, 20, [-Infinity, -Infinity, NaN, Infinity, 0, -0, -3e38]);
    if (rows > 1) x.fill(-Infinity, 0, n); // a fully masked row
    const y = guardedF32(arena, rows * n);
    wasm.softmax(y.view, x, rows, n);
    y.check('softmax');
    const ref = new Float32Array(rows * n);
    twin.softmax(ref, x, rows, n);
    for (let r = 0; r < rows; r++) {
      let max = -Infinity;
      for (let i = 0; i < n; i++) if (x[r * n + i] > max) max = x[r * n + i];
      for (let i = r * n; i < (r + 1) * n; i++) {
        const shift = Number.isFinite(x[i] - max) ? Math.abs(x[i] - max) : 0;
        assertClose(y.view[i], ref[i], (n + 12 + shift) * U * Math.abs(ref[i]) + 1e-42, `softmax row ${r} [${i}] x=${x[i]}`);
      }
    }
    if (rows > 1) for (let i = 0; i < n; i++) assert.ok(Object.is(y.view[i], 0), 'an all -Inf row gives +0');
    wasm.softmax(x, x, rows, n);
    assertBitIdentical(x, y.view, 'softmax in place');
  }), { numRuns: 150 });
});

test('logSoftmax matches its twin within a length-scaled bound, rows of -Inf give -Inf, works in place', () => {
  fc.assert(fc.property(rowsArb, length, seed, withSpecials, (rows, n, s, sp) => {
    const rnd = prng(s);
    const x = input(rows * n, rnd, sp, 20, [-Infinity, -Infinity, NaN, Infinity, 0, -0, -3e38]);
    if (rows > 1) x.fill(-Infinity, 0, n);
    const y = guardedF32(arena, rows * n);
    wasm.logSoftmax(y.view, x, rows, n);
    y.check('logSoftmax');
    const ref = new Float32Array(rows * n);
    twin.logSoftmax(ref, x, rows, n);
    for (let i = 0; i < rows * n; i++) {
      const mag = Number.isFinite(x[i]) ? Math.abs(x[i]) + 20 : 0;
      assertClose(y.view[i], ref[i], (n + 12) * U * (Math.abs(ref[i]) + mag) + 1e-42, `logSoftmax[${i}] x=${x[i]}`);
    }
    if (rows > 1) for (let i = 0; i < n; i++) assert.equal(y.view[i], -Infinity);
    wasm.logSoftmax(x, x, rows, n);
    assertBitIdentical(x, y.view, 'logSoftmax in place');
  }), { numRuns: 150 });
});

test('rope is bit-exact against its twin for both layouts, per-row positions and padded row strides', () => {
  const ropeCase = fc.record({
    rows: fc.integer({ min: 1, max: 5 }), nHeads: fc.integer({ min: 1, max: 3 }),
    half: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.constantFrom(4, 8, 16, 32)), pad: fc.integer({ min: 0, max: 5 }),
    layout: fc.constantFrom('half' as const, 'interleaved' as const), seed,
  });
  fc.assert(fc.property(ropeCase, ({ rows, nHeads, half, pad, layout, seed: s }) => {
    const rnd = prng(s);
    const headDim = 2 * half, rowStride = nHeads * headDim + pad, maxPos = 7;
    const cos = input(maxPos * half, rnd, false, 1), sin = input(maxPos * half, rnd, false, 1);
    const positions = arena.i32(rows);
    for (let r = 0; r < rows; r++) positions[r] = Math.floor(rnd() * maxPos);
    const src = fillUniform(new Float32Array(rows * rowStride), rnd, 3);
    const x = guardedF32(arena, rows * rowStride);
    x.view.set(src);
    wasm.rope(x.view, rows, nHeads, headDim, rowStride, cos, sin, positions, layout);
    x.check('rope');
    const ref = new Float32Array(src);
    twin.rope(ref, rows, nHeads, headDim, rowStride, cos, sin, positions, layout);
    assertBitIdentical(x.view, ref, `rope ${layout}`);
  }), { numRuns: 150 });
});

test('rope refuses positions outside the cos/sin tables', () => {
  const x = arena.f32(8), cos = arena.f32(4 * 2), sin = arena.f32(4 * 2), pos = arena.i32(1);
  pos[0] = 4;
  assert.throws(() => wasm.rope(x, 1, 2, 4, 8, cos, sin, pos, 'half'), { code: 'KERNEL_BAD_ARGS' });
  pos[0] = -1;
  assert.throws(() => wasm.rope(x, 1, 2, 4, 8, cos, sin, pos, 'half'), { code: 'KERNEL_BAD_ARGS' });
});

test('argmax equals its twin exactly: ties go to the lower index, any NaN gives -1, n = 0 gives -1', () => {
  fc.assert(fc.property(length, seed, withSpecials, (n, s, sp) => {
    const rnd = prng(s);
    const x = inArena(arena, new Float32Array(n));
    // few distinct values so ties are common; ±0 and ±Inf mixed in
    for (let i = 0; i < n; i++) x[i] = Math.floor(rnd() * 5) - 2;
    if (sp) injectSpecials(x, rnd, 0.1, [0, -0, Infinity, -Infinity, NaN]);
    assert.equal(wasm.argmax(x, n), twin.argmax(x, n));
  }), { numRuns: 300 });
});

test('the vector exp makes one NaN of every NaN (sign and payload dropped), so NaN results do not depend on the order a compiler gives an add its operands', () => {
  // f32 bit patterns of NaNs: both signs, quiet and signalling, small and large payloads
  const patterns = [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa00000, 0xffa5a5a5, 0x7fffffff, 0xffffffff];
  const bits = new Uint32Array(patterns.length * 3);
  for (let i = 0; i < bits.length; i++) bits[i] = patterns[i % patterns.length];
  const x = inArena(arena, new Float32Array(bits.buffer));
  // sigmoid(x) = e / (1 + e) with e = exp(−|x|): the exp's NaN on both sides (silu's numerator is x itself)
  const s = arena.f32(x.length);
  wasm.sigmoid(s, x, x.length);
  const sb = new Uint32Array(s.buffer, s.byteOffset, s.length);
  for (let i = 0; i < sb.length; i++) assert.equal(sb[i], 0xffc00000, `sigmoid(NaN 0x${bits[i].toString(16)}) = 0x${sb[i].toString(16)}`);
  // a softmax row whose NaNs come from a NaN input and from Inf − Inf: every output the same NaN
  const row = inArena(arena, Float32Array.from([1, NaN, Infinity, 2, -Infinity, Infinity, 3, 4, 5]));
  const y = arena.f32(row.length);
  wasm.softmax(y, row, 1, row.length);
  const out = new Uint32Array(y.buffer, y.byteOffset, y.length);
  assert.ok(out.every((b) => b === out[0]) && Number.isNaN(y[0]), `one NaN: ${Array.from(out, (b) => b.toString(16)).join(' ')}`);
});
