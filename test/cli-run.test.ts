/**
 * `ponder run` and `ponder trace`: output shape (legend, streamed tokens, summary; plain without a
 * terminal, coloured on one), --json is a valid trace, the HTML page is written whole, and every
 * bad input is exit 2 with one `error[CODE]:` line, a hint, and nothing on stdout.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertUsageError, ponder as ponderIO, type Run } from './cli-support.js';

const ponder = (argv: string[], isTTY = false): Promise<Run> => ponderIO(argv, { isTTY });
import { parseTraceJSON, summarizeTrace } from '../src/trace/trace.js';
import { DEFAULT_MODEL, DEFAULT_MODEL_POLICY } from '../src/defaults.js';
import { loadModel } from '../src/node/index.js';

const DEFAULT_DIR = join('models', DEFAULT_MODEL);

const root = mkdtempSync(join(tmpdir(), 'ponder-run-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('run without --model uses the bundled trained model with an adaptive policy, says so in one line, streams plain text then a summary', async () => {
  const r = await ponder(['run', '--prompt', 'Hello', '-n', '5']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, new RegExp(`^no --model given: using the bundled trained model ${DEFAULT_MODEL} with --policy "${DEFAULT_MODEL_POLICY.replace(/[()]/g, '\\$&')}"`));
  assert.equal(r.err.trim().split('\n').length, 1);
  const lines = r.out.trimEnd().split('\n');
  assert.match(lines[0], /^depth: 1\.\.\d+ steps per token/);
  assert.doesNotMatch(r.out, /\x1b\[/, 'no escape codes without a terminal');
  assert.match(lines.at(-2)!, /^5 tokens, [\d.]+ tok\/s · depth mean [\d.]+ \(min \d+, max \d+, full \d+\) · compute saved [\d.]+% vs full depth$/);
  assert.ok(lines.at(-1)!.startsWith('prompt '));
  assert.ok(lines.at(-1)!.endsWith(` · policy ${DEFAULT_MODEL_POLICY} · huginn · finished: length`), lines.at(-1));
  // a --policy, or a --model, replaces the pairing: the model's own default then
  const own = await ponder(['run', '--prompt', 'Hello', '-n', '2', '--policy', 'default']);
  assert.match(own.err, /^no --model given: using the bundled trained model huginn-sotu \(models/);
  assert.match(own.out, / · policy default · huginn · /);
});

test('run without arguments prints English prose whose depth varies from token to token', async () => {
  const r = await ponder(['run', '--json']);
  assert.equal(r.code, 0, r.err);
  const trace = parseTraceJSON(r.out);
  const generated = trace.tokens.filter((t) => t.phase === 'decode');
  assert.ok(new Set(generated.map((t) => t.steps)).size > 1, 'the depth varies');
  const text = generated.map((t) => t.text).join('');
  const words = text.match(/[A-Za-z]+/g) ?? [];
  assert.ok(words.length >= 10, text);
  // most words are words of the training corpus's language: the tokenizer keeps a whole common word as one token
  const model = await loadModel(DEFAULT_DIR);
  const whole = words.filter((w) => model.encode(' ' + w, false).length === 1);
  assert.ok(whole.length / words.length > 0.6, `${whole.length} of ${words.length} words are single tokens: ${text}`);
});

test('on a terminal each token is coloured by its depth and the legend shows swatches', async () => {
  const r = await ponder(['run', '--model', 'models/demo-huginn', '--prompt', 'Hi', '-n', '4', '--policy', 'exit(kl, 1e-3)'], true);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out.split('\n')[0], /^depth .*\x1b\[48;5;\d+m/);
  assert.ok((r.out.match(/\x1b\[48;5;\d+m/g) ?? []).length >= 4);
});

test('run --json prints one valid trace whose tokens are the prompt then the generated ids', async () => {
  const r = await ponder(['run', '--model', 'models/demo-ouro', '--ids', '1,2,3', '-n', '4', '--policy', 'exit(gate)', '--threshold', '0.5', '--json']);
  assert.equal(r.code, 0, r.err);
  const trace = parseTraceJSON(r.out);
  assert.equal(trace.family, 'ouro');
  assert.equal(trace.policy, 'exit(gate, 0.5)');
  assert.deepEqual(trace.tokens.slice(0, 3).map((t) => t.id), [1, 2, 3]);
  assert.equal(summarizeTrace(trace).tokens, 4);
});

test('sampling flags with a seed give the same output twice', async () => {
  const argv = ['run', '--model', 'models/demo-mor', '--prompt', 'abc', '-n', '6', '--temperature', '0.9', '--top-k', '20', '--top-p', '0.9', '--min-p', '0.01', '--repetition-penalty', '1.2', '--seed', '42', '--json'];
  const a = await ponder(argv);
  const b = await ponder(argv);
  assert.equal(a.code, 0, a.err);
  assert.deepEqual(parseTraceJSON(a.out).tokens.map((t) => t.id), parseTraceJSON(b.out).tokens.map((t) => t.id));
  assert.equal(parseTraceJSON(a.out).sampling!.seed, 42);
});

test('the default thread count (the available cores), --threads 1 and --threads 2 give the same tokens', async () => {
  const argv = ['run', '--model', 'models/demo-ouro', '--ids', '4,5,6', '-n', '4', '--json'];
  const byDefault = await ponder(argv);
  const one = await ponder([...argv, '--threads', '1']);
  const two = await ponder([...argv, '--threads', '2']);
  for (const r of [byDefault, one, two]) assert.equal(r.code, 0, r.err);
  const tokens = (r: Run) => parseTraceJSON(r.out).tokens.map((t) => [t.id, t.steps]);
  assert.deepEqual(tokens(two), tokens(one));
  assert.deepEqual(tokens(byDefault), tokens(one));
  assertUsageError(await ponder(['run', '--threads', '0']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--threads', '2', '--kernels', 'scalar']), 'ARG_INVALID');
});

test('trace --html writes a self-contained page; --from renders a saved trace; no temporary file is left', async () => {
  const html = join(root, 'page.html');
  const r = await ponder(['trace', '--model', 'models/demo-mor', '--prompt', 'Hello', '-n', '4', '--policy', 'router(causal, 0.5)', '--html', html]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^wrote .*page\.html: \d+ tokens \(mor, router\(causal, 0\.5\)\)\n$/);
  const page = readFileSync(html, 'utf8');
  assert.match(page, /^<!doctype html>/i);
  assert.doesNotMatch(page, /<script[^>]+src=|<link[^>]+href="http/i, 'no external resources');
  const json = await ponder(['run', '--model', 'models/demo-huginn', '--ids', '5,6', '-n', '3', '--json']);
  writeFileSync(join(root, 't.json'), json.out);
  const again = await ponder(['trace', '--from', join(root, 't.json'), '--html', join(root, 'from.html')]);
  assert.equal(again.code, 0, again.err);
  assert.match(readFileSync(join(root, 'from.html'), 'utf8'), /huginn/);
  assert.deepEqual(readdirSync(root).filter((f) => f.endsWith('.tmp')), []);
});

test('a prompt the tokenizer cannot encode exactly is reported on stderr, not silently changed', async () => {
  const r = await ponder(['run', '--model', 'models/demo-huginn', '--prompt', 'héllo', '-n', '1']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^note: the tokenizer reads the prompt as "hllo"/m);
  const ascii = await ponder(['run', '--model', 'models/demo-huginn', '--prompt', 'hello', '-n', '1']);
  assert.doesNotMatch(ascii.err, /note:/);
});

test('--help on run and trace, and both in the top-level help', async () => {
  for (const command of ['run', 'trace']) {
    const r = await ponder([command, '--help']);
    assert.equal(r.code, 0);
    assert.match(r.out, new RegExp(`^ponder ${command}`));
    assert.match(r.out, /--policy POLICY/);
  }
  const top = await ponder(['--help']);
  assert.match(top.out, /\n {2}run /);
  assert.match(top.out, /\n {2}trace --html FILE/);
});

test('bad flags: unknown flag, missing value, non-numbers, both --prompt and --ids, bad ids, bad policy', async () => {
  assertUsageError(await ponder(['run', '--frobnicate']), 'ARG_UNKNOWN_FLAG');
  assertUsageError(await ponder(['run', '--model']), 'ARG_MISSING_VALUE');
  assertUsageError(await ponder(['run', '--max-new-tokens', 'many']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--temperature', 'hot']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--seed', '1.5']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--prompt', 'x', '--ids', '1']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--ids', '1,x']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--policy', 'warp(9)']), 'ARG_POLICY');
  assertUsageError(await ponder(['run', '--model', 'models/demo-mor', '--policy', 'exit(gate, 0.5)']), 'ARG_POLICY');
  assertUsageError(await ponder(['run', '--threshold', '0.5']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', 'stray']), 'ARG_INVALID');
  assertUsageError(await ponder(['run', '--temperature=-1']), 'ARG_INVALID');
  assertUsageError(await ponder(['trace', '--prompt', 'x']), 'ARG_MISSING_PATH');
  assertUsageError(await ponder(['trace', '--html', join(root, 'no/such/dir/x.html')]), 'IO_NOT_FOUND');
});

test('missing files, a directory that is not a model, an unknown model type, a prompt longer than the context', async () => {
  assertUsageError(await ponder(['run', '--model', join(root, 'nope')]), 'IO_NOT_FOUND');
  const empty = join(root, 'empty');
  mkdirSync(empty);
  assertUsageError(await ponder(['run', '--model', empty]), 'MODEL_NO_WEIGHTS');
  const noConfig = join(root, 'no-config');
  mkdirSync(noConfig);
  copyFileSync('models/demo-ouro/model.safetensors', join(noConfig, 'model.safetensors'));
  assertUsageError(await ponder(['run', '--model', noConfig]), 'MODEL_NO_CONFIG');
  const llama = join(root, 'llama');
  mkdirSync(llama);
  copyFileSync('models/demo-ouro/model.safetensors', join(llama, 'model.safetensors'));
  writeFileSync(join(llama, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 64 }));
  const unknown = await ponder(['run', '--model', llama]);
  assertUsageError(unknown, 'CFG_MODEL_TYPE');
  assert.match(unknown.err, /supported model types: ouro/);
  const badJson = join(root, 'bad-json');
  mkdirSync(badJson);
  copyFileSync('models/demo-ouro/model.safetensors', join(badJson, 'model.safetensors'));
  writeFileSync(join(badJson, 'config.json'), '{"model_type": "ouro",');
  assertUsageError(await ponder(['run', '--model', badJson]), 'CFG_JSON');
  const long = Array.from({ length: 65 }, () => '1').join(',');
  assertUsageError(await ponder(['run', '--model', 'models/demo-mor', '--ids', long]), 'GEN_CONTEXT');
  assertUsageError(await ponder(['run', '--model', 'models/demo-mor', '--prompt', 'x'.repeat(80)]), 'GEN_CONTEXT');
  assertUsageError(await ponder(['run', '--model', 'models/demo-mor', '--ids', '1,256']), 'GEN_TOKEN_ID');
  assertUsageError(await ponder(['trace', '--from', join(root, 'missing.json'), '--html', join(root, 'x.html')]), 'IO_NOT_FOUND');
  assert.ok(!readdirSync(root).includes('x.html'), 'no page written on error');
});
