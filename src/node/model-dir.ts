/**
 * Opening a Hugging Face model directory (config.json + model.safetensors, or shards listed in
 * model.safetensors.index.json) or a single .safetensors file.
 *
 * Only headers are read up front: every format, shard and index rule is checked before any tensor
 * byte is touched. Tensor data is read from disk when a family asks for it (WeightSource.read),
 * one tensor at a time, so a multi-GB checkpoint is never held in memory twice (and files over
 * Node's 2 GiB readFileSync limit work).
 */
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join, normalize, sep } from 'node:path';
import { PonderError } from '../errors.js';
import { parseConfigJson, type ConfigObject } from '../format/config.js';
import { firstInvalidUtf8 } from '../format/json.js';
import { missingShard, parseShardIndex, readShards, SHARD_INDEX, SINGLE_WEIGHTS, type ShardIndex } from '../format/shard-index.js';
import { parseSafetensorsHeader, readHeaderLength, tensorFromBytes, type SafetensorsHeader, type TensorArray, type TensorInfo } from '../format/safetensors.js';
import { headerWeights, type WeightSource } from '../models/weights.js';
import { readText } from './files.js';

export { SHARD_INDEX, SINGLE_WEIGHTS, type ShardIndex } from '../format/shard-index.js';

export interface ModelDir {
  /** the path that was opened */
  readonly path: string;
  readonly layout: 'file' | 'single' | 'sharded';
  /** config.json, when the path is a directory that has one */
  readonly config?: ConfigObject;
  readonly generationConfig?: ConfigObject;
  readonly index?: ShardIndex;
  /** the header of each weights file, in shard order */
  readonly files: readonly SafetensorsHeader[];
  /** every tensor of every file, read lazily from disk */
  readonly weights: WeightSource;
}

// ---------------------------------------------------------------------------------------------
// Files

function ioError(path: string, e: unknown): PonderError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new PonderError('IO_NOT_FOUND', `${path}: no such file or directory`, { path, hint: 'check the path' });
  if (code === 'EISDIR') return new PonderError('IO_IS_DIRECTORY', `${path} is a directory, not a file`, { path, hint: 'pass a file inside it' });
  return new PonderError('IO_READ', `${path}: cannot read (${code ?? (e as Error).message})`, { path, hint: code === 'EACCES' || code === 'EPERM' ? 'check the file permissions' : 'check the file and the disk' });
}

/** Reads exactly `length` bytes at `position` of an open file, or throws IO_READ (the file shrank). */
function readExactly(fd: number, path: string, length: number, position: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    let got: number;
    try {
      got = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
    } catch (e) {
      throw ioError(path, e);
    }
    if (got === 0) throw new PonderError('IO_READ', `${path}: the file ended after ${position + done} bytes while reading ${length} bytes at ${position} (did it change while open?)`, { path, hint: 'do not modify model files while ponder reads them' });
    done += got;
  }
  return out;
}

function withFile<T>(path: string, body: (fd: number, size: number) => T): T {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw ioError(path, e);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw ioError(path, Object.assign(new Error('is a directory'), { code: 'EISDIR' }));
    return body(fd, st.size);
  } finally {
    closeSync(fd);
  }
}

/** Reads and validates a safetensors file's header (not its data). Allocates at most 8 + N bytes, N ≤ 100 MB and ≤ the file size. */
export function readSafetensorsHeaderFile(path: string): SafetensorsHeader {
  return withFile(path, (fd, size) => {
    const first = readExactly(fd, path, Math.min(size, 64), 0);
    const headerLength = readHeaderLength(first, size, path);
    const headerBytes = readExactly(fd, path, 8 + headerLength, 0);
    return parseSafetensorsHeader(headerBytes, size, path);
  });
}

/** One tensor's data, read from the file of a validated header. */
export function readTensorFromFile(header: SafetensorsHeader, info: TensorInfo): TensorArray {
  return withFile(header.path, (fd) => tensorFromBytes(info, readExactly(fd, header.path, info.end - info.begin, header.dataStart + info.begin)));
}

// ---------------------------------------------------------------------------------------------
// Shards

/** Reads the header of every shard the index names (SHARD_MISSING_FILE for an absent one), then checks them against the index. */
function openShards(index: ShardIndex): SafetensorsHeader[] {
  const dir = dirname(index.path);
  return readShards(index, (shard) => {
    const shardPath = join(dir, normalize(shard).split(/[\\/]/).join(sep));
    if (!existsSync(shardPath)) throw missingShard(index, shard, shardPath);
    return readSafetensorsHeaderFile(shardPath);
  });
}

// ---------------------------------------------------------------------------------------------
// Model directories

/** A WeightSource over validated headers whose tensors are read from disk on demand. */
export function fileWeights(files: readonly SafetensorsHeader[], label = files.map((f) => f.path).join(', ')): WeightSource {
  return headerWeights(files, readTensorFromFile, '', label);
}

function readOptionalConfig(path: string): ConfigObject | undefined {
  if (!existsSync(path)) return undefined;
  const bytes = readJsonFileBytes(path, 'CFG_JSON');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new PonderError('CFG_JSON', `${path}: is not valid UTF-8 (at byte ${firstInvalidUtf8(bytes)})`, { path, hint: 'config files must be UTF-8 JSON' });
  }
  return parseConfigJson(text, path);
}

/**
 * Opens `path`: a directory (config.json and generation_config.json when present; weights from
 * model.safetensors, else model.safetensors.index.json, else a lone *.safetensors), an index
 * file, or one .safetensors file.
 */
export function openModelDir(path: string): ModelDir {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw ioError(path, e);
  }
  if (!st.isDirectory()) {
    if (basename(path).endsWith('.index.json')) {
      const index = parseShardIndex(readJsonFileBytes(path, 'SHARD_INDEX'), path);
      const files = openShards(index);
      return { path, layout: 'sharded', index, files, weights: fileWeights(files, path) };
    }
    const header = readSafetensorsHeaderFile(path);
    return { path, layout: 'file', files: [header], weights: fileWeights([header], path) };
  }

  const config = readOptionalConfig(join(path, 'config.json'));
  const generationConfig = readOptionalConfig(join(path, 'generation_config.json'));
  const single = join(path, SINGLE_WEIGHTS);
  const indexPath = join(path, SHARD_INDEX);
  if (existsSync(single)) {
    const header = readSafetensorsHeaderFile(single);
    return { path, layout: 'single', config, generationConfig, files: [header], weights: fileWeights([header], path) };
  }
  if (existsSync(indexPath)) {
    const index = parseShardIndex(readJsonFileBytes(indexPath, 'SHARD_INDEX'), indexPath);
    const files = openShards(index);
    return { path, layout: 'sharded', config, generationConfig, index, files, weights: fileWeights(files, path) };
  }
  let entries: string[];
  try {
    entries = readdirSync(path).sort();
  } catch (e) {
    throw ioError(path, e);
  }
  const safetensors = entries.filter((e) => e.endsWith('.safetensors'));
  if (safetensors.length === 1) {
    const header = readSafetensorsHeaderFile(join(path, safetensors[0]));
    return { path, layout: 'single', config, generationConfig, files: [header], weights: fileWeights([header], path) };
  }
  const others = entries.filter((e) => /\.(bin|pt|pth|ckpt|gguf|h5|msgpack|onnx)$/.test(e));
  const found = safetensors.length > 1
    ? `${safetensors.length} .safetensors files but no ${SHARD_INDEX} saying how they fit together`
    : others.length > 0 ? `no safetensors weights (only ${others.slice(0, 3).join(', ')})` : `no ${SINGLE_WEIGHTS} or ${SHARD_INDEX}`;
  throw new PonderError('MODEL_NO_WEIGHTS', `${path}: ${found}`, {
    path, hint: others.length > 0 && safetensors.length === 0
      ? 'ponder reads only safetensors; a MoR release checkpoint converts with `ponder convert mor`, others by loading them in transformers and save_pretrained(..., safe_serialization=True)'
      : `a model directory needs ${SINGLE_WEIGHTS}, or shards with ${SHARD_INDEX}`,
  });
}

/** The tokenizer's files of a model directory, as text (each undefined when absent). */
export interface TokenizerFiles {
  tokenizerJson?: string;
  tokenizerConfig?: string;
  chatTemplateJinja?: string;
  specialTokensMap?: string;
}

/** Reads tokenizer.json, tokenizer_config.json, chat_template.jinja and special_tokens_map.json of `dir` when present. */
export function readTokenizerFiles(dir: string): TokenizerFiles {
  const text = (name: string): string | undefined => {
    const path = join(dir, name);
    return existsSync(path) ? readText(path) : undefined;
  };
  return { tokenizerJson: text('tokenizer.json'), tokenizerConfig: text('tokenizer_config.json'), chatTemplateJinja: text('chat_template.jinja'), specialTokensMap: text('special_tokens_map.json') };
}

/** Config and index files are small (kilobytes); a huge one is the wrong file, not a reason to allocate gigabytes. */
export const MAX_JSON_FILE_BYTES = 100_000_000;

function readJsonFileBytes(path: string, code: 'CFG_JSON' | 'SHARD_INDEX'): Uint8Array {
  return withFile(path, (fd, size) => {
    if (size > MAX_JSON_FILE_BYTES) throw new PonderError(code, `${path}: ${size} bytes is too large for a JSON ${code === 'CFG_JSON' ? 'config' : 'index'} (limit ${MAX_JSON_FILE_BYTES})`, { path, hint: 'this is not the right file' });
    return readExactly(fd, path, size, 0);
  });
}
