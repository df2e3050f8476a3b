/**
 * One timing discipline for every kernel and peer in the benchmark (perf.md §10):
 *  - warm up for at least `warmupMs` so V8 tiers the WASM up from Liftoff to TurboFan,
 *  - batch calls so that one sample lasts at least `minSampleMs` (timer resolution and the
 *    per-sample overhead of tinybench stop mattering),
 *  - report the median sample divided by the batch size: one slow sample (another process taking
 *    the core) moves a mean, not a median;
 *  - record how many cores other processes kept busy meanwhile (Linux /proc/stat minus this
 *    process's own CPU time), and re-measure up to `retries` times while that exceeds
 *    `quietCores`, keeping the quietest attempt (optionally first waiting for a quiet window):
 *    a number taken while the box was busy says so.
 */
import { readFileSync } from 'node:fs';
import { Bench } from 'tinybench';

export interface TimingOptions {
  warmupMs: number; // ≥ 150 for V8 tier-up
  timeMs: number; // measurement budget per task
  minSampleMs: number; // batch calls until one sample lasts this long
  minSamples: number; // keep sampling past the budget until this many samples exist
  retries: number; // extra attempts while other processes use more than quietCores
  quietCores: number;
  waitQuietMs?: number; // before each attempt, wait up to this long for a quiet half-second
}

export const FULL_TIMING: TimingOptions = { warmupMs: 200, timeMs: 1000, minSampleMs: 5, minSamples: 7, retries: 2, quietCores: 0.25 };
export const QUICK_TIMING: TimingOptions = { warmupMs: 150, timeMs: 250, minSampleMs: 5, minSamples: 5, retries: 0, quietCores: 0.25 };

export interface Timing {
  seconds: number; // median seconds per call
  callsPerSample: number;
  samples: number;
  foreignCores?: number; // cores other processes kept busy during the measurement (Linux only)
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
  let quietest: Timing | null = null;
  for (let attempt = 0; attempt <= options.retries; attempt++) {
    if (options.waitQuietMs) await waitForQuiet(options.quietCores, options.waitQuietMs);
    const t = await measureOnce(sample, reps, options);
    if (quietest === null || (t.foreignCores ?? 0) < (quietest.foreignCores ?? 0)) quietest = t;
    if ((t.foreignCores ?? 0) <= options.quietCores) break;
  }
  return quietest!;
}

async function measureOnce(sample: () => void | Promise<void>, reps: number, options: TimingOptions): Promise<Timing> {
  const bench = new Bench({
    warmupTime: options.warmupMs,
    warmupIterations: 1,
    time: options.timeMs,
    iterations: options.minSamples,
    throws: true,
  });
  bench.add('sample', sample);
  const load = startLoadMeter();
  await bench.run();
  const foreignCores = load();
  const result = bench.tasks[0].result;
  if (result.state !== 'completed') throw new Error(`benchmark task ended in state ${result.state}`);
  return { seconds: result.latency.p50 / 1000 / reps, callsPerSample: reps, samples: result.latency.samplesCount, foreignCores };
}

/** Sleeps in half-second windows until other processes use at most `cores`, or `maxMs` passes. */
async function waitForQuiet(cores: number, maxMs: number): Promise<void> {
  const until = performance.now() + maxMs;
  while (performance.now() < until) {
    const load = startLoadMeter();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const foreign = load();
    if (foreign === undefined || foreign <= cores) return;
  }
}

// /proc/stat counts in USER_HZ ticks, 100 per second on every Linux the kernel ABI allows here.
const TICKS_PER_SECOND = 100;

/** Busy CPU seconds of the whole machine so far, or null off Linux. */
function machineBusySeconds(): number | null {
  try {
    // "cpu  user nice system idle iowait irq softirq steal …": busy = all but idle, iowait and steal.
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq] = fields;
    return (user + nice + system + irq + softirq) / TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/** Starts measuring; the returned function gives the cores used by other processes since then. */
function startLoadMeter(): () => number | undefined {
  const busy0 = machineBusySeconds();
  const own0 = process.cpuUsage(); // every thread of this process, workers included
  const t0 = performance.now();
  return () => {
    const busy1 = machineBusySeconds();
    if (busy0 === null || busy1 === null) return undefined;
    const own = process.cpuUsage(own0);
    const wallSeconds = (performance.now() - t0) / 1000;
    const foreign = (busy1 - busy0 - (own.user + own.system) / 1e6) / wallSeconds;
    return Math.max(0, foreign);
  };
}
