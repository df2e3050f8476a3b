/**
 * `ponder` command line. Exit codes: 0 ok, 1 internal fault or failed check, 2 bad usage or input.
 * Errors print one line `error[CODE]: message` (and a hint line) to stderr, never a stack trace.
 */
import { PonderError } from '../errors.js';
import { chatCommand } from './chat.js';
import { conformCommand } from './conform.js';
import { evalCommand } from './eval.js';
import { convertCommand } from './convert.js';
import { inspectCommand } from './inspect.js';
import { benchCommand } from './bench.js';
import { runCommand } from './run.js';
import { evalCompareCommand } from './eval-compare.js';
import { quantizeCommand } from './quantize.js';
import { serveCommand } from './serve.js';
import { traceCommand } from './trace.js';
import type { CliIO } from './io.js';

export { nodeIO, type CliIO } from './io.js';

const HELP = `ponder — run and check recursive language models (MoR, Huginn, Ouro) on WebAssembly SIMD

Usage: ponder <command> [options]   (ponder <command> --help for each)

Commands:
  run                generate text, each token coloured by the depth it used, then a summary
  chat               talk with a chat model (its template, multi-turn, the KV cache kept across turns)
  trace --html FILE  the same generation as a self-contained HTML page (depth heatmap, criterion curves)
  eval [MODEL]       quality vs compute: bits/byte and task accuracy at every fixed depth and exit policy
  conform [DIR]      run golden conformance cases (default: the bundled spec/golden)
  serve --model DIR  an OpenAI-compatible HTTP server (chat, completions, streaming) with per-token depth
  inspect FILE|DIR   list the tensors of a safetensors file or model directory, and its config
  convert mor ...    the MoR release (pytorch_model.bin + config.json + experiment YAML) as a model directory
  quantize IN OUT    8- or 4-bit weights in MLX's layout (--bits 4|8), for every family
  eval --compare A B quality per depth of B against A (KL, top-1 and exit-step agreement)
  bench kernels      kernel benchmarks against XNNPACK (tfjs-backend-wasm) and onnxruntime-web
  bench e2e          end-to-end prefill/decode tokens/s per bundled model and depth policy

Exit codes: 0 ok, 1 internal fault or failed check, 2 bad usage or input.
`;

const COMMANDS: Record<string, (argv: string[], io: CliIO) => Promise<number>> = {
  run: runCommand,
  chat: chatCommand,
  trace: traceCommand,
  // one command: `--compare A B` is quality per depth of one checkpoint against another (src/cli/eval-compare.ts)
  eval: (argv, io) => (argv.includes('--compare') ? evalCompareCommand(argv, io) : evalCommand(argv, io)),
  conform: conformCommand,
  inspect: inspectCommand,
  bench: benchCommand,
  convert: convertCommand,
  serve: serveCommand,
  quantize: quantizeCommand,
};

export async function main(argv: string[], io: CliIO): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') { io.out(HELP); return 0; }
  const run = COMMANDS[command];
  try {
    if (!run) throw new PonderError('ARG_UNKNOWN_COMMAND', `unknown command ${JSON.stringify(command)}`, { hint: `commands: ${Object.keys(COMMANDS).join(', ')}; see \`ponder --help\`` });
    return await run(rest, io);
  } catch (e) {
    if (e instanceof PonderError) {
      io.err(`error[${e.code}]: ${e.message}\n`);
      if (e.hint) io.err(`  hint: ${e.hint}\n`);
      return 2;
    }
    io.err(`error[INTERNAL]: ${(e as Error).message ?? String(e)}\n  hint: this is a bug in ponder; please report it with the command you ran\n`);
    if (process.env.PONDER_DEBUG) io.err(`${(e as Error).stack}\n`);
    return 1;
  }
}
