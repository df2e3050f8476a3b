/**
 * Where a model's parts live: its memory plan (src/runtime/plan.ts), computed from the config, the
 * family's tensor list and the stored dtypes before any tensor is read, and the memory shard each
 * group was given. Linear weights and KV caches go to their group's shard; norms, biases, tables and
 * work buffers to the home shard (shard 0), where the hidden state lives between layers.
 */
import { PonderError } from '../errors.js';
import type { Arena } from '../runtime/arena.js';
import { planMemory, type MemoryPlan, type StoredQuant } from '../runtime/plan.js';
import type { Runtime } from '../runtime/runtime.js';
import type { DType } from '../format/safetensors.js';
import type { FamilyDefinition, LoadOptions, MemoryNeeds, TensorSpec } from './family.js';

/** What the plan reads of a checkpoint: names, stored dtypes and quantization, never data. */
export interface TensorHeaders {
  readonly label: string;
  info(name: string): { readonly dtype: DType; readonly quant?: StoredQuant } | undefined;
}

/** The memory plan of a model's tensors and needs on `runtime` under the load options: refuses (MEM_OVER_LIMIT, ...) before anything is read. */
export function planModel(tensors: readonly TensorSpec[], needs: MemoryNeeds, headers: TensorHeaders, runtime: Pick<Runtime, 'forceShards' | 'threads'>, options: LoadOptions = {}): MemoryPlan {
  return planMemory({ label: headers.label, tensors, needs, dtypeOf: (name) => headers.info(name)?.dtype, quantOf: (name) => headers.info(name)?.quant }, {
    context: options.context, kvDtype: options.kvDtype, maxMemory: options.maxMemory, hostMemoryBytes: options.hostMemoryBytes,
    maxShardBytes: options.maxShardBytes, shards: runtime.forceShards, threads: runtime.threads,
  });
}

/** planModel for a family's config. */
export function planFamily<C>(family: FamilyDefinition<C>, config: C, headers: TensorHeaders, runtime: Pick<Runtime, 'forceShards' | 'threads'>, options: LoadOptions = {}): MemoryPlan {
  return planModel(family.tensors(config), family.memory(config), headers, runtime, options);
}

export class Placement {
  private readonly tensorGroup = new Map<string, string>();
  /** false on a runtime with one unlimited memory (scalar): everything is home */
  private readonly sharded: boolean;

  constructor(readonly plan: MemoryPlan, private readonly runtime: Runtime, tensors: readonly TensorSpec[]) {
    for (const t of tensors) this.tensorGroup.set(t.name, t.group);
    this.sharded = runtime.shardArenas !== undefined;
    const have = runtime.shardArenas?.length ?? 1;
    if (this.sharded && plan.shards.length > have) {
      throw new PonderError('MEM_SHARDS', `${plan.label}: the memory plan needs ${plan.shards.length} memory shards, the runtime has ${have}`,
        { hint: `load through loadModel / loadModelDir (they add shards), or call await runtime.ensureShards(${plan.shards.length}) before loading` });
    }
  }

  /** The shard of a group ('layers.3', 'head', ...); 0 for groups the plan does not list. */
  shardOf(group: string): number {
    return this.sharded ? this.plan.shardOf.get(group) ?? 0 : 0;
  }

  /** The shard a tensor binds into: its group's. */
  shardOfTensor(name: string): number {
    const group = this.tensorGroup.get(name);
    return group === undefined ? 0 : this.shardOf(group);
  }

  /** The arena of a group's shard (its KV cache is allocated there). */
  arena(group: string): Arena {
    const s = this.shardOf(group);
    return s === 0 ? this.runtime.arena : this.runtime.shardArenas![s];
  }
}

/** The plan (given in the options, or computed now) placed on `runtime`: what a family's bind starts with. */
export function place(tensors: readonly TensorSpec[], needs: MemoryNeeds, headers: TensorHeaders, runtime: Runtime, options: LoadOptions = {}): Placement {
  return new Placement(options.plan ?? planModel(tensors, needs, headers, runtime, options), runtime, tensors);
}
