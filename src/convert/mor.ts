/**
 * The MoR release (raymin0223/mixture_of_recursions) in the layout ponder reads.
 *
 * What the release ships per experiment: `pytorch_model.bin` (a torch.save state dict with every
 * shared layer under each of its aliases, and the tied lm_head), the base model's config.json
 * (a SmolLM LlamaConfig) and the experiment's Hydra YAML (conf/pretrain/NAME.yaml). Upstream builds
 * the model from those two configs (model/util.py:load_model_from_config after
 * util/config.py:preprocess_config):
 *   - the base config, with each key of the YAML's `model_config` set on it (a key the base config
 *     does not have is an error), head_dim = hidden_size // num_attention_heads when model_config
 *     sets both, and max_position_embeddings = max_length when they differ;
 *   - `mor.capacity` null → ((R-i)/R for i < R) (our loader applies the same default);
 *   - with kv_sharing enabled, its num_recursion and sharing are the recursive section's.
 *
 * The result is ponder's MoR config `{ model_config, cfg }` (src/models/mor.ts parseMorConfig),
 * and the state dict as the MoR loader accepts it: one tensor per shared group under the group's
 * first name (the loader's de-duplicated form, from the family contract's tensor list), every
 * other alias checked equal and dropped, a tied `lm_head.weight` checked equal to the embedding and
 * left out (the loader reads the embedding), RoPE buffers dropped.
 * Any other tensor is an error, never silently dropped. Pure: the Node side (src/node/convert.ts)
 * reads and writes the files.
 */
import { describeValue, optionsArgument, PonderError, stringArgument } from '../errors.js';
import { configObject, parseConfigJson } from '../format/config.js';
import type { DType } from '../format/safetensors.js';
import { morTensors, parseMorConfig, type MorConfig } from '../models/mor-config.js';
import { importOptional } from '../optional.js';

/** The tensors of the checkpoint being converted. */
export interface ConversionSource {
  readonly label: string;
  names(): string[];
  info(name: string): { readonly dtype: DType; readonly shape: readonly number[]; /** tensors with equal keys are the same bytes */ readonly storageKey?: string } | undefined;
  /** the tensor's bytes, little-endian, row-major */
  read(name: string): Uint8Array;
}

export interface TensorToCopy {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** the source tensor whose bytes it gets */
  readonly from: string;
}

export interface MorConversion {
  /** ponder's config.json: { model_config, cfg } */
  readonly config: { model_config: Record<string, unknown>; cfg: Record<string, unknown> };
  readonly tensors: readonly TensorToCopy[];
  /** what was dropped or filled in, one line each, for the user */
  readonly notes: readonly string[];
}

/** The YAML keys upstream copies into an evaluation config (util/config.py:overwrite_eval_config) that describe the model. */
const MODEL_KEYS = ['model', 'attn_implementation', 'precision', 'max_length', 'recursive', 'kv_sharing', 'relaxation', 'mor'];
/** Upstream's model classes (model/util.py MOR_MODEL_CLS): Llama-based SmolLM only. */
const MODEL_ARCHS = ['smollm', 'smollm2'];
/** LlamaConfig attributes a YAML model_config may set though config.json leaves them at their defaults. */
const LLAMA_ATTRIBUTES = [
  'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'hidden_act',
  'max_position_embeddings', 'initializer_range', 'rms_norm_eps', 'use_cache', 'pad_token_id', 'bos_token_id', 'eos_token_id',
  'pretraining_tp', 'tie_word_embeddings', 'rope_theta', 'rope_scaling', 'attention_bias', 'attention_dropout', 'mlp_bias', 'head_dim',
];

function yamlError(path: string, what: string, field?: string): PonderError {
  return new PonderError('CFG_FIELD', `${path}: ${what}`, { path, field, hint: 'pass the experiment YAML of the MoR release (conf/pretrain/NAME.yaml) that trained these weights' });
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Parses the experiment YAML with `yaml` (an optional dependency, loaded here only), as YAML 1.1
 * like OmegaConf's loader (yes/no are booleans), refusing duplicate keys.
 */
export async function parseExperimentYaml(text: string, path: string, importLibrary?: () => Promise<unknown>): Promise<Record<string, unknown>> {
  stringArgument(path, 'parseExperimentYaml path');
  stringArgument(text, `parseExperimentYaml text of ${path}`);
  const library = await importOptional('yaml', importLibrary, (err) => new PonderError('CONVERT_UNAVAILABLE', `reading the experiment YAML needs the optional package yaml, which could not be loaded: ${err.message}`, {
    hint: 'install it with `npm install yaml`',
  })) as { parse(text: string, options: object): unknown };
  let value: unknown;
  try {
    value = library.parse(text, { version: '1.1', uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    throw new PonderError('CFG_YAML', `${path}: is not valid YAML: ${(err as Error).message.split('\n')[0]}`, { path, hint: 'pass the Hydra YAML of the experiment (conf/pretrain/NAME.yaml)' });
  }
  if (!isObject(value)) throw new PonderError('CFG_YAML', `${path}: is ${value === null ? 'empty' : Array.isArray(value) ? 'a list' : typeof value}, not a mapping`, { path, hint: 'pass the Hydra YAML of the experiment (conf/pretrain/NAME.yaml)' });
  return value;
}

/** ponder's MoR config from the base config.json text and the parsed experiment YAML, as upstream builds its model config. */
export function morConfigFromRelease(baseConfigText: string, basePath: string, experiment: Record<string, unknown>, experimentPath: string): MorConversion['config'] {
  stringArgument(experimentPath, 'morConfigFromRelease experimentPath');
  optionsArgument(experiment, 'morConfigFromRelease experiment (the parsed YAML)');
  const base = { ...parseConfigJson(baseConfigText, basePath).values } as Record<string, unknown>;
  if (base.model_type !== undefined && base.model_type !== 'llama') {
    throw new PonderError('CFG_MODEL_TYPE', `${basePath}: model_type ${JSON.stringify(base.model_type)} is not a Llama config; the MoR release builds on SmolLM (model_type "llama")`, {
      path: basePath, field: 'model_type', hint: 'pass the config.json of the base model named by model_name_or_path in the YAML (e.g. HuggingFaceTB/SmolLM-360M)',
    });
  }
  const arch = experiment.model;
  if (arch !== undefined && (typeof arch !== 'string' || !MODEL_ARCHS.includes(arch))) {
    throw yamlError(experimentPath, `model is ${JSON.stringify(arch)}; the MoR code builds ${MODEL_ARCHS.join(' and ')} models`, 'model');
  }
  const overrides = experiment.model_config;
  if (overrides !== undefined && overrides !== null) {
    if (!isObject(overrides)) throw yamlError(experimentPath, 'model_config is not a mapping', 'model_config');
    for (const [key, value] of Object.entries(overrides)) {
      if (!Object.hasOwn(base, key) && !LLAMA_ATTRIBUTES.includes(key)) throw yamlError(experimentPath, `model_config.${key} is not a field of the base config`, `model_config.${key}`);
      base[key] = value;
    }
    if (overrides.hidden_size !== undefined && overrides.num_attention_heads !== undefined && overrides.hidden_size !== null && overrides.num_attention_heads !== null) {
      base.head_dim = Math.floor(Number(base.hidden_size) / Number(base.num_attention_heads));
    }
  }
  const maxLength = experiment.max_length;
  if (maxLength !== undefined && maxLength !== null) {
    if (typeof maxLength !== 'number' || !Number.isSafeInteger(maxLength) || maxLength < 1) throw yamlError(experimentPath, `max_length is ${JSON.stringify(maxLength)}, not a positive integer`, 'max_length');
    base.max_position_embeddings = maxLength;
  }

  const cfg: Record<string, unknown> = {};
  for (const key of MODEL_KEYS) if (Object.hasOwn(experiment, key)) cfg[key] = structuredClone(experiment[key]);
  const relaxation = cfg.relaxation;
  if (isObject(relaxation) && relaxation.enable === true) {
    throw yamlError(experimentPath, 'relaxation.enable is true: relaxed (LoRA / prompt) sharing is not part of the MoR models ponder runs', 'relaxation.enable');
  }
  const recursive = cfg.recursive, kv = cfg.kv_sharing;
  if (isObject(kv) && kv.enable === true && isObject(recursive) && recursive.enable === true) {
    // preprocess_config: the shared cache follows the recursion
    kv.num_recursion = recursive.num_recursion;
    kv.sharing = recursive.sharing;
  }
  return { model_config: base, cfg };
}

/**
 * The state-dict names the MoR loader binds (the first name of each shared group), with their
 * shapes, and every alias → its group's first name: the family contract's tensor list
 * (morTensors), so the converter writes exactly what the loader reads. A tied lm_head is neither:
 * the loader reads the embedding, so it is not written (checked equal when the checkpoint has it).
 */
export function morStateDictPlan(config: MorConfig): { wanted: Map<string, readonly number[]>; aliasOf: Map<string, string> } {
  const wanted = new Map<string, readonly number[]>();
  const aliasOf = new Map<string, string>();
  for (const t of morTensors(config)) {
    if (t.name === TIED_HEAD && t.optional) continue;
    if (t.sameAs !== undefined) aliasOf.set(t.name, t.sameAs);
    else wanted.set(t.name, t.shape);
  }
  return { wanted, aliasOf };
}

const TIED_HEAD = 'lm_head.weight';

const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
const fmt = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/**
 * Plans the conversion: the config, which source tensor each output tensor copies, and notes.
 * Errors: CFG_* (configs), CONVERT_TENSORS (missing, unexpected, mis-shaped, non-float tensors, or
 * aliases whose values differ).
 */
export function planMorConversion(config: MorConversion['config'], source: ConversionSource, configLabel = 'config'): MorConversion {
  if (source === null || typeof source !== 'object' || typeof source.names !== 'function' || typeof source.info !== 'function' || typeof source.read !== 'function') {
    throw new PonderError('ARG_INVALID', `planMorConversion needs a source { label, names(), info(name), read(name) }, got ${describeValue(source)}`, { field: 'source', hint: 'see src/node/convert.ts for one over a checkpoint file' });
  }
  const parsed = parseMorConfig(configObject(config, configLabel).values, configLabel);
  const { wanted, aliasOf } = morStateDictPlan(parsed);
  const present = new Set(source.names());
  const notes: string[] = [];
  const problems: string[] = [];
  const tensors: TensorToCopy[] = [];

  // the alias groups: canonical name → its aliases
  const groups = new Map<string, string[]>();
  for (const [alias, canonical] of aliasOf) {
    if (!groups.has(canonical)) groups.set(canonical, []);
    groups.get(canonical)!.push(alias);
  }
  const used = new Set<string>();
  for (const [name, shape] of wanted) {
    const from: string | undefined = present.has(name) ? name : (groups.get(name) ?? []).find((a) => present.has(a));
    if (from === undefined) { problems.push(`missing ${name} ${fmt(shape)}`); continue; }
    const info = source.info(from)!;
    if (!sameShape(info.shape, shape)) { problems.push(`mis-shaped ${from}: ${fmt(info.shape)} in the checkpoint, ${fmt(shape)} expected`); continue; }
    if (!['F32', 'BF16', 'F16'].includes(info.dtype)) { problems.push(`${from} is ${info.dtype}; weights must be F32, BF16 or F16`); continue; }
    used.add(from);
    tensors.push({ name, dtype: info.dtype, shape, from });
  }

  // every alias present must hold its group's values (upstream aliases one Parameter)
  let droppedAliases = 0;
  for (const [alias, canonical] of aliasOf) {
    if (!present.has(alias) || used.has(alias)) continue;
    const kept = tensors.find((t) => t.name === canonical);
    if (kept && !sameTensor(source, alias, kept.from)) problems.push(`${alias} differs from ${kept.from}, though the config shares them`);
    used.add(alias);
    droppedAliases++;
  }
  if (droppedAliases > 0) notes.push(`${droppedAliases} shared-layer aliases dropped (each equal to the first layer of its group, which is written once)`);
  if (parsed.dims.tieEmbeddings && present.has(TIED_HEAD)) {
    if (present.has('model.embed_tokens.weight') && !sameTensor(source, TIED_HEAD, 'model.embed_tokens.weight')) problems.push(`${TIED_HEAD} differs from model.embed_tokens.weight, though tie_word_embeddings is true`);
    else notes.push(`${TIED_HEAD}: the tied head (equal to model.embed_tokens.weight) is not written; the loader reads the embedding`);
    used.add(TIED_HEAD);
  }
  const buffers = [...present].filter((n) => !used.has(n) && !wanted.has(n) && /(^|\.)rotary_emb\.inv_freq$/.test(n));
  if (buffers.length > 0) notes.push(`${buffers.length} RoPE buffer${buffers.length > 1 ? 's' : ''} (rotary_emb.inv_freq) dropped: recomputed from the config`);
  for (const b of buffers) used.add(b);
  const unexpected = [...present].filter((n) => !used.has(n) && !wanted.has(n));
  for (const n of unexpected) problems.push(`unexpected ${n} ${fmt(source.info(n)!.shape)}`);

  if (problems.length > 0) {
    const shown = problems.slice(0, 12);
    throw new PonderError('CONVERT_TENSORS', `${source.label}: the checkpoint does not match the experiment's model (${problems.length} problem${problems.length > 1 ? 's' : ''}): ${shown.join('; ')}${problems.length > shown.length ? `; … ${problems.length - shown.length} more` : ''}`, {
      path: source.label, hint: 'pass the YAML and base config.json of the experiment these weights come from (recursion count, sharing, router type)',
    });
  }
  return { config, tensors, notes };
}

function sameTensor(source: ConversionSource, a: string, b: string): boolean {
  const ia = source.info(a)!, ib = source.info(b)!;
  if (ia.dtype !== ib.dtype || !sameShape(ia.shape, ib.shape)) return false;
  if (ia.storageKey !== undefined && ia.storageKey === ib.storageKey) return true; // one storage, one view (shape and dtype agree)
  const x = source.read(a), y = source.read(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
