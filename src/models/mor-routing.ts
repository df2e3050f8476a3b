/**
 * Mixture-of-Recursions routing policies: the small decisions that pick which tokens run which
 * recursion. Pure functions over plain arrays (router outputs are a handful of numbers per token),
 * kept apart from src/models/mor.ts so each rule can be read and tested on its own.
 *
 * Semantics: shared/research/mor.md §4 (expert-choice), §5 (token-choice); the causal decode rule is
 * our extension, specified in spec/mor.md.
 */
import { PonderError } from '../errors.js';

const f32 = Math.fround;

/** Expert-choice budget k_r = max(1, int(c_r · T)): a float64 product truncated toward zero, as Python does. */
export function expertTopK(capacity: number, T: number): number {
  return Math.max(1, Math.trunc(capacity * T));
}

export type ExpertRouterFunc = 'sigmoid' | 'tanh' | null;
export type TokenRouterFunc = 'softmax' | 'sigmoid';

export function sigmoidF32(x: number): number {
  return f32(1 / (1 + Math.exp(-x)));
}

/** Expert-choice router_probs from raw router logits (f32 like torch): α·sigmoid(s), α·tanh(s), or s itself. */
export function expertProbs(probs: Float32Array, logits: ArrayLike<number>, n: number, func: ExpertRouterFunc, alpha: number): void {
  for (let i = 0; i < n; i++) {
    const s = logits[i];
    if (func === 'sigmoid') probs[i] = f32(sigmoidF32(s) * f32(alpha));
    else if (func === 'tanh') probs[i] = f32(f32(Math.tanh(s)) * f32(alpha));
    else probs[i] = f32(s);
  }
}

/**
 * Indices (into scores[0..n)) of the k largest scores, returned in ascending index order.
 * Ties go to the lower index (torch.topk leaves them unspecified; the goldens keep a margin).
 * A NaN score is an error: torch would rank it above everything and route garbage.
 */
export function topKAscending(scores: ArrayLike<number>, n: number, k: number, what: string): number[] {
  const order: number[] = [];
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(scores[i])) {
      throw new PonderError('NUM_NONFINITE', `${what}: router score of candidate ${i} is NaN`, { hint: 'the hidden state or router weights contain NaN/Inf; check the checkpoint values' });
    }
    order.push(i);
  }
  order.sort((a, b) => (scores[b] - scores[a]) || (a - b));
  return order.slice(0, Math.min(k, n)).sort((a, b) => a - b);
}

/** Token-choice gate distribution over R recursions per token: α·softmax(z) or α·sigmoid(z), f32. */
export function tokenProbs(probs: Float32Array, logits: ArrayLike<number>, T: number, R: number, func: TokenRouterFunc, alpha: number): void {
  for (let t = 0; t < T; t++) {
    const o = t * R;
    if (func === 'sigmoid') {
      for (let i = 0; i < R; i++) probs[o + i] = f32(sigmoidF32(logits[o + i]) * f32(alpha));
      continue;
    }
    let max = -Infinity;
    for (let i = 0; i < R; i++) if (logits[o + i] > max) max = logits[o + i];
    let sum = 0;
    for (let i = 0; i < R; i++) sum += Math.exp(logits[o + i] - max);
    for (let i = 0; i < R; i++) probs[o + i] = f32(f32(Math.exp(logits[o + i] - max) / sum) * f32(alpha));
  }
}

/**
 * Token-choice assignment: e = argmax(p [+ router_bias]) (ties to the lower index). The bias
 * (`balancing: loss_free`) moves only the argmax; the gate stays p[e].
 */
export function assignRecursion(probs: ArrayLike<number>, offset: number, R: number, bias: Float32Array | null, what: string): number {
  let best = -1, bestScore = -Infinity;
  for (let i = 0; i < R; i++) {
    const score = bias ? f32(probs[offset + i] + bias[i]) : probs[offset + i];
    if (Number.isNaN(score)) throw new PonderError('NUM_NONFINITE', `${what}: router score ${i} is NaN`, { hint: 'the hidden state or router weights contain NaN/Inf; check the checkpoint values' });
    if (best < 0 || score > bestScore) { best = i; bestScore = score; }
  }
  return best;
}

/** The default of the causal decode rule: the decision boundary the auxiliary BCE loss trains. */
export const DEFAULT_CAUSAL_THRESHOLD = 0.5;

/**
 * Causal expert-choice rule (our extension, spec/mor.md): a token that reached recursion r runs it
 * iff sigmoid(s_r) >= threshold, s_r being the raw step-r router logit (before α). A step whose
 * capacity is >= 1 selects every token in upstream's top-k, so it runs unconditionally here too.
 */
export function causalRuns(logit: number, threshold: number, capacity: number, what: string): boolean {
  if (Number.isNaN(logit)) throw new PonderError('NUM_NONFINITE', `${what}: router logit is NaN`, { hint: 'the hidden state or router weights contain NaN/Inf; check the checkpoint values' });
  if (capacity >= 1) return true;
  return sigmoidF32(logit) >= threshold;
}

/** Exact-erf GELU (torch nn.GELU default), for the MLP router. erf by Abramowitz–Stegun 7.1.26 refined with two Newton steps. */
export function geluErf(x: number): number {
  return f32(0.5 * x * (1 + erf(x / Math.SQRT2)));
}

function erf(x: number): number {
  // Series for small |x|, continued fraction (Lentz) for large |x|: both accurate to ~1e-15.
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = ax, sum = ax;
    for (let n = 1; n < 80; n++) {
      term *= -ax * ax / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  // erfc(ax) = exp(-ax²)/sqrt(pi) · 1/(ax + 1/2/(ax + 1/(ax + 3/2/(ax + ...))))
  let f = ax, C = ax, D = 0;
  for (let n = 1; n < 200; n++) {
    const a = n / 2;
    D = ax + a * D; D = D === 0 ? 1e-300 : D; D = 1 / D;
    C = ax + a / C; C = C === 0 ? 1e-300 : C;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return x < 0 ? erfc - 1 : 1 - erfc;
}
