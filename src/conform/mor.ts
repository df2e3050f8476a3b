/**
 * Golden-case runner for the mor family: maps each procedure step (golden/FORMAT.md) onto the
 * family (src/models/mor-family.ts, mor.ts) and returns every tensor it produced, under the case's names.
 *   forward            → one forward over inputs (use_cache=True), outputs under `expected_prefix`
 *   prefill            → forward over the prompt; outputs under expected.decode.prefill*
 *   greedy_decode      → n cached one-token steps, outputs under expected.decode.*
 *   full_forward_check → uncached forward over prompt + generated ids minus the last
 */
import { PonderError } from '../errors.js';
import { MorModel, type MorSession, type RowCaptures } from '../models/mor.js';
import { morFamily } from '../models/mor-family.js';
import { configObject } from '../format/config.js';
import { safetensorsWeights } from '../models/weights.js';
import type { CaseRunner, Produced } from './compare.js';
import { intTensor, tensorShape, type GoldenCase } from './golden.js';

type Step = Record<string, unknown>;

export const runCase: CaseRunner = async (c, runtime) => {
  const steps = c.procedure as Step[];
  // Longest sequence any step needs: the input plus every decode step.
  const inputName = (steps.find((s) => typeof s.input_ids === 'string' && (s.input_ids as string).startsWith('inputs.'))?.input_ids as string) ?? 'inputs.input_ids';
  const inputShape = tensorShape(c, inputName);
  if (inputShape.length !== 2) throw new PonderError('GOLDEN_TENSOR', `${c.name}: ${inputName} has shape [${inputShape.join(', ')}], expected [B, T]`, { tensor: inputName, hint: 'input ids are [batch, tokens]' });
  const newTokens = steps.reduce((n, s) => n + (s.step === 'greedy_decode' ? Number(s.new_tokens) : 0), 0);
  const maxLen = inputShape[1] + newTokens + 1;
  const model = morFamily.load(morFamily.parseConfig(configObject(c.config, `${c.name}.json`)), safetensorsWeights([c.file], 'weights.', c.name), runtime, { context: maxLen });
  const V = model.config.dims.vocab;
  const out = new Map<string, Produced>();

  let prompt: number[][] | null = null;
  let session: MorSession | null = null;
  let lastLogits: Float32Array | null = null;
  let generated: number[][] = [];

  for (const step of steps) {
    switch (step.step) {
      case 'forward': {
        const ids = readIds(c, String(step.input_ids ?? inputName));
        const prefix = String(step.expected_prefix ?? 'expected');
        const s = model.newSession(ids.length, maxLen);
        const r = model.forward(s, ids, { capture: true });
        putCaptures(out, prefix + '.', r.captures!);
        putCache(out, model, s, `${prefix}.cache`);
        break;
      }
      case 'prefill': {
        const all = readIds(c, String(step.input_ids ?? inputName));
        const len = step.prompt_len === null || step.prompt_len === undefined ? all[0].length : Number(step.prompt_len);
        prompt = all.map((row) => row.slice(0, len));
        session = model.newSession(prompt.length, maxLen);
        const r = model.forward(session, prompt, { capture: true });
        lastLogits = r.logits;
        const perRow = r.captures!.map((cap) => new Map([...cap].filter(([n]) => n !== 'logits')));
        putCaptures(out, 'expected.decode.prefill.', perRow);
        out.set('expected.decode.prefill_logits', r.logits);
        putCache(out, model, session, 'expected.decode.cache_after_prefill');
        generated = prompt.map(() => []);
        break;
      }
      case 'greedy_decode': {
        if (!session || !prompt || !lastLogits) throw stepError(c, step, 'greedy_decode needs a prefill step before it');
        const n = Number(step.new_tokens);
        const prefix = String(step.expected_prefix ?? 'expected.decode');
        const B = prompt.length;
        const stepLogits = new Float32Array(B * n * V);
        const stepDepth = new Int32Array(B * n);
        let next = MorModel.lastArgmax(lastLogits, B, lastLogits.length / (B * V), V);
        for (let s = 0; s < n; s++) {
          next.forEach((id, b) => generated[b].push(id));
          const r = model.forward(session, next.map((id) => [id]));
          for (let b = 0; b < B; b++) {
            stepLogits.set(r.logits.subarray(b * V, (b + 1) * V), (b * n + s) * V);
            stepDepth[b * n + s] = r.trace.depth[b];
          }
          lastLogits = r.logits;
          next = MorModel.lastArgmax(r.logits, B, 1, V);
        }
        out.set(`${prefix}.generated_ids`, generated.flat());
        out.set(`${prefix}.step_logits`, stepLogits);
        out.set(`${prefix}.step_depth`, stepDepth);
        putCache(out, model, session, `${prefix}.cache_final`);
        break;
      }
      case 'full_forward_check': {
        if (!prompt) throw stepError(c, step, 'full_forward_check needs a prefill step before it');
        const ids = prompt.map((row, b) => [...row, ...generated[b].slice(0, -1)]);
        const s = model.newSession(ids.length, maxLen, { useCache: step.use_cache !== false });
        const r = model.forward(s, ids);
        out.set(String(step.expected ?? 'expected.decode.full_forward_logits'), r.logits);
        break;
      }
      default:
        throw stepError(c, step, `unknown procedure step ${JSON.stringify(step.step)} (known: forward, prefill, greedy_decode, full_forward_check)`);
    }
  }
  return out;
};

function stepError(c: GoldenCase, step: Step, what: string): PonderError {
  return new PonderError('CONFORM_STEP', `${c.name}: ${what}`, { path: `${c.name}.json`, field: 'procedure', hint: `step: ${JSON.stringify(step)}` });
}

function readIds(c: GoldenCase, name: string): number[][] {
  const shape = tensorShape(c, name);
  if (shape.length !== 2) throw new PonderError('GOLDEN_TENSOR', `${c.name}: ${name} has shape [${shape.join(', ')}], expected [B, T]`, { tensor: name, hint: 'input ids are [batch, tokens]' });
  const flat = intTensor(c, name);
  return Array.from({ length: shape[0] }, (_, b) => flat.slice(b * shape[1], (b + 1) * shape[1]));
}

/** Stacks each captured per-row tensor over the batch rows: name → [B, ...shape]. */
function putCaptures(out: Map<string, Produced>, prefix: string, rows: RowCaptures[]): void {
  for (const name of rows[0].keys()) {
    const parts = rows.map((r) => r.get(name));
    if (parts.some((p) => p === undefined)) continue;
    const total = parts.reduce((n, p) => n + p!.data.length, 0);
    const data = parts[0]!.int ? new Int32Array(total) : new Float32Array(total);
    let o = 0;
    for (const p of parts) { data.set(p!.data, o); o += p!.data.length; }
    out.set(prefix + name, data);
  }
}

/** Cache slot contents stacked over rows as [B, nKv, n, headDim] under `${prefix}.slot{i}.key/value`. */
function putCache(out: Map<string, Produced>, model: MorModel, session: MorSession, prefix: string): void {
  for (const slot of session.rows[0].slots.keys()) {
    const parts = session.rows.map((_, b) => model.cacheSlot(session, b, slot)!);
    for (const which of ['key', 'value'] as const) {
      const total = parts.reduce((n, p) => n + p[which].length, 0);
      const data = new Float32Array(total);
      let o = 0;
      for (const p of parts) { data.set(p[which], o); o += p[which].length; }
      out.set(`${prefix}.slot${slot}.${which}`, data);
    }
  }
}
