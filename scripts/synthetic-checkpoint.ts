/**
 * Synthetic checkpoints with the published configs and tensor names (random bf16 weights, never
 * committed): the one writer behind every full-size check and benchmark.
 *
 *   node --import tsx scripts/synthetic-checkpoint.ts huginn-0125 /work/big/huginn-0125-synthetic
 *   node --import tsx scripts/synthetic-checkpoint.ts ouro-2.6b /work/big/ouro-2.6b-synthetic
 *   node --import tsx scripts/synthetic-checkpoint.ts ouro-1.4b /work/big/ouro-1.4b-synthetic [--shards 2]
 *
 * What each one is, as its users download it (research/checkpoints.md):
 *   huginn-0125  config.json as published (model_type huginn_raven, architectures RavenForCausalLM,
 *                auto_map, the RavenConfig fields), generation_config.json, 4 bf16 safetensors shards +
 *                model.safetensors.index.json: the state_dict names, the tied embedding stored twice
 *                (transformer.wte.weight and lm_head.weight, equal) and the persistent freqs_cis buffer
 *                (the bf16 RoPE table). 3.56 B parameters, 7.1 GB.
 *   ouro-1.4b/2.6b  config.json as published (24 / 48 layers), one bf16 model.safetensors (2.9 / 5.3 GB).
 * `--shards N` splits the tensors over N files with an index (by bytes, in tensor order).
 *
 * Tensors are streamed to disk one at a time (memory stays at one tensor, two while Huginn's tied
 * embedding waits for its copy). The values are drawn by
 * huginnCheckpoint (upstream's init scales) and ouroCheckpoint (the golden
 * generator's scales); they are meaningless, only their shapes, names, dtypes and scale matter.
 * A file is written under a temporary name and renamed when complete, so an interrupted run
 * leaves no half-written checkpoint that looks whole.
 */
import { closeSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { HUGINN_0125_CONFIG, parseHuginnConfig } from '../src/models/huginn-config.js';
import { huginnTensors } from '../src/models/huginn-config.js';
import { ropeTables } from '../src/models/common.js';
import { createScalarRuntime } from '../src/runtime/runtime.js';
import { f32ToBf16Bits } from '../src/kernels/scalar.js';
import { huginnInitScales } from '../bench/huginn-synthetic.js';

/** One bf16 tensor to write: `fill` writes its values (bf16 bits) into `out`. */
export interface SyntheticTensor {
  readonly name: string;
  readonly shape: readonly number[];
  fill(out: Uint16Array): void;
}

export interface SyntheticCheckpoint {
  readonly config: Record<string, unknown>;
  readonly generationConfig?: Record<string, unknown>;
  readonly tensors: readonly SyntheticTensor[];
}

const elementsOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Splits `tensors` (in order) into `files` contiguous runs of about equal bytes. */
function splitByBytes(tensors: readonly SyntheticTensor[], files: number): SyntheticTensor[][] {
  const total = tensors.reduce((a, t) => a + elementsOf(t.shape), 0);
  const out: SyntheticTensor[][] = Array.from({ length: files }, () => []);
  let done = 0;
  for (const t of tensors) {
    const n = elementsOf(t.shape);
    out[Math.min(files - 1, Math.floor(((done + n / 2) * files) / total))].push(t);
    done += n;
  }
  return out.filter((f) => f.length > 0);
}

/**
 * Writes config.json (and generation_config.json), then the tensors as bf16 safetensors: one
 * model.safetensors, or `files` shards named as Hugging Face names them with
 * model.safetensors.index.json. Returns the bytes of tensor data written.
 */
export function writeSyntheticCheckpoint(outDir: string, checkpoint: SyntheticCheckpoint, files = 1, log: (line: string) => void = () => {}): number {
  mkdirSync(outDir, { recursive: true });
  const shards = splitByBytes(checkpoint.tensors, files);
  const names = shards.length === 1 ? ['model.safetensors'] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
  const weightMap: Record<string, string> = {};
  let totalBytes = 0;
  const started = performance.now();
  shards.forEach((shard, si) => {
    const header: Record<string, unknown> = { __metadata__: { format: 'pt', note: 'synthetic random weights (scripts/synthetic-checkpoint.ts)' } };
    let offset = 0;
    for (const t of shard) {
      const bytes = 2 * elementsOf(t.shape);
      header[t.name] = { dtype: 'BF16', shape: t.shape, data_offsets: [offset, offset + bytes] };
      offset += bytes;
      weightMap[t.name] = names[si];
    }
    const json = new TextEncoder().encode(JSON.stringify(header));
    const padded = Math.ceil(json.length / 8) * 8;
    const prefix = new Uint8Array(8 + padded).fill(0x20);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(padded), true);
    prefix.set(json, 8);
    const path = join(outDir, names[si]), partial = path + '.partial';
    const fd = openSync(partial, 'w');
    try {
      writeSync(fd, prefix);
      for (const t of shard) {
        const data = new Uint16Array(elementsOf(t.shape));
        t.fill(data);
        const bytes = new Uint8Array(data.buffer);
        for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at, Math.min(bytes.length - at, 1 << 30));
      }
    } finally {
      closeSync(fd);
    }
    renameSync(partial, path);
    totalBytes += offset;
    log(`wrote ${names[si]}: ${shard.length} tensors, ${(offset / 1e9).toFixed(2)} GB (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  });
  if (shards.length > 1) writeFileSync(join(outDir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2) + '\n');
  writeFileSync(join(outDir, 'config.json'), JSON.stringify(checkpoint.config, null, 2) + '\n');
  if (checkpoint.generationConfig) writeFileSync(join(outDir, 'generation_config.json'), JSON.stringify(checkpoint.generationConfig, null, 2) + '\n');
  return totalBytes;
}

// ---------------------------------------------------------------------------------------------
// Huginn-0125

/**
 * huginn-0125's config.json as published (huginn.md §1, §7): RavenConfig's fields, what
 * PretrainedConfig adds on save, and the auto_map to the remote code. `overrides` shrink it for tests.
 */
export function huginnPublishedConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = { ...HUGINN_0125_CONFIG, ...overrides };
  const E = base.n_embd as number, P = base.n_layers_in_prelude as number, R = base.n_layers_in_recurrent_block as number, C = base.n_layers_in_coda as number;
  const depth = P + C + R * (base.mean_recurrence as number);
  const std = Math.sqrt(2 / (5 * E));
  return {
    activation_checkpoint_impl: 'per-iteration', architecture_class_name: 'RecurrentGPT', architectures: ['RavenForCausalLM'],
    auto_map: { AutoConfig: 'raven_config_minimal.RavenConfig', AutoModelForCausalLM: 'raven_modeling_minimal.RavenForCausalLM' },
    bias: base.bias, block_class_name: 'SandwichBlock', block_size: base.block_size, bos_token_id: 65504, eos_token_id: 65505,
    effective_expected_depth: depth, head_dim: E / (base.n_heads as number), init_orthogonal: false, init_strategy: 'takase',
    init_values: { embed_scale: Math.sqrt(E), embedding: std, out_proj: std / Math.sqrt(2 * depth), std },
    injection_type: 'linear', intermediate_size: base.intermediate_size, mean_backprop_depth: base.mean_backprop_depth,
    mean_recurrence: base.mean_recurrence, mlp_class_name: 'GatedMLP', model_type: 'huginn_raven', n_embd: E, n_heads: base.n_heads,
    n_layers: P + R + C, n_layers_in_coda: C, n_layers_in_prelude: P, n_layers_in_recurrent_block: R, nonlin_name: 'SiLU',
    norm_class_name: 'RMSNorm_llama', norm_eps: base.norm_eps, num_key_value_heads: base.n_heads, pad_token_id: 65509,
    padded_vocab_size: base.vocab_size, padding_multiple: base.padding_multiple, qk_bias: base.qk_bias, rope_base: base.rope_base,
    sampling_scheme: 'poisson-lognormal-filling', state_init: 'like-init', test_time_noise: 0, test_time_noise_type: 'fixed',
    tie_embeddings: base.tie_embeddings, tie_word_embeddings: base.tie_embeddings, torch_dtype: 'bfloat16', transformers_version: '4.44.2',
    use_cache: true, vocab_size: base.vocab_size,
  };
}

/** The repo's generation config (vllm/generation_config.json): stops 65505 and 65508, sampling at 0.7. */
export const HUGINN_GENERATION_CONFIG = { bos_token_id: 65504, eos_token_id: [65505, 65508], pad_token_id: 65509, do_sample: true, temperature: 0.7 };

/**
 * A Huginn checkpoint as upstream saves it: every state_dict entry, the tied copy and freqs_cis
 * included. Values at upstream's "takase" init scales (bench/huginn-synthetic.ts: std √(2/(5E)),
 * output projections std/√(2·effective depth), norms 1, qk_bias 0), drawn uniform with that standard
 * deviation by the same fast stream as Ouro's (the truncated normal of bench/huginn-synthetic.ts
 * costs ~100 ns per value: 6 minutes for the full size).
 */
export function huginnCheckpoint(rawConfig: Record<string, unknown>, seed = 1): SyntheticCheckpoint {
  const config = parseHuginnConfig(rawConfig, 'synthetic huginn');
  const { std, outStd } = huginnInitScales(config);
  const draw = uniformStream(seed);
  const tensors: SyntheticTensor[] = huginnTensors(config).map((t) => {
    if (t.name === 'freqs_cis') {
      // [1, block_size, 1, hd/2, 2]: (cos, sin) per position and pair, upstream's table in bf16 (model.to(bfloat16))
      return {
        name: t.name, shape: t.shape, fill: (out) => {
          const { cos, sin } = ropeTables(createScalarRuntime(), config.headDim, config.blockSize, config.ropeBase);
          for (let i = 0; i < cos.length; i++) { out[2 * i] = f32ToBf16Bits(cos[i]); out[2 * i + 1] = f32ToBf16Bits(sin[i]); }
        },
      };
    }
    const isNorm = t.name.includes('norm') || t.name.endsWith('ln_f.weight');
    const sd = isNorm || t.name.endsWith('qk_bias') ? 0 : t.name.endsWith('proj.weight') ? outStd : std;
    return { name: t.name, shape: t.shape, fill: (out) => draw(out, sd, isNorm ? 1 : 0) };
  });
  // the tied lm_head is saved as a second copy of the embedding: the same values
  if (config.tieEmbeddings) {
    const wte = tensors.find((t) => t.name === 'transformer.wte.weight')!;
    let copy: Uint16Array | null = null;
    const wteFill = wte.fill;
    tensors[tensors.indexOf(wte)] = { ...wte, fill: (out) => { wteFill(out); copy = out.slice(); } };
    const head = tensors.findIndex((t) => t.name === 'lm_head.weight');
    tensors[head] = { ...tensors[head], fill: (out) => { out.set(copy!); copy = null; } };
  }
  return { config: rawConfig, generationConfig: HUGINN_GENERATION_CONFIG, tensors };
}

/**
 * Fills bf16 tensors with mean + uniform noise of standard deviation `std` from one xorshift32
 * stream (uniform in [-1, 1) scaled by √3·std), tensor after tensor in the order they are filled.
 */
function uniformStream(seed: number): (out: Uint16Array, std: number, mean: number) => void {
  let state = (seed * 2654435761) >>> 0 || 1;
  return (out, std, mean) => {
    const scale = Math.sqrt(3) * std;
    for (let i = 0; i < out.length; i++) {
      state ^= state << 13; state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5; state >>>= 0;
      out[i] = f32ToBf16Bits(mean + (state / 2147483648 - 1) * scale);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Ouro

/** Ouro's config.json as published (ouro.md §1, §9): Ouro-1.4B with 24 layers, Ouro-2.6B with 48. */
export function ouroPublishedConfig(layers: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['OuroForCausalLM'], attention_dropout: 0.0,
    auto_map: { AutoConfig: 'configuration_ouro.OuroConfig', AutoModel: 'modeling_ouro.OuroModel', AutoModelForCausalLM: 'modeling_ouro.OuroForCausalLM' },
    bos_token_id: 0, eos_token_id: 0, pad_token_id: 0, head_dim: 128, hidden_act: 'silu', hidden_size: 2048, initializer_range: 0.02,
    intermediate_size: 5632, layer_types: Array.from({ length: layers }, () => 'full_attention'), max_position_embeddings: 65536,
    max_window_layers: layers, model_type: 'ouro', num_attention_heads: 16, num_hidden_layers: layers, num_key_value_heads: 16,
    rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 1000000.0, sliding_window: null, tie_word_embeddings: false, torch_dtype: 'bfloat16',
    total_ut_steps: 4, early_exit_threshold: 1.0, transformers_version: '4.55.0', use_cache: true, use_sliding_window: false, vocab_size: 49152,
    ...overrides,
  };
}

/**
 * Ouro's tensors with values drawn like the golden generator's (linears std 1/√fan_in, norms 1 ± 0.1,
 * exit gate 3/√H so tokens exit at different loops), uniform with that standard deviation (fast; the
 * distribution's shape does not matter for speed or memory): uniformStream in tensor order.
 */
export function ouroCheckpoint(config: Record<string, unknown>, seed = 1): SyntheticCheckpoint {
  const H = config.hidden_size as number, I = config.intermediate_size as number, V = config.vocab_size as number, layers = config.num_hidden_layers as number;
  type Draw = 'linear' | 'embed' | 'norm' | 'gate' | 'gate_bias';
  const specs: { name: string; shape: number[]; draw: Draw }[] = [{ name: 'model.embed_tokens.weight', shape: [V, H], draw: 'embed' }];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    for (const x of ['q', 'k', 'v', 'o']) specs.push({ name: `${p}self_attn.${x}_proj.weight`, shape: [H, H], draw: 'linear' });
    specs.push({ name: p + 'mlp.gate_proj.weight', shape: [I, H], draw: 'linear' });
    specs.push({ name: p + 'mlp.up_proj.weight', shape: [I, H], draw: 'linear' });
    specs.push({ name: p + 'mlp.down_proj.weight', shape: [H, I], draw: 'linear' });
    for (const n of ['input_layernorm', 'input_layernorm_2', 'post_attention_layernorm', 'post_attention_layernorm_2']) specs.push({ name: `${p}${n}.weight`, shape: [H], draw: 'norm' });
  }
  specs.push({ name: 'model.norm.weight', shape: [H], draw: 'norm' });
  specs.push({ name: 'model.early_exit_gate.weight', shape: [1, H], draw: 'gate' });
  specs.push({ name: 'model.early_exit_gate.bias', shape: [1], draw: 'gate_bias' });
  specs.push({ name: 'lm_head.weight', shape: [V, H], draw: 'linear' });

  const draw = uniformStream(seed);
  const tensors = specs.map((s): SyntheticTensor => ({
    name: s.name, shape: s.shape, fill: (out) => {
      const fanIn = s.shape[s.shape.length - 1];
      const std = s.draw === 'linear' ? 1 / Math.sqrt(fanIn) : s.draw === 'embed' ? 1 : s.draw === 'norm' ? 0.1 : s.draw === 'gate' ? 3 / Math.sqrt(H) : 0.5;
      draw(out, std, s.draw === 'norm' ? 1 : 0);
    },
  }));
  return { config, tensors };
}

// ---------------------------------------------------------------------------------------------

const MODELS: Record<string, { files: number; make: (seed: number) => SyntheticCheckpoint }> = {
  'huginn-0125': { files: 4, make: (seed) => huginnCheckpoint(huginnPublishedConfig(), seed) },
  'ouro-1.4b': { files: 1, make: (seed) => ouroCheckpoint(ouroPublishedConfig(24), seed) },
  'ouro-2.6b': { files: 1, make: (seed) => ouroCheckpoint(ouroPublishedConfig(48), seed) },
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { seed: { type: 'string', default: '1' }, shards: { type: 'string' } } });
  const [model, outDir] = positionals;
  if (!MODELS[model] || !outDir) {
    console.error(`usage: synthetic-checkpoint.ts ${Object.keys(MODELS).join('|')} OUT_DIR [--seed 1] [--shards N]`);
    process.exit(2);
  }
  const started = performance.now();
  const bytes = writeSyntheticCheckpoint(outDir, MODELS[model].make(Number(values.seed)), Number(values.shards ?? MODELS[model].files), (l) => console.log(l));
  console.log(`${outDir}: ${model}, ${(bytes / 1e9).toFixed(2)} GB of bf16 in ${((performance.now() - started) / 1000).toFixed(0)} s`);
}
