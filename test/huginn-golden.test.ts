import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runGoldenCase } from '../src/conform/runner.js';
import { findGoldenCases, loadGoldenCase } from '../src/node/files.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';

// Conformance of every bundled case: test/golden-conformance.test.ts.
const cases = findGoldenCases('spec/golden/huginn');

test('a procedure with an unknown function fails its case instead of being skipped', async () => {
  const c = loadGoldenCase(cases[0]);
  const broken = { ...c, procedure: [{ function: 'RavenForCausalLM.generate_diffusion_style', args: {} }] };
  const report = await runGoldenCase(broken, createScalarRuntime());
  assert.equal(report.pass, false);
  assert.match(report.error ?? '', /CONFORM_UNSUPPORTED/);
});
