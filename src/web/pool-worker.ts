/**
 * One kernel thread of the WASM thread pool on a web-standard Worker (browsers, Deno, Bun), started
 * by webWorkerFactory: instantiates the kernel module on every shared memory shard, says ready, then serves
 * jobs (blocking this thread, as a pool worker does) until the pool stops it.
 */
import { instantiateKernels } from '../kernels/wasm.js';
import { runPoolWorker, type PoolWorkerInit } from '../runtime/pool.js';

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent<PoolWorkerInit>) => void) | null; postMessage(m: unknown): void; close(): void };
scope.onmessage = async (event: MessageEvent<PoolWorkerInit>) => {
  const init = event.data;
  const instances = await Promise.all(init.memories.map((memory) => instantiateKernels(init.module, memory)));
  scope.postMessage('ready');
  runPoolWorker(init, instances, () => performance.now());
  scope.close();
};
