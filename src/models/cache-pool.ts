/**
 * KV caches live in the runtime's arena, a bump allocator that never frees (src/runtime/arena.ts).
 * A long-lived model — a server answering thousands of requests — must therefore reuse the caches
 * of ended sessions instead of allocating new ones. A family whose caches live in the arena keeps
 * one CachePool; its adapter takes a cache in `newSession` and gives it back in `endSession`.
 *
 * Sizing: the first cache is exactly the capacity asked for (a one-shot `generate` spends no more
 * than before). When no free cache fits, the new one has at least twice the largest capacity made
 * so far (capped at the context), so k sessions at a time need at most about k + 1 full-context
 * caches however their capacities vary, instead of one new cache per request.
 */
export class CachePool<C> {
  private readonly free: C[] = [];
  private largest = 0;

  /**
   * @param contextLength the largest capacity a session may ask for
   * @param make allocates a cache of `capacity` positions
   * @param capacityOf the positions a cache holds
   */
  constructor(private readonly contextLength: number, private readonly make: (capacity: number) => C, private readonly capacityOf: (cache: C) => number) {}

  /** A cache of at least `capacity` positions, not in use by any session: the caller empties it. */
  take(capacity: number): C {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const c = this.capacityOf(this.free[i]);
      if (c >= capacity && (best < 0 || c < this.capacityOf(this.free[best]))) best = i;
    }
    if (best >= 0) return this.free.splice(best, 1)[0];
    // beyond the context, `make` raises the family's own error (GEN_CONTEXT)
    const size = this.largest === 0 || capacity > this.contextLength ? capacity : Math.min(this.contextLength, Math.max(capacity, 2 * this.largest));
    this.largest = Math.max(this.largest, size);
    return this.make(size);
  }

  /** Returns a cache no session uses any more. */
  give(cache: C): void {
    if (!this.free.includes(cache)) this.free.push(cache);
  }
}
