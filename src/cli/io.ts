/** Where a CLI command writes (stdout/stderr in the shell, nodeIO; strings in tests) and, for `ponder chat`, what it reads. */
import { fileURLToPath } from 'node:url';

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  readonly bundledGoldenDir: string;
  /** stdout is a terminal: `run` colours tokens only then */
  readonly isTTY?: boolean;
  /** what the user types (`ponder chat`): a stream of lines */
  readonly input?: NodeJS.ReadableStream;
  /** the input is a terminal (prompts are shown, Ctrl-C arrives as a key) */
  readonly inputIsTTY?: boolean;
  /** calls `handler` on Ctrl-C (SIGINT) until the returned function is called */
  onInterrupt?(handler: () => void): () => void;
}

export const nodeIO: CliIO = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  bundledGoldenDir: fileURLToPath(new URL('../../../spec/golden', import.meta.url)),
  isTTY: process.stdout.isTTY === true,
  input: process.stdin,
  inputIsTTY: process.stdin.isTTY === true,
  onInterrupt: (handler) => {
    process.on('SIGINT', handler);
    return () => void process.off('SIGINT', handler);
  },
};
