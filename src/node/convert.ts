/**
 * `ponder convert mor`, the file side: reads the MoR release's pytorch_model.bin (or a
 * model.safetensors of the same state dict), its base config.json and experiment YAML, and writes
 * OUT/config.json + OUT/model.safetensors (src/convert/mor.ts decides what goes in them).
 *
 * Writing is all-or-nothing: both files are written to temporary files beside their targets and
 * renamed into place only when complete; on any error the temporary files are removed and OUT is
 * as it was. OUT must be absent, an empty directory, or a previous conversion (config.json and a
 * model.safetensors whose metadata says `ponder convert mor`); anything else is IO_WRITE, so a
 * conversion never replaces a directory it did not make (checkModelOutDir, shared with quantize).
 */
import { lstatSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { callCallback, invalidArgument, optionsArgument, PonderError, stringArgument } from '../errors.js';
import { morConfigFromRelease, parseExperimentYaml, planMorConversion, type ConversionSource } from '../convert/mor.js';
import { openPytorchCheckpoint } from '../format/pytorch.js';
import { encodeSafetensorsHeader, numel, DTYPE_BYTES } from '../format/safetensors.js';
import { LIMITS } from '../limits.js';
import { beginAtomicWrite, ioError, openFileSource, readSafetensorsHeaderFile, readTensorFromFile, readText, type PendingFile } from './files.js';

export const CONVERTED_BY = 'ponder convert mor';

export interface ConvertMorOptions {
  /** pytorch_model.bin (torch.save zip) or a model.safetensors of the same state dict */
  weights: string;
  /** the base model's config.json (SmolLM) */
  config: string;
  /** the experiment's Hydra YAML (conf/pretrain/NAME.yaml) */
  experiment: string;
  /** the output directory */
  out: string;
  /** bytes of tensor data written so far, of the total */
  onProgress?: (done: number, total: number) => void;
  importYaml?: () => Promise<unknown>;
}

export interface ConvertMorResult {
  readonly out: string;
  readonly tensors: number;
  readonly bytes: number;
  readonly notes: readonly string[];
}

export function writeError(path: string, what: string, hint: string): PonderError {
  return new PonderError('IO_WRITE', `${path}: ${what}`, { path, hint });
}

/** The checkpoint as a conversion source, and how to close it. */
function openWeights(path: string): { source: ConversionSource; verify(): void; close(): void } {
  const file = openFileSource(path);
  const head = file.read(0, Math.min(file.size, 2));
  if ((head[0] === 0x50 && head[1] === 0x4b) || head[0] === 0x80) {
    try {
      const ckpt = openPytorchCheckpoint(file);
      const source: ConversionSource = {
        label: path,
        names: () => [...ckpt.tensors.keys()],
        info: (name) => {
          const t = ckpt.tensors.get(name);
          // equal keys: the same bytes (one storage, same offset and strides)
          return t && { dtype: t.dtype, shape: t.shape, storageKey: `${t.storageKey}@${t.storageOffset}/${t.stride.join(',')}` };
        },
        read: (name) => { const a = ckpt.read(name); return new Uint8Array(a.buffer, a.byteOffset, a.byteLength); },
      };
      return { source, verify: () => ckpt.verify(), close: () => file.close() };
    } catch (e) {
      file.close();
      throw e;
    }
  }
  file.close();
  const header = readSafetensorsHeaderFile(path);
  const source: ConversionSource = {
    label: path,
    names: () => [...header.tensors.keys()],
    info: (name) => header.tensors.get(name),
    read: (name) => { const a = readTensorFromFile(header, header.tensors.get(name)!); return new Uint8Array(a.buffer, a.byteOffset, a.byteLength); },
  };
  return { source, verify: () => {}, close: () => {} };
}

export async function convertMor(convertOptions: ConvertMorOptions): Promise<ConvertMorResult> {
  const options = optionsArgument(convertOptions, 'convertMor options') as ConvertMorOptions;
  for (const key of ['weights', 'config', 'experiment', 'out'] as const) stringArgument(options[key], `convertMor options.${key}`);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw invalidArgument('convertMor options.onProgress', 'a function', options.onProgress);
  const { out } = options;
  const text = (path: string, what: string, code: string): string => readText(path, { maxBytes: LIMITS.jsonFileBytes, code, what });
  const experiment = await parseExperimentYaml(text(options.experiment, 'an experiment YAML', 'CFG_YAML'), options.experiment, options.importYaml);
  const config = morConfigFromRelease(text(options.config, 'a JSON config', 'CFG_JSON'), options.config, experiment, options.experiment);
  const create = checkModelOutDir(out, { files: ['config.json', 'model.safetensors'], writtenBy: { key: 'converted_by', value: CONVERTED_BY } });
  const weights = openWeights(options.weights);
  try {
    const plan = planMorConversion(config, weights.source, `${options.config} + ${options.experiment}`);
    const { header, dataLength } = encodeSafetensorsHeader(plan.tensors, { format: 'pt', converted_by: CONVERTED_BY, source: basename(options.weights) });
    weights.verify(); // every storage's CRC before the first byte is written: a corrupt checkpoint fails now, not at 45 %
    writeModelFiles(out, create, [
      { name: 'model.safetensors', chunks: function* () {
        yield header;
        let done = 0;
        for (const t of plan.tensors) {
          const bytes = weights.source.read(t.from);
          if (bytes.byteLength !== numel(t.shape) * DTYPE_BYTES[t.dtype]) throw new Error(`convert: ${t.from} read ${bytes.byteLength} bytes`);
          yield bytes;
          done += bytes.byteLength;
          if (options.onProgress) callCallback('onProgress', options.onProgress, done, dataLength);
        }
      } },
      { name: 'config.json', chunks: function* () { yield new TextEncoder().encode(JSON.stringify(plan.config, null, 2) + '\n'); } },
    ]);
    return { out, tensors: plan.tensors.length, bytes: header.length + dataLength, notes: plan.notes };
  } finally {
    weights.close();
  }
}

/** What may already be in OUT: the files a previous run wrote, and how its model.safetensors says it wrote them. */
export interface ModelOutDir {
  /** the names a previous run may have left (model.safetensors among them) */
  readonly files: readonly string[];
  /** the metadata entry of model.safetensors that marks a previous run, e.g. converted_by: "ponder convert mor" */
  readonly writtenBy: { readonly key: string; readonly value: string };
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Checks OUT can take writeModelFiles' output; returns whether it must be created. OUT must be
 * absent, an empty directory, or a previous run's output: only `files` (model.safetensors among
 * them, marked `writtenBy`), each a regular file, besides temporary files an interrupted run left
 * (files.ts beginAtomicWrite names them `.NAME.PID.RANDOM.tmp`). Anything else is IO_WRITE, so a
 * run never replaces a directory it did not make.
 */
export function checkModelOutDir(out: string, dir: ModelOutDir): boolean {
  let st;
  try {
    st = lstatSync(out);
  } catch {
    return true;
  }
  if (!st.isDirectory()) throw writeError(out, 'exists and is not a directory', 'choose a new output directory');
  let all: string[];
  try {
    all = readdirSync(out);
  } catch (e) {
    throw ioError(out, e);
  }
  const leftover = new RegExp(`^\\.(${dir.files.map(escapeRegExp).join('|')})\\.\\d+\\.\\w+\\.tmp$`);
  const entries = all.filter((e) => !leftover.test(e));
  if (entries.length === 0) return false;
  const previous = entries.includes('model.safetensors') && entries.every((e) => dir.files.includes(e))
    && isPreviousRun(join(out, 'model.safetensors'), dir.writtenBy);
  if (!previous) throw writeError(out, `is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}) and is not a previous \`${dir.writtenBy.value}\` output`, 'choose a new or empty output directory');
  for (const name of entries) {
    let file = false;
    try { file = lstatSync(join(out, name)).isFile(); } catch { /* gone meanwhile: not a regular file */ }
    if (!file) throw writeError(join(out, name), 'is not a regular file', 'remove it, or choose another output directory');
  }
  return false;
}

function isPreviousRun(path: string, writtenBy: ModelOutDir['writtenBy']): boolean {
  try {
    return lstatSync(path).isFile() && readSafetensorsHeaderFile(path).metadata[writtenBy.key] === writtenBy.value;
  } catch {
    return false;
  }
}

/**
 * Writes `files` into OUT all-or-nothing: OUT is created when `create` (checked by the caller), each
 * file goes to a temporary file beside its target (files.ts beginAtomicWrite: never replaces what is
 * not a regular file), and only when all are complete are they renamed into place, in order. On any
 * error the temporary files are removed, and so is OUT if this call created it.
 */
export function writeModelFiles(out: string, create: boolean, files: readonly { name: string; chunks: () => Generator<Uint8Array> }[]): void {
  const pending: PendingFile[] = [];
  let created = false;
  try {
    if (create) {
      try {
        mkdirSync(out, { recursive: true });
        created = true;
      } catch (e) {
        throw writeError(out, `cannot create the directory (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'check that the parent directory exists and is writable');
      }
    }
    for (const f of files) {
      const file = beginAtomicWrite(join(out, f.name));
      pending.push(file);
      for (const chunk of f.chunks()) file.write(chunk);
    }
    for (const file of pending) file.commit();
    pending.length = 0;
    created = false;
  } finally {
    for (const file of pending) file.discard();
    if (created) {
      try { rmdirSync(out); } catch { /* not empty: leave it */ }
    }
  }
}
