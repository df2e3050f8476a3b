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
}

export class PonderError extends Error {
  readonly code: string;
  readonly hint: string;
  readonly path?: string;
  readonly tensor?: string;
  readonly field?: string;

  constructor(code: string, message: string, details: PonderErrorDetails = {}) {
    super(message);
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
