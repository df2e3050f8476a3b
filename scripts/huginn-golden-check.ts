/**
 * Runs the huginn golden cases and prints per-tensor results (a debugging aid; the test is
 * test/huginn-golden.test.ts). Usage: node --import tsx scripts/huginn-golden-check.ts [--wasm] [filter]
 * Set V=1 to list passing tensors too.
 */
import { runGoldenCase } from '../src/conform/runner.js';
import { findGoldenCases, loadGoldenCase } from '../src/node/files.js';
import { createScalarRuntime, type Runtime } from '../src/runtime/runtime.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';

const argv = process.argv.slice(2);
const wasm = argv.includes('--wasm');
const only = argv.find((a) => !a.startsWith('--'));
const runtime: Runtime = wasm ? await createWasmRuntime() : createScalarRuntime();
for (const p of findGoldenCases('spec/golden/huginn')) {
  if (only && !p.includes(only)) continue;
  const r = await runGoldenCase(loadGoldenCase(p), runtime);
  console.log(r.pass ? 'PASS' : 'FAIL', r.name, `${r.seconds.toFixed(2)} s`, r.error ?? '');
  for (const t of r.tensors) if (!t.pass || process.env.V) console.log('   ', t.pass ? 'ok' : 'FAIL', t.name, t.detail);
}
