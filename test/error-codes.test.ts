/**
 * spec/errors.md is the list of every error code: each code the source can raise is documented
 * there, and each documented code is raised somewhere (a code that no longer exists is removed from
 * the table, not left to mislead). Codes are the string literals of the source spelled like one
 * (`GEN_TOKEN_ID`), except Node's own error codes (`ERR_*`) and safetensors dtype names (`F8_E4M3`);
 * a documented one-word code (`ABORTED`) must appear as a literal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CODE = /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$/;
const NOT_OURS = /^(ERR_|F\d)/;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The string literals of a source text. */
function stringLiterals(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteralLike(node)) out.push(node.text);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

/** Codes named in the first column of spec/errors.md's tables (`| \`A\`, \`B\` | ...`). */
function documentedCodes(markdown: string): string[] {
  const out: string[] = [];
  for (const line of markdown.split('\n')) {
    const first = /^\|([^|]*)\|/.exec(line)?.[1] ?? '';
    for (const m of first.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) out.push(m[1]);
  }
  return out;
}

test('every error code in src/ is listed in spec/errors.md, and every listed code is raised in src/', () => {
  const literals = new Set(sourceFiles(join(ROOT, 'src')).flatMap((f) => stringLiterals(f, readFileSync(f, 'utf8'))));
  const used = new Set([...literals].filter((s) => CODE.test(s) && !NOT_OURS.test(s)));
  const documented = new Set(documentedCodes(readFileSync(join(ROOT, 'spec/errors.md'), 'utf8')));
  assert.ok(used.size > 40 && documented.size > 40, `found ${used.size} codes in src/ and ${documented.size} in spec/errors.md`);
  assert.deepEqual([...used].filter((c) => !documented.has(c)).sort(), [], 'raised but not documented');
  // INTERNAL is the CLI's word for a non-PonderError, printed rather than raised
  assert.deepEqual([...documented].filter((c) => !literals.has(c) && c !== 'INTERNAL').sort(), [], 'documented but never raised');
});
