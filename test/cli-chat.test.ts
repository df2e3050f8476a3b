/**
 * `ponder run --chat`, `--print-prompt` and `ponder chat` (spec/api.md §Chat): the prompt printed
 * is exactly the rendered template (no newline added, no weights read); the answer streams with
 * its thinking dimmed or left out and ends on the end-of-turn token; `ponder chat` holds a
 * conversation over two turns (the second continuing the KV cache), /reset starts over, Ctrl-C
 * cancels the answer and keeps the session, and Ctrl-C twice at the prompt quits — in-process with
 * a scripted input, through a pipe with a real SIGINT, and through a pseudo-terminal (`script`).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { loadModel } from '../src/node/index.js';
import { assertUsageError, ensureBuilt, ponder, type Run } from './cli-support.js';
import { chain, fixtureTokenizerConfig, QWEN2, scriptedOuro, writeChatModel } from './chat-fixture.js';

const GREETER_DIR = 'test/fixtures/chat-models/ouro-chatml';
const root = mkdtempSync(join(tmpdir(), 'ponder-chat-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));
/** A scripted model that never ends its answer ("abab…"), with room for long ones: something to cancel. */
const LOOPER_DIR = writeChatModel(join(root, 'looper'), scriptedOuro(chain([QWEN2.newline, QWEN2.a, QWEN2.b, QWEN2.a], QWEN2.imEnd), { vocab: 512, context: 32768 }), fixtureTokenizerConfig('chatml-default-system'));
const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');

test('run --chat --print-prompt prints exactly the rendered template, with no newline added, without reading the weights', async () => {
  const model = await loadModel(GREETER_DIR);
  const expected = model.renderChat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi there' }]);
  const junk = join(root, 'junk-weights');
  cpSync(GREETER_DIR, junk, { recursive: true });
  writeFileSync(join(junk, 'model.safetensors'), 'not safetensors');
  const r = await ponder(['run', '--model', junk, '--chat', '--system', 'Be brief.', '--prompt', 'Hi there', '--print-prompt']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, expected);
  assert.ok(r.out.endsWith('<|im_start|>assistant\n'));
  assertUsageError(await ponder(['run', '--model', junk, '--chat', '--prompt', 'Hi']), 'ST_HEADER_TOO_LARGE'); // generating does read them
  const plain = await ponder(['run', '--model', junk, '--prompt', 'as is', '--print-prompt']);
  assert.equal(plain.out, 'as is');
  const thinking = join(root, 'thinking');
  cpSync(GREETER_DIR, thinking, { recursive: true });
  writeFileSync(join(thinking, 'tokenizer_config.json'), JSON.stringify(fixtureTokenizerConfig('chatml-thinking')));
  const off = await ponder(['run', '--model', thinking, '--chat', '--prompt', 'Q', '--template-arg', 'enable_thinking=false', '--print-prompt']);
  assert.ok(off.out.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n'), JSON.stringify(off.out));
});

test('run --chat streams the answer and ends on the end-of-turn token; thinking is dimmed on a terminal, left out with --hide-thinking', async () => {
  const r = await ponder(['run', '--model', GREETER_DIR, '--chat', '--prompt', 'Hi']);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.split('\n');
  assert.equal(lines.slice(1, 4).join('\n'), '<think>hm</think>\n\nHello!');
  assert.match(r.out, /finished: stop_id\n$/);
  const hidden = await ponder(['run', '--model', GREETER_DIR, '--chat', '--prompt', 'Hi', '--hide-thinking']);
  assert.equal(hidden.out.split('\n')[1], 'Hello!');
  assert.doesNotMatch(hidden.out, /think|hm/);
  const tty = await ponder(['run', '--model', GREETER_DIR, '--chat', '--prompt', 'Hi'], { isTTY: true });
  assert.match(tty.out, /\x1b\[2m\x1b\[48;5;\d+m\x1b\[38;5;\d+m<think>/, 'the thinking block is faint');
  assert.match(tty.out, /[^m]\x1b\[48;5;\d+m\x1b\[38;5;\d+mHello/, 'the answer is not');
  const stopped = await ponder(['run', '--model', GREETER_DIR, '--chat', '--prompt', 'Hi', '--stop-id', String(QWEN2.hello), '--json']);
  const ids = JSON.parse(stopped.out).tokens.map((t: { id: number }) => t.id);
  assert.equal(ids.at(-1), QWEN2.hello, '--stop-id adds a stop id to the chat defaults');
});

test('--special-tokens / --no-special-tokens: tokenizer_config.json add_bos_token decides for a plain prompt, the flag overrides; a chat prompt gets none by default', async () => {
  const dir = join(root, 'bos');
  cpSync(GREETER_DIR, dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...fixtureTokenizerConfig('chatml-default-system'), add_bos_token: true, bos_token: '<|endoftext|>' }));
  const first = async (...flags: string[]): Promise<number> => JSON.parse((await ponder(['run', '--model', dir, '--prompt', 'Hi', '-n', '1', '--json', ...flags])).out).tokens[0].id;
  assert.equal(await first(), QWEN2.endoftext);
  assert.equal(await first('--no-special-tokens'), 72);
  assert.equal(await first('--chat'), QWEN2.imStart);
  assert.equal(await first('--chat', '--special-tokens'), QWEN2.endoftext);
});

test('bad chat flags are usage errors before anything is printed', async () => {
  assertUsageError(await ponder(['run', '--chat', '--prompt', 'Hi']), 'CHAT_TEMPLATE_MISSING'); // the demo model is not a chat model
  assertUsageError(await ponder(['chat', '--model', 'models/demo-ouro'], { input: new PassThrough() }), 'CHAT_TEMPLATE_MISSING');
  assertUsageError(await ponder(['run', '--model', GREETER_DIR, '--system', 'x']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--model', GREETER_DIR, '--chat', '--ids', '1,2']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--model', GREETER_DIR, '--special-tokens', '--no-special-tokens']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--model', GREETER_DIR, '--stop-id', 'x']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--model', GREETER_DIR, '--stop-id', '9999']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--model', GREETER_DIR, '--chat', '--template-arg', 'novalue']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--model', GREETER_DIR, '--chat', '--template-arg', 'messages=[]']), 'ARG_INVALID');
  assertUsageError(await ponder(['chat', '--model', GREETER_DIR, '--prompt', 'x'], { input: new PassThrough() }), 'ARG_UNKNOWN_FLAG');
});

/** `ponder chat` in-process: lines come from `input`; `interrupt()` is Ctrl-C. */
function chatSession(argv: string[]): { input: PassThrough; interrupt: () => void; done: Promise<Run>; output: () => string; errors: () => string } {
  const input = new PassThrough();
  let handler: (() => void) | null = null;
  let out = '';
  let err = '';
  const done = ponder(['chat', ...argv], { input, out: (t) => { out += t; }, err: (t) => { err += t; }, onInterrupt: (h) => { handler = h; return () => { handler = null; }; } })
    .then((r) => ({ ...r, out, err }));
  return { input, interrupt: () => handler?.(), done, output: () => out, errors: () => err };
}

async function until(what: () => boolean, label: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${label}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('ponder chat: two turns (the second continues the cache), /reset starts over, end of input quits', async () => {
  const chat = chatSession(['--model', GREETER_DIR, '--system', 'Be brief.', '--hide-thinking']);
  chat.input.end('Hi\nAnd you?\n/reset\nAgain\n');
  const r = await chat.done;
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, 'Hello!\nHello!\nHello!\n');
  const turns = r.err.split('\n').filter((l) => l.includes('from the cache'));
  assert.equal(turns.length, 3);
  assert.match(turns[0], /prompt \d+ tokens \(0 from the cache\) · finished: stop_id$/);
  assert.match(turns[1], /prompt \d+ tokens \([1-9]\d* from the cache\) · finished: stop_id$/);
  assert.match(r.err, /\(new conversation\)/);
  assert.match(turns[2], /\(0 from the cache\)/, 'after /reset the conversation is new');
});

test('ponder chat --context N sizes the conversation\'s KV cache: turns continue it while they fit, the one that does not is computed again', async () => {
  const chat = chatSession(['--model', GREETER_DIR, '--context', '100', '-n', '10']);
  chat.input.end('Hi\nAnd you?\nAnd then?\n');
  const r = await chat.done;
  assert.equal(r.code, 0, r.err);
  const cached = r.err.split('\n').filter((l) => l.includes('from the cache')).map((l) => Number(/\((\d+) from the cache\)/.exec(l)![1]));
  assert.equal(cached.length, 3);
  assert.equal(cached[0], 0);
  assert.ok(cached[1] > 0, 'the second turn fits in 100 positions');
  assert.equal(cached[2], 0, 'the third does not: a larger cache, computed again');
  assertUsageError(await ponder(['chat', '--model', GREETER_DIR, '--context', '0'], { input: new PassThrough() }), 'ARG_INVALID');
});

test('ponder chat: Ctrl-C cancels the answer and keeps the session; Ctrl-C twice in a row at the prompt quits', async () => {
  const chat = chatSession(['--model', LOOPER_DIR, '-n', '30000']);
  chat.input.write('Hi\n');
  await until(() => chat.output().length > 20, 'the answer to start');
  chat.interrupt();
  await until(() => chat.errors().includes('(cancelled)'), 'the cancel');
  assert.match(chat.errors(), /\(cancelled\) .* finished: aborted\n/);
  chat.input.write('Go on\n');
  await until(() => (chat.errors().match(/from the cache/g) ?? []).length === 1 && chat.output().split('\n').length >= 2 && chat.output().split('\n')[1].length > 20, 'the second answer');
  chat.interrupt();
  await until(() => (chat.errors().match(/from the cache/g) ?? []).length === 2, 'the second cancel');
  assert.match(chat.errors().split('\n').filter((l) => l.includes('from the cache'))[1], /\([1-9]\d* from the cache\) · finished: aborted/, 'the session went on from its cache');
  chat.interrupt(); // right after a cancel: the second Ctrl-C in a row
  const r = await chat.done;
  assert.equal(r.code, 0);

  const idle = chatSession(['--model', GREETER_DIR]);
  await until(() => idle.errors().includes('ponder chat'), 'the banner');
  idle.interrupt();
  await until(() => idle.errors().includes('Ctrl-C again to quit'), 'the hint');
  idle.interrupt();
  assert.equal((await idle.done).code, 0);
});

/** Collects a child's output and waits for text in it. */
function watch(child: ChildProcessWithoutNullStreams): { out: () => string; err: () => string; waitFor: (what: () => boolean, label: string) => Promise<void>; exit: Promise<number | null> } {
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exit = new Promise<number | null>((resolve) => child.on('close', resolve));
  return { out: () => out, err: () => err, waitFor: (what, label) => until(what, label), exit };
}

test('the real bin/ponder.js through a pipe: two turns, Ctrl-C (SIGINT) cancels the answer and keeps the session, twice quits', { timeout: 180_000 }, async () => {
  ensureBuilt();
  const greeter = spawn(process.execPath, ['bin/ponder.js', 'chat', '--model', GREETER_DIR]);
  greeter.stdin.end('Hi\nAnd you?\n/exit\n');
  const g = watch(greeter);
  assert.equal(await g.exit, 0, g.err());
  assert.equal(g.out(), '<think>hm</think>\n\nHello!\n<think>hm</think>\n\nHello!\n');
  assert.match(g.err(), /\([1-9]\d* from the cache\)/);

  const looper = spawn(process.execPath, ['bin/ponder.js', 'chat', '--model', LOOPER_DIR, '-n', '30000']);
  const l = watch(looper);
  looper.stdin.write('Hi\n');
  await l.waitFor(() => l.out().length > 20, 'the answer to start');
  looper.kill('SIGINT');
  await l.waitFor(() => l.err().includes('(cancelled)'), 'the cancel');
  looper.stdin.write('Again\n');
  await l.waitFor(() => (l.out().split('\n')[1] ?? '').length > 20, 'the second answer');
  looper.kill('SIGINT');
  await l.waitFor(() => (l.err().match(/\(cancelled\)/g) ?? []).length === 2, 'the second cancel');
  assert.match(l.err(), /\([1-9]\d* from the cache\) · finished: aborted/);
  looper.kill('SIGINT');
  assert.equal(await l.exit, 0, l.err());
});

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

test('the real bin/ponder.js in a pseudo-terminal (script): prompts, two turns, /reset, Ctrl-C cancels, Ctrl-C twice quits', { timeout: 180_000, skip: hasScript ? false : 'util-linux script is not installed' }, async () => {
  ensureBuilt();
  const inPty = (args: string): ChildProcessWithoutNullStreams => spawn('script', ['-q', '-e', '-c', `${process.execPath} bin/ponder.js chat ${args}`, '/dev/null']);
  const greeter = inPty(`--model ${GREETER_DIR} --hide-thinking`);
  const g = watch(greeter);
  const turns = (): number => (stripAnsi(g.out() + g.err()).match(/from the cache/g) ?? []).length;
  await g.waitFor(() => g.out().includes('> '), 'the prompt');
  greeter.stdin.write('Hi\r');
  await g.waitFor(() => turns() === 1, 'the first answer');
  greeter.stdin.write('And you?\r');
  await g.waitFor(() => turns() === 2, 'the second answer');
  greeter.stdin.write('/reset\r');
  await g.waitFor(() => g.out().includes('(new conversation)'), 'the reset');
  greeter.stdin.write('/exit\r');
  assert.equal(await g.exit, 0);
  const text = stripAnsi(g.out());
  assert.equal((text.match(/Hello!/g) ?? []).length, 2);
  assert.match(text, /\([1-9]\d* from the cache\)/);

  const looper = inPty(`--model ${LOOPER_DIR} -n 30000`);
  const l = watch(looper);
  await l.waitFor(() => l.out().includes('> '), 'the prompt');
  looper.stdin.write('Hi\r');
  await l.waitFor(() => (stripAnsi(l.out()).match(/ab/g) ?? []).length > 10, 'the answer to start');
  looper.stdin.write('\x03');
  await l.waitFor(() => l.out().includes('(cancelled)'), 'the cancel');
  looper.stdin.write('\x03'); // the second in a row, now at the prompt
  assert.equal(await l.exit, 0);
});
