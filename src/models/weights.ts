/**
 * Weight binding: the one interface between "where tensors come from" (a golden case, a safetensors
 * file, a sharded checkpoint, later several WASM instances) and the model families.
 *
 * A family declares every tensor it needs with its expected shape; `WeightBinder.finish()` then
 * throws one BIND_MISMATCH error listing every missing, extra and mis-shaped tensor, before any
 * compute. Tensors are read only after the whole declaration checked out.
 */
import { describeValue, PonderError, stringArgument } from '../errors.js';
import { displayName, readTensor, type DType, type SafetensorsFile, type SafetensorsHeader, type TensorArray, type TensorInfo } from '../format/safetensors.js';
import { f16BitsToF32 } from '../kernels/scalar.js';
import { EmbeddingTable, QuantizedEmbeddingTable, widenFloats, type Embedding, type FloatDType } from './inputs.js';
import type { LinearWeight, QuantizedSource } from '../kernels/kernels.js';
import type { StoredQuant } from '../runtime/plan.js';
import type { Runtime } from '../runtime/runtime.js';

/** A weight stored in MLX's quantized layout (src/models/quantized.ts); the plan counts its bytes (boundTensorBytes). */
export type QuantInfo = StoredQuant;

export interface WeightInfo {
  /** the stored dtype; for a quantized weight, that of its scales and biases */
  readonly dtype: DType;
  /** the logical shape ([N, K] for a quantized weight, not the packed words') */
  readonly shape: readonly number[];
  /** present when the weight is quantized */
  readonly quant?: QuantInfo;
}

/** Named tensors from somewhere. Names are exactly the upstream state_dict names. */
export interface WeightSource {
  /** Where the weights come from, for error messages (a path or a case name). */
  readonly label: string;
  names(): string[];
  info(name: string): WeightInfo | undefined;
  /** The tensor's data (BF16/F16 as raw u16 bits). Not for quantized weights. */
  read(name: string): TensorArray;
  /** A quantized weight's codes, scales and biases (present on sources that have quantized weights). */
  readQuantized?(name: string): QuantizedSource;
}

type Bind = 'linear' | 'f32' | 'embedding' | 'buffer';

/**
 * Tensors of one or more safetensors files (headers validated), read on demand by `read` (from a
 * buffer, from disk), optionally under a name prefix that is stripped (golden cases use 'weights.').
 */
export function headerWeights<H extends SafetensorsHeader>(files: readonly H[], read: (file: H, info: TensorInfo) => TensorArray, prefix = '', label = files.map((f) => f.path).join(', ')): WeightSource {
  const owner = new Map<string, H>();
  for (const f of files) {
    for (const full of f.tensors.keys()) {
      if (!full.startsWith(prefix)) continue;
      const name = full.slice(prefix.length);
      const other = owner.get(name);
      if (other) throw new PonderError('SHARD_DUPLICATE_TENSOR', `tensor ${displayName(name)} appears in both ${other.path} and ${f.path}`, { tensor: name, path: f.path, hint: 'each tensor must live in exactly one shard' });
      owner.set(name, f);
    }
  }
  return {
    label,
    names: () => [...owner.keys()],
    info: (name) => owner.get(name)?.tensors.get(prefix + name),
    read: (name) => {
      const f = owner.get(name);
      if (!f) throw new PonderError('BIND_MISMATCH', `${label}: no tensor ${displayName(name)}`, { tensor: name, hint: 'declare tensors through WeightBinder before reading them' });
      return read(f, f.tensors.get(prefix + name)!);
    },
  };
}

/** Tensors of safetensors files held in memory. */
export function safetensorsWeights(files: readonly SafetensorsFile[], prefix = '', label?: string): WeightSource {
  if (!Array.isArray(files as unknown) || files.some((f) => f === null || typeof f !== 'object' || !(f.tensors instanceof Map) || !(f.data instanceof Uint8Array))) {
    throw new PonderError('ARG_INVALID', `safetensorsWeights needs a list of parsed safetensors files (parseSafetensors), got ${describeValue(files)}`, { field: 'files', hint: 'safetensorsWeights([parseSafetensors(bytes, name)])' });
  }
  stringArgument(prefix, 'safetensorsWeights prefix');
  label = label === undefined ? files.map((f) => f.path).join(', ') : stringArgument(label, 'safetensorsWeights label');
  return headerWeights(files, (f, info) => readTensor(f, info.name), prefix, label);
}

type Shape = readonly number[];

/** BIND_MISMATCH names at most this many problems (and counts the rest). */
export const MAX_LISTED_PROBLEMS = 20;

/** Which memory shard a tensor binds into (models/placement.ts Placement). */
export interface ShardAssignment {
  shardOf(group: string): number;
  shardOfTensor(name: string): number;
}

/**
 * Collects a family's tensor declarations against a source, reports every mismatch at once, then
 * hands out bound weights. `optional` tensors may be absent; `alias` tensors (e.g. a tied lm_head
 * stored under both names, or MoR's shared-layer aliases) are accepted when present but not bound.
 */
export class WeightBinder {
  private readonly declared = new Map<string, { shape: Shape; optional: boolean }>();
  private readonly problems: string[] = [];
  private checked = false;

  /** `placement`: which memory shard each tensor's group lives in (none: everything in the home shard). */
  constructor(readonly source: WeightSource, readonly runtime: Runtime, private readonly placement: ShardAssignment | null = null) {}

  /**
   * Declares a tensor; returns whether it is present (with the right shape). `bind` says what it
   * becomes (models/family.ts TensorSpec): only a Linear or an embedding may be quantized.
   */
  need(name: string, shape: Shape, opts: { optional?: boolean; bind?: Bind } = {}): boolean {
    this.declared.set(name, { shape, optional: opts.optional ?? false });
    const info = this.source.info(name);
    if (!info) {
      if (!opts.optional) this.problems.push(`missing ${name} ${fmtShape(shape)}`);
      return false;
    }
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      this.problems.push(`mis-shaped ${name}: ${fmtShape(info.shape)} in the file, ${fmtShape(shape)} expected`);
      return false;
    }
    if (!['F32', 'BF16', 'F16'].includes(info.dtype)) {
      this.problems.push(`wrong dtype ${name}: ${info.dtype} (weights must be F32, BF16 or F16)`);
      return false;
    }
    if (info.quant && opts.bind !== 'linear' && opts.bind !== 'embedding') {
      this.problems.push(`quantized ${name}: only Linear and Embedding weights may be quantized, this one is bound as ${opts.bind ?? 'a float tensor'}`);
      return false;
    }
    return true;
  }

  /** Declares every tensor of a family's list (models/family.ts TensorSpec: name, shape, bind, optional). */
  declare(tensors: readonly { readonly name: string; readonly shape: Shape; readonly bind?: Bind; readonly optional?: boolean }[]): void {
    for (const t of tensors) this.need(t.name, t.shape, { optional: t.optional ?? false, bind: t.bind });
  }

  /** Marks names that may be present but are not bound (aliases, buffers recomputed by the model). */
  allow(name: string): void {
    if (!this.declared.has(name)) this.declared.set(name, { shape: [], optional: true });
  }

  /** Throws BIND_MISMATCH listing all missing, extra and mis-shaped tensors. */
  finish(): void {
    const extra = this.source.names().filter((n) => !this.declared.has(n));
    const problems = [...this.problems, ...extra.map((n) => `unexpected ${n} ${fmtShape(this.source.info(n)!.shape)}`)];
    if (problems.length > 0) {
      // every problem counts, but a config that implies thousands of absent layers lists the first few: one readable line
      const shown = problems.length > MAX_LISTED_PROBLEMS ? [...problems.slice(0, MAX_LISTED_PROBLEMS), summarizeProblems(problems.slice(MAX_LISTED_PROBLEMS))] : problems;
      throw new PonderError('BIND_MISMATCH', `${this.source.label}: the weights do not match the config (${problems.length} problem${problems.length > 1 ? 's' : ''}): ${shown.join('; ')}`,
        { path: this.source.label, hint: 'check that config.json belongs to these weights (layer counts, sizes, sharing strategy)' });
    }
    this.checked = true;
  }

  private assertChecked(name: string): void {
    if (!this.checked) throw new Error(`WeightBinder: ${name} read before finish()`);
  }

  /** A float tensor widened to f32, in an arena buffer. */
  f32(name: string): Float32Array {
    this.assertChecked(name);
    const info = this.source.info(name)!;
    if (info.quant) throw new Error(`WeightBinder: ${name} is quantized; need() refuses quantized f32 tensors`);
    const raw = this.source.read(name);
    const out = this.runtime.arena.f32(raw.length);
    widenFloats(info.dtype as FloatDType, raw, 0, raw.length, out);
    return out;
  }

  /**
   * A Linear weight [N,K], bound in the backend's streaming layout (BF16 kept as BF16, quantized kept
   * quantized), in the memory
   * shard of its group — or of `group` when the values are another tensor's (a tied lm_head binds the
   * embedding's values as part of the head).
   */
  linear(name: string, group?: string): LinearWeight {
    this.assertChecked(name);
    const info = this.source.info(name)!;
    const [N, K] = info.shape;
    const shard = this.placement ? (group !== undefined ? this.placement.shardOf(group) : this.placement.shardOfTensor(name)) : 0;
    if (info.quant) return this.runtime.kernels.bindLinear(this.quantized(name), N, K, shard);
    const raw = this.source.read(name);
    if (info.dtype === 'BF16') return this.runtime.kernels.bindLinear({ dtype: 'bf16', data: raw as Uint16Array }, N, K, shard);
    const data = info.dtype === 'F32' ? (raw as Float32Array) : Float32Array.from(raw as Uint16Array, f16BitsToF32);
    return this.runtime.kernels.bindLinear({ dtype: 'f32', data }, N, K, shard);
  }

  /** A token embedding [V, width] kept outside the arena in its stored form (quantized: as codes). */
  embedding(name: string): Embedding {
    this.assertChecked(name);
    const info = this.source.info(name)!;
    const [V, width] = info.shape;
    if (info.quant) return new QuantizedEmbeddingTable(this.quantized(name), V, width);
    return new EmbeddingTable(info.dtype as FloatDType, this.source.read(name), V, width);
  }

  private quantized(name: string): QuantizedSource {
    if (!this.source.readQuantized) throw new Error(`WeightBinder: ${name} is quantized but ${this.source.label} cannot read quantized weights`);
    return this.source.readQuantized(name);
  }

  /** Raw tensor data (for non-weight buffers such as Huginn's freqs_cis when it is used). */
  raw(name: string): TensorArray {
    this.assertChecked(name);
    return this.source.read(name);
  }
}

/** "… and 244 more: unexpected model.layers.25.x [2048] … unexpected model.layers.47.y [2048] (244 unexpected)": the problems not listed one by one, with the first and last of each kind and its count. */
function summarizeProblems(rest: readonly string[]): string {
  const kinds = new Map<string, string[]>();
  for (const p of rest) {
    const kind = /^(mis-shaped|wrong dtype|missing|unexpected)/.exec(p)?.[1] ?? 'other';
    let all = kinds.get(kind);
    if (!all) kinds.set(kind, all = []);
    all.push(p);
  }
  const parts = [...kinds].map(([kind, all]) => (all.length === 1 ? all[0] : `${all[0]} … ${all[all.length - 1]} (${all.length} ${kind})`));
  return `… and ${rest.length} more: ${parts.join('; ')}`;
}

function fmtShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}
