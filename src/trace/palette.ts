/**
 * One colour scale for depth, shared by the terminal and the HTML page: light yellow for shallow
 * tokens through orange and red to dark red for the deepest. No channel ever increases from one
 * stop to the next, so even after rounding to 8 bits the relative luminance falls with depth: the
 * order survives grey-scale printing and most colour-vision deficiencies.
 */
import { describeValue, PonderError } from '../errors.js';

export type Rgb = readonly [number, number, number];

/**
 * The stops, shallow to deep, as xterm-256 colour-cube coordinates (each 0..5), so the terminal can
 * show exactly the colours the page interpolates between.
 */
const CUBE_STOPS: readonly Rgb[] = [
  [5, 5, 4], [5, 5, 2], [5, 4, 1], [5, 3, 0], [5, 2, 0], [5, 1, 0], [4, 0, 0], [3, 0, 0], [2, 0, 0], [1, 0, 0],
];
const CUBE_LEVELS = [0, 95, 135, 175, 215, 255]; // channel value of cube coordinate 0..5 (xterm)

/** The stops as 0..255 RGB. */
export const DEPTH_STOPS: readonly Rgb[] = CUBE_STOPS.map(([r, g, b]) => [CUBE_LEVELS[r], CUBE_LEVELS[g], CUBE_LEVELS[b]] as const);
/** The stops as xterm-256 colour indices (16 + 36 r + 6 g + b). */
export const DEPTH_ANSI_INDICES: readonly number[] = CUBE_STOPS.map(([r, g, b]) => 16 + 36 * r + 6 * g + b);

/** depth / maxDepth in [0, 1]; ARG_INVALID unless 0 ≤ depth ≤ maxDepth and maxDepth ≥ 1 (integers not required). */
export function depthFraction(depth: number, maxDepth: number): number {
  if (!(Number.isFinite(maxDepth) && maxDepth >= 1)) {
    throw new PonderError('ARG_INVALID', `maxDepth must be a finite number ≥ 1, got ${describeValue(maxDepth)}`, { field: 'maxDepth', hint: 'pass the full depth (max steps) of the model' });
  }
  if (!(Number.isFinite(depth) && depth >= 0 && depth <= maxDepth)) {
    throw new PonderError('ARG_INVALID', `depth must be in [0, ${maxDepth}], got ${describeValue(depth)}`, { field: 'depth', hint: 'a token cannot use more steps than the full depth' });
  }
  return depth / maxDepth;
}

/** The continuous colour of a depth: linear interpolation between the stops. */
export function depthRgb(depth: number, maxDepth: number): Rgb {
  const x = depthFraction(depth, maxDepth) * (DEPTH_STOPS.length - 1);
  const i = Math.min(Math.floor(x), DEPTH_STOPS.length - 2);
  const f = x - i;
  const a = DEPTH_STOPS[i];
  const b = DEPTH_STOPS[i + 1];
  return [0, 1, 2].map((c) => Math.round(a[c] + f * (b[c] - a[c]))) as unknown as Rgb;
}

/** The nearest stop of a depth, as an xterm-256 index: the terminal has no continuous colours. */
export function depthAnsiIndex(depth: number, maxDepth: number): number {
  return DEPTH_ANSI_INDICES[Math.round(depthFraction(depth, maxDepth) * (DEPTH_ANSI_INDICES.length - 1))];
}

/** WCAG relative luminance of an sRGB colour, 0 (black) to 1 (white). */
export function relativeLuminance([r, g, b]: Rgb): number {
  const linear = (c: number) => {
    const s = c / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
}

/** Black or white, whichever reads better on `background` (WCAG contrast ratio). */
export function textRgbOn(background: Rgb): Rgb {
  const l = relativeLuminance(background);
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? [0, 0, 0] : [255, 255, 255];
}

export function rgbHex([r, g, b]: Rgb): string {
  return '#' + [r, g, b].map((c) => c.toString(16).padStart(2, '0')).join('');
}
