/**
 * `ponder eval [MODEL] --text FILE | --tasks FILE | --ids FILE`: quality against compute (src/eval/).
 * Every input is read and every policy checked, and the output files' directories too, before the
 * first token is scored; the table (or --json) goes to stdout, one progress line per policy to stderr.
 */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { PonderError } from '../errors.js';
import { checkWriteTarget, readText, writeFileAtomic, type ReadLimit } from '../node/files.js';
import { LIMITS } from '../limits.js';
import type { Model } from '../api/model.js';
import { evaluate, type EvalReport, type EvalRow } from '../eval/evaluate.js';
import { idsFile, taskLines, textSet, type EvalSet } from '../eval/inputs.js';
import { adaptiveSweep, fixedSweep, parseDepthList, parsePolicies } from '../eval/sweep.js';
import { evalReportToJSON, formatEvalReport, parseEvalReport } from '../eval/report.js';
import { renderEvalHtml, renderEvalSvg } from '../eval/plot.js';
import { defaultScoreWindow } from '../api/score.js';
import { checkSeed } from '../generate/prng.js';
import { intFlag, parseFlags } from './args.js';
import { MEMORY_FLAGS } from './memory-flags.js';
import { disposeRuntime, openModel, runtimeFromFlags } from './run.js';
import { RUNTIME_FLAGS } from './runtime-flags.js';
import type { CliIO } from './io.js';

export const EVAL_HELP = `ponder eval [MODEL] --text FILE [--tasks FILE | --ids FILE] [options]
ponder eval --compare A B (--text FILE | --ids FILE)   quality per depth of B against A: ponder eval --compare --help

Scores held-out data teacher-forced, one token per call (each token's depth decided by the policy,
the compute it skips not spent), under every fixed depth 1..full and every adaptive rule the model
runs at a sweep of thresholds: bits/byte and perplexity on text, answer accuracy and the depth at
the query per k on tasks, with the mean depth and the compute (FLOPs relative to the full fixed
depth on the same positions). Each adaptive row is compared with the cheapest fixed depth whose
bits/byte is within 1 % of its own. MODEL defaults to the bundled trained model models/huginn-sotu.

Inputs (at least one; formats in spec/eval.md):
  --text FILE             plain UTF-8 text, scored in windows (bits/byte, perplexity)
  --tasks FILE            task lines K<TAB>PROMPT<TAB>ANSWER (accuracy and depth at the query per K)
  --ids FILE              token ids, in either format (told apart by the first character):
                          JSON: an array of ids (like --text), or windows with queries
                          {"windows": [{"ids": [...], "queries": [{"pos", "answer", "k"}]}]},
                          each window a sequence: the task set, and the text unless --text is given;
                          or lines: one window per line, ids separated by spaces or commas
                          ("#" lines skipped), scored as a text

Policies:
  --depths LIST           fixed depths to run, e.g. 1-12 or 1,2,4,8 (default 1..full depth)
  --criteria LIST         adaptive sweeps to run (default all the model runs): entropy-diff,
                          latent-diff, kl, minp-kl, argmax-stability, cosine, gate, router
  --policy POLICY         run exactly these adaptive policies instead of the sweeps (repeatable),
                          e.g. --policy "exit(latent-diff, 0.03)" --policy "exit(gate, 0.5)"

Options:
  --max-tokens N          score only the first N tokens of --text
  --window N              positions per text window, each a fresh sequence (default: the context,
                          at most 1024)
  --seed N                Huginn's initial-state seed (default 0)
  --kv-strategy NAME      as for ponder run
  --json                  print the report as JSON instead of the tables
  --html FILE             also write a self-contained HTML report (plot and tables)
  --svg FILE              also write the plot as a standalone SVG (e.g. for docs/)
  --from REPORT.json      print and draw a report written by --json instead of scoring
  --kernels wasm|scalar, --threads N, --quant-activations f32|int16|int8, --relaxed   as for ponder run
  --context N, --kv-dtype f32|bf16|f16, --max-memory BYTES   the memory plan, as for ponder run
                          (a bf16 / f16 KV cache scores within spec/numerics.md's bound of f32)

Example:
  ponder eval models/huginn-sotu --text models/eval/sotu-heldout.txt --tasks models/eval/chase-heldout.tsv \\
    --svg docs/eval-huginn-sotu.svg
`;

const EVAL_FLAGS = {
  text: { type: 'string' }, tasks: { type: 'string' }, ids: { type: 'string' },
  depths: { type: 'string' }, criteria: { type: 'string' }, policy: { type: 'string', multiple: true },
  'max-tokens': { type: 'string' }, window: { type: 'string' }, seed: { type: 'string' }, 'kv-strategy': { type: 'string' },
  json: { type: 'boolean' }, html: { type: 'string' }, svg: { type: 'string' }, from: { type: 'string' }, threads: { type: 'string' }, ...RUNTIME_FLAGS, ...MEMORY_FLAGS,
} as const;

/** Eval inputs and reports are read whole (spec/limits.md): a FIFO, a device or a huge file is a typed error, never a hang (eval --compare reads its --ids with INPUT_LIMIT too). */
export const INPUT_LIMIT: ReadLimit = { maxBytes: LIMITS.jsonFileBytes, code: 'EVAL_INPUT', what: 'an eval input' };
const REPORT_LIMIT: ReadLimit = { maxBytes: LIMITS.jsonFileBytes, code: 'EVAL_REPORT', what: 'an eval report' };

function outputPath(flag: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const dir = dirname(resolve(String(value)));
  if (!existsSync(dir)) throw new PonderError('IO_NOT_FOUND', `${dir}: no such directory for --${flag} ${String(value)}`, { path: String(value), hint: 'create the directory first' });
  checkWriteTarget(String(value)); // refused before any scoring: something at FILE that is not a regular file
  return String(value);
}

function requireTokenizer(model: Model, flag: string): NonNullable<Model['tokenizer']> {
  if (!model.tokenizer) throw new PonderError('GEN_NO_TOKENIZER', `${model.label} has no tokenizer, so --${flag} text cannot be encoded`, { field: flag, hint: 'pass --ids FILE with token ids, or a model directory with tokenizer.json' });
  return model.tokenizer;
}

function progressLine(row: EvalRow, index: number, count: number): string {
  const parts: string[] = [];
  if (row.text) parts.push(`${(row.text.bitsPerByte ?? row.text.bitsPerToken).toFixed(4)} ${row.text.bitsPerByte === null ? 'bits/token' : 'bits/byte'}, depth ${row.text.meanDepth.toFixed(2)}, compute ${row.text.compute.toFixed(3)}`);
  if (row.tasks) parts.push(`tasks accuracy ${row.tasks.accuracy.toFixed(3)}, depth at the query ${row.tasks.depthAtQuery.toFixed(2)}`);
  const width = String(count).length;
  return `[${String(index + 1).padStart(width)}/${count}] ${row.policy}: ${parts.join(' · ')} (${(row.ms / 1000).toFixed(1)} s)\n`;
}

export async function evalCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('eval', argv, EVAL_FLAGS);
  if (values.help) { io.out(EVAL_HELP); return 0; }
  if (positionals.length > 1) throw new PonderError('ARG_INVALID', `eval: unexpected argument ${JSON.stringify(positionals[1])}`, { hint: 'one MODEL directory; see `ponder eval --help`' });
  if (values.from !== undefined) {
    const scoring = [...positionals, ...Object.keys(values).filter((k) => values[k] !== undefined && !['from', 'json', 'svg', 'html'].includes(k)).map((k) => `--${k}`)];
    if (scoring.length > 0) throw new PonderError('ARG_INVALID', `eval: --from draws an existing report; ${scoring[0]} does not apply`, { hint: 'drop it, or drop --from to score' });
    const html = outputPath('html', values.html), svg = outputPath('svg', values.svg);
    return writeReport(parseEvalReport(readText(String(values.from), REPORT_LIMIT), String(values.from)), { json: values.json === true, svg, html }, io);
  }
  if (values.text === undefined && values.tasks === undefined && values.ids === undefined) throw new PonderError('ARG_INVALID', 'eval: give --text FILE, --tasks FILE or --ids FILE', { hint: 'see `ponder eval --help`' });
  if (values.policy !== undefined && values.criteria !== undefined) throw new PonderError('ARG_INVALID', 'eval: give --policy or --criteria, not both', { hint: '--policy lists the adaptive policies to run; --criteria narrows the sweeps' });
  const html = outputPath('html', values.html), svg = outputPath('svg', values.svg);
  const maxTokens = values['max-tokens'] === undefined ? undefined : intFlag('eval', 'max-tokens', values['max-tokens'] as string, 0);
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (seed !== undefined) {
    if (!/^\d+$/.test(String(values.seed))) throw new PonderError('ARG_INVALID', `--seed must be an integer in [0, 4294967295], got ${JSON.stringify(values.seed)}`, { field: 'seed', hint: 'e.g. --seed 1' });
    checkSeed(seed);
  }
  // the inputs are read before the model loads, so a missing file fails at once
  const textSource = values.text === undefined ? null : readText(String(values.text), INPUT_LIMIT);
  const taskSource = values.tasks === undefined ? null : readText(String(values.tasks), INPUT_LIMIT);
  const idsSource = values.ids === undefined ? null : readText(String(values.ids), INPUT_LIMIT);

  const runtime = await runtimeFromFlags('eval', values);
  try {
    const model = await openModel({ ...values, model: positionals[0] }, io, runtime);
    const check = (p: Parameters<Model['checkPolicy']>[0]): void => model.checkPolicy(p);
    const window = values.window === undefined ? defaultScoreWindow(model.contextLength) : intFlag('eval', 'window', values.window as string, 0);
    if (window > model.contextLength) throw new PonderError('ARG_INVALID', `eval: --window ${window} is beyond the model's context of ${model.contextLength}`, { field: 'window', hint: `use at most --window ${model.contextLength}` });
    const depths = values.depths === undefined ? null : parseDepthList(String(values.depths));
    const fixedPolicies = depths === null ? fixedSweep(check, model.defaultDepth) : depths.map((d) => parsePolicies([`fixed(${d})`], check)[0]);
    const adaptive = values.policy !== undefined ? parsePolicies(values.policy as unknown as string[], check)
      : adaptiveSweep(check, values.criteria === undefined ? undefined : String(values.criteria).split(',').map((s) => s.trim()));

    let text: EvalSet | undefined;
    let tasks: EvalSet | undefined;
    if (textSource !== null) text = textSet(textSource, String(values.text), requireTokenizer(model, 'text'), window, { maxTokens });
    if (taskSource !== null) tasks = taskLines(taskSource, String(values.tasks), requireTokenizer(model, 'tasks'), window);
    if (idsSource !== null) {
      // windows with queries are a task set, and the text too unless --text is given; plain ids are a text
      const read = idsFile(idsSource, String(values.ids), model.vocabSize, model.contextLength, window, model.tokenizer);
      if (read.queries > 0) {
        if (tasks) throw new PonderError('ARG_INVALID', 'eval: --tasks and an --ids file with queries are two task sets; give one', { hint: 'score them in two runs' });
        tasks = read;
        text ??= read;
      } else {
        if (text) throw new PonderError('ARG_INVALID', 'eval: --text and an --ids file without queries are two texts; give one', { hint: 'score them in two runs' });
        text = read;
      }
    }
    const policies = [...fixedPolicies, ...adaptive];
    io.err(`eval: ${policies.length} policies on ${[text ? `${text.tokens} tokens of ${text.label}` : '', tasks ? `${tasks.queries} queries of ${tasks.label}` : ''].filter(Boolean).join(' and ')}, one token per call\n`);
    const report = await evaluate(model, {
      policies, text, tasks, seed, kvStrategy: values['kv-strategy'] as string | undefined,
      onRow: (row, index, count) => io.err(progressLine(row, index, count)),
    });
    return writeReport(report, { json: values.json === true, svg, html }, io);
  } finally {
    await disposeRuntime(runtime); // an in-process eval leaves no kernel threads behind
  }
}

function writeReport(report: EvalReport, o: { json: boolean; svg?: string; html?: string }, io: CliIO): number {
  if (o.svg) writeFileAtomic(o.svg, renderEvalSvg(report));
  if (o.html) writeFileAtomic(o.html, renderEvalHtml(report));
  io.out(o.json ? evalReportToJSON(report) : formatEvalReport(report));
  if (o.svg) io.err(`wrote ${o.svg}\n`);
  if (o.html) io.err(`wrote ${o.html}\n`);
  return 0;
}
