/**
 * Ouro's exit distribution and read-out rules (research/ouro.md §4), as small pure functions so the
 * model, the tests and (later) the shared depth-policy API all use the same arithmetic.
 *
 * Everything is float32 like upstream: each product and sum is rounded with Math.fround in the
 * order upstream's tensor ops perform them.
 */

const f32 = Math.fround;

/** λ = sigmoid(gate logit), rounded to f32 like torch.sigmoid on a float32 tensor. */
export function gateLambda(gateLogit: number): number {
  return f32(1 / (1 + Math.exp(-gateLogit)));
}

/**
 * Builds the exit pdf and its cumulative sum one loop at a time, exactly as upstream's
 * `stacked_exit_pdf` loop and `torch.cumsum` do (ouro.md §4.1, §4.3):
 *   p_t = λ_t · rem, rem = rem · (1 − λ_t)   for t < T−1
 *   p_{T−1} = rem                               (the last gate is never used)
 *   cdf_t = cdf_{t−1} + p_t
 * Because cdf_t depends only on λ_0..λ_t, a token can decide to exit right after loop t — which is
 * what makes really skipping the remaining loops possible (spec/ouro.md).
 */
export class ExitAccumulator {
  private remaining = 1;
  private cumulative = 0;
  private step = 0;

  constructor(readonly totalSteps: number) {}

  /** Feeds λ_t of the next loop; returns { p, cdf } of that loop. */
  push(lambda: number): { p: number; cdf: number } {
    const t = this.step++;
    let p: number;
    if (t < this.totalSteps - 1) {
      p = f32(lambda * this.remaining);
      this.remaining = f32(this.remaining * f32(1 - lambda));
    } else {
      p = this.remaining;
    }
    this.cumulative = t === 0 ? p : f32(this.cumulative + p);
    return { p, cdf: this.cumulative };
  }
}

/** pdf[t] and cdf[t] for t < T from λ[0..T). */
export function exitDistribution(lambda: ArrayLike<number>, totalSteps: number): { pdf: Float64Array; cdf: Float64Array } {
  const acc = new ExitAccumulator(totalSteps);
  const pdf = new Float64Array(totalSteps), cdf = new Float64Array(totalSteps);
  for (let t = 0; t < totalSteps; t++) ({ p: pdf[t], cdf: cdf[t] } = acc.push(lambda[t]));
  return { pdf, cdf };
}

/**
 * The threshold ("Q-exit") test: upstream compares the float32 cdf with a Python float, i.e. with
 * τ rounded to float32 (ouro.md §4.3, verified).
 */
export function reachesThreshold(cdf: number, threshold: number): boolean {
  return cdf >= f32(threshold);
}

/** First t with cdf[t] ≥ τ, else T−1 (upstream: argmax of the mask, never-exceeded → last step). */
export function thresholdExitStep(cdf: ArrayLike<number>, totalSteps: number, threshold: number): number {
  for (let t = 0; t < totalSteps; t++) if (reachesThreshold(cdf[t], threshold)) return t;
  return totalSteps - 1;
}

/** The read-out branches of OuroForCausalLM.forward without labels, in upstream's precedence order (§4.2). */
export type ReadoutRule =
  | { kind: 'exit-at-step'; step: number }
  | { kind: 'threshold'; threshold: number }
  | { kind: 'weighted' }
  | { kind: 'last' };

/**
 * Resolves the effective read-out exactly as upstream does:
 *   exit_at_step = arg ?? config.early_exit_step;  exit_threshold = arg ?? config.early_exit_threshold
 *   1. 0 ≤ exit_at_step < T → that loop;  2. threshold not null → CDF rule;
 *   3. use_weighted_exit → Σ p_t·logits_t;  4. the last loop.
 * An out-of-range exit_at_step (T, −1, …) is ignored, not clamped; passing null for the threshold
 * does not disable the config's threshold.
 */
export function resolveReadout(totalSteps: number, args: { exitAtStep?: number | null; exitThreshold?: number | null; useWeightedExit?: boolean },
  defaults: { earlyExitStep: number | null; earlyExitThreshold: number | null }): ReadoutRule {
  const exitAtStep = args.exitAtStep ?? defaults.earlyExitStep;
  const exitThreshold = args.exitThreshold ?? defaults.earlyExitThreshold;
  if (exitAtStep !== null && Number.isInteger(exitAtStep) && exitAtStep >= 0 && exitAtStep < totalSteps) return { kind: 'exit-at-step', step: exitAtStep };
  if (exitThreshold !== null) return { kind: 'threshold', threshold: exitThreshold };
  if (args.useWeightedExit) return { kind: 'weighted' };
  return { kind: 'last' };
}
