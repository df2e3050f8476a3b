/** Where a CLI command writes: stdout/stderr in the shell (nodeIO), strings in tests. */
import { fileURLToPath } from 'node:url';

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  readonly bundledGoldenDir: string;
  /** stdout is a terminal: `run` colours tokens only then */
  readonly isTTY?: boolean;
}

export const nodeIO: CliIO = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  bundledGoldenDir: fileURLToPath(new URL('../../../spec/golden', import.meta.url)),
  isTTY: process.stdout.isTTY === true,
};
