/**
 * Chat model folders for tests, built like the checkpoints' (config.json, model.safetensors,
 * tokenizer.json, tokenizer_config.json with its chat template) around a *scripted* Ouro: a
 * bigram model whose greedy output is known, so a test can watch a chat end on the template's
 * end-of-turn token, think, or run on until it is cancelled.
 *
 * How the weights script it: each scripted token's embedding is a one-hot slot (every other token
 * shares one fallback slot); every layer's output projections are zero, so the residual stream
 * stays the embedding through all loops (model.norm keeps it a scaled one-hot); lm_head row
 * `next` has a 1 in the slot of `from`, so the logits are √H for `next` and 0 elsewhere.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../src/format/safetensors.js';

export const QWEN2_TOKENIZER = 'test/fixtures/tokenizer-qwen2-style.json';
export const CHAT_FIXTURES = 'test/fixtures/chat';

/** The greedy continuation of each token (token id → next id); `fallback` follows every other token. */
export interface BigramScript {
  next: ReadonlyMap<number, number>;
  fallback: number;
}

/** A chain a → b → c …: each id is followed by the next one. */
export function chain(ids: readonly number[], fallback: number): BigramScript {
  const next = new Map<number, number>();
  for (let i = 0; i + 1 < ids.length; i++) {
    if (next.has(ids[i]) && next.get(ids[i]) !== ids[i + 1]) throw new Error(`chain: token ${ids[i]} has two successors`);
    next.set(ids[i], ids[i + 1]);
  }
  return { next, fallback };
}

export interface ScriptedOuroOptions {
  vocab: number;
  /** positions (max_position_embeddings) */
  context?: number;
  bosEosId?: number;
}

/** config.json and the F32 tensors of a scripted Ouro (1 layer, 4 loops, as the checkpoints loop). */
export function scriptedOuro(script: BigramScript, o: ScriptedOuroOptions): { config: Record<string, unknown>; tensors: Map<string, { shape: number[]; data: Float32Array }> } {
  const from = [...script.next.keys()];
  const H = Math.max(8, Math.ceil((from.length + 1) / 8) * 8), heads = 2, headDim = H / heads, inter = H;
  const config: Record<string, unknown> = {
    architectures: ['OuroForCausalLM'], model_type: 'ouro', vocab_size: o.vocab, hidden_size: H, intermediate_size: inter, num_hidden_layers: 1,
    num_attention_heads: heads, num_key_value_heads: heads, head_dim: headDim, hidden_act: 'silu', max_position_embeddings: o.context ?? 2048,
    rms_norm_eps: 1e-6, rope_theta: 1e6, rope_scaling: null, tie_word_embeddings: false, use_sliding_window: false, total_ut_steps: 4,
    early_exit_threshold: 1.0, ...(o.bosEosId === undefined ? {} : { bos_token_id: o.bosEosId, eos_token_id: o.bosEosId }), torch_dtype: 'float32',
  };
  const slot = new Map(from.map((id, i) => [id, i]));
  const fallbackSlot = from.length;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  const add = (name: string, shape: number[], fill: (data: Float32Array) => void = () => {}): void => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    fill(data);
    tensors.set(name, { shape, data });
  };
  const ones = (d: Float32Array): void => { d.fill(1); };
  // attention and MLP inputs are arbitrary but fixed (their outputs are zeroed by o_proj / down_proj)
  const ramp = (d: Float32Array): void => { for (let i = 0; i < d.length; i++) d[i] = ((i * 7919) % 17 - 8) / 16; };
  add('model.embed_tokens.weight', [o.vocab, H], (d) => { for (let t = 0; t < o.vocab; t++) d[t * H + (slot.get(t) ?? fallbackSlot)] = 1; });
  const p = 'model.layers.0.';
  for (const n of ['q_proj', 'k_proj', 'v_proj']) add(`${p}self_attn.${n}.weight`, [H, H], ramp);
  add(`${p}self_attn.o_proj.weight`, [H, H]);
  add(`${p}mlp.gate_proj.weight`, [inter, H], ramp);
  add(`${p}mlp.up_proj.weight`, [inter, H], ramp);
  add(`${p}mlp.down_proj.weight`, [H, inter]);
  for (const n of ['input_layernorm', 'input_layernorm_2', 'post_attention_layernorm', 'post_attention_layernorm_2']) add(`${p}${n}.weight`, [H], ones);
  add('model.norm.weight', [H], ones);
  add('model.early_exit_gate.weight', [1, H]);
  add('model.early_exit_gate.bias', [1]);
  add('lm_head.weight', [o.vocab, H], (d) => {
    for (const [a, b] of script.next) d[b * H + slot.get(a)!] = 1;
    d[script.fallback * H + fallbackSlot] = 1;
  });
  return { config, tensors };
}

export function safetensorsBytes(tensors: Map<string, { shape: number[]; data: Float32Array }>): Uint8Array {
  return writeSafetensors([...tensors].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data })));
}

/** A chat fixture's template and tokenizer_config.json, as transformers saves them (chat_template inside). */
export function fixtureTokenizerConfig(fixture: string): Record<string, unknown> {
  const f = JSON.parse(readFileSync(join(CHAT_FIXTURES, `${fixture}.json`), 'utf8')) as { template: string; tokenizer_config: Record<string, unknown> };
  return { ...f.tokenizer_config, chat_template: f.template };
}

/** Writes a model folder: config.json, model.safetensors, tokenizer.json, tokenizer_config.json (+ any extra files). */
export function writeChatModel(dir: string, model: ReturnType<typeof scriptedOuro>, tokenizerConfig: Record<string, unknown>, extra: Record<string, string> = {}): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(model.config, null, 2) + '\n');
  writeFileSync(join(dir, 'model.safetensors'), safetensorsBytes(model.tensors));
  writeFileSync(join(dir, 'tokenizer.json'), readFileSync(QWEN2_TOKENIZER, 'utf8'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, name), text);
  return dir;
}

/**
 * Ids of the Qwen2-style fixture tokenizer (test/fixtures/tokenizer-qwen2-style.json): bytes keep
 * their byte value, "\n\n" is 272, "Hello" 259, and the added tokens sit at 400-404.
 */
export const QWEN2 = { newline: 10, twoNewlines: 272, hello: 259, bang: 33, h: 104, m: 109, a: 97, b: 98, endoftext: 400, imStart: 401, imEnd: 402, think: 403, endThink: 404 } as const;

/** The committed fixture's script: after a generation prompt ("…assistant\n") it answers "<think>hm</think>\n\nHello!" and ends the turn. */
export const GREETER = chain([QWEN2.newline, QWEN2.think, QWEN2.h, QWEN2.m, QWEN2.endThink, QWEN2.twoNewlines, QWEN2.hello, QWEN2.bang, QWEN2.imEnd], QWEN2.imEnd);
