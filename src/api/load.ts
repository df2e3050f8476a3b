/**
 * loadModel for the core (browser and Node alike): from in-memory buffers, or from a URL base
 * over fetch. The Node entry (src/node/index.ts) adds model directories on disk.
 *
 * A source in Hugging Face layout: config.json, model.safetensors (or shards with
 * model.safetensors.index.json), optionally tokenizer.json (+ tokenizer_config.json) and
 * generation_config.json. The family is detected from config.json (spec/api.md §Loading).
 */
import { bytesArgument, callCallback, describeValue, invalidArgument, optionsArgument, PonderError } from '../errors.js';
import { checkSeed } from '../generate/prng.js';
import { parseConfigJson, configObject, unknownKeys, type ConfigObject } from '../format/config.js';
import { parseSafetensors, DTYPE_BYTES, numel, type SafetensorsFile } from '../format/safetensors.js';
import { missingShard, parseShardIndex, readShards, SHARD_INDEX, SINGLE_WEIGHTS } from '../format/shard-index.js';
import { safetensorsWeights, type WeightSource } from '../models/weights.js';
import type { Runtime } from '../runtime/runtime.js';
import { loadTokenizer, type TextTokenizer, type LoadTokenizerOptions } from '../tokenizer.js';
import { familyOf } from '../models/registry.js';
import type { FamilyDefinition } from '../models/family.js';
import { planFamily } from '../models/placement.js';
import { quantizedWeights, readQuantization } from '../models/quantized.js';
import { parseByteSize, type KvDType } from '../runtime/plan.js';
import { loadChatTemplate, type ChatTemplate, type LoadChatTemplateOptions } from '../chat/template.js';
import { giveRuntime, Model } from './model.js';

export interface LoadProgress {
  /** bytes read (or bound) so far */
  bytesDone: number;
  /** bytes to read in total, when known */
  bytesTotal: number;
}

export interface LoadOptions {
  /** kernels and memory to run on. Default: the WASM SIMD kernels on the available cores (src/web/default-runtime.ts). */
  runtime?: Runtime;
  /** called as weight bytes are read (download, parse, bind) */
  onProgress?: (progress: LoadProgress) => void;
  /** aborting stops the load with error ABORTED */
  signal?: AbortSignal;
  /** Huginn: seed of the model's own initial-state stream (generate uses its own seed). Default 0. */
  seed?: number;
  /** false: do not load tokenizer.json even when present (ids in, ids out). Default true. */
  tokenizer?: boolean;
  /** how to import @huggingface/tokenizers (for bundlers) */
  importTokenizers?: LoadTokenizerOptions['importLibrary'];
  /** false: do not load the chat template even when present (no @huggingface/jinja needed). Default true. */
  chatTemplate?: boolean;
  /** how to import @huggingface/jinja (for bundlers) */
  importChatTemplates?: LoadChatTemplateOptions['importLibrary'];
  /** fetch to use for URL sources. Default globalThis.fetch. */
  fetch?: typeof fetch;
  /** tokens a sequence may hold (prompt + generated): the KV cache and work buffers are planned for this. Default: the config's context. */
  context?: number;
  /** how the KV cache stores keys and values: 'f32' (default, what conformance uses), 'bf16' or 'f16' */
  kvDtype?: KvDType;
  /** refuse (MEM_OVER_LIMIT) a plan over this many bytes, or a size such as "8GiB". Default: the machine's memory (os.totalmem() in Node, navigator.deviceMemory on a page), else none. */
  maxMemory?: number | string;
  /** the largest memory shard in bytes (default 4 GiB minus the reserve); smaller values force more shards */
  maxShardBytes?: number;
  /** what the host offers, when maxMemory is not given (the Node entry passes os.totalmem()) */
  hostMemoryBytes?: number;
}

/** Everything in memory: config and files by their Hugging Face names. */
export interface MemoryModelSource {
  /** config.json: parsed, or its text */
  config: Record<string, unknown> | string;
  /** 'model.safetensors', or shards plus 'model.safetensors.index.json' */
  files: Record<string, Uint8Array | ArrayBuffer>;
  /** tokenizer.json text, or a loaded tokenizer */
  tokenizer?: string | TextTokenizer;
  tokenizerConfig?: string;
  /** chat_template.jinja text */
  chatTemplate?: string;
  /** special_tokens_map.json text */
  specialTokensMap?: string;
  /** generation_config.json: parsed, or its text */
  generationConfig?: Record<string, unknown> | string;
  /** a name for messages and traces */
  label?: string;
}

export type ModelSource = MemoryModelSource | string | URL;

export function abortError(what: string): PonderError {
  return new PonderError('ABORTED', `${what} was aborted`, { hint: 'the AbortSignal passed in options fired; nothing was changed' });
}

export function checkAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(what);
}

const LOAD_OPTIONS = ['runtime', 'onProgress', 'signal', 'seed', 'tokenizer', 'importTokenizers', 'chatTemplate', 'importChatTemplates', 'fetch', 'context', 'kvDtype', 'maxMemory', 'maxShardBytes', 'hostMemoryBytes'] as const;

/** loadModel's options, each of the right type (a misspelt one is ARG_INVALID, not ignored). */
export function checkLoadOptions(options: LoadOptions | undefined): LoadOptions {
  const o = optionsArgument(options, 'loadModel options');
  for (const key of Object.keys(o)) {
    if (!(LOAD_OPTIONS as readonly string[]).includes(key)) throw new PonderError('ARG_INVALID', `loadModel options has an unknown option ${JSON.stringify(key)}`, { field: key, hint: `the options are ${LOAD_OPTIONS.join(', ')} (spec/api.md)` });
  }
  if (o.runtime !== undefined && !(typeof o.runtime === 'object' && o.runtime !== null && typeof (o.runtime as { kernels?: unknown }).kernels === 'object')) throw invalidArgument('loadModel options.runtime', 'a runtime (createWasmRuntime(), createScalarRuntime())', o.runtime);
  for (const key of ['onProgress', 'importTokenizers', 'importChatTemplates', 'fetch'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'function') throw invalidArgument(`loadModel options.${key}`, 'a function', o[key]);
  }
  if (o.signal !== undefined && !(typeof o.signal === 'object' && o.signal !== null && typeof (o.signal as AbortSignal).aborted === 'boolean')) throw invalidArgument('loadModel options.signal', 'an AbortSignal', o.signal, 'pass controller.signal');
  if (o.seed !== undefined) checkSeed(o.seed, 'seed');
  if (o.tokenizer !== undefined && typeof o.tokenizer !== 'boolean') throw invalidArgument('loadModel options.tokenizer', 'true or false', o.tokenizer);
  if (o.chatTemplate !== undefined && typeof o.chatTemplate !== 'boolean') throw invalidArgument('loadModel options.chatTemplate', 'true or false', o.chatTemplate);
  // the memory plan checks their values (range, the model's context); here only their types
  if (o.context !== undefined && !Number.isSafeInteger(o.context)) throw invalidArgument('loadModel options.context', 'an integer number of tokens', o.context);
  if (o.kvDtype !== undefined && typeof o.kvDtype !== 'string') throw invalidArgument('loadModel options.kvDtype', "'f32', 'bf16' or 'f16'", o.kvDtype);
  if (o.maxMemory !== undefined && typeof o.maxMemory !== 'string' && !(typeof o.maxMemory === 'number' && o.maxMemory > 0)) throw invalidArgument('loadModel options.maxMemory', 'a positive number of bytes or a size such as "8GiB"', o.maxMemory);
  for (const key of ['maxShardBytes', 'hostMemoryBytes'] as const) {
    if (o[key] !== undefined && !(typeof o[key] === 'number' && (o[key] as number) > 0)) throw invalidArgument(`loadModel options.${key}`, 'a positive number of bytes', o[key]);
  }
  return o;
}

/** Reports progress through the caller's callback; what it throws is ARG_CALLBACK. */
export function reportProgress(options: LoadOptions, progress: LoadProgress): void {
  if (options.onProgress) callCallback('onProgress', options.onProgress, progress);
}

/** Wraps a WeightSource so every read reports progress and honours the signal. */
export function trackedWeights(source: WeightSource, options: LoadOptions, startBytes = 0, totalBytes?: number): WeightSource {
  let done = startBytes;
  const total = totalBytes ?? startBytes + weightBytes(source);
  return {
    label: source.label,
    names: () => source.names(),
    info: (name) => source.info(name),
    read: (name) => {
      checkAborted(options.signal, `loading ${source.label}`);
      const data = source.read(name);
      done += data.byteLength;
      reportProgress(options, { bytesDone: Math.min(done, total), bytesTotal: total });
      return data;
    },
  };
}

function weightBytes(source: WeightSource): number {
  let total = 0;
  for (const n of source.names()) {
    const info = source.info(n)!;
    total += numel(info.shape) * DTYPE_BYTES[info.dtype];
  }
  return total;
}

function jsonRecord(value: Record<string, unknown> | string, path: string): ConfigObject {
  return typeof value === 'string' ? parseConfigJson(value, path) : configObject(value, path);
}

/** The parts every source provides, assembled into a Model. */
export interface ModelFiles {
  config: ConfigObject;
  weights: WeightSource;
  tokenizerJson?: string | TextTokenizer;
  tokenizerConfig?: string;
  chatTemplateJinja?: string;
  specialTokensMap?: string;
  generationConfig?: ConfigObject;
  label: string;
  /** false when progress was reported in another unit (downloaded bytes) */
  reportFinalProgress?: boolean;
}

export async function modelFromFiles(files: ModelFiles, options: LoadOptions): Promise<Model> {
  const family = familyOf(files.config, files.config.path); // CFG_MODEL_TYPE before anything is loaded
  const config = family.parseConfig(files.config);
  checkAborted(options.signal, `loading ${files.label}`);
  if (options.runtime) return modelOnRuntime(files, family, config, options, options.runtime);
  // no runtime given: one made for this model alone, which model.dispose() stops (and a failed load at once)
  const runtime = await defaultRuntime();
  try {
    return giveRuntime(await modelOnRuntime(files, family, config, options, runtime), runtime);
  } catch (e) {
    await runtime.dispose?.();
    throw e;
  }
}

async function modelOnRuntime(files: ModelFiles, family: FamilyDefinition, config: unknown, options: LoadOptions, runtime: Runtime): Promise<Model> {
  // the memory plan, from the config and the headers alone: refuses before any weight is read
  const familyOptions = {
    seed: options.seed ?? 0, context: options.context, kvDtype: options.kvDtype,
    maxMemory: typeof options.maxMemory === 'string' ? parseByteSize(options.maxMemory, 'maxMemory') : options.maxMemory,
    maxShardBytes: options.maxShardBytes, hostMemoryBytes: options.hostMemoryBytes ?? deviceMemoryBytes(),
  };
  const weights = quantizedWeights(files.weights, readQuantization(files.config)); // MLX-quantized modules as logical [N, K] weights
  const plan = planFamily(family, config, weights, runtime, familyOptions);
  await runtime.ensureShards?.(plan.shards.length);
  let tokenizer: TextTokenizer | null = null;
  if (options.tokenizer !== false && files.tokenizerJson !== undefined) {
    tokenizer = typeof files.tokenizerJson === 'string'
      ? await loadTokenizer(files.tokenizerJson, files.tokenizerConfig, { importLibrary: options.importTokenizers })
      : files.tokenizerJson;
  }
  const chat = tokenizer && options.chatTemplate !== false ? await chatTemplateOf(files, options) : { template: null, error: null };
  checkAborted(options.signal, `loading ${files.label}`);
  const adapter = family.adapter(family.load(config, weights, runtime, { ...familyOptions, plan }));
  const stops = family.stops(config);
  const unknownConfigKeys = unknownKeys(files.config);
  // tensors the family never reads (a tied lm_head, an optional RoPE buffer) still count as done
  if (files.reportFinalProgress !== false) { const total = weightBytes(files.weights); reportProgress(options, { bytesDone: total, bytesTotal: total }); }
  return new Model({
    adapter, stops, tokenizer, generationConfig: files.generationConfig ? files.generationConfig.values as Record<string, unknown> : null,
    chatTemplate: chat.template, chatTemplateError: chat.error, label: files.label, unknownConfigKeys, memoryPlan: plan,
  });
}

/** navigator.deviceMemory (GiB, rounded down by the browser) in bytes, where a page offers it. */
function deviceMemoryBytes(): number | undefined {
  const gib = (globalThis as { navigator?: { deviceMemory?: unknown } }).navigator?.deviceMemory;
  return typeof gib === 'number' && gib > 0 ? gib * 2 ** 30 : undefined;
}

/** tokenizer_config.json names a chat_template (its JSON was checked when the tokenizer loaded). */
function hasChatTemplate(tokenizerConfig: string | undefined): boolean {
  if (tokenizerConfig === undefined) return false;
  try {
    const value = (JSON.parse(tokenizerConfig.replace(/^\uFEFF/, '')) as Record<string, unknown> | null)?.chat_template;
    return value !== undefined && value !== null;
  } catch {
    return true; // loadChatTemplate names the error
  }
}

/**
 * The folder's chat template, if it has one. A template that cannot be loaded (the optional
 * renderer missing, bad syntax) does not stop the model from loading: chat calls throw its error.
 */
async function chatTemplateOf(files: ModelFiles, options: LoadOptions): Promise<{ template: ChatTemplate | null; error: PonderError | null }> {
  if (files.chatTemplateJinja === undefined && !hasChatTemplate(files.tokenizerConfig)) return { template: null, error: null };
  try {
    const template = await loadChatTemplate({ tokenizerConfig: files.tokenizerConfig, chatTemplateJinja: files.chatTemplateJinja, specialTokensMap: files.specialTokensMap }, { importLibrary: options.importChatTemplates });
    return { template, error: null };
  } catch (e) {
    if (e instanceof PonderError && e.code.startsWith('CHAT_')) return { template: null, error: e };
    throw e;
  }
}

async function defaultRuntime(): Promise<Runtime> {
  const { defaultWasmRuntime } = await import('../web/default-runtime.js');
  return defaultWasmRuntime();
}

/** Safetensors files from named buffers: model.safetensors, or the shards an index lists. */
function memoryWeights(files: Record<string, Uint8Array | ArrayBuffer>, label: string): { weights: WeightSource; bytes: number } {
  const bytesOf = (name: string): Uint8Array => bytesArgument(files[name], `loadModel files[${JSON.stringify(name)}]`);
  const at = (name: string): string => (label.endsWith('/') ? label + name : `${label}/${name}`);
  let parsed: SafetensorsFile[];
  if (files[SINGLE_WEIGHTS] !== undefined) parsed = [parseSafetensors(bytesOf(SINGLE_WEIGHTS), at(SINGLE_WEIGHTS))];
  else if (files[SHARD_INDEX] !== undefined) {
    const index = parseShardIndex(bytesOf(SHARD_INDEX), at(SHARD_INDEX));
    parsed = readShards(index, (shard) => {
      if (files[shard] === undefined) throw missingShard(index, shard, at(shard));
      return parseSafetensors(bytesOf(shard), at(shard));
    });
  } else {
    const lone = Object.keys(files).filter((n) => n.endsWith('.safetensors'));
    if (lone.length !== 1) throw new PonderError('MODEL_NO_WEIGHTS', `${label}: no ${SINGLE_WEIGHTS} and no ${SHARD_INDEX} among the files (${Object.keys(files).join(', ') || 'none'})`, { path: label, hint: `pass files: { "${SINGLE_WEIGHTS}": bytes }` });
    parsed = [parseSafetensors(bytesOf(lone[0]), at(lone[0]))];
  }
  const bytes = parsed.reduce((a, f) => a + f.data.byteLength, 0);
  return { weights: safetensorsWeights(parsed, '', label), bytes };
}

/**
 * Loads a model from in-memory files or a URL base (`https://host/models/demo/` → fetches
 * config.json, model.safetensors or the index and shards, tokenizer.json, generation_config.json).
 * Errors: CFG_* (config), CFG_MODEL_TYPE (no family handles it), BIND_MISMATCH, ST_*, IO_FETCH, ABORTED.
 */
export async function loadModel(source: ModelSource, loadOptions?: LoadOptions): Promise<Model> {
  const options = checkLoadOptions(loadOptions);
  checkAborted(options.signal, 'loadModel');
  if (typeof source === 'string' || source instanceof URL) return loadFromUrl(String(source), options);
  const bad = (what: string, got: unknown): PonderError => new PonderError('ARG_INVALID', `loadModel needs { config, files } in memory, or a URL base: ${what}, got ${describeValue(got)}`, { field: 'source', hint: 'e.g. loadModel({ config, files: { "model.safetensors": bytes } })' });
  if (source === null || typeof source !== 'object' || Array.isArray(source)) throw bad('the source is not an object', source);
  if (source.config === null || (typeof source.config !== 'string' && typeof source.config !== 'object')) throw bad('config is not config.json\'s text or parsed object', source.config);
  if (source.files === null || typeof source.files !== 'object' || Array.isArray(source.files)) throw bad('files is not an object of file name → bytes', source.files);
  if (source.label !== undefined && typeof source.label !== 'string') throw bad('label is not a string', source.label);
  if (source.tokenizerConfig !== undefined && typeof source.tokenizerConfig !== 'string') throw bad('tokenizerConfig is not tokenizer_config.json\'s text', source.tokenizerConfig);
  if (source.chatTemplate !== undefined && typeof source.chatTemplate !== 'string') throw bad('chatTemplate is not chat_template.jinja\'s text', source.chatTemplate);
  if (source.specialTokensMap !== undefined && typeof source.specialTokensMap !== 'string') throw bad('specialTokensMap is not special_tokens_map.json\'s text', source.specialTokensMap);
  if (source.tokenizer !== undefined && typeof source.tokenizer !== 'string' && (source.tokenizer === null || typeof source.tokenizer !== 'object')) throw bad('tokenizer is not tokenizer.json\'s text or a loaded tokenizer', source.tokenizer);
  if (source.generationConfig !== undefined && source.generationConfig !== null && typeof source.generationConfig !== 'string' && typeof source.generationConfig !== 'object') throw bad('generationConfig is not generation_config.json\'s text or parsed object', source.generationConfig);
  const label = source.label ?? 'in-memory model';
  const config = jsonRecord(source.config, `${label}/config.json`);
  const { weights, bytes } = memoryWeights(source.files, label);
  reportProgress(options, { bytesDone: 0, bytesTotal: bytes });
  return modelFromFiles({
    config, weights: trackedWeights(weights, options), label,
    tokenizerJson: source.tokenizer, tokenizerConfig: source.tokenizerConfig, chatTemplateJinja: source.chatTemplate, specialTokensMap: source.specialTokensMap,
    generationConfig: source.generationConfig === undefined ? undefined : jsonRecord(source.generationConfig, `${label}/generation_config.json`),
  }, options);
}

async function loadFromUrl(base: string, options: LoadOptions): Promise<Model> {
  const fetchFn = options.fetch ?? globalThis.fetch;
  if (typeof fetchFn !== 'function') throw new PonderError('IO_FETCH', 'this environment has no fetch', { hint: 'pass options.fetch, or load from memory' });
  const root = base.endsWith('/') ? base : `${base}/`;
  const get = async (name: string, optional: boolean, onBytes?: (n: number, total: number) => void): Promise<Uint8Array | null> => {
    checkAborted(options.signal, `loading ${root}`);
    let response: Response;
    try {
      response = await fetchFn(root + name, { signal: options.signal });
    } catch (e) {
      if (options.signal?.aborted) throw abortError(`loading ${root}`);
      throw new PonderError('IO_FETCH', `${root}${name}: ${(e as Error).message}`, { path: root + name, hint: 'check the URL and the network' });
    }
    if (!response.ok) {
      if (optional && response.status === 404) return null;
      throw new PonderError('IO_FETCH', `${root}${name}: HTTP ${response.status}`, { path: root + name, hint: 'check the URL; a model directory needs config.json and model.safetensors' });
    }
    const total = Number(response.headers.get('content-length') ?? 0);
    if (!response.body || !onBytes) return new Uint8Array(await response.arrayBuffer());
    const chunks: Uint8Array[] = [];
    let got = 0;
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      got += value.byteLength;
      onBytes(got, total);
      checkAborted(options.signal, `loading ${root}`);
    }
    const out = new Uint8Array(got);
    let o = 0;
    for (const c of chunks) { out.set(c, o); o += c.byteLength; }
    return out;
  };
  const text = (b: Uint8Array): string => new TextDecoder().decode(b);
  const config = parseConfigJson(text((await get('config.json', false))!), `${root}config.json`);
  const generation = await get('generation_config.json', true);
  const tokenizerJson = options.tokenizer === false ? null : await get('tokenizer.json', true);
  const tokenizerConfig = tokenizerJson ? await get('tokenizer_config.json', true) : null;
  const wantChat = tokenizerJson !== null && options.chatTemplate !== false;
  const chatTemplate = wantChat ? await get('chat_template.jinja', true) : null;
  const specialTokensMap = wantChat ? await get('special_tokens_map.json', true) : null;

  const files: Record<string, Uint8Array> = {};
  let fetched = 0;
  const progress = (n: number, total: number): void => reportProgress(options, { bytesDone: fetched + n, bytesTotal: Math.max(total, fetched + n) });
  const single = await get(SINGLE_WEIGHTS, true, progress);
  if (single) files[SINGLE_WEIGHTS] = single;
  else {
    const indexBytes = (await get(SHARD_INDEX, false))!;
    files[SHARD_INDEX] = indexBytes;
    const index = parseShardIndex(indexBytes, `${root}${SHARD_INDEX}`); // refused before any shard is downloaded
    for (const shard of new Set(index.weightMap.values())) {
      const b = (await get(shard, false, progress))!;
      fetched += b.byteLength;
      files[shard] = b;
    }
  }
  const { weights } = memoryWeights(files, root);
  return modelFromFiles({
    config, weights: trackedWeights(weights, { ...options, onProgress: undefined }), label: root, reportFinalProgress: false,
    tokenizerJson: tokenizerJson ? text(tokenizerJson) : undefined,
    tokenizerConfig: tokenizerConfig ? text(tokenizerConfig) : undefined,
    chatTemplateJinja: chatTemplate ? text(chatTemplate) : undefined,
    specialTokensMap: specialTokensMap ? text(specialTokensMap) : undefined,
    generationConfig: generation ? parseConfigJson(text(generation), `${root}generation_config.json`) : undefined,
  }, options);
}
