/**
 * Golden-case runner for the huginn family: maps each procedure call (upstream function name and
 * arguments, spec/golden/FORMAT.md) onto the public API of src/models/huginn*.ts and returns every
 * expected.* tensor it produced. Everything is read from the case — config, arguments, recorded
 * initial states — and an unknown function or argument form is a failure, never a skip.
 *
 * Upstream draws initial states from torch's RNG; the cases record every draw
 * (`inputs.<run>.initial_states`, split by `initial_state_call_lengths`) and we replay them.
 */
import { PonderError } from '../errors.js';
import type { Runtime } from '../runtime/runtime.js';
import { safetensorsWeights } from '../models/weights.js';
import { injectedInitialStates, bindHuginn, roundToBf16, type ForwardTrace, type HuginnModel, type InitialStates } from '../models/huginn.js';
import { huginnFamily } from '../models/huginn-family.js';
import { configObject } from '../format/config.js';
import { createExitEvaluator, numStepsEvaluator, type ExitEvaluator } from '../depth/criteria.js';
import { forwardWithAdaptiveCompute, generateAdaptive, generateMinimal, generateSpeculative, type GenerateResult } from '../models/huginn-generate.js';
import type { HuginnCache } from '../models/huginn-cache.js';
import { floatTensor, hasTensor, intTensor, tensorShape, type GoldenCase } from './golden.js';
import type { CaseRunner, Produced } from './compare.js';

type Args = Record<string, unknown>;
/** the case's model with f32 activations, and (loaded on first use) the same weights with bf16 activations */
interface Models { bf16(): HuginnModel }
interface Step { function?: unknown; args?: unknown; expected_prefix?: unknown; expected?: unknown; models?: unknown }

function unsupported(c: GoldenCase, what: string): PonderError {
  return new PonderError('CONFORM_UNSUPPORTED', `${c.name}: ${what}`, { hint: 'the huginn runner knows forward, generate_minimal, generate_with_adaptive_compute, generate_speculative and forward_with_adaptive_compute' });
}

/** An argument that upstream's harness marks as "not passed (default …)" counts as absent. */
function arg(args: Args, name: string): unknown {
  const v = args[name];
  if (typeof v === 'string' && v.startsWith('not passed')) return undefined;
  return v;
}

function numArg(c: GoldenCase, args: Args, name: string, fallback: number): number {
  const v = arg(args, name);
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number') throw unsupported(c, `argument ${name}=${JSON.stringify(v)} is not a number`);
  return v;
}

function boolArg(c: GoldenCase, args: Args, name: string, fallback: boolean): boolean {
  const v = arg(args, name);
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw unsupported(c, `argument ${name}=${JSON.stringify(v)} is not a boolean`);
  return v;
}

/** A tensor reference: `inputs.x`, `expected.x`, optionally sliced `[:, :-k]` (drop the last k columns). */
function tensorRef(c: GoldenCase, ref: string): { data: number[] | Float32Array; shape: number[] } {
  const m = /^([\w.]+?)(?:\[\s*:\s*,\s*:\s*-(\d+)\s*\])?$/.exec(ref);
  if (!m || !hasTensor(c, m[1])) throw unsupported(c, `cannot resolve the tensor reference ${JSON.stringify(ref)}`);
  const name = m[1];
  const shape = [...tensorShape(c, name)];
  const dtype = c.file.tensors.get(name)!.dtype;
  let data: number[] | Float32Array = dtype === 'F32' || dtype === 'BF16' || dtype === 'F16' ? floatTensor(c, name) : intTensor(c, name);
  if (m[2] !== undefined) {
    const drop = Number(m[2]);
    if (shape.length !== 2 || drop > shape[1]) throw unsupported(c, `slice ${ref} needs a 2-d tensor with more than ${drop} columns`);
    const [rows, cols] = shape;
    const kept: number[] = [];
    for (let r = 0; r < rows; r++) for (let j = 0; j < cols - drop; j++) kept.push(Number(data[r * cols + j]));
    data = kept;
    shape[1] = cols - drop;
  }
  return { data, shape };
}

function idsArg(c: GoldenCase, args: Args): { ids: number[]; B: number; S: number } {
  const ref = arg(args, 'input_ids');
  if (typeof ref !== 'string') throw unsupported(c, 'input_ids is not a tensor reference');
  const { data, shape } = tensorRef(c, ref);
  if (shape.length !== 2) throw unsupported(c, `input_ids ${ref} is not [B, S]`);
  return { ids: Array.from(data, Number), B: shape[0], S: shape[1] };
}

/** `inputs.<run>.` for expected prefix `expected.<run>`, `inputs.` without a prefix. */
function inputsPrefix(prefix: string | null): string {
  return prefix ? `inputs.${prefix.slice('expected.'.length)}.` : 'inputs.';
}

/** The recorded initial states of a run, replayed in call order. */
function recordedStates(c: GoldenCase, prefix: string | null, B: number, E: number): InitialStates | undefined {
  const base = inputsPrefix(prefix);
  const name = [`${base}initial_states`, `${base}initial_state`].find((n) => hasTensor(c, n));
  if (!name) return undefined;
  const shape = tensorShape(c, name);
  if (shape.length !== 3 || shape[0] !== B || shape[2] !== E) throw unsupported(c, `${name} is [${shape.join(', ')}], [${B}, T, ${E}] expected`);
  const lengths = hasTensor(c, `${base}initial_state_call_lengths`) ? intTensor(c, `${base}initial_state_call_lengths`) : null;
  return injectedInitialStates(floatTensor(c, name), B, shape[1], E, lengths);
}

function noRecord(c: GoldenCase, prefix: string | null): PonderError {
  return unsupported(c, `${prefix ?? 'the call'} draws random initial states but the case records none (${inputsPrefix(prefix)}initial_states); torch's RNG cannot be reproduced`);
}

/**
 * upstream _prep_generate_args: max_new_tokens (capped by a max_length argument), else
 * max_length (argument, else generation_config.max_length, HF default 20) − prompt length.
 */
function maxNewTokens(c: GoldenCase, args: Args, promptLength: number): number {
  const explicit = arg(args, 'max_new_tokens');
  const lengthArg = arg(args, 'max_length');
  if (lengthArg !== undefined && typeof lengthArg !== 'number') throw unsupported(c, `max_length=${JSON.stringify(lengthArg)} is not a number`);
  if (typeof explicit === 'number') return typeof lengthArg === 'number' ? Math.min(explicit, lengthArg - promptLength) : explicit;
  if (explicit !== undefined && explicit !== null) throw unsupported(c, `max_new_tokens=${JSON.stringify(explicit)} is not a number`);
  const g = arg(args, 'generation_config');
  const fromConfig = typeof g === 'string' ? /max_length\s*=\s*(\d+)/.exec(g) : null;
  return (typeof lengthArg === 'number' ? lengthArg : fromConfig ? Number(fromConfig[1]) : 20) - promptLength;
}

function checkGreedy(c: GoldenCase, args: Args): void {
  const g = arg(args, 'generation_config');
  if (typeof g === 'string' && /do_sample\s*=\s*True/.test(g)) throw unsupported(c, 'sampling (do_sample=True) draws from torch\'s RNG and cannot be replayed');
}

// ---- forward ----

function runForward(c: GoldenCase, model: HuginnModel, step: Step, args: Args, out: Map<string, Produced>, models: Models): void {
  const { ids, B, S } = idsArg(c, args);
  const E = model.config.nEmbd;
  const rawSteps = arg(args, 'num_steps');
  const numSteps = rawSteps === undefined || rawSteps === null ? model.config.meanRecurrence : (rawSteps as number | [number, number]);
  const initScale = numArg(c, args, 'init_scale', 1);
  const prefix = typeof step.expected_prefix === 'string' ? step.expected_prefix : null;
  if (boolArg(c, args, 'use_cache', false) || (arg(args, 'past_key_values') ?? null) !== null) throw unsupported(c, 'forward with a cache is only reachable through the generate procedures');

  let inputStates: Float32Array | null = null;
  const given = arg(args, 'input_states');
  if (typeof given === 'string') inputStates = Float32Array.from(tensorRef(c, given).data as Float32Array);
  else if (initScale !== 0) {
    // upstream draws s₀ here; the case records that draw
    const source = recordedStates(c, prefix, B, E) ?? recordedStates(c, null, B, E);
    if (!source) throw noRecord(c, prefix);
    inputStates = source.next(B, S, E, 0, 0);
  }
  const trace: ForwardTrace = { preludeLayers: [], adapterOut: [], states: [] };
  const r = model.forward({ ids, B, S, numSteps, initScale, inputStates, trace, logits: 'all' });

  out.set('expected.embeds_scaled', trace.embedsScaled!);
  out.set('expected.prelude_layers', concat(trace.preludeLayers));
  const logitNames: string[] = [];
  if (prefix) {
    logitNames.push(`${prefix}.logits`);
    out.set(`${prefix}.latent_states`, r.latentStates);
    out.set(`${prefix}.states`, concat(trace.states));
    out.set(`${prefix}.adapter_out`, concat(trace.adapterOut));
    out.set(`${prefix}.coda_out`, trace.codaOut!);
  }
  if (typeof step.expected === 'string') logitNames.push(step.expected);
  // the same call under several upstream setups: f32 compute (bf16 weights widened exactly), or
  // `model.to(torch.bfloat16)`, which we reproduce with bf16-rounded activations
  const bf16Names: string[] = [];
  if (step.models && typeof step.models === 'object') {
    for (const [name, description] of Object.entries(step.models as Record<string, unknown>)) {
      if (typeof description === 'string' && /\.to\(torch\.bfloat16\)/.test(description)) bf16Names.push(name);
      else logitNames.push(name);
    }
  }
  if (logitNames.length === 0 && bf16Names.length === 0) logitNames.push('expected.logits');
  for (const n of logitNames) out.set(n, r.logits);
  if (bf16Names.length > 0) {
    const bf16States = inputStates ? Float32Array.from(inputStates) : null;
    if (bf16States) roundToBf16(bf16States, bf16States.length); // upstream casts the state with the model
    const rb = models.bf16().forward({ ids, B, S, numSteps, initScale, inputStates: bf16States, logits: 'all' });
    for (const n of bf16Names) out.set(n, rb.logits);
  }
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const total = parts.reduce((a, p) => a + p.length, 0);
  const outArr = new Float32Array(total);
  let o = 0;
  for (const p of parts) { outArr.set(p, o); o += p.length; }
  return outArr;
}

// ---- generation ----

interface GenerationSetup { ids: number[]; B: number; L: number; prefix: string | null; name: (x: string) => string; initialStates: InitialStates | undefined }

function generationSetup(c: GoldenCase, model: HuginnModel, step: Step, args: Args): GenerationSetup {
  checkGreedy(c, args);
  const { ids, B, S } = idsArg(c, args);
  const prefix = typeof step.expected_prefix === 'string' ? step.expected_prefix : null;
  return { ids, B, L: S, prefix, name: (x) => `${prefix ?? 'expected'}.${x}`, initialStates: recordedStates(c, prefix, B, model.config.nEmbd) };
}

function requireStates(c: GoldenCase, g: GenerationSetup): InitialStates {
  if (!g.initialStates) throw noRecord(c, g.prefix);
  return g.initialStates;
}

function putCommon(model: HuginnModel, g: GenerationSetup, r: GenerateResult, out: Map<string, Produced>): void {
  const { B } = g;
  const { vocabSize: V, nEmbd: E } = model.config;
  out.set(g.name('sequences'), r.sequences.flat());
  out.set(g.name('next_token_logits'), concat(r.nextTokenLogits));
  if (r.forwardCalls.length > 0) {
    out.set(g.name('forward_call_lengths'), r.forwardCalls.map((f) => f.length));
    out.set(g.name('forward_call_num_steps'), r.forwardCalls.map((f) => f.numSteps));
    if (r.forwardCalls.every((f) => f.logits)) out.set(g.name('forward_logits'), perRowConcat(r.forwardCalls.map((f) => ({ data: f.logits!, S: f.length })), B, V));
    if (r.forwardCalls.every((f) => f.inputStates)) out.set(g.name('forward_input_states'), perRowConcat(r.forwardCalls.map((f) => ({ data: f.inputStates!, S: f.length })), B, E));
  }
  putCache(model, g, r.cache, out);
}

/** [B, ΣS, D] from per-call [B, S, D] blocks */
function perRowConcat(blocks: readonly { data: Float32Array; S: number }[], B: number, D: number): Float32Array {
  const total = blocks.reduce((a, b) => a + b.S, 0);
  const outArr = new Float32Array(B * total * D);
  for (let b = 0; b < B; b++) {
    let t = 0;
    for (const blk of blocks) {
      outArr.set(blk.data.subarray(b * blk.S * D, (b + 1) * blk.S * D), (b * total + t) * D);
      t += blk.S;
    }
  }
  return outArr;
}

function putCache(model: HuginnModel, g: GenerationSetup, cache: HuginnCache, out: Map<string, Produced>): void {
  const { nKvHeads: Hkv, headDim: hd } = model.config; // cache_keys/values: [n_slots, B, H_kv, T, hd]
  const slots = cache.slotIds();
  const T = cache.seenTokens;
  const present: number[] = [];
  for (const s of slots) for (let t = 0; t < T; t++) present.push(cache.has(s, t) ? 1 : 0);
  out.set(g.name('cache_step_ids'), slots);
  out.set(g.name('cache_present'), present);
  const kvDim = Hkv * hd;
  const keys = new Float32Array(slots.length * g.B * Hkv * T * hd), values = new Float32Array(keys.length);
  slots.forEach((s, si) => {
    for (let t = 0; t < T; t++) {
      const e = cache.entry(s, t);
      if (!e) continue;
      for (let b = 0; b < g.B; b++) for (let h = 0; h < Hkv; h++) for (let d = 0; d < hd; d++) {
        const o = ((((si * g.B + b) * Hkv + h) * T) + t) * hd + d;
        keys[o] = e.k[b * kvDim + h * hd + d];
        values[o] = e.v[b * kvDim + h * hd + d];
      }
    }
  });
  out.set(g.name('cache_keys'), keys);
  out.set(g.name('cache_values'), values);
}

function runMinimal(c: GoldenCase, model: HuginnModel, step: Step, args: Args, out: Map<string, Produced>): void {
  const g = generationSetup(c, model, step, args);
  const r = generateMinimal(model, {
    inputIds: g.ids, B: g.B,
    maxNewTokens: maxNewTokens(c, args, g.L),
    numSteps: (arg(args, 'num_steps') as number | [number, number] | undefined) ?? model.config.meanRecurrence,
    initScale: numArg(c, args, 'init_scale', 1),
    continuousCompute: boolArg(c, args, 'continuous_compute', false),
    cacheLookupStrategy: (arg(args, 'cache_lookup_strategy') as string | undefined) ?? 'full',
    initialStates: requireStates(c, g),
    recordForwardLogits: true,
  });
  putCommon(model, g, r, out);
}

/** Parses the exit evaluator forms the cases use: get_adaptive_exit_evaluator(model, 'kl', 0.007) and NumStepsGenerator(steps_fn=lambda i: [..][i % n]). */
function parseEvaluator(c: GoldenCase, text: string, V: number): ExitEvaluator {
  let m = /^get_adaptive_exit_evaluator\(\s*model\s*,\s*['"]([^'"]+)['"]\s*,\s*(?:['"](auto)['"]|([-+0-9.eE]+))\s*\)$/.exec(text.trim());
  if (m) return createExitEvaluator(m[1], m[2] ? 'auto' : Number(m[3]), V);
  m = /^NumStepsGenerator\(\s*(?:steps_fn\s*=\s*)?lambda\s+(\w+)\s*:\s*(.+)\)$/.exec(text.trim());
  if (m) {
    const v = m[1], body = m[2].trim();
    if (/^\d+$/.test(body)) { const n = Number(body); return numStepsEvaluator(() => n); }
    const lm = new RegExp(`^\\[([\\d\\s,]+)\\]\\[\\s*${v}\\s*%\\s*(\\d+)\\s*\\]$`).exec(body);
    if (lm) {
      const list = lm[1].split(',').map((s) => s.trim()).filter((s) => s.length > 0).map(Number);
      const mod = Number(lm[2]);
      return numStepsEvaluator((i) => { const x = list[i % mod]; if (x === undefined) throw unsupported(c, `steps_fn index ${i % mod} outside ${JSON.stringify(list)}`); return x; });
    }
  }
  throw unsupported(c, `cannot read the exit evaluator ${JSON.stringify(text)}`);
}

function runAdaptive(c: GoldenCase, model: HuginnModel, step: Step, args: Args, out: Map<string, Produced>): void {
  const g = generationSetup(c, model, step, args);
  const V = model.config.vocabSize;
  const evText = arg(args, 'exit_evaluator');
  let evaluator: ExitEvaluator;
  if (typeof evText === 'string') evaluator = parseEvaluator(c, evText, V);
  else {
    const criterion = (arg(args, 'criterion') as string | undefined) ?? 'none';
    const thr = arg(args, 'exit_threshold');
    // upstream: "auto" or float(exit_threshold) (int() for argmax-stability), so numeric strings count too
    const threshold = thr === undefined || thr === null || thr === 'auto' ? 'auto' : typeof thr === 'string' && thr.trim() !== '' && Number.isFinite(Number(thr)) ? Number(thr) : thr;
    if (threshold !== 'auto' && typeof threshold !== 'number') throw unsupported(c, `exit_threshold=${JSON.stringify(thr)} is not a number or "auto"`);
    evaluator = createExitEvaluator(criterion, threshold, V);
  }
  const maxSteps = numArg(c, args, 'num_steps', model.config.meanRecurrence);
  const r = generateAdaptive(model, {
    inputIds: g.ids, B: g.B,
    maxNewTokens: maxNewTokens(c, args, g.L),
    numSteps: maxSteps,
    initScale: numArg(c, args, 'init_scale', 1),
    continuousCompute: boolArg(c, args, 'continuous_compute', false),
    cacheLookupStrategy: (arg(args, 'cache_lookup_strategy') as string | undefined) ?? 'full',
    minSteps: numArg(c, args, 'min_steps', 0),
    checkCriterionEveryNSteps: numArg(c, args, 'check_criterion_every_n_steps', 1),
    doNotExitInPrefill: boolArg(c, args, 'do_not_exit_in_prefill', false),
    evaluator,
    initialStates: requireStates(c, g),
  });
  putCommon(model, g, r, out);
  // steps [N] (batch 1) / [N, B]; exit values [N, max_steps] / [N, B, max_steps], NaN where no check ran
  out.set(g.name('steps_per_token'), r.trace.flatMap((t) => t.steps));
  const values = new Float32Array(r.trace.length * g.B * maxSteps).fill(NaN);
  r.trace.forEach((t, n) => {
    for (const chk of t.checks) for (let b = 0; b < g.B; b++) values[(n * g.B + b) * maxSteps + chk.iteration - 1] = chk.values[b];
  });
  out.set(g.name('exit_values'), values);
}

function runSpeculative(c: GoldenCase, model: HuginnModel, step: Step, args: Args, out: Map<string, Produced>): void {
  const g = generationSetup(c, model, step, args);
  const r = generateSpeculative(model, {
    inputIds: g.ids, B: g.B,
    maxNewTokens: maxNewTokens(c, args, g.L),
    numSteps: numArg(c, args, 'num_steps', 32),
    draftSteps: numArg(c, args, 'draft_steps', 32),
    lookaheadForDraft: numArg(c, args, 'lookahead_for_draft', 8),
    verificationThreshold: numArg(c, args, 'verification_threshold', 1),
    continuousCompute: boolArg(c, args, 'continuous_compute', false),
    initScale: numArg(c, args, 'init_scale', 1),
    cacheLookupStrategy: (arg(args, 'cache_lookup_strategy') as string | undefined) ?? 'full',
    initialStates: requireStates(c, g),
    recordForwardLogits: true,
  });
  putCommon(model, g, r, out);
}

function runAdaptiveForward(c: GoldenCase, model: HuginnModel, step: Step, args: Args, out: Map<string, Produced>): void {
  const { ids, B } = idsArg(c, args);
  if (B !== 1) throw unsupported(c, 'forward_with_adaptive_compute runs batch 1 (upstream asserts it)');
  const prefix = typeof step.expected_prefix === 'string' ? step.expected_prefix : 'expected';
  const evText = arg(args, 'exit_evaluator');
  if (typeof evText !== 'string') throw unsupported(c, 'forward_with_adaptive_compute needs an exit_evaluator');
  const initScale = numArg(c, args, 'init_scale', 1);
  const states = recordedStates(c, prefix === 'expected' ? null : prefix, 1, model.config.nEmbd);
  if (!states && initScale !== 0) throw noRecord(c, prefix);
  const r = forwardWithAdaptiveCompute(model, { inputIds: ids, evaluator: parseEvaluator(c, evText, model.config.vocabSize), initScale, initialStates: states });
  out.set(`${prefix}.logits`, r.logits);
  out.set(`${prefix}.compute_steps`, r.computeSteps);
}

type StepRunner = (c: GoldenCase, model: HuginnModel, step: Step, args: Args, out: Map<string, Produced>, models: Models) => void;
const RUNNERS: [RegExp, StepRunner][] = [
  [/^RavenForCausalLM\.forward$/, runForward],
  [/generate_minimal$/, runMinimal],
  [/generate_with_adaptive_compute$/, runAdaptive],
  [/generate_speculative$/, runSpeculative],
  [/^RavenForCausalLM\.forward_with_adaptive_compute$/, runAdaptiveForward],
];

export const runCase: CaseRunner = async (c: GoldenCase, runtime: Runtime) => {
  const config = huginnFamily.parseConfig(configObject(c.config, `${c.name}.json`));
  const weights = safetensorsWeights([c.file], 'weights.', c.name);
  const model = huginnFamily.load(config, weights, runtime);
  let bf16Model: HuginnModel | null = null;
  const models: Models = { bf16: () => (bf16Model ??= bindHuginn(config, weights, runtime, { activations: 'bf16' })) };
  const out = new Map<string, Produced>();
  for (const raw of c.procedure) {
    const step = raw as Step;
    const fn = typeof step.function === 'string' ? step.function.trim() : '';
    const runner = RUNNERS.find(([re]) => re.test(fn));
    if (!runner) throw unsupported(c, `unknown procedure function ${JSON.stringify(step.function)}`);
    const args = (step.args && typeof step.args === 'object' ? step.args : {}) as Args;
    runner[1](c, model, step, args, out, models);
  }
  return out;
};
