/**
 * Quality per depth of one model against another (a quantized checkpoint against its float
 * source, or any two checkpoints of one architecture): for every fixed depth and every adaptive
 * policy, teacher-forced over the same ids, one token per call, the mean KL divergence
 * KL(A ‖ B) of the next-token distributions, the top-1 agreement, and whether B runs each token to
 * the same depth as A (exit-step agreement). No peer reports this per depth; a looped model
 * re-reads every quantized weight at every step, so an error can grow with depth.
 *
 * The API (`compareModels`) and `ponder eval --compare A B` (src/cli/eval-compare.ts).
 */
import { PonderError } from '../errors.js';
import type { Model } from '../api/model.js';
import { describePolicy, exit, fixed, router, type DepthPolicy } from '../depth/policy.js';
import type { FamilyAdapter } from '../models/family.js';

export interface CompareOptions {
  /** the policies to compare under, in order. Default: `defaultComparePolicies(a)` */
  policies?: readonly DepthPolicy[];
  /** Huginn's initial-state seed (the same for both). Default 0. */
  seed?: number;
  /** called after every window of every policy */
  onProgress?: (p: { policy: string; index: number; policies: number; positionsDone: number; positionsTotal: number }) => void;
}

export interface CompareRow {
  /** the policy, as describePolicy spells it */
  policy: string;
  /** 'fixed' for fixed depths, else 'adaptive' */
  kind: 'fixed' | 'adaptive';
  /** positions compared (every id of a window but the last predicts the next) */
  positions: number;
  /** mean KL(A ‖ B) over positions, nats */
  kl: number;
  /** the largest KL(A ‖ B) at one position, nats */
  klMax: number;
  /** fraction of positions where A and B pick the same top token */
  top1: number;
  /** fraction of positions where B ran as many steps as A (1 for fixed depths) */
  exitAgreement: number;
  meanStepsA: number;
  meanStepsB: number;
}

export interface CompareReport {
  a: string;
  b: string;
  family: string;
  windows: number;
  positions: number;
  rows: CompareRow[];
}

/** What the Model drives (it keeps its adapter private: the comparison runs it call by call, as generate does). */
function adapterOf(model: Model): FamilyAdapter {
  return (model as unknown as { adapter: FamilyAdapter }).adapter;
}

function accepts(model: Model, policy: DepthPolicy): boolean {
  try { model.checkPolicy(policy); return true; } catch (e) { if (e instanceof PonderError && e.code === 'ARG_POLICY') return false; throw e; }
}

/**
 * Every fixed depth 1..the model's default depth, `default`, and the adaptive rules the model runs,
 * each at a threshold in the middle of `ponder eval`'s sweep (where tokens do exit early, so exit
 * agreement means something): exit(gate, 0.5) (Ouro; its config's threshold 1.0 never exits),
 * exit(kl, 1e-2) and exit(latent-diff, 0.05) (Huginn, and ported to Ouro), router(causal, 0.5) (MoR).
 */
export function defaultComparePolicies(model: Model): DepthPolicy[] {
  const out: DepthPolicy[] = [];
  for (let d = 1; d <= model.defaultDepth; d++) out.push(fixed(d));
  const adaptive: DepthPolicy[] = [{ kind: 'default' }, exit('gate', 0.5), exit('kl', 1e-2), exit('latent-diff', 0.05), router('causal', 0.5)];
  return [...out.filter((p) => accepts(model, p)), ...adaptive.filter((p) => accepts(model, p))];
}

function mismatch(what: string): PonderError {
  return new PonderError('ARG_INVALID', `compare: the two models differ in ${what}`, { field: 'compare', hint: 'compare two checkpoints of one architecture (e.g. a model and its `ponder quantize` output)' });
}

/** log-softmax of logits[0..n) into out (f64). */
function logSoftmax(logits: Float32Array, n: number, out: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < n; i++) out[i] = logits[i] - lse;
}

function argmax(x: Float32Array, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (x[i] > x[best]) best = i;
  return best;
}

/**
 * Compares B against A on `windows` (each a sequence of ids run as its own session, every id but
 * the last fed one per call) under every policy. Checked before any compute: same family,
 * vocabulary and default depth; every id in the vocabulary; every window within the context.
 */
export function compareModels(a: Model, b: Model, windows: readonly (readonly number[])[], options: CompareOptions = {}): CompareReport {
  if (a.family !== b.family) throw mismatch(`family (${a.family}, ${b.family})`);
  if (a.vocabSize !== b.vocabSize) throw mismatch(`vocabulary size (${a.vocabSize}, ${b.vocabSize})`);
  if (a.defaultDepth !== b.defaultDepth) throw mismatch(`default depth (${a.defaultDepth}, ${b.defaultDepth})`);
  const policies = options.policies ?? defaultComparePolicies(a);
  for (const p of policies) { a.checkPolicy(p); b.checkPolicy(p); }
  const used = windows.filter((w) => w.length >= 2);
  if (used.length === 0) throw new PonderError('ARG_INVALID', 'compare: no window holds two ids (nothing to predict)', { field: 'ids', hint: 'give a longer text or id list' });
  for (const w of used) {
    if (w.length - 1 > Math.min(a.contextLength, b.contextLength)) throw new PonderError('GEN_CONTEXT', `compare: a window of ${w.length} ids exceeds the context of ${Math.min(a.contextLength, b.contextLength)}`, { field: 'ids', hint: 'cut the ids into shorter windows' });
    for (const id of w) if (!Number.isInteger(id) || id < 0 || id >= a.vocabSize) throw new PonderError('GEN_TOKEN_ID', `compare: id ${id} is not a token id of these models (integers in [0, ${a.vocabSize}))`, { field: 'ids', hint: 'the ids do not come from this model\'s tokenizer' });
  }
  const positionsTotal = used.reduce((s, w) => s + w.length - 1, 0);
  const V = a.vocabSize, la = new Float64Array(V), lb = new Float64Array(V);
  const A = adapterOf(a), B = adapterOf(b);
  const seed = options.seed ?? 0;
  const rows: CompareRow[] = [];
  policies.forEach((policy, index) => {
    let kl = 0, klMax = 0, same = 0, sameSteps = 0, stepsA = 0, stepsB = 0, done = 0;
    for (const w of used) {
      const sa = A.newSession(w.length, { seed }), sb = B.newSession(w.length, { seed });
      try {
        let spentA = 0, spentB = 0;
        for (let t = 0; t < w.length - 1; t++) {
          const phase = t === 0 ? 'prefill' : 'decode';
          const oa = A.run(sa, [w[t]], { policy, cap: null, phase, stepsSpent: spentA });
          const ob = B.run(sb, [w[t]], { policy, cap: null, phase, stepsSpent: spentB });
          const da = oa.tokens[0].steps, db = ob.tokens[0].steps;
          if (phase === 'decode') { spentA += da; spentB += db; }
          stepsA += da; stepsB += db;
          if (da === db) sameSteps++;
          logSoftmax(oa.logits, V, la);
          logSoftmax(ob.logits, V, lb);
          let d = 0;
          for (let i = 0; i < V; i++) { const p = Math.exp(la[i]); if (p > 0) d += p * (la[i] - lb[i]); }
          d = Math.max(0, d);
          kl += d; klMax = Math.max(klMax, d);
          if (argmax(oa.logits, V) === argmax(ob.logits, V)) same++;
          done++;
        }
      } finally {
        A.endSession(sa); B.endSession(sb);
      }
      options.onProgress?.({ policy: describePolicy(policy), index, policies: policies.length, positionsDone: done, positionsTotal });
    }
    rows.push({ policy: describePolicy(policy), kind: policy.kind === 'fixed' ? 'fixed' : 'adaptive', positions: done, kl: kl / done, klMax, top1: same / done, exitAgreement: sameSteps / done, meanStepsA: stepsA / done, meanStepsB: stepsB / done });
  });
  return { a: a.label, b: b.label, family: a.family, windows: used.length, positions: positionsTotal, rows };
}

/** Cuts ids into windows of at most `length` ids (consecutive windows share no position). */
export function windowsOf(ids: readonly number[], length: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < ids.length; i += length) out.push(ids.slice(i, i + length));
  return out;
}

/** The report as a plain-text table. */
export function formatCompareTable(r: CompareReport): string {
  const lines = [`B = ${r.b} against A = ${r.a} (${r.family}, ${r.positions} positions in ${r.windows} window${r.windows === 1 ? '' : 's'})`,
    'policy                      KL(A‖B) mean    KL max   top-1 agree   exit agree   steps A   steps B'];
  for (const row of r.rows) {
    lines.push(`${row.policy.padEnd(26)} ${row.kl.toExponential(2).padStart(13)} ${row.klMax.toExponential(2).padStart(9)} ${(100 * row.top1).toFixed(1).padStart(12)} % ${(100 * row.exitAgreement).toFixed(1).padStart(10)} % ${row.meanStepsA.toFixed(2).padStart(9)} ${row.meanStepsB.toFixed(2).padStart(9)}`);
  }
  return lines.join('\n') + '\n';
}
