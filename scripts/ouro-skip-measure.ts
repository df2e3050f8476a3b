/**
 * What real early exit saves and what it changes, measured on the golden cases' weights (seeded by
 * upstream's generator so that tokens exit at different loops; research/ouro.md §12).
 *
 * For each case and threshold τ: greedy-decode N tokens from the case's prompt in real-exit mode
 * (each missing-KV policy), then run upstream semantics (all loops, same τ) over the same tokens
 * and compare per decoded position: loops run, flops, max |Δ logits|, argmax and exit-step
 * agreement; plus how many greedy tokens agree with upstream's own continuation.
 *
 *   node --import tsx scripts/ouro-skip-measure.ts [--tokens 24] [--thresholds 0.3,0.5,0.7,0.9]
 */
import { parseArgs } from 'node:util';
import { hasTensor, intTensor, tensorShape } from '../src/conform/golden.js';
import { OuroModel, type MissingKvPolicy, type OuroForwardOptions } from '../src/models/ouro.js';
import { ouroConfigFromJson } from '../src/models/ouro-config.js';
import { safetensorsWeights } from '../src/models/weights.js';
import { findGoldenCases, loadGoldenCase } from '../src/node/files.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';

const { values } = parseArgs({ options: { tokens: { type: 'string', default: '24' }, thresholds: { type: 'string', default: '0.3,0.5,0.7,0.9' } } });
const newTokens = Number(values.tokens);
const thresholds = values.thresholds!.split(',').map(Number);

console.log('| case | τ | KV policy | mean loops (upstream runs T) | flops saved | max abs Δ logits | argmax agree | exit step agree | greedy tokens agree |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const path of findGoldenCases('spec/golden/ouro')) {
  const c = loadGoldenCase(path);
  if (!hasTensor(c, 'inputs.input_ids')) continue;
  const config = ouroConfigFromJson(c.config, c.name);
  const model = OuroModel.bind(config, safetensorsWeights([c.file], 'weights.', c.name), createScalarRuntime());
  const V = config.vocabSize, T = config.totalUtSteps;
  const cols = tensorShape(c, 'inputs.input_ids').at(-1)!;
  const prompt = intTensor(c, 'inputs.input_ids').slice(0, cols); // row 0
  const argmax = (logits: Float32Array, row: number): number => {
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[row * V + v] > logits[row * V + best]) best = v;
    return best;
  };
  const greedy = (opts: OuroForwardOptions) => {
    const cache = model.newCache(prompt.length + newTokens);
    const pre = model.forward(prompt, { ...opts, cache });
    const tokens: number[] = [], logits: Float32Array[] = [], exits: number[] = [];
    let loops = pre.trace.reduce((n, t) => n + t.steps, 0), flops = pre.trace.reduce((n, t) => n + t.flops, 0);
    let next = argmax(pre.logits, prompt.length - 1);
    for (let s = 0; s < newTokens; s++) {
      tokens.push(next);
      const r = model.forward([next], { ...opts, cache });
      logits.push(r.logits); exits.push(r.exitSteps ? r.exitSteps[0] : T - 1);
      loops += r.trace[0].steps; flops += r.trace[0].flops;
      next = argmax(r.logits, 0);
    }
    return { tokens, logits, exits, loops, flops };
  };
  for (const tau of thresholds) {
    const upstream = greedy({ exitThreshold: tau });
    for (const missingKv of ['copy-forward', 'exclude'] as MissingKvPolicy[]) {
      const skip = greedy({ exitThreshold: tau, exitMode: 'skip', missingKv });
      const reference = model.forward([...prompt, ...skip.tokens], { exitThreshold: tau }); // upstream on the skip run's tokens
      let maxAbs = 0, argmaxAgree = 0, exitAgree = 0;
      skip.logits.forEach((l, s) => {
        const row = prompt.length + s;
        for (let v = 0; v < V; v++) maxAbs = Math.max(maxAbs, Math.abs(l[v] - reference.logits[row * V + v]));
        if (argmax(l, 0) === argmax(reference.logits, row)) argmaxAgree++;
        if (skip.exits[s] === reference.exitSteps![row]) exitAgree++;
      });
      const sameGreedy = skip.tokens.filter((t, i) => t === upstream.tokens[i]).length;
      const total = prompt.length + newTokens;
      const pct = (x: number): string => `${(100 * x).toFixed(0)}%`;
      console.log(`| ${c.name} | ${tau} | ${missingKv} | ${(skip.loops / total).toFixed(2)} | ${pct(1 - skip.flops / upstream.flops)} | ${maxAbs.toExponential(1)} | ${pct(argmaxAgree / newTokens)} | ${pct(exitAgree / newTokens)} | ${pct(sameGreedy / newTokens)} |`);
    }
  }
}
