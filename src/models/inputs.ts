/**
 * What every family does the same way with its inputs: the token embedding (kept in its file
 * dtype, rows widened on lookup) and the checks on token ids and positions, each condition with
 * one error code in every family and in the API (spec/errors.md):
 *   GEN_TOKEN_ID  a token id that is not an integer in [0, vocab_size)
 *   GEN_CONTEXT   positions beyond the model's context (block_size / max_position_embeddings)
 *   CACHE_FULL    a call that does not fit the session's KV cache (its capacity, below the context)
 */
import { PonderError } from '../errors.js';
import type { TensorArray } from '../format/safetensors.js';
import { bf16BitsToF32, f16BitsToF32 } from '../kernels/scalar.js';
import type { QuantizedSource } from '../kernels/kernels.js';
import { dequantizeRow } from '../kernels/quant.js';

export type FloatDType = 'F32' | 'BF16' | 'F16';

/** out[at, at + n) = `n` values of a float tensor as stored (F32, or BF16/F16 bits) from element `begin`, widened exactly. */
export function widenFloats(dtype: FloatDType, data: TensorArray, begin: number, n: number, out: Float32Array, at = 0): void {
  if (dtype === 'F32') { out.set((data as Float32Array).subarray(begin, begin + n), at); return; }
  const bits = data as Uint16Array, widen = dtype === 'BF16' ? bf16BitsToF32 : f16BitsToF32;
  for (let i = 0; i < n; i++) out[at + i] = widen(bits[begin + i]);
}

/** A token embedding [V, width]: rows looked up as f32. */
export interface Embedding {
  readonly vocabSize: number;
  readonly width: number;
  /** out[at, at + width) = row `id` in f32 (ids checked by the caller: checkTokenIds). */
  row(id: number, out: Float32Array, at?: number): void;
  /** out[t·width, (t+1)·width) = row ids[t] for every t. */
  rows(ids: ArrayLike<number>, out: Float32Array): void;
}

/**
 * A token embedding [V, width] kept in its stored dtype outside the arena: only the rows a call
 * looks up are widened (a widened bf16 table would cost 2·V·width more bytes of wasm32 memory).
 */
export class EmbeddingTable implements Embedding {
  constructor(readonly dtype: FloatDType, readonly data: TensorArray, readonly vocabSize: number, readonly width: number) {}

  /** out[at, at + width) = row `id` in f32 (ids checked by the caller: checkTokenIds). */
  row(id: number, out: Float32Array, at = 0): void {
    widenFloats(this.dtype, this.data, id * this.width, this.width, out, at);
  }

  /** out[t·width, (t+1)·width) = row ids[t] for every t. */
  rows(ids: ArrayLike<number>, out: Float32Array): void {
    for (let t = 0; t < ids.length; t++) this.row(ids[t], out, t * this.width);
  }
}

/** An MLX-quantized embedding (QuantizedEmbedding) kept as codes: rows are dequantized on lookup, w = scale·code + bias in f32. */
export class QuantizedEmbeddingTable implements Embedding {
  constructor(readonly source: QuantizedSource, readonly vocabSize: number, readonly width: number) {}

  row(id: number, out: Float32Array, at = 0): void {
    dequantizeRow(this.source, this.width, id, out, at);
  }

  rows(ids: ArrayLike<number>, out: Float32Array): void {
    for (let t = 0; t < ids.length; t++) this.row(ids[t], out, t * this.width);
  }
}

/** GEN_TOKEN_ID unless every id is an integer in [0, vocabSize). `what` names the argument in the message (`ids`, `prompt`, `ids[1]`). */
export function checkTokenIds(ids: ArrayLike<number>, vocabSize: number, what = 'ids'): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new PonderError('GEN_TOKEN_ID', `${what}[${i}] = ${String(id)} is not a token id of this model (integers in [0, ${vocabSize}))`, { field: what, hint: 'the ids do not come from this model\'s tokenizer' });
    }
  }
}

/** GEN_CONTEXT when `positions` positions (a sequence, a session, a cache) exceed the model's context. `limit` names the config field. */
export function checkContext(positions: number, contextLength: number, what: string, limit: string): void {
  if (positions > contextLength) {
    throw new PonderError('GEN_CONTEXT', `${what} needs ${positions} positions, beyond the model's context of ${contextLength} (${limit})`, { field: limit, hint: `the model cannot attend beyond ${limit} positions: use at most ${contextLength}` });
  }
}

/** CACHE_FULL: a call of `adding` tokens on a session that holds `held` of `capacity`. */
export function cacheFull(held: number, adding: number, capacity: number): PonderError {
  return new PonderError('CACHE_FULL', `the session's KV cache holds ${held} of ${capacity} tokens; ${adding} more do not fit`, { hint: 'create the session (or generation) with a larger capacity' });
}
