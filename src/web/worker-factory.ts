/**
 * The WASM thread pool (src/runtime/pool.ts) on the web-standard Worker, which browsers, Deno and
 * Bun all have: each kernel thread is a module worker running src/web/pool-worker.ts on the shared
 * memory. (Node uses worker_threads instead: src/node/pool-worker.ts.)
 */
import type { PoolWorkerHandle, PoolWorkerInit, WorkerFactory } from '../runtime/pool.js';

/** `entry` is the URL of the built src/web/pool-worker.js (or the page's bundled copy of it). */
export function webWorkerFactory(entry: URL): WorkerFactory {
  return (init: PoolWorkerInit): PoolWorkerHandle => {
    const worker = new Worker(entry, { type: 'module' });
    // Bun: an idle pool must not keep the process alive (browsers have no unref, nor need it).
    (worker as Worker & { unref?(): void }).unref?.();
    const ready = new Promise<void>((resolve, reject) => {
      worker.onmessage = (m) => (m.data === 'ready' ? resolve() : reject(new Error(String(m.data))));
      worker.onerror = (e) => { e.preventDefault?.(); reject(new Error(`kernel worker failed to start: ${e.message}`)); };
    });
    worker.postMessage(init);
    return { ready, async terminate() { worker.terminate(); } };
  };
}
