import { PonderError } from '../errors.js';
import type { CliIO } from './main.js';

export async function benchCommand(_argv: string[], _io: CliIO): Promise<number> {
  throw new PonderError('CLI_UNSUPPORTED', 'bench is not implemented yet', { hint: 'use `npm run bench`' });
}
