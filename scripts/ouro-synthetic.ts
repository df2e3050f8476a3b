/**
 * Writes a synthetic Ouro checkpoint with the real shapes (default: Ouro-1.4B, ~2.9 GB of bf16)
 * for bench/ouro.bench.ts: config.json plus two safetensors shards and
 * model.safetensors.index.json, exactly the layout of a Hugging Face sharded checkpoint.
 * The weights are random (seeded) and meaningless; they are drawn like the golden generator's
 * (linears with std 1/√fan_in, norms 1 ± 0.1, exit gate 3/√H so tokens exit at different loops),
 * from a uniform distribution with the same standard deviation (fast to draw; the shape of the
 * distribution does not matter for speed or memory).
 *
 *   node --import tsx scripts/ouro-synthetic.ts [OUT_DIR] [--layers 24] [--seed 1]
 *
 * OUT_DIR defaults to /tmp/ouro-1.4b-synthetic (outside the repository: never commit it).
 * Tensors are streamed to disk one at a time, so memory stays at one tensor.
 */
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { layers: { type: 'string', default: '24' }, seed: { type: 'string', default: '1' } },
});
const outDir = positionals[0] ?? '/tmp/ouro-1.4b-synthetic';
const layers = Number(values.layers);
const seed = Number(values.seed);

// Ouro-1.4B (research/ouro.md §1); --layers 48 gives the 2.6B shapes.
const config = {
  architectures: ['OuroForCausalLM'], model_type: 'ouro', vocab_size: 49152, hidden_size: 2048, intermediate_size: 5632,
  num_hidden_layers: layers, num_attention_heads: 16, num_key_value_heads: 16, head_dim: 128, hidden_act: 'silu',
  max_position_embeddings: 65536, rope_theta: 1000000.0, rope_scaling: null, rms_norm_eps: 1e-6, tie_word_embeddings: false,
  use_sliding_window: false, total_ut_steps: 4, early_exit_threshold: 1.0, torch_dtype: 'bfloat16', use_cache: true,
  bos_token_id: 0, eos_token_id: 0, pad_token_id: 0,
};
const H = config.hidden_size, I = config.intermediate_size, V = config.vocab_size;

interface Spec { name: string; shape: number[]; draw: 'linear' | 'embed' | 'norm' | 'gate' | 'gate_bias' }
const specs: Spec[] = [{ name: 'model.embed_tokens.weight', shape: [V, H], draw: 'embed' }];
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

// xorshift32 → uniform in [-1, 1); scaled by √3·σ it has standard deviation σ.
let state = (seed * 2654435761) >>> 0 || 1;
function nextUniform(): number {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state / 2147483648 - 1;
}
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function bf16(x: number): number { f32[0] = x; return (u32[0] + 0x7fff + ((u32[0] >>> 16) & 1)) >>> 16; }

function fill(spec: Spec, out: Uint16Array): void {
  const fanIn = spec.shape[spec.shape.length - 1];
  const sqrt3 = Math.sqrt(3);
  for (let i = 0; i < out.length; i++) {
    const u = nextUniform() * sqrt3; // std 1
    let x: number;
    switch (spec.draw) {
      case 'linear': x = u / Math.sqrt(fanIn); break;
      case 'embed': x = u; break;
      case 'norm': x = 1 + 0.1 * u; break;
      case 'gate': x = (3 * u) / Math.sqrt(H); break;
      case 'gate_bias': x = 0.5 * u; break;
    }
    out[i] = bf16(x);
  }
}

// Two shards: the first half of the layers with the embedding, the rest with norm, gate and lm_head.
const split = specs.findIndex((s) => s.name.startsWith(`model.layers.${Math.floor(layers / 2)}.`));
const shards = [specs.slice(0, split), specs.slice(split)];
const fileNames = shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');

const weightMap: Record<string, string> = {};
let totalBytes = 0;
const started = performance.now();
shards.forEach((shard, si) => {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', note: 'synthetic random weights (scripts/ouro-synthetic.ts)' } };
  let offset = 0;
  for (const s of shard) {
    const bytes = 2 * s.shape.reduce((a, b) => a * b, 1);
    header[s.name] = { dtype: 'BF16', shape: s.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
    weightMap[s.name] = fileNames[si];
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const prefix = new Uint8Array(8 + padded).fill(0x20);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded), true);
  prefix.set(json, 8);
  const fd = openSync(join(outDir, fileNames[si]), 'w');
  try {
    writeSync(fd, prefix);
    for (const s of shard) {
      const data = new Uint16Array(s.shape.reduce((a, b) => a * b, 1));
      fill(s, data);
      writeSync(fd, new Uint8Array(data.buffer));
    }
  } finally {
    closeSync(fd);
  }
  totalBytes += offset;
  console.log(`wrote ${fileNames[si]}: ${shard.length} tensors, ${(offset / 1e9).toFixed(2)} GB`);
});
writeFileSync(join(outDir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2) + '\n');
console.log(`${outDir}: ${(totalBytes / 1e9).toFixed(2)} GB of bf16 weights in ${((performance.now() - started) / 1000).toFixed(1)} s`);
