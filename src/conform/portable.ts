/**
 * The golden conformance suite in a form every JS runtime can run: Node, Deno, Bun and a browser
 * worker. It imports only the core (no file system); each runtime passes a tiny `GoldenFiles` shim
 * that lists the cases and reads their bytes.
 *
 * Besides the pass/fail verdicts it hashes every tensor each runner produced (SHA-256 of the exact
 * bits), so two runtimes can be compared for bit-identical output, not just "within tolerance".
 */
import { parseGoldenCase, type GoldenCase } from './golden.js';
import type { Produced } from './compare.js';
import { runGoldenCase } from './runner.js';
import { PonderError } from '../errors.js';
import type { Runtime } from '../runtime/runtime.js';

/** Where the golden cases come from: names like 'mor/vanilla_llama_baseline' (no extension). */
export interface GoldenFiles {
  listCases(): Promise<string[]>;
  readText(path: string): Promise<string>;
  readBytes(path: string): Promise<Uint8Array>;
}

export interface TensorResult {
  readonly name: string;
  readonly pass: boolean;
  /** max |a − e| (mismatch count for exact tensors), as compareCase reports it */
  readonly maxAbsError: number;
  /** SHA-256 of the produced values: f32 bits for Float32Array, f64 bits for anything else */
  readonly sha256: string;
}

export interface CaseResult {
  readonly name: string;
  readonly pass: boolean;
  readonly error?: string;
  readonly tensors: TensorResult[];
  readonly seconds: number;
}

export interface SuiteResult {
  readonly runtime: string;
  readonly kernels: string;
  readonly passed: number;
  readonly failed: number;
  /** SHA-256 over every case name, tensor name and tensor digest, in order: one value to compare */
  readonly digest: string;
  readonly cases: CaseResult[];
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(hash, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The exact bits of a produced tensor: f32 arrays as they are, every other kind widened to f64. */
export function producedBytes(values: Produced): Uint8Array {
  if (values instanceof Float32Array) return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  return new Uint8Array(Float64Array.from(values as ArrayLike<number>, Number).buffer);
}

async function runOneCase(c: GoldenCase, runtime: Runtime): Promise<Omit<CaseResult, 'seconds'>> {
  const digests = new Map<string, string>();
  const report = await runGoldenCase(c, runtime, async (produced) => {
    for (const [name, values] of produced) digests.set(name, await sha256Hex(producedBytes(values)));
  });
  const tensors = report.tensors.map((r) => ({ name: r.name, pass: r.pass, maxAbsError: r.maxAbsError, sha256: digests.get(r.name) ?? 'missing' }));
  return { name: c.name, pass: report.pass, error: report.error, tensors };
}

/** Runs every case `files` lists; `onCase` sees each result as it finishes (for streaming output). */
export async function runPortableConformance(
  runtimeName: string, files: GoldenFiles, runtime: Runtime, onCase?: (r: CaseResult) => void,
): Promise<SuiteResult> {
  const names = (await files.listCases()).sort();
  if (names.length === 0) throw new PonderError('CONFORM_NO_CASES', 'no golden cases found', { hint: 'the golden directory is spec/golden/<family>/CASE.{json,safetensors}' });
  const cases: CaseResult[] = [];
  for (const name of names) {
    const start = performance.now();
    let result: Omit<CaseResult, 'seconds'>;
    try {
      const c = parseGoldenCase(name, await files.readText(`${name}.json`), await files.readBytes(`${name}.safetensors`));
      result = await runOneCase(c, runtime);
    } catch (e) {
      result = { name, pass: false, error: e instanceof PonderError ? `error[${e.code}]: ${e.message}` : String(e), tensors: [] };
    }
    const done = { ...result, seconds: (performance.now() - start) / 1000 };
    cases.push(done);
    onCase?.(done);
  }
  const summary = cases.map((c) => `${c.name}\n${c.tensors.map((t) => `${t.name}=${t.sha256}`).join('\n')}`).join('\n');
  const digest = await sha256Hex(new TextEncoder().encode(summary));
  const passed = cases.filter((c) => c.pass).length;
  return { runtime: runtimeName, kernels: runtime.kernels.name, passed, failed: cases.length - passed, digest, cases };
}

/** One line per case, then the totals and the digest: what each runtime prints. */
export function formatCase(r: CaseResult): string {
  const worst = r.tensors.reduce((m, t) => (Number.isFinite(t.maxAbsError) ? Math.max(m, t.maxAbsError) : m), 0);
  const detail = r.error ? `error: ${r.error.split('\n')[0]}` : `${r.tensors.length} tensors, max error ${worst.toExponential(2)}`;
  return `${r.pass ? 'PASS' : 'FAIL'} ${r.name} (${detail}, ${r.seconds.toFixed(2)} s)`;
}

export function formatTotals(s: SuiteResult): string {
  return `${s.runtime} [${s.kernels}]: ${s.passed} passed, ${s.failed} failed; tensor digest ${s.digest}`;
}
