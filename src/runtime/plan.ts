/**
 * A model's memory plan: every byte it will allocate, by purpose, computed from its config before
 * any binding, so a model that cannot fit fails early with a message naming the parts instead of
 * failing halfway through loading.
 */
import { PonderError } from '../errors.js';
import { WASM_MAX_BYTES } from './wasm-arena.js';

export interface MemoryPlan {
  readonly weights: number;     // bound (packed) weights, bytes
  readonly kvCache: number;     // KV cache at the planned context length, bytes
  readonly activations: number; // activation and scratch buffers, bytes
  readonly total: number;       // weights + kvCache + activations
}

/**
 * Headroom kept below the wasm32 4 GiB ceiling for what the plan does not count: the module's
 * static data, per-call kernel scratch (attention scores, bf16 widening), per-thread scratch,
 * and 16-byte alignment padding of every allocation.
 */
export const MEMORY_PLAN_RESERVE_BYTES = 64 * 1024 * 1024;
/** The largest plan total accepted: 4 GiB minus the reserve. */
export const MEMORY_PLAN_LIMIT_BYTES = WASM_MAX_BYTES - MEMORY_PLAN_RESERVE_BYTES;

export function memoryPlan(weights: number, kvCache: number, activations: number): MemoryPlan {
  return { weights, kvCache, activations, total: weights + kvCache + activations };
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** Throws MEM_MODEL_TOO_LARGE, naming each part, if `plan` does not fit the WASM memory. */
export function checkMemoryPlan(plan: MemoryPlan, label: string): void {
  for (const [part, bytes] of Object.entries(plan)) {
    if (!Number.isFinite(bytes) || bytes < 0) {
      throw new PonderError('MEM_BAD_SIZE', `${label}: memory plan part ${part} is ${bytes} bytes`, { field: part, hint: 'this is a bug in the model\'s plan: every part must be a non-negative byte count' });
    }
  }
  const total = plan.weights + plan.kvCache + plan.activations;
  if (total > MEMORY_PLAN_LIMIT_BYTES) {
    throw new PonderError('MEM_MODEL_TOO_LARGE',
      `${label} needs ${total} bytes (${mib(total)}) = weights ${mib(plan.weights)} + KV cache ${mib(plan.kvCache)} + activations ${mib(plan.activations)}, ` +
      `over the ${mib(MEMORY_PLAN_LIMIT_BYTES)} the WASM runtime can hold (4 GiB wasm32 memory minus a ${mib(MEMORY_PLAN_RESERVE_BYTES)} reserve)`,
      { hint: 'use bf16 weights, a shorter maximum context (smaller KV cache), a smaller batch, or a smaller model' });
  }
}
