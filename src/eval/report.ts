/**
 * An EvalReport as text: the held-out text table (bits/byte, perplexity, mean depth, compute, the
 * fixed depth each adaptive row is compared with), the task table (accuracy and the depth at the
 * query per k), and two verdict lines — equal quality at less compute, and depth rising with k.
 */
import { PonderError } from '../errors.js';
import type { EvalReport, EvalRow } from './evaluate.js';

function pad(cells: string[], widths: number[], right: boolean[]): string {
  return cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
}

function table(head: string[], rows: string[][], right: boolean[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [pad(head, widths, right), ...rows.map((r) => pad(r, widths, right))].join('\n');
}

export function percent(x: number): string {
  return `${x >= 0 ? '' : '−'}${Math.abs(100 * x).toFixed(0)} %`;
}

/** A saving as words: "34 % less compute" / "12 % more compute". */
export function savingText(saving: number): string {
  return `${Math.abs(100 * saving).toFixed(0)} % ${saving >= 0 ? 'less' : 'more'} compute`;
}

function thousands(n: number): string {
  return n.toLocaleString('en-US');
}

/** "1 window", "2,048 windows" */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${thousands(n)} ${n === 1 ? one : many}`;
}

/** The verdict on "equal bits/byte, less compute". */
export function savingVerdict(report: EvalReport, bar = 0.3): string | null {
  if (!report.text) return null;
  const tol = `${(100 * report.tolerance).toFixed(0)} %`;
  if (!report.best) return `equal bits/byte: no adaptive row reaches the bits/byte of a fixed depth within ${tol}`;
  const b = report.best;
  const row = report.rows.find((r) => r.policy === b.policy)!;
  const f = report.rows.find((r) => r.policy === b.matchedFixed)!;
  const met = b.saving >= bar ? `meets the bar (≥ ${percent(bar)} less)` : `misses the bar (≥ ${percent(bar)} less) by ${(100 * (bar - b.saving)).toFixed(0)} points`;
  return `equal bits/byte (within ${tol}): ${b.policy} (${row.text!.bitsPerByte === null ? `${row.text!.bitsPerToken.toFixed(3)} bits/token` : `${row.text!.bitsPerByte.toFixed(3)} bits/byte`}, compute ${row.text!.compute.toFixed(3)}) `
    + `against ${f.policy} (${(f.text!.bitsPerByte ?? f.text!.bitsPerToken).toFixed(3)}, compute ${f.text!.compute.toFixed(3)}): ${savingText(b.saving)} — ${met}`;
}

/** The verdict on "the depth at the query rises with k", over the adaptive rows. */
export function depthVerdict(report: EvalReport): string | null {
  if (!report.tasks || report.tasks.ks.length < 2) return null;
  const adaptive = report.rows.filter((r) => r.series !== 'fixed' && r.tasks);
  const rising = adaptive.filter((r) => r.depthRisesWithK);
  const spread = (r: EvalRow): number => r.tasks!.byK[r.tasks!.byK.length - 1].depthAtQuery - r.tasks!.byK[0].depthAtQuery;
  const pick = (rising.length > 0 ? rising : adaptive).reduce<EvalRow | null>((a, r) => (a === null || spread(r) > spread(a) ? r : a), null);
  if (!pick) return 'depth per k: no adaptive policy ran on the tasks';
  const ks = report.tasks.ks.join(', ');
  const depths = pick.tasks!.byK.map((k) => k.depthAtQuery.toFixed(2)).join(', ');
  return rising.length > 0
    ? `depth at the query rises with k for ${rising.length} of ${adaptive.length} adaptive policies; e.g. ${pick.policy}: ${depths} for k = ${ks}`
    : `depth at the query does not rise with k for any adaptive policy; the largest spread, ${pick.policy}: ${depths} for k = ${ks}`;
}

export function formatEvalReport(report: EvalReport): string {
  const out: string[] = [];
  out.push(`ponder eval ${report.model} · ${report.family}, full depth ${report.defaultDepth}${report.kvStrategy ? ` · KV strategy ${report.kvStrategy}` : ''} · compute = FLOPs relative to ${report.reference} on the same positions`);
  if (report.text) {
    const t = report.text;
    out.push('', `held-out text ${t.label}: ${thousands(t.tokens)} tokens${t.bytes === null ? '' : `, ${thousands(t.bytes)} bytes`} in ${plural(t.windows, 'window')}`);
    const quality = t.bytes === null ? 'bits/token' : 'bits/byte';
    const rows = report.rows.filter((r) => r.text).map((r) => {
      const s = r.text!;
      return [r.policy, (s.bitsPerByte ?? s.bitsPerToken).toFixed(4), s.perplexity.toFixed(2), s.meanDepth.toFixed(2), s.compute.toFixed(3),
        r.matchedFixed ? `${r.matchedFixed.policy}: ${percent(r.matchedFixed.saving)}` : r.series === 'fixed' ? '' : 'none reaches it'];
    });
    out.push(table(['policy', quality, 'perplexity', 'mean depth', 'compute', `saving vs the cheapest fixed depth within ${(100 * report.tolerance).toFixed(0)} %`], rows, [false, true, true, true, true, false]));
  }
  if (report.tasks) {
    const t = report.tasks;
    out.push('', `tasks ${t.label}: ${plural(t.queries, 'query', 'queries')} in ${plural(t.windows, 'window')}, k = ${t.ks.join(', ')}`);
    const rows = report.rows.filter((r) => r.tasks).map((r) => {
      const s = r.tasks!;
      const at = (k: number) => s.byK.find((x) => x.k === k);
      return [r.policy, s.accuracy.toFixed(3), ...t.ks.map((k) => at(k)?.accuracy.toFixed(2) ?? '–'), ...t.ks.map((k) => at(k)?.depthAtQuery.toFixed(2) ?? '–'),
        r.depthRisesWithK === null ? '' : r.depthRisesWithK ? 'yes' : 'no', s.meanDepth.toFixed(2), s.compute.toFixed(3)];
    });
    const head = ['policy', 'accuracy', ...t.ks.map((k) => `acc k=${k}`), ...t.ks.map((k) => `depth@q k=${k}`), 'rises', 'mean depth', 'compute'];
    out.push(table(head, rows, head.map((_, i) => i !== 0 && i !== head.length - 3)));
  }
  const verdicts = [savingVerdict(report), depthVerdict(report)].filter((v): v is string => v !== null);
  if (verdicts.length > 0) out.push('', ...verdicts);
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------- JSON

/** The report as `ponder eval --json` prints it. */
export function evalReportToJSON(report: EvalReport): string {
  return JSON.stringify(report, null, 2) + '\n';
}

/**
 * Reads a report `ponder eval --json` wrote (for --from), checking every field the table, plot and
 * page read, so a hand-edited or foreign file is EVAL_REPORT naming the field, never a broken page.
 */
export function parseEvalReport(text: string, label: string): EvalReport {
  const fail = (field: string, what: string): never => {
    throw new PonderError('EVAL_REPORT', `${label}: ${field} ${what}`, { path: label, field, hint: 'pass a file written by `ponder eval --json`' });
  };
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (e) { fail('(document)', `is not JSON: ${(e as Error).message}`); }
  const obj = (v: unknown, field: string): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Record<string, unknown> : fail(field, 'must be an object'));
  const str = (v: unknown, field: string): string => (typeof v === 'string' ? v : fail(field, 'must be a string'));
  const num = (v: unknown, field: string): number => (typeof v === 'number' && Number.isFinite(v) ? v : fail(field, 'must be a finite number'));
  const int = (v: unknown, field: string, min = 0): number => (Number.isInteger(v) && (v as number) >= min ? v as number : fail(field, `must be an integer ≥ ${min}`));
  const nullable = <T>(v: unknown, field: string, read: (v: unknown, field: string) => T): T | null => (v === null ? null : read(v, field));
  const arr = (v: unknown, field: string): unknown[] => (Array.isArray(v) ? v : fail(field, 'must be an array'));
  const d = obj(doc, '(document)');
  if (d.format !== 'ponder-eval') fail('format', 'must be "ponder-eval"');
  if (d.version !== 1) fail('version', `${JSON.stringify(d.version)} is not supported (this ponder reads version 1)`);
  const textInfo = nullable(d.text, 'text', (v, f) => { const t = obj(v, f); return { label: str(t.label, `${f}.label`), tokens: int(t.tokens, `${f}.tokens`), bytes: nullable(t.bytes, `${f}.bytes`, int), windows: int(t.windows, `${f}.windows`, 1) }; });
  const tasksInfo = nullable(d.tasks, 'tasks', (v, f) => { const t = obj(v, f); return { label: str(t.label, `${f}.label`), windows: int(t.windows, `${f}.windows`), queries: int(t.queries, `${f}.queries`), ks: arr(t.ks, `${f}.ks`).map((k, i) => int(k, `${f}.ks[${i}]`)) }; });
  const rowsValue = arr(d.rows, 'rows');
  if (rowsValue.length === 0) fail('rows', 'is empty');
  const rows = rowsValue.map((value, i): EvalRow => {
    const f = `rows[${i}]`, r = obj(value, f);
    const text = nullable(r.text, `${f}.text`, (v, g) => {
      const t = obj(v, g);
      return { positions: int(t.positions, `${g}.positions`, 1), bytes: nullable(t.bytes, `${g}.bytes`, int), nats: num(t.nats, `${g}.nats`), bitsPerByte: nullable(t.bitsPerByte, `${g}.bitsPerByte`, num),
        bitsPerToken: num(t.bitsPerToken, `${g}.bitsPerToken`), perplexity: num(t.perplexity, `${g}.perplexity`), meanDepth: num(t.meanDepth, `${g}.meanDepth`), flops: num(t.flops, `${g}.flops`), compute: num(t.compute, `${g}.compute`) };
    });
    const tasks = nullable(r.tasks, `${f}.tasks`, (v, g) => {
      const t = obj(v, g);
      const byK = arr(t.byK, `${g}.byK`).map((kv, j) => { const k = obj(kv, `${g}.byK[${j}]`); return { k: int(k.k, `${g}.byK[${j}].k`), queries: int(k.queries, `${g}.byK[${j}].queries`, 1), accuracy: num(k.accuracy, `${g}.byK[${j}].accuracy`), depthAtQuery: num(k.depthAtQuery, `${g}.byK[${j}].depthAtQuery`) }; });
      if (byK.length === 0) fail(`${g}.byK`, 'is empty');
      return { queries: int(t.queries, `${g}.queries`, 1), accuracy: num(t.accuracy, `${g}.accuracy`), depthAtQuery: num(t.depthAtQuery, `${g}.depthAtQuery`), meanDepth: num(t.meanDepth, `${g}.meanDepth`), flops: num(t.flops, `${g}.flops`), compute: num(t.compute, `${g}.compute`), byK };
    });
    if ((text === null) !== (textInfo === null)) fail(`${f}.text`, textInfo === null ? 'must be null: the report has no text' : 'is missing');
    if ((tasks === null) !== (tasksInfo === null)) fail(`${f}.tasks`, tasksInfo === null ? 'must be null: the report has no tasks' : 'is missing');
    if (tasks && tasks.byK.some((k) => !tasksInfo!.ks.includes(k.k))) fail(`${f}.tasks.byK`, 'names a k that tasks.ks does not list');
    const matched = nullable(r.matchedFixed, `${f}.matchedFixed`, (v, g) => { const m = obj(v, g); return { policy: str(m.policy, `${g}.policy`), saving: num(m.saving, `${g}.saving`) }; });
    const rises = r.depthRisesWithK;
    if (rises !== null && typeof rises !== 'boolean') fail(`${f}.depthRisesWithK`, 'must be true, false or null');
    return {
      policy: str(r.policy, `${f}.policy`), series: str(r.series, `${f}.series`), threshold: nullable(r.threshold, `${f}.threshold`, num), depth: nullable(r.depth, `${f}.depth`, (v, g) => int(v, g, 1)),
      text, tasks, matchedFixed: matched, depthRisesWithK: rises as boolean | null, ms: num(r.ms, `${f}.ms`),
    };
  });
  const names = new Set(rows.map((r) => r.policy));
  rows.forEach((r, i) => { if (r.matchedFixed && !names.has(r.matchedFixed.policy)) fail(`rows[${i}].matchedFixed.policy`, `names ${r.matchedFixed.policy}, which is not a row`); });
  const best = nullable(d.best, 'best', (v, f) => { const b = obj(v, f); return { policy: str(b.policy, `${f}.policy`), matchedFixed: str(b.matchedFixed, `${f}.matchedFixed`), saving: num(b.saving, `${f}.saving`) }; });
  if (best && (!names.has(best.policy) || !names.has(best.matchedFixed))) fail('best', 'names a policy that is not a row');
  if (best && !textInfo) fail('best', 'must be null: the report has no text');
  return {
    format: 'ponder-eval', version: 1, model: str(d.model, 'model'), family: str(d.family, 'family'), defaultDepth: int(d.defaultDepth, 'defaultDepth', 1),
    reference: str(d.reference, 'reference'), tolerance: num(d.tolerance, 'tolerance'),
    kvStrategy: d.kvStrategy === undefined ? null : nullable(d.kvStrategy, 'kvStrategy', str), // absent in reports written before it existed
    text: textInfo, tasks: tasksInfo, rows, best,
  };
}
