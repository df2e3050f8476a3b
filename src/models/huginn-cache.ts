/**
 * Huginn's KV cache (upstream `HuginnDynamicCache`, huginn.md §4): one slot per (block index, step),
 * entries stored per (slot, position) so that a token that exited early simply has no entry in the
 * core slots of the iterations it skipped. Slot numbering: prelude layer i → i; core layer j at
 * iteration k → P + k·R + j; coda layer c → −(c+1).
 *
 * Lookup strategies decide what a later token attends to where a past token has no entry:
 *   full, skip              — only the entries that exist (identical results)
 *   latest-m4, available-m4 — the same core layer from the latest earlier iteration of that token
 *   latest                  — ours, not upstream's: latest-m4 for any shape (the model's own P and R;
 *                             for huginn-0125's P=2, R=4 it is latest-m4)
 *   always-last-m4          — the same core layer from that token's last iteration overall
 *   randomized              — a random earlier iteration of the same layer (our seeded PRNG; not
 *                             bit-compatible with torch.randint)
 * and `compress-sN` / `compress-rN` / `compress-anchor` (substrings) remap core slots onto a smaller
 * set that is overwritten. As upstream, the "m4" lookups, the compress remaps and the "slot > 1 is a
 * core slot" rule hard-code huginn-0125's P=2, R=4; with other shapes they do exactly what upstream
 * does (which is not meaningful), and where upstream would crash we throw HUGINN_CACHE_LOOKUP.
 *
 * Entries live on the JS heap ([B, kvDim] per slot and position); the model gathers the ones a
 * layer needs into arena buffers before calling the attention kernel.
 */
import { PonderError } from '../errors.js';
import type { KvBuffer, KvDType } from './kv-store.js';

/** One cached position of one slot: keys/values of every batch row, [B, kvDim] each, stored as the cache's kvDtype. */
export interface CacheEntry {
  readonly k: KvBuffer;
  readonly v: KvBuffer;
}

type Lookup = 'full' | 'skip' | 'latest-m4' | 'available-m4' | 'always-last-m4' | 'randomized' | 'latest';
type Compression = { kind: 'none' } | { kind: 's'; n: number } | { kind: 'r'; n: number } | { kind: 'anchor' };

export interface ParsedStrategy {
  readonly lookup: Lookup;
  readonly compression: Compression;
}

/** upstream's lookups, matched by prefix; our `latest` is matched whole (it takes no compression) */
const LOOKUPS: readonly Lookup[] = ['full', 'skip', 'latest-m4', 'available-m4', 'always-last-m4', 'randomized'];

/** The block counts the shape-generic `latest` lookup needs: prelude layers P and core layers R. */
export interface CacheShape {
  readonly prelude: number;
  readonly core: number;
}

/**
 * Parses a strategy name as upstream matches it: the lookup by prefix (`startsWith`), compression by
 * the substring `compress-`. Upstream only rejects an unknown lookup when it is first needed; we
 * reject it up front (a typo should not silently behave like "full" until the first early exit).
 * A bare `compress-*` name has no lookup prefix; upstream then only works while every position is
 * present, so we treat it as "full" lookup (the fast path upstream takes in that case).
 */
export function parseCacheStrategy(name: string): ParsedStrategy {
  if (name === 'latest') return { lookup: 'latest', compression: { kind: 'none' } };
  let compression: Compression = { kind: 'none' };
  const at = name.indexOf('compress-');
  if (at >= 0) {
    const rest = name.slice(at + 'compress-'.length);
    if (rest.startsWith('anchor')) compression = { kind: 'anchor' };
    else {
      const m = /^([sr])(\d+)$/.exec(rest);
      if (!m || Number(m[2]) < 1) {
        throw new PonderError('HUGINN_CACHE_STRATEGY', `cache lookup strategy ${JSON.stringify(name)}: cannot read the compression "${rest}"`, { field: 'cache_lookup_strategy', hint: 'use compress-s<N>, compress-r<N> or compress-anchor (N ≥ 1)' });
      }
      compression = { kind: m[1] as 's' | 'r', n: Number(m[2]) };
    }
  }
  const lookup = LOOKUPS.find((l) => name.startsWith(l));
  if (!lookup) {
    if (at === 0) return { lookup: 'full', compression };
    throw new PonderError('HUGINN_CACHE_STRATEGY', `unknown cache lookup strategy ${JSON.stringify(name)}`, { field: 'cache_lookup_strategy', hint: `use one of ${LOOKUPS.join(', ')}, optionally followed by -compress-s<N> / -compress-r<N> / -compress-anchor, or latest` });
  }
  return { lookup, compression };
}

/** Returns a uniform integer in [0, n) — the randomized lookup's draw. */
export type RandomIndex = (n: number) => number;

export class HuginnCache {
  readonly strategyName: string;
  readonly strategy: ParsedStrategy;
  /** positions seen so far (upstream `_seen_tokens`) */
  seenTokens = 0;
  /** slot → (position → entry), in insertion order like upstream's dicts */
  private readonly slots = new Map<number, Map<number, CacheEntry>>();

  /** `kvDtype`: how entries store keys and values (f32, or bf16 / f16 bits rounded by the model when it files them) */
  constructor(strategyName = 'full', private readonly randomIndex: RandomIndex | null = null, readonly kvDtype: KvDType = 'f32', private readonly shape: CacheShape | null = null) {
    this.strategyName = strategyName;
    this.strategy = parseCacheStrategy(strategyName);
    if (this.strategy.lookup === 'latest' && !shape) {
      throw new PonderError('HUGINN_CACHE_STRATEGY', 'the "latest" lookup needs the model\'s prelude and core layer counts', { field: 'cache_lookup_strategy', hint: 'create the cache with the model\'s newCache()' });
    }
    if (this.strategy.lookup === 'randomized' && !randomIndex) {
      throw new PonderError('HUGINN_CACHE_STRATEGY', 'the "randomized" lookup needs a random source', { field: 'cache_lookup_strategy', hint: 'pass a seed (our PRNG; not bit-compatible with torch)' });
    }
  }

  /** Where a slot's entries are stored after compression (upstream `update` step 1). */
  storageSlot(slot: number): number {
    const c = this.strategy.compression;
    if (c.kind === 'none' || slot <= 1) return slot;
    if (c.kind === 's') return ((slot - 2) % c.n) + 2;
    if (c.kind === 'r') return Math.floor((slot - 2) / c.n) + 2;
    return slot - 2 < 4 * 8 ? slot : 34 + ((slot - 34) % 4); // anchor: first 8 iterations keep their slots
  }

  /**
   * Files the new positions' keys/values (k/v: [B, S, kvDim] as S entries of [B, kvDim]) under
   * `slot` and returns the entries this layer attends to, in order. Slot 0 (first prelude layer)
   * advances the position counter, as upstream assumes every call passes through it first.
   */
  update(slot: number, newEntries: readonly CacheEntry[]): CacheEntry[] {
    const s = this.storageSlot(slot);
    let entries = this.slots.get(s);
    if (!entries) { entries = new Map(); this.slots.set(s, entries); }
    const S = newEntries.length;
    if (s === 0) this.seenTokens += S;
    for (let i = 0; i < S; i++) {
      const pos = this.seenTokens - S + i;
      if (this.strategy.compression.kind === 'none' && s >= 0 && entries.has(pos)) {
        throw new PonderError('HUGINN_CACHE_STATE', `KV cache slot ${s} already holds position ${pos}`, { hint: 'every forward call must start at the first prelude layer (slot 0); do not reuse a cache across unrelated calls' });
      }
      entries.set(pos, newEntries[i]);
    }
    if (entries.size === this.seenTokens || this.strategyName === 'full') return [...entries.values()];
    return this.lookup(s);
  }

  private lookup(slot: number): CacheEntry[] {
    const out: CacheEntry[] = [];
    const { lookup } = this.strategy;
    const own = this.slots.get(slot)!;
    if (lookup === 'full' || lookup === 'skip') {
      for (let p = 0; p < this.seenTokens; p++) { const e = own.get(p); if (e) out.push(e); }
      return out;
    }
    if (lookup === 'latest') return this.lookupLatest(slot);
    for (let p = 0; p < this.seenTokens; p++) {
      let from: number;
      if (slot < 2) {
        from = own.has(p) ? slot : 0; // prelude/coda: own slot, else the first prelude layer (upstream)
      } else if (lookup === 'available-m4' && own.has(p)) {
        from = slot;
      } else if (lookup === 'always-last-m4') {
        from = this.latestSameLayer(p, slot, Infinity);
      } else if (lookup === 'randomized') {
        const candidates: number[] = [];
        const layer = ((slot - 2) % 4) + 2;
        for (let s = 2; s <= slot; s++) if (((s - 2) % 4) + 2 === layer && this.slots.get(s)?.has(p)) candidates.push(s);
        if (candidates.length === 0) this.noCandidate(p, slot);
        from = candidates[this.randomIndex!(candidates.length)];
      } else {
        from = this.latestSameLayer(p, slot, slot); // latest-m4, and available-m4 for a missing entry
      }
      const e = this.slots.get(from)?.get(p);
      if (!e) this.noCandidate(p, slot);
      out.push(e);
    }
    return out;
  }

  /**
   * `latest`: a position missing from core slot P + k·R + j (it exited before iteration k) is read
   * from its latest earlier iteration of the same core layer j — the KV it exited with. Prelude and
   * coda slots hold every position (every token runs them).
   */
  private lookupLatest(slot: number): CacheEntry[] {
    const { prelude: P, core: R } = this.shape!;
    const own = this.slots.get(slot)!;
    const out: CacheEntry[] = [];
    for (let p = 0; p < this.seenTokens; p++) {
      let e = own.get(p);
      for (let s = slot - R; !e && s >= P; s -= R) e = this.slots.get(s)?.get(p);
      if (!e) this.noCandidate(p, slot);
      out.push(e);
    }
    return out;
  }

  /** Largest slot s ≥ 2 with s ≡ slot (mod 4), s ≤ limit, that holds position p. */
  private latestSameLayer(p: number, slot: number, limit: number): number {
    let best = -1;
    for (const [s, entries] of this.slots) {
      if (s >= 2 && s <= limit && s % 4 === slot % 4 && entries.has(p) && s > best) best = s;
    }
    if (best < 0) this.noCandidate(p, slot);
    return best;
  }

  private noCandidate(p: number, slot: number): never {
    throw new PonderError('HUGINN_CACHE_LOOKUP', `lookup "${this.strategyName}" finds no entry for position ${p} at slot ${slot}`, { field: 'cache_lookup_strategy', hint: 'the m4 lookups hard-code huginn-0125 (2 prelude layers, 4 core layers), as upstream does; use "latest", "full" or "skip" for other shapes' });
  }

  /** Drops every position ≥ seenTokens − k from every slot (upstream `clear_last_k_entries`). */
  clearLastK(k: number): void {
    if (k < 0 || k > this.seenTokens) throw new PonderError('HUGINN_CACHE_STATE', `cannot clear ${k} of ${this.seenTokens} cached positions`, { hint: 'internal bookkeeping error' });
    this.seenTokens -= k;
    for (const entries of this.slots.values()) for (const p of [...entries.keys()]) if (p >= this.seenTokens) entries.delete(p);
  }

  /** Sorted slot ids that exist (including slots emptied by clearLastK, as upstream keeps them). */
  slotIds(): number[] {
    return [...this.slots.keys()].sort((a, b) => a - b);
  }

  has(slot: number, pos: number): boolean {
    return this.slots.get(slot)?.has(pos) ?? false;
  }

  entry(slot: number, pos: number): CacheEntry | undefined {
    return this.slots.get(slot)?.get(pos);
  }

  /** Bytes held by keys and values (at the cache's kvDtype). */
  memoryBytes(): number {
    let bytes = 0;
    for (const entries of this.slots.values()) for (const e of entries.values()) bytes += e.k.byteLength + e.v.byteLength;
    return bytes;
  }

  /** The same figure upstream's `get_memory_usage` reports: 2 × key bytes, in MiB. */
  memoryUsageMB(): number {
    return this.memoryBytes() / (1024 * 1024);
  }
}
