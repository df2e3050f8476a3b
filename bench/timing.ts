/**
 * One timing discipline for every kernel and peer in the benchmark (perf.md §10):
 *  - warm up for at least `warmupMs` so V8 tiers the WASM up from Liftoff to TurboFan,
 *  - batch calls so that one sample lasts at least `minSampleMs` (timer resolution and the
 *    per-sample overhead of tinybench stop mattering),
 *  - report the median sample divided by the batch size: one slow sample (another process taking
 *    the core) moves a mean, not a median.
 */
import { Bench } from 'tinybench';

export interface TimingOptions {
  warmupMs: number; // ≥ 150 for V8 tier-up
  timeMs: number; // measurement budget per task
  minSampleMs: number; // batch calls until one sample lasts this long
  minSamples: number; // keep sampling past the budget until this many samples exist
}

export const FULL_TIMING: TimingOptions = { warmupMs: 200, timeMs: 1000, minSampleMs: 5, minSamples: 7 };
export const QUICK_TIMING: TimingOptions = { warmupMs: 150, timeMs: 250, minSampleMs: 5, minSamples: 5 };

export interface Timing {
  seconds: number; // median seconds per call
  callsPerSample: number;
  samples: number;
}

/** Times a synchronous call (our kernels, tfjs). */
export async function timeSync(call: () => void, options: TimingOptions): Promise<Timing> {
  const perCall = estimateSync(call);
  const reps = Math.max(1, Math.ceil(options.minSampleMs / 1000 / perCall));
  return measure(() => { for (let r = 0; r < reps; r++) call(); }, reps, options);
}

/** Times an asynchronous call (onnxruntime-web's session.run returns a promise even on wasm). */
export async function timeAsync(call: () => Promise<void>, options: TimingOptions): Promise<Timing> {
  const perCall = await estimateAsync(call);
  const reps = Math.max(1, Math.ceil(options.minSampleMs / 1000 / perCall));
  return measure(async () => { for (let r = 0; r < reps; r++) await call(); }, reps, options);
}

// A first estimate of the call's cost, taken over ~20 ms (at least 2 calls) to size the batch.
// It runs before tier-up finishes, so it overestimates the cost and batches come out a little
// short of minSampleMs at worst by the tier-up factor; the first calls double as warm-up.
const ESTIMATE_MS = 20;

function estimateSync(call: () => void): number {
  const t0 = performance.now();
  let calls = 0;
  do { call(); calls++; } while (calls < 2 || performance.now() - t0 < ESTIMATE_MS);
  return (performance.now() - t0) / 1000 / calls;
}

async function estimateAsync(call: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  let calls = 0;
  do { await call(); calls++; } while (calls < 2 || performance.now() - t0 < ESTIMATE_MS);
  return (performance.now() - t0) / 1000 / calls;
}

async function measure(sample: () => void | Promise<void>, reps: number, options: TimingOptions): Promise<Timing> {
  const bench = new Bench({
    warmupTime: options.warmupMs,
    warmupIterations: 1,
    time: options.timeMs,
    iterations: options.minSamples,
    throws: true,
  });
  bench.add('sample', sample);
  await bench.run();
  const result = bench.tasks[0].result;
  if (result.state !== 'completed') throw new Error(`benchmark task ended in state ${result.state}`);
  return { seconds: result.latency.p50 / 1000 / reps, callsPerSample: reps, samples: result.latency.samplesCount };
}
