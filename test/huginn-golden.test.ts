import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runGoldenCase } from '../src/conform/runner.js';
import { findGoldenCases, loadGoldenCase } from '../src/node/files.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';

const cases = findGoldenCases('spec/golden/huginn');

async function wasmRuntime(): Promise<Runtime | null> {
  try {
    const { createWasmRuntime } = await import('../src/kernels/wasm.js');
    return await createWasmRuntime();
  } catch {
    return null;
  }
}

test('the bundled huginn golden cases are all seven', () => {
  assert.equal(cases.length, 7);
});

for (const kernels of ['scalar', 'wasm'] as const) {
  for (const path of cases) {
    test(`huginn golden case ${path.split('/').pop()} conforms on the ${kernels} kernels`, async (t) => {
      const runtime = kernels === 'scalar' ? createScalarRuntime() : await wasmRuntime();
      if (!runtime) { t.skip('createWasmRuntime() is not available'); return; }
      const report = await runGoldenCase(loadGoldenCase(path), runtime);
      assert.equal(report.error, undefined, report.error);
      const failing = report.tensors.filter((r) => !r.pass).map((r) => `${r.name}: ${r.detail}`);
      assert.deepEqual(failing, []);
      assert.ok(report.tensors.length > 0 && report.pass);
    });
  }
}

test('a procedure with an unknown function fails its case instead of being skipped', async () => {
  const c = loadGoldenCase(cases[0]);
  const broken = { ...c, procedure: [{ function: 'RavenForCausalLM.generate_diffusion_style', args: {} }] };
  const report = await runGoldenCase(broken, createScalarRuntime());
  assert.equal(report.pass, false);
  assert.match(report.error ?? '', /CONFORM_UNSUPPORTED/);
});
