/**
 * The adaptive depth policies through the public API only — loadModel, Model.forward,
 * Model.generate, the policy helpers; nothing from src/models — on every golden case that records
 * per-token depths, compared with the golden depths and tensors directly:
 *   Huginn  generate_with_adaptive_compute (every criterion, min_steps / every-n / no exit in
 *           prefill, NumStepsGenerator as a depth function, every KV lookup): ids, steps per token,
 *           criterion values per step, the prefill's next-token logits; the recorded torch draws are
 *           replayed through the `initialStates` option
 *   Ouro    the exit gate's threshold read-out (select mode, = upstream) and the config's default:
 *           exit steps per token, last-position logits; greedy decodes: ids and exit steps per token
 *   MoR     the routers (default = upstream): depth per token, last-position logits; greedy
 *           decodes: ids, prefill and step depths
 * The golden files hold the weights under `weights.`; they are handed to loadModel as a plain
 * model.safetensors (reading the case files is the only use of src/ besides the public entry).
 * Two recorded runs have no public-API counterpart and are named below.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { loadModel, depthFunction, exit, writeSafetensors, type DepthPolicy, type Model, type RunTrace, type Runtime } from '../src/index.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { floatTensor, hasTensor, intTensor, parseGoldenCase, rawTensor, tensorShape, toleranceFor, type GoldenCase } from '../src/conform/golden.js';

/** Runs recorded in golden cases that the public API has no way to ask for (no skip: each is named and counted). */
const NOT_IN_THE_API: Record<string, string> = {
  'huginn/adaptive_exits expected.forward_adaptive_kl': 'forward_with_adaptive_compute: a token-by-token adaptive prefill',
  'huginn/continuous_cot expected.adaptive_continuous_kl': 'continuous_compute: continuous chain-of-thought',
};

function goldenCase(family: string, name: string): GoldenCase {
  const base = `spec/golden/${family}/${name}`;
  return parseGoldenCase(`${family}/${name}`, readFileSync(`${base}.json`, 'utf8'), new Uint8Array(readFileSync(`${base}.safetensors`)));
}

/** The case's `weights.*` as a model.safetensors, loaded through the public loadModel. */
async function loadCase(c: GoldenCase, runtime: Runtime): Promise<Model> {
  const tensors = [...c.file.tensors.values()].filter((t) => t.name.startsWith('weights.'))
    .map((t) => ({ name: t.name.slice('weights.'.length), dtype: t.dtype, shape: [...t.shape], data: rawTensor(c, t.name) }));
  return loadModel({ config: c.config, files: { 'model.safetensors': writeSafetensors(tensors) }, label: c.name }, { runtime });
}

/** Rows of an int tensor [B, n] (a [n] tensor is one row). */
function intRows(c: GoldenCase, name: string): number[][] {
  const shape = tensorShape(c, name), flat = intTensor(c, name);
  const n = shape[shape.length - 1], rows = flat.length / n;
  return Array.from({ length: rows }, (_, b) => flat.slice(b * n, (b + 1) * n));
}

/** Float values within the case's tolerance for `name` (NaN only where NaN is expected). */
function assertClose(c: GoldenCase, name: string, actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  const tol = toleranceFor(c, name) ?? { atol: 1e-5, rtol: 1e-5 };
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(e)) { assert.ok(Number.isNaN(a), `${what}[${i}]: ${a}, expected no value`); continue; }
    assert.ok(Math.abs(a - e) <= tol.atol + tol.rtol * Math.abs(e), `${what}[${i}]: ${a} vs ${e} (atol ${tol.atol}, rtol ${tol.rtol})`);
  }
}

/** The last position's row of a [.., S, V] logits tensor, for batch row b. */
function lastRow(values: Float32Array, b: number, S: number, V: number): Float32Array {
  return values.subarray((b * S + S - 1) * V, (b * S + S) * V);
}

const prefillOf = (t: RunTrace) => t.tokens.filter((x) => x.phase === 'prefill');
const decodeOf = (t: RunTrace) => t.tokens.filter((x) => x.phase === 'decode');

// ---------------------------------------------------------------------------------------------

interface Step { function?: string; args?: Record<string, unknown>; expected_prefix?: string }

/** An upstream generate_with_adaptive_compute call as a public depth policy; null when the API cannot express it. */
function huginnPolicy(args: Record<string, unknown>, promptLength: number): DepthPolicy | null {
  const maxSteps = args.num_steps as number;
  const evaluator = args.exit_evaluator as string | undefined;
  if (evaluator !== undefined) {
    // NumStepsGenerator(steps_fn=lambda i: [..][i % n]): call i stops after steps_fn(i) steps
    const m = /^NumStepsGenerator\(steps_fn=lambda i: \[([\d, ]+)\]\[i % (\d+)\]\)$/.exec(evaluator);
    assert.ok(m, `an exit evaluator this test knows: ${evaluator}`);
    const list = m[1].split(',').map(Number), mod = Number(m[2]);
    return depthFunction((step, s) => (step >= list[(s.position - (promptLength - 1)) % mod] ? 'stop' : 'continue'), { maxSteps, name: 'num-steps-generator' });
  }
  const threshold = args.exit_threshold === 'auto' ? 'auto' : Number(args.exit_threshold);
  return exit(args.criterion as string, threshold, {
    maxSteps, minSteps: args.min_steps as number | undefined, checkEvery: args.check_criterion_every_n_steps as number | undefined,
    ...(args.do_not_exit_in_prefill === true ? { exitInPrefill: false } : {}),
  });
}

test('Huginn: the adaptive policies through the public API give upstream\'s ids, steps per token, criterion values and prefill logits', async () => {
  const runtime = createScalarRuntime();
  let runs = 0;
  const skipped: string[] = [];
  for (const name of readdirSync('spec/golden/huginn').filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5))) {
    const c = goldenCase('huginn', name);
    const model = await loadCase(c, runtime);
    for (const step of c.procedure as Step[]) {
      if (!/adaptive_compute$/.test(step.function ?? '')) continue;
      const prefix = step.expected_prefix!, args = step.args!;
      const where = `huginn/${name} ${prefix}`;
      if (args.continuous_compute === true || /forward_with_adaptive_compute$/.test(step.function!)) { skipped.push(where); continue; }
      const prompt = intRows(c, 'inputs.input_ids')[0];
      const policy = huginnPolicy(args, prompt.length);
      assert.ok(policy, where);
      const run = prefix.slice('expected.'.length);
      const states = floatTensor(c, `inputs.${run}.initial_states`); // every draw of the recorded run, [1, positions, E]
      const steps = intTensor(c, `${prefix}.steps_per_token`); // one per call: the prefill, then each fed token
      const sequence = intRows(c, `${prefix}.sequences`)[0];
      // the API feeds every token it generates, so the recorded calls feed all but the last generated token
      const r = await model.generate(prompt, { maxNewTokens: steps.length - 1, policy, stopIds: [], kvStrategy: args.cache_lookup_strategy as string, initialStates: states }).result();
      assert.deepEqual(r.generatedIds, sequence.slice(prompt.length, prompt.length + steps.length - 1), `${where}: ids`);
      const calls = [prefillOf(r.trace).at(-1)!, ...decodeOf(r.trace)];
      assert.deepEqual(calls.map((t) => t.steps), steps, `${where}: steps per token`);
      if (hasTensor(c, `${prefix}.exit_values`) && policy.kind === 'exit') {
        const maxSteps = tensorShape(c, `${prefix}.exit_values`).at(-1)!;
        const ours = calls.flatMap((t) => Array.from({ length: maxSteps }, (_, s) => t.criterionValues[s] ?? NaN));
        assertClose(c, `${prefix}.exit_values`, ours, floatTensor(c, `${prefix}.exit_values`), `${where}: criterion values`);
      }
      const E = tensorShape(c, `inputs.${run}.initial_states`).at(-1)!;
      const prefill = model.forward(prompt, { policy, kvStrategy: args.cache_lookup_strategy as string, initialStates: states.slice(0, prompt.length * E) });
      assertClose(c, `${prefix}.next_token_logits`, prefill.logits, floatTensor(c, `${prefix}.next_token_logits`).subarray(0, model.vocabSize), `${where}: prefill logits`);
      runs++;
    }
  }
  assert.deepEqual(skipped.sort(), Object.keys(NOT_IN_THE_API).sort(), 'the only recorded runs the API cannot ask for');
  assert.ok(runs >= 15, `${runs} adaptive runs`);
});

// ---------------------------------------------------------------------------------------------

/** The loop an Ouro token was read out at in select mode: the first whose exit CDF reaches the threshold, else the last. */
function readoutLoop(t: { criterionValues: (number | null)[]; threshold?: number }, T: number): number {
  const i = t.criterionValues.findIndex((v) => v !== null && v >= Math.fround(t.threshold!));
  return i === -1 ? T - 1 : i;
}

interface OuroStep { call: string; input?: string; kwargs?: Record<string, unknown>; outputs?: Record<string, string>; new_tokens?: number }

test('Ouro: the gate\'s threshold read-out and the default through the public API give upstream\'s exit steps, logits and greedy decodes', async () => {
  const runtime = createScalarRuntime();
  let checked = 0;
  for (const name of readdirSync('spec/golden/ouro').filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5))) {
    const c = goldenCase('ouro', name);
    const model = await loadCase(c, runtime);
    const T = model.defaultDepth;
    const steps = c.procedure as OuroStep[];
    for (let si = 0; si < steps.length; si++) {
      const step = steps[si], kw = step.kwargs ?? {}, outputs = step.outputs ?? {};
      if (kw.exit_at_step !== undefined) continue; // fixed depths, no per-token decision
      const threshold = kw.exit_threshold as number | undefined;
      const policy: DepthPolicy = threshold === undefined ? { kind: 'default' } : exit('gate', threshold, { mode: 'select' });
      const where = `ouro/${name} step ${si} (${threshold === undefined ? 'default' : `exit(gate, ${threshold}, select)`})`;
      if (step.call === 'forward' && step.input === 'inputs.input_ids') {
        const exitSteps = outputs.exit_steps ?? (si === 0 && hasTensor(c, 'expected.default_exit_steps') ? 'expected.default_exit_steps' : undefined);
        if (!exitSteps) continue; // a read-out without exit steps (the weighted or the last loop)
        const rows = intRows(c, 'inputs.input_ids'), expected = intRows(c, exitSteps);
        const logits = floatTensor(c, outputs.logits), V = model.vocabSize, S = rows[0].length;
        rows.forEach((ids, b) => {
          const r = model.forward(ids, { policy });
          assert.deepEqual(r.trace.tokens.map((t) => readoutLoop(t, T)), expected[b], `${where}, row ${b}: exit steps`);
          assertClose(c, outputs.logits, r.logits, lastRow(logits, b, S, V), `${where}, row ${b}: logits`);
        });
        checked++;
      } else if (step.call === 'greedy_decode') {
        const prefillKw = steps[si - 1].kwargs ?? {};
        const t = prefillKw.exit_threshold as number | undefined;
        const p: DepthPolicy = t === undefined ? { kind: 'default' } : exit('gate', t, { mode: 'select' });
        const prompt = intRows(c, 'inputs.input_ids')[0];
        const r = await model.generate(prompt, { maxNewTokens: step.new_tokens!, policy: p, stopIds: [] }).result();
        assert.deepEqual(r.generatedIds, intRows(c, outputs.generated_ids)[0], `${where}: ids`);
        assert.deepEqual(prefillOf(r.trace).map((x) => readoutLoop(x, T)), intRows(c, 'expected.decode.prefill_exit_steps')[0], `${where}: prefill exit steps`);
        assert.deepEqual(decodeOf(r.trace).map((x) => readoutLoop(x, T)), intTensor(c, 'expected.decode.step_exit_steps'), `${where}: exit step of each fed token`);
        checked++;
      }
    }
  }
  assert.ok(checked >= 10, `${checked} read-outs compared`);
});

// ---------------------------------------------------------------------------------------------

test('MoR: the routers through the public API give upstream\'s depth per token, logits and greedy decodes', async () => {
  const runtime = createScalarRuntime();
  let checked = 0;
  for (const name of readdirSync('spec/golden/mor').filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5))) {
    const c = goldenCase('mor', name);
    const routed = hasTensor(c, 'expected.depth') || hasTensor(c, 'expected.decode.step_depth');
    if (!routed) continue; // baselines: every token runs the full depth
    const model = await loadCase(c, runtime);
    const rows = intRows(c, 'inputs.input_ids');
    if (hasTensor(c, 'expected.depth')) {
      const depth = intRows(c, 'expected.depth'), logits = floatTensor(c, 'expected.logits'), S = rows[0].length;
      rows.forEach((ids, b) => {
        const r = model.forward(ids);
        assert.deepEqual(r.trace.tokens.map((t) => t.steps), depth[b], `mor/${name} row ${b}: depth per token`);
        assertClose(c, 'expected.logits', r.logits, lastRow(logits, b, S, model.vocabSize), `mor/${name} row ${b}: logits`);
      });
      checked++;
    }
    if (hasTensor(c, 'expected.decode.step_depth')) {
      const procedure = c.procedure as { step: string; prompt_len?: number | null; new_tokens?: number }[];
      const prefill = procedure.find((s) => s.step === 'prefill')!, decode = procedure.find((s) => s.step === 'greedy_decode')!;
      const prompt = rows[0].slice(0, prefill.prompt_len ?? rows[0].length);
      const r = await model.generate(prompt, { maxNewTokens: decode.new_tokens!, stopIds: [] }).result();
      assert.deepEqual(r.generatedIds, intRows(c, 'expected.decode.generated_ids')[0], `mor/${name}: ids`);
      if (hasTensor(c, 'expected.decode.prefill.depth')) assert.deepEqual(prefillOf(r.trace).map((t) => t.steps), intRows(c, 'expected.decode.prefill.depth')[0], `mor/${name}: prefill depth`);
      assert.deepEqual(decodeOf(r.trace).map((t) => t.steps), intTensor(c, 'expected.decode.step_depth'), `mor/${name}: depth of each fed token`);
      checked++;
    }
  }
  assert.ok(checked >= 8, `${checked} routed runs compared`);
});
