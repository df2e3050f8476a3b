import type { WasmRuntime } from '../../src/kernels/wasm.js';
import { PonderError } from '../../src/errors.js';
import type { FromWorker, GenerateRequest } from './protocol.js';

export async function generateInWorker(_request: GenerateRequest, _runtime: WasmRuntime, _post: (m: FromWorker) => void): Promise<void> {
  throw new PonderError('RUNTIME_UNSUPPORTED', 'generation is not wired up yet', { hint: 'waiting for the model API' });
}
