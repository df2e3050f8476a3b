/** Flag parsing for the CLI: node's util.parseArgs, with its errors turned into `ARG_*` PonderErrors. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PonderError } from '../errors.js';

export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export function parseFlags(command: string, argv: string[], options: FlagSpec): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { values: values as ParsedArgs['values'], positionals };
  } catch (e) {
    const err = e as Error & { code?: string };
    const code = err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? 'ARG_UNKNOWN_FLAG'
      : err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ? 'ARG_MISSING_VALUE' : 'ARG_INVALID';
    throw new PonderError(code, `${command}: ${err.message.split('\n')[0]}`, { hint: `see \`ponder ${command} --help\`` });
  }
}

/** A positive integer flag value, or an ARG_INVALID error naming the flag. */
export function intFlag(command: string, flag: string, value: string | boolean | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (typeof value !== 'string' || !/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0) {
    throw new PonderError('ARG_INVALID', `${command}: --${flag} must be a positive integer, got ${JSON.stringify(value)}`, { field: flag, hint: `see \`ponder ${command} --help\`` });
  }
  return n;
}
