import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { renderTraceHtml, escapeHtml } from '../src/trace/html.js';
import { depthRgb, rgbHex } from '../src/trace/palette.js';
import { runTraceArb, sampleRun } from './trace-arbitraries.js';

/** Every place a page could fetch something: src/href/action attributes, CSS url() and @import. */
function externalReferences(html: string): string[] {
  const found: string[] = [];
  for (const m of html.matchAll(/\b(?:src|href|action|xlink:href|srcset)\s*=\s*["']?([^"'\s>]*)/gi)) found.push(m[0]);
  for (const m of html.matchAll(/url\s*\(|@import/gi)) found.push(m[0]);
  for (const m of html.matchAll(/\b(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}/gi)) found.push(m[0]);
  return found;
}

test('the page references nothing outside itself: no src, href, url() or http(s) address', () => {
  fc.assert(fc.property(runTraceArb, (run) => {
    // token texts here never contain an address, so any address found would be ours
    const html = renderTraceHtml(run);
    assert.deepEqual(externalReferences(html), []);
    assert.match(html, /^<!doctype html>/);
  }), { numRuns: 100 });
});

test('token text is escaped: a "<script>" token is shown, never parsed as markup', () => {
  const evil = ['<script>alert(1)</script>', '" onmouseover="alert(2)', "'><img src=x onerror=alert(3)>", '&amp; stays &amp;'];
  const html = renderTraceHtml(sampleRun(evil.slice(0, 3)));
  // the page has exactly one script element: its own, at the end
  assert.equal(html.match(/<script/gi)?.length, 1);
  assert.ok(html.lastIndexOf('<script>') > html.lastIndexOf('data-i="2"'));
  assert.ok(!html.includes('<img'));
  // no element carries an event-handler attribute (the hostile text sits inside escaped values)
  for (const tag of html.match(/<[a-z][^>]*>/gi) ?? []) {
    for (const attr of tag.matchAll(/\s([a-z:-]+)=("[^"]*"|'[^']*'|[^\s>]+)/gi)) assert.ok(!/^on/i.test(attr[1]), `event handler in ${tag}`);
  }
  for (const text of evil.slice(0, 3)) assert.ok(html.includes(escapeHtml(text)), `shows ${text} escaped`);
  assert.equal(escapeHtml(evil[3]), '&amp;amp; stays &amp;amp;');
});

test('escaping holds for arbitrary token text, model and policy strings', () => {
  fc.assert(fc.property(fc.array(fc.string({ maxLength: 12 }), { minLength: 1, maxLength: 6 }), fc.string(), (texts, model) => {
    const run = { ...sampleRun(texts), model };
    const html = renderTraceHtml(run);
    // strip our own markup: what remains between tags must contain no raw '<' from the data
    const tags = html.match(/<[^>]*>/g) ?? [];
    for (const tag of tags) assert.match(tag, /^<\/?(!doctype|html|head|meta|title|style|body|h1|h2|table|tr|td|div|span|p|svg|line|text|rect|polyline|circle|script)\b/i, `unexpected tag ${tag}`);
  }), { numRuns: 100 });
});

test('every token appears in the heatmap, coloured by its depth, with a legend for each depth', () => {
  const run = sampleRun(['alpha', 'beta', 'gamma', 'delta']);
  const html = renderTraceHtml(run);
  for (const [i, t] of run.tokens.entries()) {
    const span = html.match(new RegExp(`<span class="tok[^"]*" data-i="${i}" style="background:(#[0-9a-f]{6})`));
    assert.ok(span, `token ${i} has a heatmap span`);
    assert.equal(span[1], rgbHex(depthRgb(t.steps, 4)));
    assert.ok(html.includes(`>${t.text}</span>`));
  }
  const legend = html.match(/<div class="legend">(.*?)<\/div>/s);
  assert.ok(legend, 'legend present');
  for (let d = 0; d <= 4; d++) assert.ok(legend[1].includes(`background:${rgbHex(depthRgb(d, 4))}`), `legend swatch for depth ${d}`);
});

test('criterion curves: one line per token with values, the threshold dashed; a note when there are none', () => {
  const run = sampleRun();
  const html = renderTraceHtml(run);
  const lines = [...html.matchAll(/<polyline data-i="(\d+)"[^>]*points="([^"]*)"/g)];
  assert.deepEqual(lines.map((m) => Number(m[1])), [0, 1, 2]);
  lines.forEach((m, i) => assert.equal(m[2].trim().split(/\s+/).length, run.tokens[i].criterionValues.length));
  assert.ok(html.includes('class="threshold"'));
  for (const t of run.tokens) t.criterionValues = [];
  assert.match(renderTraceHtml(run), /no criterion values were recorded/);
});

test('prompt tokens are marked in the heatmap and said to be outside the summary', () => {
  const run = sampleRun(['a', 'b', 'c']);
  run.tokens[0].phase = 'prefill';
  const html = renderTraceHtml(run);
  assert.match(html, /<span class="tok prompt" data-i="0"/);
  assert.match(html, /<span class="tok" data-i="1"/);
  assert.match(html, /summary counts generated tokens only/);
  assert.doesNotMatch(renderTraceHtml(sampleRun()), /summary counts generated tokens only/);
});
