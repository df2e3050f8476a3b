/**
 * Builds the bundled demo models (models/demo-<family>/) from golden cases: the case's weights
 * (names without the `weights.` prefix) and config in Hugging Face layout, plus a byte-level
 * tokenizer.json whose vocabulary is the model's (id b = byte b, no merges), so any ASCII text
 * round-trips. The weights are random, so generated text is noise: these models exist to run the
 * API, the CLI and the tests without a download.
 *
 *   node --import tsx models/make-demo.ts
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSafetensors, readTensor, writeSafetensors, type TensorToWrite } from '../src/format/safetensors.js';

const CASES: Record<string, string> = {
  huginn: 'spec/golden/huginn/adaptive_exits',
  mor: 'spec/golden/mor/mor_expert_bf16_weights',
  ouro: 'spec/golden/ouro/decode_cached',
};

/** GPT-2's byte → printable character table (bytes_to_unicode). */
function byteToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) table[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  return table;
}

export function byteLevelTokenizerJson(vocabSize: number): string {
  const table = byteToUnicode();
  const vocab: Record<string, number> = {};
  for (let b = 0; b < Math.min(vocabSize, 256); b++) vocab[table[b]] = b;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null,
    pre_tokenizer: byteLevel, post_processor: null, decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  });
}

for (const [family, base] of Object.entries(CASES)) {
  const c = JSON.parse(readFileSync(`${base}.json`, 'utf8')) as { config: Record<string, unknown> };
  const file = parseSafetensors(new Uint8Array(readFileSync(`${base}.safetensors`)), `${base}.safetensors`);
  const tensors: TensorToWrite[] = [];
  for (const [name, info] of file.tensors) {
    if (!name.startsWith('weights.')) continue;
    const data = readTensor(file, name);
    tensors.push({ name: name.slice('weights.'.length), dtype: info.dtype, shape: [...info.shape], data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
  }
  const dir = join('models', `demo-${family}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors, { source: base }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c.config, null, 2) + '\n');
  const mc = (c.config.model_config ?? c.config) as Record<string, unknown>;
  const vocab = Number(mc.vocab_size ?? c.config.padded_vocab_size);
  writeFileSync(join(dir, 'tokenizer.json'), byteLevelTokenizerJson(vocab));
  console.log(`${dir}: ${tensors.length} tensors, vocab ${vocab}`);
}
