/**
 * The page's Web Worker: all model work happens here so the page stays responsive.
 * It creates the WASM runtime (shared memory: the page is cross-origin isolated), runs the golden
 * conformance suite, loads a model, or generates, and streams results back one case / one token at
 * a time. Messages are handled one after another (each awaits the previous), never interleaved;
 * only 'stop' acts at once, on the running generation.
 */
import { createWasmRuntime, type WasmRuntime } from '../../src/kernels/wasm.js';
import { createScalarRuntime, type Runtime } from '../../src/runtime/runtime.js';
import { webWorkerFactory } from '../../src/web/worker-factory.js';
import { PonderError } from '../../src/errors.js';
import { runPortableConformance, type GoldenFiles } from '../../src/conform/portable.js';
import type { FromWorker, ToWorker } from './protocol.js';
import { forgetModel, generateInWorker, loadInWorker, stopGeneration } from './generate.js';

const post = (message: FromWorker): void => (self as unknown as Worker).postMessage(message);

/** Kernel threads for the WASM thread pool: nested module workers running the bundled pool-worker.js. */
const browserWorkerFactory = webWorkerFactory(new URL('./pool-worker.js', import.meta.url));

let runtime: { threads: number; value: Promise<Runtime> } | null = null;
/**
 * The WASM SIMD runtime with `threads` kernel threads when the page is cross-origin isolated
 * (shared memory is allowed); otherwise the plain TypeScript kernels, slower and not
 * bit-identical to WASM, and the page says so. A new thread count means a new runtime (and memory),
 * so the model bound to the old one is dropped.
 */
async function getRuntime(threads = runtime?.threads ?? 1): Promise<Runtime> {
  if (runtime && runtime.threads !== threads) {
    forgetModel();
    const old = await runtime.value;
    runtime = null;
    if ('dispose' in old) await (old as WasmRuntime).dispose();
  }
  if (!runtime) {
    const value = crossOriginIsolated ? createWasmRuntime({ threads, workerFactory: browserWorkerFactory }) : Promise.resolve(createScalarRuntime());
    runtime = { threads, value };
    // A runtime that failed to start (say, its kernel threads) is not kept: the next request tries again.
    value.catch(() => { if (runtime?.value === value) runtime = null; });
  }
  return runtime.value;
}

/** Kernel calls the thread pool has split so far (0 without a pool). */
async function threadJobs(): Promise<number> {
  const r = runtime ? await runtime.value : null;
  return r && 'splitJobs' in r ? (r as WasmRuntime).splitJobs() : 0;
}

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new PonderError('IO_NOT_FOUND', `${url}: HTTP ${r.status}`, { path: url, hint: 'serve the page with `npm run serve:web`' });
  return r;
}

/** The golden cases, served by scripts/serve-web.mjs under /golden/. */
const servedGolden: GoldenFiles = {
  listCases: async () => (await (await fetchOk('/golden/index.json')).json()) as string[],
  readText: async (p) => (await fetchOk(`/golden/${p}`)).text(),
  readBytes: async (p) => new Uint8Array(await (await fetchOk(`/golden/${p}`)).arrayBuffer()),
};

let queue: Promise<void> = Promise.resolve();
self.onmessage = (event: MessageEvent<ToWorker>) => {
  if (event.data.type === 'stop') stopGeneration();
  else queue = queue.then(() => handle(event.data));
};

async function handle(message: ToWorker): Promise<void> {
  try {
    if (message.type === 'conform') {
      post({ type: 'status', text: 'running the golden conformance suite…' });
      const result = await runPortableConformance(`browser ${navigator.userAgent.match(/(Chrome|Firefox|Safari)\/[\d.]+/)?.[0] ?? navigator.userAgent}`,
        servedGolden, await getRuntime(), (r) => post({ type: 'case', result: r }));
      post({ type: 'conform-done', result, threadJobs: await threadJobs() });
    } else if (message.type === 'load') {
      await loadInWorker(message.model, await getRuntime(message.threads), post);
    } else if (message.type === 'generate') {
      await generateInWorker(message.request, post, threadJobs);
    }
  } catch (e) {
    post({ type: 'error', message: e instanceof PonderError ? `error[${e.code}]: ${e.message}${e.hint ? `\nhint: ${e.hint}` : ''}` : String((e as Error).stack ?? e) });
  }
}
