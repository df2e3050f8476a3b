import { PonderError } from '../errors.js';
import type { CliIO } from './main.js';

export async function inspectCommand(_argv: string[], _io: CliIO): Promise<number> {
  throw new PonderError('CLI_UNSUPPORTED', 'inspect is not implemented yet', { hint: 'see the foundation issue' });
}
