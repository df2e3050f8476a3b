/**
 * A thread pool for the WASM kernels: the main thread plus (threads − 1) workers, each running its
 * own instance of the same kernel module on the one shared memory (perf.md §5, §9.6). Nothing is
 * allocated in the workers: every buffer, including each worker's scratch, comes from the main
 * thread's arena, and jobs are pointers.
 *
 * Work is split so that every output element is computed by exactly one thread with exactly the
 * code a single thread would run on it: linear by 16-column panels (quads of 4 rows with int16
 * activations), a linear group (linears sharing their input: q/k/v, gate/up) by its members' units
 * laid end to end as one job, attention by (query row, head) units. Results are therefore
 * bit-identical to one thread.
 *
 * Dispatch is spin-then-wait through Atomics on a control block in shared memory: a worker spins on
 * its job counter for about a millisecond after each job (a wake-up from Atomics.wait costs about
 * 0.2 ms, longer than most kernels), then sleeps in Atomics.wait. The main thread takes the first
 * share of the work itself and then spins until every worker reports done.
 *
 * The core does not know how to start a worker: a WorkerFactory does (src/node/pool-worker.ts for
 * Node's worker_threads). The worker side runs `runPoolWorker` below.
 */
import { PonderError } from '../errors.js';
import { ATTENTION_VALUE_CHUNK, attentionDecodeKernel, attentionKernel, attentionScratchBytes, DECODE_PHASES, linearScratchBytes, quantI16ScratchBytes, quantScratchBytes, type WasmKernelExports } from '../kernels/wasm-exports.js';
import type { KvDType } from '../kernels/kernels.js';
import { ScratchBuffer, type WasmArena } from './wasm-arena.js';

/** What a worker needs to join the pool. Structured-cloneable (Module and Memory are shareable). */
export interface PoolWorkerInit {
  module: WebAssembly.Module;
  /** every memory shard (the worker instantiates the kernels once on each); [0] holds the control block */
  memories: WebAssembly.Memory[];
  control: number;    // byte offset of the control block in memories[0]
  index: number;      // worker index, 0-based (the main thread is not counted)
}

export interface PoolWorkerHandle {
  /** Resolves once the worker has instantiated the kernels and is polling its slot. */
  readonly ready: Promise<void>;
  terminate(): Promise<void>;
}

/** Starts one worker that calls runPoolWorker(init, ...) (see src/node/pool-worker.ts). */
export type WorkerFactory = (init: PoolWorkerInit) => PoolWorkerHandle;

/**
 * The default thread count for a host with `cores` available cores (os.availableParallelism(),
 * navigator.hardwareConcurrency): all of them, at most DEFAULT_MAX_THREADS. Results are the same
 * bits on any count; past ~8 threads decode is bound by memory bandwidth, not cores, while each
 * extra worker still spins for a while after every job, so more is only worth it on request.
 */
export const DEFAULT_MAX_THREADS = 8;
export function defaultThreads(cores: number | undefined): number {
  return Number.isInteger(cores) && cores! > 1 ? Math.min(cores!, DEFAULT_MAX_THREADS) : 1;
}

// Control block: one slot of SLOT_INTS i32 per worker (128 bytes, so slots never share a cache line).
const SLOT_INTS = 32;
const GEN = 0;       // job counter, bumped by the main thread to start a job
const DONE = 1;      // last job counter the worker finished
const STATUS = 2;    // 0 ok, 1 the job threw (message is not transported; the main thread reports)
const OP = 3;
const ARGS = 4;      // up to 16 arguments
const TAKEN = 20;    // last job counter the worker picked up (tells a slow job from a lost worker)
const SHARD = 21;    // the memory shard the job runs in
const ELAPSED = 22;  // f32: how long the worker's last job ran, in ms (its own clock)
const OP_LINEAR_F32 = 1, OP_LINEAR_BF16 = 2, OP_ATTENTION = 3, OP_LINEAR_QUANT = 4, OP_LINEAR_QUANT_I16 = 5, OP_ATTENTION_BF16 = 6, OP_ATTENTION_F16 = 7, OP_STOP = 99;
const OP_DECODE_F32 = 8, OP_DECODE_BF16 = 9, OP_DECODE_F16 = 10;
const OP_LINEAR_GROUP = 11;
const ATTENTION_OPS: Readonly<Record<KvDType, number>> = { f32: OP_ATTENTION, bf16: OP_ATTENTION_BF16, f16: OP_ATTENTION_F16 };
const DECODE_OPS: Readonly<Record<KvDType, number>> = { f32: OP_DECODE_F32, bf16: OP_DECODE_BF16, f16: OP_DECODE_F16 };
// The worker's way back from an op to its KV element type.
const kvOfOp = (ops: Readonly<Record<KvDType, number>>): ReadonlyMap<number, KvDType> =>
  new Map(Object.entries(ops).map(([kv, op]) => [op, kv as KvDType]));
const ATTENTION_KV = kvOfOp(ATTENTION_OPS), DECODE_KV = kvOfOp(DECODE_OPS);

// How long a worker spins for its next job, and the main thread for the workers to finish, before
// sleeping in Atomics.wait: a wake-up costs ~0.2 ms under KVM, and decode issues ~700 jobs a token
// with gaps well under a millisecond between them, except around work the main thread does alone
// (decode attention's descriptors; its value pass too below 512 keys), which the worker's spin covers.
const WORKER_SPIN_MS = 3;
const MAIN_SPIN_MS = 2;
// A live worker picks a job up within microseconds (spinning) or about 0.2 ms (woken from
// Atomics.wait). One that has not done so after this long has died or was never scheduled.
const DEFAULT_PICKUP_TIMEOUT_MS = 10_000;
// Below this many multiply-adds a job is not split: the dispatch round trip would cost more.
const MIN_SPLIT_WORK = 1 << 16;
// A linear group's members, at most (linearGroup): one row of GROUP_INTS i32 each in the group table.
export const LINEAR_GROUP_MAX = 8;
const GROUP_INTS = 5; // y, w, bias, N, first unit of the member in the group's unit range

/**
 * What a linear call's weights are, for the pool: the op of the kernel that runs them and its
 * arguments beyond the buffers. `bits` 0 with `bf16` false: f32 panels; `xbits` 16 or 8: quads of
 * assembly/linear-quant-i16.ts with activations that wide (0: 16-column panels).
 */
export interface LinearKind { readonly bf16: boolean; readonly bits: number; readonly gs: number; readonly xbits: number }

/**
 * Where a split call's time goes, summed over calls (ThreadPool.profile; null = not measured, the
 * default: then only linear reads the clock, for its speed-weighted split). `jobs`: jobs posted to the workers; `mainMs`: the main
 * thread running its own share; `waitMs`: the main thread waiting for the workers after its share
 * (imbalance and wake-up cost); `soloMs`: parts of a split call that run on the main thread alone
 * (decode attention's descriptors, and its value pass when the keys fit one value chunk).
 */
export interface PoolProfile { jobs: number; mainMs: number; waitMs: number; soloMs: number }

export class ThreadPool {
  readonly threads: number;
  private readonly instances: readonly WasmKernelExports[]; // the main thread's, one per memory shard
  private readonly control: Int32Array;
  private readonly controlF32: Float32Array;
  private readonly handles: PoolWorkerHandle[];
  private readonly linearScratch: ScratchBuffer[][]; // [shard][worker]: scratch lives in the memory the job runs in
  private readonly scoresScratch: ScratchBuffer[][]; // [shard][worker]
  private generation = 0;
  // Each thread's recent linear speed (panels per ms, a moving average; [0] = main thread): linear
  // splits its panels in proportion, so a thread that streams slower (measured: a worker's share
  // of a decode GEMV taking ~20 % longer than the main thread's) gets less and nobody waits.
  // Which thread computes a panel never changes its bits.
  private readonly linearSpeed: Float64Array;
  private readonly quadSpeed: Float64Array; // the same for linear_quant_i16, in quads per ms
  private readonly groupTable: Int32Array;  // [LINEAR_GROUP_MAX][GROUP_INTS] in shard 0: the members of the running linear group
  private closed = false;
  private broken = false; // a worker was lost: every later call runs on the main thread alone
  /** Jobs that were split across the threads (the rest ran on the main thread alone). */
  splitJobs = 0;
  /** Set to measure where split calls spend their time (benchmarks); null: nothing is summed. */
  profile: PoolProfile | null = null;

  private constructor(instances: readonly WasmKernelExports[], arenas: readonly WasmArena[], threads: number, control: Int32Array, groupTable: Int32Array, handles: PoolWorkerHandle[],
                      private readonly pickupTimeoutMs: number) {
    this.instances = instances;
    this.threads = threads;
    this.control = control;
    this.controlF32 = new Float32Array(control.buffer, control.byteOffset, control.length);
    this.handles = handles;
    this.linearSpeed = new Float64Array(threads).fill(1);
    this.quadSpeed = new Float64Array(threads).fill(1);
    this.groupTable = groupTable;
    this.linearScratch = arenas.map((arena) => handles.map(() => new ScratchBuffer(arena)));
    this.scoresScratch = arenas.map((arena) => handles.map(() => new ScratchBuffer(arena)));
  }

  /** A pool over every memory shard: memories[i] is arenas[i]'s and instances[i] the main thread's kernels on it; the control block lives in shard 0. */
  static async start(module: WebAssembly.Module, memories: WebAssembly.Memory[], arenas: readonly WasmArena[], threads: number,
                     factory: WorkerFactory, instances: readonly WasmKernelExports[], pickupTimeoutMs = DEFAULT_PICKUP_TIMEOUT_MS): Promise<ThreadPool> {
    const workers = threads - 1;
    const control = arenas[0].i32(workers * SLOT_INTS);
    control.fill(0);
    const groupTable = arenas[0].i32(LINEAR_GROUP_MAX * GROUP_INTS);
    const handles: PoolWorkerHandle[] = [];
    try {
      for (let i = 0; i < workers; i++) handles.push(factory({ module, memories, control: control.byteOffset, index: i }));
      await Promise.all(handles.map((h) => h.ready));
    } catch (e) {
      await Promise.all(handles.map((h) => h.terminate().catch(() => undefined)));
      throw new PonderError('RUNTIME_UNSUPPORTED', `could not start ${workers} kernel worker thread(s): ${(e as Error).message}`, { field: 'threads', hint: 'run with threads: 1' });
    }
    return new ThreadPool(instances, arenas, threads, control, groupTable, handles, pickupTimeoutMs);
  }

  /** Whether a job of `work` multiply-adds over `parts` independent parts is worth splitting. */
  worthSplitting(work: number, parts: number): boolean {
    return !this.closed && !this.broken && parts >= 2 && work >= MIN_SPLIT_WORK;
  }

  /**
   * linear in memory shard `shard` over its units [0, units) (16-column panels, or quads of 4 rows for
   * integer activations), split in contiguous ranges in proportion to each thread's measured speed.
   * `scratch`: the main thread's.
   */
  linear(shard: number, kind: LinearKind, y: number, x: number, w: number, bias: number, M: number, N: number, K: number, kc: number, scratch: number, tile: number): void {
    this.linearGroup(shard, kind, [y], x, [w], [bias], [N], M, K, kc, scratch, tile); // a group of one: the same kernel calls over the same units
  }

  /**
   * Several linears that read the same x[M,K] (weights of one `kind`, in memory shard `shard`) as one
   * job: their units laid end to end (each member's first unit aligned to a bf16 panel pair), split
   * by speed like `linear`. Every output is computed by the code `linear` runs on it, so the bits are
   * those of the separate calls. ys, ws, biases, Ns: per member (at most LINEAR_GROUP_MAX).
   */
  linearGroup(shard: number, kind: LinearKind, ys: readonly number[], x: number, ws: readonly number[], biases: readonly number[], Ns: readonly number[],
              M: number, K: number, kc: number, scratch: number, tile: number): void {
    const count = ys.length, align = kind.xbits !== 0 ? 1 : 2;
    if (count > LINEAR_GROUP_MAX) throw new PonderError('KERNEL_BAD_ARGS', `linearGroup: at most ${LINEAR_GROUP_MAX} weights per call, got ${count}`);
    const table = this.groupTable;
    let units = 0;
    for (let j = 0; j < count; j++) {
      units = Math.ceil(units / align) * align;
      table.set([ys[j], ws[j], biases[j], Ns[j], units], j * GROUP_INTS);
      units += linearUnits(kind, Ns[j]);
    }
    const speed = kind.xbits !== 0 ? this.quadSpeed : this.linearSpeed;
    const ranges = splitWeighted(units, speed, align);
    const op = linearOp(kind), scratchBytes = linearJobScratchBytes(kind, M, K, kc);
    const gen = this.nextGeneration();
    this.splitJobs++;
    for (let i = 0; i < this.handles.length; i++) {
      const [u0, u1] = ranges[i + 1];
      this.post(i, gen, OP_LINEAR_GROUP, [op, table.byteOffset, count, x, M, K, u0, u1, kc, scratchBytes ? this.linearScratch[shard][i].need(scratchBytes) : 0, tile, kind.bits, kind.gs, kind.xbits], shard);
    }
    const t0 = performance.now();
    runLinearGroup(this.mainInstance(shard), op, table, count, x, M, K, ranges[0][0], ranges[0][1], kc, scratch, tile, kind.bits, kind.gs, kind.xbits);
    const mainMs = performance.now() - t0;
    this.finish(gen, 'linear', t0);
    this.updateSpeed(speed, ranges, mainMs);
  }

  /** attention in memory shard `shard` over units [0, units) (unit = query row × head), split in contiguous ranges; K and V stored as `kv`. `scores`: the main thread's scratch. */
  attention(shard: number, out: number, q: number, k: number, v: number, Tq: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number,
            scale: number, qPos: number, kPos: number, allowed: number, units: number, scores: ScratchBuffer, kv: KvDType = 'f32'): void {
    const ranges = split(units, this.threads);
    const gen = this.nextGeneration();
    this.splitJobs++;
    for (let i = 0; i < this.handles.length; i++) {
      const [u0, u1] = ranges[i + 1];
      const slot = i * SLOT_INTS;
      this.controlF32[slot + ARGS + 9] = scale; // the one f32 argument, stored as its bits
      this.post(i, gen, ATTENTION_OPS[kv], [out, q, k, v, Tq, Tk, nHeads, nKvHeads, headDim, null, qPos, kPos, allowed,
        this.scoresScratch[shard][i].need(attentionScratchBytes(Tq, Tk, u1 - u0, headDim, kv)), u0, u1], shard);
    }
    const [u0, u1] = ranges[0];
    const t0 = this.profile ? performance.now() : 0;
    attentionKernel(this.mainInstance(shard), kv)(out, q, k, v, Tq, Tk, nHeads, nKvHeads, headDim, scale, qPos, kPos, allowed, scores.need(attentionScratchBytes(Tq, Tk, u1 - u0, headDim, kv)), u0, u1);
    this.finish(gen, 'attention', t0);
  }

  /**
   * Decode attention (one query row) in memory shard `shard` through the phases of attention_decode:
   * descriptors on the main thread, scores split by key rows, softmax by heads, values by chunks of
   * key rows and their combination by heads across the threads (each thread reads whole K and V
   * rows: assembly/attention.ts).
   * `scores`: the one scratch all threads share (attentionScratchBytes for nHeads units).
   */
  attentionDecode(shard: number, out: number, q: number, k: number, v: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number,
                  scale: number, qPos: number, kPos: number, allowed: number, scores: number, kv: KvDType): void {
    const kernel = attentionDecodeKernel(this.mainInstance(shard), kv);
    let t0 = this.profile ? performance.now() : 0;
    kernel(DECODE_PHASES.descriptors, out, q, k, v, Tk, nHeads, nKvHeads, headDim, scale, qPos, kPos, allowed, scores, 0, 0);
    const chunks = Math.ceil(Tk / ATTENTION_VALUE_CHUNK);
    const phases: [number, number][] = [[DECODE_PHASES.scores, Tk], [DECODE_PHASES.softmax, nHeads]];
    // one value chunk (Tk ≤ 512) is not worth a dispatch: the main thread sums it alone below
    if (chunks > 1) phases.push([DECODE_PHASES.values, chunks], [DECODE_PHASES.combine, nHeads]);
    for (const [phase, n] of phases) {
      const ranges = split(n, this.threads);
      const gen = this.nextGeneration();
      this.splitJobs++;
      for (let i = 0; i < this.handles.length; i++) {
        this.controlF32[i * SLOT_INTS + ARGS + 9] = scale; // the one f32 argument, stored as its bits
        this.post(i, gen, DECODE_OPS[kv], [phase, out, q, k, v, Tk, nHeads, nKvHeads, headDim, null, qPos, kPos, allowed, scores, ranges[i + 1][0], ranges[i + 1][1]], shard);
      }
      if (this.profile) { this.profile.soloMs += performance.now() - t0; t0 = performance.now(); }
      kernel(phase, out, q, k, v, Tk, nHeads, nKvHeads, headDim, scale, qPos, kPos, allowed, scores, ranges[0][0], ranges[0][1]);
      this.finish(gen, 'attention', t0);
      t0 = this.profile ? performance.now() : 0;
    }
    if (chunks <= 1) {
      kernel(DECODE_PHASES.values, out, q, k, v, Tk, nHeads, nKvHeads, headDim, scale, qPos, kPos, allowed, scores, 0, chunks);
      kernel(DECODE_PHASES.combine, out, q, k, v, Tk, nHeads, nKvHeads, headDim, scale, qPos, kPos, allowed, scores, 0, nHeads);
    }
    if (this.profile) this.profile.soloMs += performance.now() - t0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const gen = this.nextGeneration();
    for (let i = 0; i < this.handles.length; i++) this.post(i, gen, OP_STOP, []);
    await Promise.all(this.handles.map((h) => h.terminate()));
  }

  /** The main thread's kernel instance on memory shard `shard`. */
  private mainInstance(shard: number): WasmKernelExports {
    return this.instances[shard];
  }

  private nextGeneration(): number {
    this.generation = (this.generation + 1) | 0;
    return this.generation;
  }

  // Writes a job into worker i's slot and publishes it by bumping GEN (the Atomics.store orders the
  // plain argument writes before it for the worker's Atomics.load).
  private post(i: number, gen: number, op: number, args: (number | null)[], shard = 0): void {
    const slot = i * SLOT_INTS;
    const c = this.control;
    c[slot + OP] = op;
    c[slot + SHARD] = shard;
    for (let a = 0; a < args.length; a++) if (args[a] !== null) c[slot + ARGS + a] = args[a]!;
    Atomics.store(c, slot + GEN, gen);
    Atomics.notify(c, slot + GEN);
  }

  // Folds the last split's timings (the main thread's `mainMs`, each worker's own) into `speed`.
  // Shares that ran too briefly for the clocks to mean much are left out.
  private updateSpeed(speed: Float64Array, ranges: [number, number][], mainMs: number): void {
    for (let i = 0; i < ranges.length; i++) {
      const ms = i === 0 ? mainMs : this.controlF32[(i - 1) * SLOT_INTS + ELAPSED];
      const n = ranges[i][1] - ranges[i][0];
      if (n > 0 && ms > 0.05) speed[i] = 0.8 * speed[i] + 0.2 * (n / ms);
    }
  }

  // Joins job `gen` after the main thread's share (started at t0 when profiling).
  private finish(gen: number, kernel: string, t0: number): void {
    const profile = this.profile;
    if (profile === null) { this.join(gen, kernel); return; }
    const t1 = performance.now();
    this.join(gen, kernel);
    profile.jobs++;
    profile.mainMs += t1 - t0;
    profile.waitMs += performance.now() - t1;
  }

  // Waits until every worker has finished job `gen`. Spins for MAIN_SPIN_MS (a worker's share
  // usually ends within microseconds of the main thread's); then, where the main thread may block
  // (Node), it sleeps in 1 ms Atomics.wait slices.
  private join(gen: number, kernel: string): void {
    const c = this.control;
    let spinUntil = 0;
    for (let i = 0; i < this.handles.length; i++) {
      const slot = i * SLOT_INTS;
      let spins = 0;
      let slowSince = 0;
      while (Atomics.load(c, slot + DONE) !== gen) {
        if ((++spins & 1023) === 0 && spinUntil === 0) spinUntil = performance.now() + MAIN_SPIN_MS;
        if (spinUntil !== 0 && (spins & 1023) === 0 && performance.now() > spinUntil) {
          try { Atomics.wait(c, slot + DONE, Atomics.load(c, slot + DONE), 1); } catch { /* main thread of a browser: keep spinning */ }
          // Only a job nobody picked up can be waited on forever; a long job that was taken is just long.
          if (Atomics.load(c, slot + TAKEN) !== gen) {
            if (slowSince === 0) slowSince = performance.now();
            else if (performance.now() - slowSince > this.pickupTimeoutMs) {
              this.broken = true;
              Atomics.store(c, slot + OP, OP_STOP); // should it wake after all, it stops instead of running a stale job
              throw new PonderError('KERNEL_WORKER_LOST', `${kernel}: kernel worker ${i} has not picked up its job for ${this.pickupTimeoutMs / 1000} s (it died or never got a CPU)`,
                { hint: 'create a new runtime (or use threads: 1); if it happens again, report it' });
            }
          }
        }
      }
      if (Atomics.load(c, slot + STATUS) !== 0) {
        throw new PonderError('KERNEL_ABORT', `${kernel}: kernel worker ${i} failed`, { hint: 'this is a bug in ponder; run with threads: 1 and report it' });
      }
    }
  }
}

/** The units a linear of N rows is split in: quads of 4 rows (integer activations) or 16-column panels. */
export function linearUnits(kind: LinearKind, N: number): number {
  return kind.xbits !== 0 ? Math.ceil(N / 4) : Math.ceil(N / 16);
}

function linearOp(kind: LinearKind): number {
  return kind.xbits !== 0 ? OP_LINEAR_QUANT_I16 : kind.bits !== 0 ? OP_LINEAR_QUANT : kind.bf16 ? OP_LINEAR_BF16 : OP_LINEAR_F32;
}

/** Bytes of the private scratch a thread's share of a linear job needs (0: none). */
export function linearJobScratchBytes(kind: LinearKind, M: number, K: number, kc: number): number {
  if (kind.xbits !== 0) return quantI16ScratchBytes(M, K, kind.gs);
  if (kind.bits !== 0) return quantScratchBytes(M, K, kind.gs, kc);
  return kind.bf16 && M > 1 ? linearScratchBytes(kc) : 0;
}

// Units [u0, u1) of one linear through the kernel of `op` (a thread's share; the same code on any thread).
function runLinear(wasm: WasmKernelExports, op: number, y: number, x: number, w: number, bias: number, M: number, N: number, K: number,
                   u0: number, u1: number, kc: number, scratch: number, tile: number, bits: number, gs: number, xbits: number): void {
  if (op === OP_LINEAR_QUANT_I16) wasm.linear_quant_i16(y, x, w, bias, M, N, K, u0, u1, scratch, bits, gs, xbits);
  else if (op === OP_LINEAR_QUANT) wasm.linear_quant(y, x, w, bias, M, N, K, u0, u1, kc, scratch, tile, bits, gs);
  else if (op === OP_LINEAR_BF16) wasm.linear_bf16(y, x, w, bias, M, N, K, u0, u1, kc, scratch, tile);
  else wasm.linear_f32(y, x, w, bias, M, N, K, u0, u1, kc, scratch, tile);
}

// Units [u0, u1) of a linear group (the members in `table`, ThreadPool.linearGroup): each member's
// part of the range, member after member.
function runLinearGroup(wasm: WasmKernelExports, op: number, table: Int32Array, count: number, x: number, M: number, K: number,
                        u0: number, u1: number, kc: number, scratch: number, tile: number, bits: number, gs: number, xbits: number): void {
  for (let j = 0; j < count; j++) {
    const r = j * GROUP_INTS, N = table[r + 3], first = table[r + 4];
    const units = op === OP_LINEAR_QUANT_I16 ? Math.ceil(N / 4) : Math.ceil(N / 16); // linearUnits of the op's kind
    const lo = Math.max(u0, first), hi = Math.min(u1, first + units);
    if (lo < hi) runLinear(wasm, op, table[r], x, table[r + 1], table[r + 2], M, N, K, lo - first, hi - first, kc, scratch, tile, bits, gs, xbits);
  }
}

/**
 * Splits [0, n) into contiguous ranges in proportion to `weights` (one per range), every boundary a
 * multiple of `align` (n itself excepted).
 */
function splitWeighted(n: number, weights: Float64Array, align: number): [number, number][] {
  let total = 0;
  for (const w of weights) total += w;
  const ranges: [number, number][] = [];
  let start = 0, acc = 0;
  for (let i = 0; i < weights.length; i++) {
    acc += weights[i];
    const end = i === weights.length - 1 ? n : Math.min(n, Math.max(start, Math.round((n * acc) / total / align) * align));
    ranges.push([start, end]);
    start = end;
  }
  return ranges;
}

/** Splits [0, n) into `parts` contiguous ranges whose sizes differ by at most one. */
function split(n: number, parts: number): [number, number][] {
  const ranges: [number, number][] = [];
  for (let i = 0; i < parts; i++) ranges.push([Math.floor((n * i) / parts), Math.floor((n * (i + 1)) / parts)]);
  return ranges;
}

/**
 * The worker side: polls slot `init.index` of the control block, runs each job on its own kernel
 * instance of the job's memory shard (`instances[i]` on `init.memories[i]`), reports done. Returns when told to stop. Blocks its thread (it is a worker).
 */
export function runPoolWorker(init: PoolWorkerInit, instances: readonly WasmKernelExports[], now: () => number): void {
  const control = new Int32Array(init.memories[0].buffer, init.control + init.index * SLOT_INTS * 4, SLOT_INTS);
  const controlF32 = new Float32Array(control.buffer, control.byteOffset, SLOT_INTS);
  // Generation 0: ThreadPool.start zeroes the control block before any worker starts. Reading GEN
  // here instead would race with the first job, which may be posted as soon as 'ready' arrives
  // (the worker would then take that job as already seen and the main thread would wait forever).
  let seen = 0;
  for (;;) {
    let gen = Atomics.load(control, GEN);
    if (gen === seen) {
      const spinUntil = now() + WORKER_SPIN_MS;
      let spins = 0;
      while (gen === seen) {
        if ((++spins & 1023) === 0 && now() > spinUntil) Atomics.wait(control, GEN, seen);
        gen = Atomics.load(control, GEN);
      }
    }
    seen = gen;
    Atomics.store(control, TAKEN, gen);
    const started = now();
    const op = control[OP];
    if (op === OP_STOP) { Atomics.store(control, DONE, gen); return; }
    const a = (i: number) => control[ARGS + i];
    const wasm = instances[control[SHARD]];
    let status = 0;
    try {
      if (op === OP_LINEAR_GROUP) {
        const table = new Int32Array(init.memories[0].buffer, a(1), LINEAR_GROUP_MAX * GROUP_INTS);
        runLinearGroup(wasm, a(0), table, a(2), a(3), a(4), a(5), a(6), a(7), a(8), a(9), a(10), a(11), a(12), a(13));
      }
      else if (ATTENTION_KV.has(op)) {
        attentionKernel(wasm, ATTENTION_KV.get(op)!)(a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7), a(8), controlF32[ARGS + 9], a(10), a(11), a(12), a(13), a(14), a(15));
      }
      else if (DECODE_KV.has(op)) {
        attentionDecodeKernel(wasm, DECODE_KV.get(op)!)(a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7), a(8), controlF32[ARGS + 9], a(10), a(11), a(12), a(13), a(14), a(15));
      }
      else status = 1;
    } catch {
      status = 1;
    }
    controlF32[ELAPSED] = now() - started;
    Atomics.store(control, STATUS, status);
    Atomics.store(control, DONE, gen);
    Atomics.notify(control, DONE);
  }
}
