import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PonderError } from '../src/errors.js';
import { parseSafetensors, writeSafetensors } from '../src/format/safetensors.js';
import { checkOuroWeights, OuroModel } from '../src/models/ouro.js';
import { ouroConfigFromJson, type OuroConfig } from '../src/models/ouro-config.js';
import { safetensorsWeights, type WeightInfo, type WeightSource } from '../src/models/weights.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { memorySource, smallConfigJson, smallWeights } from './ouro-fixture.js';

/** config.json of ByteDance/Ouro-1.4B as research/ouro.md §1 lists it; 2.6B differs in num_hidden_layers. */
const OURO_1_4B = {
  architectures: ['OuroForCausalLM'], model_type: 'ouro', vocab_size: 49152, hidden_size: 2048, intermediate_size: 5632,
  num_hidden_layers: 24, num_attention_heads: 16, num_key_value_heads: 16, head_dim: 128, hidden_act: 'silu',
  max_position_embeddings: 65536, rope_theta: 1000000.0, rope_scaling: null, rms_norm_eps: 1e-6, tie_word_embeddings: false,
  use_sliding_window: false, total_ut_steps: 4, early_exit_threshold: 1.0, torch_dtype: 'bfloat16', bos_token_id: 0, eos_token_id: 0,
};
const OURO_2_6B = { ...OURO_1_4B, num_hidden_layers: 48 };

/** The real checkpoint's tensor list (ouro.md §2) as BF16 infos; reading any data is an error. */
function infosOnly(layers: number, edit: (m: Map<string, WeightInfo>) => void = () => {}): WeightSource {
  const H = 2048, I = 5632, V = 49152;
  const m = new Map<string, WeightInfo>();
  const add = (name: string, shape: number[]): void => { m.set(name, { dtype: 'BF16', shape }); };
  add('model.embed_tokens.weight', [V, H]);
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    for (const x of ['q', 'k', 'v', 'o']) add(`${p}self_attn.${x}_proj.weight`, [H, H]);
    add(p + 'mlp.gate_proj.weight', [I, H]); add(p + 'mlp.up_proj.weight', [I, H]); add(p + 'mlp.down_proj.weight', [H, I]);
    for (const n of ['input_layernorm', 'input_layernorm_2', 'post_attention_layernorm', 'post_attention_layernorm_2']) add(`${p}${n}.weight`, [H]);
  }
  add('model.norm.weight', [H]);
  add('model.early_exit_gate.weight', [1, H]);
  add('model.early_exit_gate.bias', [1]);
  add('lm_head.weight', [V, H]);
  edit(m);
  return { label: `ouro-${layers}`, names: () => [...m.keys()], info: (n) => m.get(n), read: (n) => { throw new Error(`read ${n}: infos only`); } };
}

function parameterCount(source: WeightSource): number {
  return source.names().reduce((n, name) => n + source.info(name)!.shape.reduce((a, b) => a * b, 1), 0);
}

test('the real Ouro-1.4B and Ouro-2.6B configs and tensor lists are accepted', () => {
  for (const [json, layers, billions] of [[OURO_1_4B, 24, 1.435], [OURO_2_6B, 48, 2.668]] as const) {
    const config = ouroConfigFromJson(json);
    assert.equal(config.numLayers, layers);
    assert.equal(config.headDim, 128);
    assert.equal(config.totalUtSteps, 4);
    assert.equal(config.earlyExitThreshold, 1.0);
    assert.equal(config.earlyExitStep, null);
    const source = infosOnly(layers);
    checkOuroWeights(source, config, createScalarRuntime());
    assert.ok(Math.abs(parameterCount(source) / 1e9 - billions) < 0.001, `${parameterCount(source)} parameters`);
  }
});

test('a checkpoint that does not match the config reports every mismatch at once', () => {
  const source = infosOnly(24, (m) => {
    m.delete('model.early_exit_gate.bias');
    m.set('model.layers.3.mlp.up_proj.weight', { dtype: 'BF16', shape: [5632, 1024] });
    m.set('model.layers.24.input_layernorm.weight', { dtype: 'BF16', shape: [2048] });
  });
  assert.throws(() => checkOuroWeights(source, ouroConfigFromJson(OURO_1_4B), createScalarRuntime()), (e: unknown) => {
    assert.ok(e instanceof PonderError);
    assert.equal(e.code, 'BIND_MISMATCH');
    assert.match(e.message, /missing model\.early_exit_gate\.bias/);
    assert.match(e.message, /mis-shaped model\.layers\.3\.mlp\.up_proj\.weight/);
    assert.match(e.message, /unexpected model\.layers\.24\.input_layernorm\.weight/);
    return true;
  });
  // the 2.6B list against the 1.4B config: 24 layers too many
  assert.throws(() => checkOuroWeights(infosOnly(48), ouroConfigFromJson(OURO_1_4B), createScalarRuntime()), /BIND_MISMATCH|24 layers|unexpected model\.layers\.47/);
});

test('config defaults follow upstream: absent threshold is 1.0, null is none, head_dim falls back to H / heads', () => {
  const { early_exit_threshold: _drop, head_dim: _hd, ...rest } = OURO_1_4B;
  const absent = ouroConfigFromJson(rest);
  assert.equal(absent.earlyExitThreshold, 1.0);
  assert.equal(absent.headDim, 2048 / 16);
  assert.equal(ouroConfigFromJson({ ...OURO_1_4B, early_exit_threshold: null }).earlyExitThreshold, null);
  assert.equal(ouroConfigFromJson({ ...OURO_1_4B, num_key_value_heads: null }).numKvHeads, 16);
});

test('bad configs get typed errors naming the field', () => {
  const bad: [Record<string, unknown>, string, string][] = [
    [{ ...OURO_1_4B, num_key_value_heads: 5 }, 'CFG_INCONSISTENT', 'num_key_value_heads'],
    [{ ...OURO_1_4B, hidden_act: 'gelu' }, 'CFG_FIELD', 'hidden_act'],
    [{ ...OURO_1_4B, total_ut_steps: 0 }, 'CFG_FIELD', 'total_ut_steps'],
    [{ ...OURO_1_4B, hidden_size: '2048' }, 'CFG_FIELD', 'hidden_size'],
    [{ ...OURO_1_4B, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'CFG_INCONSISTENT', 'rope_scaling'],
    [{ ...OURO_1_4B, use_sliding_window: true }, 'CFG_INCONSISTENT', 'use_sliding_window'],
    [{ ...OURO_1_4B, early_exit_threshold: 'high' }, 'CFG_FIELD', 'early_exit_threshold'],
  ];
  for (const [json, code, field] of bad) {
    assert.throws(() => ouroConfigFromJson(json), (e: unknown) => e instanceof PonderError && e.code === code && e.field === field && e.hint.length > 0, `${field}`);
  }
});

const SMALL = { vocab: 24, hidden: 16, inter: 24, layers: 2, heads: 4, kvHeads: 2, headDim: 6, loops: 3, seed: 77, gateBias: 0 };

function toBf16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff; // round to nearest even
}

test('bf16 storage: loading BF16 weights equals loading their exact f32 upcast', () => {
  const config = ouroConfigFromJson(smallConfigJson(SMALL));
  const f32 = smallWeights(config, SMALL.seed, 0);
  const bf16Files: { name: string; dtype: 'BF16'; shape: number[]; data: Uint16Array }[] = [];
  const upcast = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of f32) {
    const bits = Uint16Array.from(t.data, toBf16Bits);
    bf16Files.push({ name, dtype: 'BF16', shape: t.shape, data: bits });
    upcast.set(name, { shape: t.shape, data: new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer) });
  }
  const fromBf16 = OuroModel.bind(config, safetensorsWeights([parseSafetensors(writeSafetensors(bf16Files), 'bf16.safetensors')]), createScalarRuntime());
  const fromF32 = OuroModel.bind(config, memorySource(upcast), createScalarRuntime());
  const ids = [1, 5, 9, 2, 20];
  assert.deepEqual(fromBf16.forward(ids).logits, fromF32.forward(ids).logits);
});

test('a sharded checkpoint loads to the same model as a single file', () => {
  const config = ouroConfigFromJson(smallConfigJson(SMALL));
  const tensors = [...smallWeights(config, SMALL.seed, 0)].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data }));
  const single = safetensorsWeights([parseSafetensors(writeSafetensors(tensors), 'model.safetensors')]);
  const half = Math.floor(tensors.length / 2);
  const sharded = safetensorsWeights([
    parseSafetensors(writeSafetensors(tensors.slice(0, half)), 'model-00001-of-00002.safetensors'),
    parseSafetensors(writeSafetensors(tensors.slice(half)), 'model-00002-of-00002.safetensors'),
  ]);
  const ids = [3, 1, 4, 1, 5, 9];
  assert.deepEqual(OuroModel.bind(config, sharded, createScalarRuntime()).forward(ids).logits, OuroModel.bind(config, single, createScalarRuntime()).forward(ids).logits);
});

test('tied word embeddings: lm_head is embed_tokens when the config ties them', () => {
  const json = { ...smallConfigJson(SMALL), tie_word_embeddings: true };
  const config: OuroConfig = ouroConfigFromJson(json);
  const weights = smallWeights(config, SMALL.seed, 0);
  const untied = new Map(weights);
  untied.set('lm_head.weight', weights.get('model.embed_tokens.weight')!);
  weights.delete('lm_head.weight');
  const tied = OuroModel.bind(config, memorySource(weights), createScalarRuntime());
  const explicit = OuroModel.bind(ouroConfigFromJson(smallConfigJson(SMALL)), memorySource(untied), createScalarRuntime());
  assert.deepEqual(tied.forward([2, 7]).logits, explicit.forward([2, 7]).logits);
});

test('bad calls get typed errors: token ids out of range, a full cache, a foreign cache, bad options', () => {
  const config = ouroConfigFromJson(smallConfigJson(SMALL));
  const model = OuroModel.bind(config, memorySource(smallWeights(config, 1, 0)), createScalarRuntime());
  const code = (f: () => unknown, c: string): void => { assert.throws(f, (e: unknown) => e instanceof PonderError && e.code === c && e.hint.length > 0, c); };
  code(() => model.forward([0, 24]), 'GEN_TOKEN_ID');
  code(() => model.forward([0, -1]), 'GEN_TOKEN_ID');
  code(() => model.forward([0.5]), 'GEN_TOKEN_ID');
  code(() => model.forward([]), 'INPUT_EMPTY');
  const cache = model.newCache(3);
  model.forward([1, 2], { cache });
  code(() => model.forward([3, 4], { cache }), 'CACHE_FULL');
  const other = OuroModel.bind(ouroConfigFromJson({ ...smallConfigJson(SMALL), total_ut_steps: 2 }), memorySource(smallWeights(config, 1, 0)), createScalarRuntime());
  code(() => other.forward([1], { cache: model.newCache(4) }), 'CACHE_MISMATCH');
  code(() => model.forward([1], { exitThreshold: NaN }), 'ARG_INVALID');
  code(() => model.forward([1], { logitsToKeep: -1 }), 'ARG_INVALID');
  code(() => model.newCache(0), 'ARG_INVALID');
  code(() => model.newCache(10_000), 'GEN_CONTEXT');
});
