/**
 * Entry point of one kernel worker thread (started by nodeWorkerFactory in pool-worker.ts):
 * instantiates the kernel module on the shared memory, says ready, then serves jobs until stopped.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { instantiateKernels } from '../kernels/wasm.js';
import { runPoolWorker, type PoolWorkerInit } from '../runtime/pool.js';

const init = workerData as PoolWorkerInit;
const wasm = await instantiateKernels(init.module, init.memory);
parentPort!.postMessage('ready');
runPoolWorker(init, wasm, () => performance.now());
process.exit(0);
