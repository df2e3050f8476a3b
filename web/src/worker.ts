/**
 * The page's Web Worker: all model work happens here so the page stays responsive.
 * It creates the WASM runtime (shared memory: the page is cross-origin isolated), runs the golden
 * conformance suite, loads a model, or generates, and streams results back one case / one token at
 * a time. Messages are handled one after another (each awaits the previous), never interleaved;
 * only 'stop' acts at once, on the running generation.
 */
import { createWasmRuntime } from '../../src/kernels/wasm.js';
import { createScalarRuntime, type Runtime } from '../../src/runtime/runtime.js';
import { PonderError } from '../../src/errors.js';
import { runPortableConformance, type GoldenFiles } from '../../test/portable/suite.js';
import type { FromWorker, ToWorker } from './protocol.js';
import { generateInWorker, loadInWorker, stopGeneration } from './generate.js';

const post = (message: FromWorker): void => (self as unknown as Worker).postMessage(message);

let runtime: Promise<Runtime> | null = null;
/**
 * The WASM SIMD runtime when the page is cross-origin isolated (shared memory is allowed);
 * otherwise the plain TypeScript kernels, slower and not bit-identical to WASM, and the page says so.
 */
function getRuntime(): Promise<Runtime> {
  runtime ??= crossOriginIsolated ? createWasmRuntime() : Promise.resolve(createScalarRuntime());
  return runtime;
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
      post({ type: 'conform-done', result });
    } else if (message.type === 'load') {
      await loadInWorker(message.model, await getRuntime(), post);
    } else if (message.type === 'generate') {
      await generateInWorker(message.request, post);
    }
  } catch (e) {
    post({ type: 'error', message: e instanceof PonderError ? `error[${e.code}]: ${e.message}${e.hint ? `\nhint: ${e.hint}` : ''}` : String((e as Error).stack ?? e) });
  }
}
