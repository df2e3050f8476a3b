/**
 * The core (src/ outside src/node/ and src/cli/) must run in any JS runtime: browsers, Deno, Bun.
 * So it may not import a Node module (node:*, or a bare builtin such as 'fs'), may not import the
 * Node adapter or the CLI, and may not touch a Node global (process, Buffer, require, __dirname,
 * the NodeJS type namespace). Checked on the TypeScript syntax tree, so comments, strings and
 * property names (`x.process`) never count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');
const NODE_ONLY_DIRS = [join(SRC, 'node'), join(SRC, 'cli')];
const NODE_GLOBALS = new Set(['process', 'Buffer', 'require', '__dirname', '__filename', 'global', 'setImmediate', 'clearImmediate']);
const BUILTINS = new Set(builtinModules);

interface Finding { file: string; line: number; what: string }

function isNodeOnlyPath(path: string): boolean {
  return NODE_ONLY_DIRS.some((d) => path === d || path.startsWith(d + '/'));
}

function coreFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) { if (!isNodeOnlyPath(p)) out.push(...coreFiles(p)); }
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Is `node` the name being declared or a property name, rather than a reference to a global? */
function isNameNotReference(node: ts.Identifier): boolean {
  const parent = node.parent;
  if (ts.isPropertyAccessExpression(parent) && parent.name === node) return true;
  if (ts.isQualifiedName(parent) && parent.right === node) return true;
  if ((ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent) || ts.isPropertySignature(parent) ||
       ts.isMethodDeclaration(parent) || ts.isMethodSignature(parent) || ts.isVariableDeclaration(parent) ||
       ts.isParameter(parent) || ts.isFunctionDeclaration(parent) || ts.isBindingElement(parent) ||
       ts.isImportSpecifier(parent) || ts.isExportSpecifier(parent)) && parent.name === node) return true;
  return false;
}

/** Every Node dependency in one source text. `fileDir` resolves relative imports. */
export function findNodeDependencies(fileName: string, text: string, fileDir: string): Finding[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: Finding[] = [];
  const report = (node: ts.Node, what: string): void => {
    found.push({ file: fileName, line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, what });
  };
  const checkSpecifier = (node: ts.Node, spec: string): void => {
    if (spec.startsWith('node:') || BUILTINS.has(spec) || BUILTINS.has(spec.split('/')[0])) report(node, `imports Node module '${spec}'`);
    else if (spec.startsWith('.') && isNodeOnlyPath(resolve(fileDir, spec))) report(node, `imports the Node-only module '${spec}'`);
  };
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      checkSpecifier(node, node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0]) &&
               (node.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(node.expression) && node.expression.text === 'require'))) {
      checkSpecifier(node, node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      checkSpecifier(node, node.argument.literal.text);
    } else if (ts.isIdentifier(node) && NODE_GLOBALS.has(node.text) && !isNameNotReference(node)) {
      report(node, `uses the Node global '${node.text}'`);
    } else if (ts.isQualifiedName(node) && ts.isIdentifier(node.left) && node.left.text === 'NodeJS') {
      report(node, `uses the Node type namespace 'NodeJS.${node.right.text}'`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

test('the core (src/ outside node/ and cli/) imports no Node module and uses no Node global', () => {
  const files = coreFiles(SRC);
  assert.ok(files.length > 20, `expected the core's source files under ${SRC}, found ${files.length}`);
  const findings = files.flatMap((f) => findNodeDependencies(relative(ROOT, f), readFileSync(f, 'utf8'), dirname(f)));
  assert.deepEqual(findings.map((f) => `${f.file}:${f.line}: ${f.what}`), []);
});

test('the Node-dependency check finds every kind of Node dependency and ignores names, comments and strings', () => {
  const sample = [
    "import { readFileSync } from 'node:fs';",          // 1
    "import path from 'path';",                         // 2
    "export { x } from 'worker_threads';",              // 3
    "const m = await import('node:os');",               // 4
    "import { files } from '../node/files.js';",        // 5
    "const argv = process.argv;",                       // 6
    "const b = Buffer.from('x');",                      // 7
    "let e: NodeJS.ErrnoException;",                    // 8
    "const here = __dirname;",                          // 9
    "// process.exit() in a comment, import 'node:fs'", // 10
    "const s = 'process Buffer node:fs';",              // 11
    "const o = { process: 1 }; o.process; o.Buffer;",   // 12
    "import { thing } from './runtime.js';",            // 13
  ].join('\n');
  const found = findNodeDependencies('sample.ts', sample, join(SRC, 'models'));
  assert.deepEqual(found.map((f) => f.line), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
});
