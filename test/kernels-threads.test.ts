import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { createNodeWasmRuntime, defaultThreadCount } from '../src/node/pool-worker.js';
import { defaultThreads, DEFAULT_MAX_THREADS } from '../src/runtime/pool.js';
import { defaultWasmRuntime } from '../src/web/default-runtime.js';
import { availableParallelism } from 'node:os';
import { prng, fillUniform, inArena, assertBitIdentical } from './kernels-support.js';

const single = await createWasmRuntime();
const pooled = await createNodeWasmRuntime({ threads: 2 });
after(() => pooled.dispose());

test('linear with 2 threads is bit-identical to 1 thread (split by 16-column panels)', () => {
  fc.assert(fc.property(
    fc.oneof(fc.integer({ min: 1, max: 12 }), fc.constant(40)), fc.oneof(fc.integer({ min: 1, max: 100 }), fc.constant(130)), fc.oneof(fc.integer({ min: 1, max: 300 }), fc.constant(260)),
    fc.constantFrom('f32' as const, 'bf16' as const), fc.boolean(), fc.integer(),
    (M, N, K, dtype, withBias, seed) => {
      const rnd = prng(seed);
      const wf = fillUniform(new Float32Array(N * K), rnd);
      const src = dtype === 'f32' ? { dtype, data: wf } : { dtype, data: new Uint16Array(new Uint32Array(wf.buffer).map((b) => b >>> 16)) };
      const xs = fillUniform(new Float32Array(M * K), rnd), bs = fillUniform(new Float32Array(N), rnd);
      const run = (rt: typeof single) => {
        const y = rt.arena.f32(M * N);
        rt.kernels.linear(y, inArena(rt.arena, xs), rt.kernels.bindLinear(src, N, K), M, withBias ? inArena(rt.arena, bs) : null);
        return y;
      };
      assertBitIdentical(run(pooled), run(single), `M=${M} N=${N} K=${K} ${dtype}`);
    }), { numRuns: 40, examples: [[40, 130, 260, 'bf16', true, 1], [1, 130, 260, 'f32', false, 2], [300, 40, 500, 'bf16', true, 3], [300, 40, 500, 'f32', false, 4]] });
  assert.ok(pooled.splitJobs() >= 2, 'the big calls were split across the threads');
});

for (const kvDtype of ['f32', 'bf16', 'f16'] as const) {
  test(`attention over a ${kvDtype} KV cache with 2 threads is bit-identical to 1 thread (prefill split by query row × head; decode by key rows)`, () => {
    let split = 0;
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 2 }),
      fc.constantFrom(8, 16, 36, 64), fc.integer(),
      (Tq, Tk, nHeads, nKvHeads, hd, seed) => {
        const rnd = prng(seed);
        const heads = nHeads * nKvHeads;
        const qs = fillUniform(new Float32Array(Tq * heads * hd), rnd), ks = fillUniform(new Float32Array(Tk * nKvHeads * hd), rnd), vs = fillUniform(new Float32Array(Tk * nKvHeads * hd), rnd);
        const run = (rt: typeof single) => {
          const qPos = rt.arena.i32(Tq), kPos = rt.arena.i32(Tk);
          for (let i = 0; i < Tq; i++) qPos[i] = Tk - Tq + i;
          for (let j = 0; j < Tk; j++) kPos[j] = j;
          const out = rt.arena.f32(Tq * heads * hd);
          const k = inArena(rt.arena, ks), v = inArena(rt.arena, vs);
          if (kvDtype === 'f32') rt.kernels.attention(out, inArena(rt.arena, qs), k, v, Tq, Tk, heads, nKvHeads, hd, 0.125, qPos, kPos, null);
          else {
            const kn = rt.arena.u16(k.length), vn = rt.arena.u16(v.length);
            const narrow = kvDtype === 'bf16' ? rt.kernels.f32ToBf16.bind(rt.kernels) : rt.kernels.f32ToF16.bind(rt.kernels);
            narrow(kn, k, k.length); narrow(vn, v, v.length);
            rt.kernels.attention(out, inArena(rt.arena, qs), kn, vn, Tq, Tk, heads, nKvHeads, hd, 0.125, qPos, kPos, null, kvDtype);
          }
          return out;
        };
        const before = pooled.splitJobs();
        assertBitIdentical(run(pooled), run(single), `Tq=${Tq} Tk=${Tk} heads=${heads}/${nKvHeads} hd=${hd} ${kvDtype}`);
        split += pooled.splitJobs() - before;
      }), { numRuns: 40, examples: [[8, 300, 4, 2, 64, 3], [1, 300, 4, 2, 64, 4]] });
    assert.ok(split >= 2, 'the big calls were split across the threads');
  });
}

for (const kvDtype of ['f32', 'bf16', 'f16'] as const) {
  test(`decode attention (one query row) over a ${kvDtype} KV cache with 2 threads is bit-identical to 1 thread (scores split by key rows), masks and keys nobody sees included`, () => {
    let split = 0;
    fc.assert(fc.property(
      fc.integer({ min: 64, max: 700 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 2 }), fc.constantFrom(36, 64, 128),
      fc.constantFrom('causal', 'allowed', 'none-visible', 'unmasked'), fc.integer(),
      (Tk, nHeads, nKvHeads, hd, mask, seed) => {
        const rnd = prng(seed);
        const heads = nHeads * nKvHeads;
        const qs = fillUniform(new Float32Array(heads * hd), rnd), ks = fillUniform(new Float32Array(Tk * nKvHeads * hd), rnd), vs = fillUniform(new Float32Array(Tk * nKvHeads * hd), rnd);
        const allowedBits = Uint8Array.from({ length: Tk }, () => (mask === 'none-visible' ? 0 : rnd() < 0.7 ? 1 : 0));
        const run = (rt: typeof single) => {
          const qPos = rt.arena.i32(1), kPos = rt.arena.i32(Tk);
          qPos[0] = Tk - 1 - (seed & 7); // a few keys past the query's position are masked
          for (let j = 0; j < Tk; j++) kPos[j] = j;
          let allowed: Uint8Array | null = null;
          if (mask === 'allowed' || mask === 'none-visible') { allowed = rt.arena.u8(Tk); allowed.set(allowedBits); }
          const out = rt.arena.f32(heads * hd);
          const k = inArena(rt.arena, ks), v = inArena(rt.arena, vs);
          const positions = mask === 'unmasked' ? [null, null] as const : [qPos, kPos] as const;
          if (kvDtype === 'f32') rt.kernels.attention(out, inArena(rt.arena, qs), k, v, 1, Tk, heads, nKvHeads, hd, 0.125, positions[0], positions[1], allowed);
          else {
            const kn = rt.arena.u16(k.length), vn = rt.arena.u16(v.length);
            const narrow = kvDtype === 'bf16' ? rt.kernels.f32ToBf16.bind(rt.kernels) : rt.kernels.f32ToF16.bind(rt.kernels);
            narrow(kn, k, k.length); narrow(vn, v, v.length);
            rt.kernels.attention(out, inArena(rt.arena, qs), kn, vn, 1, Tk, heads, nKvHeads, hd, 0.125, positions[0], positions[1], allowed, kvDtype);
          }
          return out;
        };
        const before = pooled.splitJobs();
        assertBitIdentical(run(pooled), run(single), `Tk=${Tk} heads=${heads}/${nKvHeads} hd=${hd} ${mask} ${kvDtype}`);
        split += pooled.splitJobs() - before;
      }), { numRuns: 30, examples: [[4096, 16, 1, 128, 'causal', 1], [300, 4, 2, 36, 'none-visible', 2], [513, 3, 1, 64, 'allowed', 3]] });
    assert.ok(split >= 2, 'the decode calls were split across the threads');
  });
}

test('a thread count that is not a positive integer, or threads without a worker factory, is refused', async () => {
  await assert.rejects(createWasmRuntime({ threads: 0 }), { code: 'ARG_INVALID' });
  await assert.rejects(createWasmRuntime({ threads: 1.5 }), { code: 'ARG_INVALID' });
  await assert.rejects(createWasmRuntime({ threads: 2 }), { code: 'RUNTIME_UNSUPPORTED' });
});

test('a worker that fails to start is RUNTIME_UNSUPPORTED, and the workers already started are stopped', async () => {
  let terminated = 0, started = 0;
  const factory = () => {
    started++;
    const ok = started === 1;
    return { ready: ok ? Promise.resolve() : Promise.reject(new Error('no threads here')), terminate: async () => { terminated++; } };
  };
  await assert.rejects(createWasmRuntime({ threads: 3, workerFactory: factory }), { code: 'RUNTIME_UNSUPPORTED' });
  assert.equal(terminated, 2);
});

test('a kernel worker that never picks up its job is KERNEL_WORKER_LOST, and the runtime goes on correctly on one thread', async () => {
  // A "worker" that reports ready but never polls its slot: what a dead or starved thread looks like.
  const silentWorker = () => ({ ready: Promise.resolve(), terminate: async () => {} });
  const lost = await createWasmRuntime({ threads: 2, workerFactory: silentWorker, pickupTimeoutMs: 100 });
  const M = 64, N = 256, K = 256; // big enough to be split across the threads
  const rnd = prng(7);
  const wf = fillUniform(new Float32Array(N * K), rnd), xs = fillUniform(new Float32Array(M * K), rnd);
  const run = (rt: typeof single) => {
    const y = rt.arena.f32(M * N);
    rt.kernels.linear(y, inArena(rt.arena, xs), rt.kernels.bindLinear({ dtype: 'f32', data: wf }, N, K), M, null);
    return y;
  };
  assert.throws(() => run(lost), (e: { code?: string; message?: string }) => e.code === 'KERNEL_WORKER_LOST' && /worker 0/.test(e.message ?? ''));
  assertBitIdentical(run(lost), run(single), 'after the loss, calls run on the main thread alone');
  await lost.dispose();
});

test('threads default to the available cores, at most 8; an unknown or single core count means one thread', () => {
  assert.equal(DEFAULT_MAX_THREADS, 8);
  for (const cores of [2, 3, 8]) assert.equal(defaultThreads(cores), cores);
  for (const cores of [9, 64, 256]) assert.equal(defaultThreads(cores), 8);
  for (const cores of [undefined, 0, 1, -2, 1.5, NaN]) assert.equal(defaultThreads(cores), 1);
  assert.equal(defaultThreadCount(), defaultThreads(availableParallelism()), 'Node: os.availableParallelism()');
});

test('the core default runtime falls back to one thread where no pool can start, and under Deno', async () => {
  const g = globalThis as { Worker?: unknown; Deno?: unknown; navigator?: unknown };
  const saved = { Worker: g.Worker, Deno: g.Deno, navigator: Object.getOwnPropertyDescriptor(globalThis, 'navigator') };
  // A Worker that fails at once (what a bundle without the pool's worker file gives).
  class FailingWorker { onerror: ((e: { message: string; preventDefault(): void }) => void) | null = null; onmessage = null;
    constructor() { queueMicrotask(() => this.onerror?.({ message: 'no such module', preventDefault() {} })); }
    postMessage(): void {} terminate(): void {} }
  try {
    Object.defineProperty(globalThis, 'navigator', { value: { hardwareConcurrency: 4 }, configurable: true });
    g.Worker = FailingWorker;
    const fallback = await defaultWasmRuntime();
    assert.equal(fallback.threads, 1, 'a pool that cannot start: one thread');
    g.Deno = {};
    const deno = await defaultWasmRuntime();
    assert.equal(deno.threads, 1, 'Deno: one thread');
  } finally {
    g.Worker = saved.Worker; g.Deno = saved.Deno;
    if (saved.navigator) Object.defineProperty(globalThis, 'navigator', saved.navigator); else delete g.navigator;
  }
});
