import type { Kernels } from '../kernels/kernels.js';
import { scalarKernels } from '../kernels/scalar.js';
import { HeapArena, type Arena } from './arena.js';

/** A kernel implementation plus the memory its buffers must come from. */
export interface Runtime {
  readonly kernels: Kernels;
  readonly arena: Arena;
}

/** The plain-TypeScript runtime: slow, dependency-free, the reference every SIMD kernel is tested against. */
export function createScalarRuntime(): Runtime {
  return { kernels: scalarKernels, arena: new HeapArena() };
}
