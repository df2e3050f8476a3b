/**
 * The trained models in models/*-sotu and models/*-hops against the torch code that trained them
 * (scripts/train/export.py): for a few fixed id sequences, ponder's public API (loadModel from
 * ponder/node, Model.forward) reproduces the last-position logits torch computed from the same bf16
 * weights at every fixed depth, under the default policy and under the family's adaptive read-out,
 * with the depths (MoR routers) and exit CDFs (Ouro gate) per position where torch recorded them.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { loadModel, parsePolicy, parseSafetensors, createScalarRuntime, type Model } from '../src/node/index.js';
import { readTensor } from '../src/format/safetensors.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import type { Runtime } from '../src/runtime/runtime.js';

const ATOL = 1e-4;
const RTOL = 1e-4;

const wasm = await createWasmRuntime();
after(() => wasm.dispose());

interface Fixture {
  model: string;
  policies: string[];
  sequences: number;
  tensor(name: string): Float32Array | Int32Array | null;
}

function readFixture(path: string): Fixture {
  const file = parseSafetensors(new Uint8Array(readFileSync(path)));
  const meta = file.metadata ?? {};
  const tensor = (name: string): Float32Array | Int32Array | null => (file.tensors.has(name) ? readTensor(file, name) as Float32Array | Int32Array : null);
  return { model: meta.model, policies: JSON.parse(meta.policies), sequences: Number(meta.sequences), tensor };
}

/** indices where |a − e| > atol + rtol·|e| (and the max abs error) */
function closeness(got: ArrayLike<number>, want: ArrayLike<number>): { bad: number; maxAbs: number } {
  let bad = 0, maxAbs = 0;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    maxAbs = Math.max(maxAbs, err);
    if (!(err <= ATOL + RTOL * Math.abs(want[i]))) bad++;
  }
  return { bad, maxAbs };
}

function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

async function checkModel(fx: Fixture, runtime: Runtime): Promise<void> {
  const model: Model = await loadModel(fx.model, { runtime, tokenizer: false });
  for (let s = 0; s < fx.sequences; s++) {
    const ids = [...(fx.tensor(`ids.${s}`) as Int32Array)];
    fx.policies.forEach((text, p) => {
      const where = `${fx.model} sequence ${s} (${ids.length} ids) under ${text}`;
      const { logits, trace } = model.forward(ids, { policy: parsePolicy(text) });
      const want = fx.tensor(`logits.${s}.${p}`) as Float32Array;
      const { bad, maxAbs } = closeness(logits, want);
      assert.equal(bad, 0, `${where}: ${bad} logits differ (max abs error ${maxAbs.toExponential(2)})`);
      assert.equal(argmax(logits), argmax(want), `${where}: argmax`);
      const steps = fx.tensor(`steps.${s}.${p}`);
      if (steps) assert.deepEqual(trace.tokens.map((t) => t.steps), [...steps], `${where}: depth per position`);
      const cdf = fx.tensor(`cdf.${s}.${p}`) as Float32Array | null;
      if (cdf) {
        const T = cdf.length / ids.length;
        const got = trace.tokens.flatMap((t) => t.criterionValues.slice(0, T).map((v) => v ?? NaN));
        const c = closeness(got, cdf);
        assert.equal(c.bad, 0, `${where}: exit CDF per position (max abs error ${c.maxAbs.toExponential(2)})`);
      }
    });
  }
}

for (const name of ['huginn-sotu', 'mor-sotu', 'ouro-sotu', 'huginn-hops', 'ouro-hops']) {
  const path = `test/fixtures/trained/${name}.safetensors`;
  test(`${name}: a fixture of torch logits exists for the shipped model`, () => {
    assert.ok(existsSync(path), `${path} is missing (scripts/train/export.py writes it)`);
    assert.ok(existsSync(`models/${name}/model.safetensors`));
  });
  if (!existsSync(path)) continue;
  const fx = readFixture(path);
  test(`${name}: ponder reproduces torch's logits at every fixed depth and policy (scalar kernels)`, () => checkModel(fx, createScalarRuntime()));
  test(`${name}: ponder reproduces torch's logits at every fixed depth and policy (wasm kernels)`, () => checkModel(fx, wasm));
}
