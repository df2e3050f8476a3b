/**
 * Which family runs which depth policy: one table, mirrored row for row by the table "Which family
 * runs which policy" of spec/policies.md (test/depth-support.test.ts holds the two together).
 * A model names its column (`DepthKind`); `checkPolicySupport` refuses anything else with
 * ARG_POLICY, before any compute, its hint listing what the model runs.
 */
import { PonderError } from '../errors.js';
import { describePolicy, type DepthPolicy } from './policy.js';
import { EXIT_CRITERIA } from './criteria.js';

/** The columns: each family, MoR by routing variant. */
export type DepthKind = 'huginn' | 'ouro' | 'mor-expert' | 'mor-token' | 'mor-baseline';

/** The rows: a policy as the table tells them apart. */
export type PolicyRow = 'default' | 'fixed' | 'router-upstream' | 'router-causal' | 'exit-gate' | 'exit-criterion' | 'budget' | 'function';

/** A cell: ARG_POLICY (false), or runs — reproducing upstream ('exact') or as our extension. */
export type Support = false | 'exact' | 'extension';

export interface KindSupport {
  readonly rows: Readonly<Record<PolicyRow, Support>>;
  /** fixed(n): any n ('any'), 1..full depth ('depth'), or only the full depth ('full') */
  readonly fixed: 'any' | 'depth' | 'full';
  /** the per-token policies a budget may wrap (a bare budget wraps `default`) */
  readonly inBudget: readonly PolicyRow[];
}

export const POLICY_SUPPORT: Readonly<Record<DepthKind, KindSupport>> = {
  huginn: {
    rows: { default: 'exact', fixed: 'exact', 'router-upstream': false, 'router-causal': false, 'exit-gate': false, 'exit-criterion': 'exact', budget: 'extension', function: 'extension' },
    fixed: 'any', inBudget: ['default', 'fixed', 'exit-criterion', 'function'],
  },
  ouro: {
    rows: { default: 'exact', fixed: 'extension', 'router-upstream': false, 'router-causal': false, 'exit-gate': 'exact', 'exit-criterion': 'extension', budget: 'extension', function: 'extension' },
    fixed: 'depth', inBudget: ['default', 'fixed', 'exit-criterion', 'function'],
  },
  'mor-expert': {
    rows: { default: 'exact', fixed: 'extension', 'router-upstream': 'exact', 'router-causal': 'extension', 'exit-gate': false, 'exit-criterion': 'extension', budget: 'extension', function: 'extension' },
    fixed: 'depth', inBudget: ['default', 'fixed', 'exit-criterion', 'function'],
  },
  'mor-token': {
    rows: { default: 'exact', fixed: false, 'router-upstream': 'exact', 'router-causal': 'exact', 'exit-gate': false, 'exit-criterion': false, budget: false, function: false },
    fixed: 'depth', inBudget: [],
  },
  'mor-baseline': {
    rows: { default: 'exact', fixed: 'exact', 'router-upstream': false, 'router-causal': false, 'exit-gate': false, 'exit-criterion': false, budget: false, function: false },
    fixed: 'full', inBudget: [],
  },
};

/** The table row of a policy (exit(c) with c not Huginn's nor 'gate' is exit-criterion, refused by name later). */
export function policyRow(policy: DepthPolicy): PolicyRow {
  switch (policy.kind) {
    case 'router': return policy.mode === 'causal' ? 'router-causal' : 'router-upstream';
    case 'exit': return policy.criterion === 'gate' ? 'exit-gate' : 'exit-criterion';
    default: return policy.kind;
  }
}

/** A Huginn exit criterion name as createExitEvaluator matches it (exact names, 'none' included; anything containing 'kl' is KL). */
export function isExitCriterion(name: string): boolean {
  return name !== 'gate' && (EXIT_CRITERIA.includes(name as never) || name.includes('kl'));
}

const SPELLING: Record<PolicyRow, string> = {
  default: 'default', fixed: 'fixed(n)', 'router-upstream': 'router(upstream)', 'router-causal': 'router(causal, t)',
  'exit-gate': 'exit(gate, t[, skip|select])', 'exit-criterion': `exit(c, t) with c one of ${EXIT_CRITERIA.join(', ')}`,
  budget: 'budget(n, p)', function: 'a depth function',
};

/** What a model of this kind runs, for hints: "default, fixed(1..4), exit(gate, t), ...". */
export function describeSupport(kind: DepthKind, depth: number): string {
  const k = POLICY_SUPPORT[kind];
  const rows = (Object.keys(k.rows) as PolicyRow[]).filter((r) => k.rows[r] !== false).map((r) => {
    if (r === 'fixed') return k.fixed === 'any' ? 'fixed(n)' : k.fixed === 'depth' ? `fixed(1..${depth})` : `fixed(${depth})`;
    if (r === 'budget') return `budget(n, p) with p one of ${k.inBudget.map((p) => SPELLING[p]).join(' | ')}`;
    return SPELLING[r];
  });
  return rows.join(', ');
}

/** Throws ARG_POLICY unless a model of `kind` with full depth `depth` runs `policy` (checkPolicy already passed). */
export function checkPolicySupport(kind: DepthKind, family: string, depth: number, policy: DepthPolicy): void {
  const k = POLICY_SUPPORT[kind];
  const refuse = (what: string): never => {
    throw new PonderError('ARG_POLICY', `${family} ${what}`, { field: 'policy', hint: `${family} runs: ${describeSupport(kind, depth)} (spec/policies.md)` });
  };
  const perToken = (p: DepthPolicy, inBudget: boolean): void => {
    const row = policyRow(p);
    if (k.rows[row] === false) refuse(`cannot run the depth policy ${describePolicy(p)}`);
    if (inBudget && !k.inBudget.includes(row)) refuse(`cannot run ${describePolicy(p)} inside a budget`);
    if (p.kind === 'fixed') {
      if (k.fixed === 'depth' && p.steps > depth) refuse(`cannot run fixed(${p.steps}): its full depth is ${depth}`);
      if (k.fixed === 'full' && p.steps !== depth) refuse(`runs only its full depth, fixed(${depth}), not fixed(${p.steps})`);
    }
    if (p.kind === 'exit') {
      if (row === 'exit-criterion' && !isExitCriterion(p.criterion)) refuse(`has no exit criterion ${JSON.stringify(p.criterion)}`);
      if (row === 'exit-criterion' && p.mode === 'select') refuse(`cannot run ${describePolicy(p)}: select mode is the gate read-out only (a criterion stops the token)`);
      if (row === 'exit-gate' && (p.minSteps !== undefined || p.checkEvery !== undefined || p.maxSteps !== undefined || p.exitInPrefill !== undefined)) refuse('runs exit(gate, t) without minSteps, checkEvery, maxSteps or exitInPrefill (the gate is read after every loop)');
    }
  };
  if (policy.kind === 'budget') {
    if (k.rows.budget === false) refuse(`cannot run the depth policy ${describePolicy(policy)}`);
    perToken(policy.perToken ?? { kind: 'default' }, true);
  } else perToken(policy, false);
}
