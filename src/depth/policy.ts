/**
 * Depth policies: one option, shared by every family, saying how many recurrent steps (Huginn),
 * loops (Ouro) or recursions (MoR) each token gets. spec/policies.md says which family supports
 * which policy, and which combinations reproduce upstream exactly.
 *
 * A policy is a plain object (JSON-able except `depthFunction`), built with the helpers below or
 * parsed from the CLI spelling by `parsePolicy`, e.g. "exit(kl, 5e-4)".
 */
import { describeValue as show, PonderError } from '../errors.js';
import { LIMITS, limitNote, type LimitName } from '../limits.js';

/** What a user depth function sees after each step of one token (or of the prefill call). */
export interface StepSummary {
  /** steps run so far for this token, ≥ 1 */
  step: number;
  /** the most this token may run */
  maxSteps: number;
  /** position of the (last) token of this call */
  position: number;
  phase: 'prefill' | 'decode';
  /** ‖s_t − s_{t−1}‖ / ‖s_t‖ over the call's last position (Huginn); NaN where not defined */
  latentChange: number;
  /** steps spent on generated tokens before this one */
  stepsSpent: number;
  /** next-token logits [V] at the current step (runs the coda + head; costs compute, counted in flops) */
  logits(): Float32Array;
}

export type DepthDecision = 'continue' | 'stop';
export type DepthFunction = (step: number, state: StepSummary) => DepthDecision | boolean;

export type DepthPolicy =
  /** What upstream does when given no depth argument (Huginn: mean_recurrence, MoR: its routers, Ouro: its config read-out). */
  | { readonly kind: 'default' }
  /** Every token runs exactly `steps` steps. */
  | { readonly kind: 'fixed'; readonly steps: number }
  /** MoR routers: 'upstream' (exact) or 'causal' (threshold on the expert-choice router scores). */
  | { readonly kind: 'router'; readonly mode: 'upstream' | 'causal'; readonly threshold?: number }
  /** Stop a token when `criterion` crosses `threshold` (Huginn's criteria; Ouro's learned gate as 'gate'). */
  | { readonly kind: 'exit'; readonly criterion: string; readonly threshold: number | 'auto'; readonly maxSteps?: number; readonly minSteps?: number; readonly checkEvery?: number; readonly mode?: 'skip' | 'select'; readonly exitInPrefill?: boolean }
  /** A total number of steps for the generated tokens of one sequence, spent by `perToken` until it runs out. */
  | { readonly kind: 'budget'; readonly maxStepsPerSequence: number; readonly perToken?: DepthPolicy }
  /** A user function called after every step: 'continue' / true goes on, 'stop' / false stops. */
  | { readonly kind: 'function'; readonly decide: DepthFunction; readonly maxSteps?: number; readonly name?: string };

export function defaultDepth(): DepthPolicy {
  return { kind: 'default' };
}

export function fixed(steps: number): DepthPolicy {
  return checkPolicy({ kind: 'fixed', steps });
}

export function router(mode: 'upstream' | 'causal' = 'upstream', threshold?: number): DepthPolicy {
  return checkPolicy(threshold === undefined ? { kind: 'router', mode } : { kind: 'router', mode, threshold });
}

export function exit(criterion: string, threshold: number | 'auto' = 'auto', options: { maxSteps?: number; minSteps?: number; checkEvery?: number; mode?: 'skip' | 'select'; exitInPrefill?: boolean } = {}): DepthPolicy {
  return checkPolicy({ kind: 'exit', criterion, threshold, ...options });
}

export function budget(maxStepsPerSequence: number, perToken?: DepthPolicy): DepthPolicy {
  return checkPolicy(perToken === undefined ? { kind: 'budget', maxStepsPerSequence } : { kind: 'budget', maxStepsPerSequence, perToken });
}

export function depthFunction(decide: DepthFunction, options: { maxSteps?: number; name?: string } = {}): DepthPolicy {
  return checkPolicy({ kind: 'function', decide, ...options });
}

function policyError(message: string, hint = 'see spec/policies.md for the policies and the families that support them'): PonderError {
  return new PonderError('ARG_POLICY', message, { field: 'policy', hint });
}

/** An integer in [min, LIMITS[limit]] (ponder's hard limits, spec/limits.md): fixed(1e9) is refused here, before anything is sized or looped by it. */
function count(value: unknown, what: string, limit: LimitName, min = 1): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) throw policyError(`${what} must be ${min === 1 ? 'a positive integer' : `an integer ≥ ${min}`}, got ${show(value)}`);
  if (value > LIMITS[limit]) throw policyError(`${what} is ${value}, over ${LIMITS[limit]} (${limitNote(limit)})`);
}


/** Checks the policy's own fields (not whether a family supports it); returns it. Errors: ARG_POLICY. */
export function checkPolicy(policy: DepthPolicy): DepthPolicy {
  if (policy === null || typeof policy !== 'object' || Array.isArray(policy)) throw policyError(`a depth policy must be an object such as fixed(4), got ${show(policy)}`);
  switch (policy.kind) {
    case 'default': return policy;
    case 'fixed': count(policy.steps, 'fixed(n): n', 'depth'); return policy;
    case 'router':
      if (policy.mode !== 'upstream' && policy.mode !== 'causal') throw policyError(`router mode must be 'upstream' or 'causal', got ${show(policy.mode)}`);
      if (policy.threshold !== undefined) {
        if (policy.mode !== 'causal') throw policyError('router(upstream) takes no threshold: upstream routing is top-k, not a threshold', 'use router(causal, threshold)');
        if (typeof policy.threshold !== 'number' || !(policy.threshold >= 0 && policy.threshold <= 1)) throw policyError(`router threshold must be a number in [0, 1], got ${show(policy.threshold)}`);
      }
      return policy;
    case 'exit':
      if (typeof policy.criterion !== 'string' || policy.criterion.length === 0) throw policyError(`exit criterion must be a name such as 'kl', got ${show(policy.criterion)}`);
      if (policy.threshold !== 'auto' && (typeof policy.threshold !== 'number' || Number.isNaN(policy.threshold))) throw policyError(`exit threshold must be a number or 'auto', got ${show(policy.threshold)}`);
      if (policy.maxSteps !== undefined) count(policy.maxSteps, 'exit maxSteps', 'depth');
      if (policy.checkEvery !== undefined) count(policy.checkEvery, 'exit checkEvery', 'depth');
      if (policy.minSteps !== undefined) count(policy.minSteps, 'exit minSteps', 'depth', 0);
      if (policy.mode !== undefined && policy.mode !== 'skip' && policy.mode !== 'select') throw policyError(`exit mode must be 'skip' or 'select', got ${show(policy.mode)}`);
      if (policy.exitInPrefill !== undefined && typeof policy.exitInPrefill !== 'boolean') throw policyError(`exit exitInPrefill must be true or false, got ${show(policy.exitInPrefill)}`);
      return policy;
    case 'budget':
      count(policy.maxStepsPerSequence, 'budget(maxStepsPerSequence)', 'budgetSteps');
      if (policy.perToken !== undefined) {
        if (policy.perToken !== null && typeof policy.perToken === 'object' && policy.perToken.kind === 'budget') throw policyError('budget inside budget is not supported');
        checkPolicy(policy.perToken);
      }
      return policy;
    case 'function':
      if (typeof policy.decide !== 'function') throw policyError('depthFunction needs a function (step, state) → "continue" | "stop"');
      if (policy.maxSteps !== undefined) count(policy.maxSteps, 'depthFunction maxSteps', 'depth');
      if (policy.name !== undefined && typeof policy.name !== 'string') throw policyError(`depthFunction name must be a string, got ${show(policy.name)}`);
      return policy;
    default:
      throw policyError(`unknown depth policy kind ${show((policy as { kind: unknown }).kind)}`, 'use default, fixed, router, exit, budget or function');
  }
}

/** The policy as a user would write it, e.g. "exit(kl, 0.0005)" (used in traces and summaries). */
export function describePolicy(policy: DepthPolicy): string {
  checkPolicy(policy);
  switch (policy.kind) {
    case 'default': return 'default';
    case 'fixed': return `fixed(${policy.steps})`;
    case 'router': return policy.mode === 'causal' && policy.threshold !== undefined ? `router(causal, ${policy.threshold})` : `router(${policy.mode})`;
    case 'exit': return `exit(${policy.criterion}, ${policy.threshold}${policy.mode ? `, ${policy.mode}` : ''})`;
    case 'budget': return `budget(${policy.maxStepsPerSequence}${policy.perToken ? `, ${describePolicy(policy.perToken)}` : ''})`;
    case 'function': return `function(${policy.name ?? (policy.decide.name || 'anonymous')})`;
  }
}

/**
 * The CLI spelling: `default`, `fixed(N)` / `fixed:N`, `router`, `router(upstream)`, `router(causal[, T])`,
 * `exit(CRITERION[, T|auto])`, `budget(N[, inner])`. A separate --threshold applies to router(causal) and exit.
 */
export function parsePolicy(text: string, threshold?: number): DepthPolicy {
  if (typeof text !== 'string') throw policyError(`a depth policy as text must be a string, got ${show(text)}`);
  if (threshold !== undefined && (typeof threshold !== 'number' || Number.isNaN(threshold))) throw policyError(`the threshold must be a number, got ${show(threshold)}`);
  if (text.length > LIMITS.policyText) throw policyError(`the depth policy is ${text.length} characters long, over ${LIMITS.policyText} (${limitNote('policyText')})`, 'write e.g. budget(64, exit(kl, 5e-4))');
  let nesting = 0, deepest = 0;
  for (const ch of text) {
    if (ch === '(') deepest = Math.max(deepest, ++nesting);
    else if (ch === ')' && --nesting < 0) break;
  }
  if (nesting !== 0) throw policyError(`cannot read depth policy ${show(text)}: its parentheses do not balance`, 'write e.g. fixed(8), router(causal, 0.5), exit(kl, 5e-4), budget(64)');
  if (deepest > LIMITS.policyNesting) throw policyError(`the depth policy nests ${deepest} parentheses deep, over ${LIMITS.policyNesting} (${limitNote('policyNesting')})`, 'write e.g. budget(64, exit(kl, 5e-4))');
  const used = { threshold: false };
  const policy = parsePolicyText(text, threshold, used);
  // a threshold nothing reads would be silently ignored: fixed(4) with --threshold 0.5
  if (threshold !== undefined && !used.threshold) {
    throw policyError(`a separate threshold (${threshold}) does not apply to ${describePolicy(policy)}`, 'a threshold goes with router(causal) or exit(CRITERION) that do not write their own; drop it, or write it in the policy');
  }
  return policy;
}

function parsePolicyText(text: string, threshold: number | undefined, used: { threshold: boolean }): DepthPolicy {
  const src = text.trim();
  const m = /^([a-z]+)(?:\((.*)\)|:(.*))?$/.exec(src);
  if (!m) throw policyError(`cannot read depth policy ${JSON.stringify(text)}`, 'write e.g. fixed(8), router(causal, 0.5), exit(kl, 5e-4), budget(64)');
  const name = m[1];
  const argText = m[2] ?? m[3] ?? '';
  const args = splitArgs(argText);
  const num = (s: string | undefined, what: string): number => {
    const v = Number(s);
    if (s === undefined || s.trim() === '' || !Number.isFinite(v)) throw policyError(`${name}: ${what} must be a number, got ${JSON.stringify(s ?? '')}`);
    return v;
  };
  switch (name) {
    case 'default':
      if (args.length > 0) throw policyError('default takes no arguments');
      return defaultDepth();
    case 'fixed':
      if (args.length !== 1) throw policyError('fixed needs one argument: fixed(N)');
      return fixed(num(args[0], 'N'));
    case 'router': {
      const mode = args[0] ?? 'upstream';
      if (mode !== 'upstream' && mode !== 'causal') throw policyError(`router mode must be upstream or causal, got ${JSON.stringify(mode)}`);
      const t = args[1] !== undefined ? num(args[1], 'threshold') : threshold;
      if (args[1] === undefined && threshold !== undefined) used.threshold = true;
      if (args.length > 2) throw policyError('router takes at most two arguments: router(causal, T)');
      return mode === 'causal' ? router('causal', t ?? 0.5) : (t !== undefined ? router('upstream', t) : router('upstream'));
    }
    case 'exit': {
      if (args.length < 1 || args.length > 3) throw policyError('exit needs a criterion: exit(kl, 5e-4)');
      const t = args[1] === undefined ? (threshold ?? 'auto') : args[1] === 'auto' ? 'auto' : num(args[1], 'threshold');
      if (args[1] === undefined && threshold !== undefined) used.threshold = true;
      const mode = args[2];
      if (mode !== undefined && mode !== 'skip' && mode !== 'select') throw policyError(`exit mode must be skip or select, got ${JSON.stringify(mode)}`);
      return exit(args[0], t, mode ? { mode } : {});
    }
    case 'budget': {
      if (args.length < 1) throw policyError('budget needs a step count: budget(64)');
      const inner = args.length > 1 ? parsePolicyText(args.slice(1).join(','), threshold, used) : undefined;
      return budget(num(args[0], 'maxStepsPerSequence'), inner);
    }
    default:
      throw policyError(`unknown depth policy ${JSON.stringify(name)}`, 'policies: default, fixed(N), router(upstream|causal[, T]), exit(CRITERION[, T]), budget(N[, POLICY])');
  }
}

/** Splits "a, b(c, d), e" at top-level commas. */
function splitArgs(text: string): string[] {
  if (text.trim() === '') return [];
  const out: string[] = [];
  let depth = 0, start = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (ch === ',' && depth === 0) { out.push(text.slice(start, i).trim()); start = i + 1; }
  }
  out.push(text.slice(start).trim());
  return out;
}
