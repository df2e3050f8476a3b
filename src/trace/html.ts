/**
 * A trace as one self-contained HTML page: run facts and summary, a per-token depth heatmap with
 * a legend, depth per token as bars, and per-step criterion curves (and router scores, for MoR).
 * Everything is inline (CSS, a few lines of JS for hover highlighting, SVG charts): the page opens
 * from disk with no network. Every string from the trace is HTML-escaped; the script reads only
 * numeric data-i attributes, so token text can never become markup or code.
 */
import { DEPTH_STOPS, depthRgb, rgbHex, textRgbOn } from './palette.js';
import { summarizeTrace, type RunTrace, type TokenTrace, type TraceSummary } from './trace.js';

const HTML_ENTITIES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const HTML_SPECIAL = /[&<>"']/;

export function escapeHtml(text: string): string {
  return HTML_SPECIAL.test(text) ? text.replace(/[&<>"']/g, (c) => HTML_ENTITIES[c]) : text; // most token texts have nothing to escape
}

/** Short, readable numbers: integers as is, others with 4 significant digits (exponent when tiny or huge). */
function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x) && Math.abs(x) < 1e15) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? x.toExponential(3) : String(Number(x.toPrecision(4)));
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

const CSS = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 28px 0 8px; }
table.facts { border-collapse: collapse; } table.facts td { padding: 2px 14px 2px 0; vertical-align: top; }
table.facts td:first-child { color: #666; }
.legend { display: flex; align-items: center; gap: 2px; flex-wrap: wrap; }
.legend .sw { display: inline-block; min-width: 26px; padding: 2px 4px; text-align: center; font-variant-numeric: tabular-nums; border-radius: 3px; }
.legend .caption { margin-left: 10px; color: #666; }
.tokens { white-space: pre-wrap; word-break: break-word; font: 14px/1.9 ui-monospace, SFMono-Regular, Menlo, monospace; border: 1px solid #ddd; padding: 10px; border-radius: 4px; }
.tok { border-radius: 2px; padding: 1px 0; cursor: default; }
.tok.ws { outline: 1px dotted #999; }
.tok.prompt { text-decoration: underline dotted #555; }
.tok.hl, polyline.hl { outline: 2px solid #000; }
svg { display: block; width: 100%; height: auto; background: #fafafa; border: 1px solid #ddd; border-radius: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
svg .axis { stroke: #888; stroke-width: 1; } svg .grid { stroke: #e4e4e4; stroke-width: 1; }
svg .threshold { stroke: #000; stroke-dasharray: 5 4; stroke-width: 1; }
svg polyline { fill: none; stroke-width: 1.5; opacity: 0.75; } svg polyline.hl { stroke-width: 3.5; opacity: 1; outline: none; }
p.note { color: #666; }
`;

// Hover a token (span, bar or curve) to highlight all its marks. Reads only numeric data-i attributes.
const SCRIPT = `
for (const el of document.querySelectorAll('[data-i]')) {
  const same = () => document.querySelectorAll('[data-i="' + Number(el.getAttribute('data-i')) + '"]');
  el.addEventListener('mouseenter', () => { for (const m of same()) m.classList.add('hl'); });
  el.addEventListener('mouseleave', () => { for (const m of same()) m.classList.remove('hl'); });
}
`;

export interface TraceHtmlOptions {
  /** Page title; default "ponder trace: <family>, <policy>". */
  title?: string;
}

/**
 * What every mark of a token shares, computed once per token (a trace may hold 100,000s of tokens):
 * its escaped hover text and its colours, cached by depth.
 */
interface TokenMarks {
  readonly titles: string[];
  /** background and text colour of a depth, as '#rrggbb' */
  colours(steps: number): { bg: string; fg: string };
}

function tokenMarks(tokens: readonly TokenTrace[], fullDepth: number): TokenMarks {
  const cache = new Map<number, { bg: string; fg: string }>();
  return {
    titles: tokens.map((t, i) => escapeHtml(tokenTitle(t, i))),
    colours(steps: number) {
      let c = cache.get(steps);
      if (!c) {
        const bg = depthRgb(steps, fullDepth);
        cache.set(steps, c = { bg: rgbHex(bg), fg: rgbHex(textRgbOn(bg)) });
      }
      return c;
    },
  };
}

export function renderTraceHtml(run: RunTrace, options: TraceHtmlOptions = {}): string {
  const summary = summarizeTrace(run); // also validates the trace
  let fullDepth = 1; // a loop, not Math.max(...tokens): a trace may hold more tokens than a call may take arguments
  for (const t of run.tokens) fullDepth = Math.max(fullDepth, t.maxSteps);
  const marks = tokenMarks(run.tokens, fullDepth);
  const title = options.title ?? `ponder trace: ${run.family}, ${run.policy}`;
  const parts = [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head><body>',
    `<h1>${escapeHtml(title)}</h1>`,
    factsTable(run, summary),
    '<h2>Tokens by depth</h2>',
    legend(fullDepth),
    tokenHeatmap(run.tokens, marks),
    '<h2>Depth per token</h2>',
    depthBars(run.tokens, fullDepth, marks),
    '<h2>Exit criterion per step</h2>',
    curves(run.tokens, fullDepth, 'criterionValues', 'criterion value', marks),
  ];
  if (run.tokens.some((t) => t.routerScores.some((v) => typeof v === 'number'))) {
    parts.push('<h2>Router score per recursion</h2>', curves(run.tokens, fullDepth, 'routerScores', 'router score', marks));
  }
  parts.push(`<script>${SCRIPT}</script>`, '</body></html>', '');
  return parts.join('\n');
}

function factsTable(run: RunTrace, s: TraceSummary): string {
  const rows: Array<[string, string]> = [
    ['family', run.family],
    ...(run.model !== undefined ? [['model', run.model] as [string, string]] : []),
    ['depth policy', run.policy],
    ...(run.sampling ? [['sampling', Object.entries(run.sampling).map(([k, v]) => `${k}=${v === null ? 'off' : formatNumber(v)}`).join(', ')] as [string, string]] : []),
    ['generated tokens', `${s.tokens}` + (s.tokensPerSecond === null ? '' : ` at ${s.tokensPerSecond.toFixed(1)} tokens/s`)],
    ['depth', `mean ${s.meanDepth.toFixed(2)}, min ${s.minDepth}, max ${s.maxDepth}, full ${s.fullDepth}`],
    ['compute saved', `${(s.computeSaved * 100).toFixed(1)}% of full depth (${s.stepsUsed} of ${s.stepsFull} steps)`],
    ['FLOPs', formatNumber(s.flops)],
    ['peak KV cache', formatBytes(s.kvBytesPeak)],
  ];
  return `<table class="facts">${rows.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(v)}</td></tr>`).join('')}</table>`;
}

function swatch(depth: number, fullDepth: number, label: string): string {
  const bg = depthRgb(depth, fullDepth);
  return `<span class="sw" style="background:${rgbHex(bg)};color:${rgbHex(textRgbOn(bg))}">${escapeHtml(label)}</span>`;
}

function legend(fullDepth: number): string {
  const depths = fullDepth <= 16 ? Array.from({ length: fullDepth + 1 }, (_, d) => d)
    : Array.from({ length: DEPTH_STOPS.length }, (_, i) => Math.round((i * fullDepth) / (DEPTH_STOPS.length - 1)));
  return `<div class="legend">depth&nbsp;${depths.map((d) => swatch(d, fullDepth, String(d))).join('')}`
    + `<span class="caption">steps used per token, of ${fullDepth}; lighter = fewer</span></div>`;
}

function tokenTitle(t: TokenTrace, index: number): string {
  let lastValue: number | undefined;
  for (let s = t.criterionValues.length - 1; s >= 0 && lastValue === undefined; s--) { const v = t.criterionValues[s]; if (typeof v === 'number') lastValue = v; }
  const criterion = t.criterion !== undefined ? `${t.criterion}${t.threshold !== undefined ? ` < ${formatNumber(t.threshold)}?` : ''}${lastValue !== undefined ? ` last value ${formatNumber(lastValue)}` : ''}\n` : '';
  return `#${index} id ${t.id}${t.phase === 'prefill' ? ' (prompt)' : ''}\ndepth ${t.steps}/${t.maxSteps}, exit: ${t.exitReason}\n${criterion}${formatNumber(t.flops)} FLOPs, KV ${formatBytes(t.kvBytes)}`;
}

function tokenHeatmap(tokens: TokenTrace[], marks: TokenMarks): string {
  if (tokens.length === 0) return '<p class="note">no tokens in this trace</p>';
  const spans = tokens.map((t, i) => {
    const text = t.text ?? `[${t.id}]`;
    const { bg, fg } = marks.colours(t.steps);
    const whitespace = text.length === 0 || /^\s+$/.test(text);
    const shown = text.length === 0 ? '\u2205' : text;
    const classes = `tok${whitespace ? ' ws' : ''}${t.phase === 'prefill' ? ' prompt' : ''}`;
    return `<span class="${classes}" data-i="${i}" style="background:${bg};color:${fg}" title="${marks.titles[i]}">${escapeHtml(shown)}</span>`;
  });
  const note = tokens.some((t) => t.phase === 'prefill') ? '<p class="note">prompt tokens are underlined; the summary counts generated tokens only</p>' : '';
  return `<div class="tokens">${spans.join('')}</div>${note}`;
}

// ---------------------------------------------------------------- SVG charts

const W = 1000; // viewBox width
const PAD = { left: 64, right: 16, top: 12, bottom: 34 };
/**
 * Per-token marks a chart draws at most: more bars than the plot is wide cannot be seen one by one,
 * nor can more curves on top of each other. A longer trace's bars each cover a run of consecutive
 * tokens (their mean depth), and its curves are every k-th token's, said in a note; the heatmap
 * always shows every token.
 */
export const MAX_CHART_TOKENS = 2000;

function depthBars(tokens: TokenTrace[], fullDepth: number, marks: TokenMarks): string {
  if (tokens.length === 0) return '<p class="note">no tokens in this trace</p>';
  const H = 180;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const per = Math.ceil(tokens.length / MAX_CHART_TOKENS); // tokens per bar
  const bars = Math.ceil(tokens.length / per);
  const barW = plotW / bars;
  const y = (steps: number) => PAD.top + plotH - (steps / fullDepth) * plotH;
  const out = [`<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="steps used per token">`];
  for (const d of yTicksInteger(fullDepth)) {
    out.push(`<line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(d)}" y2="${y(d)}"/>`, `<text x="${PAD.left - 6}" y="${y(d) + 4}" text-anchor="end">${d}</text>`);
  }
  for (let bar = 0; bar < bars; bar++) {
    const x = PAD.left + bar * barW;
    const width = Math.max(barW - (barW > 3 ? 1 : 0), 0.5).toFixed(2);
    if (per === 1) {
      const t = tokens[bar];
      out.push(`<rect data-i="${bar}" x="${x.toFixed(2)}" y="${y(t.steps).toFixed(2)}" width="${width}" height="${(PAD.top + plotH - y(t.steps)).toFixed(2)}" fill="${marks.colours(t.steps).bg}"><title>${marks.titles[bar]}</title></rect>`);
      continue;
    }
    const first = bar * per, last = Math.min(tokens.length, first + per) - 1;
    let sum = 0, lo = Infinity, hi = 0;
    for (let i = first; i <= last; i++) { const st = tokens[i].steps; sum += st; lo = Math.min(lo, st); hi = Math.max(hi, st); }
    const mean = sum / (last - first + 1);
    out.push(`<rect x="${x.toFixed(2)}" y="${y(mean).toFixed(2)}" width="${width}" height="${(PAD.top + plotH - y(mean)).toFixed(2)}" fill="${marks.colours(Math.round(mean)).bg}"><title>tokens #${first}–#${last}: mean depth ${mean.toFixed(2)} (min ${lo}, max ${hi})</title></rect>`);
  }
  out.push(axes(H, per === 1 ? 'token' : `token (each bar: the mean of ${per} consecutive tokens)`, 'steps'), '</svg>');
  return out.join('');
}

function yTicksInteger(max: number): number[] {
  const step = Math.max(1, Math.ceil(max / 8));
  const ticks: number[] = [];
  for (let d = 0; d <= max; d += step) ticks.push(d);
  if (ticks[ticks.length - 1] !== max) ticks.push(max);
  return ticks;
}

function axes(H: number, xLabel: string, yLabel: string): string {
  const bottom = H - PAD.bottom;
  return `<line class="axis" x1="${PAD.left}" x2="${W - PAD.right}" y1="${bottom}" y2="${bottom}"/>`
    + `<line class="axis" x1="${PAD.left}" x2="${PAD.left}" y1="${PAD.top}" y2="${bottom}"/>`
    + `<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - 6}" text-anchor="middle">${escapeHtml(xLabel)}</text>`
    + `<text x="14" y="${(PAD.top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(PAD.top + bottom) / 2})">${escapeHtml(yLabel)}</text>`;
}

/** One polyline per token over steps 1..fullDepth; broken where a value is missing or not finite. */
function curves(tokens: TokenTrace[], fullDepth: number, key: 'criterionValues' | 'routerScores', yLabel: string, marks: TokenMarks): string {
  const values: number[] = [];
  for (const t of tokens) for (const v of t[key]) if (typeof v === 'number' && Number.isFinite(v)) values.push(v);
  const thresholds = key === 'criterionValues'
    ? [...new Set(tokens.filter((t) => typeof t.threshold === 'number' && Number.isFinite(t.threshold)).map((t) => t.threshold!))] : [];
  if (values.length === 0) {
    return `<p class="note">no ${escapeHtml(yLabel)}s were recorded (this depth policy evaluates none)</p>`;
  }
  const H = 320;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  let lo = Infinity, hi = -Infinity;
  for (const v of values.concat(thresholds)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  // Criterion values typically fall over orders of magnitude: use a log axis when they are all
  // positive and span at least two decades.
  const logScale = lo > 0 && hi / lo >= 100;
  const f = logScale ? Math.log10 : (v: number) => v;
  if (lo === hi) {
    lo -= 0.5 * (Math.abs(lo) || 1);
    hi += 0.5 * (Math.abs(hi) || 1);
  }
  const [flo, fhi] = [f(lo), f(hi)];
  const x = (step: number) => PAD.left + (fullDepth === 1 ? plotW / 2 : ((step - 1) / (fullDepth - 1)) * plotW);
  const y = (v: number) => PAD.top + plotH - ((f(v) - flo) / (fhi - flo)) * plotH;

  const out = [`<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(yLabel)} per step">`];
  const yTicks = logScale
    ? Array.from({ length: Math.floor(fhi) - Math.ceil(flo) + 1 }, (_, i) => 10 ** (Math.ceil(flo) + i))
    : Array.from({ length: 5 }, (_, i) => lo + (i * (hi - lo)) / 4);
  for (const v of yTicks) {
    out.push(`<line class="grid" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v).toFixed(2)}" y2="${y(v).toFixed(2)}"/>`,
      `<text x="${PAD.left - 6}" y="${(y(v) + 4).toFixed(2)}" text-anchor="end">${escapeHtml(formatNumber(v))}</text>`);
  }
  const xStep = Math.max(1, Math.ceil(fullDepth / 16));
  for (let s = 1; s <= fullDepth; s += xStep) {
    out.push(`<text x="${x(s).toFixed(2)}" y="${H - PAD.bottom + 14}" text-anchor="middle">${s}</text>`);
  }
  for (const th of thresholds) {
    out.push(`<line class="threshold" x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(th).toFixed(2)}" y2="${y(th).toFixed(2)}"><title>threshold ${escapeHtml(formatNumber(th))}</title></line>`);
  }
  // every k-th token with values, when there are more than the chart can show apart
  const drawn: number[] = [];
  for (let i = 0; i < tokens.length; i++) if (tokens[i][key].some((v) => typeof v === 'number' && Number.isFinite(v))) drawn.push(i);
  const every = Math.ceil(drawn.length / MAX_CHART_TOKENS);
  for (let n = 0; n < drawn.length; n += every) {
    const i = drawn[n], t = tokens[i];
    const colour = marks.colours(t.steps).bg;
    // split into runs of consecutive finite values
    let run: string[] = [];
    const flush = () => {
      const label = `<title>${marks.titles[i]}</title>`;
      if (run.length === 1) {
        // a lone value (one check, or neighbours missing) has no line to draw: mark it with a dot
        const [cx, cy] = run[0].split(',');
        out.push(`<circle data-i="${i}" cx="${cx}" cy="${cy}" r="3" fill="${colour}">${label}</circle>`);
      } else if (run.length > 1) {
        out.push(`<polyline data-i="${i}" stroke="${colour}" points="${run.join(' ')}">${label}</polyline>`);
      }
      run = [];
    };
    t[key].forEach((v, s) => {
      if (typeof v === 'number' && Number.isFinite(v)) run.push(`${x(s + 1).toFixed(2)},${y(v).toFixed(2)}`);
      else flush();
    });
    flush();
  }
  out.push(axes(H, 'step', yLabel + (logScale ? ' (log scale)' : '')), '</svg>');
  const note = every > 1 ? `<p class="note">${Math.ceil(drawn.length / every)} of the ${drawn.length} tokens with ${escapeHtml(yLabel)}s are drawn (every ${every}th), so the curves stay apart</p>` : '';
  return out.join('') + note;
}
