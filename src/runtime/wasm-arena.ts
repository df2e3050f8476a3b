/**
 * The WASM runtime's arena: a bump allocator over one shared WebAssembly.Memory.
 *
 * Every buffer a WASM kernel touches is a typed-array view into this memory, and kernels receive
 * `view.byteOffset` as a pointer. The memory is shared (SharedArrayBuffer-backed), so growing it
 * does not detach views handed out earlier: they keep pointing at the same bytes. Allocations start on
 * a cache line (64 bytes), those of LARGE_BYTES or more on a 4 KiB page (see PAGE_ALIGN), and are never
 * freed: a model allocates everything up front from its memory plan (src/runtime/plan.ts), ideally
 * after one `reserve(plan.total)`.
 *
 * wasm32 caps the memory at 65536 pages = 4 GiB; asking for more is MEM_MODEL_TOO_LARGE with the
 * number of bytes that was needed. A host that cannot commit the pages (RangeError from grow) is
 * MEM_HOST_OOM.
 */
import { PonderError } from '../errors.js';
import type { Arena } from './arena.js';

export const WASM_PAGE_BYTES = 65536;
export const WASM_MAX_PAGES = 65536;
export const WASM_MAX_BYTES = WASM_PAGE_BYTES * WASM_MAX_PAGES; // 4 GiB
export const LINE_ALIGN = 64;
// Buffers of LARGE_BYTES or more (packed weights, KV caches) start on a 4 KiB page, the rest on a
// cache line. Measured on Zen 5 (bench/RESULTS.md, "Where a buffer starts"): the bf16 decode GEMV
// reads the same bytes in the same order at ~27–31 GB/s (the stream read's rate) or at ~19–23 GB/s
// depending only on where the weights and the activation row start — fast with the weights on a
// 1 KiB boundary and x on a cache line (and for a few other pairs), slow for most (the stream read
// itself does not care; the mechanism is not identified). Fixing both makes the rate a property of the kernel, not of what was allocated before.
// The cost: under 4 KiB of padding per large buffer, under 64 bytes per small one.
export const LARGE_BYTES = 64 * 1024;
export const PAGE_ALIGN = 4096;
// Grow in steps of at least this many bytes so a run of small allocations does not grow page by page.
const GROW_STEP_BYTES = 16 * 1024 * 1024;

function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${n} bytes`;
}

export class WasmArena implements Arena {
  readonly memory: WebAssembly.Memory;
  /** First byte the arena may hand out (after the module's static data). */
  readonly base: number;
  private top: number;
  // Every SharedArrayBuffer object this memory has exposed (a new one appears after each grow).
  // A view is ours iff its buffer is one of these.
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  private current: SharedArrayBuffer;

  constructor(memory: WebAssembly.Memory, base: number) {
    this.memory = memory;
    this.base = alignUp(base);
    this.top = this.base;
    this.current = memory.buffer as unknown as SharedArrayBuffer;
    this.buffers.add(this.current);
  }

  /** Bytes handed out so far (alignment padding included). */
  get bytesUsed(): number { return this.top - this.base; }

  /** Bytes of linear memory currently committed. */
  get bytesCommitted(): number { return this.memory.buffer.byteLength; }

  /** Grows the memory once so that `bytes` more can be allocated without further growth. */
  reserve(bytes: number): void {
    this.ensure(this.top + alignUp(Math.max(0, bytes)), bytes, 'reserve');
  }

  f32(n: number): Float32Array { const at = this.alloc(4 * n, 'f32', n); return new Float32Array(this.buffer(), at, n); }
  u16(n: number): Uint16Array { const at = this.alloc(2 * n, 'u16', n); return new Uint16Array(this.buffer(), at, n); }
  i32(n: number): Int32Array { const at = this.alloc(4 * n, 'i32', n); return new Int32Array(this.buffer(), at, n); }
  u8(n: number): Uint8Array { const at = this.alloc(n, 'u8', n); return new Uint8Array(this.buffer(), at, n); }

  /** Raw allocation: the byte offset of `bytes` fresh bytes, 64-byte aligned (4 KiB aligned from LARGE_BYTES up). */
  allocBytes(bytes: number): number {
    return this.alloc(bytes, 'bytes', bytes);
  }

  /** True iff `view` lies inside this arena's memory (so its byteOffset is a valid pointer). */
  owns(view: ArrayBufferView): boolean {
    const b = view.buffer;
    // Views are never larger than their buffer, and every buffer of this memory is within it.
    return b === this.current || this.buffers.has(b);
  }

  /** The current SharedArrayBuffer (after any growth). */
  get sharedBuffer(): SharedArrayBuffer { return this.buffer(); }

  private alloc(bytes: number, kind: string, n: number): number {
    if (!Number.isInteger(n) || n < 0) {
      throw new PonderError('MEM_BAD_SIZE', `arena.${kind}(${n}): size must be a non-negative integer`, { hint: 'this is a bug in the caller: sizes come from the model config' });
    }
    const start = bytes >= LARGE_BYTES ? Math.ceil(this.top / PAGE_ALIGN) * PAGE_ALIGN : this.top;
    const end = start + alignUp(bytes);
    this.ensure(end, bytes, kind);
    this.top = end;
    return start;
  }

  private ensure(end: number, requested: number, what: string): void {
    if (end <= this.memory.buffer.byteLength) return;
    if (end > WASM_MAX_BYTES) {
      throw new PonderError('MEM_MODEL_TOO_LARGE',
        `WASM memory would need ${end} bytes (${formatBytes(end)}: ${formatBytes(this.bytesUsed)} in use + ${formatBytes(requested)} for ${what}), over the wasm32 limit of 4 GiB`,
        { hint: 'use a smaller model, bf16 weights, a shorter context (smaller KV cache), or --kernels scalar' });
    }
    const have = this.memory.buffer.byteLength;
    const want = Math.min(WASM_MAX_BYTES, Math.max(end, have + GROW_STEP_BYTES));
    try {
      this.memory.grow(Math.ceil((want - have) / WASM_PAGE_BYTES));
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      // The step was generous; retry with exactly what is needed before giving up.
      try {
        this.memory.grow(Math.ceil((end - this.memory.buffer.byteLength) / WASM_PAGE_BYTES));
      } catch (e2) {
        if (!(e2 instanceof RangeError)) throw e2;
        throw new PonderError('MEM_HOST_OOM',
          `the host refused to grow WASM memory to ${formatBytes(end)} (${end} bytes): ${(e2 as Error).message}`,
          { hint: 'free memory on this machine or use a smaller model / shorter context' });
      }
    }
    this.buffer();
  }

  private buffer(): SharedArrayBuffer {
    const b = this.memory.buffer as unknown as SharedArrayBuffer;
    if (b !== this.current) { this.current = b; this.buffers.add(b); }
    return b;
  }
}

function alignUp(n: number): number {
  return Math.ceil(n / LINE_ALIGN) * LINE_ALIGN;
}

/**
 * A kernel scratch area in the arena that grows (by doubling, from 16 KiB) when a call needs
 * more. The old area is abandoned, not freed: growth happens a handful of times per run.
 */
export class ScratchBuffer {
  private ptr = 0;
  private bytes = 0;
  constructor(private readonly arena: WasmArena) {}

  /** A pointer to at least `bytes` bytes of scratch (contents undefined). */
  need(bytes: number): number {
    if (bytes > this.bytes) {
      this.bytes = Math.max(16384, 2 ** Math.ceil(Math.log2(bytes)));
      this.ptr = this.arena.allocBytes(this.bytes);
    }
    return this.ptr;
  }
}
