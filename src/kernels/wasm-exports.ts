/**
 * What the thread pool (src/runtime/pool.ts) and the WASM kernels (wasm.ts) both need to know about
 * the compiled module: its raw exports and the scratch size of the bf16 linear. A module of its
 * own so that neither of the two imports the other for it.
 */
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
  linear_f32(y: number, x: number, w: number, bias: number, M: number, N: number, K: number, p0: number, p1: number, kcMax: number, scratch: number): void;
  linear_bf16(y: number, x: number, w: number, bias: number, M: number, N: number, K: number, p0: number, p1: number, kcMax: number, scratch: number): void;
  attention(out: number, q: number, k: number, v: number, Tq: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number, scale: number,
            qPos: number, kPos: number, allowed: number, scores: number, u0: number, u1: number): void;
}

/** Bytes of per-thread scratch linear_bf16 needs for one widened k-block of kc steps. */
export function linearScratchBytes(kc: number): number {
  return kc * 16 * 4;
}
