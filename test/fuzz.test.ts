/**
 * A short seeded run of the fuzzer (test/fuzz/run.ts; `npm run fuzz -- --cases N` for the long
 * one): mutated configs, weights, tokenizers, generation configs, traces, chat templates and PyTorch
 * checkpoints give exit 0 or one typed error listed in spec/errors.md — no crash, hang, stack trace,
 * INTERNAL, broken error line or memory over the budget. A failure prints the command that
 * reproduces its case alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport, runFuzz } from './fuzz/run.js';

test('a seeded fuzz run of 60 cases: no crash, hang, stack trace, INTERNAL or unlisted code, within the time and memory budgets', { timeout: 600_000 }, async () => {
  const report = await runFuzz({ seed: 11, cases: 60 });
  assert.deepEqual(report.failures, [], formatReport(report));
  assert.equal(report.cases, 60);
  assert.ok(report.accepted > 0 && Object.keys(report.codes).length >= 5, formatReport(report)); // both outcomes, several codes: the mutations reach the readers
});
