/**
 * The policies `ponder eval` runs by default: every fixed depth 1..full, and every adaptive rule the
 * model runs (src/depth/support.ts decides, through model.checkPolicy) at a sweep of thresholds
 * from eager to cautious, so the rows trace a curve of quality against compute.
 */
import { PonderError } from '../errors.js';
import { describePolicy, exit, fixed, parsePolicy, router, type DepthPolicy } from '../depth/policy.js';

/**
 * Thresholds per rule, eager (less compute) first. Exit criteria stop when the value falls below the
 * threshold (argmax-stability: after that many unchanged checks); the Ouro gate exits when its exit
 * CDF reaches τ; MoR's causal router continues while sigmoid(router logit) ≥ τ.
 */
export const SWEEP_THRESHOLDS: Readonly<Record<string, readonly number[]>> = {
  'entropy-diff': [1e-2, 3e-3, 1e-3, 3e-4],
  'latent-diff': [0.1, 0.05, 0.03, 0.01],
  kl: [3e-2, 1e-2, 3e-3, 1e-3, 3e-4],
  'minp-kl': [1e-3, 1e-4, 1e-5, 1e-6],
  'argmax-stability': [1, 2, 3],
  cosine: [1e-2, 3e-3, 1e-3, 3e-4],
  gate: [0.2, 0.35, 0.5, 0.65, 0.8],
  router: [0.7, 0.6, 0.5, 0.4, 0.3],
};

/** The rule a policy belongs to, one curve in the plot: 'fixed', 'exit(kl)', 'exit(gate)', 'router(causal)', or the policy itself. */
export function seriesOf(policy: DepthPolicy): string {
  switch (policy.kind) {
    case 'fixed': return 'fixed';
    case 'exit': return `exit(${policy.criterion}${policy.mode === 'select' ? ', select' : ''})`;
    case 'router': return `router(${policy.mode})`;
    default: return describePolicy(policy);
  }
}

/** The threshold a policy sweeps, or null. */
export function thresholdOf(policy: DepthPolicy): number | null {
  if (policy.kind === 'exit' && typeof policy.threshold === 'number') return policy.threshold;
  if (policy.kind === 'router' && policy.threshold !== undefined) return policy.threshold;
  return null;
}

function runs(check: (p: DepthPolicy) => void, p: DepthPolicy): boolean {
  try { check(p); return true; } catch (e) { if (e instanceof PonderError && e.code === 'ARG_POLICY') return false; throw e; }
}

/** The adaptive rules a model runs, each at its thresholds. `criteria` narrows them (names as in SWEEP_THRESHOLDS). */
export function adaptiveSweep(check: (p: DepthPolicy) => void, criteria?: readonly string[]): DepthPolicy[] {
  const names = criteria ?? Object.keys(SWEEP_THRESHOLDS);
  for (const name of names) {
    if (!(name in SWEEP_THRESHOLDS)) throw new PonderError('ARG_INVALID', `no threshold sweep for ${JSON.stringify(name)}`, { field: 'criteria', hint: `sweeps: ${Object.keys(SWEEP_THRESHOLDS).join(', ')}` });
  }
  const out: DepthPolicy[] = [];
  for (const name of names) {
    for (const t of SWEEP_THRESHOLDS[name]) {
      const p = name === 'router' ? router('causal', t) : exit(name, t);
      if (runs(check, p)) out.push(p);
    }
  }
  return out;
}

/** fixed(1..maxDepth) as far as the model runs them. */
export function fixedSweep(check: (p: DepthPolicy) => void, maxDepth: number): DepthPolicy[] {
  const out: DepthPolicy[] = [];
  for (let d = 1; d <= maxDepth; d++) if (runs(check, fixed(d))) out.push(fixed(d));
  return out;
}

/** "1-4,6" → [1, 2, 3, 4, 6]. */
export function parseDepthList(text: string): number[] {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new PonderError('ARG_INVALID', `cannot read depth list ${JSON.stringify(text)}`, { field: 'depths', hint: 'write e.g. 1-6 or 1,2,4,8' });
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (a < 1 || b < a || b - a > 4096) throw new PonderError('ARG_INVALID', `depth range ${part.trim()} must be ascending from 1`, { field: 'depths', hint: 'write e.g. 1-6 or 1,2,4,8' });
    for (let d = a; d <= b; d++) out.add(d);
  }
  return [...out].sort((x, y) => x - y);
}

/** --policy texts, each checked against the model. */
export function parsePolicies(texts: readonly string[], check: (p: DepthPolicy) => void): DepthPolicy[] {
  return texts.map((t) => { const p = parsePolicy(t); check(p); return p; });
}
