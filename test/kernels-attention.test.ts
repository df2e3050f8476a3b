import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { scalarKernels as twin, f32ToBf16Bits, f32ToF16Bits, bf16BitsToF32, f16BitsToF32 } from '../src/kernels/scalar.js';
import type { KvDType } from '../src/kernels/kernels.js';
import { U, prng, fillUniform, injectSpecials, guardedF32, inArena, assertClose, assertBitIdentical, sameF32 } from './kernels-support.js';

const { kernels: wasm, arena } = await createWasmRuntime();

const problem = fc.record({
  // 1 = decode against a cache; 17 and 20 split prefill into several blocks of 16 query units
  Tq: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 6 }), fc.constantFrom(17, 20)),
  // past 8 and 64: several key blocks in decode and in prefill (assembly/attention.ts)
  Tk: fc.oneof(fc.integer({ min: 0, max: 13 }), fc.constantFrom(4, 31, 64, 65, 131, 300)),
  nKvHeads: fc.integer({ min: 1, max: 3 }),
  group: fc.integer({ min: 1, max: 3 }),
  // 128: the head dim of Huginn-0125 and Ouro (heads of 512 bytes in f32); 132: the same with a tail
  headDim: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.constantFrom(4, 32, 36, 64, 128, 132)),
  masking: fc.constantFrom('none', 'positions', 'allowed', 'both'),
  seed: fc.integer(),
});

interface Problem { Tq: number; Tk: number; nKvHeads: number; group: number; headDim: number; masking: string; seed: number }

// Past half an L2 per head (Tk·hd·8 > 512 KiB) prefill runs its blocked schedule: 16-row query
// blocks over 64-key blocks (assembly/attention.ts); these reach it, with and without GQA.
const blockedPrefill: [Problem][] = [
  [{ Tq: 20, Tk: 1100, nKvHeads: 1, group: 2, headDim: 64, masking: 'positions', seed: 11 }],
  [{ Tq: 17, Tk: 1031, nKvHeads: 2, group: 1, headDim: 68, masking: 'both', seed: 12 }],
];

function setUp(p: Problem, specials: boolean) {
  const rnd = prng(p.seed);
  const nHeads = p.nKvHeads * p.group;
  const qDim = nHeads * p.headDim, kvDim = p.nKvHeads * p.headDim;
  const qs = fillUniform(new Float32Array(p.Tq * qDim), rnd, 2);
  const ks = fillUniform(new Float32Array(p.Tk * kvDim), rnd, 2);
  const vs = fillUniform(new Float32Array(p.Tk * kvDim), rnd);
  if (specials) for (const a of [qs, ks, vs]) injectSpecials(a, rnd, 0.02, [NaN, Infinity, -Infinity, 0, -0, 1e-40]);
  const usePos = p.masking === 'positions' || p.masking === 'both';
  const useAllowed = p.masking === 'allowed' || p.masking === 'both';
  let qPos: Int32Array | null = null, kPos: Int32Array | null = null, allowed: Uint8Array | null = null;
  if (usePos) {
    // arbitrary original positions (a subset of tokens, not necessarily sorted), so some rows see nothing
    qPos = arena.i32(p.Tq); kPos = arena.i32(p.Tk);
    for (let i = 0; i < p.Tq; i++) qPos[i] = Math.floor(rnd() * (p.Tk + 2)) - 1;
    for (let j = 0; j < p.Tk; j++) kPos[j] = Math.floor(rnd() * (p.Tk + 1));
  }
  if (useAllowed) {
    allowed = arena.u8(p.Tq * p.Tk);
    for (let i = 0; i < allowed.length; i++) allowed[i] = rnd() < 0.7 ? 1 : 0;
  }
  return { nHeads, qDim, kvDim, q: inArena(arena, qs), k: inArena(arena, ks), v: inArena(arena, vs), qPos, kPos, allowed, scale: 1 / Math.sqrt(p.headDim) };
}

/**
 * k and v stored as a `kvDtype` cache: the 16-bit bits (the twin's rounding) in arena views, and k
 * and v themselves replaced by the exact widening, which is what the narrow call must compute on.
 */
function narrowed(s: ReturnType<typeof setUp>, kvDtype: Exclude<KvDType, 'f32'>): { kn: Uint16Array; vn: Uint16Array } {
  const round = kvDtype === 'bf16' ? f32ToBf16Bits : f32ToF16Bits, widen = kvDtype === 'bf16' ? bf16BitsToF32 : f16BitsToF32;
  const kn = arena.u16(s.k.length), vn = arena.u16(s.v.length);
  for (let i = 0; i < s.k.length; i++) { kn[i] = round(s.k[i]); s.k[i] = widen(kn[i]); }
  for (let i = 0; i < s.v.length; i++) { vn[i] = round(s.v[i]); s.v[i] = widen(vn[i]); }
  return { kn, vn };
}

function check(p: Problem, specials: boolean, kvDtype: KvDType = 'f32'): void {
  const s = setUp(p, specials);
  const { nHeads, qDim, kvDim, q, k, v, qPos, kPos, allowed, scale } = s;
  const out = guardedF32(arena, p.Tq * qDim);
  const ref = new Float32Array(p.Tq * qDim);
  if (kvDtype === 'f32') {
    wasm.attention(out.view, q, k, v, p.Tq, p.Tk, nHeads, p.nKvHeads, p.headDim, scale, qPos, kPos, allowed);
    twin.attention(ref, q, k, v, p.Tq, p.Tk, nHeads, p.nKvHeads, p.headDim, scale, qPos, kPos, allowed);
  } else {
    const { kn, vn } = narrowed(s, kvDtype);
    wasm.attention(out.view, q, kn, vn, p.Tq, p.Tk, nHeads, p.nKvHeads, p.headDim, scale, qPos, kPos, allowed, kvDtype);
    twin.attention(ref, q, kn, vn, p.Tq, p.Tk, nHeads, p.nKvHeads, p.headDim, scale, qPos, kPos, allowed, kvDtype);
  }
  out.check('attention');
  const hd = p.headDim;
  for (let i = 0; i < p.Tq; i++) for (let h = 0; h < nHeads; h++) {
    const kvh = Math.floor(h / p.group);
    // Score error δ ≤ (hd + 4)·u·scale·Σ|q·k|; it enters the weights through exp (relative δ, twice
    // with the max). Weights add (Tk + 8)·u from the sum and exp, P·V adds Tk·u; all times max|v|.
    let dotMag = 0, maxV = 0, anyVisible = false;
    for (let j = 0; j < p.Tk; j++) {
      const visible = (qPos === null || kPos === null || kPos[j] <= qPos[i]) && (allowed === null || allowed[i * p.Tk + j] !== 0);
      if (!visible) continue;
      anyVisible = true;
      let m = 0;
      for (let d = 0; d < hd; d++) { m += Math.abs(q[i * qDim + h * hd + d] * k[j * kvDim + kvh * hd + d]); maxV = Math.max(maxV, Math.abs(v[j * kvDim + kvh * hd + d])); }
      dotMag = Math.max(dotMag, m * scale);
    }
    const delta = (hd + 4) * U * dotMag;
    const bound = (4 * delta + (2 * p.Tk + 24) * U) * maxV + 1e-38;
    for (let d = 0; d < hd; d++) {
      const o = i * qDim + h * hd + d;
      const label = `Tq=${p.Tq} Tk=${p.Tk} heads=${nHeads}/${p.nKvHeads} hd=${hd} ${p.masking} out[${i},${h},${d}]`;
      if (!anyVisible) assert.ok(Object.is(out.view[o], 0), `${label}: a row that sees no key must be +0, got ${out.view[o]}`);
      else assertClose(out.view[o], ref[o], Number.isNaN(bound) ? Infinity : bound, label);
    }
  }
}

test('attention matches its scalar twin (GQA, positions and/or allowed mask) within a score-and-length-scaled bound', () => {
  fc.assert(fc.property(problem, (p) => check(p, false)), { numRuns: 150, examples: blockedPrefill });
});

test('attention with NaN/Inf/zero inputs: NaN where the reference is NaN, fully masked rows still zero', () => {
  fc.assert(fc.property(problem, (p) => check(p, true)), { numRuns: 100 });
});

for (const kvDtype of ['bf16', 'f16'] as const) {
  test(`attention over a ${kvDtype} KV cache matches its scalar twin within the f32 bound (K and V as the cache holds them)`, () => {
    fc.assert(fc.property(problem, (p) => check(p, false, kvDtype)), { numRuns: 80, examples: blockedPrefill });
  });

  test(`attention over a ${kvDtype} KV cache equals, bit for bit, the f32 attention over its exact widening (decode reads in place, prefill widens key blocks; NaN/Inf included)`, () => {
    fc.assert(fc.property(problem, fc.boolean(), (p, specials) => {
      const s = setUp(p, specials);
      const { kn, vn } = narrowed(s, kvDtype);
      const out = guardedF32(arena, p.Tq * s.qDim), wide = arena.f32(p.Tq * s.qDim);
      wasm.attention(out.view, s.q, kn, vn, p.Tq, p.Tk, s.nHeads, p.nKvHeads, p.headDim, s.scale, s.qPos, s.kPos, s.allowed, kvDtype);
      out.check(`attention ${kvDtype}`);
      wasm.attention(wide, s.q, s.k, s.v, p.Tq, p.Tk, s.nHeads, p.nKvHeads, p.headDim, s.scale, s.qPos, s.kPos, s.allowed);
      // bit for bit; a NaN's payload may differ (the kernel keeps a stored NaN's, the widened copy is JS's NaN)
      for (let i = 0; i < wide.length; i++) assert.ok(sameF32(out.view[i], wide[i]), `Tq=${p.Tq} Tk=${p.Tk} heads=${s.nHeads}/${p.nKvHeads} hd=${p.headDim} ${p.masking} ${kvDtype}: element ${i} differs: ${out.view[i]} vs ${wide[i]}`);
    }), { numRuns: 150, examples: blockedPrefill.map(([p]) => [p, false] as [Problem, boolean]) });
  });
}

test('attention refuses a KV dtype its k and v do not hold', () => {
  const f = arena.f32(64), h = arena.u16(64);
  assert.throws(() => wasm.attention(f, f, f, f, 1, 2, 1, 1, 8, 1, null, null, null, 'bf16'), { code: 'KERNEL_BAD_ARGS' });
  assert.throws(() => wasm.attention(f, f, h, h, 1, 2, 1, 1, 8, 1, null, null, null), { code: 'KERNEL_BAD_ARGS' });
  assert.throws(() => wasm.attention(f, f, h, h, 1, 2, 1, 1, 8, 1, null, null, null, 'f8' as KvDType), { code: 'KERNEL_BAD_ARGS' });
});

test('attention rows do not depend on the batch: each query row equals the Tq=1 call for that row, bit for bit', () => {
  fc.assert(fc.property(problem, (p) => {
    const s = setUp(p, false);
    const out = arena.f32(p.Tq * s.qDim), one = arena.f32(s.qDim);
    wasm.attention(out, s.q, s.k, s.v, p.Tq, p.Tk, s.nHeads, p.nKvHeads, p.headDim, s.scale, s.qPos, s.kPos, s.allowed);
    for (let i = 0; i < p.Tq; i++) {
      const row = (a: Float32Array) => a.subarray(i * s.qDim, (i + 1) * s.qDim);
      const qPos = s.qPos ? s.qPos.subarray(i, i + 1) : null;
      const allowed = s.allowed ? s.allowed.subarray(i * p.Tk, (i + 1) * p.Tk) : null;
      wasm.attention(one, row(s.q), s.k, s.v, 1, p.Tk, s.nHeads, p.nKvHeads, p.headDim, s.scale, qPos, s.kPos, allowed);
      assertBitIdentical(one, row(out), `row ${i} of Tq=${p.Tq}`);
    }
  }), { numRuns: 60, examples: blockedPrefill });
});

test('attention heads do not depend on each other: each head equals a one-head call on its own q, k and v, bit for bit', () => {
  // Decode runs every head of a row in one block and pairs the heads of a KV group; prefill runs
  // blocks of query rows per head: none of that may change a head's result.
  fc.assert(fc.property(problem, (p) => {
    const s = setUp(p, false);
    const hd = p.headDim;
    const out = arena.f32(p.Tq * s.qDim);
    wasm.attention(out, s.q, s.k, s.v, p.Tq, p.Tk, s.nHeads, p.nKvHeads, hd, s.scale, s.qPos, s.kPos, s.allowed);
    const q1 = arena.f32(p.Tq * hd), k1 = arena.f32(p.Tk * hd), v1 = arena.f32(p.Tk * hd), o1 = arena.f32(p.Tq * hd);
    for (let h = 0; h < s.nHeads; h++) {
      const kvh = Math.floor(h / p.group);
      for (let i = 0; i < p.Tq; i++) q1.set(s.q.subarray(i * s.qDim + h * hd, i * s.qDim + (h + 1) * hd), i * hd);
      for (let j = 0; j < p.Tk; j++) {
        k1.set(s.k.subarray(j * s.kvDim + kvh * hd, j * s.kvDim + (kvh + 1) * hd), j * hd);
        v1.set(s.v.subarray(j * s.kvDim + kvh * hd, j * s.kvDim + (kvh + 1) * hd), j * hd);
      }
      wasm.attention(o1, q1, k1, v1, p.Tq, p.Tk, 1, 1, hd, s.scale, s.qPos, s.kPos, s.allowed);
      for (let i = 0; i < p.Tq; i++) {
        assertBitIdentical(o1.subarray(i * hd, (i + 1) * hd), out.subarray(i * s.qDim + h * hd, i * s.qDim + (h + 1) * hd), `head ${h} row ${i} of Tq=${p.Tq} Tk=${p.Tk} heads=${s.nHeads}/${p.nKvHeads} hd=${hd}`);
      }
    }
  }), { numRuns: 60, examples: blockedPrefill });
});

test('attention writing its output over q (element for element) gives the out-of-place result', () => {
  fc.assert(fc.property(problem, (p) => {
    const s = setUp(p, false);
    const out = arena.f32(p.Tq * s.qDim);
    wasm.attention(out, s.q, s.k, s.v, p.Tq, p.Tk, s.nHeads, p.nKvHeads, p.headDim, s.scale, s.qPos, s.kPos, s.allowed);
    wasm.attention(s.q, s.q, s.k, s.v, p.Tq, p.Tk, s.nHeads, p.nKvHeads, p.headDim, s.scale, s.qPos, s.kPos, s.allowed);
    assertBitIdentical(s.q, out, 'attention in place');
  }), { numRuns: 50 });
});

test('attention: Inf or NaN in a masked key or value row never reaches the output', () => {
  const Tq = 1, Tk = 6, hd = 8;
  const q = arena.f32(hd).fill(0.5), k = arena.f32(Tk * hd).fill(0.25), v = arena.f32(Tk * hd).fill(1);
  const qPos = arena.i32(1), kPos = arena.i32(Tk);
  qPos[0] = 3;
  for (let j = 0; j < Tk; j++) kPos[j] = j;
  k.fill(NaN, 5 * hd, 6 * hd); v.fill(Infinity, 4 * hd, 6 * hd); // keys 4, 5 are in the future
  const out = arena.f32(hd);
  wasm.attention(out, q, k, v, Tq, Tk, 1, 1, hd, 0.3, qPos, kPos, null);
  for (let d = 0; d < hd; d++) assert.ok(Math.abs(out[d] - 1) < 1e-6, `out[${d}] = ${out[d]}`);
});

test('attention refuses a head count that is not a multiple of the KV head count, and short buffers', () => {
  const a = arena.f32(64);
  assert.throws(() => wasm.attention(a, a, a, a, 1, 1, 3, 2, 4, 1, null, null, null), { code: 'KERNEL_BAD_ARGS' });
  assert.throws(() => wasm.attention(a, a, a, a, 1, 9, 2, 1, 8, 1, null, null, null), { code: 'KERNEL_BAD_ARGS' });
  assert.throws(() => wasm.attention(a, a, a, a, 1, 1, 1, 1, 4, 1, new Int32Array(1), arena.i32(1), null), { code: 'KERNEL_FOREIGN_BUFFER' });
});
