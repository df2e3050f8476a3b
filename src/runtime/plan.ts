/**
 * The memory plan: every byte a model will hold, computed from config.json, the family's tensor
 * list and the safetensors headers only (no tensor data is read), before anything is allocated.
 *
 *   tensors + stored dtypes ─boundTensorBytes─▶ weight bytes per group ─┐
 *   family.memory(config) ─▶ KV values per token per group, work bytes ─┼─▶ groups → memory shards
 *   context, KV dtype, limits ─────────────────────────────────────────┘     (first fit, family order)
 *
 * A memory shard is one WebAssembly memory (wasm32: at most 4 GiB) with its own kernel instance.
 * Groups (a layer, a block, the head) are assigned to shards contiguously in family order, first
 * fit, each shard at most `shardLimitBytes` (4 GiB minus MEMORY_PLAN_RESERVE_BYTES). Shard 0 is
 * the home shard: it also holds the work buffers every call uses (the hidden state, RoPE tables,
 * logits). A group's KV cache lives in the group's shard. What lives on the JS heap (embedding
 * tables kept in their stored dtype, Huginn's KV cache, the one tensor being read) is `hostBytes`.
 *
 * The plan refuses (MEM_OVER_LIMIT) when the whole does not fit the machine (os.totalmem() in Node,
 * navigator.deviceMemory on a page, or the caller's maxMemory), and says what would fit: a shorter
 * context, a narrower KV dtype, quantized weights. A group bigger than one shard is
 * MEM_MODEL_TOO_LARGE.
 */
import { PonderError } from '../errors.js';
import type { DType } from '../format/safetensors.js';
import { WASM_MAX_BYTES } from './wasm-arena.js';
import { ATTENTION_VALUE_CHUNK, ATTENTION_WIDEN_MAX_BYTES } from '../kernels/wasm-exports.js';

import type { KvDType } from '../kernels/kernels.js';

/** How the KV cache stores keys and values (src/kernels/kernels.ts). f32 is what conformance uses. */
export type { KvDType };
export const KV_DTYPES: readonly KvDType[] = ['f32', 'bf16', 'f16'];
export const KV_DTYPE_BYTES: Readonly<Record<KvDType, number>> = { f32: 4, bf16: 2, f16: 2 };

/**
 * Headroom kept below the wasm32 4 GiB ceiling of every shard for what the plan does not count
 * exactly: the module's static data, the alignment padding of every allocation (src/runtime/wasm-arena.ts), and the
 * geometric growth of work buffers (src/models/workspace.ts).
 */
export const MEMORY_PLAN_RESERVE_BYTES = 64 * 1024 * 1024;
/** The largest shard the plan makes by default: 4 GiB minus the reserve. */
export const MEMORY_PLAN_LIMIT_BYTES = WASM_MAX_BYTES - MEMORY_PLAN_RESERVE_BYTES;
/** Work buffers are planned for calls of up to this many tokens at once (a longer prompt grows them). */
export const PLAN_CALL_ROWS = 512;

/** How a weight stored in MLX's quantized layout is quantized (src/models/quantized.ts). */
export interface StoredQuant {
  readonly bits: 8 | 4;
  readonly groupSize: number;
}

/**
 * Bytes a tensor occupies once bound, from its stored dtype: what WeightBinder does with it. The one
 * place a weight format's bytes per weight enter the plan. `shape` is the logical one ([N, K] for a
 * quantized weight, not its packed words').
 *   linear  quantized: the panels of assembly/linear-quant.ts (16-column panels; per group of
 *           `groupSize` k-steps 16 f32 scales, 16 f32 biases and the codes);
 *           BF16 stays BF16 (2 bytes); F32 and F16 become f32 (4)
 *   f32     widened to f32 (4)
 *   embedding, buffer: 0 in the shards (the embedding stays on the JS heap in its stored form)
 */
export function boundTensorBytes(bind: PlanTensor['bind'], stored: DType, shape: readonly number[], quant?: StoredQuant): number {
  const elements = shape.reduce((a, b) => a * b, 1);
  if (bind === 'linear' && quant) {
    const [N, K] = shape;
    return Math.ceil(N / 16) * (K / quant.groupSize) * (128 + quant.groupSize * 2 * quant.bits);
  }
  if (bind === 'linear') return (stored === 'BF16' ? 2 : 4) * elements;
  if (bind === 'f32') return 4 * elements;
  return 0;
}

/**
 * What a family's memory plan needs beyond its tensor list (below), from the config
 * alone. KV values count keys and values together, per token.
 */
export interface MemoryNeeds {
  /** KV values per token each group keeps in its memory shard (a layer's cache lives with the layer) */
  readonly kvPerToken: ReadonlyMap<string, number>;
  /** KV values per token kept on the JS heap (Huginn's cache, at the default depth) */
  readonly hostKvPerToken: number;
  /** bytes of the home shard's work buffers and tables for a context of `context` and calls of up to `rows` tokens */
  workBytes(context: number, rows: number): number;
  /** query heads: attention's per-thread scratch is one score row per head */
  readonly attentionUnits: number;
  /** their head dim: past one value chunk, decode's scratch adds a row of that many f32 per head and chunk */
  readonly attentionHeadDim: number;
  /** the longest context the config allows, and the field that says so */
  readonly maxContext: number;
  readonly contextField: string;
}

/** What the plan reads of a tensor the family lists (models/family.ts TensorSpec extends it). */
export interface PlanTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly bind: 'linear' | 'f32' | 'embedding' | 'buffer';
  /** the layer or block it belongs to ('embed', 'prelude.0', 'core.3', 'layers.7', 'head', …): what a memory plan partitions by */
  readonly group: string;
  /** another name of the same parameter (a tied lm_head is its embedding; MoR's shared layers): stored under every name, or once */
  readonly sameAs?: string;
}

/** Bytes of a stored tensor (safetensors dtypes the binder accepts). */
/** Bytes of a tensor as stored in the checkpoint (quantized: its codes, scales and biases). */
function storedBytes(dtype: DType, elements: number, quant?: StoredQuant): number {
  if (quant) return (elements * quant.bits) / 8 + 2 * (elements / quant.groupSize) * (dtype === 'F32' ? 4 : 2);
  return (dtype === 'F32' ? 4 : 2) * elements;
}

export interface ShardPlan {
  /** the groups this shard holds, in family order */
  readonly groups: string[];
  readonly weightBytes: number;
  readonly kvBytes: number;
  /** work buffers (home shard), staging of the hidden state and kernel scratch */
  readonly workBytes: number;
  readonly totalBytes: number;
}

export interface MemoryPlan {
  readonly label: string;
  readonly context: number;
  readonly kvDtype: KvDType;
  readonly shards: readonly ShardPlan[];
  /** group → shard index */
  readonly shardOf: ReadonlyMap<string, number>;
  /** JS-heap bytes: embedding tables, KV kept on the heap, the largest tensor while it is read */
  readonly hostBytes: number;
  /** everything: shards + host */
  readonly totalBytes: number;
  /** the machine limit the plan was checked against */
  readonly limitBytes: number;
  readonly limitSource: string;
  /** the longest context that fits the limit at each KV dtype (0: not even one token) */
  readonly contextCapacity: Readonly<Record<KvDType, number>>;
}

export interface PlanOptions {
  /** tokens a sequence may hold (prompt + generated). Default: the config's context. */
  context?: number;
  /** Default f32. */
  kvDtype?: KvDType;
  /** the machine limit in bytes; default `hostMemoryBytes` (Infinity when unknown) */
  maxMemory?: number;
  /** what the host offers (os.totalmem(), navigator.deviceMemory), when maxMemory is not given */
  hostMemoryBytes?: number;
  /** the largest shard (default MEMORY_PLAN_LIMIT_BYTES); smaller values force more shards (tests) */
  maxShardBytes?: number;
  /** exactly this many shards, balanced by bytes (tests: the digest at 2 and 3 shards) */
  shards?: number;
  /** kernel threads (per-thread scratch in every shard). Default 1. */
  threads?: number;
}

/** What a plan is computed from: the family's tensors and needs, and the stored dtypes. */
export interface PlanInput {
  readonly label: string;
  readonly tensors: readonly PlanTensor[];
  readonly needs: MemoryNeeds;
  /** the stored dtype of a tensor, undefined when absent from the checkpoint */
  readonly dtypeOf: (name: string) => DType | undefined;
  /** how a tensor is quantized, when it is stored quantized */
  readonly quantOf?: (name: string) => StoredQuant | undefined;
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  return mib(n);
}

interface GroupBytes { name: string; weights: number; kvPerToken: number; maxDim: number }

/** Weight bytes, KV values per token and widest linear of every group, in family order. */
function groupsOf(input: PlanInput): { groups: GroupBytes[]; homeWeights: number; hostFixed: number; largestTensor: number } {
  const byName = new Map<string, PlanTensor>(input.tensors.map((t) => [t.name, t]));
  const groups = new Map<string, GroupBytes>();
  let hostFixed = 0, largestTensor = 0, homeWeights = 0;
  const groupOf = (name: string): GroupBytes => {
    let g = groups.get(name);
    if (!g) { g = { name, weights: 0, kvPerToken: 0, maxDim: 0 }; groups.set(name, g); }
    return g;
  };
  const counted = new Set<string>(); // a parameter stored under several names (MoR's shared layers) is bound once
  for (const t of input.tensors) {
    const g = groupOf(t.group);
    const elements = t.shape.reduce((a, b) => a * b, 1);
    let dtype = input.dtypeOf(t.name);
    let quant = input.quantOf?.(t.name);
    if (dtype !== undefined) largestTensor = Math.max(largestTensor, storedBytes(dtype, elements, quant));
    let bind = t.bind;
    const tiedTo = t.sameAs !== undefined && byName.get(t.sameAs)?.bind === 'embedding' ? t.sameAs : undefined;
    if (tiedTo !== undefined) {
      // a tied lm_head binds the embedding's values as a linear weight, stored or not
      if (dtype === undefined) { dtype = input.dtypeOf(tiedTo); quant = input.quantOf?.(tiedTo); }
      bind = 'linear';
    } else {
      const canonical = t.sameAs ?? t.name;
      if (dtype === undefined || counted.has(canonical)) continue; // absent (optional, or another alias is stored), or bound already
      counted.add(canonical);
    }
    if (dtype === undefined) continue;
    if (bind === 'embedding') hostFixed += storedBytes(dtype, elements, quant);
    // norms and biases live in the home shard, beside the hidden state they scale
    if (bind === 'f32') homeWeights += boundTensorBytes(bind, dtype, t.shape, quant);
    else g.weights += boundTensorBytes(bind, dtype, t.shape, quant);
    if (bind === 'linear') g.maxDim = Math.max(g.maxDim, ...t.shape);
  }
  for (const [name, values] of input.needs.kvPerToken) groupOf(name).kvPerToken += values;
  return { groups: [...groups.values()], homeWeights, hostFixed, largestTensor };
}

/** The plan for `input` under `options`; throws MEM_OVER_LIMIT / MEM_MODEL_TOO_LARGE / ARG_INVALID. Pure: reads no tensor data. */
export function planMemory(input: PlanInput, options: PlanOptions = {}): MemoryPlan {
  const needs = input.needs;
  const requested = options.context;
  let context = requested ?? needs.maxContext;
  const kvDtype = options.kvDtype ?? 'f32';
  if (!KV_DTYPES.includes(kvDtype)) throw new PonderError('ARG_INVALID', `kvDtype must be one of ${KV_DTYPES.join(', ')}, got ${JSON.stringify(kvDtype)}`, { field: 'kvDtype', hint: 'f32 (default, what conformance uses), bf16 or f16 (half the KV bytes)' });
  if (!Number.isInteger(context) || context < 1) throw new PonderError('ARG_INVALID', `context must be a positive integer, got ${context}`, { field: 'context', hint: `at most ${needs.maxContext} (${needs.contextField})` });
  if (context > needs.maxContext) throw new PonderError('GEN_CONTEXT', `${input.label}: a context of ${context} tokens is longer than the model's ${needs.maxContext} (${needs.contextField})`, { field: 'context', hint: `ask for at most ${needs.maxContext}` });
  const shardLimit = options.maxShardBytes ?? MEMORY_PLAN_LIMIT_BYTES;
  if (!(shardLimit > 0) || shardLimit > MEMORY_PLAN_LIMIT_BYTES) throw new PonderError('ARG_INVALID', `maxShardBytes must be in (0, ${MEMORY_PLAN_LIMIT_BYTES}], got ${shardLimit}`, { field: 'maxShardBytes', hint: 'leave it out: the default is 4 GiB minus the reserve' });
  const threads = options.threads ?? 1;
  const { groups, homeWeights, hostFixed, largestTensor } = groupsOf(input);
  const kvBytes = KV_DTYPE_BYTES[kvDtype];
  // (the context is final when assign runs: the requested one, or the longest that fits)
  const rowsOf = (): number => Math.min(context, PLAN_CALL_ROWS);
  // a shard other than home stages the hidden state in and out of each linear and attention call;
  // every shard keeps per-thread kernel scratch (attention scores over the context, bf16 weight
  // widening, and with a narrow KV cache prefill's widened key block)
  const threadScratchAt = (tokens: number, dtype: KvDType): number =>
    threads * ((4 * (tokens + 4) + 64) * needs.attentionUnits + 64 * 1024 + (dtype === 'f32' ? 0 : ATTENTION_WIDEN_MAX_BYTES) // attentionScratchBytes: a padded scores row and a descriptor per head,
      + 4 * needs.attentionHeadDim * needs.attentionUnits * Math.max(1, Math.ceil(tokens / ATTENTION_VALUE_CHUNK) - 1)); // and the value chunks' rows
  let assignDtype: KvDType = kvDtype; // the dtype `assign` plans for (wholeAt sets it)
  const threadScratchOf = (): number => threadScratchAt(context, assignDtype);
  const stagingOf = (maxDim: number): number => 4 * rowsOf() * 3 * maxDim;

  const assign = (kvTokens: number, kvBytes: number): { shards: ShardPlan[]; shardOf: Map<string, number> } => {
    const homeWork = needs.workBytes(context, rowsOf()), threadScratch = threadScratchOf();
    const shards: { groups: string[]; weightBytes: number; kvBytes: number; workBytes: number; maxDim: number }[] = [];
    const shardOf = new Map<string, number>();
    const open = (): void => { shards.push({ groups: [], weightBytes: shards.length === 0 ? homeWeights : 0, kvBytes: 0, workBytes: shards.length === 0 ? homeWork + threadScratch : threadScratch, maxDim: 0 }); };
    const total = (s: (typeof shards)[number], maxDim = s.maxDim): number => s.weightBytes + s.kvBytes + s.workBytes + (shards.indexOf(s) > 0 ? stagingOf(maxDim) : 0);
    const bytesOf = (g: GroupBytes): number => g.weights + g.kvPerToken * kvTokens * kvBytes;
    const forced = options.shards;
    const perShard = forced ? groups.reduce((a, g) => a + bytesOf(g), 0) / forced : Infinity;
    open();
    let filled = 0;
    groups.forEach((g, gi) => {
      let s = shards[shards.length - 1];
      if (forced) {
        // balanced: the shard whose share the middle of this group falls in, one step at a most, and
        // never so late that a later shard would stay empty
        const want = Math.min(forced - 1, Math.floor((filled + bytesOf(g) / 2) / perShard));
        const current = shards.length - 1, left = groups.length - gi;
        if (s.groups.length > 0 && (want > current || left <= forced - 1 - current)) { open(); s = shards[shards.length - 1]; }
      } else if (s.groups.length > 0 && total(s, Math.max(s.maxDim, g.maxDim)) + bytesOf(g) > shardLimit) {
        open(); s = shards[shards.length - 1];
      }
      s.groups.push(g.name);
      s.weightBytes += g.weights;
      s.kvBytes += g.kvPerToken * kvTokens * kvBytes;
      s.maxDim = Math.max(s.maxDim, g.maxDim);
      shardOf.set(g.name, shards.length - 1);
      filled += bytesOf(g);
      if (!forced && total(s) > shardLimit) {
        throw new PonderError('MEM_MODEL_TOO_LARGE',
          `${input.label}: group ${g.name} needs ${formatBytes(total(s))} (weights ${formatBytes(g.weights)} + KV cache ${formatBytes(g.kvPerToken * kvTokens * kvBytes)} for ${kvTokens} tokens${s.groups.length > 1 || shards.length === 1 ? ' + the shard\'s work buffers' : ''}), over one memory shard's ${formatBytes(shardLimit)}`,
          { field: 'context', hint: 'one layer must fit one 4 GiB WebAssembly memory: use a shorter context, --kv-dtype bf16, or quantized weights' });
      }
    });
    if (forced && shards.length !== forced) {
      throw new PonderError('ARG_INVALID', `${input.label}: cannot split ${groups.length} weight groups into ${forced} shards`, { field: 'shards', hint: `at most ${groups.length} shards` });
    }
    return {
      shards: shards.map((s) => ({ groups: s.groups, weightBytes: s.weightBytes, kvBytes: s.kvBytes, workBytes: total(s) - s.weightBytes - s.kvBytes, totalBytes: total(s) })),
      shardOf,
    };
  };

  // the whole at `tokens` of context (shard layout aside: shards are added as needed)
  const weightsTotal = groups.reduce((a, g) => a + g.weights, homeWeights);
  const kvValuesPerToken = groups.reduce((a, g) => a + g.kvPerToken, 0);
  const partsAt = (tokens: number, dtype: KvDType) => {
    const work = needs.workBytes(tokens, Math.min(tokens, PLAN_CALL_ROWS)) + threadScratchAt(tokens, dtype);
    const kv = kvValuesPerToken * tokens * KV_DTYPE_BYTES[dtype];
    const host = hostFixed + largestTensor + needs.hostKvPerToken * tokens * KV_DTYPE_BYTES[dtype];
    return { kv, work, host, total: weightsTotal + kv + work + host };
  };

  const limitGiven = options.maxMemory !== undefined;
  const limitBytes = options.maxMemory ?? options.hostMemoryBytes ?? Infinity;
  const limitSource = limitGiven ? 'maxMemory' : options.hostMemoryBytes !== undefined ? 'the machine\'s memory' : 'no limit known';
  if (!(limitBytes > 0)) throw new PonderError('ARG_INVALID', `maxMemory must be a positive number of bytes, got ${limitBytes}`, { field: 'maxMemory', hint: 'e.g. 8GiB' });

  // the longest context at each KV dtype under the machine limit (the total grows with the context: bisect)
  const capacity = {} as Record<KvDType, number>;
  for (const d of KV_DTYPES) {
    let lo = 0, hi = needs.maxContext;
    if (partsAt(1, d).total > limitBytes) hi = 0;
    else if (partsAt(hi, d).total <= limitBytes) lo = hi;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (partsAt(mid, d).total <= limitBytes) lo = mid; else hi = mid - 1;
    }
    capacity[d] = lo;
  }

  // no context asked for: the config's, or the longest this machine holds (a sequence never grows past it)
  if (requested === undefined) context = Math.max(1, Math.min(needs.maxContext, capacity[kvDtype]));
  const at = partsAt(context, kvDtype);
  if (at.total > limitBytes) {
    const better = KV_DTYPES.filter((d) => KV_DTYPE_BYTES[d] < kvBytes && capacity[d] >= context);
    const ways = [
      capacity[kvDtype] > 0 ? `a context of at most ${capacity[kvDtype]} tokens` : null,
      ...better.map((d) => `--kv-dtype ${d} (fits ${capacity[d]} tokens)`),
      'quantized weights',
    ].filter((w) => w !== null);
    throw new PonderError('MEM_OVER_LIMIT',
      `${input.label}: needs ${formatBytes(at.total)} for a context of ${context} tokens with a ${kvDtype} KV cache ` +
      `(weights ${formatBytes(weightsTotal)}, KV cache ${formatBytes(at.kv)}, work buffers ${formatBytes(at.work)}, JS heap ${formatBytes(at.host)}), ` +
      `over the ${formatBytes(limitBytes)} limit (${limitSource})`,
      { field: 'context', hint: `what would fit: ${ways.join('; ')}${limitGiven ? '; or a larger --max-memory' : ''}` });
  }
  // the shards add their own staging and per-thread scratch: the whole, shards and heap, must fit too
  const wholeAt = (tokens: number, dtype: KvDType) => {
    const saved = context, savedDtype = assignDtype;
    context = tokens; assignDtype = dtype;
    let placed: ReturnType<typeof assign>;
    try { placed = assign(tokens, KV_DTYPE_BYTES[dtype]); } finally { context = saved; assignDtype = savedDtype; }
    const host = partsAt(tokens, dtype).host;
    return { ...placed, host, total: placed.shards.reduce((a, sh) => a + sh.totalBytes, 0) + host };
  };
  for (const d of KV_DTYPES) {
    let lo = 0, hi = capacity[d]; // the whole is never smaller than its parts
    const fits = (tokens: number): boolean => {
      try { return wholeAt(tokens, d).total <= limitBytes; } catch (e) { if (e instanceof PonderError && e.code === 'MEM_MODEL_TOO_LARGE') return false; throw e; } // a layer's KV outgrows one shard
    };
    while (lo < hi) { const mid = Math.ceil((lo + hi) / 2); if (fits(mid)) lo = mid; else hi = mid - 1; }
    capacity[d] = lo;
  }
  if (requested === undefined) context = Math.max(1, Math.min(needs.maxContext, capacity[kvDtype]));
  const whole = wholeAt(context, kvDtype);
  if (whole.total > limitBytes) {
    throw new PonderError('MEM_OVER_LIMIT', `${input.label}: needs ${formatBytes(whole.total)} over ${whole.shards.length} memory shards for a context of ${context} tokens with a ${kvDtype} KV cache, over the ${formatBytes(limitBytes)} limit (${limitSource})`,
      { field: 'context', hint: `what would fit: ${capacity[kvDtype] > 0 ? `a context of at most ${capacity[kvDtype]} tokens; ` : ''}a narrower --kv-dtype; quantized weights` });
  }
  return {
    label: input.label, context, kvDtype, shards: whole.shards, shardOf: whole.shardOf,
    hostBytes: whole.host, totalBytes: whole.total,
    limitBytes, limitSource, contextCapacity: capacity,
  };
}

/** "4GiB", "512 MiB", "8e9", "1234": a byte count for --max-memory; ARG_INVALID naming `field` otherwise. */
export function parseByteSize(text: string, field: string): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib|t|tb|tib)?\s*$/i.exec(text);
  if (!m) throw new PonderError('ARG_INVALID', `--${field} must be a byte count such as 8GiB, 512MiB or 4000000000, got ${JSON.stringify(text)}`, { field, hint: 'units: B, KB/KiB, MB/MiB, GB/GiB, TB/TiB' });
  const unit = (m[2] ?? 'b').toLowerCase();
  const scale: Record<string, number> = { b: 1, k: 1024, kb: 1e3, kib: 1024, m: 2 ** 20, mb: 1e6, mib: 2 ** 20, g: 2 ** 30, gb: 1e9, gib: 2 ** 30, t: 2 ** 40, tb: 1e12, tib: 2 ** 40 };
  const bytes = Math.floor(Number(m[1]) * scale[unit]);
  if (!(bytes > 0) || !Number.isFinite(bytes)) throw new PonderError('ARG_INVALID', `--${field} must be positive, got ${JSON.stringify(text)}`, { field, hint: 'e.g. 8GiB' });
  return bytes;
}
