/**
 * The kernel benchmark suite behind `npm run bench` and `ponder bench kernels`: ponder's linear and
 * attention kernels next to tfjs-backend-wasm (XNNPACK) and onnxruntime-web in the same process,
 * each figure a tinybench median (timing.ts) and a fraction of its limit on this host (bench/cpu.ts):
 * prefill against the 128-bit SIMD issue rate at the clock measured right before the row; decode
 * and attention (both stream memory) against a same-run stream read of blocks of the same size.
 * When the runtime has threads, 2 threads against 1 on the prefill shapes; for f32 prefill, every
 * linear register tile (src/kernels/linear-tiles.ts) next to the one the runtime chose.
 *
 * Every shape is timed for ponder and for both peers back to back, so ratios compare figures taken
 * seconds apart: on the shared 2-core machine absolute numbers drift, same-run ratios much less.
 */
import type { LinearWeight, WeightDType } from '../src/kernels/kernels.js';
import { LINEAR_TILES, type LinearTile } from '../src/kernels/linear-tiles.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { describeCpu, hostCpu, measureClockGHz, simdPeakGflops, type HostCpu } from './cpu.js';
import { loadPeers, type Peer, type PeerCase } from './peers.js';
import { StreamBaseline } from './stream-baseline.js';
import { FULL_TIMING, QUICK_TIMING, timeAsync, timeSync, type Timing, type TimingOptions } from './timing.js';

export interface LinearShape { M: number; K: number; N: number }
export interface AttentionShape { T: number; headDim: number }

export interface BenchPlan {
  /** Each shape runs with f32 and with bf16 weights. M = 1 shapes are decode: timed cold. */
  linear: LinearShape[];
  /** Attention for one query over T cached positions (cold: the cache streams from memory). */
  attention: AttentionShape[];
  heads: number; // query heads = KV heads (no GQA), so every head streams its own K and V
  /** Cold decode and attention rotate copies totalling at least this many bytes, so each call reads DRAM. */
  coldBytes: number;
  timing: TimingOptions;
}

const MiB = 1024 * 1024;

export const FULL_PLAN: BenchPlan = {
  linear: [
    { M: 1, K: 768, N: 768 }, { M: 1, K: 4096, N: 4096 },
    { M: 64, K: 768, N: 768 }, { M: 256, K: 1024, N: 1024 }, { M: 512, K: 2048, N: 2048 },
  ],
  attention: [
    { T: 128, headDim: 64 }, { T: 1024, headDim: 64 }, { T: 4096, headDim: 64 }, { T: 4096, headDim: 128 },
    { T: 16384, headDim: 64 }, { T: 16384, headDim: 128 },
  ],
  heads: 8,
  coldBytes: 256 * MiB,
  timing: FULL_TIMING,
};

/** Same shapes, shorter sampling and a 64 MiB cold rotation (still past the L3 of this machine). */
export const QUICK_PLAN: BenchPlan = { ...FULL_PLAN, coldBytes: 64 * MiB, timing: QUICK_TIMING };

export interface PeerFigure { name: string; gflops: number; ms: number; foreignCores?: number }

export interface BarCheck {
  bar: string; // what is required, in words
  actual: number;
  target: number; // actual ≥ target passes
  unit: '×' | '%';
  pass: boolean;
}

export interface BenchRow {
  kernel: 'linear' | 'attention';
  shape: string; // linear "MxKxN"; attention "1xTxD": one query, T cached positions, head dim D
  dtype: WeightDType; // weight dtype (attention: the KV cache's, f32 or bf16; q and out are f32)
  gflops: number;
  ms: number; // median milliseconds per call
  threads: number;
  implementation: string; // ponder's kernels: wasm-simd, wasm-simd-relaxed, wasm-simd-x2, scalar
  cpu: string; // the host: model name, vendor, family and model (bench/cpu.ts)
  foreignCores?: number; // cores other processes used while this row was timed (Linux)
  peers: PeerFigure[]; // always f32 weights, single thread
  tile?: LinearTile; // linear with M > 1: the register tile ponder's runtime ran
  tiles?: PeerFigure[]; // f32 prefill, 1 thread: every tile, timed right after the row
  clockGHz?: number; // prefill: the core clock, the faster of two measurements right before and right after the row
  peakGflops?: number; // prefill: 128-bit SIMD issue rate at that clock × threads
  pctOfPeak?: number; // 100 · gflops / peakGflops
  cold?: boolean; // weight (or KV cache) copies rotated so every call streams from DRAM
  gbps?: number; // bytes read per second: weights (decode), K and V (attention)
  streamGbps?: number; // same-run stream read of blocks of the same size: mean of the two below
  streamGbpsBeforeAfter?: [number, number]; // measured right before and right after the kernel
  pctOfStream?: number;
  heads?: number;
  speedupVsOneThread?: number;
  speedupVsF32?: number; // attention over a bf16 KV cache: time of the f32 call ÷ this one
  bars?: BarCheck[];
}

export interface BenchDeps {
  /** A fresh single-thread runtime; each case gets its own, so its memory is dropped afterwards. */
  createRuntime(): Promise<Runtime>;
  /** A fresh runtime with this many threads; absent when the kernels have no threads. */
  createThreadedRuntime?(threads: number): Promise<Runtime>;
  /** A fresh single-thread runtime running this linear tile; absent when the kernels have no tiles. */
  createTileRuntime?(tile: LinearTile): Promise<Runtime>;
  /** The relaxed-SIMD build (fused multiply-add): its ceiling is the fused rate. */
  relaxed?: boolean;
  /** false skips the peers (e.g. an installed ponder without the devDependencies). */
  peers: boolean;
  /** Called with each row as it is finished, and with progress notes. */
  onRow?(row: BenchRow): void;
  onNote?(text: string): void;
}

export interface BenchResult {
  rows: BenchRow[];
  notes: string[]; // peers that could not load, threads unavailable, …
  cpu: HostCpu;
}

export async function runKernelBench(plan: BenchPlan, deps: BenchDeps): Promise<BenchResult> {
  const notes: string[] = [];
  const note = (text: string): void => { notes.push(text); deps.onNote?.(text); };
  const emit = (row: BenchRow): BenchRow => { deps.onRow?.(row); return row; };
  const rows: BenchRow[] = [];

  let peers: Peer[] = [];
  if (deps.peers) {
    const loaded = await loadPeers();
    peers = loaded.peers;
    for (const u of loaded.unavailable) note(`peer unavailable: ${u}`);
  }
  const cpu = hostCpu();
  const cpuName = describeCpu(cpu);
  const relaxed = deps.relaxed === true;
  // The stream buffer holds at least one block of the largest streamed operand (a 16k-position KV cache is 128 MiB).
  const streamedBytes = [...plan.linear.filter((s) => s.M === 1).map((s) => 4 * s.K * s.N), ...plan.attention.map((a) => 2 * a.T * plan.heads * a.headDim * 4)];
  const stream = streamedBytes.length > 0 ? await StreamBaseline.create(Math.max(plan.coldBytes, ...streamedBytes)) : null;
  let createThreaded = deps.createThreadedRuntime; // unset after a failure to start workers
  for (const shape of plan.linear) {
    const { M, K, N } = shape;
    const cold = M === 1;
    const data = linearData(M, K, N);
    const flops = 2 * M * K * N;

    const peerFigures: PeerFigure[] = [];
    const peerCopies = cold ? copiesFor(plan.coldBytes, K * N * 4) : 1;
    if (peers.length > 0) {
      const weightKN = transpose(data.weightNK, N, K);
      const copiesKN = new Array<Float32Array>(peerCopies).fill(weightKN); // each peer copies into its own heap
      for (const peer of peers) {
        const t = await timePeerCase(peer.name, `linear ${M}x${K}x${N}`, () => peer.linear(M, K, N, data.x, copiesKN), plan.timing, note);
        if (t) peerFigures.push({ name: peer.name, gflops: flops / t.seconds / 1e9, ms: t.seconds * 1e3, foreignCores: t.foreignCores });
      }
    }

    for (const dtype of ['f32', 'bf16'] as const) {
      const weightBytes = K * N * (dtype === 'f32' ? 4 : 2);
      const copies = cold ? copiesFor(plan.coldBytes, weightBytes) : 1;
      // Stream read right before and right after the kernel, over blocks of the same size: DRAM
      // bandwidth drifts minute to minute here, so the kernel is compared with the mean of the two.
      const streamBefore = cold && stream ? await stream.gbps(weightBytes, plan.timing) : undefined;
      const clockBefore = cold ? undefined : await measureClockGHz();
      const runtime = await deps.createRuntime();
      const implementation = runtime.kernels.name;
      const tile = M > 1 ? runtimeTile(runtime) : undefined;
      const t = await timeLinear(runtime, data, dtype, M, K, N, copies, plan.timing);
      const streamAfter = cold && stream ? await stream.gbps(weightBytes, plan.timing) : undefined;
      // the clock right before and right after: the faster (on a busy machine the core may deliver fewer cycles at times)
      const clockGHz = clockBefore === undefined ? undefined : Math.max(clockBefore, await measureClockGHz());
      const row: BenchRow = {
        kernel: 'linear', shape: `${M}x${K}x${N}`, dtype, gflops: flops / t.seconds / 1e9, ms: t.seconds * 1e3, threads: 1,
        implementation, cpu: cpuName, foreignCores: t.foreignCores, peers: peerFigures,
      };
      if (tile) row.tile = tile;
      if (cold) {
        row.cold = true;
        row.gbps = weightBytes / t.seconds / 1e9;
        if (streamBefore !== undefined && streamAfter !== undefined) Object.assign(row, streamShare(row.gbps, streamBefore, streamAfter));
      } else if (clockGHz !== undefined) {
        Object.assign(row, peakShare(row.gflops, cpu, clockGHz, relaxed, 1));
      }
      if (tile && dtype === 'f32' && deps.createTileRuntime) {
        row.tiles = [];
        for (const other of LINEAR_TILES) {
          const tileRuntime = await deps.createTileRuntime(other);
          const tt = await timeLinear(tileRuntime, data, dtype, M, K, N, 1, plan.timing);
          row.tiles.push({ name: other, gflops: flops / tt.seconds / 1e9, ms: tt.seconds * 1e3, foreignCores: tt.foreignCores });
        }
      }
      row.bars = linearBars(row, M, K, N, relaxed);
      rows.push(emit(row));

      if (M >= 64 && createThreaded) {
        let runtime2: Runtime;
        try {
          runtime2 = await createThreaded(2);
        } catch (e) { // no workers here (e.g. a browser-only build): drop the 2-thread rows, not the run
          note(`2-thread rows skipped: ${(e as Error).message.split('\n')[0]}`);
          createThreaded = undefined;
          continue;
        }
        const implementation2 = runtime2.kernels.name;
        const tile2 = runtimeTile(runtime2);
        const t2 = await timeLinear(runtime2, data, dtype, M, K, N, 1, plan.timing);
        const speedup = t.seconds / t2.seconds;
        const gflops2 = flops / t2.seconds / 1e9;
        rows.push(emit({
          kernel: 'linear', shape: row.shape, dtype, gflops: gflops2, ms: t2.seconds * 1e3, threads: 2,
          implementation: implementation2, cpu: cpuName, foreignCores: t2.foreignCores, peers: peerFigures, speedupVsOneThread: speedup,
          ...(tile2 ? { tile: tile2 } : {}),
          ...(clockGHz !== undefined ? peakShare(gflops2, cpu, clockGHz, relaxed, 2) : {}),
          bars: [{ bar: '2 threads ≥ 1.8× one thread (prefill)', actual: speedup, target: 1.8, unit: '×', pass: speedup >= 1.8 }],
        }));
      }
    }
  }

  for (const { T, headDim: D } of plan.attention) {
    const H = plan.heads;
    const flops = 4 * H * T * D; // q·k and p·v over every position and head; exp not counted
    const scale = 1 / Math.sqrt(D);
    const data = attentionData(H, T, D);
    const kvBytes = 2 * T * H * D * 4; // K and V: what one call must read
    const copies = copiesFor(plan.coldBytes, kvBytes);
    const streamBefore = stream ? await stream.gbps(kvBytes, plan.timing) : undefined;
    const runtime = await deps.createRuntime();
    const implementation = runtime.kernels.name;
    const t = await timeAttention(runtime, data, H, T, D, scale, copies, plan.timing);
    const streamAfter = stream ? await stream.gbps(kvBytes, plan.timing) : undefined;
    const peerFigures: PeerFigure[] = [];
    for (const peer of peers) {
      const tp = await timePeerCase(peer.name, `attention 1x${T}x${D}`, () => peer.attention(H, T, D, scale, data.qHeads, data.kTHeads, data.vHeads), plan.timing, note);
      if (tp) peerFigures.push({ name: peer.name, gflops: flops / tp.seconds / 1e9, ms: tp.seconds * 1e3, foreignCores: tp.foreignCores });
    }
    const row: BenchRow = {
      kernel: 'attention', shape: `1x${T}x${D}`, dtype: 'f32', gflops: flops / t.seconds / 1e9, ms: t.seconds * 1e3,
      threads: 1, heads: H, implementation, cpu: cpuName, foreignCores: t.foreignCores, peers: peerFigures,
      cold: true, gbps: kvBytes / t.seconds / 1e9,
    };
    if (streamBefore !== undefined && streamAfter !== undefined) Object.assign(row, streamShare(row.gbps!, streamBefore, streamAfter));
    row.bars = attentionBars(row, T, D);
    rows.push(emit(row));

    // The same call over a bf16 KV cache (issue 12): half the bytes, widened in registers.
    const kvBytes16 = kvBytes / 2;
    const copies16 = copiesFor(plan.coldBytes, kvBytes16);
    const stream16Before = stream ? await stream.gbps(kvBytes16, plan.timing) : undefined;
    const runtime16 = await deps.createRuntime();
    const t16 = await timeAttention(runtime16, data, H, T, D, scale, copies16, plan.timing, 'bf16');
    const stream16After = stream ? await stream.gbps(kvBytes16, plan.timing) : undefined;
    const row16: BenchRow = {
      kernel: 'attention', shape: `1x${T}x${D}`, dtype: 'bf16', gflops: flops / t16.seconds / 1e9, ms: t16.seconds * 1e3,
      threads: 1, heads: H, implementation, cpu: cpuName, foreignCores: t16.foreignCores, peers: [],
      cold: true, gbps: kvBytes16 / t16.seconds / 1e9, speedupVsF32: t.seconds / t16.seconds,
    };
    if (stream16Before !== undefined && stream16After !== undefined) Object.assign(row16, streamShare(row16.gbps!, stream16Before, stream16After));
    row16.bars = attentionBars(row16, T, D);
    rows.push(emit(row16));
  }
  return { rows, notes, cpu };
}

/** The register tile a WASM runtime runs (undefined for the scalar kernels). */
function runtimeTile(runtime: Runtime): LinearTile | undefined {
  return (runtime as Runtime & { linearTile?: LinearTile }).linearTile;
}

function streamShare(gbps: number, before: number, after: number): Pick<BenchRow, 'streamGbps' | 'streamGbpsBeforeAfter' | 'pctOfStream'> {
  const streamGbps = (before + after) / 2;
  return { streamGbps, streamGbpsBeforeAfter: [before, after], pctOfStream: (100 * gbps) / streamGbps };
}

function peakShare(gflops: number, cpu: HostCpu, clockGHz: number, relaxed: boolean, threads: number): Pick<BenchRow, 'clockGHz' | 'peakGflops' | 'pctOfPeak'> {
  const peakGflops = simdPeakGflops(cpu, clockGHz, relaxed, threads);
  return { clockGHz, peakGflops, pctOfPeak: (100 * gflops) / peakGflops };
}

/** The acceptance bars that apply to a single-thread linear row (issues 2 and 16). */
function linearBars(row: BenchRow, M: number, K: number, N: number, relaxed: boolean): BarCheck[] {
  const bars: BarCheck[] = [];
  if (M >= 64) {
    for (const p of row.peers) {
      const ratio = row.gflops / p.gflops;
      bars.push({ bar: `prefill ≥ 1.5× ${p.name} (f32)`, actual: ratio, target: 1.5, unit: '×', pass: ratio >= 1.5 });
    }
    if (row.pctOfPeak !== undefined) {
      const target = relaxed ? 90 : 85;
      bars.push({ bar: `prefill ≥ ${target}% of the 128-bit SIMD issue rate`, actual: row.pctOfPeak, target, unit: '%', pass: row.pctOfPeak >= target });
    }
  }
  if (M === 1 && K === 4096 && N === 4096 && row.dtype === 'bf16') {
    for (const p of row.peers) {
      const ratio = p.ms / row.ms; // ≤ 1/1.8 of the peer's time ⇔ peer time / ours ≥ 1.8
      bars.push({ bar: `decode bf16 ≥ 1.8× faster than ${p.name} f32`, actual: ratio, target: 1.8, unit: '×', pass: ratio >= 1.8 });
    }
    if (row.pctOfStream !== undefined) {
      bars.push({ bar: 'decode bf16 ≥ 85% of same-run stream read', actual: row.pctOfStream, target: 85, unit: '%', pass: row.pctOfStream >= 85 });
    }
  }
  return bars;
}

/** The bars of a one-query attention row at long context (issue 16). */
function attentionBars(row: BenchRow, T: number, D: number): BarCheck[] {
  if (T < 4096 || (D !== 64 && D !== 128)) return [];
  const bars: BarCheck[] = [];
  if (row.pctOfStream !== undefined) bars.push({ bar: 'attention ≥ 80% of same-run stream read of K and V', actual: row.pctOfStream, target: 80, unit: '%', pass: row.pctOfStream >= 80 });
  for (const p of row.peers.filter((q) => q.name === 'ort-web')) {
    const ratio = p.ms / row.ms;
    bars.push({ bar: `attention ≥ 2× ${p.name}`, actual: ratio, target: 2, unit: '×', pass: ratio >= 2 });
  }
  return bars;
}

function copiesFor(totalBytes: number, bytesPerCopy: number): number {
  return Math.max(1, Math.ceil(totalBytes / bytesPerCopy));
}

async function timePeer(c: PeerCase, timing: TimingOptions): Promise<Timing> {
  return c.async ? timeAsync(async () => { await c.call(); }, timing) : timeSync(() => { c.call(); }, timing);
}

/** Times a peer's case; a peer that fails (e.g. its own WASM heap runs out) leaves a note and no figure, not a failed run. */
async function timePeerCase(name: string, what: string, prepare: () => Promise<PeerCase>, timing: TimingOptions, note: (text: string) => void): Promise<Timing | null> {
  let c: PeerCase | undefined;
  try {
    c = await prepare();
    return await timePeer(c, timing);
  } catch (e) {
    note(`peer ${name} failed on ${what}: ${(e as Error).message.split('\n')[0]}`);
    return null;
  } finally {
    try { await c?.dispose(); } catch { /* a failed peer may not dispose cleanly either */ }
  }
}

interface LinearData {
  x: Float32Array; // [M, K]
  weightNK: Float32Array; // [N, K] (PyTorch layout)
  weightBf16NK: Uint16Array; // [N, K] the same weights rounded to bf16
}

function linearData(M: number, K: number, N: number): LinearData {
  const random = lcg(M * 1_000_003 + K * 1009 + N);
  const amplitude = 1 / Math.sqrt(K); // keeps outputs O(1): no overflow, no subnormals
  const x = new Float32Array(M * K).map(() => random() * 2 - 1);
  const weightNK = new Float32Array(N * K).map(() => (random() * 2 - 1) * amplitude);
  const bits = new Uint32Array(weightNK.buffer);
  const weightBf16NK = new Uint16Array(N * K).map((_, i) => bits[i] >>> 16);
  return { x, weightNK, weightBf16NK };
}

async function timeLinear(runtime: Runtime, data: LinearData, dtype: 'f32' | 'bf16', M: number, K: number, N: number,
                          copies: number, timing: TimingOptions): Promise<Timing> {
  const { kernels, arena } = runtime;
  const source = dtype === 'f32' ? { dtype, data: data.weightNK } as const : { dtype, data: data.weightBf16NK } as const;
  const weights: LinearWeight[] = [];
  for (let c = 0; c < copies; c++) weights.push(kernels.bindLinear(source, N, K));
  const x = arena.f32(M * K); // [M, K]
  x.set(data.x);
  const y = arena.f32(M * N); // [M, N]
  let next = 0;
  const t = await timeSync(() => {
    kernels.linear(y, x, weights[next], M, null);
    next = (next + 1) % copies;
  }, timing);
  await release(runtime);
  return t;
}

/** Stops a runtime's worker threads, if it has any; its memory goes with the last reference. */
async function release(runtime: Runtime): Promise<void> {
  await (runtime as Runtime & { dispose?(): Promise<void> }).dispose?.();
}

interface AttentionData {
  q: Float32Array; // [1, H*D] token-major, as ponder's cache holds it
  k: Float32Array; // [T, H*D]
  v: Float32Array; // [T, H*D]
  qHeads: Float32Array; // [H, 1, D]  (same numbers as q)
  kTHeads: Float32Array; // [H, D, T]  K transposed per head, the peers' layout
  vHeads: Float32Array; // [H, T, D]
}

function attentionData(H: number, T: number, D: number): AttentionData {
  const random = lcg(H * 7919 + T * 31 + D);
  const width = H * D;
  const q = new Float32Array(width).map(() => random() * 2 - 1);
  const k = new Float32Array(T * width).map(() => random() * 2 - 1);
  const v = new Float32Array(T * width).map(() => random() * 2 - 1);
  const kTHeads = new Float32Array(H * D * T);
  const vHeads = new Float32Array(H * T * D);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      for (let d = 0; d < D; d++) {
        kTHeads[(h * D + d) * T + t] = k[t * width + h * D + d];
        vHeads[(h * T + t) * D + d] = v[t * width + h * D + d];
      }
    }
  }
  return { q, k, v, qHeads: q.slice(), kTHeads, vHeads };
}

async function timeAttention(runtime: Runtime, data: AttentionData, H: number, T: number, D: number, scale: number,
                             copies: number, timing: TimingOptions, kvDtype: 'f32' | 'bf16' = 'f32'): Promise<Timing> {
  const { kernels, arena } = runtime;
  const q = arena.f32(H * D); q.set(data.q);
  const caches: { k: Float32Array | Uint16Array; v: Float32Array | Uint16Array }[] = [];
  const n = T * H * D;
  const f32k = kvDtype === 'f32' ? null : arena.f32(n), f32v = kvDtype === 'f32' ? null : arena.f32(n);
  if (f32k && f32v) { f32k.set(data.k); f32v.set(data.v); }
  for (let c = 0; c < copies; c++) {
    if (f32k && f32v) { // a bf16 cache holds K and V rounded to nearest even, as a model writes them
      const k = arena.u16(n), v = arena.u16(n);
      kernels.f32ToBf16(k, f32k, n); kernels.f32ToBf16(v, f32v, n);
      caches.push({ k, v });
      continue;
    }
    const k = arena.f32(n); k.set(data.k);
    const v = arena.f32(n); v.set(data.v);
    caches.push({ k, v });
  }
  const out = arena.f32(H * D);
  let next = 0;
  const t = await timeSync(() => {
    const { k, v } = caches[next];
    kernels.attention(out, q, k, v, 1, T, H, H, D, scale, null, null, null, kvDtype);
    next = (next + 1) % copies;
  }, timing);
  await release(runtime);
  return t;
}

function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

/** A small deterministic generator in [0, 1): the inputs only need to be ordinary floats. */
function lcg(seed: number): () => number {
  let s = (seed >>> 0) || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}
