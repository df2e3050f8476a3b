/**
 * The memory-plan flags of run, trace, chat, serve and inspect: --context, --kv-dtype, --max-memory
 * (src/runtime/plan.ts), and the plan printed as text.
 */
import { PonderError } from '../errors.js';
import { formatBytes, KV_DTYPES, parseByteSize, type KvDType, type MemoryPlan } from '../runtime/plan.js';
import type { FlagSpec } from './args.js';

export const MEMORY_FLAGS: FlagSpec = {
  context: { type: 'string' },
  'kv-dtype': { type: 'string' },
  'max-memory': { type: 'string' },
};

export const MEMORY_HELP = `  --context N             tokens a sequence may hold (prompt + generated); the KV cache is planned
                          for this (default: the config's context)
  --kv-dtype f32|bf16|f16 how the KV cache stores keys and values (default f32, what conformance
                          uses; bf16/f16 halve it, spec/numerics.md)
  --max-memory BYTES      refuse a plan over this (e.g. 8GiB, 512MiB; default: this machine's memory)
`;

export interface MemoryFlagOptions { context?: number; kvDtype?: KvDType; maxMemory?: number }

/** The plan options the flags give (absent flags stay absent). */
export function memoryOptions(values: Record<string, unknown>): MemoryFlagOptions {
  const out: MemoryFlagOptions = {};
  if (values.context !== undefined) {
    const text = String(values.context);
    if (!/^\d+$/.test(text) || Number(text) < 1) throw new PonderError('ARG_INVALID', `--context must be a positive integer, got ${JSON.stringify(text)}`, { field: 'context', hint: 'e.g. --context 4096' });
    out.context = Number(text);
  }
  if (values['kv-dtype'] !== undefined) {
    const d = String(values['kv-dtype']);
    if (!(KV_DTYPES as readonly string[]).includes(d)) throw new PonderError('ARG_INVALID', `--kv-dtype must be one of ${KV_DTYPES.join(', ')}, got ${JSON.stringify(d)}`, { field: 'kv-dtype', hint: 'f32 (default), bf16 or f16' });
    out.kvDtype = d as KvDType;
  }
  if (values['max-memory'] !== undefined) out.maxMemory = parseByteSize(String(values['max-memory']), 'max-memory');
  return out;
}

/** The plan as indented text lines: one per shard, the JS heap, the total against the limit, the context capacity per KV dtype. */
export function planLines(plan: MemoryPlan): string[] {
  const lines = [`memory plan: context ${plan.context} tokens, ${plan.kvDtype} KV cache, ${plan.shards.length} memory shard${plan.shards.length > 1 ? 's' : ''}`];
  plan.shards.forEach((s, i) => {
    const groups = s.groups.length > 4 ? `${s.groups[0]}, ${s.groups[1]} … ${s.groups[s.groups.length - 1]} (${s.groups.length} groups)` : s.groups.join(', ');
    lines.push(`  shard ${i}: ${formatBytes(s.totalBytes)} = weights ${formatBytes(s.weightBytes)} + KV cache ${formatBytes(s.kvBytes)} + work ${formatBytes(s.workBytes)}  [${groups}]`);
  });
  lines.push(`  JS heap: ${formatBytes(plan.hostBytes)} (embedding tables in their stored dtype, KV kept on the heap, the tensor being read)`);
  const limit = Number.isFinite(plan.limitBytes) ? `of ${formatBytes(plan.limitBytes)} (${plan.limitSource})` : '(no memory limit known)';
  lines.push(`  total: ${formatBytes(plan.totalBytes)} ${limit}`);
  lines.push(`  longest context within the limit: ${KV_DTYPES.map((d) => `${d} ${plan.contextCapacity[d]}`).join(', ')} tokens`);
  return lines;
}

/** The plan as plain JSON values. */
export function planJson(plan: MemoryPlan): Record<string, unknown> {
  return {
    context: plan.context, kv_dtype: plan.kvDtype,
    shards: plan.shards.map((s) => ({ groups: s.groups, weight_bytes: s.weightBytes, kv_bytes: s.kvBytes, work_bytes: s.workBytes, total_bytes: s.totalBytes })),
    host_bytes: plan.hostBytes, total_bytes: plan.totalBytes,
    limit_bytes: Number.isFinite(plan.limitBytes) ? plan.limitBytes : null, limit_source: plan.limitSource,
    context_capacity: plan.contextCapacity,
  };
}
