/**
 * Optional dependencies (the tokenizer, chat templates, the experiment YAML reader) are imported
 * only when a feature needs them, so the core installs and runs without them.
 */
import type { PonderError } from './errors.js';

/**
 * The module `name`, imported at call time (or through `importLibrary`, which a bundler can see);
 * when it cannot be loaded, the error `missing` makes from the cause (a typed error with an
 * install hint).
 */
export async function importOptional(name: string, importLibrary: (() => Promise<unknown>) | undefined, missing: (cause: Error) => PonderError): Promise<unknown> {
  try {
    // The specifier is a variable, so TypeScript and bundlers do not require the package.
    return await (importLibrary ? importLibrary() : import(name));
  } catch (err) {
    throw missing(err as Error);
  }
}
