import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkTrace, parseTraceJSON, summarizeTrace, traceToJSON, type RunTrace } from '../src/trace/trace.js';
import { PonderError } from '../src/errors.js';
import { runTraceArb, sampleRun } from './trace-arbitraries.js';

const isTraceInvalid = (field?: string) => (e: unknown) =>
  e instanceof PonderError && e.code === 'TRACE_INVALID' && (field === undefined || e.field === field);

test('the summary counts only generated tokens and agrees with the per-token steps', () => {
  fc.assert(fc.property(runTraceArb, (run) => {
    const s = summarizeTrace(run);
    const generated = run.tokens.filter((t) => t.phase !== 'prefill');
    assert.equal(s.tokens, generated.length);
    assert.equal(s.stepsUsed, generated.reduce((a, t) => a + t.steps, 0));
    assert.equal(s.stepsFull, generated.reduce((a, t) => a + t.maxSteps, 0));
    if (generated.length > 0) {
      assert.ok(s.minDepth <= s.meanDepth + 1e-12 && s.meanDepth <= s.maxDepth + 1e-12 && s.maxDepth <= s.fullDepth);
      assert.ok(Math.abs(s.computeSaved - (1 - s.stepsUsed / s.stepsFull)) < 1e-12);
    }
    assert.ok(s.computeSaved >= 0 && s.computeSaved <= 1);
    assert.equal(s.flops, run.tokens.reduce((a, t) => a + t.flops, 0));
    assert.equal(s.kvBytesPeak, Math.max(0, ...run.tokens.map((t) => t.kvBytes)));
    if (run.decodeMs > 0) assert.ok(Math.abs(s.tokensPerSecond! - (generated.length * 1000) / run.decodeMs) <= 1e-9 * s.tokensPerSecond!);
    else assert.equal(s.tokensPerSecond, null);
  }));
});

test('a run at full depth saves no compute; half the steps saves half', () => {
  const run = sampleRun();
  for (const t of run.tokens) t.steps = t.maxSteps;
  assert.equal(summarizeTrace(run).computeSaved, 0);
  for (const t of run.tokens) t.steps = t.maxSteps / 2;
  assert.equal(summarizeTrace(run).computeSaved, 0.5);
});

test('traceToJSON then parseTraceJSON gives back the same run, NaN and Infinity included', () => {
  fc.assert(fc.property(runTraceArb, (run) => {
    const back = parseTraceJSON(traceToJSON(run));
    assert.equal(back.tokens.length, run.tokens.length);
    run.tokens.forEach((t, i) => {
      const b = back.tokens[i];
      assert.equal(b.text, t.text);
      assert.deepEqual(b.criterionValues, t.criterionValues); // deepEqual treats NaN as equal to NaN
      assert.deepEqual(b.routerScores, t.routerScores);
      assert.equal(b.steps, t.steps);
      assert.equal(b.exitReason, t.exitReason);
    });
    assert.deepEqual(back, plain(run));
  }));
});

/** `value` as ordinary objects without undefined-valued keys, which is what JSON can carry. */
function plain<T>(value: T): T {
  if (Array.isArray(value)) return value.map(plain) as T;
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = plain(v);
  return out as T;
}

test('the JSON carries a format tag, a version and the summary', () => {
  const document = JSON.parse(traceToJSON(sampleRun()));
  assert.equal(document.format, 'ponder-trace');
  assert.equal(document.version, 1);
  assert.deepEqual(document.summary, summarizeTrace(sampleRun()));
});

test('a token text that reads "NaN" or "Infinity" stays text through JSON', () => {
  const run = sampleRun(['NaN', 'Infinity', '-Infinity']);
  assert.deepEqual(parseTraceJSON(traceToJSON(run)).tokens.map((t) => t.text), ['NaN', 'Infinity', '-Infinity']);
});

test('a trace that breaks the spec is TRACE_INVALID naming the token and field', () => {
  const broken = (edit: (run: RunTrace) => void) => {
    const run = sampleRun();
    edit(run);
    return run;
  };
  assert.throws(() => checkTrace(broken((r) => { r.tokens[1].steps = 5; })), isTraceInvalid('tokens[1].steps'));
  assert.throws(() => checkTrace(broken((r) => { r.tokens[0].steps = -1; })), isTraceInvalid('tokens[0].steps'));
  assert.throws(() => checkTrace(broken((r) => { r.tokens[2].maxSteps = 0; })), isTraceInvalid('tokens[2].maxSteps'));
  assert.throws(() => checkTrace(broken((r) => { (r.tokens[0] as { exitReason: string }).exitReason = 'bored'; })), isTraceInvalid('tokens[0].exitReason'));
  assert.throws(() => checkTrace(broken((r) => { r.tokens[0].criterionValues = [1, 2, 3, 4, 5]; })), isTraceInvalid('tokens[0].criterionValues'));
  assert.throws(() => checkTrace(broken((r) => { r.tokens[0].flops = NaN; })), isTraceInvalid('tokens[0].flops'));
  assert.throws(() => checkTrace(broken((r) => { r.decodeMs = -1; })), isTraceInvalid('decodeMs'));
  assert.throws(() => parseTraceJSON('{"format": "something-else"}'), isTraceInvalid('format'));
  assert.throws(() => parseTraceJSON('{"format": "ponder-trace", "version": 99}'), isTraceInvalid('version'));
  assert.throws(() => parseTraceJSON('{not json'), isTraceInvalid());
});
