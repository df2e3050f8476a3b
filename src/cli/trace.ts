/**
 * `ponder trace --html FILE`: a generation (or a trace JSON written by `ponder run --json`)
 * rendered as a self-contained HTML page, written through a temporary file and a rename.
 */
import { PonderError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { checkWriteTarget, readText, writeFileAtomic } from '../node/files.js';
import { renderTraceHtml } from '../trace/html.js';
import { parseTraceJSON } from '../trace/trace.js';
import { parseFlags } from './args.js';
import { disposeRuntime, GENERATION_FLAGS, GENERATION_HELP, prepare, printNotes } from './run.js';
import type { CliIO } from './io.js';

export const TRACE_HELP = `ponder trace --html FILE [options]

Runs a generation like \`ponder run\` and writes a self-contained HTML page (per-token depth heatmap,
per-step criterion and router curves; no network needed to view it). With --from TRACE.json it
renders a trace written by \`ponder run --json\` instead. The page is written to a temporary file
and renamed, so FILE is never half-written.

  --html FILE             where to write the page (required)
  --from TRACE.json       render this trace instead of generating
${GENERATION_HELP}

Example:
  ponder trace --prompt "Hello" --policy "exit(entropy-diff, auto)" --html trace.html
`;

export async function traceCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('trace', argv, { ...GENERATION_FLAGS, html: { type: 'string' }, from: { type: 'string' } });
  if (values.help) { io.out(TRACE_HELP); return 0; }
  if (positionals.length > 0) throw new PonderError('ARG_INVALID', `trace: unexpected argument ${JSON.stringify(positionals[0])}`, { hint: 'see `ponder trace --help`' });
  const html = values.html as string | undefined;
  if (html === undefined) throw new PonderError('ARG_MISSING_PATH', 'trace: --html FILE is required', { field: 'html', hint: 'e.g. ponder trace --prompt "Hello" --html trace.html' });
  checkWriteTarget(html); // refused before any work: a missing directory, or something at FILE that is not a regular file
  let run;
  if (values.from !== undefined) {
    const generationFlags = Object.keys(GENERATION_FLAGS).filter((k) => values[k] !== undefined && k !== 'kernels');
    if (generationFlags.length > 0) throw new PonderError('ARG_INVALID', `trace: --from renders an existing trace; --${generationFlags[0]} does not apply`, { hint: 'drop the generation flags, or drop --from' });
    run = parseTraceJSON(readText(String(values.from), { maxBytes: LIMITS.jsonFileBytes, code: 'TRACE_INVALID', what: 'a trace' }));
  } else {
    const { model, prompt, options, notes, runtime } = await prepare('trace', values, io);
    try {
      const generation = model.generate(prompt, options); // validates ids, context, policy, sampling
      printNotes(notes, io);
      run = (await generation.result()).trace;
    } finally {
      await disposeRuntime(runtime);
    }
  }
  writeFileAtomic(html, renderTraceHtml(run));
  io.out(`wrote ${html}: ${run.tokens.length} tokens (${run.family}, ${run.policy})\n`);
  return 0;
}
