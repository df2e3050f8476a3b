/**
 * A bf16 / f16 KV cache against the f32 one (spec/numerics.md, "KV cache dtype"), on every golden-case
 * model and every bundled model in models/:
 * - the bound: on the f32 run of every model, every attention call is also computed over its K and V
 *   rounded to bf16 and to f16 (what a narrow cache would hold), and each output element must lie
 *   within the spec's bound of the f32 call's;
 * - end to end, each model loaded with kvDtype bf16 / f16 runs the same prompt (forward) and a greedy
 *   decode; how far the logits move and how often the discrete outputs agree (greedy ids, steps per
 *   token: Ouro's exit steps, MoR's recursions, Huginn's iterations) is reported as diagnostics.
 *   The spec promises no equality of discrete outputs, so none is asserted; the runs must stay
 *   finite wherever the f32 run is.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { loadModel, writeSafetensors, type LoadOptions, type Model, type Runtime } from '../src/index.js';
import { loadModelDir } from '../src/node/index.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import type { Kernels, KvDType } from '../src/kernels/kernels.js';
import { parseGoldenCase, rawTensor, type GoldenCase } from '../src/conform/golden.js';
import { U } from './kernels-support.js';
import { PonderError } from '../src/errors.js';
import { assertUsageError, ponder } from './cli-support.js';
import { parseSafetensors, readTensor } from '../src/format/safetensors.js';

const base = await createWasmRuntime();
after(() => base.dispose());

/** Unit roundoff (relative, normal range) and absolute error below the normal range of a narrow store, spec/numerics.md. */
const NARROW: Record<Exclude<KvDType, 'f32'>, { u: number; abs: number; max: number }> = {
  bf16: { u: 2 ** -8, abs: 2 ** -134, max: 3.3895313892515355e38 },
  f16: { u: 2 ** -11, abs: 2 ** -25, max: 65504 },
};

interface CallStats { calls: number; elements: number; worstRatio: number }

/**
 * The spec's bound for one output element (query row i, head h, dim d) of a narrow-cache call vs
 * the f32 call: with Δ = max over visible keys j of scale·Σ_d |q_d|·(u|k_jd| + a),
 *   |õ − o| ≤ ((e^{2Δ} − 1)(1 + u) + u)·max_j |v_jd| + a + (the two calls' own f32 rounding).
 */
function checkCall(k: Kernels, kn: Uint16Array, vn: Uint16Array, narrowOut: Float32Array, out: Float32Array, q: Float32Array, kf: Float32Array, vf: Float32Array,
                   Tq: number, Tk: number, nHeads: number, nKvHeads: number, hd: number, scale: number,
                   qPos: Int32Array | null, kPos: Int32Array | null, allowed: Uint8Array | null, dtype: Exclude<KvDType, 'f32'>, stats: CallStats): void {
  const { u, abs, max } = NARROW[dtype];
  for (let i = 0; i < kf.length; i++) if (!(Math.abs(kf[i]) < max && Math.abs(vf[i]) < max)) return; // overflow to Inf: no finite bound
  k.attention(narrowOut, q, kn, vn, Tq, Tk, nHeads, nKvHeads, hd, scale, qPos, kPos, allowed, dtype);
  const group = nHeads / nKvHeads, qDim = nHeads * hd, kvDim = nKvHeads * hd;
  stats.calls++;
  for (let i = 0; i < Tq; i++) for (let h = 0; h < nHeads; h++) {
    const kvh = Math.floor(h / group);
    let delta = 0, dotMag = 0, any = false;
    const maxV = new Float64Array(hd);
    for (let j = 0; j < Tk; j++) {
      if (qPos && kPos && kPos[j] > qPos[i]) continue;
      if (allowed && !allowed[i * Tk + j]) continue;
      any = true;
      let e = 0, m = 0;
      for (let d = 0; d < hd; d++) {
        const qd = Math.abs(q[i * qDim + h * hd + d]), kd = Math.abs(kf[j * kvDim + kvh * hd + d]);
        e += qd * (u * kd + abs); m += qd * kd;
        maxV[d] = Math.max(maxV[d], Math.abs(vf[j * kvDim + kvh * hd + d]));
      }
      delta = Math.max(delta, scale * e);
      dotMag = Math.max(dotMag, scale * m * (1 + u));
    }
    if (!any) continue;
    for (let d = 0; d < hd; d++) {
      const o = i * qDim + h * hd + d;
      // f32 rounding of each call (the kernel test's bound, kernels-attention.test.ts), twice
      const f32Part = 2 * ((4 * (hd + 4) * U * dotMag + (2 * Tk + 24) * U) * maxV[d] * (1 + u) + 1e-38);
      const bound = (Math.expm1(2 * delta) * (1 + u) + u) * maxV[d] + abs + f32Part;
      const err = Math.abs(narrowOut[o] - out[o]);
      assert.ok(err <= bound, `${dtype} cache: attention out[${i},${h},${d}] = ${narrowOut[o]} vs f32 ${out[o]}: error ${err} > bound ${bound} (Tq=${Tq} Tk=${Tk})`);
      stats.elements++;
      if (bound > 0) stats.worstRatio = Math.max(stats.worstRatio, err / bound);
    }
  }
}

/** The WASM runtime whose attention, on every f32 call, also checks the bf16 and f16 caches' results against the spec's bound. */
function boundCheckingRuntime(stats: Record<'bf16' | 'f16', CallStats>): Runtime {
  const k = base.kernels;
  const kernels: Kernels = Object.create(k) as Kernels;
  Object.assign(kernels, {
    attention(out: Float32Array, q: Float32Array, kk: Float32Array, v: Float32Array, Tq: number, Tk: number, nHeads: number, nKvHeads: number, hd: number, scale: number,
              qPos: Int32Array | null, kPos: Int32Array | null, allowed: Uint8Array | null, kvDtype: KvDType = 'f32') {
      k.attention(out, q, kk, v, Tq, Tk, nHeads, nKvHeads, hd, scale, qPos, kPos, allowed, kvDtype);
      if (kvDtype !== 'f32' || Tk === 0) return;
      const n = Tk * nKvHeads * hd;
      const arena = base.arena;
      const kf = kk.subarray(0, n), vf = v.subarray(0, n);
      const kn = arena.u16(n), vn = arena.u16(n), narrowOut = arena.f32(Tq * nHeads * hd);
      for (const dtype of ['bf16', 'f16'] as const) {
        if (dtype === 'bf16') { k.f32ToBf16(kn, kf, n); k.f32ToBf16(vn, vf, n); } else { k.f32ToF16(kn, kf, n); k.f32ToF16(vn, vf, n); }
        checkCall(k, kn, vn, narrowOut, out, q, kf, vf, Tq, Tk, nHeads, nKvHeads, hd, scale, qPos, kPos, allowed, dtype, stats[dtype]);
      }
    },
  });
  return { ...base, kernels };
}

/** A golden case's `weights.*` as a model.safetensors (as test/api-golden-depths.test.ts loads them). */
function caseSource(family: string, name: string) {
  const path = `spec/golden/${family}/${name}`;
  const c: GoldenCase = parseGoldenCase(`${family}/${name}`, readFileSync(`${path}.json`, 'utf8'), new Uint8Array(readFileSync(`${path}.safetensors`)));
  const tensors = [...c.file.tensors.values()].filter((t) => t.name.startsWith('weights.'))
    .map((t) => ({ name: t.name.slice('weights.'.length), dtype: t.dtype, shape: [...t.shape], data: rawTensor(c, t.name) }));
  return { config: c.config, files: { 'model.safetensors': writeSafetensors(tensors) }, label: c.name };
}

const models: { label: string; source: Parameters<typeof loadModel>[0] | string }[] = [
  ...['ouro', 'mor', 'huginn'].flatMap((family) => readdirSync(`spec/golden/${family}`).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5))
    .map((name) => ({ label: `golden ${family}/${name}`, source: caseSource(family, name) }))),
  ...readdirSync('models', { withFileTypes: true }).filter((d) => d.isDirectory() && readdirSync(`models/${d.name}`).includes('config.json'))
    .map((d) => ({ label: `models/${d.name}`, source: `models/${d.name}` })),
];

/** A golden case's model from memory, a bundled one from its directory. */
function open(source: (typeof models)[number]['source'], options: LoadOptions): Promise<Model> {
  return typeof source === 'string' ? loadModelDir(source, options) : loadModel(source, options);
}

const PROMPT = 24, DECODE = 16;
function promptIds(model: Model): number[] {
  return Array.from({ length: Math.min(PROMPT, model.contextLength - DECODE) }, (_, i) => (i * 7919 + 13) % model.vocabSize);
}

test('every attention call of every golden-case and bundled model stays within the bf16 / f16 cache bound of spec/numerics.md', async (t) => {
  const stats = { bf16: { calls: 0, elements: 0, worstRatio: 0 }, f16: { calls: 0, elements: 0, worstRatio: 0 } };
  const runtime = boundCheckingRuntime(stats);
  for (const { label, source } of models) {
    const model = await open(source, { runtime, tokenizer: false, chatTemplate: false });
    const ids = promptIds(model);
    model.forward(ids);
    await model.generate(ids, { maxNewTokens: 4, sampling: { temperature: 0 }, stopIds: [] }).result();
    t.diagnostic(`${label}: checked`);
  }
  for (const d of ['bf16', 'f16'] as const) {
    assert.ok(stats[d].calls > 100, `${d}: ${stats[d].calls} attention calls checked`);
    t.diagnostic(`${d}: ${stats[d].calls} calls, ${stats[d].elements} output elements, largest error / bound ${stats[d].worstRatio.toExponential(2)}`);
  }
});

test('bf16 / f16 KV caches against f32, end to end: logit deviation and agreement of greedy ids and depths (reported; finite where f32 is)', async (t) => {
  for (const { label, source } of models) {
    const runs = new Map<KvDType, { logits: Float32Array; ids: number[]; steps: number[] }>();
    for (const kvDtype of ['f32', 'bf16', 'f16'] as const) {
      const model = await open(source, { runtime: base, kvDtype, tokenizer: false, chatTemplate: false });
      const ids = promptIds(model);
      const { logits } = model.forward(ids);
      const r = await model.generate(ids, { maxNewTokens: DECODE, sampling: { temperature: 0 }, stopIds: [] }).result();
      runs.set(kvDtype, { logits, ids: r.generatedIds, steps: r.trace.tokens.map((x) => x.steps) });
    }
    const ref = runs.get('f32')!;
    const parts = [label];
    for (const d of ['bf16', 'f16'] as const) {
      const run = runs.get(d)!;
      let maxErr = 0, maxAbs = 0;
      for (let i = 0; i < ref.logits.length; i++) {
        if (Number.isFinite(ref.logits[i])) assert.ok(Number.isFinite(run.logits[i]), `${label} ${d}: logit ${i} is ${run.logits[i]} where f32 gives ${ref.logits[i]}`);
        maxErr = Math.max(maxErr, Math.abs(run.logits[i] - ref.logits[i]));
        maxAbs = Math.max(maxAbs, Math.abs(ref.logits[i]));
      }
      let sameIds = 0;
      while (sameIds < ref.ids.length && run.ids[sameIds] === ref.ids[sameIds]) sameIds++;
      let sameSteps = 0;
      const n = Math.min(ref.steps.length, run.steps.length);
      for (let i = 0; i < n; i++) if (run.steps[i] === ref.steps[i]) sameSteps++;
      parts.push(`${d}: max |Δlogit| ${maxErr.toExponential(2)} (max |logit| ${maxAbs.toFixed(2)}), greedy ids agree ${sameIds}/${ref.ids.length} before the first difference, steps agree ${sameSteps}/${n}`);
    }
    t.diagnostic(parts.join(' · '));
  }
});

test('a NaN the f32 cache carries into the state (NaN value rows) is carried by a bf16 / f16 cache too: NUM_NONFINITE in every family', async () => {
  const poisoned: Record<string, string> = { 'demo-ouro': 'model.layers.0.self_attn.v_proj.weight', 'demo-mor': 'model.layers.0.self_attn.v_proj.weight', 'demo-huginn': 'transformer.prelude.0.attn.Wqkv.weight' };
  for (const [name, tensor] of Object.entries(poisoned)) {
    const file = parseSafetensors(new Uint8Array(readFileSync(`models/${name}/model.safetensors`)), name);
    const tensors = [...file.tensors.values()].map((t) => {
      const a = readTensor(file, t.name);
      const data = new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
      // the value projection's rows only (Huginn's fused Wqkv: its last third, n_kv_heads = n_heads), so
      // the scores stay finite and the NaN reaches the attention output (a key row of NaN scores counts as unseen)
      const values = t.dtype === 'F32' ? new Float32Array(data.buffer) : new Uint16Array(data.buffer);
      if (t.name === tensor) values.fill(t.dtype === 'F32' ? NaN : 0x7fc0, tensor.endsWith('Wqkv.weight') ? (2 * values.length) / 3 : 0);
      return { name: t.name, dtype: t.dtype, shape: [...t.shape], data };
    });
    const source = { config: readFileSync(`models/${name}/config.json`, 'utf8'), files: { 'model.safetensors': writeSafetensors(tensors) }, label: `${name} with NaN in ${tensor}` };
    for (const kvDtype of ['f32', 'bf16', 'f16'] as const) {
      const model = await loadModel(source, { runtime: base, kvDtype, tokenizer: false, chatTemplate: false });
      await assert.rejects(model.generate([1, 2, 3, 4], { maxNewTokens: 2 }).result(), (e: unknown) => e instanceof PonderError && e.code === 'NUM_NONFINITE', `${name} ${kvDtype}`);
    }
  }
});

test('--kv-dtype runs every family from the CLI (run, eval) and a bad dtype is a usage error naming the flag', async () => {
  for (const family of ['ouro', 'mor', 'huginn']) {
    const kvBytes: Record<string, number> = {};
    for (const kvDtype of ['f32', 'bf16']) {
      const r = await ponder(['run', '--model', `models/demo-${family}`, '--ids', '1,2,3,4', '-n', '3', '--kv-dtype', kvDtype, '--json']);
      assert.equal(r.code, 0, r.err);
      const tokens = JSON.parse(r.out).tokens as { phase: string; kvBytes: number }[];
      assert.equal(tokens.filter((t) => t.phase === 'decode').length, 3, `${family} ${kvDtype}: three tokens generated`);
      kvBytes[kvDtype] = tokens[tokens.length - 1].kvBytes;
    }
    // the trace counts the cache at its dtype (MoR adds a 4-byte position per row in either)
    assert.ok(kvBytes.bf16 < kvBytes.f32 && kvBytes.bf16 >= kvBytes.f32 / 2, `${family}: KV bytes ${kvBytes.bf16} (bf16) vs ${kvBytes.f32} (f32)`);
  }
  const e = await ponder(['eval', 'models/demo-ouro', '--text', 'models/eval/sotu-heldout.txt', '--max-tokens', '24', '--depths', '4', '--criteria', 'gate', '--kv-dtype', 'f16', '--json']);
  assert.equal(e.code, 0, e.err);
  assertUsageError(await ponder(['run', '--model', 'models/demo-ouro', '--ids', '1,2', '--kv-dtype', 'f8']), 'ARG_INVALID');
  assertUsageError(await ponder(['serve', '--model', 'models/demo-ouro', '--kv-dtype', 'f8']), 'ARG_INVALID');
});
