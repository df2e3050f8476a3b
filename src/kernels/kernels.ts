/**
 * The kernel contract. Two implementations exist and must agree within the error bounds the tests
 * state: `scalarKernels` (plain TypeScript, the executable reference) and the WebAssembly SIMD
 * kernels (assembly/, wrapped by src/kernels/wasm.ts).
 *
 * Conventions (llm.c style): outputs first, then inputs, then sizes. Every buffer is a flat
 * row-major Float32Array; a shape comment names its dimensions. Buffers passed to the WASM kernels
 * must come from that runtime's arena (they live in its linear memory). No kernel allocates.
 * Unless a kernel says otherwise, `out` may alias an input element-for-element (in-place use).
 */

/** How a bound Linear weight is stored: f32, bf16, or affine-quantized with 8- or 4-bit codes (spec/quantization.md). */
export type WeightDType = 'f32' | 'bf16' | 'q8' | 'q4';

/**
 * A Linear weight W[N,K] (PyTorch layout: out_features × in_features), bound once at load time in
 * whatever layout the backend streams (the WASM backend packs 16-column panels, perf.md §8).
 */
export interface LinearWeight {
  readonly N: number; // out features
  readonly K: number; // in features
  readonly dtype: WeightDType;
  readonly bytes: number; // bytes held by the bound copy
  /** quantized weights: k-steps per scale and bias */
  readonly groupSize?: number;
}

/**
 * An affine-quantized weight in MLX's layout (spec/quantization.md): W[n, k] = scales[n, g]·code + biases[n, g]
 * with g = floor(k / groupSize) and code the `bits`-bit field k of row n, packed from the low bits of
 * little-endian u32 words (32/bits codes per word).
 *   codes  [N, K·bits/32] u32
 *   scales [N, K/groupSize] f32 (widened exactly from the file's dtype)
 *   biases [N, K/groupSize] f32
 */
export interface QuantizedSource {
  readonly dtype: 'q8' | 'q4';
  readonly groupSize: number;
  readonly codes: Uint32Array;
  readonly scales: Float32Array;
  readonly biases: Float32Array;
}

/** Source data for a Linear weight: row-major [N,K], f32 values, raw bf16 bits, or quantized codes. */
export type LinearSource = { dtype: 'f32'; data: Float32Array } | { dtype: 'bf16'; data: Uint16Array } | QuantizedSource;

export type RopeLayout = 'half' | 'interleaved';

/**
 * How a KV cache stores keys and values: f32 (default; what conformance uses), or 16-bit bf16 /
 * IEEE half, written rounded to nearest even (f32ToBf16, f32ToF16) and read back exactly widened.
 */
export type KvDType = 'f32' | 'bf16' | 'f16';

/** How the WASM kernels run quantized Linear weights (spec/quantization.md): 'f32' is the exact mode; 'int16' and 'int8' quantize each group of activations for an integer dot. */
export type QuantActivations = 'f32' | 'int16' | 'int8';
export const QUANT_ACTIVATIONS: readonly QuantActivations[] = ['f32', 'int16', 'int8'];
/** Keys or values as a cache of that dtype holds them: f32 values, or 16-bit bf16 / half bits. */
export type KvBuffer = Float32Array | Uint16Array;

export interface Kernels {
  readonly name: string;

  /**
   * Binds W[N,K] for `linear` into memory shard `shard` (default 0; a one-memory backend ignores it).
   * Copies (and packs) the data: the source may be dropped afterwards.
   */
  bindLinear(src: LinearSource, N: number, K: number, shard?: number): LinearWeight;

  /**
   * y[M,N] = x[M,K] · W[N,K]^T (+ bias[N]). y must not alias x.
   * Accumulation is f32 in k order per output (the scalar twin accumulates the same way in f64;
   * for quantized weights it accumulates in f32 like the kernel and equals the plain build bit for bit).
   */
  linear(y: Float32Array, x: Float32Array, w: LinearWeight, M: number, bias?: Float32Array | null): void;

  /**
   * Several linears that read the same x (q/k/v, gate/up): ys[i][M,N_i] = x[M,K] · ws[i]^T (+ biases[i]).
   * Bit for bit the separate `linear` calls (the scalar twin makes them, in order); a threaded
   * backend runs weights of one dtype and shard as one job split across its threads by their total
   * rows, instead of one job per weight. No y may overlap x or another y.
   */
  linearGroup(ys: readonly Float32Array[], x: Float32Array, ws: readonly LinearWeight[], M: number, biases?: readonly (Float32Array | null)[] | null): void;

  /**
   * RMSNorm over rows: y[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * weight[:]
   * (eps inside the sqrt, weight multiplied after normalising; weight null means 1).
   */
  rmsnorm(y: Float32Array, x: Float32Array, weight: Float32Array | null, rows: number, dim: number, eps: number): void;

  /**
   * Rotary embedding in place on x[rows, nHeads*headDim] (row stride `rowStride`, ≥ nHeads*headDim).
   * cos/sin: [maxPos, headDim/2] tables; row r rotates by the angles of position positions[r].
   * 'half': pairs (i, i+headDim/2) (NeoX / HF-Llama rotate_half); 'interleaved': pairs (2i, 2i+1).
   */
  rope(x: Float32Array, rows: number, nHeads: number, headDim: number, rowStride: number,
       cos: Float32Array, sin: Float32Array, positions: Int32Array, layout: RopeLayout): void;

  /**
   * Scaled dot-product attention with grouped KV heads.
   *   out[Tq, nHeads*headDim], q[Tq, nHeads*headDim], k/v[Tk, nKvHeads*headDim]
   * Query head h reads KV head floor(h / (nHeads/nKvHeads)).
   * Visibility of key j to query i: if qPos and kPos are given, kPos[j] <= qPos[i] (causal over
   * original positions, so any subset of tokens works); if `allowed` is given ([Tq,Tk], 1 = visible)
   * it must also be 1; with neither, every key is visible.
   * A query row that sees no key gets an all-zero output (spec/numerics.md), never NaN.
   * `kvDtype` (default f32) says how k and v are stored: bf16 / f16 caches pass Uint16Array bits,
   * which the kernel widens exactly as it reads them, so the result is, bit for bit, the f32 call on
   * the widened K and V (spec/numerics.md, KV cache dtype).
   */
  attention(out: Float32Array, q: Float32Array, k: KvBuffer, v: KvBuffer,
            Tq: number, Tk: number, nHeads: number, nKvHeads: number, headDim: number, scale: number,
            qPos: Int32Array | null, kPos: Int32Array | null, allowed: Uint8Array | null, kvDtype?: KvDType): void;

  /** Row-wise softmax of x[rows,n], max-subtracted. A row of all -Inf gives zeros. */
  softmax(y: Float32Array, x: Float32Array, rows: number, n: number): void;
  /** Row-wise log-softmax of x[rows,n]. A row of all -Inf gives all -Inf. */
  logSoftmax(y: Float32Array, x: Float32Array, rows: number, n: number): void;

  /** y = silu(gate) * up, elementwise over n (the gated-MLP middle). */
  siluMul(y: Float32Array, gate: Float32Array, up: Float32Array, n: number): void;
  /** y = silu(x) = x * sigmoid(x). */
  silu(y: Float32Array, x: Float32Array, n: number): void;
  /** y = 1 / (1 + exp(-x)). */
  sigmoid(y: Float32Array, x: Float32Array, n: number): void;
  /** y = a + b. */
  add(y: Float32Array, a: Float32Array, b: Float32Array, n: number): void;
  /** y += alpha * x. */
  axpy(y: Float32Array, alpha: number, x: Float32Array, n: number): void;
  /** y = alpha * x. */
  scale(y: Float32Array, alpha: number, x: Float32Array, n: number): void;

  /** Index of the largest element of x[0..n); ties go to the lower index; -1 if any element is NaN or n = 0. */
  argmax(x: Float32Array, n: number): number;

  /** bf16 bits → f32 (exact: bits << 16). */
  bf16ToF32(y: Float32Array, x: Uint16Array, n: number): void;
  /** IEEE half bits → f32 (exact, subnormals and Inf/NaN included). */
  f16ToF32(y: Float32Array, x: Uint16Array, n: number): void;
  /** f32 → bf16 bits, round to nearest even (NaN stays NaN): a bf16 KV cache's writes. */
  f32ToBf16(y: Uint16Array, x: Float32Array, n: number): void;
  /** f32 → IEEE half bits, round to nearest even: subnormal halves kept, |x| ≥ 65520 → ±Inf, NaN stays NaN. */
  f32ToF16(y: Uint16Array, x: Float32Array, n: number): void;
}
