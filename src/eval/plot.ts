/**
 * An EvalReport drawn: one standalone SVG (for docs/ and the README) with the quality-vs-compute
 * curve — bits/byte (or task accuracy) against FLOPs relative to the full depth, the fixed depths as
 * one line and every adaptive rule's threshold sweep as another — and the depth at the query per k;
 * and a self-contained HTML page with the SVG and both tables. Every string from the report is
 * escaped (src/trace/html.ts style); the SVG styles itself with attributes, so it renders as an image.
 */
import { escapeHtml } from '../trace/html.js';
import type { EvalReport, EvalRow } from './evaluate.js';
import { depthVerdict, percent, plural, savingText, savingVerdict } from './report.js';

const SERIES_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
const FIXED_COLOUR = '#222222';
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12" fill="#333"';

/** The colour of each series, in order of first appearance (fixed is black). */
function seriesColours(rows: readonly EvalRow[]): Map<string, string> {
  const colours = new Map<string, string>();
  for (const r of rows) {
    if (colours.has(r.series)) continue;
    colours.set(r.series, r.series === 'fixed' ? FIXED_COLOUR : SERIES_COLOURS[(colours.size - (colours.has('fixed') ? 1 : 0)) % SERIES_COLOURS.length]);
  }
  return colours;
}

/** About five round ticks covering [lo, hi]. */
function ticks(lo: number, hi: number): number[] {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / 5, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function num(x: number): string {
  return Number(x.toPrecision(6)).toString();
}

interface Panel { x: number; y: number; w: number; h: number }

function frame(p: Panel, xTicks: number[], yTicks: number[], sx: (v: number) => number, sy: (v: number) => number, xLabel: string, yLabel: string, title: string, xText: (v: number) => string = num): string {
  const out: string[] = [];
  for (const v of yTicks) out.push(`<line x1="${p.x}" x2="${p.x + p.w}" y1="${sy(v).toFixed(1)}" y2="${sy(v).toFixed(1)}" stroke="#e4e4e4"/>`, `<text x="${p.x - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end">${escapeHtml(num(v))}</text>`);
  for (const v of xTicks) out.push(`<line x1="${sx(v).toFixed(1)}" x2="${sx(v).toFixed(1)}" y1="${p.y}" y2="${p.y + p.h}" stroke="#eeeeee"/>`, `<text x="${sx(v).toFixed(1)}" y="${p.y + p.h + 16}" text-anchor="middle">${escapeHtml(xText(v))}</text>`);
  out.push(`<rect x="${p.x}" y="${p.y}" width="${p.w}" height="${p.h}" fill="none" stroke="#888"/>`,
    `<text x="${p.x + p.w / 2}" y="${p.y + p.h + 34}" text-anchor="middle">${escapeHtml(xLabel)}</text>`,
    `<text x="${p.x - 46}" y="${p.y + p.h / 2}" text-anchor="middle" transform="rotate(-90 ${p.x - 46} ${p.y + p.h / 2})">${escapeHtml(yLabel)}</text>`,
    `<text x="${p.x}" y="${p.y - 8}" font-weight="600">${escapeHtml(title)}</text>`);
  return out.join('');
}

function range(values: number[], padFraction: number, floor?: number): [number, number] {
  let lo = Math.min(...values), hi = Math.max(...values);
  const pad = (hi - lo || Math.abs(hi) || 1) * padFraction;
  lo -= pad; hi += pad;
  if (floor !== undefined) lo = Math.max(lo, floor);
  return [lo, hi];
}

/** Quality (bits/byte, or task accuracy without text) against relative compute, one polyline per series. */
function qualityPanel(report: EvalReport, p: Panel, colours: Map<string, string>): string {
  const useText = report.text !== null;
  const pts = report.rows.map((r) => ({ r, x: useText ? r.text!.compute : r.tasks!.compute, y: useText ? r.text!.bitsPerByte ?? r.text!.bitsPerToken : r.tasks!.accuracy }));
  const [x0, x1] = range([0, ...pts.map((q) => q.x)], 0.04, 0);
  const [y0, y1] = range(pts.map((q) => q.y), 0.08);
  const sx = (v: number) => p.x + ((v - x0) / (x1 - x0)) * p.w;
  const sy = (v: number) => p.y + p.h - ((v - y0) / (y1 - y0)) * p.h;
  const quality = useText ? (report.text!.bytes === null ? 'bits/token' : 'bits/byte') : 'task accuracy';
  const out = [frame(p, ticks(x0, x1), ticks(y0, y1), sx, sy, `compute: FLOPs relative to ${report.reference}`, `${quality} (${useText ? 'lower' : 'higher'} is better)`,
    `${useText ? 'held-out ' : ''}${quality} vs compute`)];
  for (const [series, colour] of colours) {
    const s = pts.filter((q) => q.r.series === series).sort((a, b) => a.x - b.x);
    if (s.length > 1) out.push(`<polyline points="${s.map((q) => `${sx(q.x).toFixed(1)},${sy(q.y).toFixed(1)}`).join(' ')}" fill="none" stroke="${colour}" stroke-width="${series === 'fixed' ? 2 : 1.5}" opacity="0.85"/>`);
    for (const q of s) {
      const title = `${q.r.policy}: ${quality} ${q.y.toFixed(4)}, compute ${q.x.toFixed(3)}`;
      out.push(series === 'fixed'
        ? `<rect x="${(sx(q.x) - 3.5).toFixed(1)}" y="${(sy(q.y) - 3.5).toFixed(1)}" width="7" height="7" fill="${colour}"><title>${escapeHtml(title)}</title></rect>`
          + `<text x="${sx(q.x).toFixed(1)}" y="${(sy(q.y) - 8).toFixed(1)}" text-anchor="middle" font-size="10">${q.r.depth ?? ''}</text>`
        : `<circle cx="${sx(q.x).toFixed(1)}" cy="${sy(q.y).toFixed(1)}" r="3.5" fill="${colour}"><title>${escapeHtml(title)}</title></circle>`);
    }
  }
  // the comparison the verdict makes: the adaptive point and the fixed depth it is measured against
  const a = pts.find((q) => q.r.policy === report.best?.policy), f = pts.find((q) => q.r.policy === report.best?.matchedFixed);
  if (useText && report.best && a && f) {
    out.push(`<line x1="${sx(a.x).toFixed(1)}" y1="${sy(a.y).toFixed(1)}" x2="${sx(f.x).toFixed(1)}" y2="${sy(f.y).toFixed(1)}" stroke="#000" stroke-dasharray="4 3"/>`,
      `<text x="${((sx(a.x) + sx(f.x)) / 2).toFixed(1)}" y="${(Math.min(sy(a.y), sy(f.y)) - 10).toFixed(1)}" text-anchor="middle" font-size="11">${escapeHtml(`${savingText(report.best.saving)} than ${report.best.matchedFixed}`)}</text>`);
  }
  return out.join('');
}

/** The depth at the query against k, one polyline per adaptive row (fixed rows are flat and left out). */
function depthPanel(report: EvalReport, p: Panel, colours: Map<string, string>): string {
  const ks = report.tasks!.ks;
  const rows = report.rows.filter((r) => r.series !== 'fixed' && r.tasks);
  const maxDepth = Math.max(1, ...report.rows.filter((r) => r.tasks).map((r) => Math.max(...r.tasks!.byK.map((k) => k.depthAtQuery))));
  const y1 = Math.ceil(maxDepth);
  const sx = (k: number) => p.x + (ks.length === 1 ? p.w / 2 : ((ks.indexOf(k)) / (ks.length - 1)) * (p.w - 40) + 20);
  const sy = (v: number) => p.y + p.h - (v / (y1 * 1.06)) * p.h; // headroom: lines at the full depth stay visible
  const out = [frame(p, ks, ticks(0, y1), sx, sy, 'k (hops / steps the answer needs)', 'depth at the query', 'depth at the query vs k', (k) => String(k))];
  for (const r of rows) {
    const colour = colours.get(r.series)!;
    const pts = r.tasks!.byK.map((k) => `${sx(k.k).toFixed(1)},${sy(k.depthAtQuery).toFixed(1)}`);
    out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${colour}" stroke-width="${r.depthRisesWithK ? 2 : 1}" opacity="0.8"><title>${escapeHtml(`${r.policy}: ${r.tasks!.byK.map((k) => `k=${k.k} ${k.depthAtQuery.toFixed(2)}`).join(', ')}`)}</title></polyline>`);
  }
  if (rows.length === 0) out.push(`<text x="${p.x + p.w / 2}" y="${p.y + p.h / 2}" text-anchor="middle">no adaptive policy ran</text>`);
  return out.join('');
}

/** The plot as a standalone SVG document. */
export function renderEvalSvg(report: EvalReport): string {
  const colours = seriesColours(report.rows);
  const withDepth = report.tasks !== null && report.tasks.ks.length > 0;
  const W = 1000, panelH = 300, top = 52;
  const legendRows = Math.ceil(colours.size / 5);
  const H = top + panelH + 56 + legendRows * 18 + 10;
  const panels = withDepth
    ? [{ x: 70, y: top, w: 520, h: panelH }, { x: 680, y: top, w: 300, h: panelH }]
    : [{ x: 70, y: top, w: 900, h: panelH }];
  const title = `${report.model} (${report.family}): quality vs compute`;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" ${FONT} role="img" aria-label="${escapeHtml(title)}">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">${escapeHtml(title)}</text>`,
    qualityPanel(report, panels[0], colours)];
  if (withDepth) out.push(depthPanel(report, panels[1], colours));
  let i = 0;
  for (const [series, colour] of colours) {
    const x = 70 + (i % 5) * 185, y = top + panelH + 56 + Math.floor(i / 5) * 18;
    out.push(`<rect x="${x}" y="${y - 9}" width="14" height="10" fill="${colour}"/>`, `<text x="${x + 20}" y="${y}">${escapeHtml(series === 'fixed' ? 'fixed(n) (n labelled)' : series)}</text>`);
    i++;
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}

const CSS = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 28px 0 8px; }
table { border-collapse: collapse; } td, th { padding: 2px 12px 2px 0; text-align: right; font-variant-numeric: tabular-nums; }
td:first-child, th:first-child { text-align: left; } th { border-bottom: 1px solid #ccc; font-weight: 600; }
table.facts td { text-align: left; } table.facts td:first-child { color: #666; }
svg { display: block; width: 100%; height: auto; border: 1px solid #ddd; border-radius: 4px; }
p.verdict { font-weight: 600; }
`;

function htmlTable(head: string[], rows: string[][]): string {
  return `<table><tr>${head.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('')}</table>`;
}

/** The report as one self-contained HTML page: facts, the plot, both tables and the verdicts. */
export function renderEvalHtml(report: EvalReport): string {
  const title = `ponder eval: ${report.model}`;
  const facts: Array<[string, string]> = [
    ['model', `${report.model} (${report.family}, full depth ${report.defaultDepth})`],
    ['compute', `FLOPs relative to ${report.reference} on the same positions`],
    ...(report.kvStrategy ? [['KV strategy', report.kvStrategy] as [string, string]] : []),
    ...(report.text ? [['held-out text', `${report.text.label}: ${plural(report.text.tokens, 'token')}${report.text.bytes === null ? '' : `, ${plural(report.text.bytes, 'byte')}`} in ${plural(report.text.windows, 'window')}`] as [string, string]] : []),
    ...(report.tasks ? [['tasks', `${report.tasks.label}: ${plural(report.tasks.queries, 'query', 'queries')} in ${plural(report.tasks.windows, 'window')}, k = ${report.tasks.ks.join(', ')}`] as [string, string]] : []),
  ];
  const parts = ['<!doctype html>', '<html lang="en"><head><meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`, `<style>${CSS}</style>`, '</head><body>', `<h1>${escapeHtml(title)}</h1>`,
    `<table class="facts">${facts.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(v)}</td></tr>`).join('')}</table>`];
  for (const v of [savingVerdict(report), depthVerdict(report)]) if (v !== null) parts.push(`<p class="verdict">${escapeHtml(v)}</p>`);
  parts.push(renderEvalSvg(report).replace(/^<svg [^>]*?width="\d+" height="\d+"/, (m) => m.replace(/ width="\d+" height="\d+"/, '')));
  if (report.text) {
    parts.push('<h2>Held-out text</h2>', htmlTable(['policy', report.text.bytes === null ? 'bits/token' : 'bits/byte', 'perplexity', 'mean depth', 'compute', `saving vs the cheapest fixed depth within ${(100 * report.tolerance).toFixed(0)} %`],
      report.rows.filter((r) => r.text).map((r) => [r.policy, (r.text!.bitsPerByte ?? r.text!.bitsPerToken).toFixed(4), r.text!.perplexity.toFixed(2), r.text!.meanDepth.toFixed(2), r.text!.compute.toFixed(3),
        r.matchedFixed ? `${r.matchedFixed.policy}: ${percent(r.matchedFixed.saving)}` : ''])));
  }
  if (report.tasks) {
    const ks = report.tasks.ks;
    parts.push('<h2>Tasks: accuracy and the depth at the query per k</h2>', htmlTable(['policy', 'accuracy', ...ks.map((k) => `acc k=${k}`), ...ks.map((k) => `depth@q k=${k}`), 'mean depth', 'compute'],
      report.rows.filter((r) => r.tasks).map((r) => {
        const at = (k: number) => r.tasks!.byK.find((x) => x.k === k);
        return [r.policy, r.tasks!.accuracy.toFixed(3), ...ks.map((k) => at(k)?.accuracy.toFixed(2) ?? '–'), ...ks.map((k) => at(k)?.depthAtQuery.toFixed(2) ?? '–'), r.tasks!.meanDepth.toFixed(2), r.tasks!.compute.toFixed(3)];
      })));
  }
  parts.push('</body></html>', '');
  return parts.join('\n');
}
