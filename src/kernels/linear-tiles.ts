/**
 * The register tiles of linear's prefill path (M > 1, assembly/linear.ts) and the choice of one
 * per host.
 *
 * Every tile computes each output the same way (f32, in k order, from +0, bias added last), so
 * all of them give the same bits: the choice changes speed, never a result. They differ in how
 * many rows and columns share each load, and a tile that suits one core's front end and load
 * ports does not suit the next (perf.md §11: the tile tuned on a Zen 5 host ran at 60 % of the
 * 128-bit ceiling on a Zen 4 host). All of them read the same packed layout (16-column panels;
 * '4x8' runs a panel as two 8-column halves), so a bound weight runs under any tile.
 *
 *   '2x16'   2 rows × 16 columns: per k, 4 panel loads and 2 splats feed 8 accumulators
 *   '2x16i'  the same tile with the two rows interleaved column by column and each load at its use
 *   '4x8'    4 rows × 8 columns: per k, 2 panel loads and 4 splats feed 8 accumulators
 * (8 accumulators is the most TurboFan keeps in registers: perf.md §3.)
 *
 * The choice is measured, not looked up: a JavaScript engine exposes no CPU model, and what
 * matters is the code the engine generates on this core. `measureLinearTiles` times each tile on
 * a small prefill problem (32×256×128, in L2) in rotation until V8 has tiered every tile up to
 * TurboFan and their best times stop improving, then keeps the fastest. createWasmRuntime runs it
 * once per process and build (plain, relaxed) and caches the result; the `linearTile` option (or
 * PONDER_LINEAR_TILE in Node) names a tile instead. Every runtime of the process (several memories,
 * several pools) runs the same tile.
 *
 * Another weight format (int8 / int4, issue 17) brings its own packing in bindLinear and its own
 * linear_<format> export taking the same `tile` argument; its tiles then join this list and the
 * measurement.
 */
import type { WasmKernelExports } from './wasm-exports.js';

export const LINEAR_TILES = ['2x16', '2x16i', '4x8'] as const;
export type LinearTile = (typeof LINEAR_TILES)[number];

/** The index the kernels take as their `tile` argument. */
export function linearTileIndex(tile: LinearTile): number {
  return LINEAR_TILES.indexOf(tile);
}

export function isLinearTile(name: unknown): name is LinearTile {
  return (LINEAR_TILES as readonly unknown[]).includes(name);
}

export interface TileMeasurement {
  /** the fastest tile */
  readonly tile: LinearTile;
  /** each tile's best rate on the probe problem, GFLOP/s */
  readonly gflops: Readonly<Record<LinearTile, number>>;
  /** wall time the measurement took, ms (mostly waiting for V8's tier-up) */
  readonly ms: number;
}

// The probe: x[M,K] · W[N,K]^T with f32 panels, one k-block. 1 MFLOP, ~20 µs per call once optimised.
const M = 32, K = 256, N = 128;
/** Bytes the probe needs above heap_base. */
export const TILE_PROBE_BYTES = 4 * (M * K + N * K + M * N) + 64;

const REPS = 8;            // calls per timed sample (≥ 0.1 ms: browsers coarsen performance.now)
const STABLE_ROUNDS = 4;   // rounds in a row in which no tile's best time improved by more than 2 %
const MIN_ROUNDS = 8;
const BUDGET_MS = 400;     // give up waiting for stability after this long (a very busy machine)

/**
 * Times every tile on `wasm` (an instance of its own: the probe writes above heap_base of
 * `memory`) and returns the fastest. Synchronous; takes ~20 ms on an idle machine, most of it
 * V8 compiling the tiles with TurboFan in the background.
 */
export function measureLinearTiles(wasm: WasmKernelExports, memory: WebAssembly.Memory, now: () => number = () => performance.now()): TileMeasurement {
  const start = now();
  const base = (wasm.heap_base() + 15) & ~15;
  const x = base, w = x + 4 * M * K, y = w + 4 * N * K;
  const f32 = new Float32Array(memory.buffer, base, M * K + N * K);
  for (let i = 0; i < f32.length; i++) f32[i] = ((i * 7919) % 1024) / 1024 - 0.5; // ordinary floats, no subnormals
  const best = LINEAR_TILES.map(() => Infinity);
  let stable = 0;
  for (let round = 0; ; round++) {
    let improved = false;
    for (let t = 0; t < LINEAR_TILES.length; t++) {
      const t0 = now();
      for (let r = 0; r < REPS; r++) wasm.linear_f32(y, x, w, 0, M, N, K, 0, N / 16, K, 0, t);
      const perCall = (now() - t0) / REPS;
      if (perCall < best[t] * 0.98) improved = true;
      best[t] = Math.min(best[t], perCall);
    }
    stable = improved ? 0 : stable + 1;
    if ((round + 1 >= MIN_ROUNDS && stable >= STABLE_ROUNDS) || now() - start > BUDGET_MS) break;
  }
  let fastest = 0;
  for (let t = 1; t < best.length; t++) if (best[t] < best[fastest]) fastest = t;
  const gflops = Object.fromEntries(LINEAR_TILES.map((name, t) => [name, (2 * M * N * K) / (best[t] * 1e6)])) as Record<LinearTile, number>;
  return { tile: LINEAR_TILES[fastest], gflops, ms: now() - start };
}
