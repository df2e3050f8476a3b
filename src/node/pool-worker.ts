/**
 * Node glue for the WASM kernel thread pool (src/runtime/pool.ts): a WorkerFactory on
 * worker_threads, and createNodeWasmRuntime, which passes it to createWasmRuntime.
 */
import { optionsArgument } from '../errors.js';
import { Worker } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { availableParallelism } from 'node:os';
import { defaultThreads, type PoolWorkerHandle, type PoolWorkerInit, type WorkerFactory } from '../runtime/pool.js';
import { isLinearTile, LINEAR_TILES } from '../kernels/linear-tiles.js';
import { PonderError } from '../errors.js';
import { createWasmRuntime, type WasmRuntime, type WasmRuntimeOptions } from '../kernels/wasm.js';

// Under tsx the sources run as .ts; the built package runs .js. The worker entry sits next to this file.
const entryExt = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const workerEntry = new URL(`./pool-worker-main${entryExt}`, import.meta.url);

export const nodeWorkerFactory: WorkerFactory = (init: PoolWorkerInit): PoolWorkerHandle => {
  const worker = entryExt === '.ts'
    // Running from sources under tsx: Node 20 does not apply the --import loader to a worker's
    // entry file, so a small bootstrap registers tsx in the worker first.
    ? new Worker(`import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(workerEntry.href)}); });`, { eval: true, workerData: init })
    : new Worker(workerEntry, { workerData: init });
  worker.unref(); // an idle pool must not keep the process alive
  const ready = new Promise<void>((resolve, reject) => {
    worker.once('message', (m) => (m === 'ready' ? resolve() : reject(new Error(String(m)))));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`kernel worker exited with code ${code} before it was ready`)));
  });
  return {
    ready,
    async terminate() { await worker.terminate(); },
  };
};

/** The default kernel thread count here: the cores this process may use, at most 8 (defaultThreads). */
export function defaultThreadCount(): number {
  return defaultThreads(availableParallelism());
}

/**
 * Lets Node 20 run the relaxed-SIMD build (Node 22+ needs nothing). Must be called before the
 * first relaxed runtime is created; NODE_OPTIONS cannot carry this flag.
 */
export function enableRelaxedSimd(): void {
  setFlagsFromString('--experimental-wasm-relaxed-simd');
}

/**
 * createWasmRuntime with the worker_threads factory, so `threads > 1` works in Node. Without a
 * `linearTile` option, the environment variable PONDER_LINEAR_TILE names one (else the fastest on
 * this host is measured).
 */
export async function createNodeWasmRuntime(runtimeOptions?: WasmRuntimeOptions): Promise<WasmRuntime> {
  const options = optionsArgument(runtimeOptions, 'createNodeWasmRuntime options');
  if (options.relaxed) enableRelaxedSimd();
  const envTile = process.env.PONDER_LINEAR_TILE;
  if (options.linearTile === undefined && envTile !== undefined && envTile !== '' && envTile !== 'auto' && !isLinearTile(envTile)) {
    throw new PonderError('ARG_INVALID', `PONDER_LINEAR_TILE=${envTile} is not a linear tile`, { field: 'linearTile', hint: `use one of ${LINEAR_TILES.join(', ')}, or auto (measure the fastest), or unset it` });
  }
  const linearTile = options.linearTile ?? (isLinearTile(envTile) ? envTile : undefined);
  return createWasmRuntime({ workerFactory: nodeWorkerFactory, ...options, linearTile });
}
