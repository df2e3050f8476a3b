/** What the CLI tests share: a fake CliIO that collects the output, the usage-error contract, and a built bin/ponder.js. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { main, type CliIO } from '../src/cli/main.js';

export interface Run { code: number; out: string; err: string }

/** Runs `ponder argv` in-process; `io` adds or replaces CliIO members (input, isTTY, onInterrupt). */
export async function ponder(argv: string[], io: Partial<CliIO> = {}): Promise<Run> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => { out += t; }, err: (t) => { err += t; }, bundledGoldenDir: 'spec/golden', ...io });
  return { code, out, err };
}

/** The contract for bad input: exit 2, empty stdout, one error line and one hint line, no stack. */
export function assertUsageError(r: Run, code: string): void {
  assert.equal(r.code, 2, `exit 2, got ${r.code}: ${r.err}`);
  assert.equal(r.out, '', 'nothing on stdout');
  const lines = r.err.trimEnd().split('\n').filter((l) => !l.startsWith('no --model given'));
  assert.match(lines[0], new RegExp(`^error\\[${code}\\]: \\S`), r.err);
  assert.equal(lines.length, 2, `one error line plus a hint, got:\n${r.err}`);
  assert.match(lines[1], /^ {2}hint: \S/);
  assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
}

/** bin/ponder.js runs dist/; rebuild it when any source file is newer than the compiled CLI. */
export function ensureBuilt(): void {
  const compiled = 'dist/src/cli/main.js';
  const newest = (dir: string): number => Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)));
  let builtAt = 0;
  try { builtAt = statSync(compiled).mtimeMs; } catch { /* not built yet */ }
  if (builtAt < newest('src')) spawnSync('npm', ['run', 'build:ts'], { stdio: 'ignore' }); // emits even if unrelated files have type errors
}
