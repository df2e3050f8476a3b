/**
 * The runtime loadModel uses when it is given none (core entry: browsers, Deno, Bun): the WASM
 * SIMD kernels on one thread per available core (navigator.hardwareConcurrency, at most 8:
 * defaultThreads), the pool on web Workers running this package's src/web/pool-worker.js.
 *
 * One thread instead where a pool cannot work or would get in the way: no Worker or no
 * hardwareConcurrency; Deno, whose live Workers keep the process running after the script ends
 * (a library must not do that behind its caller's back); or a pool that fails to start (a bundle
 * without the worker file). Results are the same bits on any thread count. In Node,
 * ponder/node's loadModel passes a worker_threads pool instead (src/node/index.ts).
 */
import { createWasmRuntime, type WasmRuntime } from '../kernels/wasm.js';
import { defaultThreads } from '../runtime/pool.js';
import { webWorkerFactory } from './worker-factory.js';

export async function defaultWasmRuntime(): Promise<WasmRuntime> {
  const g = globalThis as { navigator?: { hardwareConcurrency?: number }; Worker?: unknown; Deno?: unknown };
  const threads = typeof g.Worker === 'function' && g.Deno === undefined ? defaultThreads(g.navigator?.hardwareConcurrency) : 1;
  if (threads > 1) {
    try {
      return await createWasmRuntime({ threads, workerFactory: webWorkerFactory(new URL('./pool-worker.js', import.meta.url)) });
    } catch { /* no pool here: one thread */ }
  }
  return createWasmRuntime();
}
