/**
 * End-to-end peer benchmark against llama.cpp on the decoder shapes of one Ouro-1.4B loop (issue 16):
 * prompt processing (pp) and decode (tg) tokens/s at 1 and 2 threads, in one run, for
 *   - ponder: Ouro-1.4B shapes (scripts/ouro-synthetic.ts, random bf16 weights) at fixed(1), one loop,
 *     through the public API (trace.prefillMs / decodeMs), WASM SIMD kernels, worker_threads pool;
 *   - llama.cpp native through node-llama-cpp (prebuilt CPU binary, no GPU layers);
 *   - llama.cpp in WebAssembly through wllama, in Debian's headless Chromium (the browser tests' one),
 *     served cross-origin isolated so its multi-thread build can run;
 * the latter two on the same shapes written as a Llama GGUF (bench/ouro-gguf.ts) in BF16 (ponder's
 * bytes per weight), Q8_0 and Q4_0; ponder also runs the same checkpoint quantized by `ponder quantize`
 * (MLX layout, group size 64) for each of Q8_0 / Q4_0 in --types, with int16 activations (opt-in
 * in the runtime): rows q8·i16 / q4·i16; and the 4-bit one with int8 activations on the relaxed
 * build's byte dot (its fastest 4-bit mode): row q4·i8 relaxed.
 * Not CI: it writes ~8 GB of random checkpoints (under --dir, never committed) and runs for minutes.
 *
 *   node --import tsx bench/llama.bench.ts [--dir /work/big/ouro-peer] [--threads 1,2] [--prompt 64]
 *        [--tokens 32] [--reps 3] [--types BF16,Q8_0,Q4_0] [--no-ponder] [--no-native] [--no-wllama] [--json]
 *        [--layers 24]  (fewer only to try the machinery quickly, with a --dir of its own)
 *
 * Each figure is the median of --reps runs after one warm-up run; every engine gets the same prompt
 * length and number of generated tokens (greedy; end-of-sequence ignored). Prints the CPU, the
 * machine load before and after, and every engine's version.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { existingOuroLoopGguf, writeOuroLoopGguf, OURO_LOOP } from './ouro-gguf.js';
import { describeCpu, hostCpu } from './cpu.js';
import type { GgmlType } from './gguf.js';
import { quantizeModel } from '../src/node/quantize.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/work/big/ouro-peer' },
    threads: { type: 'string', default: '1,2' },
    prompt: { type: 'string', default: '64' },
    tokens: { type: 'string', default: '32' },
    reps: { type: 'string', default: '3' },
    types: { type: 'string', default: 'BF16,Q8_0,Q4_0' },
    layers: { type: 'string', default: String(OURO_LOOP.layers) }, // fewer only to try the machinery (use a separate --dir)
    'no-ponder': { type: 'boolean', default: false },
    'no-native': { type: 'boolean', default: false },
    'no-wllama': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const dir = resolve(values.dir!);
const threadCounts = values.threads!.split(',').map(Number);
const P = Number(values.prompt), N = Number(values.tokens), reps = Number(values.reps);
const types = values.types!.split(',') as Exclude<GgmlType, 'F32'>[];
const layers = Number(values.layers);
const log = (line: string): void => { if (!values.json) console.log(line); };
// wllama takes the model as Blobs, and Chromium failed to fetch a 1.9 GB one: files are split in
// 512 MiB shards (what wllama's own docs advise), which llama.cpp loads natively too.
const SPLIT_BYTES = 512 * 1024 * 1024;

export interface PeerRow {
  engine: 'ponder' | 'llama.cpp native' | 'llama.cpp wasm (wllama)';
  weights: string; // bf16 (ponder), BF16 / Q8_0 / Q4_0 (GGUF)
  threads: number;
  promptTokens: number;
  newTokens: number;
  ppTokensPerSecond: number;
  tgTokensPerSecond: number;
  note?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

// A fixed pseudo-random prompt of ids past the special and byte tokens (the weights are random).
const promptIds = Array.from({ length: P }, (_, i) => 259 + ((i * 7919 + 13) % (OURO_LOOP.vocab - 259)));

// ---- files

async function prepareFiles(): Promise<{ ouroDir: string; quantDirs: [string, string][]; gguf: Record<string, string[]> }> {
  const ouroDir = join(dir, 'ouro-1.4b-synthetic');
  if (!values['no-ponder'] && !existsSync(join(ouroDir, 'config.json'))) {
    log(`writing ponder's Ouro-1.4B checkpoint to ${ouroDir} (scripts/ouro-synthetic.ts)…`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/ouro-synthetic.ts'), ouroDir, '--layers', String(layers)], { stdio: values.json ? 'ignore' : 'inherit', cwd: ROOT });
    if (r.status !== 0) throw new Error('scripts/ouro-synthetic.ts failed');
  }
  // ponder's quantized rows: the same checkpoint through `ponder quantize` (written once, next to it)
  const quantDirs: [label: string, dir: string][] = [];
  if (!values['no-ponder']) {
    for (const [type, bits] of [['Q8_0', 8], ['Q4_0', 4]] as const) {
      if (!types.includes(type)) continue;
      const out = `${ouroDir}-q${bits}`;
      if (!existsSync(join(out, 'config.json'))) {
        log(`writing ponder's ${bits}-bit checkpoint to ${out} (ponder quantize --bits ${bits} --group-size 64)…`);
        await quantizeModel({ input: ouroDir, out, bits, groupSize: 64 });
      }
      quantDirs.push([`q${bits}·i16`, out]);
      if (bits === 4) quantDirs.push(['q4·i8 relaxed', out]); // int8 activations on the relaxed build's byte dot
    }
  }
  const gguf: Record<string, string[]> = {};
  if (!values['no-native'] || !values['no-wllama']) {
    for (const type of types) {
      let paths = existingOuroLoopGguf(dir, type, SPLIT_BYTES);
      if (!paths) {
        log(`writing ${type} GGUF to ${dir}…`);
        paths = writeOuroLoopGguf(dir, type, { splitBytes: SPLIT_BYTES, layers });
      }
      gguf[type] = paths;
    }
  }
  return { ouroDir, quantDirs, gguf };
}

// ---- ponder

/** ponder's row for one checkpoint: `weights` bf16, or q8·i16 / q4·i16 (a quantized folder, int16 activations), or q4·i8 relaxed (int8 activations, relaxed build). */
async function runPonder(ouroDir: string, threads: number, weights = 'bf16'): Promise<PeerRow> {
  const { createNodeWasmRuntime, loadModelDir, fixed } = await import('../src/node/index.js');
  const int8 = weights === 'q4·i8 relaxed';
  const runtime = await createNodeWasmRuntime({ threads, quantActivations: weights === 'bf16' ? undefined : int8 ? 'int8' : 'int16', relaxed: int8 });
  try {
    const model = await loadModelDir(ouroDir, { runtime, tokenizer: false });
    const once = async (prompt: number[], n: number) => (await model.generate(prompt, { maxNewTokens: n, policy: fixed(1), stopIds: [] }).result()).trace;
    await once(promptIds, Math.min(N, 4)); // warm-up: tier-up of the kernels, first-touch of the cache
    const pp: number[] = [], tg: number[] = [];
    for (let r = 0; r < reps; r++) {
      const trace = await once(promptIds, N);
      pp.push((P * 1000) / trace.prefillMs!);
      tg.push((N * 1000) / trace.decodeMs);
    }
    return { engine: 'ponder', weights, threads, promptTokens: P, newTokens: N, ppTokensPerSecond: median(pp), tgTokensPerSecond: median(tg), note: `Ouro fixed(1), ${runtime.kernels.name}, tile ${runtime.linearTile}` };
  } finally {
    await runtime.dispose();
  }
}

// ---- llama.cpp native (node-llama-cpp)

type NodeLlama = typeof import('node-llama-cpp');
let nodeLlama: { module: NodeLlama; llama: Awaited<ReturnType<NodeLlama['getLlama']>> } | null = null;

async function runNative(type: string, paths: string[], threads: number): Promise<PeerRow> {
  if (!nodeLlama) {
    const module = await import('node-llama-cpp');
    nodeLlama = { module, llama: await module.getLlama({ gpu: false, build: 'never', logLevel: module.LlamaLogLevel.error, maxThreads: 0 }) };
  }
  const model = await nodeLlama.llama.loadModel({ modelPath: paths[0], gpuLayers: 0 });
  try {
    const context = await model.createContext({ contextSize: P + N + 16, batchSize: P, threads: { ideal: threads, min: threads } });
    const sequence = context.getSequence();
    const tokens = promptIds as unknown as import('node-llama-cpp').Token[]; // ids of our own vocabulary
    const once = async (n: number): Promise<[number, number]> => {
      await sequence.clearHistory();
      const t0 = performance.now();
      await sequence.evaluateWithoutGeneratingNewTokens(tokens);
      const t1 = performance.now();
      let generated = 0;
      // greedy; the generator keeps going past an end-of-sequence token until we stop it
      for await (const _ of sequence.evaluate([tokens[P - 1]], { temperature: 0 })) if (++generated >= n) break;
      return [t1 - t0, performance.now() - t1];
    };
    await once(Math.min(N, 4));
    const pp: number[] = [], tg: number[] = [];
    for (let r = 0; r < reps; r++) {
      const [ppMs, tgMs] = await once(N);
      pp.push((P * 1000) / ppMs);
      tg.push((N * 1000) / tgMs);
    }
    await context.dispose();
    const release = nodeLlama.llama.llamaCppRelease;
    return { engine: 'llama.cpp native', weights: type, threads, promptTokens: P, newTokens: N, ppTokensPerSecond: median(pp), tgTokensPerSecond: median(tg),
      note: `llama.cpp ${release.release} (${nodeLlama.llama.buildType} CPU binary)` };
  } finally {
    await model.dispose();
  }
}

async function disposeNative(): Promise<void> {
  if (nodeLlama) await nodeLlama.llama.dispose();
}

// ---- llama.cpp in WebAssembly (wllama in headless Chromium)

const WLLAMA_PAGE = `<!doctype html><meta charset="utf-8"><title>wllama bench</title><script type="module">
import { Wllama } from '/wllama/index.js';
window.runWllama = async ({ urls, threads, prompt, n, reps, nCtx, nBatch }) => {
  const wllama = new Wllama({ default: '/wllama/wasm/wllama.wasm' }, { suppressNativeLog: true, allowOffline: false });
  // fetched into Blobs here (loadModelFromUrl would copy them into the origin's storage, whose quota a 1.5 GB file exceeds)
  const blobs = [];
  for (const url of urls) blobs.push(await (await fetch(url)).blob());
  await wllama.loadModel(blobs, { n_ctx: nCtx, n_batch: nBatch, n_ubatch: nBatch, n_threads: threads, n_gpu_layers: 0 });
  const once = async (max) => (await wllama.createCompletion({ prompt, max_tokens: max, temp: 0, ignore_eos: true, cache_prompt: false })).timings;
  await once(Math.min(n, 4));
  const runs = [];
  for (let r = 0; r < reps; r++) runs.push(await once(n));
  const out = { runs, multithread: wllama.isMultithread(), threads: wllama.getNumThreads(), libllama: Wllama.getLibllamaVersion?.() ?? '' };
  await wllama.exit();
  return out;
};
window.ready = true;
</script>`;

interface WllamaTimings { prompt_n: number; prompt_ms: number; predicted_n: number; predicted_ms: number }
interface WllamaResult { runs: WllamaTimings[]; multithread: boolean; threads: number; libllama: string }

/** A static server with the COOP/COEP headers a cross-origin isolated page needs (SharedArrayBuffer). */
function startServer(files: Map<string, string>): Promise<{ url: string; server: Server }> {
  const wllamaDir = join(dirname(require.resolve('@wllama/wllama/package.json')), 'esm');
  const server = createServer((req, res) => {
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    let file: string | undefined;
    if (path === '/') { res.setHeader('Content-Type', 'text/html'); res.end(WLLAMA_PAGE); return; }
    if (path.startsWith('/wllama/')) file = join(wllamaDir, path.slice('/wllama/'.length).replace(/\.\.+/g, ''));
    else if (path.startsWith('/models/')) file = files.get(path.slice('/models/'.length));
    if (!file || !existsSync(file) || !statSync(file).isFile()) { res.statusCode = 404; res.end(); return; }
    const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
    res.setHeader('Content-Type', type);
    res.setHeader('Content-Length', statSync(file).size);
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}/`, server })));
}

async function runWllama(gguf: Record<string, string[]>): Promise<PeerRow[]> {
  const { chromium } = await import('playwright-core');
  const files = new Map<string, string>();
  for (const paths of Object.values(gguf)) for (const p of paths) files.set(basename(p), p);
  const { url, server } = await startServer(files);
  const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  // A profile on disk: without one Chromium keeps Blobs in memory and cannot fetch a 2.9 GB model.
  const profile = mkdtempSync(join(os.tmpdir(), 'ponder-wllama-'));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: chromiumPath, args: ['--headless', '--no-sandbox', '--disable-gpu', '--js-flags=--max-old-space-size=8192'] });
  const rows: PeerRow[] = [];
  try {
    for (const threads of threadCounts) {
      for (const type of types) {
        const page = await browser.newPage();
        try {
          await page.goto(url);
          await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true);
          if (!(await page.evaluate(() => crossOriginIsolated))) throw new Error('the wllama page is not cross-origin isolated');
          const prompt = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(Math.ceil(P / 36)).slice(0, P); // one byte token per character
          const result = await page.evaluate((args) => (window as unknown as { runWllama(a: unknown): Promise<unknown> }).runWllama(args),
            { urls: gguf[type].map((p) => `${url}models/${basename(p)}`), threads, prompt, n: N, reps, nCtx: P + N + 16, nBatch: P }) as WllamaResult;
          rows.push({
            engine: 'llama.cpp wasm (wllama)', weights: type, threads, promptTokens: result.runs[0].prompt_n, newTokens: result.runs[0].predicted_n,
            ppTokensPerSecond: median(result.runs.map((t) => (t.prompt_n * 1000) / t.prompt_ms)),
            tgTokensPerSecond: median(result.runs.map((t) => (t.predicted_n * 1000) / t.predicted_ms)),
            note: `${result.multithread ? 'multi-thread' : 'single-thread'} build, ${result.threads} threads${result.libllama ? `, libllama ${result.libllama}` : ''}`,
          });
        } catch (e) {
          rows.push({ engine: 'llama.cpp wasm (wllama)', weights: type, threads, promptTokens: P, newTokens: N, ppTokensPerSecond: NaN, tgTokensPerSecond: NaN, note: `failed: ${(e as Error).message.split('\n')[0]}` });
        } finally {
          await page.close();
        }
        log(line(rows[rows.length - 1]));
      }
    }
  } finally {
    await browser.close();
    server.close();
    rmSync(profile, { recursive: true, force: true });
  }
  return rows;
}

// ---- report

function line(r: PeerRow): string {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '—').padStart(10);
  return `${r.engine.padEnd(26)}${r.weights.padEnd(14)}${String(r.threads).padStart(4)}${f(r.ppTokensPerSecond)}${f(r.tgTokensPerSecond)}  ${r.note ?? ''}`;
}

/** A package's version from its package.json (found from its entry point: not every package exports it). */
function versionOf(pkg: string): string {
  try {
    let dir = dirname(require.resolve(pkg));
    for (;;) {
      const file = join(dir, 'package.json');
      if (existsSync(file)) {
        const json = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version: string };
        if (json.name === pkg) return json.version;
      }
      const up = dirname(dir);
      if (up === dir) return 'unknown version';
      dir = up;
    }
  } catch { return 'not installed'; }
}

/**
 * The issue-16 bars: ponder bf16 against the same bytes per weight (BF16) in the same run. Where a
 * peer's BF16 row has no figure (wllama cannot hold the 2.9 GB BF16 model in its 4 GiB wasm32
 * memory), the bar is also checked against its Q8_0 row: half the bytes per weight, so a pass there
 * is a pass with margin.
 */
function bars(rows: PeerRow[]): string[] {
  const out: string[] = [];
  const figure = (r: PeerRow | undefined): r is PeerRow => r !== undefined && Number.isFinite(r.tgTokensPerSecond);
  for (const t of threadCounts) {
    const ponder = rows.find((r) => r.engine === 'ponder' && r.weights === 'bf16' && r.threads === t);
    if (!ponder) continue;
    const peer = (engine: PeerRow['engine']): PeerRow | undefined => {
      const bf16 = rows.find((r) => r.engine === engine && r.weights === 'BF16' && r.threads === t);
      return figure(bf16) ? bf16 : rows.find((r) => r.engine === engine && r.weights === 'Q8_0' && r.threads === t && figure(r));
    };
    const check = (what: string, ratio: number, target: number) => out.push(`${Number.isFinite(ratio) ? (ratio >= target ? 'PASS' : 'FAIL') : 'n/a '} ${what} ≥ ${target}×, ${t} thread${t > 1 ? 's' : ''}: ${Number.isFinite(ratio) ? ratio.toFixed(3) + '×' : 'no figure'}`);
    const wasm = peer('llama.cpp wasm (wllama)'), native = peer('llama.cpp native');
    if (wasm) {
      check(`decode vs wllama ${wasm.weights}`, ponder.tgTokensPerSecond / wasm.tgTokensPerSecond, 1.3);
      check(`prompt processing vs wllama ${wasm.weights}`, ponder.ppTokensPerSecond / wasm.ppTokensPerSecond, 1.2);
    }
    if (native) check(`decode vs native llama.cpp ${native.weights}`, ponder.tgTokensPerSecond / native.tgTokensPerSecond, 0.9);
  }
  return out;
}

const cpu = hostCpu();
const loadBefore = os.loadavg();
log(`# llama.cpp peer benchmark, ${new Date().toISOString()}`);
log(`CPU: ${describeCpu(cpu)} × ${os.cpus().length}; Node ${process.version}; load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
log(`versions: node-llama-cpp ${versionOf('node-llama-cpp')}, @wllama/wllama ${versionOf('@wllama/wllama')}, Chromium at ${process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'}`);
log(`shapes: ${layers} layers, hidden ${OURO_LOOP.hidden}, ${OURO_LOOP.heads} heads × ${OURO_LOOP.headDim}, FFN ${OURO_LOOP.ffn}, vocab ${OURO_LOOP.vocab}; prompt ${P} tokens, ${N} generated, median of ${reps}`);
const { ouroDir, quantDirs, gguf } = await prepareFiles();
log(`\n${'engine'.padEnd(26)}${'weights'.padEnd(14)}${'thr'.padStart(4)}${'pp tok/s'.padStart(10)}${'tg tok/s'.padStart(10)}`);
const rows: PeerRow[] = [];
for (const threads of threadCounts) {
  if (!values['no-ponder']) {
    rows.push(await runPonder(ouroDir, threads)); log(line(rows[rows.length - 1]));
    for (const [label, quantDir] of quantDirs) { rows.push(await runPonder(quantDir, threads, label)); log(line(rows[rows.length - 1])); }
  }
  if (!values['no-native']) {
    for (const type of types) {
      try { rows.push(await runNative(type, gguf[type], threads)); }
      catch (e) { rows.push({ engine: 'llama.cpp native', weights: type, threads, promptTokens: P, newTokens: N, ppTokensPerSecond: NaN, tgTokensPerSecond: NaN, note: `failed: ${(e as Error).message.split('\n')[0]}` }); }
      log(line(rows[rows.length - 1]));
    }
  }
}
if (!values['no-wllama']) rows.push(...await runWllama(gguf));
const loadAfter = os.loadavg();
if (values.json) {
  console.log(JSON.stringify({ cpu: describeCpu(cpu), loadBefore, loadAfter, versions: { 'node-llama-cpp': versionOf('node-llama-cpp'), '@wllama/wllama': versionOf('@wllama/wllama'), node: process.version }, rows, bars: bars(rows) }, null, 2));
} else {
  log(`\nload average after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
  log(`bars (issue 16), ponder bf16 against BF16 GGUF in this run:\n${bars(rows).map((b) => `  ${b}`).join('\n')}`);
}
await disposeNative();
