import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { configObject } from '../src/format/config.js';
import { parseSafetensors, writeSafetensors, type TensorToWrite } from '../src/format/safetensors.js';
import { safetensorsWeights, WeightBinder } from '../src/models/weights.js';
import { quantizedWeights, readQuantization } from '../src/models/quantized.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';

const wasm = await createWasmRuntime();
const scalar = createScalarRuntime();

// A hand-made MLX checkpoint, built from the definition in MLX's docs (mlx.core.quantize /
// dequantize), not by ponder's quantizer: a row's codes are packed 32/bits to a u32 word from the
// low bits up; w[n, k] = scales[n, k / group] · code[n, k] + biases[n, k / group].
// Codes are a fixed arithmetic pattern; scales and biases are bf16 values written by their bits.
const bf16 = (bits: number): number => new Float32Array(new Uint32Array([bits << 16]).buffer)[0];
const SCALE_BITS = [0x3c00, 0x3d80, 0xbc80, 0x3b00, 0x3e40, 0xbd00]; // 0.0078125, 0.0625, −0.015625, 0.001953125, 0.1875, −0.03125
const BIAS_BITS = [0xbf00, 0x3f80, 0x0000, 0xbe80, 0x4000, 0xc040];  // −0.5, 1, 0, −0.25, 2, −3

interface Fixture { bits: 8 | 4; gs: number; N: number; K: number; tensors: TensorToWrite[]; expected: number[][] }

function mlxModule(name: string, bits: 8 | 4, gs: number, N: number, K: number): Fixture {
  const perWord = 32 / bits, groups = K / gs, max = (1 << bits) - 1;
  const words = new Uint32Array(N * K / perWord);
  const scales = new Uint16Array(N * groups), biases = new Uint16Array(N * groups);
  const expected: number[][] = [];
  for (let n = 0; n < N; n++) {
    const row: number[] = [];
    for (let g = 0; g < groups; g++) { scales[n * groups + g] = SCALE_BITS[(n + 2 * g) % 6]; biases[n * groups + g] = BIAS_BITS[(3 * n + g) % 6]; }
    for (let k = 0; k < K; k++) {
      const code = (7 * n + 5 * k + ((k * k) >> 3)) % (max + 1);
      const word = n * (K / perWord) + Math.floor(k / perWord);
      words[word] = (words[word] | (code << (bits * (k % perWord)))) >>> 0;
      const g = n * groups + Math.floor(k / gs);
      row.push(Math.fround(Math.fround(bf16(scales[g]) * code) + bf16(biases[g])));
    }
    expected.push(row);
  }
  return { bits, gs, N, K, expected, tensors: [
    { name: `${name}.weight`, dtype: 'U32', shape: [N, K / perWord], data: words },
    { name: `${name}.scales`, dtype: 'BF16', shape: [N, groups], data: scales },
    { name: `${name}.biases`, dtype: 'BF16', shape: [N, groups], data: biases },
  ] };
}

const proj = mlxModule('model.proj', 4, 32, 5, 64);      // the config's default: 4 bits, group 32
const down = mlxModule('model.down', 8, 64, 3, 128);     // a per-module entry: 8 bits, group 64
const embed = mlxModule('model.embed_tokens', 4, 32, 7, 32);
const norm: TensorToWrite = { name: 'model.norm.weight', dtype: 'F32', shape: [64], data: new Float32Array(64).fill(1) };
const config = { quantization: { group_size: 32, bits: 4, 'model.down': { group_size: 64, bits: 8 } } };

function source(tensors: TensorToWrite[], cfg: Record<string, unknown> = config) {
  const file = parseSafetensors(writeSafetensors(tensors), 'fixture.safetensors');
  return quantizedWeights(safetensorsWeights([file]), readQuantization(configObject(cfg, 'fixture/config.json')));
}
const all = [...proj.tensors, ...down.tensors, ...embed.tensors, norm];

for (const [label, rt] of [['wasm', wasm], ['scalar', scalar]] as const) {
  test(`${label}: a hand-made MLX checkpoint binds and dequantizes to the exact values of its definition (Linear at 4 and 8 bits, embedding)`, () => {
    const weights = source(all);
    assert.deepEqual(weights.names().sort(), ['model.down.weight', 'model.embed_tokens.weight', 'model.norm.weight', 'model.proj.weight']);
    assert.deepEqual(weights.info('model.down.weight'), { dtype: 'BF16', shape: [3, 128], quant: { bits: 8, groupSize: 64 } });
    const binder = new WeightBinder(weights, rt);
    binder.declare([
      { name: 'model.proj.weight', shape: [5, 64], bind: 'linear' }, { name: 'model.down.weight', shape: [3, 128], bind: 'linear' },
      { name: 'model.embed_tokens.weight', shape: [7, 32], bind: 'embedding' }, { name: 'model.norm.weight', shape: [64], bind: 'f32' },
    ]);
    binder.finish();
    for (const f of [proj, down]) {
      const w = binder.linear(f.tensors[0].name);
      assert.equal(w.dtype, f.bits === 8 ? 'q8' : 'q4');
      // y = W·e_k is column k of W exactly (every other product is ±0)
      const x = rt.arena.f32(f.K), y = rt.arena.f32(f.N);
      for (let k = 0; k < f.K; k++) {
        x.fill(0); x[k] = 1;
        rt.kernels.linear(y, x, w, 1);
        for (let n = 0; n < f.N; n++) assert.equal(y[n], f.expected[n][k], `${f.tensors[0].name}[${n}, ${k}]`);
      }
    }
    const table = binder.embedding('model.embed_tokens.weight');
    const row = new Float32Array(32);
    for (let id = 0; id < 7; id++) { table.row(id, row); assert.deepEqual([...row], embed.expected[id], `embedding row ${id}`); }
  });
}

test('inconsistent quantized tensors are QUANT_TENSOR naming the tensor, before any data is read', () => {
  const cases: [TensorToWrite[], Record<string, unknown>, string][] = [
    [[...proj.tensors], {}, 'model.proj.scales'], // no quantization in config.json
    [[proj.tensors[0], proj.tensors[1]], config, 'model.proj.biases'], // biases missing
    [[proj.tensors[0], { ...proj.tensors[1], shape: [5, 3], data: new Uint16Array(15) }, proj.tensors[2]], config, 'model.proj.scales'], // wrong group count
    [[...proj.tensors], { quantization: { group_size: 64, bits: 4 } }, 'model.proj.scales'], // the group size of another checkpoint: 64 codes are one group, the scales have 2
    [[...proj.tensors], { quantization: { group_size: 32, bits: 8 } }, 'model.proj.scales'], // 8 bits: 8 words are 32 codes, one group, the scales have 2
    [[proj.tensors[0]], config, 'model.proj.weight'], // U32 weight without scales
    [[...proj.tensors], { quantization: { group_size: 32, bits: 4, 'model.proj': false } }, 'model.proj.scales'],
  ];
  for (const [tensors, cfg, tensor] of cases) {
    assert.throws(() => source(tensors, cfg), (e: { code?: string; tensor?: string; message?: string }) => e.code === 'QUANT_TENSOR' && e.tensor === tensor, `${tensor} with ${JSON.stringify(cfg)}`);
  }
});

test('a quantization entry ponder cannot run is QUANT_CONFIG naming the field', () => {
  for (const [q, field] of [[{ group_size: 32, bits: 3 }, 'quantization.bits'], [{ group_size: 48, bits: 4 }, 'quantization.group_size'], [{ group_size: 32, bits: 4, mode: 'mxfp4' }, 'quantization.mode'], [{ group_size: 32, bits: 4, 'model.down': { group_size: 64, bits: 2 } }, 'quantization.model.down.bits']] as const) {
    assert.throws(() => readQuantization(configObject({ quantization: q }, 'c.json')), (e: { code?: string; field?: string }) => e.code === 'QUANT_CONFIG' && e.field === field, JSON.stringify(q));
  }
});

test('a quantized tensor bound as a norm (not a Linear or an embedding) is BIND_MISMATCH', () => {
  const weights = source([...proj.tensors]);
  const binder = new WeightBinder(weights, wasm);
  binder.need('model.proj.weight', [5, 64], { bind: 'f32' });
  assert.throws(() => binder.finish(), (e: { code?: string; message?: string }) => e.code === 'BIND_MISMATCH' && /quantized model\.proj\.weight/.test(e.message!));
});
