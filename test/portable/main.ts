/**
 * The body every runtime's entry runs (test/portable/node-main.ts, test/deno/deno-main.ts,
 * test/bun/bun-main.ts): the golden conformance suite on the WASM kernels, a generation smoke
 * test, then the suite again on a 2-thread kernel pool started by the runtime's own WorkerFactory,
 * running another linear tile than the one this host chose, with every model split over 3 memory
 * shards (every tile, thread count and shard count must give the same bits).
 * Prints a human line per case, then one `RESULT {json}` line the runtime tests compare.
 */
import { createWasmRuntime } from '../../src/kernels/wasm.js';
import { LINEAR_TILES } from '../../src/kernels/linear-tiles.js';
import { defaultWasmRuntime } from '../../src/web/default-runtime.js';
import type { WorkerFactory } from '../../src/runtime/pool.js';
import { formatCase, formatTotals, runPortableConformance, type GoldenFiles } from '../../src/conform/portable.js';
import { formatSmoke, runGenerationSmoke, SMOKE_RUNS, type ModelFileReader, type SmokeResult } from './generation.js';

/** The 2-thread, 3-shard rerun of the suite: its digest must equal the one-thread, one-memory digest. */
export interface ThreadedRun { threads: number; shards: number; kernels: string; linearTile: string; passed: number; failed: number; digest: string; splitJobs: number }

export async function runPortableMain(
  runtimeName: string, golden: GoldenFiles, modelFiles: (model: string) => ModelFileReader, workerFactory: WorkerFactory,
  print: (line: string) => void,
): Promise<boolean> {
  const runtime = await createWasmRuntime();
  const conformance = await runPortableConformance(runtimeName, golden, runtime, (r) => print(formatCase(r)));
  print(formatTotals(conformance));
  const generation: SmokeResult[] = [];
  for (const run of SMOKE_RUNS) {
    const r = await runGenerationSmoke(run, modelFiles(run.model), runtime);
    print(formatSmoke(r));
    generation.push(r);
  }

  const otherTile = LINEAR_TILES[(LINEAR_TILES.indexOf(runtime.linearTile) + 1) % LINEAR_TILES.length];
  const pooled = await createWasmRuntime({ threads: 2, workerFactory, linearTile: otherTile, shards: 3 });
  let threaded: ThreadedRun;
  try {
    const s = await runPortableConformance(runtimeName, golden, pooled);
    threaded = { threads: pooled.threads, shards: pooled.shardArenas.length, kernels: s.kernels, linearTile: pooled.linearTile, passed: s.passed, failed: s.failed, digest: s.digest, splitJobs: pooled.splitJobs() };
  } finally {
    await pooled.dispose();
  }
  print(`${runtimeName} [${threaded.kernels}, tile ${threaded.linearTile}; host tile ${runtime.linearTile}; ${threaded.shards} memory shards]: ${threaded.passed} passed, ${threaded.failed} failed; tensor digest ${threaded.digest}; ${threaded.splitJobs} kernel calls split across threads`);
  // The runtime loadModel picks when given none, here (threads: one per core where a pool can run).
  const byDefault = await defaultWasmRuntime();
  const defaultRuntimeThreads = byDefault.threads;
  await byDefault.dispose();
  print(`${runtimeName}: loadModel's default runtime runs ${defaultRuntimeThreads} kernel thread(s)`);
  print('RESULT ' + JSON.stringify({ conformance, generation, threaded, defaultRuntimeThreads }));
  return conformance.failed === 0 && generation.every((g) => g.generatedIds.length > 0) && threaded.failed === 0 && threaded.digest === conformance.digest;
}
