/**
 * What the thread pool (src/runtime/pool.ts) and the WASM kernels (wasm.ts) both need to know about
 * the compiled module: its raw exports, the k-block of linear and the per-thread scratch sizes. A
 * module of its own so that neither of the two imports the other for it.
 */
import type { KvDType } from './kernels.js';

/** The raw exports of assembly/index.ts. Pointers are byte offsets into the shared memory. */
export interface WasmKernelExports {
  heap_base(): number;
  add_f32(y: number, a: number, b: number, n: number): void;
  axpy_f32(y: number, alpha: number, x: number, n: number): void;
  scale_f32(y: number, alpha: number, x: number, n: number): void;
  sigmoid_f32(y: number, x: number, n: number): void;
  silu_f32(y: number, x: number, n: number): void;
  silu_mul_f32(y: number, gate: number, up: number, n: number): void;
  rmsnorm_f32(y: number, x: number, weight: number, rows: number, dim: number, eps: number): void;
  rope_f32(x: number, rows: number, nHeads: number, headDim: number, rowStride: number, cos: number, sin: number, positions: number, interleaved: number): void;
  softmax_f32(y: number, x: number, rows: number, n: number): void;
  log_softmax_f32(y: number, x: number, rows: number, n: number): void;
  argmax_f32(x: number, n: number): number;
  bf16_to_f32(y: number, x: number, n: number): void;
  f16_to_f32(y: number, x: number, n: number): void;
  f32_to_bf16(y: number, x: number, n: number): void;
  f32_to_f16(y: number, x: number, n: number): void;
  /** tile: index into LINEAR_TILES (src/kernels/linear-tiles.ts); used when M > 1. */
  linear_f32(y: number, x: number, w: number, bias: number, M: number, N: number, K: number, p0: number, p1: number, kcMax: number, scratch: number, tile: number): void;
  linear_bf16(y: number, x: number, w: number, bias: number, M: number, N: number, K: number, p0: number, p1: number, kcMax: number, scratch: number, tile: number): void;
  /** Affine-quantized panels (assembly/linear-quant.ts): bits 8 or 4, gs the group size. */
  linear_quant(y: number, x: number, w: number, bias: number, M: number, N: number, K: number, p0: number, p1: number, kcMax: number, scratch: number, tile: number, bits: number, gs: number): void;
  /** The integer-dot modes (int16 or int8 activations: xbits 16 or 8) over quads of 4 rows [q0, q1) (assembly/linear-quant-i16.ts). */
  linear_quant_i16(y: number, x: number, w: number, bias: number, M: number, N: number, K: number, q0: number, q1: number, scratch: number, bits: number, gs: number, xbits: number): void;
  attention(out: number, q: number, k: number, v: number, Tq: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number, scale: number,
            qPos: number, kPos: number, allowed: number, scores: number, u0: number, u1: number): void;
  /** attention over a bf16 / IEEE half KV cache (k, v: 16-bit values), widened exactly in registers */
  attention_bf16(out: number, q: number, k: number, v: number, Tq: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number, scale: number,
                 qPos: number, kPos: number, allowed: number, scores: number, u0: number, u1: number): void;
  attention_f16(out: number, q: number, k: number, v: number, Tq: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number, scale: number,
                qPos: number, kPos: number, allowed: number, scores: number, u0: number, u1: number): void;
  /** One phase (DECODE_PHASES) of a decode attention call (Tq = 1) shared by threads, over [lo, hi) of the phase's axis; `scores`: one scratch for all threads. */
  attention_decode(phase: number, out: number, q: number, k: number, v: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number, scale: number,
                   qPos: number, kPos: number, allowed: number, scores: number, lo: number, hi: number): void;
  attention_decode_bf16(phase: number, out: number, q: number, k: number, v: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number, scale: number,
                        qPos: number, kPos: number, allowed: number, scores: number, lo: number, hi: number): void;
  attention_decode_f16(phase: number, out: number, q: number, k: number, v: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number, scale: number,
                       qPos: number, kPos: number, allowed: number, scores: number, lo: number, hi: number): void;
}


/** The attention export for a KV element type. */
export function attentionKernel(wasm: WasmKernelExports, kv: KvDType): WasmKernelExports['attention'] {
  return kv === 'bf16' ? wasm.attention_bf16 : kv === 'f16' ? wasm.attention_f16 : wasm.attention;
}

/** The phased decode attention export for a KV element type. */
export function attentionDecodeKernel(wasm: WasmKernelExports, kv: KvDType): WasmKernelExports['attention_decode'] {
  return kv === 'bf16' ? wasm.attention_decode_bf16 : kv === 'f16' ? wasm.attention_decode_f16 : wasm.attention_decode;
}

/**
 * The phases of attention_decode (assembly/attention.ts), in the order they run, and the axis each
 * splits: descriptors (one thread), scores by key rows, softmax by heads, values by value chunks
 * (ATTENTION_VALUE_CHUNK keys), combine by heads.
 */
export const DECODE_PHASES = { descriptors: 0, scores: 1, softmax: 2, values: 3, combine: 4 } as const;

/**
 * The k-block length for linear with M rows (assembly/linear.ts).
 * f32: while the M×K rows of x fit in half the L2 (512 KiB), no k-blocking, so each weight panel
 * is read once as one sequential stream (small batches: speculative drafts, a few tokens; measured
 * 1.3-1.9× faster than KC = 256 for M = 2..16 at 4096²). Above that, 256 (perf.md §3: KC between
 * 64 and 4096 changes less than 3% for M ≥ 64).
 * bf16 and quantized: always 256, so the widened block ([256][16] f32, 16 KiB) stays in L1.
 * The choice does not change results: every output still accumulates in k order.
 */
export function linearBlockK(M: number, K: number, dtype: 'f32' | 'bf16' | 'q8' | 'q4'): number {
  return dtype === 'f32' && M * K * 4 <= 512 * 1024 ? Math.max(1, K) : 256;
}

/** Bytes of per-thread scratch linear_bf16 and linear_quant need for one widened k-block of kc steps. */
export function linearScratchBytes(kc: number): number {
  return kc * 16 * 4;
}

// assembly/linear-quant.ts and linear-quant-i16.ts: rows per block of prefill.
const QUANT_ROW_BLOCK = 64;
const QUANT_I16_ROW_BLOCK = 16;

/** Bytes of per-thread scratch linear_quant_i16 needs (assembly/linear-quant-i16.ts): group sums and xscales of a block of min(M, 16) rows, those rows as int16, and 192 bytes for the sums of 4 rows. */
export function quantI16ScratchBytes(M: number, K: number, gs: number): number {
  const rows = Math.min(M, QUANT_I16_ROW_BLOCK);
  return 2 * ((rows * (K / gs) * 4 + 15) & ~15) + ((rows * K * 2 + 15) & ~15) + 192;
}

/**
 * Bytes of per-thread scratch linear_quant needs (assembly/linear-quant.ts) with k-blocks of kc:
 * decode (M = 1), the row's K/gs group sums; prefill, for a block of R = min(M, 64) rows, the
 * group sums of one k-block (rounded up to 16 bytes), an [R][16] f32 block of group dots and one
 * group of codes widened to f32 ([gs][16]). At most 32 KiB for kc = 256, whatever M and K are.
 */
export function quantScratchBytes(M: number, K: number, gs: number, kc: number): number {
  if (M <= 1) return (K / gs) * 4;
  const rows = Math.min(M, QUANT_ROW_BLOCK), blockGroups = Math.max(1, Math.floor(kc / gs));
  return ((rows * blockGroups * 4 + 15) & ~15) + rows * 64 + gs * 64;
}

// assembly/attention.ts: units per block in prefill, and the ints of each unit's descriptor.
const ATTENTION_PREFILL_BLOCK = 16;
const ATTENTION_UNIT_INTS = 4;
// assembly/attention.ts (scoresRowBytes): each unit's scores row is padded by one cache line.
const ATTENTION_ROW_PAD_BYTES = 64;

// assembly/attention.ts: prefill runs unblocked while one head's K and V take at most this many bytes (as f32), else key blocks of this many rows.
const ATTENTION_PREFILL_UNBLOCKED_BYTES = 512 * 1024;
const ATTENTION_PREFILL_KEY_BLOCK = 64;

// assembly/attention.ts (VALUE_CHUNK): keys per value chunk; each chunk past the first sums into its own rows.
export const ATTENTION_VALUE_CHUNK = 512;

/**
 * Bytes of per-thread scratch `attention` needs for `units` units (query row × head) of a call
 * with Tq query rows over Tk keys: one scores row and one descriptor per unit of its largest block
 * (decode, Tq = 1: every unit the thread computes; prefill: at most 16), each row padded by 64 bytes;
 * then, 16-byte aligned, prefill over a narrow cache (kv bf16 / f16) adds one key block of one head
 * widened to f32 (unblocked prefill: all Tk keys, at most 256 KiB; blocked: 64 keys); and past one
 * value chunk (Tk > 512) the chunk rows, hd f32 per unit: every later chunk's in decode, one
 * chunk's in prefill.
 */
export function attentionScratchBytes(Tq: number, Tk: number, units: number, headDim: number, kv: KvDType = 'f32'): number {
  const block = Math.max(1, Tq === 1 ? units : Math.min(units, ATTENTION_PREFILL_BLOCK));
  const base = Math.ceil(((4 * Tk + ATTENTION_ROW_PAD_BYTES + 4 * ATTENTION_UNIT_INTS) * block) / 16) * 16;
  const chunks = Math.ceil(Tk / ATTENTION_VALUE_CHUNK);
  const chunkRows = chunks <= 1 ? 0 : (Tq === 1 ? chunks - 1 : 1) * block * 4 * headDim;
  if (kv === 'f32' || Tq === 1) return base + chunkRows;
  const keys = Tk * headDim * 8 <= ATTENTION_PREFILL_UNBLOCKED_BYTES ? Math.max(Tk, 1) : ATTENTION_PREFILL_KEY_BLOCK;
  return base + 4 * keys * headDim + chunkRows;
}

/** The most widening scratch a narrow-cache prefill adds per thread (attentionScratchBytes): what the memory plan reserves. */
export const ATTENTION_WIDEN_MAX_BYTES = ATTENTION_PREFILL_UNBLOCKED_BYTES / 2 + 16;
