import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runExample, specExamples } from './spec-examples.js';

const examples = specExamples('spec/trace.md');

test('spec/trace.md has examples', () => {
  assert.ok(examples.length > 0);
});

examples.forEach((source, i) => {
  test(`spec/trace.md example ${i + 1} runs and its assertions hold`, () => {
    try {
      runExample(source, `trace-example-${i + 1}`);
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
      assert.fail(`example ${i + 1} failed:\n${stderr || (err as Error).message}`);
    }
  });
});
