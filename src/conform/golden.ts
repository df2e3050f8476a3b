/**
 * Golden cases (../shared/golden/FORMAT.md, copied to spec/golden/): a CASE.json description and a
 * CASE.safetensors holding `weights.*`, `inputs.*` and `expected.*` tensors.
 */
import { PonderError } from '../errors.js';
import { parseSafetensors, readTensor, type SafetensorsFile, type TensorArray } from '../format/safetensors.js';
import { widenFloats } from '../models/inputs.js';

export interface Tolerance { atol: number; rtol: number }

export interface GoldenCase {
  readonly name: string;
  readonly family: string;
  readonly config: Record<string, unknown>;
  readonly procedure: unknown[];
  readonly json: Record<string, unknown>;
  readonly file: SafetensorsFile;
}

/** CASE.json's fields, checked: GOLDEN_JSON naming what is wrong. */
export function parseGoldenJson(jsonText: string, path: string): { family: string; config: Record<string, unknown>; procedure: unknown[]; json: Record<string, unknown> } {
  const bad = (what: string, field?: string): PonderError => new PonderError('GOLDEN_JSON', `${path}.json ${what}`, { path: `${path}.json`, field, hint: 'see golden/FORMAT.md' });
  let json: unknown;
  try {
    json = JSON.parse(jsonText);
  } catch (e) {
    throw bad(`is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw bad(`is ${json === null ? 'null' : Array.isArray(json) ? 'a list' : typeof json}, not a JSON object`);
  const o = json as Record<string, unknown>;
  for (const field of ['family', 'config', 'procedure', 'tolerance'] as const) {
    if (!(field in o)) throw bad(`has no "${field}"`, field);
  }
  if (typeof o.family !== 'string') throw bad('has a "family" that is not a string', 'family');
  if (o.config === null || typeof o.config !== 'object' || Array.isArray(o.config)) throw bad('has a "config" that is not an object', 'config');
  if (!Array.isArray(o.procedure)) throw bad(': "procedure" is not a list', 'procedure');
  if (o.tolerance === null || typeof o.tolerance !== 'object' || Array.isArray(o.tolerance)) throw bad('has a "tolerance" that is not an object', 'tolerance');
  return { family: o.family, config: o.config as Record<string, unknown>, procedure: o.procedure, json: o };
}

export function parseGoldenCase(name: string, jsonText: string, tensorBytes: Uint8Array, path = name): GoldenCase {
  return { name, ...parseGoldenJson(jsonText, path), file: parseSafetensors(tensorBytes, `${path}.safetensors`) };
}

/** Names of the case's tensors that start with `prefix` (e.g. 'weights.'), in file order. */
export function tensorNames(c: GoldenCase, prefix: string): string[] {
  return [...c.file.tensors.keys()].filter((n) => n.startsWith(prefix));
}

export function hasTensor(c: GoldenCase, name: string): boolean {
  return c.file.tensors.has(name);
}

export function tensorShape(c: GoldenCase, name: string): readonly number[] {
  const info = c.file.tensors.get(name);
  if (!info) throw new PonderError('GOLDEN_TENSOR', `${c.name}: no tensor ${name}`, { tensor: name, hint: 'the case file does not match its description' });
  return info.shape;
}

export function rawTensor(c: GoldenCase, name: string): TensorArray {
  return readTensor(c.file, name);
}

/** Any float tensor widened to f32 (BF16/F16 exactly). */
export function floatTensor(c: GoldenCase, name: string): Float32Array {
  const info = c.file.tensors.get(name);
  const raw = readTensor(c.file, name);
  if (info!.dtype === 'F32') return raw as Float32Array;
  if (info!.dtype === 'BF16' || info!.dtype === 'F16') {
    const out = new Float32Array(raw.length);
    widenFloats(info!.dtype, raw, 0, raw.length, out);
    return out;
  }
  throw new PonderError('GOLDEN_TENSOR', `${c.name}: tensor ${name} is ${info!.dtype}, not a float`, { tensor: name, hint: 'the case file does not match its description' });
}

/** Any integer or BOOL tensor as plain numbers (I64 must fit in 2^53). */
export function intTensor(c: GoldenCase, name: string): number[] {
  const raw = readTensor(c.file, name);
  return Array.from(raw as ArrayLike<number | bigint>, (v) => Number(v));
}

/** The case's tolerance for one float tensor: the global {atol, rtol}, or the entry of the per-tensor map. */
export function toleranceFor(c: GoldenCase, name: string): Tolerance | null {
  const t = c.json.tolerance as Record<string, unknown>;
  if (typeof t.atol === 'number' && typeof t.rtol === 'number') return { atol: t.atol, rtol: t.rtol };
  const entry = t[name] as { atol?: unknown; rtol?: unknown } | undefined;
  if (entry && typeof entry.atol === 'number' && typeof entry.rtol === 'number') return { atol: entry.atol, rtol: entry.rtol };
  return null;
}
