/**
 * linearGroup (several linears reading one x: q/k/v, gate/up) equals the separate linear calls bit
 * for bit, for every weight dtype (f32, bf16, q8, q4; exact and int16 activations), on 1 and 2
 * threads, with its members' rows split across the threads as one job; weights it cannot run as one
 * job (mixed dtypes, another shard each) still give the separate calls' bits.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createWasmRuntime, type WasmRuntime } from '../src/kernels/wasm.js';
import { createNodeWasmRuntime } from '../src/node/pool-worker.js';
import { scalarKernels } from '../src/kernels/scalar.js';
import type { LinearSource, LinearWeight } from '../src/kernels/kernels.js';
import { PonderError } from '../src/errors.js';
import { prng, fillUniform, inArena, assertBitIdentical, guardedF32 } from './kernels-support.js';

const runtimes: { label: string; rt: WasmRuntime }[] = [
  { label: '1 thread', rt: await createWasmRuntime() },
  { label: '2 threads', rt: await createNodeWasmRuntime({ threads: 2 }) },
  { label: 'int16 1 thread', rt: await createWasmRuntime({ quantActivations: 'int16' }) },
  { label: 'int16 2 threads', rt: await createNodeWasmRuntime({ quantActivations: 'int16', threads: 2 }) },
];
after(() => Promise.all(runtimes.map(({ rt }) => rt.dispose())));

type DType = 'f32' | 'bf16' | 'q8' | 'q4';

function source(dtype: DType, N: number, K: number, gs: number, rnd: () => number): LinearSource {
  const w = fillUniform(new Float32Array(N * K), rnd, 0.5);
  if (dtype === 'f32') return { dtype, data: w };
  if (dtype === 'bf16') return { dtype, data: new Uint16Array(new Uint32Array(w.buffer).map((b) => b >>> 16)) };
  const bits = dtype === 'q8' ? 8 : 4;
  const codes = new Uint32Array(N * K * bits / 32);
  for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(rnd() * 2 ** 32);
  const bf16 = (n: number, scale: number) => { const a = fillUniform(new Float32Array(n), rnd, scale); new Uint32Array(a.buffer).forEach((b, i, u) => { u[i] = b & 0xffff0000; }); return a; };
  return { dtype, groupSize: gs, codes, scales: bf16(N * K / gs, 0.02), biases: bf16(N * K / gs, 0.1) };
}

test('linearGroup equals the separate linear calls bit for bit (every dtype, both activation modes, 1 and 2 threads), one pool job per group, writing only the ys', () => {
  fc.assert(fc.property(
    fc.constantFrom<DType>('f32', 'bf16', 'q8', 'q4'),
    fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 9 })),
    fc.array(fc.oneof(fc.integer({ min: 1, max: 70 }), fc.constantFrom(16, 48, 130, 256)), { minLength: 1, maxLength: 4 }),
    fc.integer({ min: 1, max: 6 }), fc.boolean(), fc.integer(),
    (dtype, M, Ns, groups, withBias, seed) => {
      const rnd = prng(seed), gs = 64, K = groups * gs;
      const srcs = Ns.map((N) => source(dtype, N, K, gs, rnd));
      const xs = fillUniform(new Float32Array(M * K), rnd);
      const bs = Ns.map((N) => fillUniform(new Float32Array(N), rnd));
      for (const { label, rt } of runtimes) {
        const k = rt.kernels;
        const ws = srcs.map((s, i) => k.bindLinear(s, Ns[i], K));
        const x = inArena(rt.arena, xs), biases = withBias ? bs.map((b) => inArena(rt.arena, b)) : null;
        const refs = ws.map((w, i) => { const y = rt.arena.f32(M * w.N); k.linear(y, x, w, M, biases?.[i] ?? null); return y; });
        const outs = ws.map((w) => guardedF32(rt.arena, M * w.N));
        const before = rt.splitJobs();
        k.linearGroup(outs.map((o) => o.view), x, ws, M, biases);
        const jobs = rt.splitJobs() - before;
        for (let i = 0; i < ws.length; i++) {
          const what = `${label}: ${dtype} M=${M} N=${Ns.join('/')} K=${K} bias=${withBias}, member ${i}`;
          assertBitIdentical(outs[i].view, refs[i], what);
          outs[i].check(what);
        }
        if (rt.threads > 1 && ws.length > 1) {
          const work = Ns.reduce((n, N) => n + M * N * K, 0);
          assert.ok(jobs <= 1, `${label}: ${jobs} pool jobs for one group`);
          if (work >= 1 << 16 && Ns.reduce((n, N) => n + Math.ceil(N / 16), 0) >= 2) assert.equal(jobs, 1, `${label}: a big group runs as one split job`);
        }
      }
    }), { numRuns: 40, examples: [['bf16', 1, [130, 48, 48], 4, false, 1], ['q4', 1, [256, 256], 6, true, 2], ['q8', 5, [70, 16, 130], 3, true, 3], ['f32', 9, [33, 130], 5, false, 4]] });
  for (const { label, rt } of runtimes) if (rt.threads > 1) assert.ok(rt.splitJobs() > 0, `${label}: groups were split across the threads`);
});

test('linearGroup of weights that cannot share a job (mixed dtypes, different shards) gives the separate calls\' bits; the scalar twin is the separate calls', async () => {
  const rnd = prng(9), M = 3, K = 256;
  const srcs = [source('bf16', 130, K, 64, rnd), source('q4', 96, K, 64, rnd), source('f32', 40, K, 64, rnd)];
  const xs = fillUniform(new Float32Array(M * K), rnd);
  const rt = await createNodeWasmRuntime({ threads: 2 });
  try {
    await rt.ensureShards(2);
    for (const shards of [[0, 0, 0], [0, 1, 1]]) {
      const ws = srcs.map((s, i) => rt.kernels.bindLinear(s, [130, 96, 40][i], K, shards[i]));
      const x = inArena(rt.arena, xs);
      const refs = ws.map((w) => { const y = rt.arena.f32(M * w.N); rt.kernels.linear(y, x, w, M); return y; });
      const ys = ws.map((w) => rt.arena.f32(M * w.N));
      rt.kernels.linearGroup(ys, x, ws, M);
      ws.forEach((_, i) => assertBitIdentical(ys[i], refs[i], `shards ${shards.join(',')}, member ${i}`));
    }
    // same dtype, all in shard 1, x and ys staged from shard 0: one job in shard 1
    const ws = [srcs[0], source('bf16', 48, K, 64, rnd)].map((s, i) => rt.kernels.bindLinear(s, [130, 48][i], K, 1));
    const x = inArena(rt.arena, xs);
    const refs = ws.map((w) => { const y = rt.arena.f32(M * w.N); rt.kernels.linear(y, x, w, M); return y; });
    const ys = ws.map((w) => rt.arena.f32(M * w.N));
    const before = rt.splitJobs();
    rt.kernels.linearGroup(ys, x, ws, M);
    assert.equal(rt.splitJobs() - before, 1, 'one job in shard 1');
    ws.forEach((_, i) => assertBitIdentical(ys[i], refs[i], `shard 1, member ${i}`));
  } finally {
    await rt.dispose();
  }
  const scalarWs: LinearWeight[] = srcs.map((s, i) => scalarKernels.bindLinear(s, [130, 96, 40][i], K));
  const ys = scalarWs.map((w) => new Float32Array(M * w.N));
  scalarKernels.linearGroup(ys, xs, scalarWs, M);
  scalarWs.forEach((w, i) => { const y = new Float32Array(M * w.N); scalarKernels.linear(y, xs, w, M); assertBitIdentical(ys[i], y, `scalar member ${i}`); });
});

test('linearGroup refuses overlapping outputs and mismatched member lists with KERNEL_BAD_ARGS', () => {
  const rt = runtimes[1].rt, rnd = prng(3), K = 256;
  const ws = [rt.kernels.bindLinear(source('bf16', 64, K, 64, rnd), 64, K), rt.kernels.bindLinear(source('bf16', 64, K, 64, rnd), 64, K)];
  const x = inArena(rt.arena, fillUniform(new Float32Array(K), rnd));
  const y = rt.arena.f32(128);
  const bad = (f: () => void, what: RegExp) => assert.throws(f, (e: unknown) => e instanceof PonderError && e.code === 'KERNEL_BAD_ARGS' && what.test(e.message));
  bad(() => rt.kernels.linearGroup([y.subarray(0, 64), y.subarray(32, 96)], x, ws, 1), /ys\[1\] must not overlap ys\[0\]/);
  bad(() => rt.kernels.linearGroup([y.subarray(0, 64)], x, ws, 1), /one of each per member/);
});
