/**
 * Where a decode token's time goes (issue 16): wraps a runtime's kernel methods with clocks for
 * the duration of a measurement and sorts the time into
 *   - gemv: linear and linearGroup calls of the decoder layers (with threads: the main thread's own share, and
 *     `wait`, the main thread waiting for the workers after it),
 *   - lm_head: linear calls whose output is the vocabulary (same split),
 *   - attention (same split),
 *   - other kernels: norms, rope, residual adds, SiLU, KV conversions, …, all serial,
 *   - outside kernels: everything else in the forward pass and the caller (argmax, JS glue).
 * Only bench code wraps anything: the runtime's hot path is untouched when no profile runs
 * (the pool reads no clock unless ThreadPool.profile is set).
 */
import type { Kernels, LinearWeight } from '../src/kernels/kernels.js';
import type { PoolProfile } from '../src/runtime/pool.js';
import type { Runtime } from '../src/runtime/runtime.js';

interface Bucket { ms: number; calls: number; pool: PoolProfile }
const bucket = (): Bucket => ({ ms: 0, calls: 0, pool: { jobs: 0, mainMs: 0, waitMs: 0, soloMs: 0 } });

export interface DecodeProfile {
  tokens: number;
  totalMs: number;
  gemv: Bucket;
  lmHead: Bucket;
  attention: Bucket;
  other: Bucket;
  /** per kernel method name: ms and calls (other kernels) */
  otherByKernel: Record<string, { ms: number; calls: number }>;
}

type PoolRuntime = Runtime & { profilePool?: (p: PoolProfile | null) => void };

/**
 * Runs `decode` (which decodes `tokens` tokens) with every kernel call timed. `vocab`: the lm_head's
 * output size (its linear calls are told apart from the layers' by it).
 */
export function profileDecode(runtime: PoolRuntime, vocab: number, tokens: number, decode: () => void): DecodeProfile {
  const k = runtime.kernels as unknown as Record<string, unknown>;
  const profile: DecodeProfile = { tokens, totalMs: 0, gemv: bucket(), lmHead: bucket(), attention: bucket(), other: bucket(), otherByKernel: {} };
  // the pool's own profile is redirected to the bucket of the call running
  const poolProfile: PoolProfile = { jobs: 0, mainMs: 0, waitMs: 0, soloMs: 0 };
  const charge = (b: Bucket, before: PoolProfile): void => {
    b.pool.jobs += poolProfile.jobs - before.jobs;
    b.pool.mainMs += poolProfile.mainMs - before.mainMs;
    b.pool.waitMs += poolProfile.waitMs - before.waitMs;
    b.pool.soloMs += poolProfile.soloMs - before.soloMs;
  };
  const originals = new Map<string, unknown>();
  let depth = 0;
  const proto = Object.getPrototypeOf(k) as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const fn = proto[name];
    if (name === 'constructor' || name.startsWith('bind') || typeof fn !== 'function' || name === 'run' || name === 'ownerOf') continue;
    originals.set(name, Object.prototype.hasOwnProperty.call(k, name) ? k[name] : undefined);
    const method = fn as (...args: unknown[]) => unknown;
    k[name] = function (this: Kernels, ...args: unknown[]): unknown {
      if (depth > 0) return method.apply(this, args); // a kernel method inside another (linearGroup's separate calls): its caller's time
      const before = { ...poolProfile };
      const t0 = performance.now();
      let result: unknown;
      depth++;
      try { result = method.apply(this, args); } finally { depth--; }
      const ms = performance.now() - t0;
      let b: Bucket;
      if (name === 'linear') b = (args[2] as LinearWeight).N === vocab ? profile.lmHead : profile.gemv;
      else if (name === 'linearGroup') b = profile.gemv;
      else if (name === 'attention') b = profile.attention;
      else {
        b = profile.other;
        const e = (profile.otherByKernel[name] ??= { ms: 0, calls: 0 });
        e.ms += ms; e.calls++;
      }
      b.ms += ms; b.calls++;
      charge(b, before);
      return result;
    };
  }
  runtime.profilePool?.(poolProfile);
  try {
    const t0 = performance.now();
    decode();
    profile.totalMs = performance.now() - t0;
  } finally {
    runtime.profilePool?.(null);
    for (const [name, own] of originals) { if (own === undefined) delete k[name]; else k[name] = own; }
  }
  return profile;
}

/** Lines describing `p` per token; `gemvBytes`: the layer weight bytes per token (for GB/s). */
export function describeProfile(p: DecodeProfile, gemvBytes: number, lmHeadBytes: number, streamGbps: number): string[] {
  const per = (ms: number): string => `${(ms / p.tokens).toFixed(1)} ms`;
  const pct = (ms: number): string => `${((100 * ms) / p.totalMs).toFixed(1)}%`;
  const split = (b: Bucket): string => (b.pool.jobs > 0
    ? ` (${b.pool.jobs / p.tokens} pool jobs/token: main thread's shares ${per(b.pool.mainMs)}, waiting for workers ${per(b.pool.waitMs)}${b.pool.soloMs > 0 ? `, main thread alone ${per(b.pool.soloMs)}` : ''})`
    : '');
  const gbps = (bytes: number, ms: number): string => `${((bytes * p.tokens) / (ms * 1e6)).toFixed(1)} GB/s = ${((100 * (bytes * p.tokens)) / (ms * 1e6) / streamGbps).toFixed(0)}% of the stream read`;
  const kernelMs = p.gemv.ms + p.lmHead.ms + p.attention.ms + p.other.ms;
  const lines = [
    `profile, per token (${p.tokens} tokens, ${per(p.totalMs)} each):`,
    `  gemv (layers)    ${per(p.gemv.ms).padStart(9)} ${pct(p.gemv.ms).padStart(6)}  ${p.gemv.calls / p.tokens} calls, ${gbps(gemvBytes, p.gemv.ms)}${split(p.gemv)}`,
    `  lm_head          ${per(p.lmHead.ms).padStart(9)} ${pct(p.lmHead.ms).padStart(6)}  ${gbps(lmHeadBytes, p.lmHead.ms)}${split(p.lmHead)}`,
    `  attention        ${per(p.attention.ms).padStart(9)} ${pct(p.attention.ms).padStart(6)}  ${p.attention.calls / p.tokens} calls${split(p.attention)}`,
    `  other kernels    ${per(p.other.ms).padStart(9)} ${pct(p.other.ms).padStart(6)}  ${Object.entries(p.otherByKernel).sort((a, b) => b[1].ms - a[1].ms).map(([n, e]) => `${n} ${per(e.ms)} (${e.calls / p.tokens})`).join(', ')}`,
    `  outside kernels  ${per(p.totalMs - kernelMs).padStart(9)} ${pct(p.totalMs - kernelMs).padStart(6)}`,
  ];
  const wait = p.gemv.pool.waitMs + p.lmHead.pool.waitMs + p.attention.pool.waitMs;
  if (wait > 0) lines.push(`  of which the main thread waited for workers: ${per(wait)} ${pct(wait)}`);
  return lines;
}
