/**
 * `ponder inspect FILE|DIR`: what a checkpoint holds, read from headers only (no tensor data is
 * loaded, so it is instant on multi-GB files), after every format/shard rule has been checked.
 */
import { basename } from 'node:path';
import { PonderError } from '../errors.js';
import { unknownKeys, type ConfigObject } from '../format/config.js';
import { FAMILIES, findFamily } from '../models/registry.js';
import { displayName, numel } from '../format/safetensors.js';
import { openModelDir, type ModelDir } from '../node/model-dir.js';
import { parseFlags } from './args.js';
import type { CliIO } from './io.js';
import { totalmem } from 'node:os';
import { planFamily } from '../models/placement.js';
import type { MemoryPlan } from '../runtime/plan.js';
import { defaultThreadCount } from '../node/pool-worker.js';
import { MEMORY_FLAGS, MEMORY_HELP, memoryOptions, planJson, planLines, type MemoryFlagOptions } from './memory-flags.js';

export const INSPECT_HELP = `ponder inspect FILE|DIR [--json] [--config] [--context N] [--kv-dtype D] [--max-memory BYTES]

Checks a safetensors file, a sharded index (model.safetensors.index.json) or a Hugging Face model
directory (config.json + model.safetensors or shards) against every format rule, then lists each
tensor (name, dtype, shape, bytes), the model config (model_type, family, key sizes, keys the
family does not read) and totals. For a model directory it also prints the memory plan 'ponder run'
would load it under: the memory shards (bytes of weights, KV cache and work buffers each, and the
layers they hold), the JS heap, the total against the machine's memory, and the longest context
that fits at each KV dtype.
Only headers are read. Exit 0 when the input is valid, 2 with one "error[CODE]: ..." line when
it is not (codes in spec/errors.md), including a plan over the memory limit (MEM_OVER_LIMIT).

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

/** The family the registry detects for the config, with the config keys that family does not read (its parse runs: a bad field is an error). */
function familyOf(config: ConfigObject | undefined): { family: string; unknownKeys: string[] } | undefined {
  const family = config ? findFamily(config) : undefined;
  if (!config || !family) return undefined;
  family.parseConfig(config);
  return { family: family.family, unknownKeys: unknownKeys(config) };
}

/** The memory plan `run` would load a model directory under (same threads default, this machine's memory), or null without a known family. */
function planOf(model: ModelDir, options: MemoryFlagOptions): MemoryPlan | null {
  const family = model.config ? findFamily(model.config) : undefined;
  if (!model.config || !family) return null;
  return planFamily(family, family.parseConfig(model.config), model.weights, { threads: defaultThreadCount() }, { ...options, hostMemoryBytes: totalmem() });
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

function textReport(model: ModelDir, rows: Row[], showConfig: boolean, plan: MemoryPlan | null): string {
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
    if (showConfig) lines.push(...JSON.stringify(model.config.values, null, 2).split('\n').map((l) => `  ${l}`));
  } else if (model.layout !== 'file') {
    lines.push('config: none (no config.json)');
  }
  if (model.generationConfig) {
    lines.push(`generation config: ${model.generationConfig.path}`);
    if (showConfig) lines.push(...JSON.stringify(model.generationConfig.values, null, 2).split('\n').map((l) => `  ${l}`));
  }
  for (const f of model.files) {
    const meta = Object.entries(f.metadata);
    if (meta.length > 0) lines.push(`metadata${model.files.length > 1 ? ` (${basename(f.path)})` : ''}: ${meta.map(([k, v]) => `${displayName(k)}=${displayName(v)}`).join(', ')}`);
  }

  lines.push('');
  const sharded = model.layout === 'sharded';
  const table = rows.map((r) => [displayName(r.name), r.dtype, `[${r.shape.join(', ')}]`, group(r.bytes), ...(sharded ? [basename(r.file)] : [])]);
  const head = ['name', 'dtype', 'shape', 'bytes', ...(sharded ? ['file'] : [])];
  const widths = head.map((h, c) => Math.max(h.length, ...table.map((row) => row[c].length)));
  const fmt = (row: string[]): string => row.map((cell, c) => (c === 3 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd();
  lines.push(fmt(head));
  for (const row of table) lines.push(fmt(row));

  lines.push('');
  const perDtype = Object.entries(totals.byDtype).map(([d, t]) => `${d} ${group(t.params)}`).join(', ');
  lines.push(`total: ${group(totals.params)} params (${perDtype || 'none'}), ${group(totals.bytes)} bytes (${humanBytes(totals.bytes)}) in ${totals.tensors} tensors`);
  if (plan) lines.push('', ...planLines(plan));
  return lines.join('\n') + '\n';
}

function jsonReport(model: ModelDir, rows: Row[], plan: MemoryPlan | null): string {
  const totals = totalsOf(rows);
  const family = familyOf(model.config);
  const report = {
    path: model.path,
    layout: model.layout,
    family: family?.family ?? null,
    unknown_config_keys: family?.unknownKeys ?? [],
    config: model.config ? { path: model.config.path, values: model.config.values } : null,
    generation_config: model.generationConfig ? { path: model.generationConfig.path, values: model.generationConfig.values } : null,
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
  const model = openModelDir(positionals[0]);
  const rows = rowsOf(model);
  const plan = planOf(model, memory);
  // the whole report is built before anything is printed: stdout never holds half a result
  io.out(values.json ? jsonReport(model, rows, plan) : textReport(model, rows, Boolean(values.config), plan));
  return 0;
}
