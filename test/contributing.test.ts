/**
 * CONTRIBUTING.md's recipe for adding a family names real files, and every registered family has
 * what the recipe asks for: a family file, a config file, a conform runner listed in
 * FAMILY_RUNNERS, golden cases, and a column of the policy support table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { FAMILY_RUNNERS } from '../src/conform/runner.js';
import { POLICY_SUPPORT } from '../src/depth/support.js';
import { FAMILIES } from '../src/models/registry.js';

test('every path CONTRIBUTING.md names exists', () => {
  const text = readFileSync('CONTRIBUTING.md', 'utf8');
  const paths = [...text.matchAll(/`((?:src|spec|test|models|scripts)\/[^`\s]*)`/g)].map((m) => m[1]).filter((p) => !p.includes('<'));
  assert.ok(paths.length >= 20, `${paths.length} paths named`);
  assert.deepEqual(paths.filter((p) => !existsSync(p)), [], 'named but missing');
});

test('every registered family has a family file, a config file, a conform runner, golden cases and a policy column', () => {
  for (const { family } of FAMILIES) {
    for (const file of [`src/models/${family}-family.ts`, `src/models/${family}-config.ts`, `src/models/${family}.ts`, `src/conform/${family}.ts`]) assert.ok(existsSync(file), `${family}: ${file}`);
    assert.ok(family in FAMILY_RUNNERS, `${family} is in FAMILY_RUNNERS`);
    const golden = `spec/golden/${family}`;
    assert.ok(existsSync(golden) && statSync(golden).isDirectory() && readdirSync(golden).some((f) => f.endsWith('.safetensors')), `${family}: golden cases in ${golden}`);
    assert.ok(Object.keys(POLICY_SUPPORT).some((k) => k === family || k.startsWith(`${family}-`)), `${family}: a column of the support table`);
  }
  assert.deepEqual(Object.keys(FAMILY_RUNNERS).sort(), FAMILIES.map((f) => f.family).sort(), 'a conform runner for each family and no other');
});
