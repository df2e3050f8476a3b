/**
 * Writes two small tokenizer.json fixtures built like the real ones, with vocabularies small enough
 * that the tests derive each expected id by hand from the BPE rules (not from our own output):
 *
 * - test/fixtures/tokenizer-qwen2-style.json: the layout of the Qwen2-style byte-level BPE used by
 *   Ouro: NFC normalizer; pre-tokenizer Split(the Qwen2 regex: contractions case-insensitively,
 *   letters with one leading non-letter, one digit at a time, punctuation runs, newline runs,
 *   whitespace) then ByteLevel without its own regex; ByteLevel decoder; ChatML special tokens
 *   <|endoftext|>, <|im_start|>, <|im_end|> and the non-special <think>, </think>.
 * - test/fixtures/tokenizer-huginn-style.json: the layout of Huginn-0125's tokenizer (trained with
 *   bpeasy, seal-rg/recurrent-pretraining scripts/tokenizer_generation.py): Split with its
 *   "aeolian" regex, then ByteLevel; specials at the top of the 65536 vocabulary (65504
 *   <|begin_text|>, 65505 <|end_text|>, 65506 <|begin_header|>, 65507 <|end_header|>,
 *   65508 <|end_turn|>, 65509 <|pad|>); a post-processor that puts <|begin_text|> first.
 *   The published tokenizer.json was not available here: its post-processor is an assumption
 *   (bos first, as the chat template's bos_token suggests); check it against the real file.
 *
 * Base vocabulary in both: the 256 byte symbols of GPT-2's byte-to-unicode map, id = byte value.
 * Merges are listed highest priority first and produce the ids 256, 257, ... in that order.
 *
 *   node scripts/make-tokenizer-fixtures.mjs
 */
import { writeFileSync } from 'node:fs';

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100.. in byte order. */
function byteSymbols() {
  const printable = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const out = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return out;
}

function bpe(merges) {
  const symbols = byteSymbols();
  const vocab = Object.fromEntries(symbols.map((s, b) => [s, b]));
  merges.forEach(([a, b], i) => { vocab[a + b] = 256 + i; });
  return { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) };
}

const added = (id, content, special) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };

const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const qwen = {
  version: '1.0', truncation: null, padding: null,
  added_tokens: [added(400, '<|endoftext|>', true), added(401, '<|im_start|>', true), added(402, '<|im_end|>', true), added(403, '<think>', false), added(404, '</think>', false)],
  normalizer: { type: 'NFC' },
  pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_REGEX }, behavior: 'Isolated', invert: false }, byteLevel] },
  post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
  decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
  // 256 He, 257 ll, 258 Hell, 259 Hello, 260 Ġw, 261 or, 262 Ġwor, 263 ld, 264 Ġworld, 265 rl, 266 12, 267 us, 268 er, 269 user,
  // 270 n', 271 'T, 272 ĊĊ
  model: bpe([['H', 'e'], ['l', 'l'], ['He', 'll'], ['Hell', 'o'], ['Ġ', 'w'], ['o', 'r'], ['Ġw', 'or'], ['l', 'd'], ['Ġwor', 'ld'], ['r', 'l'], ['1', '2'], ['u', 's'], ['e', 'r'], ['us', 'er'],
    ['n', "'"], ["'", 'T'], ['Ċ', 'Ċ']]),
};

const AEOLIAN_REGEX = "(\\\\n(?:e(?:wcommand|wenvironment|wline|wpage|wtheorem)|abla|e|eq|geq|gtr|leq|exists|ocite|oindent|olinebreak|onumber|opagebreak|ormalsize|ot(?!(?:ag\\b|\\b)))\\b|\\n+|\\\\n(?!\\b)|\\p{N}{1,1}|(?:[ \\t](?:==|!=|<=|>=|<<|>>|\\*\\*|//|\\+=|-=|\\*=|/=|%=|&=|\\|=|\\^=|<<=|>>=|\\*\\*=|//=|:=|\\+\\+|--|[\\p{L}]+[''ʼ](?:\\p{L}+)\\b|\\\\[a-zA-Z]+|\\\\{|\\\\}|{|}|\\\\\\[|\\\\\\]|\\[|\\]|\\(|\\)|_+|\\||\\+|-|\\*|—|-|=|\\*\\*|^|[.,!?;()]|\\$\\$?|`+|\\\"+|\\#+|\\p{N}+(?:st|nd|rd|th)|<0x[0-9A-Fa-f]{1,2}>)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|[\\p{P}\\p{S}])|\\s+|\\p{So})";
const huginnSpecials = ['<|begin_text|>', '<|end_text|>', '<|begin_header|>', '<|end_header|>', '<|end_turn|>', '<|pad|>'];
const huginn = {
  version: '1.0', truncation: null, padding: null,
  added_tokens: huginnSpecials.map((t, i) => added(65504 + i, t, true)),
  normalizer: null,
  pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: AEOLIAN_REGEX }, behavior: 'Isolated', invert: false }, byteLevel] },
  post_processor: {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<|begin_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<|begin_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<|begin_text|>': { id: '<|begin_text|>', ids: [65504], tokens: ['<|begin_text|>'] } },
  },
  decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  // 256 Hu, 257 gi, 258 nn, 259 Hugi, 260 Huginn, 261 ĠHuginn, 262 Ġ=, 263 Ġ==, 264 ĊĊ
  model: bpe([['H', 'u'], ['g', 'i'], ['n', 'n'], ['Hu', 'gi'], ['Hugi', 'nn'], ['Ġ', 'Huginn'], ['Ġ', '='], ['Ġ=', '='], ['Ċ', 'Ċ']]),
};

writeFileSync('test/fixtures/tokenizer-qwen2-style.json', JSON.stringify(qwen, null, 1) + '\n');
writeFileSync('test/fixtures/tokenizer-huginn-style.json', JSON.stringify(huginn, null, 1) + '\n');
console.log('wrote test/fixtures/tokenizer-qwen2-style.json, test/fixtures/tokenizer-huginn-style.json');
