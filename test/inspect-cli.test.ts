/**
 * `ponder inspect`: valid inputs list every tensor and the totals computed from the header; invalid
 * inputs give exit 2, nothing on stdout and exactly one `error[CODE]:` line (plus a hint line) on
 * stderr, never a stack trace. Most tests call main() with a fake CliIO; the last one spawns the
 * real bin/ponder.js.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { ouroFamily } from '../src/models/ouro-family.js';
import { configObject } from '../src/format/config.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertUsageError, ensureBuilt, ponder, type Run } from './cli-support.js';
import { numel, parseSafetensors, writeSafetensors } from '../src/format/safetensors.js';
import { entry, stFile } from './fixtures/safetensors-bytes.js';
import { loadModel } from '../src/node/index.js';
import { randomWeights, tinyConfig } from './huginn-fixture.js';

/** `ponder inspect ...argv` */
const run = (...argv: string[]): Promise<Run> => ponder(['inspect', ...argv]);

const root = mkdtempSync(join(tmpdir(), 'ponder-inspect-'));
after(() => rmSync(root, { recursive: true, force: true }));
const golden = join('spec/golden/ouro', readdirSync('spec/golden/ouro').find((f) => f.endsWith('.safetensors'))!);

test('inspect FILE lists every tensor with dtype, shape and bytes, and totals that add up', async () => {
  const r = await run(golden);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, '');
  const file = parseSafetensors(new Uint8Array(readFileSync(golden)), golden);
  const lines = r.out.split('\n');
  let params = 0;
  let bytes = 0;
  for (const info of file.tensors.values()) {
    const size = info.end - info.begin;
    params += numel(info.shape);
    bytes += size;
    const row = lines.find((l) => l.startsWith(info.name + ' '));
    assert.ok(row, `a row for ${info.name}`);
    assert.match(row!, new RegExp(`\\s${info.dtype}\\s+\\[${info.shape.join(', ')}\\]\\s+${size.toLocaleString('en-US')}$`));
  }
  assert.ok(r.out.includes(`total: ${params.toLocaleString('en-US')} params`), r.out.slice(-300));
  assert.ok(r.out.includes(`${bytes.toLocaleString('en-US')} bytes`));
  assert.ok(r.out.includes(`${file.tensors.size} tensors`));
});

test('inspect --json reports the same tensors and totals as the header', async () => {
  const r = await run(golden, '--json');
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(r.out);
  const file = parseSafetensors(new Uint8Array(readFileSync(golden)), golden);
  assert.deepEqual(report.tensors.map((t: { name: string }) => t.name), [...file.tensors.keys()]);
  for (const t of report.tensors) {
    const info = file.tensors.get(t.name)!;
    assert.deepEqual([t.dtype, t.shape, t.bytes, t.params], [info.dtype, info.shape, info.end - info.begin, numel(info.shape)]);
  }
  assert.equal(report.totals.params, report.tensors.reduce((a: number, t: { params: number }) => a + t.params, 0));
  assert.equal(report.totals.bytes, file.dataLength);
  assert.deepEqual(report.files[0].metadata, { ...file.metadata });
});

test('inspect DIR summarises config.json (model_type, family, key sizes) and --config prints it whole', async () => {
  const dir = join(root, 'ouro-tiny');
  mkdirSync(dir);
  const config = { model_type: 'ouro', hidden_size: 2, vocab_size: 3, num_hidden_layers: 1, total_ut_steps: 4, rope_theta: 1000000.0 };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors([{ name: 'lm_head.weight', dtype: 'BF16', shape: [3, 2], data: new Uint16Array(6) }]));
  const r = await run(dir);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /model_type ouro, family ouro/);
  assert.match(r.out, /vocab_size 3, hidden_size 2, num_hidden_layers 1, total_ut_steps 4/);
  assert.match(r.out, /total: 6 params \(BF16 6\), 12 bytes/);
  const full = await run(dir, '--config');
  assert.ok(full.out.includes('"rope_theta": 1000000'), 'the whole config is printed');
  const json = JSON.parse((await run(dir, '--json')).out);
  assert.deepEqual(json.config.values, config);
  assert.equal(json.family, 'ouro');
});

test('inspect of a sharded checkpoint names each tensor\'s shard', async () => {
  const dir = join(root, 'sharded');
  mkdirSync(dir);
  writeFileSync(join(dir, 'a.safetensors'), writeSafetensors([{ name: 'x', dtype: 'F32', shape: [2], data: new Float32Array(2) }]));
  writeFileSync(join(dir, 'b.safetensors'), writeSafetensors([{ name: 'y', dtype: 'I64', shape: [1], data: new BigInt64Array(1) }]));
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: { x: 'a.safetensors', y: 'b.safetensors' } }));
  const r = await run(dir);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /sharded checkpoint, 2 shards, 2 tensors/);
  assert.match(r.out, /^x\s+F32\s+\[2\]\s+8\s+a\.safetensors$/m);
  assert.match(r.out, /^y\s+I64\s+\[1\]\s+8\s+b\.safetensors$/m);
});

test('tensor names with control characters are quoted, so every listed tensor stays on one line', async () => {
  const path = join(root, 'names.safetensors');
  writeFileSync(path, stFile(`{"a\\nb":${entry('U8', [1], [0, 1])},"":${entry('U8', [1], [1, 2])}}`, 2));
  const r = await run(path);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^"a\\nb"\s+U8/m);
  assert.match(r.out, /^""\s+U8/m);
});

test('inspect --help prints usage with an example and exits 0', async () => {
  const r = await run('--help');
  assert.equal(r.code, 0);
  assert.match(r.out, /^ponder inspect FILE\|DIR/);
  assert.match(r.out, /Examples?:\n\s+ponder inspect \S+/);
});

test('bad files: exit 2, one error line naming the rule, nothing on stdout', async () => {
  const bad: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'ST_HEADER_TOO_SMALL'],
    ['html', new TextEncoder().encode('<!doctype html><html><body>Not Found</body></html>'), 'ST_NOT_SAFETENSORS'],
    ['lfs', new TextEncoder().encode('version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n'), 'ST_NOT_SAFETENSORS'],
    ['dup', stFile(`{"w":${entry('U8', [1], [0, 1])},"w":${entry('U8', [1], [0, 1])}}`, 1), 'ST_DUPLICATE_NAME'],
    ['huge-dim', stFile(`{"w":${entry('F32', '[18446744073709551615]', [0, 4])}}`, 4), 'ST_SHAPE'],
    ['overlap', stFile(`{"a":${entry('F32', [4], [0, 16])},"b":${entry('F32', [4], [0, 16])}}`, 16), 'ST_OFFSETS'],
    ['name-newline', stFile(`{"a\\nb":${entry('F33', [1], [0, 4])}}`, 4), 'ST_DTYPE'],
    ['trailing', stFile(`{"w":${entry('U8', [1], [0, 1])}}`, 5), 'ST_INCOMPLETE_BUFFER'],
  ];
  for (const [name, bytes, code] of bad) {
    const path = join(root, `${name}.safetensors`);
    writeFileSync(path, bytes);
    for (const flags of [[], ['--json']]) assertUsageError(await run(path, ...flags), code);
  }
});

test('bad command lines and paths: exit 2 with one error line and a hint', async () => {
  assertUsageError(await run(), 'ARG_MISSING_PATH');
  assertUsageError(await run(join(root, 'nope')), 'IO_NOT_FOUND');
  assertUsageError(await run(golden, '--frobnicate'), 'ARG_UNKNOWN_FLAG');
  assertUsageError(await run(golden, '--json=yes'), 'ARG_MISSING_VALUE');
  assertUsageError(await run(golden, golden), 'ARG_INVALID');
  const empty = join(root, 'empty-dir');
  mkdirSync(empty);
  assertUsageError(await run(empty), 'MODEL_NO_WEIGHTS');
});

test('an unreadable file is IO_READ (skipped when running as root, who can read anything)', async (t) => {
  if (process.getuid?.() === 0) { t.skip('root ignores file permissions'); return; }
  const path = join(root, 'locked.safetensors');
  writeFileSync(path, writeSafetensors([]), { mode: 0o000 });
  assertUsageError(await run(path), 'IO_READ');
});

test('the real bin/ponder.js: exit 0 with a listing on a golden file, exit 2 and one error line on a bad one', { timeout: 120_000 }, () => {
  ensureBuilt();
  const ok = spawnSync(process.execPath, ['bin/ponder.js', 'inspect', golden], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /total: [\d,]+ params/);
  const path = join(root, 'spawn-bad.safetensors');
  writeFileSync(path, new TextEncoder().encode('<!DOCTYPE html>'));
  const bad = spawnSync(process.execPath, ['bin/ponder.js', 'inspect', path], { encoding: 'utf8' });
  assertUsageError({ code: bad.status!, out: bad.stdout, err: bad.stderr }, 'ST_NOT_SAFETENSORS');
});

test('the real bin/ponder.js: a reader that closes stdout early (`| head -1`) ends it quietly, without a stack trace', { timeout: 120_000 }, async () => {
  ensureBuilt();
  const path = join(root, 'many.safetensors');
  // enough rows that the listing overflows the pipe buffer
  writeFileSync(path, writeSafetensors(Array.from({ length: 5000 }, (_, i) => ({ name: `model.layers.${i}.mlp.down_proj.weight`, dtype: 'F32' as const, shape: [1], data: new Float32Array(1) }))));
  const child = spawn(process.execPath, ['bin/ponder.js', 'inspect', path]);
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdout.once('data', () => child.stdout.destroy());
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(stderr, '');
  assert.equal(status, 0);
});

test('inspect names the family of every bundled model (MoR included) from the one detection table, and keys the family does not read', async () => {
  for (const [model, family] of [['models/demo-huginn', 'huginn'], ['models/demo-ouro', 'ouro'], ['models/demo-mor', 'mor']]) {
    const r = await run(model);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`family ${family}\\n`));
    assert.equal(JSON.parse((await run(model, '--json')).out).family, family);
  }
  const dir = join(root, 'ouro-typo');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'ouro', hidden_size: 2, vocab_size: 3, total_ut_step: 2 }));
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors([{ name: 'lm_head.weight', dtype: 'F32', shape: [3, 2], data: new Float32Array(6) }]));
  assert.match((await run(dir)).out, /keys ponder does not read \(a typo, or a field it ignores\): total_ut_step/);
  assert.deepEqual(JSON.parse((await run(dir, '--json')).out).unknown_config_keys, ['total_ut_step']);
});


/** A full-size checkpoint without its data: the safetensors header, then a sparse hole of the right length (no disk used). */
function sparseCheckpoint(dir: string, config: Record<string, unknown>, tensors: { name: string; shape: readonly number[] }[]): void {
  mkdirSync(dir, { recursive: true });
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    const bytes = 2 * numel(t.shape);
    header[t.name] = { dtype: 'BF16', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(new TextEncoder().encode(json), 8);
  const path = join(dir, 'model.safetensors');
  writeFileSync(path, head);
  truncateSync(path, head.length + offset);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
}

test('Ouro-1.4B shapes (2.9 GB bf16): inspect --context 16384 --kv-dtype bf16 prints a plan over several memory shards; f32 at that context is refused naming what fits', async () => {
  const config = {
    model_type: 'ouro', vocab_size: 49152, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 24, num_attention_heads: 16,
    num_key_value_heads: 16, head_dim: 128, rope_theta: 1e6, rms_norm_eps: 1e-6, max_position_embeddings: 65536, total_ut_steps: 4,
    early_exit_threshold: 1.0, tie_word_embeddings: false,
  };
  const dir = join(root, 'ouro-1.4b-sparse');
  sparseCheckpoint(dir, config, ouroFamily.tensors(ouroFamily.parseConfig(configObject(config, 'config.json'))).filter((t) => !t.optional));
  const r = await run(dir, '--context', '16384', '--kv-dtype', 'bf16', '--max-memory', '20GiB');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /memory plan: context 16384 tokens, bf16 KV cache, [4-9] memory shards/);
  assert.match(r.out, /shard 3: /);
  assert.match(r.out, /longest context within the limit: f32 \d+, bf16 \d+, f16 \d+ tokens/);
  const json = JSON.parse((await run(dir, '--context', '16384', '--kv-dtype', 'bf16', '--max-memory', '20GiB', '--json')).out);
  assert.equal(json.memory_plan.kv_dtype, 'bf16');
  assert.equal(json.memory_plan.shards.reduce((a: number, s: { kv_bytes: number }) => a + s.kv_bytes, 0), 24 * 4 * 2 * 2048 * 2 * 16384);
  const refused = await run(dir, '--context', '16384', '--max-memory', '20GiB');
  assertUsageError(refused, 'MEM_OVER_LIMIT');
  assert.match(refused.err, /--kv-dtype bf16 \(fits \d+ tokens\)/);
});

test('inspect DIR names the chat template, the special tokens the tokenizer adds, and the stop ids with their sources — the same ids the API uses', async () => {
  const chatml = 'test/fixtures/chat-models/ouro-chatml';
  const r = await run(chatml);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /\nchat template: tokenizer_config\.json chat_template, first line "\{% for message in messages %\}"; answers as role "assistant"\n/);
  assert.match(r.out, /\ntokenizer: vocab 405; special tokens added to a plain prompt: nothing \(no rule adds any\); to a chat prompt: none/);
  assert.match(r.out, /\n {2}tokenizer_config\.json: add_bos_token unset, add_eos_token unset, bos_token unset, eos_token <\|im_end\|>\n/);
  assert.match(r.out, /\nstop ids in chat: 400 "<\|endoftext\|>" \(config\.json eos_token_id\), 402 "<\|im_end\|>" \(chat template: ends an answer; tokenizer eos_token\)\n/);
  const json = JSON.parse((await run(chatml, '--json')).out);
  const model = await loadModel(chatml);
  assert.deepEqual(json.stop_ids, model.stopIds());
  assert.deepEqual(json.chat_stop_ids, model.stopIds({ chat: true }));
  assert.equal(json.chat_template.assistant_role, 'assistant');
  assert.match((await run('models/demo-ouro')).out, /\nchat template: none\nstop ids: 2 "\\u0002" \(config\.json eos_token_id\)\n/);

  // Huginn-0125's layout: generation_config eos [65505, 65508], the post-processor's <|begin_text|>, header turns answered as "Huginn"
  const dir = join(root, 'huginn-chat');
  mkdirSync(dir);
  const config = tinyConfig({ E: 8, H: 1, P: 1, R: 1, C: 1, V: 65536, I: 8, meanRecurrence: 2 });
  const weights = randomWeights(config, 1, { dtype: 'BF16' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(weights.names().map((name) => ({ name, dtype: weights.info(name)!.dtype, shape: weights.info(name)!.shape, data: weights.read(name) as ArrayBufferView }))));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 65504, eos_token_id: [65505, 65508], pad_token_id: 65509 }));
  writeFileSync(join(dir, 'tokenizer.json'), readFileSync('test/fixtures/tokenizer-huginn-style.json', 'utf8'));
  const fixture = JSON.parse(readFileSync('test/fixtures/chat/huginn-headers.json', 'utf8'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...fixture.tokenizer_config, chat_template: fixture.template }));
  const h = await run(dir);
  assert.equal(h.code, 0, h.err);
  assert.match(h.out, /\n {2}model_type \(none\), family huginn\n/);
  assert.match(h.out, /special tokens added to a plain prompt: "<\|begin_text\|>" before \(tokenizer\.json post_processor\)/);
  assert.match(h.out, /answers as role "Huginn"\n/);
  assert.match(h.out, /\nstop ids: 65505 "<\|end_text\|>" \(generation_config\.json eos_token_id; Huginn upstream: generation always stops on it \(_get_stops\)\), 65508 "<\|end_turn\|>" \(generation_config\.json eos_token_id; Huginn upstream: generation always stops on it \(_get_stops\)\), 65504 "<\|begin_text\|>" \(Huginn upstream: generation always stops on it \(_get_stops\)\)\n/);
  assert.match(h.out, /\nstop ids in chat: .*65508 "<\|end_turn\|>" \(generation_config\.json eos_token_id; Huginn upstream: generation always stops on it \(_get_stops\); chat template: ends an answer\)/);

  writeFileSync(join(dir, 'chat_template.jinja'), '{% for m in messages %}');
  const broken = await run(dir);
  assert.equal(broken.code, 2);
  assert.match(broken.err, /^error\[CHAT_TEMPLATE_SYNTAX\]: chat template \(chat_template\.jinja\)/);
});

test('a folder with only config.json (Ouro-1.4B): inspect --context 16384 --kv-dtype bf16 plans from the config alone, as for the checkpoint\'s headers, and exits 0', async () => {
  const config = {
    model_type: 'ouro', vocab_size: 49152, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 24, num_attention_heads: 16,
    num_key_value_heads: 16, head_dim: 128, rope_theta: 1e6, rms_norm_eps: 1e-6, max_position_embeddings: 65536, total_ut_steps: 4,
    early_exit_threshold: 1.0, tie_word_embeddings: false, torch_dtype: 'bfloat16',
  };
  const dir = join(root, 'ouro-1.4b-config-only');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const r = await run(dir, '--context', '16384', '--kv-dtype', 'bf16', '--max-memory', '20GiB');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /config\.json only, no weights: every tensor assumed stored as BF16 \(torch_dtype bfloat16\)/);
  assert.match(r.out, /memory plan: context 16384 tokens, bf16 KV cache, [4-9] memory shards/);
  const fromConfig = JSON.parse((await run(dir, '--context', '16384', '--kv-dtype', 'bf16', '--max-memory', '20GiB', '--json')).out);
  // the same plan the checkpoint's own headers give (a sparse bf16 checkpoint of the same config)
  const sparse = join(root, 'ouro-1.4b-sparse-2');
  sparseCheckpoint(sparse, config, ouroFamily.tensors(ouroFamily.parseConfig(configObject(config, 'config.json'))).filter((t) => !t.optional));
  const fromHeaders = JSON.parse((await run(sparse, '--context', '16384', '--kv-dtype', 'bf16', '--max-memory', '20GiB', '--json')).out);
  assert.deepEqual(fromConfig.memory_plan, fromHeaders.memory_plan);
  assert.equal(fromConfig.weights, null);
});
