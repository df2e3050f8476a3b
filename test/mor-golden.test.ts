import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runGoldenCase } from '../src/conform/runner.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { findGoldenCases, loadGoldenCase } from '../src/node/files.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';

const cases = findGoldenCases('spec/golden/mor');

test('the bundled mor golden cases are all nine', () => {
  assert.equal(cases.length, 9);
});

async function conforms(path: string, runtime: Runtime): Promise<void> {
  const report = await runGoldenCase(loadGoldenCase(path), runtime);
  assert.equal(report.error, undefined, report.error);
  const failing = report.tensors.filter((t) => !t.pass).map((t) => `${t.name}: ${t.detail}`);
  assert.deepEqual(failing, []);
  assert.ok(report.tensors.length > 0 && report.pass);
}

for (const path of cases) {
  test(`mor golden case ${path.split('/').pop()} conforms on the scalar kernels`, () => conforms(path, createScalarRuntime()));
}

for (const path of cases) {
  test(`mor golden case ${path.split('/').pop()} conforms on the wasm kernels`, async () => {
    const runtime = await createWasmRuntime();
    try { await conforms(path, runtime); } finally { await runtime.dispose(); }
  });
}
