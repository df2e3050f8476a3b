/** Every ```ts example of the spec documents runs, and the assertions it makes about the text around it hold. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runExample, specExamples } from './spec-examples.js';

for (const spec of ['spec/api.md', 'spec/policies.md', 'spec/sampling.md', 'spec/trace.md', 'spec/chat.md', 'spec/serve.md']) {
  const examples = specExamples(spec);

  test(`${spec} has examples`, () => {
    assert.ok(examples.length > 0);
  });

  examples.forEach((source, i) => {
    test(`${spec} example ${i + 1} runs and its assertions hold`, () => {
      try {
        runExample(source, `${spec.replace(/\W/g, '-')}-${i + 1}`);
      } catch (err) {
        const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
        assert.fail(`example ${i + 1} failed:\n${stderr || (err as Error).message}`);
      }
    });
  });
}
