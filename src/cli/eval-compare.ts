/**
 * `ponder eval --compare A B`: quality per depth of B against A (src/compare/quality.ts), e.g. a
 * `ponder quantize` output against its source. Kept apart from `ponder eval MODEL` (one model's
 * bits/byte per depth) so that the two compose: the eval command hands `--compare` here.
 */
import { PonderError } from '../errors.js';
import { parsePolicy } from '../depth/policy.js';
import { compareModels, formatCompareTable, windowsOf } from '../compare/quality.js';
import { loadModelDir } from '../node/index.js';
import { idsFile } from '../eval/inputs.js';
import { readText } from '../node/files.js';
import { INPUT_LIMIT } from './eval.js';
import { intFlag, parseFlags } from './args.js';
import type { CliIO } from './io.js';
import { quantActivationsFlag, RUNTIME_FLAGS } from './runtime-flags.js';
import { runtimeFromFlags } from './run.js';

export const EVAL_COMPARE_HELP = `ponder eval --compare A B (--text FILE | --ids FILE) [options]

Quality per depth of model B against model A (e.g. a \`ponder quantize\` output against its source):
teacher-forced over the same tokens, one token per call, for every fixed depth and every adaptive
policy the model runs, the mean KL divergence KL(A‖B) of the next-token distributions (nats), its
largest value at one position, the top-1 agreement, and the exit-step agreement (B ran the token
to the same depth as A).

  --text FILE        text, tokenized with A's tokenizer and cut into windows of --window tokens
  --ids FILE         token ids, as for ponder eval: one window per line, ids separated by spaces
                     or commas; or JSON, an array of ids (cut into windows of --window) or
                     {"windows": [{"ids": [...]}, ...]} (spec/eval.md)
  --window N         tokens per window for --text and a JSON array (default 256, at most the
                     model's context)
  --max-positions N  stop after this many predicted positions (default 1024)
  --policy POLICY    compare under this policy only (repeatable); default: fixed(1..full), default,
                     and the adaptive rules the model runs: exit(gate, 0.5), exit(kl, 1e-2),
                     exit(latent-diff, 0.05), router(causal, 0.5)
  --seed N           Huginn's initial-state seed, the same for both (default 0)
  --json             the report as JSON on stdout
  --kernels wasm|scalar, --threads N, --quant-activations f32|int16|int8, --relaxed
                     as for ponder run (both A and B)
  --quant-activations-b f32|int16|int8   B's quantized activations only: the int16 mode against the
                     exact mode of the same checkpoint is --compare Q Q --quant-activations-b int16

Example:
  ponder quantize models/ouro-sotu /tmp/ouro-4bit --bits 4
  ponder eval --compare models/ouro-sotu /tmp/ouro-4bit --text notes.txt
`;

export const EVAL_COMPARE_FLAGS = {
  compare: { type: 'boolean' }, text: { type: 'string' }, ids: { type: 'string' }, window: { type: 'string' }, 'max-positions': { type: 'string' },
  policy: { type: 'string', multiple: true }, seed: { type: 'string' }, json: { type: 'boolean' }, threads: { type: 'string' }, ...RUNTIME_FLAGS,
  'quant-activations-b': { type: 'string' },
} as const;

export async function evalCompareCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('eval', argv, EVAL_COMPARE_FLAGS);
  if (values.help) { io.out(EVAL_COMPARE_HELP); return 0; }
  if (!values.compare) { io.out(EVAL_COMPARE_HELP); return 2; }
  const [dirA, dirB, ...extra] = positionals;
  if (dirB === undefined) throw new PonderError('ARG_MISSING_PATH', 'eval --compare needs two model directories, A and B', { hint: 'ponder eval --compare A B --text FILE' });
  if (extra.length > 0) throw new PonderError('ARG_INVALID', `eval --compare: unexpected argument ${JSON.stringify(extra[0])}`, { hint: 'see `ponder eval --compare --help`' });
  if ((values.text === undefined) === (values.ids === undefined)) throw new PonderError('ARG_INVALID', 'eval --compare: give --text FILE or --ids FILE (one of them)', { hint: 'see `ponder eval --compare --help`' });
  const maxPositions = intFlag('eval', 'max-positions', values['max-positions'] as string | undefined, 1024);
  const seed = values.seed === undefined ? 0 : intFlag('eval', 'seed', values.seed as string, 0);
  const policies = (values.policy as unknown as string[] | undefined)?.map((p) => parsePolicy(p));
  const valuesB = values['quant-activations-b'] === undefined ? values : { ...values, 'quant-activations': quantActivationsFlag(values, 'quant-activations-b') };
  const a = await loadModelDir(dirA, { runtime: await runtimeFromFlags('eval', values) });
  const b = await loadModelDir(dirB, { runtime: await runtimeFromFlags('eval', valuesB) });
  const window = intFlag('eval', 'window', values.window as string | undefined, 256);
  let windows: number[][];
  if (values.ids !== undefined) {
    // the reader ponder eval uses: one window per line, or JSON (an array cut into windows of --window positions, or windows)
    const context = Math.min(a.contextLength, b.contextLength);
    windows = idsFile(readText(String(values.ids), INPUT_LIMIT), String(values.ids), a.vocabSize, context, Math.min(window, context), null).windows.map((w) => [...w.ids]);
  } else {
    if (!a.tokenizer) throw new PonderError('ARG_INVALID', `eval --compare --text: ${dirA} has no tokenizer.json`, { field: 'text', hint: 'use --ids FILE' });
    windows = windowsOf(a.encode(readText(String(values.text), INPUT_LIMIT)), Math.min(window, a.contextLength + 1));
  }
  // at most maxPositions predicted positions (a window of n ids predicts n − 1)
  const limited: number[][] = [];
  let left = maxPositions;
  for (const w of windows) {
    if (left <= 0) break;
    if (w.length < 2) continue;
    limited.push(w.slice(0, Math.min(w.length, left + 1)));
    left -= Math.min(w.length, left + 1) - 1;
  }
  let last = '';
  const report = compareModels(a, b, limited, {
    policies, seed,
    onProgress: (p) => {
      const line = `\r${p.policy} (${p.index + 1}/${p.policies}): ${p.positionsDone}/${p.positionsTotal} positions`;
      if (line !== last) { io.err(line); last = line; }
    },
  });
  if (last) io.err('\n');
  io.out(values.json ? JSON.stringify(report, null, 2) + '\n' : formatCompareTable(report));
  return 0;
}
