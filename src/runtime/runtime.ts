import type { Kernels } from '../kernels/kernels.js';
import { scalarKernels } from '../kernels/scalar.js';
import { HeapArena, type Arena } from './arena.js';

/** A kernel implementation plus the memory its buffers must come from. */
export interface Runtime {
  readonly kernels: Kernels;
  /** the home memory shard's arena (work buffers, norms, tables) */
  readonly arena: Arena;
  /**
   * Memory shards (src/runtime/plan.ts): [0] is `arena`. A model's layers and their KV caches go
   * to the shard its memory plan assigns; absent means one memory without a size limit (scalar).
   */
  readonly shardArenas?: readonly Arena[];
  /** Makes at least `count` memory shards exist (the WASM runtime: new memories with their kernel instances). */
  ensureShards?(count: number): Promise<void>;
  /** Tests: every model loaded on this runtime is split into exactly this many shards. */
  readonly forceShards?: number;
  /** kernel threads (per-thread scratch in the memory plan). Default 1. */
  readonly threads?: number;
  /** Stops the runtime's kernel threads, if it has any (the WASM runtime's pool). */
  dispose?(): Promise<void>;
}

/** The plain-TypeScript runtime: slow, dependency-free, the reference every SIMD kernel is tested against. One memory: the JS heap. */
export function createScalarRuntime(): Runtime {
  return { kernels: scalarKernels, arena: new HeapArena() };
}
