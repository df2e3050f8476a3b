import { runGoldenCase } from '../src/conform/runner.js';
import { findGoldenCases, loadGoldenCase } from '../src/node/files.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
const only = process.argv[2];
for (const p of findGoldenCases('spec/golden/huginn')) {
  if (only && !p.includes(only)) continue;
  const r = await runGoldenCase(loadGoldenCase(p), createScalarRuntime());
  console.log(r.pass ? 'PASS' : 'FAIL', r.name, r.seconds.toFixed(2), r.error ?? '');
  for (const t of r.tensors) if (!t.pass || process.env.V) console.log('   ', t.pass ? 'ok' : 'FAIL', t.name, t.detail);
}
