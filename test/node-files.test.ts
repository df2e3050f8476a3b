/**
 * The file helper every command reads and writes through (src/node/files.ts): only regular files
 * (or symlinks to them) are read — a FIFO, a device, a directory is refused before any read, so
 * nothing blocks; symlink loops are IO_SYMLINK_LOOP; outputs are written beside the target and
 * renamed, and a target that is not a regular file is IO_WRITE and left exactly as it was.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PonderError } from '../src/errors.js';
import { openFileSource, readBytes, writeFileAtomic } from '../src/node/files.js';
import { loadModel } from '../src/node/index.js';
import { assertUsageError, ponder } from './cli-support.js';

const root = mkdtempSync(join(tmpdir(), 'ponder-files-'));
after(() => rmSync(root, { recursive: true, force: true }));

const isCode = (code: string) => (e: unknown): boolean => {
  assert.ok(e instanceof PonderError, `expected PonderError ${code}, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  return true;
};

function mkfifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

/** A copy of demo-ouro with `file` replaced by `make(path)`. */
function modelWith(file: string, make: (path: string) => void): string {
  const dir = mkdtempSync(join(root, 'model-'));
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) if (f !== file) copyFileSync(join('models/demo-ouro', f), join(dir, f));
  make(join(dir, file));
  return dir;
}

test('issue 11: a config.json that is a FIFO is IO_NOT_REGULAR for inspect and run (before: both blocked forever)', async () => {
  const dir = modelWith('config.json', mkfifo);
  for (const argv of [['inspect', dir], ['run', '-m', dir, '-n', '2']]) {
    const r = await ponder(argv);
    assertUsageError(r, 'IO_NOT_REGULAR');
    assert.match(r.err, /config\.json is a FIFO/);
  }
});

test('weights, tokenizer.json or a trace that is a FIFO or a device (or a symlink to one) are refused before any read', async () => {
  const fifoWeights = modelWith('model.safetensors', mkfifo);
  assertUsageError(await ponder(['inspect', fifoWeights]), 'IO_NOT_REGULAR');
  const deviceWeights = modelWith('model.safetensors', (p) => symlinkSync('/dev/zero', p));
  assertUsageError(await ponder(['inspect', deviceWeights]), 'IO_NOT_REGULAR');
  const fifoTokenizer = modelWith('tokenizer.json', mkfifo);
  assertUsageError(await ponder(['run', '-m', fifoTokenizer, '-n', '2']), 'IO_NOT_REGULAR');
  await assert.rejects(loadModel(fifoTokenizer), isCode('IO_NOT_REGULAR'));
  const fifoTrace = join(root, 'trace-fifo.json');
  mkfifo(fifoTrace);
  assertUsageError(await ponder(['trace', '--from', fifoTrace, '--html', join(root, 'never.html')]), 'IO_NOT_REGULAR');
  assert.throws(() => readBytes('/dev/zero', { maxBytes: 10, code: 'CFG_JSON', what: 'a config' }), isCode('IO_NOT_REGULAR'));
  assert.throws(() => openFileSource(root), isCode('IO_IS_DIRECTORY'));
});

test('issue 11: a config.json symlinked to itself is IO_SYMLINK_LOOP (before: read as "no config.json"); a dangling one is IO_NOT_FOUND', async () => {
  const loop = modelWith('config.json', (p) => symlinkSync('config.json', p));
  for (const argv of [['inspect', loop], ['run', '-m', loop, '-n', '2']]) assertUsageError(await ponder(argv), 'IO_SYMLINK_LOOP');
  const dangling = modelWith('config.json', (p) => symlinkSync('nowhere.json', p));
  assertUsageError(await ponder(['run', '-m', dangling, '-n', '2']), 'IO_NOT_FOUND');
  const linked = modelWith('config.json', (p) => symlinkSync(join(process.cwd(), 'models/demo-ouro/config.json'), p));
  const r = await ponder(['inspect', linked]);
  assert.equal(r.code, 0, r.err); // a symlink to a regular file is that file
});

test('issue 11: conform DIR with a symlink loop or a link back to its own directory is IO_SYMLINK_LOOP, not INTERNAL or an endless walk', async () => {
  const looping = mkdtempSync(join(root, 'golden-loop-'));
  symlinkSync('b', join(looping, 'a'));
  symlinkSync('a', join(looping, 'b'));
  assertUsageError(await ponder(['conform', looping]), 'IO_SYMLINK_LOOP');
  const cycle = mkdtempSync(join(root, 'golden-cycle-'));
  mkdirSync(join(cycle, 'ouro'));
  symlinkSync('..', join(cycle, 'ouro', 'up'));
  assertUsageError(await ponder(['conform', cycle]), 'IO_SYMLINK_LOOP');
});

test('issue 11: trace --html never replaces what is not a regular file: a device, a symlink, a FIFO, a directory are IO_WRITE and stay as they were', async () => {
  const trace = join(root, 'trace.json');
  const made = await ponder(['run', '-m', 'models/demo-ouro', '--ids', '1,2', '-n', '2', '--json']);
  assert.equal(made.code, 0, made.err);
  writeFileSync(trace, made.out);
  const link = join(root, 'link.html');
  symlinkSync('/dev/null', link);
  const fifo = join(root, 'out-fifo.html');
  mkfifo(fifo);
  const dir = join(root, 'out-dir.html');
  mkdirSync(dir);
  for (const target of ['/dev/null', link, fifo, dir]) {
    const before = lstatSync(target);
    assertUsageError(await ponder(['trace', '--from', trace, '--html', target]), 'IO_WRITE');
    const now = lstatSync(target);
    assert.equal(now.mode, before.mode, `${target} changed kind`);
    assert.equal(now.ino, before.ino, `${target} was replaced`);
  }
  assert.equal(readlinkSync(link), '/dev/null');
  assert.ok(statSync('/dev/null').isCharacterDevice());
  // no temporary file is left beside any refused target
  assert.deepEqual(readdirSync(root).filter((f) => f.endsWith('.tmp')), []);
  // a regular file is replaced whole
  const page = join(root, 'page.html');
  writeFileSync(page, 'old');
  const ok = await ponder(['trace', '--from', trace, '--html', page]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(readFileSync(page, 'utf8'), /^<!doctype html>/);
  assertUsageError(await ponder(['trace', '--from', trace, '--html', join(root, 'missing-dir', 'x.html')]), 'IO_NOT_FOUND');
});

test('writeFileAtomic writes through a temporary file beside the target and leaves nothing else behind', () => {
  const dir = mkdtempSync(join(root, 'atomic-'));
  const target = join(dir, 'out.txt');
  writeFileAtomic(target, 'one');
  writeFileAtomic(target, new TextEncoder().encode('two'));
  assert.equal(readFileSync(target, 'utf8'), 'two');
  assert.deepEqual(readdirSync(dir), ['out.txt']);
  symlinkSync(target, join(dir, 'alias.txt'));
  assert.throws(() => writeFileAtomic(join(dir, 'alias.txt'), 'three'), isCode('IO_WRITE'));
  assert.equal(readFileSync(target, 'utf8'), 'two');
  assert.ok(existsSync(join(dir, 'alias.txt')) && lstatSync(join(dir, 'alias.txt')).isSymbolicLink());
});

test('a file over its read limit is refused from its size, before it is read', () => {
  const big = join(root, 'big.json');
  writeFileSync(big, '{}'.padEnd(1000, ' '));
  assert.throws(() => readBytes(big, { maxBytes: 999, code: 'CFG_JSON', what: 'a JSON config' }), (e: unknown) => isCode('CFG_JSON')(e) && /1000 bytes is too large for a JSON config \(limit 999 bytes\)/.test((e as Error).message));
});
