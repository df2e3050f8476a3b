/**
 * An EvalReport as text: the held-out text table (bits/byte, perplexity, mean depth, compute, the
 * fixed depth each adaptive row is compared with), the task table (accuracy and the depth at the
 * query per k), and two verdict lines — equal quality at less compute, and depth rising with k.
 */
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
  out.push(`ponder eval ${report.model} · ${report.family}, full depth ${report.defaultDepth} · compute = FLOPs relative to ${report.reference} on the same positions`);
  if (report.text) {
    const t = report.text;
    out.push('', `held-out text ${t.label}: ${thousands(t.tokens)} tokens${t.bytes === null ? '' : `, ${thousands(t.bytes)} bytes`}, windows of ${t.window}`);
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
    out.push('', `tasks ${t.label}: ${thousands(t.queries)} queries in ${t.windows} windows, k = ${t.ks.join(', ')}`);
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
