/**
 * src/eval: the inputs (task lines packed whole into windows with each query on the position that
 * predicts its answer; part 1's synthetic windows; the bytes of every token), the evaluation (each
 * row's numbers are those of model.score on the same ids; compute relative to the full fixed depth;
 * the fixed depth an adaptive row is matched with) and the report, plot and page (every row shown,
 * every string escaped).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, exit, fixed, type Model } from '../src/node/index.js';
import { isPonderError, type PonderError } from '../src/errors.js';
import { idsFile, taskLines, textSet, tokenBytes } from '../src/eval/inputs.js';
import { evaluate, matchFixed, type EvalReport, type EvalRow, type TextScore } from '../src/eval/evaluate.js';
import { adaptiveSweep, fixedSweep, parseDepthList, SWEEP_THRESHOLDS } from '../src/eval/sweep.js';
import { evalReportToJSON, formatEvalReport, parseEvalReport } from '../src/eval/report.js';
import { renderEvalHtml, renderEvalSvg } from '../src/eval/plot.js';

const huginn = await loadModel('models/huginn-sotu');
const tok = huginn.tokenizer!;
const utf8 = (s: string): number => new TextEncoder().encode(s).length;
const evalError = (c: string) => (e: unknown) => isPonderError(e) && e.code === c;

const PROSE = 'Fellow-Citizens of the Senate and House of Representatives: it is with deep concern that I inform you of the state of our affairs.';
/** variable-chasing lines as part 1 writes them, one query each: K hops from the query to a digit */
const LINES = [
  [1, ' b = 4, k = 7. b?', ' 4'], [2, ' b = 4, k = b, m = 7. k?', ' 4'], [3, ' s = k, b = 4, k = b. s?', ' 4'],
  [1, ' w = 9, a = 2. w?', ' 9'], [2, ' a = 2, c = a. c?', ' 2'], [4, ' d = c, c = b, b = a, a = 5. d?', ' 5'],
] as const;
const TSV = ['# K, prompt, answer', ...LINES.map(([k, p, a]) => `${k}\t${p}\t${a}`), ''].join('\n');

test('the bytes of the tokens add up to the UTF-8 length of the text, multi-byte characters split over tokens included', () => {
  for (const text of [PROSE, 'naïve café — 🦉 owls 💡 and 中文', '\n\n  x']) {
    const ids = tok.encode(text, { addSpecialTokens: false });
    const bytes = tokenBytes(tok, ids);
    assert.equal(bytes.reduce((a, b) => a + b, 0), utf8(text), text);
    for (let i = 1; i <= ids.length; i++) assert.ok(bytes.slice(0, i).reduce((a, b) => a + b, 0) <= utf8(tok.decode(ids.slice(0, i))) + 3);
  }
});

test('text: its ids (cut to maxTokens) in windows as model.score cuts them, each id with its bytes', () => {
  const ids = tok.encode(PROSE).slice(0, 20);
  const t = textSet(PROSE, 'prose.txt', tok, 6, { maxTokens: 20 });
  assert.equal(t.tokens, 20);
  assert.deepEqual(t.windows.map((w) => w.ids), [ids.slice(0, 7), ids.slice(6, 13), ids.slice(12, 19), ids.slice(18, 20)]);
  assert.equal(t.bytes, utf8(tok.decode(ids)) - utf8(tok.decode(ids.slice(0, 1))), 'the bytes of every predicted id');
  assert.equal(t.queries, 0);
  assert.throws(() => textSet('x', 'one.txt', tok, 6), evalError('EVAL_INPUT'));
});

test('task lines are packed whole into windows; each query sits on the position that predicts its answer', () => {
  for (const window of [256, 40, 20]) {
    const set = taskLines(TSV, 'tasks.tsv', tok, window);
    assert.equal(set.queries, LINES.length);
    const queries = set.windows.flatMap((w) => w.queries.map((q) => ({ w, q })));
    assert.deepEqual(queries.map(({ q }) => q.k), LINES.map((l) => l[0]));
    assert.deepEqual(set.windows.flatMap((w) => w.ids), LINES.flatMap(([, p, a]) => tok.encode(p + a + '\n', { addSpecialTokens: false })));
    for (const { w, q } of queries) {
      assert.ok(w.ids.length <= window);
      q.positions.forEach((p, i) => assert.equal(w.ids[p + 1], q.answer[i]));
      const line = LINES[queries.findIndex((x) => x.q === q)];
      assert.equal(tok.decode(w.ids.slice(0, q.positions[0] + 1)).endsWith(line[1]), true);
      assert.equal(tok.decode(q.answer), line[2]);
      assert.match(q.source, /^tasks\.tsv:\d+$/);
    }
  }
});

test('a line with several queries: the prompts and answers follow each other in one text, each answer on its own positions', () => {
  const set = taskLines('2\t b = 4, k = b, m = 7. k?\t 4\t1\t m?\t 7\n', 'two.tsv', tok, 256);
  assert.equal(set.queries, 2);
  const [w] = set.windows;
  assert.deepEqual(w.ids, tok.encode(' b = 4, k = b, m = 7. k? 4 m? 7\n', { addSpecialTokens: false }));
  assert.deepEqual(w.queries.map((q) => [q.k, tok.decode(q.answer), tok.decode(w.ids.slice(0, q.positions[0] + 1))]),
    [[2, ' 4', ' b = 4, k = b, m = 7. k?'], [1, ' 7', ' b = 4, k = b, m = 7. k? 4 m?']]);
});

test('bad task lines name the file and line', () => {
  const bad: Array<[string, RegExp]> = [
    ['1\tonly two', /tasks\.tsv:1: has 2 tab-separated fields/],
    ['1\t a?\t 1\t2\t b?', /tasks\.tsv:1: has 5 tab-separated fields, a multiple of 3/],
    ['1\t a?\t 1\t2\t\t 1', /the prompt of query 2 is empty/],
    ['1\t the\tre', /does not split the line at the start or the end of answer 1/],
    ['x\t a?\t 1', /tasks\.tsv:1: K must be an integer/],
    ['\n2\t\t 1', /tasks\.tsv:2: the prompt of query 1 is empty/],
    ['1\t a?\t', /the answer of query 1 is empty/],
    [`1\t${' a'.repeat(30)}?\t 1`, /longer than the window of 20/],
    ['# nothing but a comment\n', /has no task lines/],
  ];
  for (const [text, message] of bad) assert.throws(() => taskLines(text, 'tasks.tsv', tok, 20), (e) => evalError('EVAL_INPUT')(e) && message.test((e as Error).message), text);
});

test('an ids file: a plain array is cut like a text; windows stay as they are, with their queries; every field is checked', () => {
  const ids = tok.encode(PROSE);
  const plain = idsFile(JSON.stringify(ids), 'a.json', huginn.vocabSize, huginn.contextLength, 256, tok);
  assert.equal(plain.queries, 0);
  assert.deepEqual(plain.windows.map((w) => w.ids), [ids]);
  assert.equal(plain.bytes, utf8(PROSE) - utf8(tok.decode(ids.slice(0, 1))));
  const w = tok.encode(' b = 4, k = b. k? 4 b? 4\n', { addSpecialTokens: false });
  const q = w.indexOf(tok.encode('?', { addSpecialTokens: false })[0]);
  const doc = { window: 256, windows: [{ ids: w, queries: [{ pos: q, answer: w[q + 1], hops: 2 }] }, { ids: ids.slice(0, 9) }] };
  const tasks = idsFile(JSON.stringify(doc), 's.json', huginn.vocabSize, huginn.contextLength, 256, tok);
  assert.equal(tasks.queries, 1);
  assert.deepEqual(tasks.windows.map((x) => x.ids), [w, ids.slice(0, 9)], 'windows as they are');
  assert.deepEqual(tasks.windows[0].queries.map((x) => [x.positions, x.answer, x.k]), [[[q], [w[q + 1]], 2]]);
  assert.equal(tasks.bytes, utf8(tok.decode(w.slice(1))) + utf8(tok.decode(ids.slice(1, 9))));
  const withK = idsFile(JSON.stringify({ windows: [{ ids: w, queries: [{ pos: q, answer: w[q + 1], k: 5 }] }] }), 'k.json', huginn.vocabSize, huginn.contextLength, 256, null);
  assert.equal(withK.windows[0].queries[0].k, 5);
  assert.equal(withK.bytes, null, 'no tokenizer: no bytes');
  const long = Array.from({ length: huginn.contextLength + 1 }, (_, i) => ids[i % ids.length]);
  const full = idsFile(JSON.stringify({ windows: [{ ids: long }] }), 'full.json', huginn.vocabSize, huginn.contextLength, 256, null);
  assert.equal(full.windows[0].ids.length, huginn.contextLength + 1, 'a window feeds the whole context and holds the id its last position predicts');
  const variants: Array<[unknown, RegExp]> = [
    [{ windows: [{ ids: w, queries: [{ pos: q, answer: w[q + 1] + 1, hops: 2 }] }] }, /answer is \d+ but the id after position/],
    [{ windows: [{ ids: w, queries: [{ pos: w.length - 1, answer: 0, hops: 2 }] }] }, /pos must be a position/],
    [{ windows: [{ ids: w, queries: [{ pos: q, answer: w[q + 1] }] }] }, /needs "hops"/],
    [{ windows: [{ ids: [1, huginn.vocabSize], queries: [] }] }, /windows\[0\]\.ids must be an array of integer ids/],
    [{ windows: [{ ids: [...long, 1] }] }, new RegExp(`has ${huginn.contextLength + 2} ids; a window holds 2 to ${huginn.contextLength + 1}`)],
    [{ windows: [] }, /has no "windows" array/],
    [[1], /has 1 token; scoring needs at least 2/],
  ];
  for (const [value, message] of variants) {
    assert.throws(() => idsFile(JSON.stringify(value), 's.json', huginn.vocabSize, huginn.contextLength, 256, tok), (e) => evalError('EVAL_INPUT')(e) && message.test((e as Error).message), JSON.stringify(value).slice(0, 80));
  }
  assert.throws(() => idsFile('{"windows": [', 's.json', huginn.vocabSize, huginn.contextLength, 256, tok), evalError('EVAL_INPUT'));
});

test('an ids file of lines: one window per line, ids separated by spaces or commas, the same windows as the JSON windows form', () => {
  const ids = tok.encode(PROSE);
  const a = ids.slice(0, 7), b = ids.slice(7, 12);
  const lines = idsFile(`# two windows\n\n  ${a.join(' ')}\n${b.join(', ')}\r\n`, 'ids.txt', huginn.vocabSize, huginn.contextLength, 256, tok);
  const json = idsFile(JSON.stringify({ windows: [{ ids: a }, { ids: b }] }), 'ids.json', huginn.vocabSize, huginn.contextLength, 256, tok);
  assert.deepEqual(lines.windows.map((w) => w.ids), [a, b], 'windows as they are, not cut');
  assert.deepEqual(lines.windows, json.windows);
  assert.equal(lines.bytes, json.bytes);
  assert.equal(lines.queries, 0);
  assert.equal(lines.tokens, a.length + b.length);
  const long = Array.from({ length: huginn.contextLength + 1 }, (_, i) => ids[i % ids.length]);
  assert.equal(idsFile(long.join(' '), 'long.txt', huginn.vocabSize, huginn.contextLength, 256, null).windows[0].ids.length, huginn.contextLength + 1);
});

test('a bad ids file of lines is EVAL_INPUT naming the file and the line, with a hint', () => {
  const bad: Array<[string, string, RegExp]> = [
    ['3 4 5\n6 x 7\n', 'ids.txt:2', /"x" is not a token id of this model \(integers in \[0, \d+\)\)/],
    ['3 4 5\n# note\n6 -7\n', 'ids.txt:3', /"-7" is not a token id/],
    ['3 4 5\n6 7.5\n', 'ids.txt:2', /"7\.5" is not a token id/],
    [`3 4\n1 ${huginn.vocabSize}\n`, 'ids.txt:2', new RegExp(`"${huginn.vocabSize}" is not a token id of this model \\(integers in \\[0, ${huginn.vocabSize}\\)\\)`)],
    ['3 4 5\n\n9\n', 'ids.txt:3', /the window has 1 id; a window holds 2 to \d+/],
    [`${new Array(huginn.contextLength + 2).fill(1).join(',')}\n`, 'ids.txt:1', new RegExp(`has ${huginn.contextLength + 2} ids; a window holds 2 to ${huginn.contextLength + 1}`)],
    ['# nothing\n\n', 'ids.txt', /has no ids/],
  ];
  for (const [text, path, message] of bad) {
    assert.throws(() => idsFile(text, 'ids.txt', huginn.vocabSize, huginn.contextLength, 256, tok), (e) => {
      assert.ok(evalError('EVAL_INPUT')(e), String(e));
      const err = e as PonderError;
      assert.equal(err.path, path, text);
      assert.ok(err.message.startsWith(`${path}: `), err.message);
      assert.match(err.message, message);
      assert.ok(err.hint && err.hint.length > 0);
      return true;
    }, JSON.stringify(text).slice(0, 80));
  }
});

test('sweeps: fixed 1..n and every adaptive rule the model runs, as the support table says', async () => {
  const check = (p: Parameters<Model['checkPolicy']>[0]): void => huginn.checkPolicy(p);
  assert.deepEqual(fixedSweep(check, 3).map((p) => p.kind === 'fixed' && p.steps), [1, 2, 3]);
  const names = new Set(adaptiveSweep(check).map((p) => (p.kind === 'exit' ? p.criterion : p.kind)));
  assert.deepEqual([...names].sort(), ['argmax-stability', 'cosine', 'entropy-diff', 'kl', 'latent-diff', 'minp-kl']);
  const ouro = await loadModel('models/ouro-sotu', { tokenizer: false });
  const ouroSweep = adaptiveSweep((p) => ouro.checkPolicy(p), ['gate', 'router']);
  assert.equal(ouroSweep.length, SWEEP_THRESHOLDS.gate.length);
  assert.deepEqual(fixedSweep((p) => ouro.checkPolicy(p), 9).length, ouro.defaultDepth);
  assert.deepEqual(parseDepthList('1-3,6, 5'), [1, 2, 3, 5, 6]);
  assert.throws(() => parseDepthList('3-1'), evalError('ARG_INVALID'));
  assert.throws(() => adaptiveSweep(check, ['warp']), evalError('ARG_INVALID'));
});

const text = textSet(PROSE, 'prose.txt', tok, 16);
const tasks = taskLines(TSV, 'tasks.tsv', tok, 64);
const report = await evaluate(huginn, { policies: [fixed(1), fixed(2), exit('latent-diff', 0.05)], text, tasks });

test('every row is what model.score gives on the same ids; compute is relative to the full fixed depth, which is added', async () => {
  assert.equal(report.reference, `fixed(${huginn.defaultDepth})`);
  assert.deepEqual(report.rows.map((r) => r.policy), [`fixed(${huginn.defaultDepth})`, 'fixed(1)', 'fixed(2)', 'exit(latent-diff, 0.05)']);
  const ids = tok.encode(PROSE);
  const ref = await huginn.score(ids, { policy: fixed(huginn.defaultDepth), window: 16 }).result();
  const bytes = utf8(tok.decode(ids.slice(1)));
  for (const row of report.rows) {
    const policy = row.policy === 'exit(latent-diff, 0.05)' ? exit('latent-diff', 0.05) : fixed(row.depth!);
    const s = await huginn.score(ids, { policy, window: 16 }).result();
    assert.ok(Math.abs(row.text!.nats - s.nats) < 1e-9 * s.nats);
    assert.equal(row.text!.bytes, bytes);
    assert.ok(Math.abs(row.text!.bitsPerByte! - s.nats / Math.LN2 / bytes) < 1e-9);
    assert.equal(row.text!.meanDepth, s.meanDepth);
    assert.equal(row.text!.compute, s.flops / ref.flops);
    // tasks: accuracy and depth at the query from the windows scored alone
    let correct = 0, depth = 0;
    for (const w of tasks.windows) {
      for await (const c of huginn.score(w.ids, { policy, window: w.ids.length - 1 })) {
        for (const q of w.queries) { if (q.positions.every((p, i) => c.argmax[p] === q.answer[i])) correct++; depth += c.tokens[q.positions[0]].steps; }
      }
    }
    assert.equal(row.tasks!.accuracy, correct / tasks.queries);
    assert.equal(row.tasks!.depthAtQuery, depth / tasks.queries);
    assert.equal(row.tasks!.byK.reduce((n, k) => n + k.queries, 0), tasks.queries);
    assert.deepEqual(row.tasks!.byK.map((k) => k.k), [1, 2, 3, 4]);
  }
  assert.equal(report.rows[0].text!.compute, 1);
  const fixedRows = report.rows.filter((r) => r.series === 'fixed').sort((a, b) => a.depth! - b.depth!);
  for (let i = 1; i < fixedRows.length; i++) assert.ok(fixedRows[i].text!.compute > fixedRows[i - 1].text!.compute, 'compute rises with the fixed depth');
  assert.equal(report.rows[3].matchedFixed?.policy, matchFixed(report.rows[3], report.rows, 0.01)?.policy);
});

function row(policy: string, series: string, bpb: number, compute: number, depth: number | null = null): EvalRow {
  const t: TextScore = { positions: 1, bytes: 1, nats: 0, bitsPerByte: bpb, bitsPerToken: bpb, perplexity: 1, meanDepth: 1, flops: compute, compute };
  return { policy, series, threshold: null, depth, text: t, tasks: null, matchedFixed: null, depthRisesWithK: null, ms: 0 };
}

test('an adaptive row is matched with the cheapest fixed depth whose bits/byte is within the tolerance of its own', () => {
  const rows = [row('fixed(1)', 'fixed', 1.5, 0.3, 1), row('fixed(2)', 'fixed', 1.41, 0.5, 2), row('fixed(3)', 'fixed', 1.40, 0.7, 3), row('fixed(4)', 'fixed', 1.399, 1, 4)];
  const a = row('exit(x, 1)', 'exit(x)', 1.4, 0.35);
  // 1.40 · 1.01 = 1.414: fixed(2) (1.41) reaches it and is the cheapest that does
  assert.deepEqual(matchFixed(a, rows, 0.01), { policy: 'fixed(2)', saving: 1 - 0.35 / 0.5 });
  assert.deepEqual(matchFixed(a, rows, 0.001)?.policy, 'fixed(3)');
  assert.equal(matchFixed(row('exit(x, 2)', 'exit(x)', 1.2, 0.2), rows, 0.01), null);
  assert.ok(matchFixed(row('exit(x, 3)', 'exit(x)', 1.6, 0.4), rows, 0.01)!.saving < 0, 'more compute than fixed(1) for worse quality is a negative saving');
});

test('the text report has one line per row in each table and both verdicts; the JSON round-trips', () => {
  const out = formatEvalReport(report);
  for (const r of report.rows) assert.equal(out.split('\n').filter((l) => l.startsWith(r.policy + ' ')).length, 2, r.policy);
  assert.match(out, /^equal bits\/byte \(within 1 %\): /m);
  assert.match(out, /^depth at the query (rises|does not rise) with k/m);
  const back = JSON.parse(JSON.stringify(report)) as EvalReport;
  assert.deepEqual(back, report);
});

test('a saved report reads back as it was; a damaged one is EVAL_REPORT naming the field', () => {
  assert.deepEqual(parseEvalReport(evalReportToJSON(report), 'r.json'), report);
  const damage: Array<[(d: Record<string, any>) => void, string]> = [
    [(d) => { d.version = 2; }, 'version'],
    [(d) => { delete d.model; }, 'model'],
    [(d) => { d.rows = []; }, 'rows'],
    [(d) => { d.rows[1].text.bitsPerByte = 'low'; }, 'rows[1].text.bitsPerByte'],
    [(d) => { d.rows[2].tasks = null; }, 'rows[2].tasks'],
    [(d) => { d.rows[0].tasks.byK[0].k = 99; }, 'rows[0].tasks.byK'],
    [(d) => { d.rows[3].matchedFixed = { policy: 'fixed(77)', saving: 0 }; }, 'rows[3].matchedFixed.policy'],
    [(d) => { d.best = { policy: 'nope', matchedFixed: 'fixed(1)', saving: 0.5 }; }, 'best'],
    [(d) => { d.rows[1].depthRisesWithK = 'yes'; }, 'rows[1].depthRisesWithK'],
  ];
  for (const [edit, field] of damage) {
    const d = JSON.parse(evalReportToJSON(report));
    edit(d);
    assert.throws(() => parseEvalReport(JSON.stringify(d), 'r.json'), (e) => evalError('EVAL_REPORT')(e) && (e as { field?: string }).field === field, field);
  }
  assert.throws(() => parseEvalReport('{"format": ', 'r.json'), evalError('EVAL_REPORT'));
});

test('the SVG and the HTML page show every row and escape every string', () => {
  const hostile: EvalReport = {
    ...report, model: '<script>alert("x")</script> & \'q\'', rows: report.rows.map((r, i) => (i === 3 ? { ...r, policy: '<b>"pol"</b>', series: '<i>s</i>' } : r)),
    best: report.best && { ...report.best, policy: '<b>"pol"</b>' },
  };
  const svg = renderEvalSvg(hostile);
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /);
  assert.doesNotMatch(svg, /<script|<b>|<i>/);
  assert.match(svg, /&lt;script&gt;/);
  assert.equal((svg.match(/<rect x="[\d.]+" y="[\d.]+" width="7" height="7"/g) ?? []).length, 3, 'one square per fixed row');
  const page = renderEvalHtml(hostile);
  assert.match(page, /^<!doctype html>/);
  assert.doesNotMatch(page, /<script|<b>"pol"|<link|src=/);
  assert.equal((page.match(/&lt;b&gt;&quot;pol&quot;&lt;\/b&gt;/g) ?? []).length >= 2, true, 'the row is in both tables');
});
