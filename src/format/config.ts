/**
 * Reading config.json / generation_config.json safely.
 *
 * `parseConfigJson` turns text into a `ConfigObject` (CFG_JSON on anything that is not a JSON
 * object). Families then read each field through the small readers below, which throw CFG_FIELD
 * naming the file, the field and the allowed values, e.g.
 *
 *   const cfg = parseConfigJson(text, 'model/config.json');
 *   const n_embd = requireInt(cfg, 'n_embd', { min: 1 });            // "n_embd": "5280" → CFG_FIELD
 *   const capacity = requireNumber(section(cfg, 'mor'), 'capacity', { gt: 0, max: 1 });
 *   if (n_embd % n_heads !== 0) throw configInconsistent(cfg, 'n_heads', `n_heads (${n_heads}) must divide n_embd (${n_embd})`);
 *   const warnings = unknownKeys(cfg);                                // keys nobody read
 *
 * A ConfigObject remembers which keys were read, so keys no reader looked at can be listed as
 * warnings (a typo in a field name should not pass silently, but must not stop a real checkpoint
 * that carries extra bookkeeping keys either).
 */
import { describeValue, PonderError, stringArgument } from '../errors.js';
import { describeJson, findDuplicateKeyDeep, JsonSyntaxError, parseJsonStrict, toPlain, type JsonNode } from './json.js';
import { LIMITS, limitNote, type LimitName } from '../limits.js';

export interface ConfigObject {
  /** the file (or golden case) the values came from, for messages */
  readonly path: string;
  /** '' at the top level, 'mor.' inside the `mor` section: field names in messages are full paths */
  readonly prefix: string;
  readonly values: Readonly<Record<string, unknown>>;
  /** keys a reader has looked at */
  readonly used: Set<string>;
  /** sub-sections handed out by `section`, so unknownKeys can report their keys too */
  readonly sections: ConfigObject[];
}

/** Hugging Face bookkeeping keys that carry no model semantics; never reported as unknown. */
export const BOOKKEEPING_KEYS = ['architectures', 'auto_map', 'torch_dtype', 'dtype', 'transformers_version', '_name_or_path', '_attn_implementation', '_commit_hash'];

export function parseConfigJson(text: string, path: string): ConfigObject {
  stringArgument(path, 'parseConfigJson path');
  stringArgument(text, `parseConfigJson text of ${path}`);
  const bad = (what: string): PonderError => new PonderError('CFG_JSON', `${path}: ${what}`, { path, hint: 'config files must be a JSON object as written by transformers (config.save_pretrained)' });
  const start = text.replace(/^\uFEFF/, '').trimStart().slice(0, 64).toLowerCase();
  if (start.startsWith('<!doctype') || start.startsWith('<html')) throw bad('is an HTML page, not JSON (an error page saved instead of the file?)');
  if (start.startsWith('version https://git-lfs')) throw bad('is a git-LFS pointer, not JSON (run `git lfs pull`)');
  let root: JsonNode;
  try {
    root = parseJsonStrict(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    const line = text.slice(0, e.pos).split('\n').length;
    throw bad(`is not valid JSON: ${e.reason} (line ${line})`);
  }
  if (root.kind !== 'object') throw bad(`is ${describeJson(root)}, not a JSON object`);
  // JSON.parse (and Python's json) would keep the last of two equal keys; we refuse to guess.
  const dup = findDuplicateKeyDeep(root);
  if (dup) throw bad(`has the key ${JSON.stringify(dup.path)} twice`);
  return configObject(toPlain(root), path);
}

/** Wraps already-parsed values (e.g. a golden case's `config`) for the field readers. */
export function configObject(values: unknown, path: string, prefix = ''): ConfigObject {
  stringArgument(path, 'the config\'s path (label)');
  if (values === null || typeof values !== 'object' || Array.isArray(values)) {
    throw new PonderError('CFG_JSON', `${path}: ${prefix ? `section ${prefix.slice(0, -1)}` : 'the config'} is ${values === null ? 'null' : Array.isArray(values) ? 'an array' : typeof values}, not an object`,
      { path, field: prefix ? prefix.slice(0, -1) : undefined, hint: 'config files must be a JSON object' });
  }
  return { path, prefix, values: values as Record<string, unknown>, used: new Set(), sections: [] };
}

/** A ConfigObject as given, or one wrapping plain values (a golden case's `config`, a literal in a test). */
export function asConfigObject(values: ConfigObject | unknown, path: string): ConfigObject {
  const v = values as ConfigObject | null;
  if (v !== null && typeof v === 'object' && typeof v.path === 'string' && v.used instanceof Set && Array.isArray(v.sections)) return v;
  return configObject(values, path);
}

// ---------------------------------------------------------------------------------------------
// Field readers

/** Allowed values of a number: min/max inclusive, gt/lt exclusive. */
export interface NumberRange {
  min?: number;
  max?: number;
  gt?: number;
  lt?: number;
  /** `max` is this hard limit of ponder's (src/limits.ts), named in the message */
  limit?: LimitName;
}

/** A count bounded by one of ponder's hard limits: an integer in [min, LIMITS[limit]]. */
export function upTo(limit: LimitName, min = 0): NumberRange {
  return { min, max: LIMITS[limit], limit };
}

function describeRange(r: NumberRange, integer: boolean): string {
  const text = describeBounds(r, integer);
  return r.limit ? `${text} (${limitNote(r.limit)})` : text;
}

function describeBounds(r: NumberRange, integer: boolean): string {
  const kind = integer ? 'an integer' : 'a number';
  const low = r.gt !== undefined ? `> ${r.gt}` : r.min !== undefined ? `>= ${r.min}` : undefined;
  const high = r.lt !== undefined ? `< ${r.lt}` : r.max !== undefined ? `<= ${r.max}` : undefined;
  if (low && high) {
    const open = r.gt !== undefined ? '(' : '[';
    const close = r.lt !== undefined ? ')' : ']';
    return `${kind} in ${open}${r.gt ?? r.min}, ${r.lt ?? r.max}${close}`;
  }
  return low ? `${kind} ${low}` : high ? `${kind} ${high}` : kind;
}

function inRange(v: number, r: NumberRange): boolean {
  return (r.min === undefined || v >= r.min) && (r.max === undefined || v <= r.max)
    && (r.gt === undefined || v > r.gt) && (r.lt === undefined || v < r.lt);
}

function fieldError(c: ConfigObject, field: string, what: string, allowed: string): PonderError {
  const full = c.prefix + field;
  return new PonderError('CFG_FIELD', `${c.path}: "${full}" ${what}; it must be ${allowed}`,
    { path: c.path, field: full, hint: `set "${full}" in the config to ${allowed}` });
}

function show(v: unknown): string {
  return typeof v === 'string' ? `the string ${describeValue(v)}` : describeValue(v);
}

/** The raw value, marking the key as read; null counts as absent (transformers writes unset fields as null). */
function lookup(c: ConfigObject, field: string): unknown {
  c.used.add(field);
  return Object.hasOwn(c.values, field) ? c.values[field] ?? undefined : undefined;
}

function checkNumber(c: ConfigObject, field: string, v: unknown, range: NumberRange, integer: boolean): number {
  const allowed = describeRange(range, integer);
  if (typeof v !== 'number' || !Number.isFinite(v)) throw fieldError(c, field, `is ${show(v)}`, allowed);
  if (integer && !Number.isSafeInteger(v)) throw fieldError(c, field, `is ${v}`, allowed);
  if (!inRange(v, range)) throw fieldError(c, field, `is ${v}, out of range`, allowed);
  return v;
}

export function requireInt(c: ConfigObject, field: string, range: NumberRange = {}): number {
  const v = lookup(c, field);
  if (v === undefined) throw fieldError(c, field, 'is missing', describeRange(range, true));
  return checkNumber(c, field, v, range, true);
}

export function optionalInt(c: ConfigObject, field: string, fallback: number, range: NumberRange = {}): number {
  const v = lookup(c, field);
  return v === undefined ? fallback : checkNumber(c, field, v, range, true);
}

export function requireNumber(c: ConfigObject, field: string, range: NumberRange = {}): number {
  const v = lookup(c, field);
  if (v === undefined) throw fieldError(c, field, 'is missing', describeRange(range, false));
  return checkNumber(c, field, v, range, false);
}

export function optionalNumber(c: ConfigObject, field: string, fallback: number, range: NumberRange = {}): number {
  const v = lookup(c, field);
  return v === undefined ? fallback : checkNumber(c, field, v, range, false);
}

function checkString<T extends string>(c: ConfigObject, field: string, v: unknown, allowed?: readonly T[]): T {
  const what = allowed ? `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}` : 'a string';
  if (typeof v !== 'string') throw fieldError(c, field, `is ${show(v)}`, what);
  if (allowed && !allowed.includes(v as T)) throw fieldError(c, field, `is ${JSON.stringify(v)}`, what);
  return v as T;
}

export function requireString<T extends string = string>(c: ConfigObject, field: string, allowed?: readonly T[]): T {
  const v = lookup(c, field);
  if (v === undefined) throw fieldError(c, field, 'is missing', allowed ? `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}` : 'a string');
  return checkString(c, field, v, allowed);
}

export function optionalString<T extends string = string>(c: ConfigObject, field: string, fallback: T, allowed?: readonly T[]): T {
  const v = lookup(c, field);
  return v === undefined ? fallback : checkString(c, field, v, allowed);
}

export function requireBool(c: ConfigObject, field: string): boolean {
  const v = lookup(c, field);
  if (typeof v !== 'boolean') throw fieldError(c, field, v === undefined ? 'is missing' : `is ${show(v)}`, 'true or false');
  return v;
}

export function optionalBool(c: ConfigObject, field: string, fallback: boolean): boolean {
  const v = lookup(c, field);
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw fieldError(c, field, `is ${show(v)}`, 'true or false');
  return v;
}

/** A list of integers (e.g. eos_token_id given as a list), each within `range`; a single integer is accepted as a list of one when `allowSingle`. */
export function optionalIntList(c: ConfigObject, field: string, fallback: number[], range: NumberRange = {}, allowSingle = false): number[] {
  const v = lookup(c, field);
  if (v === undefined) return fallback;
  if (allowSingle && typeof v === 'number') return [checkNumber(c, field, v, range, true)];
  const allowed = `a list of ${describeRange(range, true).replace(/^an? /, '')}s`;
  if (!Array.isArray(v)) throw fieldError(c, field, `is ${show(v)}`, allowed);
  return v.map((item, k) => {
    if (typeof item !== 'number' || !Number.isSafeInteger(item) || !inRange(item, range)) throw fieldError(c, `${field}[${k}]`, `is ${show(item)}`, describeRange(range, true));
    return item;
  });
}

/** Whether the field is present (and not null), marking it as read. */
export function hasField(c: ConfigObject, field: string): boolean {
  return lookup(c, field) !== undefined;
}

/** A nested object (e.g. `mor` in a MoR config); field errors inside name it as `mor.capacity`. */
export function section(c: ConfigObject, field: string): ConfigObject {
  const v = lookup(c, field);
  if (v === undefined || v === null || typeof v !== 'object' || Array.isArray(v)) throw fieldError(c, field, v === undefined ? 'is missing' : `is ${show(v)}`, 'an object');
  const sub = configObject(v, c.path, `${c.prefix}${field}.`);
  c.sections.push(sub);
  return sub;
}

/** Marks fields as known without reading them (accepted and deliberately ignored). */
export function ignoreFields(c: ConfigObject, ...fields: string[]): void {
  for (const f of fields) c.used.add(f);
}

/** Keys no reader looked at (full dotted names), for warnings. Bookkeeping keys are never listed. */
export function unknownKeys(c: ConfigObject): string[] {
  const out: string[] = [];
  for (const key of Object.keys(c.values)) {
    if (!c.used.has(key) && !BOOKKEEPING_KEYS.includes(key)) out.push(c.prefix + key);
  }
  for (const sub of c.sections) out.push(...unknownKeys(sub));
  return out;
}

/** CFG_FIELD for a well-formed value ponder does not implement (`hidden_act: "gelu"`), naming what it supports. */
export function unsupportedValue(c: ConfigObject, field: string, got: string, want: string): PonderError {
  return new PonderError('CFG_FIELD', `${c.path}: ${c.prefix}${field} is ${got}; ponder supports ${want}`, { path: c.path, field: c.prefix + field, hint: 'this setting is not part of the released models; check the config' });
}

/** CFG_INCONSISTENT: fields that are each valid but do not fit together (heads not dividing n_embd...). */
export function configInconsistent(c: ConfigObject, field: string, what: string, hint = 'fix the config so that these fields agree'): PonderError {
  return new PonderError('CFG_INCONSISTENT', `${c.path}: ${what}`, { path: c.path, field: c.prefix + field, hint });
}

/** CFG_MODEL_TYPE: a `model_type` (or architecture) that no family handles. */
export function unsupportedModelType(c: ConfigObject, modelType: string, supported: readonly string[]): PonderError {
  return new PonderError('CFG_MODEL_TYPE', `${c.path}: model_type ${JSON.stringify(modelType)} is not supported`,
    { path: c.path, field: 'model_type', hint: `supported model types: ${supported.join(', ')}` });
}
