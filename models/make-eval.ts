/**
 * Writes the held-out eval files of the *-sotu models (models/eval/) from what
 * scripts/train/prepare-data.ts left in its data folder, so `ponder eval` runs on a fresh clone:
 *
 *   sotu-heldout.txt    the first 8,192 tokens of the held-out prose (every 20th State of the Union
 *                       address / Moby Dick chapter, public domain), decoded to text
 *   chase-heldout.tsv   the variable-chasing lines of the first 32 held-out windows (seed 2), as task
 *                       lines K<TAB>PROMPT<TAB>ANSWER<TAB>K<TAB>PROMPT<TAB>ANSWER: both queries of a line,
 *                       K their hop counts (spec/eval.md)
 *
 *   node --import tsx models/make-eval.ts [DATA_DIR]     (default /work/big/sotu-data)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadTokenizer } from '../src/tokenizer.js';

const data = process.argv[2] ?? '/work/big/sotu-data';
const out = join('models', 'eval');
const PROSE_TOKENS = 8192;
const SYNTH_WINDOWS = 32;

const tok = await loadTokenizer(readFileSync(join(data, 'tokenizer.json'), 'utf8'));
mkdirSync(out, { recursive: true });

const raw = readFileSync(join(data, 'prose-val.u16'));
const prose = Array.from(new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2).subarray(0, PROSE_TOKENS));
writeFileSync(join(out, 'sotu-heldout.txt'), tok.decode(prose));

interface Query { pos: number; answer: number; hops: number }
const synth = JSON.parse(readFileSync(join(data, 'synth-eval.json'), 'utf8')) as { windows: { ids: number[]; queries: Query[] }[] };
const lines: string[] = [];
for (const w of synth.windows.slice(0, SYNTH_WINDOWS)) {
  // each query's answer as a character span of the window's text, then cut the text into its lines
  const text = tok.decode(w.ids);
  const answers = w.queries.map((q) => ({ start: tok.decode(w.ids.slice(0, q.pos + 1)).length, answer: tok.decode([q.answer]), hops: q.hops }));
  let lineStart = 0;
  for (const line of text.split('\n')) {
    const lineEnd = lineStart + line.length;
    const inLine = answers.filter((a) => a.start >= lineStart && a.start < lineEnd);
    if (inLine.length > 0) {
      const fields: string[] = [];
      let at = lineStart;
      for (const a of inLine) {
        if (text.slice(a.start, a.start + a.answer.length) !== a.answer) throw new Error(`answer ${JSON.stringify(a.answer)} not found at ${a.start}`);
        fields.push(String(a.hops), text.slice(at, a.start), a.answer);
        at = a.start + a.answer.length;
      }
      if (at !== lineEnd) throw new Error(`text after the last answer of ${JSON.stringify(line)}`);
      lines.push(fields.join('\t'));
    }
    lineStart = lineEnd + 1;
  }
}
writeFileSync(join(out, 'chase-heldout.tsv'), [
  '# Held-out variable-chasing lines of the *-sotu models (scripts/train/prepare-data.ts, seed 2; models/make-eval.ts).',
  '# K<TAB>PROMPT<TAB>ANSWER per query, two queries per line; K = the hops from the queried variable to its digit.',
  ...lines, ''].join('\n'));
console.log(`${out}/sotu-heldout.txt: ${PROSE_TOKENS} tokens; ${out}/chase-heldout.tsv: ${lines.length} lines`);
