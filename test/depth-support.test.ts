/**
 * The support table of src/depth/support.ts and the table "Which family runs which policy" of
 * spec/policies.md say the same thing: a cell is `ARG_POLICY` in the spec exactly where the code
 * refuses, **exact** where the code says it reproduces upstream, and a budget's "p ∈ …" lists the
 * per-token policies the code lets a budget wrap. checkPolicySupport follows the table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { budget, defaultDepth, depthFunction, exit, fixed, router, type DepthPolicy } from '../src/depth/policy.js';
import { checkPolicySupport, POLICY_SUPPORT, type DepthKind, type PolicyRow } from '../src/depth/support.js';
import { PonderError } from '../src/errors.js';

const COLUMNS: Record<string, DepthKind> = { Huginn: 'huginn', Ouro: 'ouro', 'MoR expert choice': 'mor-expert', 'MoR token choice': 'mor-token', 'MoR baselines (vanilla / recursive)': 'mor-baseline' };
const ROWS: [RegExp, PolicyRow][] = [
  [/^`default`$/, 'default'], [/^`fixed\(n\)`$/, 'fixed'], [/^`router\('upstream'\)`$/, 'router-upstream'], [/^`router\('causal', t\)`$/, 'router-causal'],
  [/^`exit\(gate, t\)`$/, 'exit-gate'], [/^`exit\(c, t\)`/, 'exit-criterion'], [/^`budget\(n, p\)`$/, 'budget'], [/^`depthFunction\(f\)`$/, 'function'],
];
const IN_BUDGET: Record<string, PolicyRow> = { default: 'default', fixed: 'fixed', exit: 'exit-criterion', 'exit(Huginn criterion)': 'exit-criterion', function: 'function' };

function specTable(): { header: string[]; rows: string[][] } {
  const text = readFileSync('spec/policies.md', 'utf8');
  const section = text.slice(text.indexOf('## Which family runs which policy'));
  const lines = section.split('\n').filter((l) => l.startsWith('|'));
  const cells = (l: string) => l.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim());
  return { header: cells(lines[0]).slice(1), rows: lines.slice(2).map(cells) };
}

test('spec/policies.md mirrors the support table: ARG_POLICY, exact and the budget lists, cell for cell', () => {
  const { header, rows } = specTable();
  assert.deepEqual(header, Object.keys(COLUMNS));
  const seen = new Set<PolicyRow>();
  for (const row of rows) {
    const match = ROWS.find(([re]) => re.test(row[0]));
    assert.ok(match, `a spec row the test does not know: ${row[0]}`);
    const policyRow = match[1];
    seen.add(policyRow);
    header.forEach((column, i) => {
      const kind = COLUMNS[column], cell = row[i + 1], support = POLICY_SUPPORT[kind].rows[policyRow];
      const where = `${row[0]} on ${column}: "${cell}"`;
      assert.equal(cell.startsWith('`ARG_POLICY`'), support === false, where);
      if (support !== false) assert.equal(cell.includes('**exact**'), support === 'exact', where);
      if (policyRow === 'budget' && support !== false) {
        const listed = /p ∈ (.*)$/.exec(cell)?.[1].split(/,\s*/).map((p) => IN_BUDGET[p.trim()]);
        assert.deepEqual(listed, POLICY_SUPPORT[kind].inBudget, where);
      }
    });
  }
  assert.equal(seen.size, ROWS.length, 'every row of the table is in the spec');
});

test('checkPolicySupport accepts exactly the cells the table allows, and the fixed(n) range of each kind', () => {
  const sample: Record<PolicyRow, DepthPolicy> = {
    default: defaultDepth(), fixed: fixed(2), 'router-upstream': router('upstream'), 'router-causal': router('causal', 0.5),
    'exit-gate': exit('gate', 0.5), 'exit-criterion': exit('kl', 1e-3), budget: budget(10), function: depthFunction(() => 'stop'),
  };
  const depth = 2;
  for (const kind of Object.keys(POLICY_SUPPORT) as DepthKind[]) {
    const k = POLICY_SUPPORT[kind];
    for (const [row, policy] of Object.entries(sample) as [PolicyRow, DepthPolicy][]) {
      const accepted = (() => { try { checkPolicySupport(kind, kind, depth, policy); return true; } catch (e) { assert.ok(e instanceof PonderError && e.code === 'ARG_POLICY' && e.hint.includes('spec/policies.md')); return false; } })();
      assert.equal(accepted, k.rows[row] !== false, `${kind}: ${row}`);
      if (k.rows.budget !== false && row !== 'budget') {
        const inBudget = (() => { try { checkPolicySupport(kind, kind, depth, budget(10, policy)); return true; } catch { return false; } })();
        assert.equal(inBudget, k.inBudget.includes(row), `${kind}: budget(10, ${row})`);
      }
    }
    const over = (() => { try { checkPolicySupport(kind, kind, depth, fixed(depth + 1)); return true; } catch { return false; } })();
    assert.equal(over, k.rows.fixed !== false && k.fixed === 'any', `${kind}: fixed(depth + 1)`);
  }
});
