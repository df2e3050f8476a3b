/**
 * The WebAssembly SIMD runtime: the kernels in assembly/ (embedded as base64 by
 * scripts/embed-wasm.mjs, so loading needs no file or network access) over one shared
 * WebAssembly.Memory, with a bump-allocating arena (src/runtime/wasm-arena.ts).
 *
 * Every Float32Array/Uint16Array/... passed to these kernels must come from this runtime's arena:
 * the kernels receive `view.byteOffset` as a pointer. A foreign view (a plain typed array, or one
 * from another runtime) is refused with KERNEL_FOREIGN_BUFFER, and sizes that would read or write
 * past a view are refused with KERNEL_BAD_ARGS, instead of computing on the wrong bytes.
 *
 * Options:
 *   relaxed: use the relaxed-SIMD build (fused multiply-add in linear). Faster, not bit-identical
 *            to the plain build, never the default and never used for conformance. Node 20 needs
 *            `--experimental-wasm-relaxed-simd` (enableRelaxedSimd in src/node/pool-worker.ts).
 *   linearTile: the register tile linear's prefill path runs (src/kernels/linear-tiles.ts); by
 *            default the fastest on this host, measured once per process. Every tile gives the
 *            same bits.
 *   threads: total threads for linear and attention (main thread + threads−1 workers on the same
 *            memory). Results are bit-identical to one thread. Needs a worker factory, since the
 *            core cannot start threads itself: in Node, createNodeWasmRuntime
 *            (src/node/pool-worker.ts) passes one on worker_threads.
 */
import { optionsArgument, PonderError } from '../errors.js';
import { LIMITS, limitNote } from '../limits.js';
import type { Runtime } from '../runtime/runtime.js';
import { WasmArena, ScratchBuffer, WASM_MAX_PAGES } from '../runtime/wasm-arena.js';
import { QUANT_ACTIVATIONS, type Kernels, type KvBuffer, type KvDType, type LinearSource, type LinearWeight, type QuantActivations, type QuantizedSource, type RopeLayout } from './kernels.js';
import { checkQuantizedSource, fieldScale, isQuantized, quantBits } from './quant.js';
import { KERNELS_RELAXED_WASM, KERNELS_WASM } from './wasm-binary.js';
import { LINEAR_GROUP_MAX, linearJobScratchBytes, linearUnits, type LinearKind, type PoolProfile, type WorkerFactory, ThreadPool } from '../runtime/pool.js';
import { attentionKernel, attentionScratchBytes, linearBlockK, type WasmKernelExports } from './wasm-exports.js';
import { isLinearTile, LINEAR_TILES, linearTileIndex, measureLinearTiles, TILE_PROBE_BYTES, type LinearTile, type TileMeasurement } from './linear-tiles.js';

export interface WasmRuntimeOptions {
  /** Use the relaxed-SIMD build (not bit-identical to the default build). Default false. */
  relaxed?: boolean;
  /**
   * Activations of quantized (q8, q4) Linear weights: 'f32' (default, the exact mode), 'int16' or
   * 'int8': each group of activations quantized to int16 (int8) and dotted with the codes in integer
   * arithmetic (faster, not the exact mode's numbers; spec/quantization.md). 'int8' gives the same
   * numbers in both builds; 4-bit weights run it fastest in the relaxed build (a byte dot). Weights
   * whose group size is not a multiple of 32 (int8: not 32, 64 or 128) stay in the exact mode.
   */
  quantActivations?: QuantActivations;
  /** The register tile of linear's prefill path, or 'auto' (default): the fastest on this host, measured once per process. */
  linearTile?: LinearTile | 'auto';
  /** Total threads (main thread included). Default 1. */
  threads?: number;
  /** Starts a worker running src/node/pool-worker.ts (or a browser equivalent); needed when threads > 1. */
  workerFactory?: WorkerFactory;
  /** How long a job may wait for a worker to pick it up before the worker counts as lost (KERNEL_WORKER_LOST). Default 10 s. */
  pickupTimeoutMs?: number;
  /**
   * Memory shards created up front, and the number every model loaded on this runtime is split into
   * (balanced by bytes). For tests: results are bit-identical at any shard count. Default: one memory,
   * more added as a model's memory plan needs them (ensureShards).
   */
  shards?: number;
}

export interface WasmRuntime extends Runtime {
  readonly kernels: Kernels;
  /** the home shard's arena (shard 0) */
  readonly arena: WasmArena;
  /** every memory shard's arena, [0] = arena */
  readonly shardArenas: readonly WasmArena[];
  ensureShards(count: number): Promise<void>;
  readonly relaxed: boolean;
  readonly threads: number;
  /** How quantized Linear weights treat their activations (WasmRuntimeOptions.quantActivations). */
  readonly quantActivations: QuantActivations;
  /** The register tile linear's prefill path runs (every tile gives the same bits). */
  readonly linearTile: LinearTile;
  /** The host measurement the tile was chosen by; absent when the option named the tile. */
  readonly linearTileMeasurement?: TileMeasurement;
  /** Stops the pool's workers (no-op with one thread). */
  dispose(): Promise<void>;
  /** Kernel calls split across the pool's threads so far (0 with one thread). */
  splitJobs(): number;
  /** Benchmarks: sum where split calls spend their time into `profile` (PoolProfile), or stop (null). No-op with one thread. */
  profilePool(profile: PoolProfile | null): void;
}

/** A Linear weight bound into the runtime's memory in the packed panel layout (assembly/linear.ts). */
interface WasmLinearWeight extends LinearWeight {
  readonly packed: Uint8Array; // [ceil(N/16)][K][16] f32, bf16 in widening order, or quantized groups (assembly/linear-quant.ts)
  readonly owner: object;      // the runtime that packed it
  readonly xbits?: 16 | 8;     // quantized, packed in quads for integer activations this wide (assembly/linear-quant-i16.ts)
  readonly shard: number;      // the memory shard it lives in (where linear runs on it)
}

/**
 * One memory shard: a WebAssembly memory with its own kernel instance, arena and scratch. A kernel
 * call runs in one shard (linear: the weight's; attention: the keys'; the rest: the output's); an
 * argument living in another shard is staged through that shard's staging buffer (copied in, and
 * back out when the kernel writes it). Copies are exact, so results are the same bits at any shard
 * count; with one shard nothing is ever staged.
 */
interface Shard {
  readonly wasm: WasmKernelExports;
  readonly memory: WebAssembly.Memory;
  readonly arena: WasmArena;
  readonly linearScratch: ScratchBuffer; // bf16 widening, main thread
  readonly scoresScratch: ScratchBuffer; // attention scores, main thread
  readonly staging: ScratchBuffer;       // arguments from other shards
}

/** How the pool and the kernels run a bound weight (LinearKind). */
function linearKind(w: WasmLinearWeight): LinearKind {
  const quantized = w.dtype === 'q8' || w.dtype === 'q4';
  return { bf16: w.dtype === 'bf16', bits: quantized ? quantBits(w.dtype as 'q8' | 'q4') : 0, gs: w.groupSize ?? 0, xbits: w.xbits ?? 0 };
}

function makeShard(wasm: WasmKernelExports, memory: WebAssembly.Memory): Shard {
  const arena = new WasmArena(memory, wasm.heap_base());
  return { wasm, memory, arena, linearScratch: new ScratchBuffer(arena), scoresScratch: new ScratchBuffer(arena), staging: new ScratchBuffer(arena) };
}

function newSharedMemory(): WebAssembly.Memory {
  try {
    return new WebAssembly.Memory({ initial: 1, maximum: WASM_MAX_PAGES, shared: true });
  } catch (e) {
    throw new PonderError('RUNTIME_UNSUPPORTED', `this JavaScript engine cannot create a shared WebAssembly memory: ${(e as Error).message}`,
      { hint: 'browsers need cross-origin isolation (COOP/COEP headers) for shared memory; otherwise use --kernels scalar' });
  }
}

const compiled = new Map<boolean, Promise<WebAssembly.Module>>();

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The compiled kernel module (cached per variant). */
export function kernelModule(relaxed: boolean): Promise<WebAssembly.Module> {
  let module = compiled.get(relaxed);
  if (!module) {
    const bytes = decodeBase64(relaxed ? KERNELS_RELAXED_WASM : KERNELS_WASM);
    if (!WebAssembly.validate(bytes)) {
      const err = relaxed
        ? new PonderError('RUNTIME_UNSUPPORTED', 'this JavaScript engine cannot run the relaxed-SIMD kernels', { hint: 'on Node 20 start node with --experimental-wasm-relaxed-simd (or call enableRelaxedSimd() from ponder/node before creating the runtime), or drop the relaxed option' })
        : new PonderError('RUNTIME_UNSUPPORTED', 'this JavaScript engine cannot run the WebAssembly SIMD kernels (needs SIMD, threads and shared memory)', { hint: 'use --kernels scalar, or a runtime with WebAssembly SIMD (Node ≥ 16.4)' });
      return Promise.reject(err);
    }
    module = WebAssembly.compile(bytes);
    compiled.set(relaxed, module);
  }
  return module;
}

const measuredTiles = new Map<boolean, Promise<TileMeasurement>>();

/**
 * The fastest linear tile on this host for one build (plain or relaxed), measured once per process
 * in an instance of its own (src/kernels/linear-tiles.ts).
 */
export function hostLinearTile(relaxed: boolean): Promise<TileMeasurement> {
  let measurement = measuredTiles.get(relaxed);
  if (!measurement) {
    measurement = (async () => {
      const module = await kernelModule(relaxed);
      const pages = Math.ceil((TILE_PROBE_BYTES + 65536) / 65536) + 1;
      const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
      return measureLinearTiles(await instantiateKernels(module, memory), memory);
    })();
    measuredTiles.set(relaxed, measurement);
  }
  return measurement;
}

/** Instantiates the kernels on `memory` (used by the main thread and by every pool worker). */
export async function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory): Promise<WasmKernelExports> {
  const instance = await WebAssembly.instantiate(module, {
    env: {
      memory,
      abort(): never { throw new PonderError('KERNEL_ABORT', 'a WASM kernel aborted', { hint: 'this is a bug in ponder; please report it' }); },
    },
  });
  return instance.exports as unknown as WasmKernelExports;
}

function badArgs(kernel: string, message: string): PonderError {
  return new PonderError('KERNEL_BAD_ARGS', `${kernel}: ${message}`, { hint: 'the buffer sizes do not match the shape arguments; this is a bug in the calling model code' });
}

function checkCount(kernel: string, name: string, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw badArgs(kernel, `${name} must be a non-negative integer, got ${n}`);
}

export async function createWasmRuntime(runtimeOptions?: WasmRuntimeOptions): Promise<WasmRuntime> {
  const options = optionsArgument(runtimeOptions, 'createWasmRuntime options');
  const relaxed = options.relaxed === true;
  const threads = options.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > LIMITS.threads) {
    throw new PonderError('ARG_INVALID', `threads must be an integer from 1 to ${LIMITS.threads} (${limitNote('threads')}), got ${String(threads)}`, { field: 'threads', hint: 'use 1 (default) or the number of cores' });
  }
  if (threads > 1 && !options.workerFactory) {
    throw new PonderError('RUNTIME_UNSUPPORTED', `threads: ${threads} needs a worker factory`, { field: 'threads', hint: 'in Node use createNodeWasmRuntime from ponder/node (src/node/pool-worker.ts), or pass workerFactory' });
  }
  const tileOption = options.linearTile ?? 'auto';
  if (tileOption !== 'auto' && !isLinearTile(tileOption)) {
    throw new PonderError('ARG_INVALID', `linearTile must be 'auto' or one of ${LINEAR_TILES.join(', ')}, got ${JSON.stringify(tileOption)}`, { field: 'linearTile', hint: `leave it out (the fastest tile on this host is measured) or name one of ${LINEAR_TILES.join(', ')}` });
  }
  const quantActivations = options.quantActivations ?? 'f32';
  if (!QUANT_ACTIVATIONS.includes(quantActivations)) {
    throw new PonderError('ARG_INVALID', `quantActivations must be 'f32', 'int16' or 'int8', got ${JSON.stringify(quantActivations)}`, { field: 'quantActivations', hint: "leave it out for the exact mode ('f32'), or 'int16' / 'int8' for the faster integer-dot modes" });
  }
  const module = await kernelModule(relaxed);
  const measurement = tileOption === 'auto' ? await hostLinearTile(relaxed) : undefined;
  const linearTile = measurement?.tile ?? (tileOption as LinearTile);
  const forceShards = options.shards;
  if (forceShards !== undefined && (!Number.isInteger(forceShards) || forceShards < 1 || forceShards > 64)) {
    throw new PonderError('ARG_INVALID', `shards must be an integer from 1 to 64, got ${forceShards}`, { field: 'shards', hint: 'leave it out: the memory plan decides' });
  }
  const shards: Shard[] = [];
  for (let i = 0; i < (forceShards ?? 1); i++) {
    const memory = newSharedMemory();
    shards.push(makeShard(await instantiateKernels(module, memory), memory));
  }
  const startPool = (): Promise<ThreadPool> => ThreadPool.start(module, shards.map((s) => s.memory), shards.map((s) => s.arena), threads, options.workerFactory!, shards.map((s) => s.wasm), options.pickupTimeoutMs);
  const pool: { current: ThreadPool | null } = { current: threads > 1 ? await startPool() : null };
  const kernels = new WasmKernels(shards, pool, relaxed, linearTileIndex(linearTile), threads, quantActivations);
  const shardArenas: WasmArena[] = shards.map((s) => s.arena);
  return {
    kernels, arena: shards[0].arena, shardArenas, relaxed, threads, quantActivations, linearTile, linearTileMeasurement: measurement, forceShards,
    async ensureShards(count: number) {
      if (shards.length >= count) return;
      while (shards.length < count) {
        const memory = newSharedMemory();
        shards.push(makeShard(await instantiateKernels(module, memory), memory));
        shardArenas.push(shards[shards.length - 1].arena);
      }
      // the workers hold one kernel instance per memory: a new pool over all of them (threads do not multiply)
      if (pool.current) { const profile = pool.current.profile; await pool.current.close(); pool.current = await startPool(); pool.current.profile = profile; }
    },
    async dispose() { if (pool.current) await pool.current.close(); },
    splitJobs: () => pool.current?.splitJobs ?? 0,
    profilePool(profile: PoolProfile | null) { if (pool.current) pool.current.profile = profile; },
  };
}

type View = ArrayBufferView & { readonly length: number; readonly BYTES_PER_ELEMENT: number };

/** One pointer argument of a kernel call: its view, the elements the call touches, whether the kernel writes it. */
interface Arg { readonly name: string; readonly view: View | null; readonly need: number; readonly out?: boolean }

const ALIGN = 16;

class WasmKernels implements Kernels {
  readonly name: string;
  private readonly shards: Shard[];
  private readonly pool: { current: ThreadPool | null };
  private readonly tile: number; // linear's prefill tile (index into LINEAR_TILES)
  private readonly xbits: 0 | 16 | 8; // quantized weights bound for integer activations this wide (0: the exact mode)

  constructor(shards: Shard[], pool: { current: ThreadPool | null }, relaxed: boolean, tile: number, threads: number, quantActivations: QuantActivations) {
    this.name = `wasm-simd${relaxed ? '-relaxed' : ''}${threads > 1 ? `-x${threads}` : ''}${quantActivations === 'int16' ? '-qi16' : quantActivations === 'int8' ? '-qi8' : ''}`;
    this.shards = shards;
    this.pool = pool;
    this.tile = tile;
    this.xbits = quantActivations === 'int16' ? 16 : quantActivations === 'int8' ? 8 : 0;
  }

  /** The shard whose memory holds `view`; KERNEL_FOREIGN_BUFFER when none does. */
  private ownerOf(kernel: string, name: string, view: ArrayBufferView): number {
    for (let i = 0; i < this.shards.length; i++) if (this.shards[i].arena.owns(view)) return i;
    throw new PonderError('KERNEL_FOREIGN_BUFFER',
      `${kernel}: ${name} is not a view into this WASM runtime's memory`,
      { hint: 'allocate every buffer passed to WASM kernels from runtime.arena (f32/u16/i32/u8), not with new Float32Array(...)' });
  }

  /**
   * Runs `body` in shard `exec` (null: the shard of the first argument) with a pointer for every
   * argument (0 for null). Views of that shard pass as they are; views of another shard are copied
   * into the shard's staging buffer first and, when the kernel writes them, copied back after.
   */
  private run(kernel: string, exec: number | null, args: readonly Arg[], body: (ptrs: number[], shard: Shard, index: number) => void): void {
    const owners = args.map((a) => {
      if (a.view === null) return -1;
      const owner = this.ownerOf(kernel, a.name, a.view);
      if (a.view.length < a.need) throw badArgs(kernel, `${a.name} has ${a.view.length} elements, needs ${a.need}`);
      return owner;
    });
    const index = exec ?? Math.max(0, owners[0]);
    const shard = this.shards[index];
    const ptrs = args.map((a, i) => (a.view === null ? 0 : a.view.byteOffset));
    const staged: { arg: Arg; at: number; bytes: number }[] = [];
    let stagingBytes = 0;
    for (let i = 0; i < args.length; i++) {
      if (owners[i] === -1 || owners[i] === index) continue;
      const bytes = args[i].need * args[i].view!.BYTES_PER_ELEMENT;
      staged.push({ arg: args[i], at: stagingBytes, bytes });
      stagingBytes += Math.ceil(bytes / ALIGN) * ALIGN;
    }
    if (staged.length > 0) {
      const base = shard.staging.need(Math.max(stagingBytes, ALIGN));
      const memory = shard.arena.sharedBuffer;
      for (const st of staged) {
        const v = st.arg.view!;
        // one view passed twice (an in-place call) is staged once
        const twin = staged.find((o) => o !== st && o.at < st.at && o.arg.view!.buffer === v.buffer && o.arg.view!.byteOffset === v.byteOffset && o.bytes >= st.bytes);
        if (twin) st.at = twin.at;
        else new Uint8Array(memory, base + st.at, st.bytes).set(new Uint8Array(v.buffer, v.byteOffset, st.bytes));
        ptrs[args.indexOf(st.arg)] = base + st.at;
      }
      body(ptrs, shard, index);
      const after = shard.arena.sharedBuffer;
      for (const st of staged) {
        if (!st.arg.out) continue;
        const v = st.arg.view!;
        new Uint8Array(v.buffer, v.byteOffset, st.bytes).set(new Uint8Array(after, base + st.at, st.bytes));
      }
      return;
    }
    body(ptrs, shard, index);
  }

  bindLinear(src: LinearSource, N: number, K: number, shardIndex = 0): WasmLinearWeight {
    checkCount('bindLinear', 'N', N);
    checkCount('bindLinear', 'K', K);
    if (N === 0) throw badArgs('bindLinear', 'N must be at least 1');
    if (!Number.isInteger(shardIndex) || shardIndex < 0 || shardIndex >= this.shards.length) throw badArgs('bindLinear', `shard ${shardIndex} does not exist (the runtime has ${this.shards.length}; runtime.ensureShards adds them)`);
    if (isQuantized(src)) return this.bindQuantized(src, N, K, shardIndex);
    if (src.data.length < N * K) throw badArgs('bindLinear', `source has ${src.data.length} elements, needs N*K = ${N * K}`);
    const arena = this.shards[shardIndex].arena;
    const panels = Math.ceil(N / 16);
    if (src.dtype === 'f32') {
      // [panel][k][16]: W[n, k] → panel n>>4, column n&15.
      const packed = arena.f32(panels * K * 16);
      packed.fill(0);
      const w = src.data;
      for (let n = 0; n < N; n++) {
        const base = (n >> 4) * K * 16 + (n & 15);
        const row = n * K;
        for (let k = 0; k < K; k++) packed[base + k * 16] = w[row + k];
      }
      return { N, K, dtype: 'f32', bytes: packed.byteLength, packed: new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength), owner: this, shard: shardIndex };
    }
    if (src.dtype === 'bf16') {
      // Panels in pairs, 2g and 2g+1 interleaved per k: [pair][k][2 panels][2 groups][8]; an odd last
      // panel alone: [k][2 groups][8]. Groups are columns 0-7 then 8-15, each in lane order
      // [c0,c4,c1,c5,c2,c6,c3,c7] so the kernel widens a group with one shl and one and (assembly/linear.ts).
      const packed = arena.u16(panels * K * 16);
      packed.fill(0);
      const w = src.data;
      for (let n = 0; n < N; n++) {
        const p = n >> 4, c = n & 15, inGroup = c & 7;
        const slot = (c >> 3) * 8 + (inGroup < 4 ? 2 * inGroup : 2 * (inGroup - 4) + 1);
        const stride = (p | 1) < panels ? 32 : 16; // u16 elements per k
        const base = (p >> 1) * K * 32 + (p & 1) * 16 + slot;
        const row = n * K;
        for (let k = 0; k < K; k++) packed[base + k * stride] = w[row + k];
      }
      return { N, K, dtype: 'bf16', bytes: packed.byteLength, packed: new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength), owner: this, shard: shardIndex };
    }
    throw new PonderError('BIND_MISMATCH', `bindLinear: unsupported weight dtype ${(src as { dtype: string }).dtype}`, { hint: 'Linear weights must be f32, bf16, q8 or q4' });
  }

  /**
   * Quantized panels (assembly/linear-quant.ts): per panel of 16 columns and group of `gs` k-steps,
   * 16 f32 scales, 16 f32 biases, then gs k-steps of codes, lane c of a step holding columns c, c+4,
   * c+8, c+12 from the low bits up (8 bits: four u32 per step; 4 bits: four u16); the scale of a
   * column in field j < 3, whose codes the kernel reads in place as code·2^(bits·j), is stored as
   * scale·2^−(bits·j) (fieldScale). Padding columns get scale 0, bias 0, code 0.
   */
  private bindQuantized(src: QuantizedSource, N: number, K: number, shardIndex: number): WasmLinearWeight {
    const bits = quantBits(src.dtype), gs = src.groupSize;
    checkQuantizedSource(src, N, K);
    // int8's i16 lanes hold a group's sums only up to gs = 128 (assembly/linear-quant-i16.ts)
    if (this.xbits !== 0 && gs % 32 === 0 && (this.xbits === 16 || gs <= 128)) return this.bindQuantizedI16(src, N, K, shardIndex);
    const panels = Math.ceil(N / 16), groups = K / gs;
    const groupBytes = 128 + gs * 2 * bits, panelBytes = groups * groupBytes;
    const packed = this.shards[shardIndex].arena.u8(panels * panelBytes);
    packed.fill(0);
    const f32 = new Float32Array(packed.buffer, packed.byteOffset, packed.byteLength >> 2);
    const u32 = new Uint32Array(packed.buffer, packed.byteOffset, packed.byteLength >> 2);
    const u16 = new Uint16Array(packed.buffer, packed.byteOffset, packed.byteLength >> 1);
    const perWord = 32 / bits, mask = (1 << bits) - 1, wordsPerRow = K / perWord;
    for (let n = 0; n < N; n++) {
      const p = n >> 4, c = n & 15, lane = c & 3, field = c >> 2;
      for (let g = 0; g < groups; g++) {
        const gp = p * panelBytes + g * groupBytes; // byte offset of the group in the panel block
        f32[(gp >> 2) + c] = fieldScale(src.scales[n * groups + g], bits, field);
        f32[(gp >> 2) + 16 + c] = src.biases[n * groups + g];
        // the group's codes: gs / perWord whole words (gs is a multiple of 32 / bits)
        const word0 = n * wordsPerRow + (g * gs) / perWord;
        for (let wi = 0; wi < gs / perWord; wi++) {
          let word = src.codes[word0 + wi];
          for (let i = 0; i < perWord; i++, word >>>= bits) {
            const step = gp + 128 + (wi * perWord + i) * 2 * bits; // byte offset of the k-step's codes
            if (bits === 8) u32[(step >> 2) + lane] = (u32[(step >> 2) + lane] | ((word & mask) << (8 * field))) >>> 0;
            else u16[(step >> 1) + lane] |= (word & mask) << (4 * field);
          }
        }
      }
    }
    return { N, K, dtype: src.dtype, groupSize: gs, bytes: packed.byteLength, packed, owner: this, shard: shardIndex };
  }

  /**
   * Quantized quads for int16 activations (assembly/linear-quant-i16.ts): per quad of 4 rows and group
   * of `gs` k, 4 f32 scales, 4 f32 biases, then the rows' MLX words 16 bytes at a time, the 4 rows'
   * chunks interleaved. Padding rows get scale 0, bias 0, code 0.
   */
  private bindQuantizedI16(src: QuantizedSource, N: number, K: number, shardIndex: number): WasmLinearWeight {
    const bits = quantBits(src.dtype), gs = src.groupSize;
    const quads = Math.ceil(N / 4), groups = K / gs, chunks = gs * bits / 128;
    const groupBytes = 32 + 64 * chunks, quadBytes = groups * groupBytes;
    const packed = this.shards[shardIndex].arena.u8(quads * quadBytes);
    packed.fill(0);
    const f32 = new Float32Array(packed.buffer, packed.byteOffset, packed.byteLength >> 2);
    const u32 = new Uint32Array(packed.buffer, packed.byteOffset, packed.byteLength >> 2);
    const wordsPerRow = K * bits / 32;
    for (let n = 0; n < N; n++) {
      const q = n >> 2, r = n & 3;
      for (let g = 0; g < groups; g++) {
        const gw = (q * quadBytes + g * groupBytes) >> 2; // word offset of the group in the quad block
        f32[gw + r] = src.scales[n * groups + g];
        f32[gw + 4 + r] = src.biases[n * groups + g];
        for (let c = 0; c < chunks; c++) {
          const from = n * wordsPerRow + (g * chunks + c) * 4, to = gw + 8 + c * 16 + r * 4;
          for (let i = 0; i < 4; i++) u32[to + i] = src.codes[from + i];
        }
      }
    }
    return { N, K, dtype: src.dtype, groupSize: gs, bytes: packed.byteLength, packed, owner: this, shard: shardIndex, xbits: this.xbits as 16 | 8 };
  }

  linear(y: Float32Array, x: Float32Array, weight: LinearWeight, M: number, bias?: Float32Array | null): void {
    const w = this.ownWeight('linear', weight);
    checkCount('linear', 'M', M);
    const { N, K } = w;
    this.checkNoOverlap('linear', 'y', y, M * N, x, M * K);
    this.run('linear', w.shard, [{ name: 'y', view: y, need: M * N, out: true }, { name: 'x', view: x, need: M * K }, { name: 'bias', view: bias ?? null, need: N }], ([yp, xp, bp], shard, index) => {
      if (M === 0) return;
      const kind = linearKind(w), kc = linearBlockK(M, K, w.dtype);
      const scratchBytes = linearJobScratchBytes(kind, M, K, kc);
      const scratch = scratchBytes ? shard.linearScratch.need(scratchBytes) : 0;
      const pool = this.pool.current;
      const units = linearUnits(kind, N);
      if (pool && pool.worthSplitting(M * N * K, units)) {
        pool.linear(index, kind, yp, xp, w.packed.byteOffset, bp, M, N, K, kc, scratch, this.tile);
        return;
      }
      const p = w.packed.byteOffset;
      if (kind.xbits !== 0) shard.wasm.linear_quant_i16(yp, xp, p, bp, M, N, K, 0, units, scratch, kind.bits, kind.gs, kind.xbits);
      else if (kind.bits !== 0) shard.wasm.linear_quant(yp, xp, p, bp, M, N, K, 0, units, kc, scratch, this.tile, kind.bits, kind.gs);
      else if (kind.bf16) shard.wasm.linear_bf16(yp, xp, p, bp, M, N, K, 0, units, kc, scratch, this.tile);
      else shard.wasm.linear_f32(yp, xp, p, bp, M, N, K, 0, units, kc, 0, this.tile);
    });
  }

  linearGroup(ys: readonly Float32Array[], x: Float32Array, weights: readonly LinearWeight[], M: number, biases?: readonly (Float32Array | null)[] | null): void {
    if (ys.length !== weights.length || (biases && biases.length !== weights.length)) throw badArgs('linearGroup', `${ys.length} outputs, ${weights.length} weights${biases ? `, ${biases.length} biases` : ''}: one of each per member`);
    const ws = weights.map((w) => this.ownWeight('linearGroup', w));
    checkCount('linearGroup', 'M', M);
    for (let i = 0; i < ws.length; i++) {
      this.checkNoOverlap('linearGroup', `ys[${i}]`, ys[i], M * ws[i].N, x, M * ws[i].K);
      for (let j = 0; j < i; j++) this.checkNoOverlap('linearGroup', `ys[${i}]`, ys[i], M * ws[i].N, ys[j], M * ws[j].N, `ys[${j}]`);
    }
    const first = ws[0], pool = this.pool.current;
    const kind = first ? linearKind(first) : null;
    const same = (w: WasmLinearWeight): boolean => w.shard === first.shard && w.K === first.K && w.dtype === first.dtype && w.groupSize === first.groupSize && w.xbits === first.xbits;
    const units = kind ? ws.reduce((n, w) => n + linearUnits(kind, w.N), 0) : 0;
    const work = ws.reduce((n, w) => n + M * w.N * w.K, 0);
    // one job only where it pays and fits: otherwise the separate calls (the same bits)
    if (!pool || !kind || ws.length < 2 || ws.length > LINEAR_GROUP_MAX || !ws.every(same) || !pool.worthSplitting(work, units)) {
      for (let i = 0; i < ws.length; i++) this.linear(ys[i], x, ws[i], M, biases?.[i] ?? null);
      return;
    }
    const K = first.K;
    const args: Arg[] = [{ name: 'x', view: x, need: M * K }];
    for (let i = 0; i < ws.length; i++) args.push({ name: `ys[${i}]`, view: ys[i], need: M * ws[i].N, out: true }, { name: `biases[${i}]`, view: biases?.[i] ?? null, need: ws[i].N });
    this.run('linearGroup', first.shard, args, ([xp, ...rest], shard, index) => {
      const kc = linearBlockK(M, K, first.dtype);
      const scratchBytes = linearJobScratchBytes(kind, M, K, kc);
      pool.linearGroup(index, kind, ws.map((_, i) => rest[2 * i]), xp, ws.map((w) => w.packed.byteOffset), ws.map((_, i) => rest[2 * i + 1]), ws.map((w) => w.N),
        M, K, kc, scratchBytes ? shard.linearScratch.need(scratchBytes) : 0, this.tile);
    });
  }

  /** The weight as this runtime bound it (else KERNEL_FOREIGN_BUFFER). */
  private ownWeight(kernel: string, weight: LinearWeight): WasmLinearWeight {
    const w = weight as WasmLinearWeight;
    if (w.owner !== this) {
      throw new PonderError('KERNEL_FOREIGN_BUFFER', `${kernel}: the weight was not bound by this WASM runtime`, { hint: 'bind weights with runtime.kernels.bindLinear of the runtime that runs them' });
    }
    return w;
  }

  /** An output must not overlap an input of the same call (checked on the caller's views, before any staging). */
  private checkNoOverlap(kernel: string, name: string, y: Float32Array, yn: number, x: Float32Array, xn: number, xName = 'x'): void {
    if (yn > 0 && xn > 0 && this.ownerOf(kernel, name, y) === this.ownerOf(kernel, xName, x) && y.byteOffset < x.byteOffset + 4 * xn && x.byteOffset < y.byteOffset + 4 * yn) {
      throw badArgs(kernel, `${name} must not overlap ${xName}`);
    }
  }

  rmsnorm(y: Float32Array, x: Float32Array, weight: Float32Array | null, rows: number, dim: number, eps: number): void {
    checkCount('rmsnorm', 'rows', rows); checkCount('rmsnorm', 'dim', dim);
    this.run('rmsnorm', null, [{ name: 'y', view: y, need: rows * dim, out: true }, { name: 'x', view: x, need: rows * dim }, { name: 'weight', view: weight, need: dim }],
      ([yp, xp, wp], shard) => shard.wasm.rmsnorm_f32(yp, xp, wp, rows, dim, eps));
  }

  rope(x: Float32Array, rows: number, nHeads: number, headDim: number, rowStride: number,
       cos: Float32Array, sin: Float32Array, positions: Int32Array, layout: RopeLayout): void {
    for (const [name, v] of [['rows', rows], ['nHeads', nHeads], ['headDim', headDim], ['rowStride', rowStride]] as const) checkCount('rope', name, v);
    if (headDim % 2 !== 0) throw badArgs('rope', `headDim must be even, got ${headDim}`);
    if (rowStride < nHeads * headDim) throw badArgs('rope', `rowStride ${rowStride} < nHeads*headDim ${nHeads * headDim}`);
    if (layout !== 'half' && layout !== 'interleaved') throw badArgs('rope', `layout must be 'half' or 'interleaved', got ${String(layout)}`);
    if (rows === 0) return;
    const half = headDim / 2;
    if (positions.length < rows) throw badArgs('rope', `positions has ${positions.length} elements, needs ${rows}`);
    const tableRows = half === 0 ? Infinity : Math.min(cos.length, sin.length) / half;
    let last = 0;
    for (let r = 0; r < rows; r++) {
      const p = positions[r];
      if (p < 0 || p + 1 > tableRows) throw badArgs('rope', `positions[${r}] = ${p} is outside the cos/sin tables (${Math.floor(tableRows)} positions)`);
      last = Math.max(last, p);
    }
    const tableNeed = (last + 1) * half;
    this.run('rope', null, [{ name: 'x', view: x, need: (rows - 1) * rowStride + nHeads * headDim, out: true }, { name: 'positions', view: positions, need: rows },
      { name: 'cos', view: cos, need: tableNeed }, { name: 'sin', view: sin, need: tableNeed }],
      ([xp, pp, cp, sp], shard) => shard.wasm.rope_f32(xp, rows, nHeads, headDim, rowStride, cp, sp, pp, layout === 'interleaved' ? 1 : 0));
  }

  attention(out: Float32Array, q: Float32Array, k: KvBuffer, v: KvBuffer,
            Tq: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number, scale: number,
            qPos: Int32Array | null, kPos: Int32Array | null, allowed: Uint8Array | null, kvDtype: KvDType = 'f32'): void {
    for (const [name, n] of [['Tq', Tq], ['Tk', Tk], ['nHeads', nHeads], ['nKvHeads', nKvHeads], ['headDim', headDim]] as const) checkCount('attention', name, n);
    if (kvDtype !== 'f32' && kvDtype !== 'bf16' && kvDtype !== 'f16') throw badArgs('attention', `kvDtype must be f32, bf16 or f16, got ${String(kvDtype)}`);
    const elementBytes = kvDtype === 'f32' ? 4 : 2;
    if (k.BYTES_PER_ELEMENT !== elementBytes || v.BYTES_PER_ELEMENT !== elementBytes) throw badArgs('attention', `a ${kvDtype} KV cache needs ${elementBytes === 4 ? 'Float32Array' : 'Uint16Array'} k and v`);
    if (nKvHeads === 0 || nHeads % nKvHeads !== 0) throw badArgs('attention', `nHeads (${nHeads}) must be a multiple of nKvHeads (${nKvHeads})`);
    const qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
    const usePos = qPos !== null && kPos !== null;
    // runs where the keys are: a layer's KV cache lives in its shard, the query is staged in
    const exec = this.ownerOf('attention', 'k', k);
    this.run('attention', exec, [{ name: 'out', view: out, need: Tq * qDim, out: true }, { name: 'q', view: q, need: Tq * qDim },
      { name: 'k', view: k, need: Tk * kvDim }, { name: 'v', view: v, need: Tk * kvDim },
      { name: 'qPos', view: usePos ? qPos : null, need: Tq }, { name: 'kPos', view: usePos ? kPos : null, need: Tk }, { name: 'allowed', view: allowed, need: Tq * Tk }],
      ([op, qp, kp, vp, qpp, kpp, ap], shard, index) => {
        if (Tq === 0 || nHeads === 0) return;
        const units = Tq * nHeads;
        const pool = this.pool.current;
        if (Tq === 1 && pool && pool.worthSplitting(units * Tk * headDim, Tk)) {
          pool.attentionDecode(index, op, qp, kp, vp, Tk, nHeads, nKvHeads, headDim, scale, qpp, kpp, ap, shard.scoresScratch.need(attentionScratchBytes(1, Tk, units, headDim, kvDtype)), kvDtype);
          return;
        }
        if (pool && pool.worthSplitting(units * Tk * headDim, units)) {
          pool.attention(index, op, qp, kp, vp, Tq, Tk, nHeads, nKvHeads, headDim, scale, qpp, kpp, ap, units, shard.scoresScratch, kvDtype);
          return;
        }
        const scores = shard.scoresScratch.need(attentionScratchBytes(Tq, Tk, units, headDim, kvDtype));
        attentionKernel(shard.wasm, kvDtype)(op, qp, kp, vp, Tq, Tk, nHeads, nKvHeads, headDim, scale, qpp, kpp, ap, scores, 0, units);
      });
  }

  softmax(y: Float32Array, x: Float32Array, rows: number, n: number): void {
    checkCount('softmax', 'rows', rows); checkCount('softmax', 'n', n);
    this.run('softmax', null, [{ name: 'y', view: y, need: rows * n, out: true }, { name: 'x', view: x, need: rows * n }], ([yp, xp], shard) => shard.wasm.softmax_f32(yp, xp, rows, n));
  }

  logSoftmax(y: Float32Array, x: Float32Array, rows: number, n: number): void {
    checkCount('logSoftmax', 'rows', rows); checkCount('logSoftmax', 'n', n);
    this.run('logSoftmax', null, [{ name: 'y', view: y, need: rows * n, out: true }, { name: 'x', view: x, need: rows * n }], ([yp, xp], shard) => shard.wasm.log_softmax_f32(yp, xp, rows, n));
  }

  siluMul(y: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
    checkCount('siluMul', 'n', n);
    this.run('siluMul', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'gate', view: gate, need: n }, { name: 'up', view: up, need: n }], ([yp, gp, up2], shard) => shard.wasm.silu_mul_f32(yp, gp, up2, n));
  }

  silu(y: Float32Array, x: Float32Array, n: number): void {
    checkCount('silu', 'n', n);
    this.run('silu', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'x', view: x, need: n }], ([yp, xp], shard) => shard.wasm.silu_f32(yp, xp, n));
  }

  sigmoid(y: Float32Array, x: Float32Array, n: number): void {
    checkCount('sigmoid', 'n', n);
    this.run('sigmoid', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'x', view: x, need: n }], ([yp, xp], shard) => shard.wasm.sigmoid_f32(yp, xp, n));
  }

  add(y: Float32Array, a: Float32Array, b: Float32Array, n: number): void {
    checkCount('add', 'n', n);
    this.run('add', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'a', view: a, need: n }, { name: 'b', view: b, need: n }], ([yp, ap, bp], shard) => shard.wasm.add_f32(yp, ap, bp, n));
  }

  axpy(y: Float32Array, alpha: number, x: Float32Array, n: number): void {
    checkCount('axpy', 'n', n);
    this.run('axpy', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'x', view: x, need: n }], ([yp, xp], shard) => shard.wasm.axpy_f32(yp, alpha, xp, n));
  }

  scale(y: Float32Array, alpha: number, x: Float32Array, n: number): void {
    checkCount('scale', 'n', n);
    this.run('scale', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'x', view: x, need: n }], ([yp, xp], shard) => shard.wasm.scale_f32(yp, alpha, xp, n));
  }

  argmax(x: Float32Array, n: number): number {
    checkCount('argmax', 'n', n);
    let result = -1;
    this.run('argmax', null, [{ name: 'x', view: x, need: n }], ([xp], shard) => { result = shard.wasm.argmax_f32(xp, n); });
    return result;
  }

  bf16ToF32(y: Float32Array, x: Uint16Array, n: number): void {
    checkCount('bf16ToF32', 'n', n);
    this.run('bf16ToF32', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'x', view: x, need: n }], ([yp, xp], shard) => shard.wasm.bf16_to_f32(yp, xp, n));
  }

  f16ToF32(y: Float32Array, x: Uint16Array, n: number): void {
    checkCount('f16ToF32', 'n', n);
    this.run('f16ToF32', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'x', view: x, need: n }], ([yp, xp], shard) => shard.wasm.f16_to_f32(yp, xp, n));
  }

  f32ToBf16(y: Uint16Array, x: Float32Array, n: number): void {
    checkCount('f32ToBf16', 'n', n);
    this.run('f32ToBf16', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'x', view: x, need: n }], ([yp, xp], shard) => shard.wasm.f32_to_bf16(yp, xp, n));
  }

  f32ToF16(y: Uint16Array, x: Float32Array, n: number): void {
    checkCount('f32ToF16', 'n', n);
    this.run('f32ToF16', null, [{ name: 'y', view: y, need: n, out: true }, { name: 'x', view: x, need: n }], ([yp, xp], shard) => shard.wasm.f32_to_f16(yp, xp, n));
  }
}
