/**
 * One error type for everything a user can get wrong: a stable `code` (documented in spec/errors.md),
 * a message naming the file / tensor / field, and a hint saying what to do about it.
 * The CLI prints `error[CODE]: message` and the hint, and exits 2.
 */
export interface PonderErrorDetails {
  hint?: string;
  path?: string;
  tensor?: string;
  field?: string;
  /** the error this one reports (a callback's own exception) */
  cause?: unknown;
}

export class PonderError extends Error {
  readonly code: string;
  readonly hint: string;
  readonly path?: string;
  readonly tensor?: string;
  readonly field?: string;

  constructor(code: string, message: string, details: PonderErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'PonderError';
    this.code = code;
    this.hint = details.hint ?? '';
    this.path = details.path;
    this.tensor = details.tensor;
    this.field = details.field;
  }

  toJSON(): { code: string; message: string; hint: string; path?: string; tensor?: string; field?: string } {
    return { code: this.code, message: this.message, hint: this.hint, path: this.path, tensor: this.tensor, field: this.field };
  }
}

export function isPonderError(e: unknown): e is PonderError {
  return e instanceof PonderError;
}

/** A value as a message shows it: short, never an object dump, and never itself a failure (a symbol, an object without toString). */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'symbol') return 'a symbol';
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return 'a list';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor?.name ?? 'typed array'}`;
  return 'an object';
}

/** ARG_INVALID for an argument of a public function: `what` names it ("generate options.seed"), `expected` says what it must be. */
export function invalidArgument(what: string, expected: string, got: unknown, hint = 'see spec/api.md'): PonderError {
  return new PonderError('ARG_INVALID', `${what} must be ${expected}, got ${describeValue(got)}`, { field: what, hint });
}

/** An options argument: undefined is {}, a plain object is itself; anything else (null, a number, a list) is ARG_INVALID. */
export function optionsArgument<T extends object>(value: T | undefined, what: string): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidArgument(what, 'an object of options (or left out)', value);
  return value;
}

/** A string argument, else ARG_INVALID. */
export function stringArgument(value: unknown, what: string): string {
  if (typeof value !== 'string') throw invalidArgument(what, 'a string', value);
  return value;
}

/** Bytes: a Uint8Array, or an ArrayBuffer (viewed, not copied); else ARG_INVALID. */
export function bytesArgument(value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw invalidArgument(what, 'a Uint8Array or an ArrayBuffer', value);
}

/**
 * Runs a caller's callback (onProgress, a depth function): whatever it throws comes back as
 * ARG_CALLBACK naming the callback, with the original as `cause`, so a caller's bug is told apart
 * from ponder's own errors and never surfaces raw from deep inside a load or a generation.
 */
export function callCallback<A extends unknown[], R>(what: string, fn: (...args: A) => R, ...args: A): R {
  try {
    return fn(...args);
  } catch (e) {
    if (e instanceof PonderError && e.code === 'ARG_CALLBACK') throw e;
    const message = e instanceof Error ? e.message : describeValue(e);
    throw new PonderError('ARG_CALLBACK', `${what} threw: ${message}`, { field: what, cause: e, hint: 'the callback you passed failed; its own error is this error\'s cause' });
  }
}
