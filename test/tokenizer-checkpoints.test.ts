/**
 * Tokenizers built like the published checkpoints' (scripts/make-tokenizer-fixtures.mjs): the
 * Qwen2-style byte-level BPE of Ouro and Huginn-0125's bpeasy BPE, each with its pre-tokenizer
 * regex and special tokens. Vocabularies are tiny, so every expected id below is derived by hand
 * from the rules: byte symbol ids are the byte values (space 32 'Ġ', newline 10 'Ċ', 'H' 72, ...),
 * merges apply lowest rank first within each pre-tokenized piece and never across pieces, and
 * added tokens are cut out of the text before anything else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { loadTokenizer, type TextTokenizer } from '../src/tokenizer.js';

const load = (name: string) => loadTokenizer(readFileSync(new URL(`./fixtures/tokenizer-${name}-style.json`, import.meta.url), 'utf8'));
const bytes = (s: string) => [...new TextEncoder().encode(s)];

// Qwen2-style merges (ids by rank): 256 He, 257 ll, 258 Hell, 259 Hello, 260 Ġw, 261 or, 262 Ġwor,
// 263 ld, 264 Ġworld, 265 rl, 266 12, 267 us, 268 er, 269 user, 270 n', 271 'T, 272 ĊĊ;
// added: 400 <|endoftext|>, 401 <|im_start|>, 402 <|im_end|> (special), 403 <think>, 404 </think> (not special)
const qwen: TextTokenizer = await load('qwen2');
// Huginn-style merges: 256 Hu, 257 gi, 258 nn, 259 Hugi, 260 Huginn, 261 ĠHuginn, 262 Ġ=, 263 Ġ==, 264 ĊĊ;
// specials 65504 <|begin_text|> ... 65509 <|pad|>
const huginn: TextTokenizer = await load('huginn');

test('Qwen2-style: merges go lowest rank first inside a piece ("Hello", " world": 259, 264), never the rank-10 "rl"', () => {
  // "Hello": H e l l o → He (0) → ll (1) → Hell (2) → Hello (3)
  // " world": Ġ w o r l d → Ġw (4), or (5), Ġwor (6), ld (7), Ġworld (8); "rl" (9) never gets a chance after "or"
  assert.deepEqual(qwen.encode('Hello world'), [259, 264]);
  assert.deepEqual(qwen.encode('Hello world', { addSpecialTokens: true }), [259, 264], 'the ByteLevel post-processor adds nothing');
});

test('Qwen2-style: the regex splits digits one by one, so the "12" merge cannot apply', () => {
  // pieces " ", "1", "2", "3", "\n" (a lone space before a digit is its own piece)
  assert.deepEqual(qwen.encode(' 123\n'), [32, 49, 50, 51, 10]);
});

test('Qwen2-style: contractions are their own pieces, matched case-insensitively', () => {
  // "don't" → "don" + "'t": the "n'" merge would need n and ' in one piece; "DON'T" → "DON" + "'T" where "'T" merges (271)
  assert.deepEqual(qwen.encode("don't"), [...bytes('don'), ...bytes("'t")]);
  assert.deepEqual(qwen.encode("DON'T"), [...bytes('DON'), 271]);
});

test('Qwen2-style: newline runs are one piece ("\\n\\n" merges to 272); text is NFC-normalized first', () => {
  assert.deepEqual(qwen.encode('a\n\nb'), [97, 272, 98]);
  // e + U+0301 becomes é (U+00E9, bytes C3 A9) before byte-level mapping
  assert.deepEqual(qwen.encode('e\u0301'), [0xc3, 0xa9]);
  assert.deepEqual(qwen.encode('e\u0301'), qwen.encode('\u00e9'));
});

test('Qwen2-style: special tokens inside text are cut out first, even glued to words', () => {
  // <|im_start|> | "user" (u s e r → us (11), er (12), user (13) = 269) | "\n" | "Hi" | <|im_end|>
  assert.deepEqual(qwen.encode('<|im_start|>user\nHi<|im_end|>'), [401, 269, 10, 72, 105, 402]);
  assert.deepEqual(qwen.encode('x<|endoftext|>y'), [120, 400, 121]);
  // an incomplete marker is plain text
  assert.deepEqual(qwen.encode('<|im_end'), bytes('<|im_end'));
  // <think> is an added token that is not special
  assert.deepEqual(qwen.encode('<think>ok</think>'), [403, 111, 107, 404]);
  assert.deepEqual([...qwen.specialIds].sort(), [400, 401, 402]);
});

test('Qwen2-style: decoding gives the text back; skipSpecialTokens drops <|im_*|> but keeps <think>', () => {
  const text = '<|im_start|>user\nHello world 123<|im_end|>\n<|im_start|>assistant\n<think>\nhm</think>\n\nDON\'T é';
  const ids = qwen.encode(text);
  assert.equal(qwen.decode(ids), text);
  assert.equal(qwen.decode(ids, { skipSpecialTokens: true }), 'user\nHello world 123\nassistant\n<think>\nhm</think>\n\nDON\'T é');
});

test('Huginn-style: the post-processor puts <|begin_text|> (65504) first; addSpecialTokens false leaves it out', () => {
  assert.deepEqual(huginn.encode('Hi'), [65504, 72, 105]);
  assert.deepEqual(huginn.encode('Hi', { addSpecialTokens: false }), [72, 105]);
});

test('Huginn-style: the aeolian regex keeps a leading space with a word and with an operator, and splits every digit', () => {
  // " Huginn" is one piece: Ġ H u g i n n → Hu (0), gi (1), nn (2), Hugi (3), Huginn (4), ĠHuginn (5) = 261
  // " ==" is one piece ([ \t] then "=="): Ġ= (6), Ġ== (7) = 263; "\n\n" one piece → 264
  assert.deepEqual(huginn.encode(' Huginn == x\n\n', { addSpecialTokens: false }), [261, 263, 32, 120, 264]);
  // "12th": single digits come before the ordinal rule, so 1, 2, then "th"
  assert.deepEqual(huginn.encode('12th', { addSpecialTokens: false }), [49, 50, 116, 104]);
  // no normalizer: e + U+0301 stays decomposed (e, CC 81)
  assert.deepEqual(huginn.encode('e\u0301', { addSpecialTokens: false }), [101, 0xcc, 0x81]);
});

test('Huginn-style: the chat markers inside text are the special ids, and decode round-trips', () => {
  const prompt = '<|begin_text|><|begin_header|>user<|end_header|>\n\nHi<|end_turn|><|begin_header|>Huginn<|end_header|>\n\n';
  const ids = huginn.encode(prompt, { addSpecialTokens: false });
  assert.deepEqual(ids, [65504, 65506, ...bytes('user'), 65507, 264, 72, 105, 65508, 65506, 260, 65507, 264]);
  assert.equal(huginn.decode(ids), prompt);
  assert.equal(huginn.tokenToId('<|end_turn|>'), 65508);
  assert.deepEqual([...huginn.specialIds].sort((a, b) => a - b), [65504, 65505, 65506, 65507, 65508, 65509]);
  assert.equal(huginn.vocabSize, 65510);
});

const withConfig = (name: string, config: Record<string, unknown>) => loadTokenizer(readFileSync(new URL(`./fixtures/tokenizer-${name}-style.json`, import.meta.url), 'utf8'), JSON.stringify(config));

test('special tokens: tokenizer.json\'s post-processor decides unless tokenizer_config.json sets add_bos_token / add_eos_token, which then decide alone (transformers\' update_post_processor)', async () => {
  assert.deepEqual(huginn.specialTokenRule, { prefix: [65504], suffix: [], source: 'tokenizer.json post_processor' });
  assert.deepEqual(qwen.specialTokenRule, { prefix: [], suffix: [], source: 'none' });
  const both = await withConfig('huginn', { bos_token: '<|begin_text|>', eos_token: '<|end_text|>', add_bos_token: true, add_eos_token: true });
  assert.deepEqual(both.encode('Hi'), [65504, 72, 105, 65505]);
  assert.deepEqual(both.encode('Hi', { addSpecialTokens: false }), [72, 105]);
  assert.equal(both.specialTokenRule.source, 'tokenizer_config.json add_bos_token/add_eos_token');
  // one flag given: the other counts as false, so the post-processor's <|begin_text|> is gone
  assert.deepEqual((await withConfig('huginn', { eos_token: '<|end_text|>', add_eos_token: true })).encode('Hi'), [72, 105, 65505]);
  assert.deepEqual((await withConfig('huginn', { add_bos_token: false })).encode('Hi'), [72, 105]);
  // Qwen2-style (ByteLevel post-processor adds nothing): a bos flag adds the config's bos_token
  assert.deepEqual((await withConfig('qwen2', { bos_token: '<|endoftext|>', add_bos_token: true })).encode('Hi'), [400, 72, 105]);
  // a flag without its token adds nothing, as transformers turns it off
  assert.deepEqual((await withConfig('qwen2', { add_bos_token: true, bos_token: null })).encode('Hi'), [72, 105]);
});

test('special-token settings that cannot work are TOKENIZER_INVALID naming the field: a flag that is not a boolean, a token the vocabulary lacks', async () => {
  const invalid = (field: string) => (e: unknown): boolean => e instanceof Error && (e as { code?: string }).code === 'TOKENIZER_INVALID' && (e as { field?: string }).field === field;
  await assert.rejects(withConfig('qwen2', { add_bos_token: 'yes' }), invalid('add_bos_token'));
  await assert.rejects(withConfig('qwen2', { add_eos_token: true, eos_token: '</s>' }), invalid('eos_token'));
});
