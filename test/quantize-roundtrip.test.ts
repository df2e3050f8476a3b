import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { quantizeModel } from '../src/node/quantize.js';
import { loadModelDir } from '../src/node/index.js';
import { openModelDir } from '../src/node/model-dir.js';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { writeSafetensors, type TensorToWrite } from '../src/format/safetensors.js';
import { quantizedWeights, readQuantization } from '../src/models/quantized.js';
import { dequantizeRow } from '../src/kernels/quant.js';
import { widenFloats, type FloatDType } from '../src/models/inputs.js';
import { configObject } from '../src/format/config.js';

const tmp = mkdtempSync(join(tmpdir(), 'ponder-quantize-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of a quantized directory with every quantized weight written back as its dequantized F32 values (and no `quantization`). */
function dequantizedCopy(dir: string, out: string): void {
  const d = openModelDir(dir);
  const source = quantizedWeights(d.weights, readQuantization(configObject(d.config!.values, 'c')));
  const tensors: TensorToWrite[] = source.names().map((name) => {
    const info = source.info(name)!;
    if (!info.quant) return { name, dtype: info.dtype, shape: info.shape, data: source.read(name) };
    const [N, K] = info.shape, w = new Float32Array(N * K), q = source.readQuantized!(name);
    for (let n = 0; n < N; n++) dequantizeRow(q, K, n, w, n * K);
    return { name, dtype: 'F32', shape: info.shape, data: w };
  });
  mkdirSync(out);
  writeFileSync(join(out, 'model.safetensors'), writeSafetensors(tensors));
  const { quantization: _q, quantization_config: _c, ...config } = d.config!.values as Record<string, unknown>;
  writeFileSync(join(out, 'config.json'), JSON.stringify(config));
}

const IDS = [3, 17, 5, 42, 8, 11, 29, 2];

for (const family of ['ouro', 'mor', 'huginn'] as const) {
  for (const [bits, groupSize] of [[4, 64], [8, 32]] as const) {
    test(`${family}-sotu at ${bits} bits (group ${groupSize}): quantize writes MLX's layout within 1.5 steps of every weight, and the quantized model runs as its dequantized weights in f32 (the same depths, logits to f32 rounding)`, async () => {
      const input = `models/${family}-sotu`, out = join(tmp, `${family}-${bits}`);
      const result = await quantizeModel({ input, out, bits, groupSize });
      assert.ok(result.quantized > 0);
      const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      assert.equal(config.quantization.bits, bits);
      assert.equal(config.quantization.group_size, groupSize);
      assert.deepEqual(config.quantization_config, config.quantization);
      for (const f of readdirSync(input).filter((f) => f !== 'model.safetensors' && f !== 'config.json')) {
        assert.deepEqual(readFileSync(join(out, f)), readFileSync(join(input, f)), `${f} copied`);
      }

      // each quantized weight against its source: codes computed against the stored (bf16-rounded) scale
      // and bias are within half a step of w on the grid; the grid's ends move by the rounding of the
      // scale (≤ 2^-9 relative, times up to 2^bits − 1 steps) and of the bias (≤ 2^-9·|edge|, the
      // edge ≤ (2^bits − 1)·|scale|): together at most 1.5 steps.
      const src = openModelDir(input).weights;
      const q = quantizedWeights(openModelDir(out).weights, readQuantization(configObject(config, 'c')));
      let checked = 0;
      for (const name of q.names()) {
        const info = q.info(name)!;
        if (!info.quant) continue;
        const [N, K] = info.shape, raw = src.read(name), w = new Float32Array(N * K), deq = new Float32Array(K), data = q.readQuantized!(name);
        widenFloats(src.info(name)!.dtype as FloatDType, raw, 0, N * K, w);
        for (let n = 0; n < N; n++) {
          dequantizeRow(data, K, n, deq);
          for (let k = 0; k < K; k++) {
            const step = Math.abs(data.scales[n * (K / groupSize) + Math.floor(k / groupSize)]);
            assert.ok(Math.abs(deq[k] - w[n * K + k]) <= 1.5 * step + 1e-7, `${name}[${n},${k}]: ${w[n * K + k]} → ${deq[k]} (step ${step})`);
          }
        }
        checked++;
      }
      assert.equal(checked, result.quantized);

      const f32Dir = join(tmp, `${family}-${bits}-dequantized`);
      dequantizedCopy(out, f32Dir);
      const quantized = await loadModelDir(out, { runtime: await createWasmRuntime() });
      const reference = await loadModelDir(f32Dir, { runtime: await createWasmRuntime() });
      const a = quantized.forward(IDS), b = reference.forward(IDS);
      assert.deepEqual(a.trace.tokens.map((t) => t.steps), b.trace.tokens.map((t) => t.steps));
      // the quantized Linear sums scale·Σ code·x + bias·Σ x per group (spec/quantization.md), the f32 one
      // Σ x·w over the same dequantized values: the same real sums rounded differently, so the logits
      // agree to f32 rounding through the layers (measured ≤ 1.4e-6 of the largest logit), not bit for bit
      let maxDiff = 0, maxAbs = 0;
      for (let i = 0; i < b.logits.length; i++) { maxDiff = Math.max(maxDiff, Math.abs(a.logits[i] - b.logits[i])); maxAbs = Math.max(maxAbs, Math.abs(b.logits[i])); }
      assert.ok(maxDiff <= 2 ** -16 * maxAbs, `logits within 2^-16 of the largest: ${maxDiff} vs ${maxAbs}`);
    });
  }
}

test('quantize never writes into a directory it did not make, nor over a target that is not a regular file; a previous output is replaced', async () => {
  const busy = join(tmp, 'busy');
  mkdirSync(busy);
  writeFileSync(join(busy, 'notes.txt'), 'mine');
  await assert.rejects(quantizeModel({ input: 'models/ouro-sotu', out: busy, bits: 4 }), (e: { code?: string }) => e.code === 'IO_WRITE');
  assert.deepEqual(readdirSync(busy), ['notes.txt']);

  const again = join(tmp, 'again');
  await quantizeModel({ input: 'models/ouro-sotu', out: again, bits: 4 });
  const first = readFileSync(join(again, 'model.safetensors'));
  await quantizeModel({ input: 'models/ouro-sotu', out: again, bits: 8 });
  assert.notDeepEqual(readFileSync(join(again, 'model.safetensors')), first);
  assert.equal(JSON.parse(readFileSync(join(again, 'config.json'), 'utf8')).quantization.bits, 8);
  assert.ok(readdirSync(again).every((f) => !f.endsWith('.tmp')), 'no temporary file left');

  const odd = join(tmp, 'odd');
  await quantizeModel({ input: 'models/ouro-sotu', out: odd, bits: 4 });
  rmSync(join(odd, 'tokenizer.json'));
  mkdirSync(join(odd, 'tokenizer.json'));
  await assert.rejects(quantizeModel({ input: 'models/ouro-sotu', out: odd, bits: 4 }), (e: { code?: string }) => e.code === 'IO_WRITE');
});

test('quantize refuses bits and group sizes ponder cannot run, and an already quantized model', async () => {
  await assert.rejects(quantizeModel({ input: 'models/ouro-sotu', out: join(tmp, 'x'), bits: 3 as 4 }), (e: { code?: string; field?: string }) => e.code === 'ARG_INVALID' && e.field === 'bits');
  await assert.rejects(quantizeModel({ input: 'models/ouro-sotu', out: join(tmp, 'x'), bits: 4, groupSize: 48 }), (e: { code?: string; field?: string }) => e.code === 'ARG_INVALID' && e.field === 'group-size');
  const q = join(tmp, 'q-once');
  await quantizeModel({ input: 'models/ouro-sotu', out: q, bits: 4 });
  await assert.rejects(quantizeModel({ input: q, out: join(tmp, 'q-twice'), bits: 4 }), (e: { code?: string }) => e.code === 'QUANT_CONFIG');
});

test('a --keep pattern that matches no Linear or embedding module is refused, naming it, before OUT is touched', async () => {
  const out = join(tmp, 'keep-typo');
  await assert.rejects(quantizeModel({ input: 'models/ouro-sotu', out, bits: 4, keep: ['*down_proj', '*lmhead'] }),
    (e: { code?: string; field?: string; message?: string; hint?: string }) =>
      e.code === 'ARG_INVALID' && e.field === 'keep' && /'\*lmhead'/.test(e.message ?? '') && !/down_proj/.test(e.message ?? '') && /model\.layers\.\d+\./.test(e.hint ?? ''));
  assert.ok(!existsSync(out), 'nothing written');
  // a norm is not a module --keep can keep (norms are never quantized), so naming one is refused too
  await assert.rejects(quantizeModel({ input: 'models/ouro-sotu', out, bits: 4, keep: ['*input_layernorm'] }), (e: { code?: string }) => e.code === 'ARG_INVALID');
  // the default patterns match nothing on Huginn (no gate, no router) and are not refused
  const h = await quantizeModel({ input: 'models/huginn-sotu', out: join(tmp, 'keep-huginn'), bits: 4, keep: ['lm_head.weight'] });
  assert.ok(h.kept.some((k) => k.name === 'lm_head.weight'), 'the tensor-name form of a module path works as a pattern');
});

test('the default keeps exit gates and routers in their dtype; --keep adds patterns; --no-default-keep quantizes them', async () => {
  const kept = await quantizeModel({ input: 'models/ouro-sotu', out: join(tmp, 'k1'), bits: 4, keep: ['model.layers.*.mlp.down_proj'] });
  const keptNames = kept.kept.map((k) => k.name);
  assert.ok(keptNames.includes('model.early_exit_gate.weight'));
  assert.ok(keptNames.some((n) => /^model\.layers\.\d+\.mlp\.down_proj\.weight$/.test(n)));
  const config = JSON.parse(readFileSync(join(tmp, 'k1', 'config.json'), 'utf8'));
  assert.equal(config.quantization['model.early_exit_gate'], false);
  const all = await quantizeModel({ input: 'models/ouro-sotu', out: join(tmp, 'k2'), bits: 4, noDefaultKeep: true });
  assert.ok(!all.kept.some((k) => k.name === 'model.early_exit_gate.weight'));
  const m = await loadModelDir(join(tmp, 'k2'), { runtime: await createWasmRuntime() });
  assert.equal(m.forward(IDS).trace.tokens.length, IDS.length);
});
