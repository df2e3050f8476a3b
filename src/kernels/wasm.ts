import { PonderError } from '../errors.js';
import type { Runtime } from '../runtime/runtime.js';

export async function createWasmRuntime(): Promise<Runtime> {
  throw new PonderError('RUNTIME_UNSUPPORTED', 'the WASM kernels are not wired up yet', { hint: 'use --kernels scalar' });
}
