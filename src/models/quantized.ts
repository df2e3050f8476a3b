/**
 * Checkpoints quantized in MLX's affine group-wise layout (spec/quantization.md), as mlx-lm saves
 * them: every quantized module P (a Linear or an Embedding) stores
 *   P.weight  U32 [N, K·bits/32]  codes, 32/bits per word, from the low bits up
 *   P.scales  [N, K/group_size]   in the model's float dtype
 *   P.biases  [N, K/group_size]   (P.bias, if any, is the Linear's own bias, not quantized)
 * and config.json says `"quantization": {"group_size": 64, "bits": 4, ...}`, where a key naming a
 * module (`"model.layers.0.mlp.down_proj": {"group_size": 32, "bits": 8}` or `false`) overrides the
 * default for that module (mlx-lm's class_predicate reads it the same way).
 *
 * `quantizedWeights` turns such a source into one where P.weight has its logical shape [N, K] and a
 * `quant` entry, and P.scales / P.biases are not listed: families declare and bind upstream's names
 * unchanged (WeightBinder.linear / .embedding read the codes). Every check is made from the headers
 * and config alone, before any tensor is read.
 */
import { PonderError } from '../errors.js';
import { hasField, type ConfigObject } from '../format/config.js';
import { displayName } from '../format/safetensors.js';
import type { QuantizedSource } from '../kernels/kernels.js';
import { quantDType } from '../kernels/quant.js';
import { widenFloats, type FloatDType } from './inputs.js';
import type { QuantInfo, WeightInfo, WeightSource } from './weights.js';

/** Bits and group sizes ponder runs (MLX also has 2, 3, 5, 6 bits and other modes). */
export const QUANT_BITS = [8, 4] as const;
export const QUANT_GROUP_SIZES = [32, 64, 128] as const;

/** config.json's `quantization`: the default for every module that has scales, and per-module entries. */
export interface QuantizationConfig {
  readonly default: QuantInfo | null;
  /** module path → its own parameters, or false (kept in float) */
  readonly modules: ReadonlyMap<string, QuantInfo | false>;
}

function configError(c: ConfigObject, field: string, what: string): PonderError {
  return new PonderError('QUANT_CONFIG', `${c.path}: "${field}" ${what}`, { path: c.path, field, hint: `ponder runs MLX's affine quantization with bits ${QUANT_BITS.join(' or ')} and group_size ${QUANT_GROUP_SIZES.join(', ')}` });
}

function quantInfo(c: ConfigObject, field: string, v: unknown): QuantInfo {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw configError(c, field, `is ${JSON.stringify(v)}, not an object {"group_size", "bits"}`);
  const o = v as Record<string, unknown>;
  if (o.mode !== undefined && o.mode !== 'affine') throw configError(c, `${field}.mode`, `is ${JSON.stringify(o.mode)}; only "affine" is supported`);
  if (!(QUANT_BITS as readonly unknown[]).includes(o.bits)) throw configError(c, `${field}.bits`, `is ${JSON.stringify(o.bits)}; supported: ${QUANT_BITS.join(', ')}`);
  if (!(QUANT_GROUP_SIZES as readonly unknown[]).includes(o.group_size)) throw configError(c, `${field}.group_size`, `is ${JSON.stringify(o.group_size)}; supported: ${QUANT_GROUP_SIZES.join(', ')}`);
  return { bits: o.bits as 8 | 4, groupSize: o.group_size as number };
}

/**
 * config.json's `quantization` (mlx-lm also writes the same object as `quantization_config`; both
 * are read, and must agree), or null when the checkpoint is not quantized.
 */
export function readQuantization(c: ConfigObject): QuantizationConfig | null {
  const key = hasField(c, 'quantization') ? 'quantization' : hasField(c, 'quantization_config') ? 'quantization_config' : null;
  if (hasField(c, 'quantization_config')) c.used.add('quantization_config');
  if (key === null) return null;
  c.used.add(key);
  const q = c.values[key];
  if (typeof q !== 'object' || q === null || Array.isArray(q)) throw configError(c, key, `is ${JSON.stringify(q)}, not an object`);
  const o = q as Record<string, unknown>;
  if (key === 'quantization' && c.values.quantization_config !== undefined && JSON.stringify(c.values.quantization_config) !== JSON.stringify(q)
      && (o.bits !== (c.values.quantization_config as Record<string, unknown>)?.bits || o.group_size !== (c.values.quantization_config as Record<string, unknown>)?.group_size)) {
    throw configError(c, 'quantization_config', 'disagrees with "quantization" on bits or group_size');
  }
  const modules = new Map<string, QuantInfo | false>();
  for (const [k, v] of Object.entries(o)) {
    if (k === 'group_size' || k === 'bits' || k === 'mode') continue;
    modules.set(k, v === false ? false : quantInfo(c, `${key}.${k}`, v));
  }
  const hasDefault = o.bits !== undefined || o.group_size !== undefined;
  return { default: hasDefault ? quantInfo(c, key, { bits: o.bits, group_size: o.group_size, mode: o.mode }) : null, modules };
}

function tensorError(source: WeightSource, name: string, what: string, hint: string): PonderError {
  return new PonderError('QUANT_TENSOR', `${source.label}: ${displayName(name)} ${what}`, { path: source.label, tensor: name, hint });
}

const FLOATS = ['F32', 'BF16', 'F16'];

/**
 * `source` with every quantized module presented as one logical [N, K] weight (see the header).
 * `q` is config.json's quantization (readQuantization); null with no quantized tensor returns
 * `source` itself. Throws QUANT_CONFIG / QUANT_TENSOR naming the tensor on any inconsistency.
 */
export function quantizedWeights(source: WeightSource, q: QuantizationConfig | null): WeightSource {
  const all = source.names();
  const present = new Set(all);
  const modules = all.filter((n) => n.endsWith('.scales')).map((n) => n.slice(0, -'.scales'.length));
  const packed = all.filter((n) => n.endsWith('.weight') && source.info(n)!.dtype === 'U32');
  if (q === null && modules.length === 0 && packed.length === 0) return source;
  if (q === null) {
    throw tensorError(source, modules.length ? `${modules[0]}.scales` : packed[0], 'is a quantized tensor, but config.json has no "quantization"',
      'a quantized checkpoint (MLX layout) says {"quantization": {"group_size": G, "bits": B}} in its config.json; restore it from the checkpoint\'s own config');
  }
  const logical = new Map<string, WeightInfo>(); // P.weight → its logical info
  for (const p of modules) {
    const w = source.info(`${p}.weight`), s = source.info(`${p}.scales`)!, b = source.info(`${p}.biases`);
    const entry = q.modules.get(p);
    if (entry === false) throw tensorError(source, `${p}.scales`, 'exists, but config.json lists the module as not quantized (false)', 'the config and the weights belong to different checkpoints');
    const params = entry ?? q.default;
    if (!params) throw tensorError(source, `${p}.scales`, 'has no group_size and bits: config.json\'s "quantization" neither names the module nor gives a default', 'add "group_size" and "bits" to "quantization" in config.json');
    if (!w) throw tensorError(source, `${p}.weight`, `is missing, but ${p}.scales is present`, 'every quantized module stores weight, scales and biases');
    if (!b) throw tensorError(source, `${p}.biases`, `is missing, but ${p}.scales is present`, 'every quantized module stores weight, scales and biases (affine mode)');
    const { bits, groupSize } = params;
    if (w.dtype !== 'U32' || w.shape.length !== 2) throw tensorError(source, `${p}.weight`, `is ${w.dtype} [${w.shape.join(', ')}]; a quantized weight is U32 [out, in·bits/32]`, 'the file is not in MLX\'s quantized layout');
    const [N, words] = w.shape, K = words * 32 / bits;
    const want = [N, K / groupSize];
    if (K % groupSize !== 0) throw tensorError(source, `${p}.weight`, `holds ${K} codes per row, not a multiple of group_size ${groupSize}`, 'config.json\'s bits or group_size do not belong to these weights');
    for (const [t, info] of [[`${p}.scales`, s], [`${p}.biases`, b]] as const) {
      if (!FLOATS.includes(info.dtype)) throw tensorError(source, t, `is ${info.dtype}; scales and biases are F32, BF16 or F16`, 'the file is not in MLX\'s quantized layout');
      if (info.shape.length !== 2 || info.shape[0] !== want[0] || info.shape[1] !== want[1]) {
        throw tensorError(source, t, `is [${info.shape.join(', ')}], [${want.join(', ')}] expected for ${bits}-bit codes in groups of ${groupSize} (weight [${w.shape.join(', ')}])`, 'config.json\'s bits or group_size do not belong to these weights');
      }
    }
    if (b.dtype !== s.dtype) throw tensorError(source, `${p}.biases`, `is ${b.dtype} but ${p}.scales is ${s.dtype}`, 'scales and biases are stored in one dtype');
    logical.set(`${p}.weight`, { dtype: s.dtype, shape: [N, K], quant: { bits, groupSize } });
  }
  for (const n of packed) {
    if (!logical.has(n)) throw tensorError(source, n, `is U32 but ${n.slice(0, -'.weight'.length)}.scales is missing`, 'every quantized module stores weight, scales and biases');
  }
  const hidden = new Set(modules.flatMap((p) => [`${p}.scales`, `${p}.biases`]));
  return {
    label: source.label,
    names: () => all.filter((n) => !hidden.has(n) && present.has(n)),
    info: (name) => hidden.has(name) ? undefined : logical.get(name) ?? source.info(name),
    read: (name) => {
      if (logical.has(name)) throw new Error(`quantizedWeights: ${name} is quantized; read it with readQuantized`);
      return source.read(name);
    },
    readQuantized: (name) => {
      const info = logical.get(name);
      if (!info) throw new Error(`quantizedWeights: ${name} is not quantized`);
      const p = name.slice(0, -'.weight'.length);
      const widen = (t: string): Float32Array => {
        const raw = source.read(t);
        const out = new Float32Array(raw.length);
        widenFloats(info.dtype as FloatDType, raw, 0, raw.length, out);
        return out;
      };
      const src: QuantizedSource = { dtype: quantDType(info.quant!.bits), groupSize: info.quant!.groupSize, codes: source.read(name) as Uint32Array, scales: widen(`${p}.scales`), biases: widen(`${p}.biases`) };
      return src;
    },
  };
}
