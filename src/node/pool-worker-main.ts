/**
 * Entry point of one kernel worker thread (started by nodeWorkerFactory in pool-worker.ts):
 * instantiates the kernel module on every shared memory shard, says ready, then serves jobs until stopped.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { instantiateKernels } from '../kernels/wasm.js';
import { runPoolWorker, type PoolWorkerInit } from '../runtime/pool.js';

const init = workerData as PoolWorkerInit;
const instances = await Promise.all(init.memories.map((memory) => instantiateKernels(init.module, memory)));
parentPort!.postMessage('ready');
runPoolWorker(init, instances, () => performance.now());
process.exit(0);
