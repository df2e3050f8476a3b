/**
 * What `ponder eval` scores, read from bytes the caller loaded (the core touches no files), as an
 * EvalSet: windows of ids, each scored as its own sequence, with the queries inside them and the
 * bytes of every id (for bits/byte; null without a tokenizer):
 *
 *   text    plain UTF-8 text → one id sequence cut into windows of `window` positions as
 *           model.score cuts it (consecutive windows share one id); no queries
 *   tasks   "K<TAB>PROMPT<TAB>ANSWER" lines, more triples for more queries on a line (spec/eval.md
 *           §2): K is the answer's difficulty (hops, steps). Lines are packed whole into windows.
 *   ids     JSON: an array of ids (cut like text), or windows as they are, with their queries:
 *           {"windows": [{"ids": [...], "queries": [{"pos", "answer", "hops" | "k"}]}]} (spec/eval.md);
 *           or lines, one window per line, ids separated by spaces or commas (no queries)
 *
 * A query is a position whose next id is a known answer: accuracy is argmax == answer at every
 * position of the answer, and "the depth at the query" is the depth of the position that predicts
 * the answer's first token (the last token of the prompt).
 */
import { PonderError } from '../errors.js';
import type { TextTokenizer } from '../tokenizer.js';

/** One answer to check inside a window. */
export interface TaskQuery {
  /** positions (in the window) whose next id is part of the answer: the first predicts the answer's first token */
  readonly positions: readonly number[];
  /** the answer's ids, answers[i] = window ids[positions[i] + 1] */
  readonly answer: readonly number[];
  /** the difficulty: hops / steps the answer needs */
  readonly k: number;
  /** where it came from, for messages: "tasks.tsv:12" */
  readonly source: string;
}

/** One sequence to score: every id but the first is predicted. */
export interface EvalWindow {
  readonly ids: readonly number[];
  /** per id: the UTF-8 bytes its text completes (null without a tokenizer) */
  readonly bytes: Uint32Array | null;
  readonly queries: readonly TaskQuery[];
}

export interface EvalSet {
  readonly label: string;
  readonly windows: readonly EvalWindow[];
  /** ids in the input (a text's ids once, though consecutive windows share one) */
  readonly tokens: number;
  /** Σ bytes of the predicted ids of every window, or null */
  readonly bytes: number | null;
  /** the number of queries in all windows */
  readonly queries: number;
}

function taskError(message: string, where: string, hint: string): PonderError {
  return new PonderError('EVAL_INPUT', `${where}: ${message}`, { path: where, hint });
}

const TASK_HINT = 'task lines are K<TAB>PROMPT<TAB>ANSWER, repeated for more queries on the line, K an integer ≥ 0 (spec/eval.md)';

/**
 * The bytes each id completes: the decode stream holds back an incomplete character (byte-level
 * BPE splits multi-byte characters over tokens), so its bytes count at the token that completes it.
 * The sum over all ids is the byte length of the decoded text.
 */
export function tokenBytes(tokenizer: TextTokenizer, ids: readonly number[]): Uint32Array {
  const stream = tokenizer.decodeStream();
  const encoder = new TextEncoder();
  const out = new Uint32Array(ids.length);
  for (let i = 0; i < ids.length; i++) out[i] = encoder.encode(stream.push(ids[i])).length;
  if (ids.length > 0) out[ids.length - 1] += encoder.encode(stream.flush()).length;
  return out;
}

/** Σ bytes of the predicted ids (all but the first) of every window, or null. */
function predictedBytes(windows: readonly EvalWindow[]): number | null {
  let n = 0;
  for (const w of windows) {
    if (!w.bytes) return null;
    for (let i = 1; i < w.bytes.length; i++) n += w.bytes[i];
  }
  return n;
}

function evalSet(label: string, windows: EvalWindow[], tokens: number): EvalSet {
  return { label, windows, tokens, bytes: predictedBytes(windows), queries: windows.reduce((n, w) => n + w.queries.length, 0) };
}

/** One id sequence cut as model.score cuts it: windows of `window` positions, window k = ids[kW .. kW + W] (its last id the next window's first). */
function cutSequence(label: string, ids: readonly number[], bytes: Uint32Array | null, window: number): EvalSet {
  if (ids.length < 2) throw taskError(`has ${ids.length} token${ids.length === 1 ? '' : 's'}; scoring needs at least 2`, label, 'pass a longer input');
  const windows: EvalWindow[] = [];
  for (let start = 0; start < ids.length - 1; start += window) {
    const end = Math.min(start + window + 1, ids.length);
    windows.push({ ids: ids.slice(start, end), bytes: bytes ? bytes.slice(start, end) : null, queries: [] });
  }
  return evalSet(label, windows, ids.length);
}

/** Plain text as one id sequence (cut to `maxTokens` ids if given) in windows of `window` positions. */
export function textSet(text: string, label: string, tokenizer: TextTokenizer, window: number, o: { maxTokens?: number; addSpecialTokens?: boolean } = {}): EvalSet {
  let ids = tokenizer.encode(text, { addSpecialTokens: o.addSpecialTokens ?? true });
  if (o.maxTokens !== undefined) ids = ids.slice(0, o.maxTokens);
  return cutSequence(label, ids, tokenBytes(tokenizer, ids), window);
}

/**
 * Task lines packed whole into windows of at most `window` ids, in file order. A line is one or more
 * queries, K<TAB>PROMPT<TAB>ANSWER each, whose texts follow each other (PROMPT₂ continues after
 * ANSWER₁); the line's text, PROMPT₁ + ANSWER₁ + … + "\n", is encoded once, and every prompt and
 * answer must end on a token boundary of it (the ids of the text up to there are a prefix of the
 * line's ids), so each answer has positions of its own. "#" lines and blank lines are skipped.
 */
export function taskLines(text: string, label: string, tokenizer: TextTokenizer, window: number): EvalSet {
  const lines: { ids: number[]; queries: TaskQuery[] }[] = [];
  const encode = (t: string): number[] => tokenizer.encode(t, { addSpecialTokens: false });
  text.split(/\r?\n/).forEach((line, index) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const where = `${label}:${index + 1}`;
    const fields = line.split('\t');
    if (fields.length % 3 !== 0) throw taskError(`has ${fields.length} tab-separated field${fields.length === 1 ? '' : 's'}, a multiple of 3 expected`, where, TASK_HINT);
    let lineText = '';
    const spans: { k: number; promptEnd: number; answerEnd: number; answer: string }[] = [];
    for (let f = 0; f < fields.length; f += 3) {
      const [kText, prompt, answer] = fields.slice(f, f + 3);
      if (!/^\d+$/.test(kText.trim())) throw taskError(`K must be an integer ≥ 0, got ${JSON.stringify(kText)}`, where, TASK_HINT);
      if (prompt === '' || answer === '') throw taskError(`the ${prompt === '' ? 'prompt' : 'answer'} of query ${f / 3 + 1} is empty`, where, TASK_HINT);
      lineText += prompt;
      const promptEnd = lineText.length;
      lineText += answer;
      spans.push({ k: Number(kText.trim()), promptEnd, answerEnd: lineText.length, answer });
    }
    const ids = encode(lineText + '\n');
    const boundary = (end: number): number | null => {
      const prefix = encode(lineText.slice(0, end));
      return prefix.every((id, i) => ids[i] === id) ? prefix.length : null;
    };
    const queries = spans.map((q, i): TaskQuery => {
      const from = boundary(q.promptEnd), to = boundary(q.answerEnd);
      if (from === null || to === null || from === 0 || to <= from) {
        throw taskError(`the tokenizer does not split the line at the start or the end of answer ${i + 1}, ${JSON.stringify(q.answer)}, so no positions predict the answer alone`, where, 'write the answer as the model saw it in training, e.g. with its leading space');
      }
      const answer = ids.slice(from, to);
      return { positions: answer.map((_, j) => from - 1 + j), answer, k: q.k, source: where };
    });
    if (ids.length > window) throw taskError(`is ${ids.length} tokens, longer than the window of ${window}`, where, 'shorten the line or raise --window (at most the model\'s context)');
    lines.push({ ids, queries });
  });
  if (lines.length === 0) throw taskError('has no task lines', label, TASK_HINT);
  const windows: EvalWindow[] = [];
  let ids: number[] = [], queries: TaskQuery[] = [];
  const close = (): void => { windows.push({ ids, bytes: tokenBytes(tokenizer, ids), queries }); };
  for (const line of lines) {
    if (ids.length + line.ids.length > window) { close(); ids = []; queries = []; }
    const offset = ids.length;
    for (const q of line.queries) queries.push({ ...q, positions: q.positions.map((p) => p + offset) });
    ids.push(...line.ids);
  }
  close();
  return evalSet(label, windows, windows.reduce((n, w) => n + w.ids.length, 0));
}

const IDS_HINT = 'an ids file is a JSON array of ids, or {"windows": [{"ids": [...], "queries": [...]}]}, or one window per line of ids separated by spaces or commas (spec/eval.md)';

/**
 * `--ids FILE` (ponder eval, and eval --compare), in either format, told apart by its first
 * character other than white space: "[" or "{" is JSON, a JSON array of ids (cut into windows of
 * `window` positions like a text) or windows as they are, with their queries; anything else is
 * lines, one window per line of ids separated by spaces or commas, "#" lines and blank lines
 * skipped. A window holds 2 to context + 1 ids (it feeds all but its last). Errors: EVAL_INPUT
 * naming the file and the line or JSON field.
 */
export function idsFile(source: string, label: string, vocabSize: number, contextLength: number, window: number, tokenizer: TextTokenizer | null): EvalSet {
  const windowSize = (n: number): string | null => n < 2 || n > contextLength + 1
    ? `has ${n} id${n === 1 ? '' : 's'}; a window holds 2 to ${contextLength + 1} (the model's context of ${contextLength} positions, and the id the last one predicts)` : null;
  if (!/^\s*[[{]/.test(source)) {
    const windows: EvalWindow[] = [];
    source.split(/\r?\n/).forEach((line, index) => {
      const text = line.trim();
      if (text === '' || text.startsWith('#')) return;
      const where = `${label}:${index + 1}`;
      const ids = text.split(/[\s,]+/).filter((p) => p !== '').map((part) => {
        const id = /^\d+$/.test(part) ? Number(part) : NaN;
        if (!(id < vocabSize)) throw taskError(`${JSON.stringify(part)} is not a token id of this model (integers in [0, ${vocabSize}))`, where, IDS_HINT);
        return id;
      });
      const size = windowSize(ids.length);
      if (size) throw taskError(`the window ${size}`, where, 'split the line, or join it to the next');
      windows.push({ ids, bytes: tokenizer ? tokenBytes(tokenizer, ids) : null, queries: [] });
    });
    if (windows.length === 0) throw taskError('has no ids', label, IDS_HINT);
    return evalSet(label, windows, windows.reduce((n, w) => n + w.ids.length, 0));
  }
  let doc: unknown;
  try {
    doc = JSON.parse(source);
  } catch (e) {
    throw taskError(`is not JSON: ${(e as Error).message}`, label, IDS_HINT);
  }
  const idList = (value: unknown, where: string): number[] => {
    if (!Array.isArray(value) || value.some((v) => !Number.isInteger(v) || v < 0 || v >= vocabSize)) {
      throw taskError(`${where} must be an array of integer ids in [0, ${vocabSize})`, label, 'the ids must belong to this model\'s vocabulary');
    }
    return value as number[];
  };
  if (Array.isArray(doc)) {
    const ids = idList(doc, 'the array');
    return cutSequence(label, ids, tokenizer ? tokenBytes(tokenizer, ids) : null, window);
  }
  const windowsValue = (doc as { windows?: unknown } | null)?.windows;
  if (!Array.isArray(windowsValue) || windowsValue.length === 0) throw taskError('has no "windows" array', label, IDS_HINT);
  const windows = windowsValue.map((w, wi): EvalWindow => {
    const where = `windows[${wi}]`;
    const ids = idList((w as { ids?: unknown })?.ids, `${where}.ids`);
    // a window of n ids feeds n − 1 positions (its last id is only predicted), so it holds up to the context + 1
    const size = windowSize(ids.length);
    if (size) throw taskError(`${where}.ids ${size}`, label, 'split the window');
    const qs = (w as { queries?: unknown }).queries ?? [];
    if (!Array.isArray(qs)) throw taskError(`${where}.queries must be an array`, label, 'queries: [{"pos": P, "answer": ID, "hops": K}]');
    const queries = qs.map((q, qi): TaskQuery => {
      const at = `${where}.queries[${qi}]`;
      const { pos, answer } = (q ?? {}) as { pos?: unknown; answer?: unknown };
      const k = (q as { hops?: unknown; k?: unknown })?.hops ?? (q as { k?: unknown })?.k;
      if (!Number.isInteger(pos) || (pos as number) < 0 || (pos as number) >= ids.length - 1) throw taskError(`${at}.pos must be a position in [0, ${ids.length - 2}] (one before the answer), got ${JSON.stringify(pos)}`, label, 'pos is the position whose next id is the answer');
      if (!Number.isInteger(k) || (k as number) < 0) throw taskError(`${at} needs "hops" (or "k"), an integer ≥ 0, got ${JSON.stringify(k)}`, label, 'the difficulty of the query');
      const expected = ids[(pos as number) + 1];
      if (answer !== expected) throw taskError(`${at}.answer is ${JSON.stringify(answer)} but the id after position ${String(pos)} is ${expected}`, label, 'the answer must be the next id in the window');
      return { positions: [pos as number], answer: [expected], k: k as number, source: `${label} ${at}` };
    });
    return { ids, bytes: tokenizer ? tokenBytes(tokenizer, ids) : null, queries };
  });
  return evalSet(label, windows, windows.reduce((n, w) => n + w.ids.length, 0));
}
