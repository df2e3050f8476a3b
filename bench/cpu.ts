/**
 * What the host can do, for reading benchmark figures against a limit (issue 16): the CPU's
 * vendor, family and model, the f32 rate of 128-bit SIMD (what WebAssembly SIMD can issue) from a
 * per-family table of flops per cycle and the clock measured in the same run.
 *
 * The clock: `clock_chain` (assembly/stream.ts) runs a chain of dependent integer adds and xors,
 * one cycle each on every x86 and ARM core, so chain ops per second = cycles per second (a chain
 * step is an add and an xor: two ops, two cycles); the best of several short runs is kept (a run
 * the scheduler interrupted only reads lower). Counting a step as one cycle, as this file did from
 * 504047e to the fix, read half the clock (1.75–1.79 GHz on the 3.49 GHz Zen 5 host, where a chain
 * of 3-cycle imuls and one of 2-cycle f32 adds both read 3.49) and so doubled every % of peak.
 *
 * f32 flops per cycle at 128 bits, plain (separate mul and add, what the default build emits) and
 * fused (relaxed_madd):
 *   AMD family 23 (Zen 1/2), 25 (Zen 3/4), 26 (Zen 5): two FMUL/FMA and two FADD pipes: 2 mul + 2 add
 *     or 2 FMA per cycle → 16 / 16 (perf.md §2 measured 58.5 GFLOP/s = 16 × 3.65 GHz on Zen 4)
 *   Intel family 6 with two FMA ports and no separate adders (Skylake to Ice/Tiger Lake): the mul
 *     and the add share the ports → 8 / 16
 *   Intel family 6 P-cores with two more FADD units (Golden Cove and later: Alder/Raptor Lake,
 *     Sapphire/Emerald Rapids, Meteor Lake) → 16 / 16
 *   anything else (ARM: four 128-bit pipes on Apple and Neoverse V cores) → assumed 16 / 16, and
 *     the report says it is assumed
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { KERNELS_WASM } from '../src/kernels/wasm-binary.js';

export interface HostCpu {
  /** e.g. "AMD EPYC", from /proc/cpuinfo or os.cpus() */
  modelName: string;
  vendor: string; // AuthenticAMD, GenuineIntel, or '' when unknown
  family?: number;
  model?: number;
  /** f32 flops per cycle of 128-bit SIMD: separate mul and add / fused multiply-add */
  flopsPerCycle: { plain: number; fused: number };
  /** where flopsPerCycle comes from: the table row, or "assumed" */
  flopsSource: string;
}

// Intel family 6 models whose P-cores have the extra FADD units (Golden Cove and later).
const INTEL_FADD_MODELS = new Set([0x8f, 0x97, 0x9a, 0xaa, 0xac, 0xb7, 0xba, 0xbf, 0xcf, 0xad, 0xae]);

export function hostCpu(): HostCpu {
  let modelName = os.cpus()[0]?.model ?? 'unknown CPU';
  let vendor = '', family: number | undefined, model: number | undefined;
  try {
    const first = readFileSync('/proc/cpuinfo', 'utf8').split('\n\n')[0];
    const field = (name: string): string | undefined => first.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1].trim();
    vendor = field('vendor_id') ?? '';
    family = field('cpu family') !== undefined ? Number(field('cpu family')) : undefined;
    model = field('model') !== undefined ? Number(field('model')) : undefined;
    modelName = field('model name') ?? modelName;
  } catch { /* not Linux: the model name from os.cpus() only */ }
  let flopsPerCycle = { plain: 16, fused: 16 }, flopsSource = 'assumed (no table row for this CPU)';
  if (vendor === 'AuthenticAMD' && family !== undefined && [23, 25, 26].includes(family)) {
    flopsSource = `AMD family ${family}: 2 FMUL/FMA + 2 FADD pipes`;
  } else if (vendor === 'GenuineIntel' && family === 6 && model !== undefined) {
    if (INTEL_FADD_MODELS.has(model)) flopsSource = 'Intel Golden Cove or later: 2 FMA + 2 FADD';
    else { flopsPerCycle = { plain: 8, fused: 16 }; flopsSource = 'Intel family 6: 2 FMA ports shared by mul and add'; }
  }
  return { modelName, vendor, family, model, flopsPerCycle, flopsSource };
}

/** "AMD EPYC (AuthenticAMD family 26 model 2)" */
export function describeCpu(cpu: HostCpu): string {
  const id = cpu.family !== undefined ? ` (${cpu.vendor || 'family'} family ${cpu.family} model ${cpu.model ?? '?'})` : '';
  return `${cpu.modelName}${id}`;
}

let clockChain: ((n: number, b: number, c: number) => number) | undefined;

/**
 * The core clock in GHz, measured now: the best of `runs` dependent-chain runs of ~0.2 ms each
 * (short, so that on a busy machine some run all the same without being descheduled).
 */
export async function measureClockGHz(runs = 60): Promise<number> {
  if (!clockChain) {
    const module = await WebAssembly.compile(new Uint8Array(Buffer.from(KERNELS_WASM, 'base64')));
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const instance = await WebAssembly.instantiate(module, { env: { memory, abort() { throw new Error('kernels module aborted'); } } });
    clockChain = instance.exports.clock_chain as unknown as typeof clockChain;
    if (typeof clockChain !== 'function') throw new Error('the kernels module has no clock_chain export (rebuild with `npm run build:wasm`)');
  }
  const iterations = 10_000; // × 32 dependent steps × 2 cycles ≈ 0.2 ms at 3.5 GHz
  clockChain(iterations, 3, 5); // tier-up: the first calls may run unoptimised
  clockChain(iterations, 3, 5);
  let best = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    clockChain(iterations, 3, 5);
    best = Math.min(best, performance.now() - t0);
  }
  return (iterations * 64) / (best * 1e6);
}

/** GFLOP/s that `threads` cores can issue in 128-bit f32 SIMD at `clockGHz`. */
export function simdPeakGflops(cpu: HostCpu, clockGHz: number, relaxed: boolean, threads: number): number {
  return (relaxed ? cpu.flopsPerCycle.fused : cpu.flopsPerCycle.plain) * clockGHz * threads;
}
