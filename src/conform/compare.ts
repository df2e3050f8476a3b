/**
 * Compare what a family runner produced against a golden case's `expected.*` tensors.
 * Floats pass where |a − e| ≤ atol + rtol·|e| (NaN must meet NaN, ±Inf must match exactly);
 * integer and BOOL tensors must match exactly. An expected tensor the runner did not produce fails.
 */
import { floatTensor, intTensor, tensorNames, tensorShape, toleranceFor, type GoldenCase } from './golden.js';
import { numel } from '../format/safetensors.js';
import type { Runtime } from '../runtime/runtime.js';

/** What a runner returns for one expected tensor: flat values in the tensor's row-major order. */
export type Produced = Float32Array | Float64Array | Int32Array | ArrayLike<number>;

/** A family's golden-case runner (src/conform/<family>.ts): every expected.* tensor it produced, by name. */
export type CaseRunner = (c: GoldenCase, runtime: Runtime) => Promise<Map<string, Produced>>;

export interface TensorReport {
  readonly name: string;
  readonly exact: boolean;
  readonly pass: boolean;
  /** max |a − e| over the tensor (mismatch count for exact tensors) */
  readonly maxAbsError: number;
  readonly detail: string;
}

export function compareCase(c: GoldenCase, produced: ReadonlyMap<string, Produced>): TensorReport[] {
  return tensorNames(c, 'expected.').map((name) => compareTensor(c, name, produced.get(name)));
}

function compareTensor(c: GoldenCase, name: string, got: Produced | undefined): TensorReport {
  const dtype = c.file.tensors.get(name)!.dtype;
  const exact = !(dtype === 'F32' || dtype === 'BF16' || dtype === 'F16');
  const count = numel(tensorShape(c, name));
  if (got === undefined) return { name, exact, pass: false, maxAbsError: NaN, detail: 'not produced by the runner' };
  if (got.length !== count) return { name, exact, pass: false, maxAbsError: NaN, detail: `produced ${got.length} values, expected ${count}` };
  if (exact) {
    const want = intTensor(c, name);
    let mismatches = 0, first = -1;
    for (let i = 0; i < count; i++) if (Number(got[i]) !== want[i]) { mismatches++; if (first < 0) first = i; }
    const detail = mismatches === 0 ? 'exact' : `${mismatches} mismatches, first at flat index ${first}: got ${got[first]}, expected ${want[first]}`;
    return { name, exact, pass: mismatches === 0, maxAbsError: mismatches, detail };
  }
  const tol = toleranceFor(c, name);
  if (!tol) return { name, exact, pass: false, maxAbsError: NaN, detail: 'the case gives no tolerance for this tensor' };
  const want = floatTensor(c, name);
  let maxAbs = 0, failures = 0, first = -1;
  for (let i = 0; i < count; i++) {
    const a = Number(got[i]), e = want[i];
    let ok: boolean;
    if (Number.isNaN(e) || Number.isNaN(a)) ok = Number.isNaN(e) && Number.isNaN(a);
    else if (!Number.isFinite(e) || !Number.isFinite(a)) ok = a === e;
    else {
      const err = Math.abs(a - e);
      if (err > maxAbs) maxAbs = err;
      ok = err <= tol.atol + tol.rtol * Math.abs(e);
    }
    if (!ok) { failures++; if (first < 0) first = i; }
  }
  const detail = failures === 0 ? `max abs error ${maxAbs.toExponential(2)}` :
    `${failures} of ${count} outside atol=${tol.atol} rtol=${tol.rtol}; max abs error ${maxAbs.toExponential(2)}; first at flat index ${first}: got ${got[first]}, expected ${want[first]}`;
  return { name, exact, pass: failures === 0, maxAbsError: maxAbs, detail };
}
