import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { runGoldenCase } from '../src/conform/runner.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { findGoldenCases, loadGoldenCase } from '../src/node/files.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';

// The bundled cases, as copied from ../shared/golden (a changed count means the copy is incomplete).
const BUNDLED: Record<string, number> = { mor: 9, huginn: 7, ouro: 6 };

const wasm = await createWasmRuntime();
after(() => wasm.dispose());

async function conforms(path: string, runtime: Runtime): Promise<void> {
  const report = await runGoldenCase(loadGoldenCase(path), runtime);
  assert.equal(report.error, undefined, report.error);
  const failing = report.tensors.filter((t) => !t.pass).map((t) => `${t.name}: ${t.detail}`);
  assert.deepEqual(failing, []);
  assert.ok(report.tensors.length > 0 && report.pass);
}

for (const [family, count] of Object.entries(BUNDLED)) {
  const cases = findGoldenCases(`spec/golden/${family}`);
  test(`the bundled ${family} golden cases are all ${count}`, () => assert.equal(cases.length, count));
  for (const path of cases) {
    const name = `${family} golden case ${path.split('/').pop()}`;
    test(`${name} conforms on the scalar kernels`, () => conforms(path, createScalarRuntime()));
    test(`${name} conforms on the wasm kernels`, () => conforms(path, wasm));
  }
}
