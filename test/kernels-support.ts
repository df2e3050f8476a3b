/**
 * Shared helpers for the kernel tests (test/kernels-*.test.ts): deterministic random fill, buffers
 * from the WASM arena with sentinels on both sides, and error bounds.
 */
import assert from 'node:assert/strict';
import type { Arena } from '../src/runtime/arena.js';

/** Unit roundoff of f32. */
export const U = 2 ** -24;
/** Sentinel written around every output: any kernel write outside the output changes it. */
export const SENTINEL = -12345.6789;
const GUARD = 5; // elements each side; odd so the views are not 16-byte aligned

/** mulberry32: a small deterministic PRNG, seeded by fast-check. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform values in [-scale, scale). */
export function fillUniform(a: Float32Array, rnd: () => number, scale = 1): Float32Array {
  for (let i = 0; i < a.length; i++) a[i] = (2 * rnd() - 1) * scale;
  return a;
}

export const SPECIALS = [0, -0, Infinity, -Infinity, NaN, 3e38, -3e38, 1e-40, -1e-40, 1e-30] as const;

/** Overwrites about `fraction` of the elements with special values. */
export function injectSpecials(a: Float32Array, rnd: () => number, fraction: number, specials: readonly number[] = SPECIALS): void {
  for (let i = 0; i < a.length; i++) if (rnd() < fraction) a[i] = specials[Math.floor(rnd() * specials.length)];
}

/** An arena f32 view of n elements with SENTINEL guards before and after; `check()` asserts they survived. */
export function guardedF32(arena: Arena, n: number): { view: Float32Array; check(label: string): void } {
  const whole = arena.f32(n + 2 * GUARD);
  whole.fill(SENTINEL);
  const view = whole.subarray(GUARD, GUARD + n);
  return {
    view,
    check(label: string) {
      for (let i = 0; i < GUARD; i++) {
        assert.equal(whole[i], Math.fround(SENTINEL), `${label}: wrote before the output (guard ${i})`);
        assert.equal(whole[GUARD + n + i], Math.fround(SENTINEL), `${label}: wrote after the output (guard ${i})`);
      }
    },
  };
}

/** Copies data into a fresh arena view. */
export function inArena(arena: Arena, data: Float32Array): Float32Array {
  const v = arena.f32(data.length);
  v.set(data);
  return v;
}

/**
 * XNNPACK-style comparison of one element: a NaN reference needs a NaN result; an infinite
 * reference needs the same infinity; a finite reference needs a finite result within `bound`.
 */
export function assertClose(got: number, ref: number, bound: number, label: string): void {
  if (Number.isNaN(ref)) { assert.ok(Number.isNaN(got), `${label}: expected NaN, got ${got}`); return; }
  if (!Number.isFinite(ref)) { assert.ok(Object.is(got, ref), `${label}: expected ${ref}, got ${got}`); return; }
  const err = Math.abs(got - ref);
  assert.ok(err <= bound, `${label}: got ${got}, reference ${ref}, error ${err} > bound ${bound}`);
}

/** Bit equality, with every NaN equal to every NaN. */
export function sameF32(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

export function assertBitIdentical(a: Float32Array, b: Float32Array, label: string): void {
  assert.equal(a.length, b.length, `${label}: lengths differ`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) assert.equal(ua[i], ub[i], `${label}: element ${i} differs: ${a[i]} vs ${b[i]}`);
}
