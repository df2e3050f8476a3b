/**
 * Ouro's per-token trace ({steps, exitStep, gates, flops} on every forward result) as the shared
 * TokenTrace of spec/trace.md, so Ouro runs get the same summary, JSON, terminal and HTML views
 * as the other families.
 */
import type { TokenTrace } from '../trace/trace.js';
import type { OuroForwardResult, OuroModel } from './ouro.js';

/**
 * One TokenTrace per position of a forward result. `ids[i]` is the id to record for position i
 * (the prompt token in a prefill; in decode, the caller's choice, usually the token produced).
 * - exitReason: 'criterion' when the exit gate's CDF stopped the token before the last loop
 *   (skip mode), 'fixed' when exit_at_step bounded the loops (skip mode), otherwise 'cap': the
 *   token ran all T loops (select mode always does, whatever it reads out).
 * - criterionValues: the exit CDF after each loop run (criterion 'gate', threshold τ when the
 *   threshold rule was in force).
 * - kvBytes: the f32 KV rows the cache holds after this position, T·L slots × (keys + values).
 */
export function ouroTokenTraces(model: OuroModel, result: OuroForwardResult, ids: ArrayLike<number>, phase: 'prefill' | 'decode'): TokenTrace[] {
  const c = model.config, T = c.totalUtSteps;
  const bytesPerPosition = T * c.numLayers * 2 * model.kvDim * 4;
  const skipped = result.trace.some((t) => t.steps < T);
  return result.trace.map((t, i) => {
    let exitReason: TokenTrace['exitReason'] = 'cap';
    if (t.steps < T) exitReason = result.readout.kind === 'exit-at-step' ? 'fixed' : 'criterion';
    else if (skipped && result.readout.kind === 'exit-at-step' && result.readout.step < T - 1) exitReason = 'fixed';
    const criterionValues: (number | null)[] = [];
    for (let s = 0; s < t.steps; s++) criterionValues.push(result.cdf[i * T + s]);
    const trace: TokenTrace = {
      id: ids[i], phase, steps: t.steps, maxSteps: T, exitReason, criterion: 'gate', criterionValues, routerScores: [],
      flops: t.flops, kvBytes: (result.positions[i] + 1) * bytesPerPosition,
    };
    if (result.readout.kind === 'threshold') trace.threshold = result.readout.threshold;
    return trace;
  });
}
