/**
 * ponder for Node: everything in the core entry, plus `loadModel(path)` for a model directory in
 * Hugging Face layout (config.json, model.safetensors or shards + index, tokenizer.json,
 * generation_config.json). Weights are read lazily from disk while the model binds them.
 */
import { totalmem } from 'node:os';
import { PonderError, stringArgument } from '../errors.js';
import { loadModel as loadModelCore, modelFromFiles, trackedWeights, checkAborted, checkLoadOptions, type LoadOptions, type ModelSource } from '../api/load.js';
import { giveRuntime, type Model } from '../api/model.js';
import { openModelDir, readTokenizerFiles } from './model-dir.js';
import { createNodeWasmRuntime, defaultThreadCount } from './pool-worker.js';

export * from '../index.js';
export { openModelDir, readTokenizerFiles, type ModelDir, type TokenizerFiles } from './model-dir.js';
export { createNodeWasmRuntime, enableRelaxedSimd, defaultThreadCount } from './pool-worker.js';
export { convertMor, type ConvertMorOptions, type ConvertMorResult } from './convert.js';
export { quantizeModel, type QuantizeOptions, type QuantizeResult } from './quantize.js';
export { openFileSource } from './files.js';
export { listen, type ListenOptions, type Listening } from './serve.js';

/**
 * Loads with `options.runtime`, or without one with the WASM SIMD kernels on worker_threads, one
 * thread per available core (at most 8) — whose threads are stopped again when loading fails, so a
 * bad model leaves nothing running, and by model.dispose() once it loaded. The memory plan's machine limit is this machine's memory
 * unless the caller gave one.
 */
async function withDefaultRuntime(options: LoadOptions, load: (options: LoadOptions) => Promise<Model>): Promise<Model> {
  if (options.hostMemoryBytes === undefined) options = { ...options, hostMemoryBytes: totalmem() };
  if (options.runtime) return load(options);
  const runtime = await createNodeWasmRuntime({ threads: defaultThreadCount() });
  try {
    return giveRuntime(await load({ ...options, runtime }), runtime); // the model's own: model.dispose() stops its threads
  } catch (e) {
    await runtime.dispose();
    throw e;
  }
}

/** A directory path (or file: URL), an http(s) URL base, or in-memory files. */
export async function loadModel(source: ModelSource, loadOptions?: LoadOptions): Promise<Model> {
  return withDefaultRuntime(checkLoadOptions(loadOptions), (options) => {
    if (source instanceof URL && source.protocol === 'file:') return loadModelDir(decodeURIComponent(source.pathname), options);
    if (typeof source === 'string' && !/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) return loadModelDir(source, options);
    return loadModelCore(source, options);
  });
}

/** Loads a model directory. Errors: IO_NOT_FOUND, MODEL_NO_WEIGHTS, MODEL_NO_CONFIG, CFG_*, BIND_MISMATCH, ... */
export async function loadModelDir(path: string, loadOptions?: LoadOptions): Promise<Model> {
  stringArgument(path, 'loadModelDir path');
  const checked = checkLoadOptions(loadOptions);
  checkAborted(checked.signal, `loading ${path}`);
  return withDefaultRuntime(checked, (options) => loadDir(path, options));
}

async function loadDir(path: string, options: LoadOptions): Promise<Model> {
  const dir = openModelDir(path);
  if (dir.layout === 'file' || !dir.config) {
    throw new PonderError('MODEL_NO_CONFIG', `${path} is not a model directory: ${dir.layout === 'file' ? 'it is a single weights file' : 'it has weights but no config.json'}`, {
      path, hint: 'a model directory holds config.json next to model.safetensors (Hugging Face layout)',
    });
  }
  const tokenizer = options.tokenizer !== false ? readTokenizerFiles(path) : {};
  const wantChat = tokenizer.tokenizerJson !== undefined && options.chatTemplate !== false;
  return modelFromFiles({
    config: dir.config,
    weights: trackedWeights(dir.weights, options),
    tokenizerJson: tokenizer.tokenizerJson,
    tokenizerConfig: tokenizer.tokenizerJson !== undefined ? tokenizer.tokenizerConfig : undefined,
    chatTemplateJinja: wantChat ? tokenizer.chatTemplateJinja : undefined,
    specialTokensMap: wantChat ? tokenizer.specialTokensMap : undefined,
    generationConfig: dir.generationConfig,
    label: path,
  }, options);
}
