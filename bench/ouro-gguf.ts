/**
 * The decoder of one Ouro-1.4B loop as a Llama-architecture GGUF for llama.cpp (native through
 * node-llama-cpp, WebAssembly through wllama): 24 layers, hidden 2048, 16 heads × 128 (no GQA),
 * FFN 5632 (SwiGLU), vocabulary 49152, RoPE θ 1e6, RMSNorm ε 1e-6 — the shapes ponder's Ouro runs
 * once per loop (scripts/ouro-synthetic.ts writes them in Ouro's own layout). Ouro's two extra
 * norms per layer (a few thousand flops) have no Llama counterpart and are left out.
 * Random weights (uniform, std 1/√fan_in for linears, 0.02 for the embedding; norms 1 ± 0.1 in
 * F32, as llama.cpp expects); every matrix, embedding and output included, in the chosen type.
 * A SentencePiece-style vocabulary (<unk>, <s>, </s>, 256 byte tokens, then ▁t<i>) so llama.cpp
 * loads it as a normal model; the benchmark feeds token ids, never text.
 *
 *   node --import tsx bench/ouro-gguf.ts OUT_DIR [--types BF16,Q8_0,Q4_0] [--layers 24] [--split-bytes N]
 *
 * writes OUT_DIR/ouro-1.4b-loop-<type>.gguf (or shards, when a file would exceed --split-bytes).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { GGUF_FILE_TYPE, writeGguf, type GgmlType, type MetaValue, type TensorSpec } from './gguf.js';

export const OURO_LOOP = { layers: 24, hidden: 2048, heads: 16, headDim: 128, ffn: 5632, vocab: 49152, ropeTheta: 1e6, eps: 1e-6, context: 65536 };

/** xorshift32 → uniform in [−1, 1): √3·σ·u has standard deviation σ. */
function uniform(seed: number): () => number {
  let s = (seed * 2654435761) >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2147483648 - 1;
  };
}

function randomFill(std: number, seed: number): (out: Float32Array) => void {
  const next = uniform(seed);
  const a = Math.sqrt(3) * std;
  return (out) => { for (let i = 0; i < out.length; i++) out[i] = a * next(); };
}

function normFill(seed: number): (out: Float32Array) => void {
  const next = uniform(seed);
  return (out) => { for (let i = 0; i < out.length; i++) out[i] = 1 + 0.1 * next(); };
}

function vocabulary(n: number): Record<string, MetaValue> {
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3]; // UNKNOWN, CONTROL, CONTROL
  for (let b = 0; b < 256; b++) { tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`); types.push(6); } // BYTE
  while (tokens.length < n) { tokens.push(`▁t${tokens.length}`); types.push(1); } // NORMAL
  const scores = new Float32Array(n).map((_, i) => -i);
  return {
    'tokenizer.ggml.model': { type: 'string', value: 'llama' },
    'tokenizer.ggml.tokens': { type: 'string[]', value: tokens },
    'tokenizer.ggml.scores': { type: 'f32[]', value: scores },
    'tokenizer.ggml.token_type': { type: 'i32[]', value: Int32Array.from(types) },
    'tokenizer.ggml.unknown_token_id': { type: 'u32', value: 0 },
    'tokenizer.ggml.bos_token_id': { type: 'u32', value: 1 },
    'tokenizer.ggml.eos_token_id': { type: 'u32', value: 2 },
    'tokenizer.ggml.add_bos_token': { type: 'bool', value: false },
  };
}

/** Writes the model in `type`; returns the file paths (one, or the shards). */
export function writeOuroLoopGguf(dir: string, type: Exclude<GgmlType, 'F32'>, options: { layers?: number; seed?: number; splitBytes?: number; onTensor?: (name: string) => void } = {}): string[] {
  const c = { ...OURO_LOOP, layers: options.layers ?? OURO_LOOP.layers };
  const seed = options.seed ?? 1;
  const H = c.hidden, I = c.ffn, V = c.vocab;
  const meta: Record<string, MetaValue> = {
    'general.architecture': { type: 'string', value: 'llama' },
    'general.name': { type: 'string', value: `ouro-1.4b-loop-synthetic-${type.toLowerCase()}` },
    'general.file_type': { type: 'u32', value: GGUF_FILE_TYPE[type] },
    'general.alignment': { type: 'u32', value: 32 },
    'llama.context_length': { type: 'u32', value: c.context },
    'llama.embedding_length': { type: 'u32', value: H },
    'llama.block_count': { type: 'u32', value: c.layers },
    'llama.feed_forward_length': { type: 'u32', value: I },
    'llama.attention.head_count': { type: 'u32', value: c.heads },
    'llama.attention.head_count_kv': { type: 'u32', value: c.heads },
    'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: c.eps },
    'llama.rope.freq_base': { type: 'f32', value: c.ropeTheta },
    'llama.rope.dimension_count': { type: 'u32', value: c.headDim },
    'llama.vocab_size': { type: 'u32', value: V },
    ...vocabulary(V),
  };
  let s = seed * 1000;
  const linear = (name: string, inF: number, outF: number): TensorSpec => ({ name, dims: [inF, outF], type, fill: randomFill(1 / Math.sqrt(inF), ++s) });
  const norm = (name: string): TensorSpec => ({ name, dims: [H], type: 'F32', fill: normFill(++s) });
  const tensors: TensorSpec[] = [{ name: 'token_embd.weight', dims: [H, V], type, fill: randomFill(0.02, ++s) }];
  for (let l = 0; l < c.layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(norm(p + 'attn_norm.weight'));
    for (const x of ['attn_q', 'attn_k', 'attn_v', 'attn_output']) tensors.push(linear(`${p}${x}.weight`, H, H));
    tensors.push(norm(p + 'ffn_norm.weight'));
    tensors.push(linear(p + 'ffn_gate.weight', H, I), linear(p + 'ffn_up.weight', H, I), linear(p + 'ffn_down.weight', I, H));
  }
  tensors.push(norm('output_norm.weight'), linear('output.weight', H, V));
  mkdirSync(dir, { recursive: true });
  return writeGguf(join(dir, `ouro-1.4b-loop-${type.toLowerCase()}.gguf`), meta, tensors, options.splitBytes ?? Infinity, options.onTensor);
}

/** The paths writeOuroLoopGguf would write, if they all exist already; else null. */
export function existingOuroLoopGguf(dir: string, type: string, splitBytes = Infinity): string[] | null {
  const single = join(dir, `ouro-1.4b-loop-${type.toLowerCase()}.gguf`);
  if (splitBytes === Infinity) return existsSync(single) ? [single] : null;
  for (let n = 1; n <= 16; n++) {
    const paths = n === 1 ? [single] : Array.from({ length: n }, (_, i) => single.replace(/\.gguf$/, `-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.gguf`));
    if (paths.every((p) => existsSync(p))) return paths;
  }
  return null;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { types: { type: 'string', default: 'BF16,Q8_0,Q4_0' }, layers: { type: 'string', default: '24' }, 'split-bytes': { type: 'string' } },
  });
  const dir = positionals[0] ?? '/work/big/ouro-gguf';
  for (const type of values.types!.split(',') as Exclude<GgmlType, 'F32'>[]) {
    const t0 = performance.now();
    const paths = writeOuroLoopGguf(dir, type, { layers: Number(values.layers), splitBytes: values['split-bytes'] ? Number(values['split-bytes']) : undefined });
    console.log(`${type}: ${paths.join(', ')} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
}
