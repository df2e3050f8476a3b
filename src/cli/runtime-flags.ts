import { PonderError } from '../errors.js';
import { createScalarRuntime, type Runtime } from '../runtime/runtime.js';
import type { FlagSpec } from './args.js';

export const RUNTIME_FLAGS: FlagSpec = { kernels: { type: 'string' } };

/** The runtime the --kernels flag names (default wasm). */
export async function createRuntime(values: Record<string, string | boolean | undefined>): Promise<Runtime> {
  const name = values.kernels ?? 'wasm';
  if (name === 'scalar') return createScalarRuntime();
  if (name === 'wasm') {
    const { createWasmRuntime } = await import('../kernels/wasm.js');
    return createWasmRuntime();
  }
  throw new PonderError('ARG_INVALID', `--kernels must be wasm or scalar, got ${JSON.stringify(name)}`, { field: 'kernels', hint: 'use --kernels wasm (default) or --kernels scalar' });
}
