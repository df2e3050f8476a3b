import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { colorTokenByDepth, depthLegend, formatSummary } from '../src/trace/terminal.js';
import { DEPTH_ANSI_INDICES, DEPTH_STOPS, depthAnsiIndex, depthRgb, relativeLuminance } from '../src/trace/palette.js';
import { summarizeTrace } from '../src/trace/trace.js';
import { PonderError } from '../src/errors.js';
import { sampleRun } from './trace-arbitraries.js';

const ESC = '\x1b';

test('page colours get strictly darker with depth (luminance falls), at every full depth', () => {
  for (const maxDepth of [1, 2, 3, 4, 8, 16, 32, 64, 100]) {
    let previous = Infinity;
    for (let d = 0; d <= maxDepth; d++) {
      const l = relativeLuminance(depthRgb(d, maxDepth));
      assert.ok(l < previous, `maxDepth ${maxDepth}: depth ${d} is not darker than depth ${d - 1}`);
      previous = l;
    }
  }
  // and between integer depths too (the interpolation itself is monotone)
  let previous = Infinity;
  for (let x = 0; x <= 1000; x++) {
    const l = relativeLuminance(depthRgb(x / 1000, 1));
    assert.ok(l <= previous);
    previous = l;
  }
});

test('terminal colours never get lighter with depth, and full depth is the darkest', () => {
  const luminanceOfIndex = (index: number) => relativeLuminance(DEPTH_STOPS[DEPTH_ANSI_INDICES.indexOf(index)]);
  for (const maxDepth of [1, 2, 4, 7, 10, 32, 100]) {
    let previous = Infinity;
    for (let d = 0; d <= maxDepth; d++) {
      const l = luminanceOfIndex(depthAnsiIndex(d, maxDepth));
      assert.ok(l <= previous, `maxDepth ${maxDepth}: depth ${d} is lighter than depth ${d - 1}`);
      previous = l;
    }
    assert.equal(depthAnsiIndex(maxDepth, maxDepth), DEPTH_ANSI_INDICES[DEPTH_ANSI_INDICES.length - 1]);
  }
  // with up to 10 depths every depth gets its own colour
  for (let maxDepth = 1; maxDepth <= 9; maxDepth++) {
    const indices = Array.from({ length: maxDepth + 1 }, (_, d) => depthAnsiIndex(d, maxDepth));
    assert.equal(new Set(indices).size, maxDepth + 1);
  }
});

test('not a TTY: the token text comes back unchanged, with no escape codes', () => {
  fc.assert(fc.property(fc.string(), fc.integer({ min: 1, max: 64 }), fc.nat(), (text, maxDepth, n) => {
    const depth = n % (maxDepth + 1);
    assert.equal(colorTokenByDepth(text, depth, maxDepth, false), text);
  }));
  assert.ok(!depthLegend(4, false).includes(ESC));
  assert.match(depthLegend(4, false), /depth/);
});

test('on a TTY the text is wrapped in the depth\'s 256-colour background and reset, line by line', () => {
  const coloured = colorTokenByDepth('a\nb', 3, 4, true);
  const index = depthAnsiIndex(3, 4);
  assert.equal(coloured.split('\n').length, 2);
  for (const line of coloured.split('\n')) {
    assert.ok(line.startsWith(`${ESC}[48;5;${index}m`), JSON.stringify(line));
    assert.ok(line.endsWith(`${ESC}[0m`));
  }
  // removing the escape codes gives the text back
  assert.equal(coloured.replace(/\x1b\[[0-9;]*m/g, ''), 'a\nb');
});

test('the TTY legend shows a swatch for each depth with its number', () => {
  const legend = depthLegend(4, true);
  for (let d = 1; d <= 4; d++) assert.ok(legend.includes(`${ESC}[48;5;${depthAnsiIndex(d, 4)}m`) && legend.includes(` ${d} `));
  assert.equal(legend.split('\n').length, 1);
  // a deep model gets at most 10 swatches
  assert.ok((depthLegend(64, true).match(/\x1b\[48;5;/g) ?? []).length <= 10);
});

test('a depth outside [0, maxDepth] is ARG_INVALID, TTY or not', () => {
  for (const tty of [true, false]) {
    assert.throws(() => colorTokenByDepth('x', 5, 4, tty), (e) => e instanceof PonderError && e.field === 'depth');
    assert.throws(() => colorTokenByDepth('x', 1, 0, tty), (e) => e instanceof PonderError && e.field === 'maxDepth');
  }
});

test('the summary line states tokens/s, depth statistics and compute saved', () => {
  const summary = summarizeTrace(sampleRun());
  const line = formatSummary(summary);
  assert.match(line, /^3 tokens, 20\.0 tok\/s/);
  assert.match(line, /depth mean 3\.00 \(min 2, max 4, full 4\)/);
  assert.match(line, /compute saved 25\.0% vs full depth/);
});
