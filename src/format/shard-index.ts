/**
 * model.safetensors.index.json (transformers' sharded checkpoints): the one strict reader, used by
 * the Node model directories (src/node/model-dir.ts) and the in-memory / URL loader
 * (src/api/load.ts) alike, so a page accepts exactly the indexes Node accepts.
 *
 * `parseShardIndex` checks the index alone; `readShards` gets every shard's header through the
 * caller's reader (a file, a buffer) and checks the shards against the index: every entry in the
 * shard it names, no tensor in two shards, no shard holding a tensor the index does not list.
 */
import { PonderError } from '../errors.js';
import { describeJson, findDuplicateKey, firstInvalidUtf8, JsonSyntaxError, parseJsonStrict, type JsonNode } from './json.js';
import { displayName, type SafetensorsHeader } from './safetensors.js';

export const SINGLE_WEIGHTS = 'model.safetensors';
export const SHARD_INDEX = 'model.safetensors.index.json';

export interface ShardIndex {
  readonly path: string;
  /** the index's `metadata` object (e.g. total_size), as written */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** tensor name → shard file name (relative to the index's directory), in index order */
  readonly weightMap: ReadonlyMap<string, string>;
}

function indexError(path: string, what: string): PonderError {
  return new PonderError('SHARD_INDEX', `${path}: ${what}`, { path, hint: 'the index must be {"metadata": {...}, "weight_map": {"tensor name": "shard file name", ...}} as transformers writes it' });
}

/** Parses model.safetensors.index.json text. Shard names must be relative paths inside the directory. */
export function parseShardIndex(bytes: Uint8Array, path: string): ShardIndex {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw indexError(path, `is not valid UTF-8 (at byte ${firstInvalidUtf8(bytes)})`);
  }
  const start = text.trimStart().slice(0, 32).toLowerCase();
  if (start.startsWith('<!doctype') || start.startsWith('<html')) throw indexError(path, 'is an HTML page, not JSON (an error page saved instead of the file?)');
  if (start.startsWith('version https://git-lfs')) throw indexError(path, 'is a git-LFS pointer, not JSON (run `git lfs pull`)');
  let root: JsonNode;
  try {
    root = parseJsonStrict(text);
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    throw indexError(path, `is not valid JSON: ${e.reason} (line ${text.slice(0, e.pos).split('\n').length})`);
  }
  if (root.kind !== 'object') throw indexError(path, `is ${describeJson(root)}, not a JSON object`);
  const topDup = findDuplicateKey(root);
  if (topDup) throw indexError(path, `has the key ${JSON.stringify(topDup.key)} twice`);
  const mapNode = root.entries.find((e) => e.key === 'weight_map')?.value;
  if (mapNode === undefined) throw indexError(path, 'has no "weight_map"');
  if (mapNode.kind !== 'object') throw indexError(path, `"weight_map" is ${describeJson(mapNode)}, not an object`);
  if (mapNode.entries.length === 0) throw indexError(path, '"weight_map" is empty');
  const dup = findDuplicateKey(mapNode);
  if (dup) {
    throw new PonderError('SHARD_DUPLICATE_TENSOR', `${path}: tensor ${displayName(dup.key)} is listed twice in "weight_map"`, { path, tensor: dup.key, hint: 'each tensor must live in exactly one shard; regenerate the index' });
  }
  const weightMap = new Map<string, string>();
  for (const { key, value } of mapNode.entries) {
    if (value.kind !== 'string') throw indexError(path, `"weight_map" maps ${displayName(key)} to ${describeJson(value)}, not a shard file name`);
    const shard = value.value;
    const parts = shard.split(/[\\/]/);
    if (shard === '' || isAbsolutePath(shard) || parts.includes('..') || shard.includes('\0')) {
      throw indexError(path, `"weight_map" maps ${displayName(key)} to ${JSON.stringify(shard)}, which is not a file name inside the model directory`);
    }
    weightMap.set(key, shard);
  }
  const metaNode = root.entries.find((e) => e.key === 'metadata')?.value;
  let metadata: Record<string, unknown> = {};
  if (metaNode !== undefined && metaNode.kind !== 'null') {
    if (metaNode.kind !== 'object') throw indexError(path, `"metadata" is ${describeJson(metaNode)}, not an object`);
    metadata = Object.fromEntries(metaNode.entries.map((e) => [e.key, e.value.kind === 'number' ? Number(e.value.text) : e.value.kind === 'string' || e.value.kind === 'bool' ? e.value.value : describeJson(e.value)]));
  }
  return { path, metadata, weightMap };
}

/** A POSIX or Windows absolute path (`/x`, `\\x`, `C:x`). */
function isAbsolutePath(p: string): boolean {
  return p.startsWith('/') || p.startsWith('\\') || /^[A-Za-z]:/.test(p);
}

/** SHARD_MISSING_FILE: the index names `shard`, which is not at `where`. */
export function missingShard(index: ShardIndex, shard: string, where: string): PonderError {
  const listed = [...index.weightMap].filter(([, s]) => s === shard).map(([t]) => t);
  return new PonderError('SHARD_MISSING_FILE', `${index.path} lists shard ${JSON.stringify(shard)} (for ${listed.length} tensor${listed.length > 1 ? 's' : ''}, e.g. ${displayName(listed[0])}) but ${where} does not exist`,
    { path: where, tensor: listed[0], hint: 'download the missing shard, or regenerate the index' });
}

/**
 * The header of each shard the index names (read through `open`, in index order), checked against
 * the index. `open` throws for a shard it cannot provide (e.g. missingShard).
 */
export function readShards<H extends SafetensorsHeader>(index: ShardIndex, open: (shard: string) => H): H[] {
  const shardNames = [...new Set(index.weightMap.values())];
  const headers = new Map<string, H>();
  for (const shard of shardNames) headers.set(shard, open(shard));

  const owner = new Map<string, string>(); // tensor → shard that holds it
  for (const [shard, header] of headers) {
    for (const name of header.tensors.keys()) {
      const other = owner.get(name);
      if (other !== undefined) {
        throw new PonderError('SHARD_DUPLICATE_TENSOR', `tensor ${displayName(name)} is in two shards: ${headers.get(other)!.path} and ${header.path}`,
          { path: header.path, tensor: name, hint: 'each tensor must live in exactly one shard; the checkpoint is inconsistent' });
      }
      owner.set(name, shard);
    }
  }
  for (const [name, shard] of index.weightMap) {
    if (!headers.get(shard)!.tensors.has(name)) {
      const actual = owner.get(name);
      throw new PonderError('SHARD_MISSING_TENSOR', `${index.path} maps tensor ${displayName(name)} to ${JSON.stringify(shard)}, but ${headers.get(shard)!.path} does not hold it${actual ? ` (it is in ${actual})` : ''}`,
        { path: headers.get(shard)!.path, tensor: name, hint: 'the index and the shards do not belong together; download both again' });
    }
  }
  for (const [name, shard] of owner) {
    if (!index.weightMap.has(name)) {
      throw indexError(index.path, `does not list tensor ${displayName(name)}, which is in shard ${shard}`);
    }
  }
  return shardNames.map((s) => headers.get(s)!);
}
