import os from 'node:os';
import { resolve } from 'node:path';
import { PonderError } from '../errors.js';
import type { BenchPlan, BenchRow } from '../../bench/suite.js';
import { intFlag, parseFlags } from './args.js';
import { createRuntime, RUNTIME_FLAGS } from './runtime-flags.js';
import type { CliIO } from './io.js';
import type { Runtime } from '../runtime/runtime.js';
import type { LinearTile } from '../kernels/linear-tiles.js';

export const BENCH_HELP = `ponder bench kernels [--json] [--quick] [--no-peers] [--relaxed] [--kernels wasm|scalar]
ponder bench e2e [--json] [--quick] [--kernels wasm|scalar]

e2e: prefill and decode tokens/s through the public API for every bundled demo model and each depth
policy its family runs (bench/e2e.bench.ts).

kernels:

Times ponder's kernels next to @tensorflow/tfjs-backend-wasm (XNNPACK) and onnxruntime-web (wasm,
1 thread) in the same run, and prints GFLOP/s (GB/s for decode and attention) with the ratio to
each peer and the share of this host's limit:
  linear   (M,K,N) = (1,768,768), (1,4096,4096)  decode, cold: weight copies rotated so every
                                                  call reads DRAM; %stream = share of a same-run
                                                  stream read of blocks of the same size
           (64,768,768), (256,1024,1024), (512,2048,2048)  prefill; %peak = share of the 128-bit
                                                  SIMD issue rate (flop/cycle by CPU family × the
                                                  clock measured around the row); every register
                                                  tile for f32; 2 threads vs 1 when the kernels
                                                  have threads
           each with f32 and bf16 weights (the peers always run f32)
  attention one query, 8 heads (no GQA) over T cached positions, head dim D: (T, D) = (128, 64),
           (1024, 64), (4096, 64), (4096, 128), (16384, 64), (16384, 128); cold (cache copies
           rotated); %stream of the K and V bytes
The first line names the CPU (model, vendor, family, model number) and its flop/cycle.
Then each acceptance bar of issues 2 and 16 with PASS or FAIL. Figures are tinybench medians after
a >=150 ms warm-up, samples batched to >=5 ms. The full run takes several minutes.

  --json              print one JSON array of {kernel, shape, dtype, gflops, peers, ...}
  --quick             shorter sampling and a 64 MiB (not 256 MiB) cold rotation
  --no-peers          skip tfjs and onnxruntime-web (they are devDependencies)
  --relaxed           the relaxed-SIMD build (fused multiply-add; not bit-identical, never
                      used for conformance); the acceptance bars are for the plain build
  --wait-quiet SECS   before each measurement wait up to SECS for other processes to use
                      under 0.25 core (a shared machine's quiet moments)
  --kernels NAME      wasm (default) or scalar (the TypeScript twins; slow)

Results are noisy on a shared machine (this one has 2 cores): read the same-run ratios and the
"busy" column, and measure when the machine is otherwise idle (--wait-quiet helps). Pinning with
taskset -c 1 steadies the single-thread rows but makes the 2-thread rows meaningless.

Examples:
  ponder bench kernels --quick
  ponder bench kernels --wait-quiet 15 --json > kernels.json
`;

const NOISE_NOTE = 'note: figures are medians from one run on a possibly shared machine; compare the same-run ratios, not absolute numbers across runs. "busy" = cores other processes used while the row was timed (the full run re-measures a row up to twice when that is above 0.25)';

/** `ponder bench kernels`. `plan` replaces the shape list (tests use a tiny one). */
export async function benchCommand(argv: string[], io: CliIO, plan?: BenchPlan): Promise<number> {
  const { values, positionals } = parseFlags('bench', argv, {
    json: { type: 'boolean' }, quick: { type: 'boolean' }, 'no-peers': { type: 'boolean' }, relaxed: { type: 'boolean' }, 'wait-quiet': { type: 'string' }, ...RUNTIME_FLAGS,
  });
  if (values.help) { io.out(BENCH_HELP); return 0; }
  if (positionals.length === 1 && positionals[0] === 'e2e') return e2eCommand(values, io);
  if (positionals.length !== 1 || positionals[0] !== 'kernels') {
    const got = positionals.length === 0 ? 'nothing' : JSON.stringify(positionals.join(' '));
    throw new PonderError('ARG_INVALID', `bench: expected the suite name \`kernels\` or \`e2e\`, got ${got}`, { hint: 'run `ponder bench kernels` or `ponder bench e2e`; see `ponder bench --help`' });
  }
  const waitQuietSeconds = intFlag('bench', 'wait-quiet', values['wait-quiet'], 0);
  const relaxed = values.relaxed === true;
  if (relaxed && values.kernels === 'scalar') {
    throw new PonderError('ARG_INVALID', 'bench: --relaxed needs the wasm kernels, not --kernels scalar', { field: 'relaxed', hint: 'drop --relaxed or --kernels scalar' });
  }
  const createOne = relaxed ? () => wasmRuntime(1, true) : () => createRuntime(values);
  const kernelsName = (await createOne()).kernels.name; // also validates --kernels before minutes of set-up
  const json = Boolean(values.json);
  const { FULL_PLAN, QUICK_PLAN, runKernelBench } = await importBenchModule(() => import('../../bench/suite.js'));
  const { hostCpu, describeCpu } = await import('../../bench/cpu.js');
  const base = plan ?? (values.quick ? QUICK_PLAN : FULL_PLAN);
  const chosen = { ...base, timing: { ...base.timing, waitQuietMs: waitQuietSeconds * 1000 } };

  if (!json) {
    const cpu = hostCpu();
    io.out(`${machineLine()}\nCPU: ${describeCpu(cpu)}; 128-bit f32 SIMD ${cpu.flopsPerCycle.plain} flop/cycle plain, ${cpu.flopsPerCycle.fused} fused (${cpu.flopsSource}); %peak = that × the clock measured around each prefill row\n`
      + `ponder kernels: ${kernelsName} (1 thread unless thr says otherwise)\n${NOISE_NOTE}\n\n`);
    io.out(tableHeader());
  }
  const result = await runKernelBench(chosen, {
    createRuntime: createOne,
    createThreadedRuntime: values.kernels === 'scalar' ? undefined : (threads) => wasmRuntime(threads, relaxed),
    createTileRuntime: values.kernels === 'scalar' ? undefined : (tile) => wasmRuntime(1, relaxed, tile),
    relaxed,
    peers: !values['no-peers'],
    onRow: json ? undefined : (row) => io.out(tableLine(row)),
    onNote: (text) => io.err(`${text}\n`),
  });

  if (json) {
    io.out(JSON.stringify(result.rows, null, 2) + '\n');
    io.err(`${NOISE_NOTE}\n`);
  } else {
    io.out(`\n${barSummary(result.rows)}`);
  }
  return 0;
}

/**
 * The benchmark suites need tinybench (a devDependency): an installed package without dev
 * dependencies still runs every other command, and `bench` says what is missing.
 */
async function importBenchModule<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
    throw new PonderError('BENCH_UNAVAILABLE', `bench: the benchmark suite cannot load (${(e as Error).message.split('\n')[0]})`,
      { hint: 'benchmarks run from a clone of the repository with its dev dependencies: `npm install`, then `ponder bench`' });
  }
}

/** A WASM runtime with `threads` threads (worker_threads), optionally the relaxed-SIMD build or a given linear tile. */
async function wasmRuntime(threads: number, relaxed: boolean, linearTile?: LinearTile): Promise<Runtime> {
  const { createNodeWasmRuntime } = await import('../node/pool-worker.js');
  return createNodeWasmRuntime({ threads, relaxed, linearTile });
}

export function machineLine(): string {
  const cpus = os.cpus();
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  return `${new Date().toISOString()}  ${cpus[0]?.model ?? 'unknown CPU'} × ${cpus.length}  Node ${process.version}  load ${load}`;
}

function tableHeader(): string {
  return `${'kernel'.padEnd(10)}${'shape'.padEnd(18)}${'dtype'.padEnd(6)}${'thr'.padStart(3)}${'ms'.padStart(10)}${'GFLOP/s'.padStart(9)}`
    + `${'%peak'.padStart(6)}${'GB/s'.padStart(7)}${'%stream'.padStart(8)}${'busy'.padStart(6)}  peers (GFLOP/s, ponder ratio)\n`;
}

function tableLine(row: BenchRow): string {
  const peers = row.peers.map((p) => `${p.name} ${p.gflops.toFixed(1)} (${(row.gflops / p.gflops).toFixed(2)}×)`).join(', ');
  const tiles = row.tiles ? ` (${row.tiles.map((t) => `${t.name} ${t.gflops.toFixed(1)}`).join(', ')})` : '';
  const extra = (row.speedupVsOneThread !== undefined ? `; ${row.speedupVsOneThread.toFixed(2)}× one thread` : '') + (row.tile ? `; tile ${row.tile}${tiles}` : '');
  return `${row.kernel.padEnd(10)}${(row.shape + (row.cold ? ' cold' : '')).padEnd(18)}${row.dtype.padEnd(6)}${String(row.threads).padStart(3)}`
    + `${row.ms.toFixed(3).padStart(10)}${row.gflops.toFixed(1).padStart(9)}${(row.pctOfPeak !== undefined ? row.pctOfPeak.toFixed(0) + '%' : '').padStart(6)}${(row.gbps?.toFixed(1) ?? '').padStart(7)}`
    + `${(row.pctOfStream !== undefined ? row.pctOfStream.toFixed(0) + '%' : '').padStart(8)}${busyCores(row).padStart(6)}  ${peers}${extra}\n`;
}

/** The most cores other processes used while this row or its peers were timed ('' off Linux). */
function busyCores(row: BenchRow): string {
  const loads = [row.foreignCores, ...row.peers.map((p) => p.foreignCores)].filter((l): l is number => l !== undefined);
  return loads.length === 0 ? '' : loads.reduce((a, b) => Math.max(a, b)).toFixed(2);
}

function barSummary(rows: BenchRow[]): string {
  const lines: string[] = [];
  for (const row of rows) {
    for (const b of row.bars ?? []) {
      const where = `${row.kernel} ${row.shape} ${row.dtype}${row.threads > 1 ? ` ${row.threads} threads` : ''}`;
      const actual = b.unit === '%' ? `${b.actual.toFixed(1)}%` : `${b.actual.toFixed(3)}×`; // enough digits that a FAIL never prints as the bar itself
      lines.push(`${b.pass ? 'PASS' : 'FAIL'} ${b.bar}: ${where}: ${actual}`);
    }
  }
  if (lines.length === 0) return 'no acceptance bar applies to these rows\n';
  const failed = lines.filter((l) => l.startsWith('FAIL')).length;
  return `acceptance bars (issues 2 and 16):\n${lines.map((l) => `  ${l}\n`).join('')}${lines.length - failed} met, ${failed} missed\n`;
}

/** `ponder bench e2e`: end-to-end tokens/s per bundled model and policy (bench/e2e.bench.ts). */
async function e2eCommand(values: Record<string, string | boolean | undefined>, io: CliIO): Promise<number> {
  await createRuntime(values); // validates --kernels first
  const { runE2eBench, e2eHeader, e2eLine } = await importBenchModule(() => import('../../bench/e2e.bench.js'));
  const json = Boolean(values.json);
  if (!json) io.out(`${machineLine()}\n${NOISE_NOTE}\n\n${e2eHeader()}`);
  const rows = await runE2eBench({
    modelsDir: resolve(io.bundledGoldenDir, '..', '..', 'models'), quick: Boolean(values.quick),
    createRuntime: () => createRuntime(values), onRow: json ? undefined : (row) => io.out(e2eLine(row)),
  });
  if (json) io.out(JSON.stringify(rows, null, 2) + '\n');
  return 0;
}
