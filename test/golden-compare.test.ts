import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareCase } from '../src/conform/compare.js';
import { floatTensor, intTensor, tensorNames } from '../src/conform/golden.js';
import { findGoldenCases, loadGoldenCase } from '../src/node/files.js';

const cases = findGoldenCases('spec/golden');

test('every bundled golden case parses and names its family', () => {
  const families = new Set<string>();
  for (const path of cases) {
    const c = loadGoldenCase(path);
    assert.match(c.family, /^(mor|huginn|ouro)$/);
    families.add(c.family);
    assert.ok(tensorNames(c, 'expected.').length > 0, `${c.name} has expected tensors`);
  }
  assert.deepEqual([...families].sort(), ['huginn', 'mor', 'ouro']);
});

test('a runner that returns the expected tensors themselves passes every comparison', () => {
  for (const path of cases) {
    const c = loadGoldenCase(path);
    const produced = new Map<string, ArrayLike<number>>();
    for (const name of tensorNames(c, 'expected.')) {
      const dtype = c.file.tensors.get(name)!.dtype;
      produced.set(name, dtype === 'F32' || dtype === 'BF16' || dtype === 'F16' ? floatTensor(c, name) : intTensor(c, name));
    }
    for (const r of compareCase(c, produced)) assert.ok(r.pass, `${c.name} ${r.name}: ${r.detail}`);
  }
});

test('a missing or perturbed expected tensor fails its comparison', () => {
  const c = loadGoldenCase(cases[0]);
  const names = tensorNames(c, 'expected.');
  const floatName = names.find((n) => c.file.tensors.get(n)!.dtype === 'F32')!;
  const perturbed = Float32Array.from(floatTensor(c, floatName));
  perturbed[0] += 1;
  const reports = compareCase(c, new Map([[floatName, perturbed]]));
  assert.equal(reports.find((r) => r.name === floatName)!.pass, false);
  assert.ok(reports.filter((r) => r.name !== floatName).every((r) => !r.pass && r.detail === 'not produced by the runner'));
});
