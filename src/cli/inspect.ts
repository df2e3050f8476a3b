/**
 * `ponder inspect FILE|DIR`: what a checkpoint holds, read from headers only (no tensor data is
 * loaded, so it is instant on multi-GB files), after every format/shard rule has been checked.
 */
import { basename, join } from 'node:path';
import { readdirSync } from 'node:fs';
import { readOptionalConfig } from '../node/model-dir.js';
import type { DType } from '../format/safetensors.js';
import { PonderError } from '../errors.js';
import { unknownKeys, type ConfigObject } from '../format/config.js';
import { FAMILIES, findFamily } from '../models/registry.js';
import type { FamilyStops } from '../models/family.js';
import { loadTokenizer, type TextTokenizer } from '../tokenizer.js';
import { loadChatTemplate, type ChatTemplate } from '../chat/template.js';
import { assistantRole, defaultStopIds, endOfTurnToken, type StopId } from '../chat/stops.js';
import { readTokenizerFiles } from '../node/model-dir.js';
import { displayName, numel } from '../format/safetensors.js';
import { openModelDir, type ModelDir } from '../node/model-dir.js';
import { parseFlags } from './args.js';
import type { CliIO } from './io.js';
import { totalmem } from 'node:os';
import { planFamily } from '../models/placement.js';
import { quantizedWeights, readQuantization } from '../models/quantized.js';
import type { MemoryPlan } from '../runtime/plan.js';
import { defaultThreadCount } from '../node/pool-worker.js';
import { MEMORY_FLAGS, MEMORY_HELP, memoryOptions, planJson, planLines, type MemoryFlagOptions } from './memory-flags.js';

export const INSPECT_HELP = `ponder inspect FILE|DIR [--json] [--config] [--context N] [--kv-dtype D] [--max-memory BYTES]

Checks a safetensors file, a sharded index (model.safetensors.index.json) or a Hugging Face model
directory (config.json + model.safetensors or shards) against every format rule, then lists each
tensor (name, dtype, shape, bytes), the model config (model_type, family, key sizes, keys the
family does not read) and totals. For a directory also: the tokenizer and the special tokens it
adds (tokenizer_config.json add_bos_token / add_eos_token, else tokenizer.json's post-processor),
the chat template (its source and first line, or "none"), and the default stop ids with where each
comes from (generation_config.json or config.json eos, the family's upstream stops, and for chat
the template's end-of-turn token and the tokenizer's eos); and the memory plan 'ponder run' would
load it under: the memory shards (bytes of weights, KV cache and work buffers each, and the layers
they hold), the JS heap, the total against the machine's memory, and the longest context that
fits at each KV dtype. A directory with only config.json (no weights yet) gets the memory plan
alone, every tensor assumed stored as the config's torch_dtype (bf16 when it names none).
Only headers and the small JSON/template files are read. Exit 0 when the input is valid, 2 with
one "error[CODE]: ..." line when it is not (codes in spec/errors.md), including a plan over the
memory limit (MEM_OVER_LIMIT).

  --json      print one JSON object (tensors, full config, totals, plan) instead of text
  --config    also print config.json and generation_config.json in full
${MEMORY_HELP}
Examples:
  ponder inspect ~/models/Ouro-1.4B --context 16384 --kv-dtype bf16
  ponder inspect spec/golden/ouro/decode_cached.safetensors --json
`;

/** Config keys worth showing in the one-line summary, in this order, when present. */
const SUMMARY_KEYS = [
  'vocab_size', 'hidden_size', 'n_embd', 'intermediate_size', 'num_hidden_layers', 'n_layers',
  'n_layers_in_prelude', 'n_layers_in_recurrent_block', 'n_layers_in_coda', 'mean_recurrence',
  'total_ut_steps', 'num_recursion', 'num_attention_heads', 'n_heads', 'num_key_value_heads', 'head_dim',
  'max_position_embeddings', 'block_size', 'tie_word_embeddings', 'tie_embeddings', 'torch_dtype',
];

/** The family the registry detects for the config, with its stop ids and the config keys that family does not read (its parse runs: a bad field is an error). */
function familyOf(config: ConfigObject | undefined): { family: string; stops: FamilyStops; unknownKeys: string[] } | undefined {
  const family = config ? findFamily(config) : undefined;
  if (!config || !family) return undefined;
  const parsed = family.parseConfig(config);
  return { family: family.family, stops: family.stops(parsed), unknownKeys: unknownKeys(config) };
}

/** What a model directory says about text: its tokenizer's special tokens, its chat template, its stop ids. */
interface TextReport {
  tokenizer: { vocab: number; adds: { prefix: string[]; suffix: string[]; source: string } } | null;
  /** tokenizer_config.json's settings, as written (null: unset); null without the file */
  settings: { add_bos_token: boolean | null; add_eos_token: boolean | null; bos_token: string | null; eos_token: string | null } | null;
  template: { origin: string; names: string[]; firstLine: string; assistantRole: string } | null;
  stopIds: StopId[] | null;
  chatStopIds: StopId[] | null;
  /** what could not be read without an optional package */
  notes: string[];
}

async function textReport(model: ModelDir, stops: FamilyStops | undefined): Promise<TextReport | null> {
  if (model.layout === 'file') return null;
  const files = readTokenizerFiles(model.path);
  const notes: string[] = [];
  const config = files.tokenizerConfig === undefined ? {} : parseTokenizerConfig(files.tokenizerConfig);
  let tokenizer: TextTokenizer | null = null;
  if (files.tokenizerJson !== undefined) {
    try {
      tokenizer = await loadTokenizer(files.tokenizerJson, files.tokenizerConfig);
    } catch (e) {
      if (!(e instanceof PonderError && e.code === 'TOKENIZER_UNAVAILABLE')) throw e;
      notes.push('install @huggingface/tokenizers to read the tokenizer');
    }
  }
  let template: ChatTemplate | null = null;
  if (files.chatTemplateJinja !== undefined || (config.chat_template !== undefined && config.chat_template !== null)) {
    try {
      template = await loadChatTemplate(files);
    } catch (e) {
      if (!(e instanceof PonderError && e.code === 'CHAT_TEMPLATE_UNAVAILABLE')) throw e;
      notes.push('install @huggingface/jinja to read the chat template');
    }
  }
  const tokenText = (ids: readonly number[]): string[] => ids.map((id) => tokenizer!.decode([id]));
  const role = template ? assistantRole(template) : null;
  const stopInputs = stops ? { family: stops, generationConfig: model.generationConfig ? model.generationConfig.values as Record<string, unknown> : null, tokenizer } : null;
  const eos = template?.specialTokens.eos_token;
  return {
    tokenizer: tokenizer ? { vocab: tokenizer.vocabSize, adds: { prefix: tokenText(tokenizer.specialTokenRule.prefix), suffix: tokenText(tokenizer.specialTokenRule.suffix), source: tokenizer.specialTokenRule.source } } : null,
    settings: files.tokenizerConfig === undefined ? null : { add_bos_token: boolOrNull(config.add_bos_token), add_eos_token: boolOrNull(config.add_eos_token), bos_token: tokenString(config.bos_token), eos_token: tokenString(config.eos_token) },
    template: template ? { origin: template.origin === 'chat_template.jinja' ? 'chat_template.jinja' : 'tokenizer_config.json chat_template', names: [...template.names], firstLine: firstLine(files.chatTemplateJinja ?? config.chat_template), assistantRole: role! } : null,
    stopIds: stopInputs ? defaultStopIds(stopInputs) : null,
    chatStopIds: stopInputs && template && tokenizer
      ? defaultStopIds({ ...stopInputs, chat: { endOfTurn: endOfTurnToken(template, role!, tokenizer), eosToken: typeof eos === 'string' ? eos : undefined } })
      : null,
    notes,
  };
}

function parseTokenizerConfig(text: string): Record<string, unknown> {
  try {
    const value = JSON.parse(text.replace(/^\uFEFF/, '')) as unknown;
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch { /* below */ }
  throw new PonderError('TOKENIZER_INVALID', 'tokenizer_config.json is not a JSON object', { path: 'tokenizer_config.json', hint: 'check that tokenizer_config.json is complete (a partial download?)' });
}

const boolOrNull = (v: unknown): boolean | null => (typeof v === 'boolean' ? v : null);
const tokenString = (v: unknown): string | null => (typeof v === 'string' ? v : typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : null);

/** The template's first non-blank line (of the `default` one in a named set), cut to 60 characters. */
function firstLine(source: unknown): string {
  const text = typeof source === 'string' ? source
    : Array.isArray(source) ? String((source.find((t: { name?: unknown }) => t?.name === 'default') ?? source[0])?.template ?? '') : '';
  const line = text.split('\n').map((l) => l.trim()).find((l) => l.length > 0) ?? '';
  return line.length > 60 ? `${line.slice(0, 57)}...` : line;
}

function stopLine(ids: StopId[]): string {
  return ids.length === 0 ? 'none' : ids.map((s) => `${s.id}${s.token === null ? '' : ` ${JSON.stringify(s.token)}`} (${s.sources.join('; ')})`).join(', ');
}

function textLines(t: TextReport): string[] {
  const lines: string[] = [];
  const setting = (v: boolean | string | null): string => (v === null ? 'unset' : String(v));
  if (t.tokenizer) {
    const adds = t.tokenizer.adds;
    const what = adds.prefix.length + adds.suffix.length === 0 ? 'nothing' : [...adds.prefix.map((x) => `${JSON.stringify(x)} before`), ...adds.suffix.map((x) => `${JSON.stringify(x)} after`)].join(', ');
    lines.push(`tokenizer: vocab ${t.tokenizer.vocab}; special tokens added to a plain prompt: ${what} (${adds.source === 'none' ? 'no rule adds any' : adds.source})${t.template ? '; to a chat prompt: none (its template writes them)' : ''}`);
  } else {
    lines.push('tokenizer: none (no tokenizer.json)');
  }
  if (t.settings) lines.push(`  tokenizer_config.json: add_bos_token ${setting(t.settings.add_bos_token)}, add_eos_token ${setting(t.settings.add_eos_token)}, bos_token ${setting(t.settings.bos_token)}, eos_token ${setting(t.settings.eos_token)}`);
  lines.push(t.template
    ? `chat template: ${t.template.origin}${t.template.names.length > 0 ? ` (named: ${t.template.names.join(', ')})` : ''}, first line ${JSON.stringify(t.template.firstLine)}; answers as role ${JSON.stringify(t.template.assistantRole)}`
    : 'chat template: none');
  if (t.stopIds) lines.push(`stop ids: ${stopLine(t.stopIds)}`);
  if (t.chatStopIds) lines.push(`stop ids in chat: ${stopLine(t.chatStopIds)}`);
  for (const note of t.notes) lines.push(`  note: ${note}`);
  return lines;
}

/** The memory plan `run` would load a model directory under (same threads default, this machine's memory), or null without a known family. */
function planOf(model: ModelDir, options: MemoryFlagOptions): MemoryPlan | null {
  const family = model.config ? findFamily(model.config) : undefined;
  if (!model.config || !family) return null;
  return planFamily(family, family.parseConfig(model.config), quantizedWeights(model.weights, readQuantization(model.config)), { threads: defaultThreadCount() }, { ...options, hostMemoryBytes: totalmem() });
}

const TORCH_DTYPES: Record<string, DType> = { bfloat16: 'BF16', float16: 'F16', float32: 'F32' };

/**
 * A directory holding config.json but no weights (e.g. a published model's config, to see what it
 * would need before downloading it): the memory plan from the config alone, every tensor assumed
 * stored as the config's torch_dtype (bf16 when it names none), as the published checkpoints are.
 * Null when the directory has weights, or no config of a known family (the normal report says why).
 */
function configOnlyPlan(path: string, options: MemoryFlagOptions): { lines: string[]; json: Record<string, unknown> } | null {
  let entries: string[];
  try { entries = readdirSync(path); } catch { return null; }
  if (!entries.includes('config.json') || entries.some((e) => e.endsWith('.safetensors') || e === 'model.safetensors.index.json')) return null;
  const config = readOptionalConfig(join(path, 'config.json'));
  const family = config ? findFamily(config) : undefined;
  if (!config || !family) return null;
  const torchDtype = typeof config.values.torch_dtype === 'string' ? config.values.torch_dtype : undefined;
  const dtype: DType = (torchDtype !== undefined ? TORCH_DTYPES[torchDtype] : undefined) ?? 'BF16';
  const parsed = family.parseConfig(config);
  const required = new Set(family.tensors(parsed).filter((t) => !t.optional).map((t) => t.name));
  const headers = { label: path, info: (name: string) => (required.has(name) ? { dtype } : undefined) };
  const plan = planFamily(family, parsed, headers, { threads: defaultThreadCount() }, { ...options, hostMemoryBytes: totalmem() });
  const assumed = `config.json only, no weights: every tensor assumed stored as ${dtype} (${torchDtype !== undefined ? `torch_dtype ${torchDtype}` : 'config.json names no torch_dtype'})`;
  return {
    lines: [`${path}: ${family.family} model, ${assumed}`, '', ...planLines(plan)],
    json: { path, family: family.family, weights: null, assumed_dtype: dtype, config: config.values, memory_plan: planJson(plan) },
  };
}

interface Row {
  name: string;
  dtype: string;
  shape: readonly number[];
  params: number;
  bytes: number;
  file: string;
}

function rowsOf(model: ModelDir): Row[] {
  const rows: Row[] = [];
  for (const f of model.files) {
    for (const t of f.tensors.values()) {
      rows.push({ name: t.name, dtype: t.dtype, shape: t.shape, params: numel(t.shape), bytes: t.end - t.begin, file: f.path });
    }
  }
  return rows;
}

function group(n: number): string {
  return n.toLocaleString('en-US');
}

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function totalsOf(rows: Row[]): { tensors: number; params: number; bytes: number; byDtype: Record<string, { tensors: number; params: number; bytes: number }> } {
  const byDtype: Record<string, { tensors: number; params: number; bytes: number }> = {};
  let params = 0;
  let bytes = 0;
  for (const r of rows) {
    params += r.params;
    bytes += r.bytes;
    const d = (byDtype[r.dtype] ??= { tensors: 0, params: 0, bytes: 0 });
    d.tensors++;
    d.params += r.params;
    d.bytes += r.bytes;
  }
  return { tensors: rows.length, params, bytes, byDtype };
}

function configSummary(config: ConfigObject): string {
  const v = config.values;
  const parts = SUMMARY_KEYS.filter((k) => Object.hasOwn(v, k) && (typeof v[k] === 'number' || typeof v[k] === 'boolean' || typeof v[k] === 'string')).map((k) => `${k} ${v[k]}`);
  return parts.join(', ');
}

function plainReport(model: ModelDir, rows: Row[], showConfig: boolean, text: TextReport | null, plan: MemoryPlan | null): string {
  const lines: string[] = [];
  const totals = totalsOf(rows);
  const layout = model.layout === 'sharded' ? `sharded checkpoint, ${model.files.length} shard${model.files.length > 1 ? 's' : ''}`
    : model.layout === 'single' ? 'model directory, 1 weights file' : 'safetensors file';
  lines.push(`${model.path}: ${layout}, ${totals.tensors} tensors`);

  if (model.config) {
    const type = typeof model.config.values.model_type === 'string' ? model.config.values.model_type : '(none)';
    const family = familyOf(model.config);
    lines.push(`config: ${model.config.path}`);
    lines.push(`  model_type ${type}, family ${family?.family ?? `unknown (ponder runs ${FAMILIES.map((f) => f.family).join(', ')})`}`);
    if (family && family.unknownKeys.length > 0) lines.push(`  keys ponder does not read (a typo, or a field it ignores): ${family.unknownKeys.join(', ')}`);
    const summary = configSummary(model.config);
    if (summary) lines.push(`  ${summary}`);
    if (showConfig) for (const l of JSON.stringify(model.config.values, null, 2).split('\n')) lines.push(`  ${l}`);
  } else if (model.layout !== 'file') {
    lines.push('config: none (no config.json)');
  }
  if (model.generationConfig) {
    lines.push(`generation config: ${model.generationConfig.path}`);
    if (showConfig) for (const l of JSON.stringify(model.generationConfig.values, null, 2).split('\n')) lines.push(`  ${l}`);
  }
  if (text) lines.push(...textLines(text));
  for (const f of model.files) {
    const meta = Object.entries(f.metadata);
    if (meta.length > 0) lines.push(`metadata${model.files.length > 1 ? ` (${basename(f.path)})` : ''}: ${meta.map(([k, v]) => `${displayName(k)}=${displayName(v)}`).join(', ')}`);
  }

  lines.push('');
  const sharded = model.layout === 'sharded';
  const table = rows.map((r) => [displayName(r.name), r.dtype, `[${r.shape.join(', ')}]`, group(r.bytes), ...(sharded ? [basename(r.file)] : [])]);
  const head = ['name', 'dtype', 'shape', 'bytes', ...(sharded ? ['file'] : [])];
  const widths = head.map((h, c) => table.reduce((w, row) => Math.max(w, row[c].length), h.length));
  const fmt = (row: string[]): string => row.map((cell, c) => (c === 3 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd();
  lines.push(fmt(head));
  for (const row of table) lines.push(fmt(row));

  lines.push('');
  const perDtype = Object.entries(totals.byDtype).map(([d, t]) => `${d} ${group(t.params)}`).join(', ');
  lines.push(`total: ${group(totals.params)} params (${perDtype || 'none'}), ${group(totals.bytes)} bytes (${humanBytes(totals.bytes)}) in ${totals.tensors} tensors`);
  if (plan) lines.push('', ...planLines(plan));
  return lines.join('\n') + '\n';
}

function jsonReport(model: ModelDir, rows: Row[], text: TextReport | null, plan: MemoryPlan | null): string {
  const totals = totalsOf(rows);
  const family = familyOf(model.config);
  const report = {
    path: model.path,
    layout: model.layout,
    family: family?.family ?? null,
    unknown_config_keys: family?.unknownKeys ?? [],
    config: model.config ? { path: model.config.path, values: model.config.values } : null,
    generation_config: model.generationConfig ? { path: model.generationConfig.path, values: model.generationConfig.values } : null,
    tokenizer: text?.tokenizer ? { vocab: text.tokenizer.vocab, special_tokens_added: text.tokenizer.adds } : null,
    special_token_settings: text?.settings ?? null,
    chat_template: text?.template ? { origin: text.template.origin, names: text.template.names, first_line: text.template.firstLine, assistant_role: text.template.assistantRole } : null,
    stop_ids: text?.stopIds ?? null,
    chat_stop_ids: text?.chatStopIds ?? null,
    notes: text?.notes ?? [],
    index: model.index ? { path: model.index.path, metadata: model.index.metadata } : null,
    files: model.files.map((f) => ({ path: f.path, header_bytes: f.headerLength, data_bytes: f.dataLength, metadata: f.metadata, tensors: f.tensors.size })),
    tensors: rows.map((r) => ({ name: r.name, dtype: r.dtype, shape: r.shape, params: r.params, bytes: r.bytes, ...(model.layout === 'sharded' ? { file: r.file } : {}) })),
    totals: { tensors: totals.tensors, params: totals.params, bytes: totals.bytes, by_dtype: totals.byDtype },
    memory_plan: plan ? planJson(plan) : null,
  };
  return JSON.stringify(report, null, 2) + '\n';
}

export async function inspectCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('inspect', argv, { json: { type: 'boolean' }, config: { type: 'boolean' }, ...MEMORY_FLAGS });
  if (values.help) { io.out(INSPECT_HELP); return 0; }
  if (positionals.length === 0) throw new PonderError('ARG_MISSING_PATH', 'inspect needs a FILE or DIR to inspect', { hint: 'usage: ponder inspect FILE|DIR [--json] [--config]; see `ponder inspect --help`' });
  if (positionals.length > 1) throw new PonderError('ARG_INVALID', `inspect takes one FILE or DIR, got ${positionals.length}`, { hint: 'usage: ponder inspect FILE|DIR [--json] [--config]' });
  const memory = memoryOptions(values);
  const configOnly = configOnlyPlan(positionals[0], memory);
  if (configOnly) { io.out(values.json ? `${JSON.stringify(configOnly.json, null, 2)}\n` : `${configOnly.lines.join('\n')}\n`); return 0; }
  const model = openModelDir(positionals[0]);
  const rows = rowsOf(model);
  const plan = planOf(model, memory);
  const text = await textReport(model, familyOf(model.config)?.stops);
  // the whole report is built before anything is printed: stdout never holds half a result
  io.out(values.json ? jsonReport(model, rows, text, plan) : plainReport(model, rows, Boolean(values.config), text, plan));
  return 0;
}
