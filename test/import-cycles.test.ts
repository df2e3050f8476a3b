/**
 * No two modules under src/ may depend on each other, directly or through others: every import
 * counts (static, `export … from`, type-only, and `import('…')` with a literal path), read from the
 * TypeScript syntax tree. A cycle means two places own one concern; the fix is a small module both
 * import (e.g. src/cli/io.ts, src/kernels/wasm-exports.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Relative module specifiers of one source text (every kind of import and re-export). */
export function importSpecifiers(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0])) {
      found.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found.filter((s) => s.startsWith('.'));
}

/** The .ts file a relative specifier names (`./x.js` → x.ts, a directory → its index.ts), or null. */
function resolveModule(fromFile: string, spec: string): string | null {
  const base = resolve(dirname(fromFile), spec);
  for (const candidate of [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return null;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
export function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>(), low = new Map<string, number>(), onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, next); low.set(v, next); next++;
    stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) { connect(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); component.push(w); } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) connect(v);
  return out;
}

test('no import cycle under src/: no module depends on itself through its imports', () => {
  const files = sourceFiles(SRC);
  assert.ok(files.length > 40, `expected the source files under ${SRC}, found ${files.length}`);
  const graph = new Map<string, string[]>();
  const unresolved: string[] = [];
  for (const f of files) {
    const targets: string[] = [];
    for (const spec of importSpecifiers(f, readFileSync(f, 'utf8'))) {
      const target = resolveModule(f, spec);
      if (target === null) unresolved.push(`${relative(ROOT, f)}: ${spec}`);
      else if (target.startsWith(SRC + '/')) targets.push(relative(ROOT, target));
    }
    graph.set(relative(ROOT, f), targets);
  }
  assert.deepEqual(unresolved, [], 'every relative import names a file');
  assert.deepEqual(cycles(graph).map((c) => c.join(' ⇄ ')), []);
});

test('the cycle finder reports every loop (direct, through others, a self-import) and nothing else', () => {
  const graph = new Map<string, string[]>([
    ['a', ['b']], ['b', ['a', 'c']], // a ⇄ b
    ['c', ['d']], ['d', ['e']], ['e', ['c']], // c → d → e → c
    ['f', ['f']], // f imports itself
    ['g', ['a', 'h']], ['h', []], // g and h take part in no loop
  ]);
  assert.deepEqual(cycles(graph).map((c) => c.join(',')).sort(), ['a,b', 'c,d,e', 'f']);
  const text = [
    "import { a } from './a.js';",
    "import type { B } from './b.js';",
    "export { c } from './c.js';",
    "const d = await import('./d.js');",
    "let e: import('./e.js').E;",
    "import { readFileSync } from 'node:fs';",
    "const s = './not-an-import.js';",
  ].join('\n');
  assert.deepEqual(importSpecifiers('x.ts', text), ['./a.js', './b.js', './c.js', './d.js', './e.js']);
});
