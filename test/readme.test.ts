/**
 * Every example in README.md runs: each ```ts block as its own module (imports of 'ponder' and
 * 'ponder/node' mapped to the sources), each `npx ponder ...` line of the ```sh blocks through the
 * CLI's main() with exit 0 (a `> FILE` redirect writes stdout to FILE). `npm install` and
 * `npm test` are not run from here: the first is how this checkout was set up, the second is this
 * suite. The spec documents' examples run in test/spec-examples.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { main, type CliIO } from '../src/cli/main.js';
import { runExample } from './spec-examples.js';

const readme = readFileSync('README.md', 'utf8');
const tsBlocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
const shBlocks = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);

/** Splits a command line into words: double quotes group, `# ...` is a comment. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let current = '';
  let quoted = false;
  let inWord = false;
  for (const ch of line) {
    if (ch === '"') { quoted = !quoted; inWord = true; continue; }
    if (!quoted && ch === '#' && !inWord) break;
    if (!quoted && /\s/.test(ch)) { if (inWord) words.push(current); current = ''; inWord = false; continue; }
    current += ch;
    inWord = true;
  }
  assert.ok(!quoted, `unbalanced quotes in ${line}`);
  if (inWord) words.push(current);
  return words;
}

test('the README starts with the install-and-run command, then npm test', () => {
  const lines = shBlocks[0].trim().split('\n');
  assert.match(lines[0], /^npm install && npx ponder run\b/);
  assert.match(lines[1], /^npm test\b/);
});

test('every ts example of the README runs', () => {
  assert.ok(tsBlocks.length >= 1);
  const src = pathToFileURL(join(process.cwd(), 'src')).href;
  tsBlocks.forEach((block, i) => {
    const module = block.replace(/from 'ponder\/node'/g, `from '${src}/node/index.ts'`).replace(/from 'ponder'/g, `from '${src}/index.ts'`);
    runExample(module, `readme-${i}`);
  });
});

test('every `npx ponder` command of the README exits 0', async () => {
  const commands = shBlocks.flatMap((b) => b.split('\n')).map((l) => l.trim()).filter((l) => l.includes('npx ponder'));
  assert.ok(commands.length >= 10);
  for (const line of commands) {
    const words = shellWords(line.slice(line.indexOf('npx ponder') + 'npx ponder'.length));
    const redirect = words.indexOf('>');
    const argv = redirect === -1 ? words : words.slice(0, redirect);
    let out = '';
    let err = '';
    const io: CliIO = { out: (t) => { out += t; }, err: (t) => { err += t; }, bundledGoldenDir: 'spec/golden' };
    const code = await main(argv, io);
    assert.equal(code, 0, `${line}\n${err}`);
    if (redirect !== -1) writeFileSync(words[redirect + 1], out);
  }
});
