/** Running the CLI in-process for tests, and the contract every bad input must meet. */
import assert from 'node:assert/strict';
import { main, type CliIO } from '../src/cli/main.js';

export interface Run { code: number; out: string; err: string }

/** `ponder ...argv` through main() with its output captured (bundled files relative to the repository root). */
export async function ponder(argv: string[], isTTY = false): Promise<Run> {
  let out = '';
  let err = '';
  const io: CliIO = { out: (t) => { out += t; }, err: (t) => { err += t; }, bundledGoldenDir: 'spec/golden', isTTY };
  const code = await main(argv, io);
  return { code, out, err };
}

/** The contract for bad input: exit 2, empty stdout, the error line first, then one hint line, no stack. */
export function assertUsageError(r: Run, code: string): void {
  assert.equal(r.code, 2, `exit 2, got ${r.code}: ${r.err}`);
  assert.equal(r.out, '', 'nothing on stdout');
  const lines = r.err.trimEnd().split('\n');
  assert.match(lines[0], new RegExp(`^error\\[${code}\\]: \\S`), r.err);
  assert.equal(lines.length, 2, `one error line plus a hint, got:\n${r.err}`);
  assert.match(lines[1], /^ {2}hint: \S/);
  assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
}
