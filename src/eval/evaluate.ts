/**
 * Quality against compute: every policy scored (model.score, one token per call) on held-out text
 * (bits/byte, perplexity) and on task windows (answer accuracy and the depth at the query, per k),
 * with the mean depth and the FLOPs relative to the full fixed depth on the same positions.
 * Then, for every adaptive row, the cheapest fixed depth that reaches its bits/byte (within 1 %)
 * and the compute it saves against it; and whether its depth at the query rises with k.
 */
import { PonderError } from '../errors.js';
import type { Model } from '../api/model.js';
import { describePolicy, fixed, type DepthPolicy } from '../depth/policy.js';
import type { EvalSet } from './inputs.js';
import { seriesOf, thresholdOf } from './sweep.js';

export interface EvalOptions {
  /** the policies to run, in order (the reference is added when missing) */
  policies: readonly DepthPolicy[];
  /** the set bits/byte is measured on */
  text?: EvalSet;
  /** the set whose queries are checked (may be the same set as `text`: it is scored once) */
  tasks?: EvalSet;
  /** Huginn's initial-state seed. Default 0. */
  seed?: number;
  kvStrategy?: string;
  /** aborting stops with ABORTED after the current window */
  signal?: AbortSignal;
  /** called after every window */
  onProgress?: (progress: EvalProgress) => void;
  /** called when a policy's row is complete (its matchedFixed is filled in only in the report) */
  onRow?: (row: EvalRow, index: number, policies: number) => void;
  /** a row's bits/byte "reaches" another's within this fraction. Default 0.01. */
  tolerance?: number;
}

export interface EvalProgress {
  /** 0-based index of the policy running, of `policies` */
  index: number;
  policies: number;
  policy: string;
  part: 'text' | 'tasks';
  positionsDone: number;
  positionsTotal: number;
}

export interface TextScore {
  positions: number;
  /** UTF-8 bytes of the predicted tokens (null: no tokenizer) */
  bytes: number | null;
  nats: number;
  bitsPerByte: number | null;
  bitsPerToken: number;
  perplexity: number;
  meanDepth: number;
  flops: number;
  /** flops / the reference's flops on the same positions */
  compute: number;
}

export interface KScore {
  k: number;
  queries: number;
  accuracy: number;
  /** mean depth of the position that predicts the answer */
  depthAtQuery: number;
}

export interface TaskScore {
  queries: number;
  accuracy: number;
  depthAtQuery: number;
  /** mean depth over every position of the task windows */
  meanDepth: number;
  flops: number;
  compute: number;
  byK: KScore[];
}

export interface EvalRow {
  policy: string;
  /** the rule (one curve of the plot): 'fixed', 'exit(kl)', 'exit(gate)', 'router(causal)', ... */
  series: string;
  threshold: number | null;
  /** fixed(n): n */
  depth: number | null;
  text: TextScore | null;
  tasks: TaskScore | null;
  /** adaptive rows with text: the cheapest fixed depth whose bits/byte is within the tolerance of this row's, and 1 − compute / its compute */
  matchedFixed: { policy: string; saving: number } | null;
  /** tasks with two or more k: the depth at the query strictly rises from each k to the next */
  depthRisesWithK: boolean | null;
  ms: number;
}

export interface EvalReport {
  format: 'ponder-eval';
  version: 1;
  model: string;
  family: string;
  defaultDepth: number;
  /** the policy compute is relative to (fixed(full depth), or default where fixed is not run) */
  reference: string;
  tolerance: number;
  /** the KV cache strategy the rows ran with (--kv-strategy), or null for the family's default */
  kvStrategy: string | null;
  text: { label: string; tokens: number; bytes: number | null; windows: number } | null;
  tasks: { label: string; windows: number; queries: number; ks: number[] } | null;
  rows: EvalRow[];
  /** the adaptive row with the largest saving at equal bits/byte, or null */
  best: { policy: string; matchedFixed: string; saving: number } | null;
}

/** The reference policy compute is measured against: the full fixed depth, else the family default. */
export function referencePolicy(model: Model): DepthPolicy {
  const full = fixed(model.defaultDepth);
  try { model.checkPolicy(full); return full; } catch { return { kind: 'default' }; }
}

interface RawRow { text: Omit<TextScore, 'compute'> | null; tasks: Omit<TaskScore, 'compute'> | null; ms: number }

/** What one policy did on one set: totals over every position, and the queries by k. */
interface SetResult {
  positions: number;
  nats: number;
  steps: number;
  flops: number;
  byK: Map<number, { queries: number; correct: number; depth: number }>;
}

export async function evaluate(model: Model, o: EvalOptions): Promise<EvalReport> {
  if (!o.text && !o.tasks) throw new PonderError('ARG_INVALID', 'eval needs a text or a task set to score', { hint: 'pass --text FILE, --tasks FILE or --ids FILE' });
  if (o.tasks && o.tasks.queries === 0) throw new PonderError('EVAL_INPUT', `${o.tasks.label} has no queries`, { path: o.tasks.label, hint: 'a task set needs queries (spec/eval.md)' });
  const sets = [...new Set([o.text, o.tasks].filter((x): x is EvalSet => x !== undefined))];
  const tolerance = o.tolerance ?? 0.01;
  const reference = referencePolicy(model);
  const referenceName = describePolicy(reference);
  const policies = [...o.policies];
  if (!policies.some((p) => describePolicy(p) === referenceName)) policies.unshift(reference);
  const names = policies.map(describePolicy);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new PonderError('ARG_INVALID', `policy ${dup} is listed twice`, { field: 'policy', hint: 'list each policy once' });
  for (const p of policies) model.checkPolicy(p);
  // the reference runs first, so every row is complete (compute relative to it) as soon as it ran
  const order = [names.indexOf(referenceName), ...policies.keys()].filter((i, j, all) => all.indexOf(i) === j);
  const rows: EvalRow[] = new Array(policies.length);
  let ref: RawRow | null = null;
  for (const index of order) {
    const policy = policies[index];
    const progress = (part: 'text' | 'tasks', positionsDone: number, positionsTotal: number): void =>
      o.onProgress?.({ index, policies: policies.length, policy: names[index], part, positionsDone, positionsTotal });
    const t0 = globalThis.performance.now();
    const results = new Map<EvalSet, SetResult>();
    for (const set of sets) results.set(set, await scoreSet(model, set, policy, o, (done, total) => progress(set === o.text ? 'text' : 'tasks', done, total)));
    const text = o.text ? textScore(o.text, results.get(o.text)!) : null;
    const tasks = o.tasks ? taskScore(results.get(o.tasks)!) : null;
    const r: RawRow = { text, tasks, ms: globalThis.performance.now() - t0 };
    ref ??= r;
    const row: EvalRow = {
      policy: names[index], series: seriesOf(policy), threshold: thresholdOf(policy), depth: policy.kind === 'fixed' ? policy.steps : null,
      text: text ? { ...text, compute: text.flops / ref.text!.flops } : null,
      tasks: tasks ? { ...tasks, compute: tasks.flops / ref.tasks!.flops } : null,
      matchedFixed: null, depthRisesWithK: tasks ? risesWithK(tasks.byK) : null, ms: r.ms,
    };
    rows[index] = row;
    o.onRow?.(row, index, policies.length);
  }
  let best: EvalReport['best'] = null;
  for (const row of rows) {
    if (row.series === 'fixed' || !row.text) continue;
    row.matchedFixed = matchFixed(row, rows, tolerance);
    if (row.matchedFixed && (best === null || row.matchedFixed.saving > best.saving)) best = { policy: row.policy, matchedFixed: row.matchedFixed.policy, saving: row.matchedFixed.saving };
  }
  return {
    format: 'ponder-eval', version: 1, model: model.label, family: model.family, defaultDepth: model.defaultDepth, reference: referenceName, tolerance, kvStrategy: o.kvStrategy ?? null,
    text: o.text ? { label: o.text.label, tokens: o.text.tokens, bytes: o.text.bytes, windows: o.text.windows.length } : null,
    tasks: o.tasks ? { label: o.tasks.label, windows: o.tasks.windows.length, queries: o.tasks.queries, ks: ksOf(o.tasks) } : null,
    rows, best,
  };
}

/** The quality a row is compared on: bits/byte, else bits/token. */
export function textQuality(t: TextScore): number {
  return t.bitsPerByte ?? t.bitsPerToken;
}

/** The cheapest fixed row whose quality is within `tolerance` of the row's (lower is better), and the compute the row saves against it. */
export function matchFixed(row: EvalRow, rows: readonly EvalRow[], tolerance: number): { policy: string; saving: number } | null {
  const target = textQuality(row.text!) * (1 + tolerance);
  let match: EvalRow | null = null;
  for (const f of rows) {
    if (f.series !== 'fixed' || !f.text || textQuality(f.text) > target) continue;
    if (match === null || f.text.compute < match.text!.compute) match = f;
  }
  return match ? { policy: match.policy, saving: 1 - row.text!.compute / match.text!.compute } : null;
}

function risesWithK(byK: readonly KScore[]): boolean | null {
  if (byK.length < 2) return null;
  for (let i = 1; i < byK.length; i++) if (!(byK[i].depthAtQuery > byK[i - 1].depthAtQuery)) return false;
  return true;
}

function ksOf(set: EvalSet): number[] {
  const ks = new Set<number>();
  for (const w of set.windows) for (const q of w.queries) ks.add(q.k);
  return [...ks].sort((a, b) => a - b);
}

/** Every window of `set` scored as its own sequence under `policy`; its queries checked. */
async function scoreSet(model: Model, set: EvalSet, policy: DepthPolicy, o: EvalOptions, progress: (done: number, total: number) => void): Promise<SetResult> {
  const r: SetResult = { positions: 0, nats: 0, steps: 0, flops: 0, byK: new Map() };
  const total = set.windows.reduce((n, w) => n + w.ids.length - 1, 0);
  for (const w of set.windows) {
    const scoring = model.score(w.ids, { policy, window: w.ids.length - 1, seed: o.seed, kvStrategy: o.kvStrategy, signal: o.signal });
    for await (const chunk of scoring) {
      for (const t of chunk.tokens) { r.steps += t.steps; r.flops += t.flops; }
      for (const lp of chunk.logProbs) r.nats -= lp;
      r.positions += chunk.tokens.length;
      for (const q of w.queries) {
        const k = r.byK.get(q.k) ?? { queries: 0, correct: 0, depth: 0 };
        k.queries++;
        k.depth += chunk.tokens[q.positions[0]].steps;
        if (q.positions.every((p, i) => chunk.argmax[p] === q.answer[i])) k.correct++;
        r.byK.set(q.k, k);
      }
    }
    await scoring.result();
    progress(r.positions, total);
  }
  return r;
}

function textScore(set: EvalSet, r: SetResult): Omit<TextScore, 'compute'> {
  return {
    positions: r.positions, bytes: set.bytes, nats: r.nats, bitsPerByte: set.bytes ? r.nats / Math.LN2 / set.bytes : null, bitsPerToken: r.nats / r.positions / Math.LN2,
    perplexity: Math.exp(r.nats / r.positions), meanDepth: r.steps / r.positions, flops: r.flops,
  };
}

function taskScore(r: SetResult): Omit<TaskScore, 'compute'> {
  const byK = [...r.byK.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => ({ k, queries: v.queries, accuracy: v.correct / v.queries, depthAtQuery: v.depth / v.queries }));
  const queries = byK.reduce((n, k) => n + k.queries, 0);
  const correct = [...r.byK.values()].reduce((n, k) => n + k.correct, 0), depth = [...r.byK.values()].reduce((n, k) => n + k.depth, 0);
  return { queries, accuracy: correct / queries, depthAtQuery: depth / queries, meanDepth: r.steps / r.positions, flops: r.flops, byK };
}
