/**
 * The exit criteria every family can stop a token on: upstream Huginn's per-iteration criteria
 * (`get_adaptive_exit_evaluator` and its evaluator classes, huginn.md §5.4), used by the depth
 * controller (controller.ts) for Huginn's recurrence steps, Ouro's loops and MoR's recursions.
 * An evaluator is created once per generation (Huginn) or per token (Ouro, MoR), `init` is called
 * at the start of every token step with the initial state, and `check` after the steps the
 * controller decides to check. "Previous" always means the previous *check*, as upstream.
 *
 * Values are computed in f64 from the f32 logits/states (upstream computes in f32; the difference is
 * far below the golden cases' threshold margins).
 */
import { PonderError } from '../errors.js';

export type ExitCriterion = 'none' | 'entropy-diff' | 'latent-diff' | 'kl' | 'minp-kl' | 'argmax-stability' | 'cosine';
export const EXIT_CRITERIA: readonly ExitCriterion[] = ['none', 'entropy-diff', 'latent-diff', 'kl', 'minp-kl', 'argmax-stability', 'cosine'];

/** What a check can see: the state after the iteration, and (lazily) the coda's next-token logits. */
export interface ExitCheckInput {
  /** raw recurrent state s_t (before ln_f), [B, S, E] */
  readonly state: Float32Array;
  readonly B: number;
  readonly S: number;
  readonly E: number;
  /** Runs the coda + head on the current state (rewriting the coda's cache slots) and returns the last position's logits [B, V]. */
  evaluate(): Float32Array;
  readonly V: number;
}

export interface ExitCheck {
  /** per batch row: the criterion says stop */
  readonly exits: boolean[];
  /** per batch row: the criterion's value at this check */
  readonly values: number[];
}

export interface ExitEvaluator {
  readonly name: string;
  /** the threshold in effect (after resolving "auto"); NaN for evaluators without one */
  readonly threshold: number;
  init(initialState: Float32Array, B: number, S: number, E: number): void;
  check(input: ExitCheckInput): ExitCheck;
}

/** Upstream's "auto" thresholds (HEAD evaluator classes). */
export const AUTO_THRESHOLDS: Readonly<Record<Exclude<ExitCriterion, 'none'>, number>> = {
  'entropy-diff': 1e-3,
  'latent-diff': 0.03,
  kl: 1e-3,
  'minp-kl': 1e-5,
  'argmax-stability': 5,
  cosine: 1e-3,
};

function resolveThreshold(criterion: Exclude<ExitCriterion, 'none'>, threshold: number | 'auto'): number {
  if (threshold === 'auto') return AUTO_THRESHOLDS[criterion];
  if (typeof threshold !== 'number' || Number.isNaN(threshold)) {
    throw new PonderError('HUGINN_EXIT_THRESHOLD', `exit threshold ${JSON.stringify(threshold)} for ${criterion} is not a number or "auto"`, { field: 'exit_threshold', hint: 'pass a number or "auto"' });
  }
  // argmax-stability counts checks: upstream casts with int()
  return criterion === 'argmax-stability' ? Math.trunc(threshold) : threshold;
}

/**
 * The evaluator for a criterion name, matched as upstream: exact names, and any other name that
 * contains "kl" is the plain KL criterion.
 */
export function createExitEvaluator(criterion: string, threshold: number | 'auto' = 'auto', vocabSize = 0): ExitEvaluator {
  switch (criterion) {
    case 'none': return noneEvaluator();
    case 'entropy-diff': return entropyDiff(resolveThreshold(criterion, threshold));
    case 'latent-diff': return latentDiff(resolveThreshold(criterion, threshold));
    case 'cosine': return cosine(resolveThreshold(criterion, threshold));
    case 'argmax-stability': return argmaxStability(resolveThreshold(criterion, threshold));
    case 'minp-kl': return klDivergence('minp-kl', resolveThreshold('minp-kl', threshold), vocabSize, true);
    default:
      if (criterion.includes('kl')) return klDivergence(criterion, resolveThreshold('kl', threshold), vocabSize, false);
      throw new PonderError('HUGINN_EXIT_CRITERION', `unknown exit criterion ${JSON.stringify(criterion)}`, { field: 'criterion', hint: `use one of ${EXIT_CRITERIA.join(', ')}` });
  }
}

function noneEvaluator(): ExitEvaluator {
  return {
    name: 'none',
    threshold: NaN,
    init() {},
    check({ B }) { return { exits: new Array<boolean>(B).fill(false), values: new Array<number>(B).fill(0) }; },
  };
}

/** Upstream `NumStepsGenerator`: exits after steps_fn(token step index) checks; the counter spans the whole generation. */
export function numStepsEvaluator(stepsFn: (tokenStep: number) => number): ExitEvaluator {
  let counter = 0, target = 0, checks = 0;
  return {
    name: 'num-steps',
    threshold: NaN,
    init() { target = stepsFn(counter); counter++; checks = 0; },
    check({ B }) {
      checks++;
      return { exits: new Array<boolean>(B).fill(checks >= target), values: new Array<number>(B).fill(0) };
    },
  };
}

/** softmax of one logits row in f64 */
function softmaxRow(logits: Float32Array, offset: number, V: number): Float64Array {
  const p = new Float64Array(V);
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[offset + i] > max) max = logits[offset + i];
  let sum = 0;
  for (let i = 0; i < V; i++) { p[i] = Math.exp(logits[offset + i] - max); sum += p[i]; }
  for (let i = 0; i < V; i++) p[i] /= sum;
  return p;
}

function entropyDiff(threshold: number): ExitEvaluator {
  let prev: number[] = [];
  return {
    name: 'entropy-diff',
    threshold,
    init(_s, B) { prev = new Array<number>(B).fill(100); },
    check(input) {
      const logits = input.evaluate();
      const values: number[] = [];
      for (let b = 0; b < input.B; b++) {
        const p = softmaxRow(logits, b * input.V, input.V);
        let h = 0;
        for (let i = 0; i < input.V; i++) h -= p[i] * Math.log(p[i] + 1e-10);
        values.push(Math.abs(h - prev[b]));
        prev[b] = h;
      }
      return { exits: values.map((v) => v < threshold), values };
    },
  };
}

/** KL(q_prev ‖ q_t) on the last position's distribution; minp: probs < 0.1·max replaced by 1/V and renormalised. */
function klDivergence(name: string, threshold: number, V: number, minp: boolean): ExitEvaluator {
  let prevLog: Float64Array[] = [];
  return {
    name,
    threshold,
    init(_s, B) { prevLog = Array.from({ length: B }, () => new Float64Array(V).fill(Math.log(1 / V))); },
    check(input) {
      if (input.V !== V) throw new PonderError('HUGINN_EXIT_CRITERION', `${name}: evaluator built for vocab ${V}, model has ${input.V}`, { hint: 'create the evaluator with the model\'s vocab size' });
      const logits = input.evaluate();
      const values: number[] = [];
      for (let b = 0; b < input.B; b++) {
        const p = softmaxRow(logits, b * V, V);
        if (minp) {
          let max = 0;
          for (let i = 0; i < V; i++) if (p[i] > max) max = p[i];
          let sum = 0;
          for (let i = 0; i < V; i++) { if (p[i] < 0.1 * max) p[i] = 1 / V; sum += p[i]; }
          for (let i = 0; i < V; i++) p[i] /= sum;
        }
        const logq = new Float64Array(V);
        for (let i = 0; i < V; i++) logq[i] = Math.log(p[i]);
        let kl = 0;
        const lp = prevLog[b];
        for (let i = 0; i < V; i++) kl += Math.exp(lp[i]) * (lp[i] - logq[i]);
        values.push(kl);
        prevLog[b] = logq;
      }
      return { exits: values.map((v) => v < threshold), values };
    },
  };
}

/** torch.argmax semantics: the first NaN if any, else the first maximum. */
export function torchArgmax(x: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let i = 0; i < n; i++) {
    const v = x[offset + i];
    if (Number.isNaN(v)) return i;
    if (v > x[offset + best]) best = i;
  }
  return best;
}

function argmaxStability(threshold: number): ExitEvaluator {
  let prevArgmax: number[] = [], stable: number[] = [];
  return {
    name: 'argmax-stability',
    threshold,
    init(_s, B) { prevArgmax = new Array<number>(B).fill(-1); stable = new Array<number>(B).fill(0); },
    check(input) {
      const logits = input.evaluate();
      for (let b = 0; b < input.B; b++) {
        const a = torchArgmax(logits, b * input.V, input.V);
        stable[b] = a === prevArgmax[b] ? stable[b] + 1 : 0;
        prevArgmax[b] = a;
      }
      return { exits: stable.map((c) => c >= threshold), values: [...stable] };
    },
  };
}

/** Per batch row, mean over positions of f(s_t[pos], s_prev[pos]). */
function meanOverPositions(cur: Float32Array, prev: Float32Array, B: number, S: number, E: number, f: (dot: number, nn: number, pp: number, dd: number) => number): number[] {
  const out: number[] = [];
  for (let b = 0; b < B; b++) {
    let acc = 0;
    for (let s = 0; s < S; s++) {
      const o = (b * S + s) * E;
      let dot = 0, nn = 0, pp = 0, dd = 0;
      for (let i = 0; i < E; i++) {
        const c = cur[o + i], p = prev[o + i];
        dot += c * p; nn += c * c; pp += p * p; dd += (c - p) * (c - p);
      }
      acc += f(dot, nn, pp, dd);
    }
    out.push(acc / S);
  }
  return out;
}

/** A criterion on the latent state: the mean over positions of `perPosition(s_t, s_prev)`, mapped by `value`, against the previous check's state. */
function latentCriterion(name: string, threshold: number, perPosition: (dot: number, nn: number, pp: number, dd: number) => number, value: (mean: number) => number): ExitEvaluator {
  let prev = new Float32Array(0);
  return {
    name,
    threshold,
    init(s) { prev = Float32Array.from(s); },
    check({ state, B, S, E }) {
      const values = meanOverPositions(state, prev, B, S, E, perPosition).map(value);
      prev = Float32Array.from(state);
      return { exits: values.map((v) => v < threshold), values };
    },
  };
}

/** ‖s_t − s_prev‖ / ‖s_t‖ */
function latentDiff(threshold: number): ExitEvaluator {
  return latentCriterion('latent-diff', threshold, (_dot, nn, _pp, dd) => Math.sqrt(dd) / Math.sqrt(nn), (m) => m);
}

/** 1 − cos(s_t, s_prev), the cosine averaged over positions first (as upstream) */
function cosine(threshold: number): ExitEvaluator {
  return latentCriterion('cosine', threshold, (dot, nn, pp) => dot / Math.sqrt(nn) / Math.sqrt(pp), (c) => 1 - c);
}
