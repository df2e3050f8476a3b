import { PonderError } from '../errors.js';
import { createScalarRuntime, type Runtime } from '../runtime/runtime.js';
import type { FlagSpec } from './args.js';
import { QUANT_ACTIVATIONS, type QuantActivations } from '../kernels/kernels.js';

export const RUNTIME_FLAGS: FlagSpec = { kernels: { type: 'string' }, 'quant-activations': { type: 'string' }, relaxed: { type: 'boolean' } };

/** --quant-activations f32|int16|int8 (default f32): how the WASM kernels run quantized Linear weights (spec/quantization.md). */
export function quantActivationsFlag(values: Record<string, string | boolean | string[] | undefined>, flag = 'quant-activations'): QuantActivations {
  const mode = values[flag] ?? 'f32';
  if (!QUANT_ACTIVATIONS.includes(mode as QuantActivations)) throw new PonderError('ARG_INVALID', `--${flag} must be f32, int16 or int8, got ${JSON.stringify(mode)}`, { field: flag, hint: 'f32 (default): the exact mode; int16 / int8: activations quantized per group for an integer dot (faster, a measured deviation; int8 is fastest at 4 bits with --relaxed)' });
  if (mode !== 'f32' && values.kernels === 'scalar') throw new PonderError('ARG_INVALID', `--${flag} ${String(mode)} needs the wasm kernels`, { field: flag, hint: 'drop --kernels scalar (the scalar kernels run the exact mode only)' });
  return mode as QuantActivations;
}

/**
 * --relaxed: the relaxed-SIMD build (fused multiply-add: not bit-identical to the default build; with
 * --quant-activations int8, 4-bit weights run a byte dot). Node 20 gets --experimental-wasm-relaxed-simd.
 */
export async function relaxedFlag(values: Record<string, string | boolean | string[] | undefined>): Promise<boolean> {
  if (values.relaxed !== true) return false;
  if (values.kernels === 'scalar') throw new PonderError('ARG_INVALID', '--relaxed needs the wasm kernels', { field: 'relaxed', hint: 'drop --kernels scalar or --relaxed' });
  (await import('../node/pool-worker.js')).enableRelaxedSimd();
  return true;
}

/** The runtime the --kernels flag names (default wasm), with --quant-activations and --relaxed. */
export async function createRuntime(values: Record<string, string | boolean | undefined>): Promise<Runtime> {
  const name = values.kernels ?? 'wasm';
  const quantActivations = quantActivationsFlag(values);
  const relaxed = await relaxedFlag(values);
  if (name === 'scalar') return createScalarRuntime();
  if (name === 'wasm') {
    const { createWasmRuntime } = await import('../kernels/wasm.js');
    return createWasmRuntime({ quantActivations, relaxed });
  }
  throw new PonderError('ARG_INVALID', `--kernels must be wasm or scalar, got ${JSON.stringify(name)}`, { field: 'kernels', hint: 'use --kernels wasm (default) or --kernels scalar' });
}
