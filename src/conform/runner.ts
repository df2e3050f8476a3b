/**
 * `ponder conform`: run every golden case through its family's runner and compare.
 * Each family has one module src/conform/<family>.ts exporting `runCase`, which maps the case's
 * `procedure` onto the family's public API and returns every `expected.*` tensor it produced.
 * A family or procedure step the runner does not know is a failure, never a skip.
 */
import { PonderError } from '../errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { compareCase, type CaseRunner, type Produced, type TensorReport } from './compare.js';
import type { GoldenCase } from './golden.js';

export interface CaseReport {
  readonly name: string;
  readonly family: string;
  readonly pass: boolean;
  readonly tensors: TensorReport[];
  /** set when the runner threw instead of producing tensors */
  readonly error?: string;
  readonly seconds: number;
}

/** The golden-case runner of every family (src/conform/<family>.ts), loaded on first use. */
export const FAMILY_RUNNERS: Readonly<Record<string, () => Promise<{ runCase: CaseRunner }>>> = {
  mor: () => import('./mor.js'),
  huginn: () => import('./huginn.js'),
  ouro: () => import('./ouro.js'),
};

/**
 * Runs one case and compares it. `onProduced` sees the runner's raw tensors (e.g. to hash them
 * for a bit-identity check across JS runtimes) before the comparison.
 */
export async function runGoldenCase(c: GoldenCase, runtime: Runtime, onProduced?: (produced: ReadonlyMap<string, Produced>) => Promise<void> | void): Promise<CaseReport> {
  const start = performance.now();
  const finish = (pass: boolean, tensors: TensorReport[], error?: string): CaseReport =>
    ({ name: c.name, family: c.family, pass, tensors, error, seconds: (performance.now() - start) / 1000 });
  const load = FAMILY_RUNNERS[c.family];
  if (!load) return finish(false, [], `unknown family ${JSON.stringify(c.family)} (known: ${Object.keys(FAMILY_RUNNERS).join(', ')})`);
  try {
    const { runCase } = await load();
    const produced = await runCase(c, runtime);
    await onProduced?.(produced);
    const tensors = compareCase(c, produced);
    return finish(tensors.length > 0 && tensors.every((t) => t.pass), tensors);
  } catch (e) {
    const message = e instanceof PonderError ? `error[${e.code}]: ${e.message}` : (e as Error).stack ?? String(e);
    return finish(false, [], message);
  }
}
