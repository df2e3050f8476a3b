import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseGoldenCase } from '../src/conform/golden.js';
import { runGoldenCase } from '../src/conform/runner.js';
import { findGoldenCases } from '../src/node/files.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';

// Conformance of every bundled case: test/golden-conformance.test.ts.
const cases = findGoldenCases('spec/golden/ouro');

test('an ouro procedure with an unknown call, output or kwarg fails instead of being skipped', async () => {
  const path = cases.find((p) => p.endsWith('weighted_exit'))!;
  const json = JSON.parse(readFileSync(`${path}.json`, 'utf8'));
  const bytes = new Uint8Array(readFileSync(`${path}.safetensors`));
  const variants = [
    { call: 'beam_search', input: 'inputs.input_ids', kwargs: {}, outputs: {} },
    { call: 'forward', input: 'inputs.input_ids', kwargs: {}, outputs: { attentions: 'expected.attn' } },
    { call: 'forward', input: 'inputs.input_ids', kwargs: { output_attentions: true }, outputs: {} },
  ];
  for (const step of variants) {
    const c = parseGoldenCase('ouro/variant', JSON.stringify({ ...json, procedure: [...json.procedure, step] }), bytes);
    const report = await runGoldenCase(c, createScalarRuntime());
    assert.equal(report.pass, false);
    assert.match(report.error ?? '', /CONFORM_PROCEDURE/);
  }
});
