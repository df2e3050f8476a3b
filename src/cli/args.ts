/** Flag parsing for the CLI: node's util.parseArgs, with its errors turned into `ARG_*` PonderErrors. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PonderError } from '../errors.js';

export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/**
 * `-n -5`, `--threshold -1`: a value that starts with '-' looks like a flag to parseArgs ("argument
 * is ambiguous"); a number after a flag that takes a value is that flag's value (`--flag=-5`), so
 * the flag's own check can say what is wrong with it.
 */
function joinNegativeValues(argv: string[], options: FlagSpec): string[] {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type !== 'string') continue;
    takesValue.add(`--${name}`);
    if (o.short) takesValue.add(`-${o.short}`);
  }
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i], next = argv[i + 1];
    if (flag === '--') { out.push(...argv.slice(i)); break; }
    if (takesValue.has(flag) && next !== undefined && /^-(\d|\.\d|Infinity\b|NaN\b)/.test(next)) {
      out.push(flag.startsWith('--') ? `${flag}=${next}` : `${flag}${next}`);
      i++;
    } else out.push(flag);
  }
  return out;
}

export function parseFlags(command: string, argv: string[], options: FlagSpec): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({ args: joinNegativeValues(argv, options), options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
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
