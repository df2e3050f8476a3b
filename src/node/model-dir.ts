/**
 * Opening a Hugging Face model directory (config.json + model.safetensors, or shards listed in
 * model.safetensors.index.json) or a single .safetensors file.
 *
 * Only headers are read up front: every format, shard and index rule is checked before any tensor
 * byte is touched. Tensor data is read from disk when a family asks for it (WeightSource.read),
 * one tensor at a time, so a multi-GB checkpoint is never held in memory twice (and files over
 * Node's 2 GiB readFileSync limit work).
 */
import { readdirSync } from 'node:fs';
import { basename, dirname, join, normalize, sep } from 'node:path';
import { PonderError, stringArgument } from '../errors.js';
import { parseConfigJson, type ConfigObject } from '../format/config.js';
import { firstInvalidUtf8 } from '../format/json.js';
import { missingShard, parseShardIndex, readShards, SHARD_INDEX, SINGLE_WEIGHTS, type ShardIndex } from '../format/shard-index.js';
import type { SafetensorsHeader } from '../format/safetensors.js';
import { headerWeights, type WeightSource } from '../models/weights.js';
import { LIMITS } from '../limits.js';
import { entryExists, ioError, readBytes, readText, readSafetensorsHeaderFile, readTensorFromFile, statPath, type ReadLimit } from './files.js';

export { SHARD_INDEX, SINGLE_WEIGHTS, type ShardIndex } from '../format/shard-index.js';
export { readSafetensorsHeaderFile, readTensorFromFile } from './files.js';

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
// Shards

/** Reads the header of every shard the index names (SHARD_MISSING_FILE for an absent one), then checks them against the index. */
function openShards(index: ShardIndex): SafetensorsHeader[] {
  const dir = dirname(index.path);
  return readShards(index, (shard) => {
    const shardPath = join(dir, normalize(shard).split(/[\\/]/).join(sep));
    if (!entryExists(shardPath)) throw missingShard(index, shard, shardPath);
    return readSafetensorsHeaderFile(shardPath);
  });
}

// ---------------------------------------------------------------------------------------------
// Model directories

/** A WeightSource over validated headers whose tensors are read from disk on demand. */
export function fileWeights(files: readonly SafetensorsHeader[], label = files.map((f) => f.path).join(', ')): WeightSource {
  return headerWeights(files, readTensorFromFile, '', label);
}

export function readOptionalConfig(path: string): ConfigObject | undefined {
  if (!entryExists(path)) return undefined; // a dangling or looping symlink is there: reading it says so
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
  stringArgument(path, 'openModelDir path');
  const st = statPath(path);
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
  if (entryExists(single)) {
    const header = readSafetensorsHeaderFile(single);
    return { path, layout: 'single', config, generationConfig, files: [header], weights: fileWeights([header], path) };
  }
  if (entryExists(indexPath)) {
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

const TOKENIZER_FILE_LIMIT: ReadLimit = { maxBytes: LIMITS.jsonFileBytes, code: 'TOKENIZER_INVALID', what: 'a tokenizer file' };
const CHAT_FILE_LIMIT: ReadLimit = { maxBytes: LIMITS.jsonFileBytes, code: 'CHAT_TEMPLATE_INVALID', what: 'a chat template file' };

/**
 * Reads tokenizer.json, tokenizer_config.json, chat_template.jinja and special_tokens_map.json of
 * `dir` when present, each bounded (spec/limits.md): a FIFO, a device or a huge file is a typed
 * error, never a hang or gigabytes read. A dangling symlink is present, and reading it says why.
 */
export function readTokenizerFiles(dir: string): TokenizerFiles {
  const text = (name: string, limit: ReadLimit): string | undefined => {
    const path = join(dir, name);
    return entryExists(path) ? readText(path, limit) : undefined;
  };
  return {
    tokenizerJson: text('tokenizer.json', TOKENIZER_FILE_LIMIT), tokenizerConfig: text('tokenizer_config.json', TOKENIZER_FILE_LIMIT),
    chatTemplateJinja: text('chat_template.jinja', CHAT_FILE_LIMIT), specialTokensMap: text('special_tokens_map.json', CHAT_FILE_LIMIT),
  };
}

/** Config and index files are small (kilobytes); a huge one is the wrong file, not a reason to allocate gigabytes. */
export const MAX_JSON_FILE_BYTES = LIMITS.jsonFileBytes;

function readJsonFileBytes(path: string, code: 'CFG_JSON' | 'SHARD_INDEX'): Uint8Array {
  return readBytes(path, { maxBytes: MAX_JSON_FILE_BYTES, code, what: code === 'CFG_JSON' ? 'a JSON config' : 'a JSON shard index' });
}
