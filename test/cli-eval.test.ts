/**
 * `ponder eval`: the tables (or --json, the report as the API returns it) on stdout and one progress
 * line per policy on stderr; --svg and --html written whole; every bad flag or input is exit 2 with
 * one `error[CODE]:` line and a hint, nothing on stdout, decided before any token is scored.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertUsageError, ponder } from './cli-support.js';
import type { EvalReport } from '../src/eval/evaluate.js';
import { formatEvalReport } from '../src/eval/report.js';

const root = mkdtempSync(join(tmpdir(), 'ponder-eval-'));
after(() => rmSync(root, { recursive: true, force: true }));
const prose = join(root, 'prose.txt');
writeFileSync(prose, 'It is with deep concern I am now to inform you that the favorable prospect has been over-clouded by a refusal of the British Government.');
const tasks = join(root, 'tasks.tsv');
writeFileSync(tasks, '1\t b = 4, k = 7. b?\t 4\n2\t b = 4, k = b, m = 7. k?\t 4\n');

test('eval prints both tables and the verdicts, one progress line per policy on stderr, and writes the SVG and the page', async () => {
  const svg = join(root, 'plot.svg'), html = join(root, 'report.html');
  const r = await ponder(['eval', 'models/mor-sotu', '--text', prose, '--tasks', tasks, '--policy', 'router(causal, 0.5)', '--svg', svg, '--html', html]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ponder eval models\/mor-sotu · mor, full depth 3 · compute = FLOPs relative to fixed\(3\)/);
  assert.match(r.out, /\nheld-out text .*prose\.txt: \d+ tokens, \d+ bytes in 1 window\npolicy +bits\/byte +perplexity +mean depth +compute/);
  assert.match(r.out, /\ntasks .*tasks\.tsv: 2 queries in 1 window, k = 1, 2\n/);
  for (const policy of ['fixed(1)', 'fixed(2)', 'fixed(3)', 'router(causal, 0.5)']) assert.equal(r.out.split('\n').filter((l) => l.startsWith(policy + ' ')).length, 2, policy);
  const progress = r.err.trimEnd().split('\n');
  assert.match(progress[0], /^eval: 4 policies on \d+ tokens of .*prose\.txt and 2 queries of .*tasks\.tsv, one token per call$/);
  assert.equal(progress.filter((l) => /^\[\d\/4\] /.test(l)).length, 4);
  assert.match(readFileSync(svg, 'utf8'), /^<svg xmlns=/);
  assert.match(readFileSync(html, 'utf8'), /^<!doctype html>/);
  assert.deepEqual(readdirSync(root).filter((f) => f.endsWith('.tmp')), []);
});

test('eval --json is the report: fixed depths from --depths, every row with its text and task scores', async () => {
  const ids = join(root, 'ids.json');
  writeFileSync(ids, JSON.stringify([464, 1110, 286, 262, 1578, 1829, 318, 257, 1672, 13]));
  const r = await ponder(['eval', 'models/huginn-sotu', '--ids', ids, '--depths', '1,3', '--policy', 'exit(latent-diff, 0.05)', '--json']);
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(r.out) as EvalReport;
  assert.equal(report.format, 'ponder-eval');
  assert.deepEqual(report.rows.map((x) => x.policy), ['fixed(6)', 'fixed(1)', 'fixed(3)', 'exit(latent-diff, 0.05)']);
  assert.equal(report.text!.tokens, 10);
  assert.ok(report.rows.every((x) => x.text !== null && x.tasks === null && x.text.positions === 9));
  // --from prints and draws the saved report without scoring
  const saved = join(root, 'report.json');
  writeFileSync(saved, r.out);
  const table = await ponder(['eval', '--from', saved, '--svg', join(root, 'from.svg')]);
  assert.equal(table.code, 0, table.err);
  assert.equal(table.out, formatEvalReport(report));
  assert.match(readFileSync(join(root, 'from.svg'), 'utf8'), /^<svg /);
  assert.equal((await ponder(['eval', '--from', saved, '--json'])).out, r.out);
  assertUsageError(await ponder(['eval', '--from', saved, '--text', prose]), 'ARG_INVALID');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--from', saved]), 'ARG_INVALID');
  writeFileSync(saved, r.out.replace('"format": "ponder-eval"', '"format": "ponder-trace"'));
  assertUsageError(await ponder(['eval', '--from', saved]), 'EVAL_REPORT');
});

test('the report records the KV strategy the rows ran with; a report from before the field reads as the default', async () => {
  const ids = join(root, 'ids-kv.json');
  writeFileSync(ids, JSON.stringify([464, 1110, 286, 262, 1578, 1829, 318, 257]));
  const r = await ponder(['eval', 'models/huginn-sotu', '--ids', ids, '--depths', '2', '--policy', 'exit(latent-diff, 0.1)', '--kv-strategy', 'latest', '--json']);
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(r.out) as EvalReport;
  assert.equal(report.kvStrategy, 'latest');
  assert.match(formatEvalReport(report).split('\n')[0], /· KV strategy latest ·/);
  const old = JSON.parse(r.out) as Record<string, unknown>;
  delete old.kvStrategy;
  const saved = join(root, 'report-old.json');
  writeFileSync(saved, JSON.stringify(old));
  const back = await ponder(['eval', '--from', saved, '--json']);
  assert.equal(back.code, 0, back.err);
  assert.equal((JSON.parse(back.out) as EvalReport).kvStrategy, null);
});

test('an --ids file of windows with queries is the task set and, without --text, the text too', async () => {
  const ids = join(root, 'windows.json');
  // ' b = 4, k = 7. b? 4\n' as the models' tokenizer writes it, twice; the query predicts the 4 after "b?"
  const line = [275, 796, 604, 11, 479, 796, 767, 13, 275, 30, 604, 198];
  writeFileSync(ids, JSON.stringify({ windows: [{ ids: line, queries: [{ pos: 9, answer: 604, k: 1 }] }, { ids: line, queries: [{ pos: 9, answer: 604, k: 2 }] }] }));
  const r = await ponder(['eval', 'models/ouro-sotu', '--ids', ids, '--depths', '1', '--policy', 'exit(gate, 0.5)', '--json']);
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(r.out) as EvalReport;
  assert.equal(report.text!.label, ids);
  assert.equal(report.tasks!.label, ids);
  assert.deepEqual([report.text!.windows, report.tasks!.queries, report.tasks!.ks], [2, 2, [1, 2]]);
  assert.ok(report.rows.every((x) => x.text!.positions === 22 && x.tasks!.queries === 2));
  const withText = JSON.parse((await ponder(['eval', 'models/ouro-sotu', '--ids', ids, '--text', prose, '--depths', '1', '--policy', 'exit(gate, 0.5)', '--json'])).out) as EvalReport;
  assert.equal(withText.text!.label, prose);
});

test('bad input is exit 2 with a typed error before anything is scored', async () => {
  assertUsageError(await ponder(['eval', 'models/huginn-sotu']), 'ARG_INVALID');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--text', join(root, 'missing.txt')]), 'IO_NOT_FOUND');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--text', prose, '--svg', join(root, 'no/dir/p.svg')]), 'IO_NOT_FOUND');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--text', prose, '--depths', '4-2']), 'ARG_INVALID');
  assertUsageError(await ponder(['eval', 'models/ouro-sotu', '--text', prose, '--depths', '1-9']), 'ARG_POLICY');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--text', prose, '--policy', 'router(causal, 0.5)']), 'ARG_POLICY');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--text', prose, '--criteria', 'warp']), 'ARG_INVALID');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--text', prose, '--policy', 'exit(kl)', '--criteria', 'kl']), 'ARG_INVALID');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--text', prose, '--window', '9999']), 'ARG_INVALID');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--text', prose, '--seed', 'x']), 'ARG_INVALID');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--tasks', prose]), 'EVAL_INPUT');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--text', prose, 'extra']), 'ARG_INVALID');
  assertUsageError(await ponder(['eval', 'models/huginn-sotu', '--frobnicate']), 'ARG_UNKNOWN_FLAG');
});

test('--help explains the inputs, policies and outputs; the top-level help lists eval', async () => {
  const r = await ponder(['eval', '--help']);
  assert.equal(r.code, 0);
  for (const flag of ['--text FILE', '--tasks FILE', '--ids FILE', '--depths LIST', '--criteria LIST', '--policy POLICY', '--json', '--svg FILE', '--html FILE', '--from REPORT.json']) assert.ok(r.out.includes(flag), flag);
  assert.match((await ponder(['--help'])).out, /\n {2}eval \[MODEL\] /);
});
