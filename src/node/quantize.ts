/**
 * `ponder quantize IN OUT`, the file side: reads a model directory (any family), writes OUT with
 * the same config.json plus `quantization`, model.safetensors in MLX's quantized layout
 * (src/convert/quantize.ts decides and computes; spec/quantization.md), and the tokenizer and
 * generation files copied.
 *
 * All-or-nothing, as `ponder convert` (writeModelFiles): every file is written to a temporary file
 * beside its target and renamed into place only when all are complete; on any error the temporary
 * files are removed and OUT is as it was. OUT must be absent, an empty directory, or a previous `ponder quantize`
 * output; a target that exists and is not a regular file is never replaced (IO_WRITE; convert.ts
 * checkModelOutDir).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PonderError } from '../errors.js';
import { DEFAULT_KEEP, keepableModules, planQuantization, quantizeMatrix, unmatchedKeepPatterns, type QuantizeSettings, type TensorPlan } from '../convert/quantize.js';
import { encodeSafetensorsHeader, type TensorToWrite } from '../format/safetensors.js';
import { familyOf } from '../models/registry.js';
import { widenFloats, type FloatDType } from '../models/inputs.js';
import { openModelDir } from './model-dir.js';
import { checkModelOutDir, writeModelFiles } from './convert.js';
import { QUANT_BITS, QUANT_GROUP_SIZES } from '../models/quantized.js';

export const QUANTIZED_BY = 'ponder quantize';

/** Files copied unchanged when present (what a model directory carries besides config and weights). */
export const COPIED_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'chat_template.jinja', 'chat_template.json', 'vocab.json', 'merges.txt'];

export interface QuantizeOptions {
  readonly input: string;
  readonly out: string;
  readonly bits: 8 | 4;
  /** default 64 */
  readonly groupSize?: number;
  /** extra patterns kept in their dtype (added to DEFAULT_KEEP unless `noDefaultKeep`) */
  readonly keep?: readonly string[];
  readonly noDefaultKeep?: boolean;
  /** bytes of tensor data written so far, of the total */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface QuantizeResult {
  readonly out: string;
  readonly quantized: number;
  readonly kept: readonly { name: string; reason: string }[];
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly copied: readonly string[];
}

function argError(field: string, what: string, hint: string): PonderError {
  return new PonderError('ARG_INVALID', `quantize: ${what}`, { field, hint });
}

export async function quantizeModel(options: QuantizeOptions): Promise<QuantizeResult> {
  const { input, out, bits } = options;
  const groupSize = options.groupSize ?? 64;
  if (!(QUANT_BITS as readonly number[]).includes(bits)) throw argError('bits', `--bits must be ${QUANT_BITS.join(' or ')}, got ${bits}`, 'use --bits 4 or --bits 8');
  if (!(QUANT_GROUP_SIZES as readonly number[]).includes(groupSize)) throw argError('group-size', `--group-size must be one of ${QUANT_GROUP_SIZES.join(', ')}, got ${groupSize}`, 'MLX\'s group sizes; 64 is the default');
  const dir = openModelDir(input);
  if (!dir.config) throw new PonderError('MODEL_NO_CONFIG', `${input}: no config.json`, { path: input, hint: 'quantize reads a model directory (config.json and safetensors weights)' });
  if (dir.config.values.quantization !== undefined || dir.config.values.quantization_config !== undefined) {
    throw new PonderError('QUANT_CONFIG', `${input}: the model is already quantized (config.json has "quantization")`, { path: input, field: 'quantization', hint: 'quantize the model\'s float checkpoint instead' });
  }
  const family = familyOf(dir.config, dir.config.path);
  const specs = family.tensors(family.parseConfig(dir.config));
  const settings: QuantizeSettings = { bits, groupSize, keep: [...(options.noDefaultKeep ? [] : DEFAULT_KEEP), ...(options.keep ?? [])] };
  const source = dir.weights;
  const names = source.names();
  // A --keep pattern that keeps nothing is a typo or another model's name: refused before anything
  // is written, or the module it meant would be quantized without a word. (The default patterns
  // may match nothing: Huginn has no gate or router.)
  const modules = keepableModules(specs, names);
  const unmatched = unmatchedKeepPatterns(options.keep ?? [], modules);
  if (unmatched.length > 0) {
    const sample = modules.filter((m, i) => i < 3 || i === modules.length - 1).join(', ');
    throw argError('keep', `--keep ${unmatched.map((p) => `'${p}'`).join(', ')} matches no Linear or embedding module of ${input}`,
      `patterns match module paths with * as any text, e.g. ${sample}`);
  }
  const plan = planQuantization(specs, names, (n) => source.info(n)!.dtype, settings);

  // the output header, from shapes alone
  const tensors: Omit<TensorToWrite, 'data'>[] = [];
  for (const p of plan) {
    const info = source.info(p.name)!;
    if (p.kind === 'copy') { tensors.push({ name: p.name, dtype: info.dtype, shape: info.shape }); continue; }
    tensors.push({ name: `${p.module}.weight`, dtype: 'U32', shape: [p.N, p.K * bits / 32] });
    tensors.push({ name: `${p.module}.scales`, dtype: info.dtype, shape: [p.N, p.K / groupSize] });
    tensors.push({ name: `${p.module}.biases`, dtype: info.dtype, shape: [p.N, p.K / groupSize] });
  }
  const { header, dataLength } = encodeSafetensorsHeader(tensors, { format: 'mlx', quantized_by: QUANTIZED_BY });
  const kept = plan.filter((p): p is Extract<TensorPlan, { kind: 'copy' }> => p.kind === 'copy' && p.reason !== undefined).map((p) => ({ name: p.name, reason: p.reason! }));
  const quantization: Record<string, unknown> = { group_size: groupSize, bits };
  for (const k of kept) if (k.name.endsWith('.weight')) quantization[k.name.slice(0, -'.weight'.length)] = false;
  const config = { ...dir.config.values as Record<string, unknown>, quantization, quantization_config: quantization };
  const copied = dir.layout === 'file' ? [] : COPIED_FILES.filter((f) => existsSync(join(input, f)));

  const create = checkModelOutDir(out, { files: ['config.json', 'model.safetensors', ...COPIED_FILES], writtenBy: { key: 'quantized_by', value: QUANTIZED_BY } });
  let bytesIn = 0;
  writeModelFiles(out, create, [
    { name: 'model.safetensors', chunks: function* () {
      yield header;
      let done = 0;
      for (const p of plan) {
        const info = source.info(p.name)!;
        const raw = source.read(p.name);
        bytesIn += raw.byteLength;
        if (p.kind === 'copy') {
          yield new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
          done += raw.byteLength;
        } else {
          const w = new Float32Array(p.N * p.K);
          widenFloats(info.dtype as FloatDType, raw, 0, w.length, w);
          const q = quantizeMatrix(w, p.N, p.K, bits, groupSize, info.dtype as 'F32' | 'BF16' | 'F16', p.name);
          for (const part of [q.codes, q.scales, q.biases]) {
            yield new Uint8Array(part.buffer, part.byteOffset, part.byteLength);
            done += part.byteLength;
          }
        }
        options.onProgress?.(done, dataLength);
      }
    } },
    { name: 'config.json', chunks: function* () { yield new TextEncoder().encode(JSON.stringify(config, null, 2) + '\n'); } },
    ...copied.map((f) => ({ name: f, chunks: function* () { yield new Uint8Array(readFileSync(join(input, f))); } })),
  ]);
  return { out, quantized: plan.filter((p) => p.kind === 'quantize').length, kept, bytesIn, bytesOut: header.length + dataLength, copied };
}
