import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseGoldenCase } from '../src/conform/golden.js';
import { runGoldenCase } from '../src/conform/runner.js';
import { findGoldenCases, loadGoldenCase } from '../src/node/files.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';

const cases = findGoldenCases('spec/golden/ouro');

async function wasmRuntime(): Promise<Runtime | null> {
  try {
    const { createWasmRuntime } = await import('../src/kernels/wasm.js');
    return await createWasmRuntime();
  } catch {
    return null; // not wired up yet: the wasm variant is reported as skipped below
  }
}

test('the bundled ouro golden cases are all six', () => {
  assert.equal(cases.length, 6);
});

for (const path of cases) {
  test(`ouro golden case ${path.split('/').pop()} conforms on the scalar kernels`, async () => {
    const report = await runGoldenCase(loadGoldenCase(path), createScalarRuntime());
    assert.equal(report.error, undefined, report.error);
    const failing = report.tensors.filter((t) => !t.pass).map((t) => `${t.name}: ${t.detail}`);
    assert.deepEqual(failing, []);
    assert.ok(report.pass);
  });
}

for (const path of cases) {
  test(`ouro golden case ${path.split('/').pop()} conforms on the wasm kernels`, async (t) => {
    const runtime = await wasmRuntime();
    if (!runtime) { t.skip('createWasmRuntime() is not available yet'); return; }
    const report = await runGoldenCase(loadGoldenCase(path), runtime);
    assert.equal(report.error, undefined, report.error);
    const failing = report.tensors.filter((t) => !t.pass).map((t) => `${t.name}: ${t.detail}`);
    assert.deepEqual(failing, []);
    assert.ok(report.pass);
  });
}

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
