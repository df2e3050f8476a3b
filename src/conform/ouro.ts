/**
 * Ouro golden cases (golden/FORMAT.md, research/ouro.md §12): maps each procedure step
 * `{call: forward | prefill | greedy_decode, input, kwargs, outputs}` onto OuroModel's public API
 * and returns every expected.* tensor it produced.
 *
 * Outputs a step may name: for forward/prefill every key of `forwardTensors` plus `cache`; for
 * greedy_decode every key of `decodeTensors` plus `cache`. Besides those, the cases hold tensors
 * upstream captured with hooks during a call; they come from the same call:
 *  - the procedure's first call (the "default call"): `expected.<name>` for DEFAULT_CALL_HOOKS, and
 *    `expected.default_exit_steps` when it used the threshold rule;
 *  - a forward/prefill whose logits go to `<base>logits`: `<base><name>` for everything it
 *    produced (e.g. `expected.decode.prefill_gate_logits`, `expected.weighted.step_logits`);
 *  - a greedy_decode whose ids go to `<base>generated_ids`: `<base>step_*`.
 * Explicitly named outputs always win over these derived names.
 * A batch is run row by row (no padding, so rows are independent).
 */
import { PonderError } from '../errors.js';
import type { OuroCache, OuroForwardOptions, OuroForwardResult, OuroModel } from '../models/ouro.js';
import { ouroFamily } from '../models/ouro-family.js';
import { configObject } from '../format/config.js';
import { safetensorsWeights } from '../models/weights.js';
import type { Runtime } from '../runtime/runtime.js';
import type { CaseRunner, Produced } from './compare.js';
import { hasTensor, intTensor, tensorShape, type GoldenCase } from './golden.js';

interface Step {
  call: string;
  input?: string;
  kwargs?: Record<string, unknown>;
  outputs?: Record<string, string>;
  new_tokens?: number;
}

const KNOWN_KWARGS = new Set(['use_cache', 'exit_at_step', 'exit_threshold', 'use_weighted_exit', 'logits_to_keep']);

export const runCase: CaseRunner = async (c: GoldenCase, runtime: Runtime) => {
  const config = ouroFamily.parseConfig(configObject(c.config, `${c.name}.json config`));
  const model = ouroFamily.load(config, safetensorsWeights([c.file], 'weights.', c.name), runtime);
  const { totalUtSteps: T, numLayers: L, headDim: hd, numKvHeads: kvHeads } = config;
  const steps = c.procedure as Step[];

  const produced = new Map<string, Produced>();
  const sliced = new Map<string, Map<number, Float32Array | number[]>>(); // name[i] outputs, stacked at the end
  const tokenRows = new Map<string, number[][]>(); // id tensors this run produced, by name
  let caches: OuroCache[] | null = null;
  let lastLogits: Float32Array[] | null = null; // per row, of the previous call: greedy_decode continues from its last position

  const put = (name: string, value: Float32Array | number[], explicit = true): void => {
    const m = /^(.*)\[(\d+)\]$/.exec(name);
    if (m) {
      if (!sliced.has(m[1])) sliced.set(m[1], new Map());
      sliced.get(m[1])!.set(Number(m[2]), value);
    } else if (explicit || !produced.has(name)) produced.set(name, value);
  };

  const readIds = (expr: string): number[][] => {
    const cat = /^cat\((.*)\)$/.exec(expr.trim());
    if (cat) {
      const parts = cat[1].split(',').map((s) => readIds(s));
      return parts[0].map((_, b) => parts.flatMap((p) => p[b]));
    }
    const name = expr.trim();
    if (tokenRows.has(name)) return tokenRows.get(name)!;
    if (!hasTensor(c, name)) throw new PonderError('CONFORM_PROCEDURE', `${c.name}: input ${name} is neither a case tensor nor produced by an earlier step`, { hint: 'see golden/FORMAT.md' });
    const shape = tensorShape(c, name), flat = intTensor(c, name);
    const rows = shape.length === 1 ? 1 : shape[0], cols = flat.length / rows;
    return Array.from({ length: rows }, (_, b) => flat.slice(b * cols, (b + 1) * cols));
  };

  // Tokens each row's cache must hold: the longest use_cache call plus every later decode step.
  const decodeTokens = steps.reduce((n, s) => n + (s.call === 'greedy_decode' ? (s.new_tokens ?? 0) : 0), 0);

  for (let si = 0; si < steps.length; si++) {
    const step = steps[si];
    const kwargs = step.kwargs ?? {};
    for (const key of Object.keys(kwargs)) if (!KNOWN_KWARGS.has(key)) throw new PonderError('CONFORM_PROCEDURE', `${c.name}: step ${si} has unknown kwarg ${key}`, { field: key, hint: 'the ouro runner knows ' + [...KNOWN_KWARGS].join(', ') });
    const options: OuroForwardOptions = {
      exitAtStep: kwargs.exit_at_step as number | null | undefined,
      exitThreshold: kwargs.exit_threshold as number | null | undefined,
      useWeightedExit: Boolean(kwargs.use_weighted_exit),
      logitsToKeep: (kwargs.logits_to_keep as number | undefined) ?? 0,
      record: true, // layer outputs and pre-norm states, which the cases hook
      loopLogits: true,
    };
    const outputs = step.outputs ?? {};
    const useCache = kwargs.use_cache !== false; // config.use_cache = True when absent

    if (step.call === 'forward' || step.call === 'prefill') {
      if (!step.input) throw new PonderError('CONFORM_PROCEDURE', `${c.name}: step ${si} (${step.call}) has no input`, { hint: 'see golden/FORMAT.md' });
      const rows = readIds(step.input);
      // No past_key_values is passed: upstream builds a fresh cache (use_cache) or none.
      if (useCache) caches = rows.map((r) => model.newCache(r.length + decodeTokens));
      const results = rows.map((r, b) => model.forward(r, { ...options, cache: useCache ? caches![b] : null }));
      const tensors = forwardTensors(results, model);
      for (const [what, name] of Object.entries(outputs)) {
        if (what === 'cache') putCache(name, caches ?? missing(c, 'cache', si), T * L, kvHeads, hd, put);
        else put(name, produce(c, si, tensors, what));
      }
      // Hooked tensors of the same call: `<base>exit_steps`, `<base>gate_logits`, … beside `<base>logits`.
      const base = outputs.logits?.endsWith('logits') && !/\[\d+\]$/.test(outputs.logits) ? outputs.logits.slice(0, -'logits'.length) : null;
      if (base !== null) for (const [what, make] of Object.entries(tensors)) { const v = make(); if (v) put(base + what, v, false); }
      if (si === 0) {
        for (const what of DEFAULT_CALL_HOOKS) { const v = tensors[what](); if (v) put('expected.' + what, v, false); }
        if (results[0].readout.kind === 'threshold') put('expected.default_exit_steps', tensors.exit_steps()!, false);
      }
      lastLogits = results.map((r) => r.logits);
    } else if (step.call === 'greedy_decode') {
      if (!caches) throw new PonderError('CONFORM_PROCEDURE', `${c.name}: greedy_decode at step ${si} has no cache from an earlier prefill`, { hint: 'a prefill with use_cache must come first' });
      const prev = lastLogits;
      if (!prev) throw new PonderError('CONFORM_PROCEDURE', `${c.name}: greedy_decode has no previous logits`, { hint: 'a prefill must come first' });
      const n = step.new_tokens ?? 0;
      const V = config.vocabSize;
      const generated: number[][] = prev.map(() => []);
      const stepResults: OuroForwardResult[][] = []; // [step][row]
      let next = prev.map((logits) => argmaxLast(logits, V));
      for (let s = 0; s < n; s++) {
        next.forEach((id, b) => generated[b].push(id));
        const row = next.map((id, b) => model.forward([id], { ...options, cache: caches![b] }));
        stepResults.push(row);
        next = row.map((r) => argmaxLast(r.logits, V));
      }
      const tensors = decodeTensors(generated, stepResults, model);
      for (const [what, name] of Object.entries(outputs)) {
        if (what === 'cache') putCache(name, caches, T * L, kvHeads, hd, put);
        else {
          if (what === 'generated_ids') tokenRows.set(name, generated);
          put(name, produce(c, si, tensors, what));
        }
      }
      // Hooked per-step tensors beside `<base>generated_ids`.
      const base = outputs.generated_ids?.endsWith('generated_ids') ? outputs.generated_ids.slice(0, -'generated_ids'.length) : null;
      if (base !== null) for (const [what, make] of Object.entries(tensors)) { const v = make(); if (v) put(base + what, v, false); }
      if (stepResults.length > 0) lastLogits = stepResults[stepResults.length - 1].map((r) => r.logits);
    } else {
      throw new PonderError('CONFORM_PROCEDURE', `${c.name}: unknown call ${JSON.stringify(step.call)} at step ${si}`, { hint: 'the ouro runner knows forward, prefill and greedy_decode' });
    }
  }

  for (const [name, parts] of sliced) {
    const ordered: (Float32Array | number[])[] = [];
    for (let i = 0; i < parts.size; i++) {
      if (!parts.has(i)) throw new PonderError('CONFORM_PROCEDURE', `${c.name}: ${name}[${i}] was never produced`, { hint: 'indexed outputs must cover 0..n-1' });
      ordered.push(parts.get(i)!);
    }
    produced.set(name, stackRows(ordered));
  }
  return produced;
};

function missing(c: GoldenCase, what: string, si: number): never {
  throw new PonderError('CONFORM_PROCEDURE', `${c.name}: step ${si} asks for ${what}, which this call does not produce`, { hint: 'check the call\'s kwargs' });
}

function argmaxLast(logits: Float32Array, V: number): number {
  const o = logits.length - V;
  let best = 0;
  for (let v = 1; v < V; v++) if (logits[o + v] > logits[o + best]) best = v;
  return best;
}

/** Concatenates flat arrays (row b of a [B, …] tensor, or slice i of a stacked one). */
function stackRows(parts: ArrayLike<number>[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p as ArrayLike<number>, o); o += p.length; }
  return out;
}

/** perRow[b][t] (each [S, …]) → [T, B, S, …]. */
function loopMajor(perRow: Float32Array[][]): Float32Array {
  const T = perRow[0].length;
  return stackRows(Array.from({ length: T }, (_, t) => stackRows(perRow.map((r) => r[t]))));
}

/** cos/sin rows for the positions as upstream's rotary_emb returns them: cat(freqs, freqs) → [S, hd]. */
function ropeRows(model: OuroModel, positions: Int32Array): { cos: Float32Array; sin: Float32Array } {
  const hd = model.config.headDim, half = hd / 2, S = positions.length;
  const cos = new Float32Array(S * hd), sin = new Float32Array(S * hd);
  for (let i = 0; i < S; i++) {
    const row = model.ropeCos.subarray(positions[i] * half, (positions[i] + 1) * half);
    const srow = model.ropeSin.subarray(positions[i] * half, (positions[i] + 1) * half);
    cos.set(row, i * hd); cos.set(row, i * hd + half);
    sin.set(srow, i * hd); sin.set(srow, i * hd + half);
  }
  return { cos, sin };
}

type Tensor = Float32Array | number[];
/** A tensor a call can produce, or null when this call has none (e.g. exit steps of the weighted read-out). */
type Producers = Record<string, () => Tensor | null>;

/** Tensors upstream hooked during the procedure's first call, stored under their bare names. */
const DEFAULT_CALL_HOOKS = ['embed', 'rope_cos', 'rope_sin', 'layer_out', 'loop_prenorm', 'loop_hidden', 'gate_logits', 'gate_lambda', 'exit_pdf', 'exit_cdf'];

/** What one forward (all batch rows) reports, by the names the cases use, in their layouts. */
function forwardTensors(results: OuroForwardResult[], model: OuroModel): Producers {
  const T = model.config.totalUtSteps, L = model.config.numLayers;
  const first = results[0];
  return {
    logits: () => stackRows(results.map((r) => r.logits)), // [B, keep, V]
    exit_steps: () => (first.exitSteps ? results.flatMap((r) => Array.from(r.exitSteps!)) : null), // [B, S]
    selected_hidden: () => (first.selectedHidden ? stackRows(results.map((r) => r.selectedHidden!)) : null), // [B, S, H]
    step_logits: () => (first.stepLogits ? loopMajor(results.map((r) => r.stepLogits!)) : null), // [T, B, keep, V]
    loop_logits: () => loopMajor(results.map((r) => r.loopLogits!)), // [T, B, keep, V] = lm_head(h_t)
    embed: () => stackRows(results.map((r) => r.embed)), // [B, S, H]
    rope_cos: () => ropeRows(model, first.positions).cos, // [1, S, hd]
    rope_sin: () => ropeRows(model, first.positions).sin,
    layer_out: () => (first.layerOut ? stackRows(Array.from({ length: T }, (_, t) => stackRows(Array.from({ length: L }, (_, l) => stackRows(results.map((r) => r.layerOut![t][l])))))) : null), // [T, L, B, S, H]
    loop_prenorm: () => (first.prenorm ? loopMajor(results.map((r) => r.prenorm!)) : null), // [T, B, S, H]
    loop_hidden: () => loopMajor(results.map((r) => r.hidden)), // [T, B, S, H]
    gate_logits: () => loopMajor(results.map((r) => r.gateLogits)), // [T, B, S]
    gate_lambda: () => loopMajor(results.map((r) => r.lambda)), // [T, B, S]
    exit_pdf: () => stackRows(results.map((r) => r.pdf)), // [B, S, T]
    exit_cdf: () => stackRows(results.map((r) => r.cdf)), // [B, S, T]
  };
}

/** What a greedy decode reports: generated[b] ids, steps[s][b] the results of decode step s. */
function decodeTensors(generated: number[][], steps: OuroForwardResult[][], model: OuroModel): Producers {
  const T = model.config.totalUtSteps;
  return {
    generated_ids: () => generated.flat(), // [B, n]
    step_logits: () => stackRows(generated.map((_, b) => stackRows(steps.map((row) => row[b].logits)))), // [B, n, V]
    step_exit_steps: () => steps.flatMap((row) => row.map((r) => (r.exitSteps ? r.exitSteps[0] : T - 1))), // [n, B]
    step_exit_pdf: () => stackRows(steps.flatMap((row) => row.map((r) => r.pdf))), // [n, B, T]
    step_exit_cdf: () => stackRows(steps.flatMap((row) => row.map((r) => r.cdf))), // [n, B, T]
    step_gate_logits: () => stackRows(steps.map((row) => loopMajor(row.map((r) => r.gateLogits)))), // [n, T, B]
    step_gate_lambda: () => stackRows(steps.map((row) => loopMajor(row.map((r) => r.lambda)))), // [n, T, B]
    step_loop_hidden: () => stackRows(steps.map((row) => loopMajor(row.map((r) => r.hidden)))), // [n, T, B, H]
    step_rope_cos: () => stackRows(steps.map((row) => ropeRows(model, row[0].positions).cos)), // [n, hd]
    step_rope_sin: () => stackRows(steps.map((row) => ropeRows(model, row[0].positions).sin)),
  };
}

/** The output `what` of step `si`; a name the call cannot produce is a failure, never a skip. */
function produce(c: GoldenCase, si: number, tensors: Producers, what: string): Tensor {
  const make = tensors[what];
  if (!make) throw new PonderError('CONFORM_PROCEDURE', `${c.name}: step ${si} asks for unknown output ${what}`, { hint: `this call produces: ${[...Object.keys(tensors), 'cache'].join(', ')}` });
  return make() ?? missing(c, what, si);
}

/** Cache slots as upstream stores them: [B, kv_heads, n, hd] per slot, names from a pattern such as `x.slot{i}.{key,value}`. */
function putCache(pattern: string, caches: OuroCache[], slots: number, kvHeads: number, hd: number,
  put: (name: string, v: Float32Array | number[], explicit?: boolean) => void): void {
  // `….{key,value}` names both parts; `….key` or `….value` one of them.
  const m = /^(.*\.)(?:\{([a-z,]+)\}|(key|value))$/.exec(pattern);
  if (!m || !m[1].includes('{i}')) throw new PonderError('CONFORM_PROCEDURE', `cache output pattern ${pattern} is not <name>{i}.<key|value|{key,value}>`, { hint: 'see golden/FORMAT.md' });
  const stem = m[1], which = m[2] ? m[2].split(',') : [m[3]];
  const n = caches[0].length, kvDim = kvHeads * hd;
  for (let s = 0; s < slots; s++) {
    for (const kind of which) {
      if (kind !== 'key' && kind !== 'value') throw new PonderError('CONFORM_PROCEDURE', `cache output pattern ${pattern}: unknown part ${kind}`, { hint: 'parts are key and value' });
      const out = new Float32Array(caches.length * kvHeads * n * hd);
      caches.forEach((cache, b) => {
        const src = kind === 'value' ? cache.values[s] : cache.keys[s];
        for (let h = 0; h < kvHeads; h++) {
          for (let p = 0; p < n; p++) {
            out.set(src.subarray(p * kvDim + h * hd, p * kvDim + (h + 1) * hd), ((b * kvHeads + h) * n + p) * hd);
          }
        }
      });
      put(stem.replace('{i}', String(s)) + kind, out);
    }
  }
}
