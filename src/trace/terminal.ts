/**
 * Terminal rendering of a trace: each token's text on a background coloured by its depth
 * (xterm 256 colours), a legend line for the colours, and the one-line run summary.
 * When the output is not a terminal everything is plain text: no escape codes at all.
 */
import { invalidArgument, stringArgument } from '../errors.js';
import { DEPTH_ANSI_INDICES, DEPTH_STOPS, depthAnsiIndex, textRgbOn } from './palette.js';
import type { TraceSummary } from './trace.js';

const RESET = '\x1b[0m';

function ansiColored(text: string, backgroundIndex: number): string {
  const stop = DEPTH_ANSI_INDICES.indexOf(backgroundIndex);
  const foreground = textRgbOn(DEPTH_STOPS[stop])[0] === 0 ? 16 : 231; // cube black / cube white
  // Colour each line on its own: a background carried over a newline paints the rest of the row.
  return text
    .split('\n')
    .map((line) => (line.length === 0 ? line : `\x1b[48;5;${backgroundIndex}m\x1b[38;5;${foreground}m${line}${RESET}`))
    .join('\n');
}

/**
 * `text` on the background colour of `depth` (0 ≤ depth ≤ maxDepth) when `isTTY`; otherwise
 * `text` unchanged. Control characters in `text` are the caller's business: this adds only SGR codes.
 */
export function colorTokenByDepth(text: string, depth: number, maxDepth: number, isTTY: boolean): string {
  stringArgument(text, 'colorTokenByDepth text');
  const index = depthAnsiIndex(depth, maxDepth); // validates depth and maxDepth in both modes
  return isTTY ? ansiColored(text, index) : text;
}

/**
 * One line explaining the colours: a swatch per depth 1..maxDepth (at most 10 swatches, evenly
 * spread, when maxDepth is larger). Without a terminal, a plain sentence saying what was omitted.
 */
export function depthLegend(maxDepth: number, isTTY: boolean): string {
  if (!(Number.isInteger(maxDepth) && maxDepth >= 1)) throw invalidArgument('depthLegend maxDepth', 'an integer ≥ 1', maxDepth);
  if (!isTTY) return `depth: 1..${maxDepth} steps per token (colours only on a terminal; see --json or ponder trace --html)`;
  const shown = maxDepth <= 10 ? Array.from({ length: maxDepth }, (_, i) => i + 1)
    : Array.from({ length: 10 }, (_, i) => Math.round(1 + (i * (maxDepth - 1)) / 9));
  const swatches = shown.map((d) => colorTokenByDepth(` ${d} `, d, maxDepth, true)).join('');
  return `depth ${swatches} of ${maxDepth} (lighter = fewer steps)`;
}

/** A rate with one decimal, or three significant digits below 10 (a full-size model decodes at 0.05 tok/s, not "0.0"). */
export function formatRate(perSecond: number): string {
  return perSecond >= 10 || perSecond === 0 || !Number.isFinite(perSecond) ? perSecond.toFixed(1) : perSecond.toPrecision(3);
}

/** The run summary as one line, e.g. "12 tokens, 35.3 tok/s · depth mean 3.25 (min 1, max 4, full 4) · compute saved 18.8%". */
export function formatSummary(summary: TraceSummary): string {
  const s = summary as unknown as Record<string, unknown>;
  if (s === null || typeof s !== 'object') throw invalidArgument('formatSummary summary', 'a TraceSummary (summarizeTrace(trace))', summary);
  for (const key of ['tokens', 'meanDepth', 'minDepth', 'maxDepth', 'fullDepth', 'computeSaved'] as const) {
    if (typeof s[key] !== 'number') throw invalidArgument(`formatSummary summary.${key}`, 'a number', s[key]);
  }
  if (s.tokensPerSecond !== null && typeof s.tokensPerSecond !== 'number') throw invalidArgument('formatSummary summary.tokensPerSecond', 'a number or null', s.tokensPerSecond);
  const speed = summary.tokensPerSecond === null ? 'time not measured' : `${formatRate(summary.tokensPerSecond)} tok/s`;
  return `${summary.tokens} tokens, ${speed} · depth mean ${summary.meanDepth.toFixed(2)} (min ${summary.minDepth}, max ${summary.maxDepth}, full ${summary.fullDepth})`
    + ` · compute saved ${(summary.computeSaved * 100).toFixed(1)}% vs full depth`;
}
