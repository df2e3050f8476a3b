import { PonderError } from '../errors.js';
import { runGoldenCase, type CaseReport } from '../conform/runner.js';
import { checkGoldenCase, findGoldenCases, loadGoldenCase } from '../node/files.js';
import { parseFlags } from './args.js';
import { createRuntime, RUNTIME_FLAGS } from './runtime-flags.js';
import type { CliIO } from './io.js';

export const CONFORM_HELP = `ponder conform [DIR|CASE.json] [--json] [--kernels wasm|scalar]

Runs every golden case under DIR (default: the bundled spec/golden) through its model family and
compares each expected.* tensor: floats within the case's own tolerance, integer and BOOL tensors
(selections, depths, exit steps, token ids) exactly. Prints one line per case and one per failing
tensor, then "N passed, M failed". Exit 0 when all pass, 1 when any fails, 2 on bad input.

  --json              print one JSON report instead of text
  --verbose           also list the passing tensors with their max abs error
  --kernels NAME      wasm (default, plain SIMD) or scalar (the TypeScript twins)

Example:
  ponder conform spec/golden/mor
`;

export async function conformCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('conform', argv, { json: { type: 'boolean' }, verbose: { type: 'boolean' }, ...RUNTIME_FLAGS });
  if (values.help) { io.out(CONFORM_HELP); return 0; }
  if (values.relaxed) throw new PonderError('ARG_INVALID', 'conform runs the default build only: --relaxed is not bit-identical to the golden cases', { field: 'relaxed', hint: 'drop --relaxed' });
  if (positionals.length > 1) throw new PonderError('ARG_INVALID', 'conform takes at most one directory', { hint: 'see `ponder conform --help`' });
  const dir = positionals[0] ?? io.bundledGoldenDir;
  const cases = findGoldenCases(dir);
  if (cases.length === 0) throw new PonderError('CONFORM_NO_CASES', `${dir}: no golden cases (CASE.json beside CASE.safetensors) found`, { path: dir, hint: 'point at a directory laid out as golden/FORMAT.md describes' });
  // a malformed case is bad input (exit 2, nothing on stdout), not a failing one: every description and tensor header is checked first
  for (const casePath of cases) checkGoldenCase(casePath);
  const runtime = await createRuntime(values);
  const reports: CaseReport[] = [];
  for (const casePath of cases) {
    let report: CaseReport;
    try {
      report = await runGoldenCase(loadGoldenCase(casePath), runtime);
    } catch (e) {
      if (!(e instanceof PonderError)) throw e;
      report = { name: casePath, family: '?', pass: false, tensors: [], error: `error[${e.code}]: ${e.message}`, seconds: 0 };
    }
    reports.push(report);
    if (!values.json) printCase(report, io, Boolean(values.verbose));
  }
  const passed = reports.filter((r) => r.pass).length;
  const failed = reports.length - passed;
  if (values.json) io.out(JSON.stringify({ kernels: runtime.kernels.name, passed, failed, cases: reports }, null, 2) + '\n');
  else io.out(`${passed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

function printCase(r: CaseReport, io: CliIO, verbose: boolean): void {
  const worst = r.tensors.reduce((m, t) => (!t.exact && Number.isFinite(t.maxAbsError) ? Math.max(m, t.maxAbsError) : m), 0);
  const summary = r.error ? 'error' : `${r.tensors.length} tensors, max abs error ${worst.toExponential(2)}`;
  io.out(`${r.pass ? 'PASS' : 'FAIL'} ${r.name} (${summary}, ${r.seconds.toFixed(2)} s)\n`);
  if (r.error) io.out(`  ${r.error.split('\n').join('\n  ')}\n`);
  for (const t of r.tensors) if (!t.pass || verbose) io.out(`  ${t.pass ? 'ok  ' : 'FAIL'} ${t.name}: ${t.detail}\n`);
}
