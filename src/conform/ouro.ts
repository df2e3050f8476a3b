/**
 * Ouro golden cases (golden/FORMAT.md, research/ouro.md §12): maps each procedure step
 * `{call: forward | prefill | greedy_decode, input, kwargs, outputs}` onto OuroModel's public API
 * and returns every expected.* tensor it produced.
 *
 * Besides the `outputs` a step names, the cases hold tensors upstream captured with hooks during a
 * call. They are produced here from the same call:
 *  - the first step of the procedure (the "default call"): embed, rope_cos/rope_sin, layer_out,
 *    loop_prenorm, loop_hidden, gate_logits, gate_lambda, exit_pdf, exit_cdf, default_exit_steps;
 *  - every forward/prefill whose logits go to `<base>logits`: `<base>exit_steps`,
 *    `<base>gate_logits` and, for the weighted read-out, `<base>step_logits` (lm_head of each loop);
 *  - greedy_decode whose ids go to `<base>generated_ids`: `<base>step_*` per decode step.
 * A batch is run row by row (no padding, so rows are independent).
 */
import { PonderError } from '../errors.js';
import { OuroModel, ouroConfigFromJson, type OuroCache, type OuroForwardOptions, type OuroForwardResult } from '../models/ouro.js';
import { safetensorsWeights } from '../models/weights.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Produced } from './compare.js';
import { hasTensor, intTensor, tensorShape, type GoldenCase } from './golden.js';
import type { CaseRunner } from './runner.js';

interface Step {
  call: string;
  input?: string;
  kwargs?: Record<string, unknown>;
  outputs?: Record<string, string>;
  new_tokens?: number;
}

const KNOWN_KWARGS = new Set(['use_cache', 'exit_at_step', 'exit_threshold', 'use_weighted_exit', 'logits_to_keep']);

export const runCase: CaseRunner = async (c: GoldenCase, runtime: Runtime) => {
  const config = ouroConfigFromJson(c.config, `${c.name}.json config`);
  const model = OuroModel.load(runtime, config, safetensorsWeights([c.file], 'weights.', c.name));
  const { totalUtSteps: T, numLayers: L, hiddenSize: H, headDim: hd, numKvHeads: kvHeads } = config;
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
      record: si === 0,
    };
    const outputs = step.outputs ?? {};
    const useCache = kwargs.use_cache !== false; // config.use_cache = True when absent

    if (step.call === 'forward' || step.call === 'prefill') {
      if (!step.input) throw new PonderError('CONFORM_PROCEDURE', `${c.name}: step ${si} (${step.call}) has no input`, { hint: 'see golden/FORMAT.md' });
      const rows = readIds(step.input);
      // No past_key_values is passed: upstream builds a fresh cache (use_cache) or none.
      if (useCache) caches = rows.map((r) => model.newCache(r.length + decodeTokens));
      const results = rows.map((r, b) => model.forward(r, { ...options, cache: useCache ? caches![b] : null }));
      for (const [what, name] of Object.entries(outputs)) {
        if (what === 'logits') put(name, stackRows(results.map((r) => r.logits)));
        else if (what === 'exit_steps') put(name, exitStepsOf(results, c.name));
        else if (what === 'selected_hidden') put(name, stackRows(results.map((r) => r.selectedHidden ?? missing(c, 'selected_hidden', si))));
        else if (what === 'cache') putCache(name, caches ?? missing(c, 'cache', si), T * L, kvHeads, hd, put);
        else throw new PonderError('CONFORM_PROCEDURE', `${c.name}: step ${si} asks for unknown output ${what}`, { hint: 'forward outputs: logits, exit_steps, selected_hidden, cache' });
      }
      const base = outputs.logits?.endsWith('logits') ? outputs.logits.slice(0, -'logits'.length) : null;
      if (base !== null && !/\[\d+\]$/.test(outputs.logits)) {
        if (results[0].exitSteps) put(base + 'exit_steps', exitStepsOf(results, c.name), false);
        put(base + 'gate_logits', loopMajor(results.map((r) => r.gateLogits)), false);
        if (results[0].stepLogits) put(base + 'step_logits', loopMajor(results.map((r) => r.stepLogits!)), false);
      }
      if (si === 0) putDefaultCallHooks(results, model, put);
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
        const row = next.map((id, b) => model.forward([id], { ...options, record: false, cache: caches![b] }));
        stepResults.push(row);
        next = row.map((r) => argmaxLast(r.logits, V));
      }
      for (const [what, name] of Object.entries(outputs)) {
        if (what === 'generated_ids') { tokenRows.set(name, generated); put(name, generated.flat()); }
        else if (what === 'step_logits') put(name, stackRows(generated.map((_, b) => stackRows(stepResults.map((row) => row[b].logits)))));
        else if (what === 'cache') putCache(name, caches, T * L, kvHeads, hd, put);
        else throw new PonderError('CONFORM_PROCEDURE', `${c.name}: greedy_decode asks for unknown output ${what}`, { hint: 'greedy_decode outputs: generated_ids, step_logits, cache' });
      }
      const base = outputs.generated_ids?.endsWith('generated_ids') ? outputs.generated_ids.slice(0, -'generated_ids'.length) : null;
      if (base !== null) {
        put(base + 'step_exit_steps', stepResults.flatMap((row) => row.map((r) => r.exitSteps ? r.exitSteps[0] : T - 1)), false);
        put(base + 'step_exit_pdf', stackRows(stepResults.flatMap((row) => row.map((r) => r.pdf))), false);
        put(base + 'step_gate_logits', stackRows(stepResults.map((row) => loopMajor(row.map((r) => r.gateLogits)))), false);
        put(base + 'step_loop_hidden', stackRows(stepResults.map((row) => loopMajor(row.map((r) => r.hidden)))), false);
        put(base + 'step_rope_cos', stackRows(stepResults.map((row) => ropeRows(model, row[0].positions).cos)), false);
      }
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

function exitStepsOf(results: OuroForwardResult[], name: string): number[] {
  return results.flatMap((r) => {
    if (!r.exitSteps) throw new PonderError('CONFORM_PROCEDURE', `${name}: exit steps requested from a call whose read-out has none (${r.readout.kind})`, { hint: 'exit steps exist for the threshold and exit_at_step read-outs' });
    return Array.from(r.exitSteps);
  });
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

function putDefaultCallHooks(results: OuroForwardResult[], model: OuroModel, put: (name: string, v: Float32Array | number[], explicit?: boolean) => void): void {
  const T = model.config.totalUtSteps, L = model.config.numLayers;
  const rope = ropeRows(model, results[0].positions);
  put('expected.embed', stackRows(results.map((r) => r.embed)), false);
  put('expected.rope_cos', rope.cos, false);
  put('expected.rope_sin', rope.sin, false);
  put('expected.layer_out', stackRows(Array.from({ length: T }, (_, t) => stackRows(Array.from({ length: L }, (_, l) => stackRows(results.map((r) => r.layerOut![t][l])))))), false);
  put('expected.loop_prenorm', loopMajor(results.map((r) => r.prenorm!)), false);
  put('expected.loop_hidden', loopMajor(results.map((r) => r.hidden)), false);
  put('expected.gate_logits', loopMajor(results.map((r) => r.gateLogits)), false);
  put('expected.gate_lambda', loopMajor(results.map((r) => r.lambda)), false);
  put('expected.exit_pdf', stackRows(results.map((r) => r.pdf)), false);
  put('expected.exit_cdf', stackRows(results.map((r) => r.cdf)), false);
  if (results[0].exitSteps && results[0].readout.kind === 'threshold') put('expected.default_exit_steps', results.flatMap((r) => Array.from(r.exitSteps!)), false);
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
