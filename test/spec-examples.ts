/**
 * Runs the ```ts examples of a spec document, each as its own ES module with the repository root
 * as working directory. Examples import from './src/...' (paths from the repository root) and
 * assert what the text around them claims; a failing assert fails the test.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

export function specExamples(specPath: string): string[] {
  const text = readFileSync(join(repoRoot, specPath), 'utf8');
  return [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** Runs one example; throws with the child's stderr if it fails. */
export function runExample(source: string, name: string): void {
  const srcUrl = pathToFileURL(join(repoRoot, 'src')).href;
  const module = source.replace(/from '\.\/src\//g, `from '${srcUrl}/`);
  const dir = mkdtempSync(join(tmpdir(), 'ponder-spec-'));
  const file = join(dir, `${name}.mts`);
  writeFileSync(file, module);
  // --import resolves from the working directory, so this is the repository's own tsx
  execFileSync(process.execPath, ['--import', 'tsx', file], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
}
