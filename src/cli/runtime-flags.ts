import { PonderError } from '../errors.js';
import { createScalarRuntime, type Runtime } from '../runtime/runtime.js';
import type { FlagSpec } from './args.js';

export const RUNTIME_FLAGS: FlagSpec = { kernels: { type: 'string' }, 'quant-activations': { type: 'string' } };

/** --quant-activations f32|int16 (default f32): how the WASM kernels run quantized Linear weights (spec/quantization.md). */
export function quantActivationsFlag(values: Record<string, string | boolean | string[] | undefined>, flag = 'quant-activations'): 'f32' | 'int16' {
  const mode = values[flag] ?? 'f32';
  if (mode !== 'f32' && mode !== 'int16') throw new PonderError('ARG_INVALID', `--${flag} must be f32 or int16, got ${JSON.stringify(mode)}`, { field: flag, hint: 'f32 (default): the exact mode; int16: activations quantized per group to int16 for an integer dot (faster, a measured deviation)' });
  if (mode === 'int16' && values.kernels === 'scalar') throw new PonderError('ARG_INVALID', `--${flag} int16 needs the wasm kernels`, { field: flag, hint: 'drop --kernels scalar (the scalar kernels run the exact mode only)' });
  return mode;
}

/** The runtime the --kernels flag names (default wasm), with --quant-activations. */
export async function createRuntime(values: Record<string, string | boolean | undefined>): Promise<Runtime> {
  const name = values.kernels ?? 'wasm';
  const quantActivations = quantActivationsFlag(values);
  if (name === 'scalar') return createScalarRuntime();
  if (name === 'wasm') {
    const { createWasmRuntime } = await import('../kernels/wasm.js');
    return createWasmRuntime({ quantActivations });
  }
  throw new PonderError('ARG_INVALID', `--kernels must be wasm or scalar, got ${JSON.stringify(name)}`, { field: 'kernels', hint: 'use --kernels wasm (default) or --kernels scalar' });
}
