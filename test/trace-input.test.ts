/**
 * A trace is untrusted input to `ponder trace --from`: every field is type-checked (a number as
 * `model`, an object as a sampling value are TRACE_INVALID, never "[object Object]" on the page),
 * and nothing is sized by a call's argument count, so a trace of 130,000+ tokens renders (its
 * charts bin or sample the tokens and say so; the heatmap shows every one).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PonderError } from '../src/errors.js';
import { checkTrace, parseTraceJSON, traceToJSON, type RunTrace, type TokenTrace } from '../src/trace/trace.js';
import { MAX_CHART_TOKENS, renderTraceHtml } from '../src/trace/html.js';
import { assertUsageError, ponder } from './cli-support.js';

const root = mkdtempSync(join(tmpdir(), 'ponder-trace-input-'));
after(() => rmSync(root, { recursive: true, force: true }));

const token = (i: number, steps: number): TokenTrace => ({
  id: i % 256, text: `t${i}`, phase: 'decode', steps, maxSteps: 8, exitReason: steps < 8 ? 'criterion' : 'cap', criterion: 'kl', threshold: 1e-3,
  criterionValues: Array.from({ length: steps }, (_, s) => 1 / (s + 1 + (i % 5))), routerScores: [], flops: 1000 + i, kvBytes: 64 * i,
});

const run = (n: number): RunTrace => ({ family: 'huginn', model: 'demo', policy: 'exit(kl, 0.001)', sampling: { temperature: 0, topK: null }, tokens: Array.from({ length: n }, (_, i) => token(i, 1 + (i % 8))), decodeMs: 5 });

async function traceFile(edit: (doc: Record<string, any>) => void): Promise<string> {
  const doc = JSON.parse(traceToJSON(run(3)));
  edit(doc);
  const path = mkdtempSync(join(root, 't-')) + '/trace.json';
  writeFileSync(path, JSON.stringify(doc).replace(JSON.stringify(DEEP), `${'['.repeat(5000)}${']'.repeat(5000)}`));
  return path;
}

/** Stands for a list nested 5,000 deep in traceFile's output (too deep to stringify). */
const DEEP = '\u0000deep\u0000';

test('issue 11: a trace whose model is a number, or whose sampling temperature is an object, is TRACE_INVALID naming the field (before: INTERNAL, and "temperature=[object Object]")', async () => {
  const cases: [string, (d: Record<string, any>) => void, string][] = [
    ['model', (d) => { d.model = 5; }, 'model'],
    ['sampling.temperature', (d) => { d.sampling.temperature = { a: 1 }; }, 'sampling.temperature'],
    ['sampling', (d) => { d.sampling = [1]; }, 'sampling'],
    ['tokens[1]', (d) => { d.tokens[1] = null; }, 'tokens[1]'],
    ['tokens[0].text', (d) => { d.tokens[0].text = 7; }, 'tokens[0].text'],
    ['prefillMs', (d) => { d.prefillMs = 'soon'; }, 'prefillMs'],
    ['family', (d) => { d.family = ['huginn']; }, 'family'],
    ['version', (d) => { d.version = DEEP; }, 'version'], // found by the fuzzer: String() of it overflowed the stack
  ];
  for (const [what, edit, field] of cases) {
    const path = await traceFile(edit);
    const out = join(root, `${field}.html`);
    const r = await ponder(['trace', '--from', path, '--html', out]);
    assertUsageError(r, 'TRACE_INVALID');
    assert.throws(() => parseTraceJSON(readFileSync(path, 'utf8')), (e: unknown) => e instanceof PonderError && e.field === field, what);
  }
  assert.throws(() => checkTrace(null as never), (e: unknown) => e instanceof PonderError && e.code === 'TRACE_INVALID');
  assert.throws(() => renderTraceHtml({ ...run(2), sampling: { temperature: {} as never } }), (e: unknown) => e instanceof PonderError && e.code === 'TRACE_INVALID');
});

test('issue 11: a trace of 130,000 tokens renders (before: Math.max(...tokens) overflowed the stack): every token in the heatmap, the charts binned and sampled, saying so', async () => {
  const big = run(130_000);
  const path = join(root, 'big.json');
  writeFileSync(path, traceToJSON(big));
  const out = join(root, 'big.html');
  const r = await ponder(['trace', '--from', path, '--html', out]);
  assert.equal(r.code, 0, r.err);
  const html = readFileSync(out, 'utf8');
  assert.equal(html.match(/<span class="tok[^"]*" data-i="/g)?.length, 130_000);
  const bars = html.match(/<rect [^>]*>/g) ?? [];
  assert.ok(bars.length <= MAX_CHART_TOKENS && bars.length >= MAX_CHART_TOKENS / 2, `${bars.length} bars`);
  assert.match(html, /each bar: the mean of 65 consecutive tokens/);
  const curves = (html.match(/<polyline data-i=/g) ?? []).length;
  assert.ok(curves <= MAX_CHART_TOKENS, `${curves} curves`);
  assert.match(html, /2000 of the 130000 tokens with criterion values are drawn \(every 65th\)/);
  // a bar's height is its tokens' mean depth: tokens 0..64 have steps 1..8 repeating, mean of the first 65
  const first = Array.from({ length: 65 }, (_, i) => 1 + (i % 8)).reduce((a, b) => a + b, 0) / 65;
  assert.match(html, new RegExp(`<title>tokens #0–#64: mean depth ${first.toFixed(2)} \\(min 1, max 8\\)</title>`));
});

test('a small trace still draws one bar and one curve per token, each with its hover text', () => {
  const html = renderTraceHtml(run(10));
  assert.equal(html.match(/<rect data-i="\d+"/g)?.length, 10);
  assert.equal(html.match(/<(polyline|circle) data-i="\d+"/g)?.length, 10); // a token with one value is a dot
  assert.doesNotMatch(html, /are drawn \(every/);
});
