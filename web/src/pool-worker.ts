/**
 * One kernel thread of the WASM thread pool in the browser (src/runtime/pool.ts), started by the
 * model worker's WorkerFactory: instantiates the kernel module on the shared memory, says ready,
 * then serves jobs (blocking this thread, as a pool worker does) until the pool stops it.
 */
import { instantiateKernels } from '../../src/kernels/wasm.js';
import { runPoolWorker, type PoolWorkerInit } from '../../src/runtime/pool.js';

self.onmessage = async (event: MessageEvent<PoolWorkerInit>) => {
  const init = event.data;
  const wasm = await instantiateKernels(init.module, init.memory);
  (self as unknown as Worker).postMessage('ready');
  runPoolWorker(init, wasm, () => performance.now());
  self.close();
};
