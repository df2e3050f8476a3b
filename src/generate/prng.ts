/**
 * The seeded pseudo-random generator behind sampling: xoshiro128** (Blackman & Vigna, 2018), its
 * 128-bit state filled from the uint32 seed by splitmix32. Chosen because it is small, has no
 * BigInt or float maths inside (so every JS engine gives the same stream, bit for bit), and passes
 * the usual statistical batteries, which mulberry32 / a bare LCG do not.
 *
 * We cannot reproduce torch.multinomial's stream (it depends on the torch version and device), so
 * the promise is ours: the same seed gives the same numbers, on every engine, forever (spec/sampling.md).
 */
import { PonderError } from '../errors.js';

/** Throws ARG_INVALID unless `seed` is an integer in [0, 2^32). `name` is the option name users typed. */
export function checkSeed(seed: number, name = 'seed'): void {
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new PonderError('ARG_INVALID', `${name} must be an integer in [0, 4294967295] (a uint32), got ${String(seed)}`, {
      field: name,
      hint: `pass a whole number such as ${name}: 42; the same seed reproduces the same tokens`,
    });
  }
}

export class Prng {
  // xoshiro128** state, four uint32 words; never all zero (splitmix32 cannot produce four zeros in a row)
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  constructor(seed: number) {
    this.reseed(seed);
  }

  /**
   * A generator with the raw xoshiro128** state (not all zero). For checking the stream against the
   * reference C implementation; everything else seeds through the constructor.
   */
  static fromState(s0: number, s1: number, s2: number, s3: number): Prng {
    const prng = new Prng(0);
    prng.s0 = s0 >>> 0;
    prng.s1 = s1 >>> 0;
    prng.s2 = s2 >>> 0;
    prng.s3 = s3 >>> 0;
    return prng;
  }

  /** Restart the stream as if freshly constructed with `seed`. */
  reseed(seed: number): void {
    checkSeed(seed);
    // splitmix32: a counter stepped by the golden-ratio constant, then a 32-bit avalanche mix
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** The next uint32 of the stream. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A float in [0, 1) with 32 random bits: exact in float64, never 1. */
  nextFloat(): number {
    return this.nextUint32() * 2 ** -32;
  }

  /** A uniform integer in [0, n). */
  nextIndex(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }

  /** A standard normal draw (Box–Muller on two uniforms; the first is kept away from 0). */
  nextNormal(): number {
    let u = this.nextFloat();
    while (u === 0) u = this.nextFloat();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.nextFloat());
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
