/**
 * Test-side helpers (Node): run a runtime's entry of the portable suite as a child process, echo
 * what it printed, and pull out its RESULT line. Used by test/deno, test/bun and test/browser.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import type { SuiteResult } from '../../src/conform/portable.js';
import type { SmokeResult } from './generation.js';
import type { ThreadedRun } from './main.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export interface PortableResult { conformance: SuiteResult; generation: SmokeResult[]; threaded: ThreadedRun; defaultRuntimeThreads: number }

/** Fails with a clear message when dist/ was not built (the runtimes run the built JS). */
export function requireBuilt(entry: string): string {
  const path = join(ROOT, entry);
  if (!existsSync(path)) throw new Error(`${entry} is missing: run \`npm run build\` first`);
  return path;
}

export function runEntry(command: string, args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string; result: PortableResult } {
  const r = spawnSync(command, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 300_000, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  for (const line of r.stdout.split('\n')) if (line && !line.startsWith('RESULT ')) console.log(`  ${line}`);
  if (r.stderr.trim()) console.log(r.stderr.trim().split('\n').map((l) => `  [stderr] ${l}`).join('\n'));
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`${command} ${args.join(' ')} printed no RESULT line (exit ${r.status})\n${r.stdout}\n${r.stderr}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, result: JSON.parse(line.slice('RESULT '.length)) as PortableResult };
}

/** What must be identical between runtimes: every case's verdict and every produced tensor's bits. */
export function comparableConformance(s: SuiteResult): unknown {
  return {
    passed: s.passed, failed: s.failed, kernels: s.kernels, digest: s.digest,
    cases: s.cases.map((c) => ({ name: c.name, pass: c.pass, error: c.error, tensors: c.tensors })),
  };
}

let nodeRun: PortableResult | undefined;
/** The Node run of the same suite (dist/test/portable/node-main.js), once per test process. */
export function nodeReference(): PortableResult {
  if (!nodeRun) {
    const r = runEntry(process.execPath, [requireBuilt('dist/test/portable/node-main.js')]);
    if (r.status !== 0) throw new Error(`the Node run of the portable suite failed (exit ${r.status})`);
    nodeRun = r.result;
  }
  return nodeRun;
}

/**
 * The checks every other runtime's run must pass against the Node run: all golden cases pass with
 * bit-identical tensors, every smoke generation streamed its tokens and produced the same ids,
 * text and per-token depths (prompt positions included), and the suite on a 2-thread kernel pool
 * (the runtime's own workers) split work and still gave the same bits.
 */
export function assertSameAsNode(other: PortableResult, node: PortableResult): void {
  assert.equal(other.conformance.failed, 0, 'every golden case passes');
  assert.ok(other.conformance.passed >= 22, `expected all golden cases, got ${other.conformance.passed}`);
  assert.deepEqual(comparableConformance(other.conformance), comparableConformance(node.conformance));
  assert.equal(other.generation.length, node.generation.length);
  for (const [i, g] of other.generation.entries()) {
    assert.ok(g.generatedIds.length > 0, `${g.model}: generated tokens`);
    assert.equal(g.tokensStreamed, g.generatedIds.length, `${g.model}: one streamed event per generated token`);
    assert.equal(g.depths.filter((d) => d[1] === 'decode').length, g.generatedIds.length, `${g.model}: one depth per generated token`);
    assert.deepEqual(g, node.generation[i], `${g.model} ${g.policy}: same ids, text and depths as Node`);
  }
  assert.equal(other.threaded.kernels, 'wasm-simd-x2');
  assert.ok(other.threaded.splitJobs > 0, 'the 2-thread pool split some kernel calls');
  assert.equal(other.threaded.failed, 0);
  assert.equal(other.threaded.shards, 3, 'the threaded rerun split every model over 3 memory shards');
  assert.equal(other.threaded.digest, node.conformance.digest, 'the 2-thread run over 3 memory shards gives the same bits as Node on one thread in one memory');
}
