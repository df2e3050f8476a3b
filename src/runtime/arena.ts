/**
 * Where tensors live. The WASM runtime hands out views into its linear memory (a bump allocator
 * over one shared memory, so views stay valid when memory grows); the scalar runtime hands out
 * ordinary typed arrays. Models allocate every buffer up front from a memory plan
 * (src/runtime/plan.ts) and never allocate in the token loop.
 */
export interface Arena {
  f32(n: number): Float32Array;
  u16(n: number): Uint16Array;
  i32(n: number): Int32Array;
  u8(n: number): Uint8Array;
  /** Bytes handed out so far. */
  readonly bytesUsed: number;
  /** Optional: make room for `bytes` more up front (the WASM arena grows its memory once). */
  reserve?(bytes: number): void;
}

/** The scalar runtime's arena: plain typed arrays, counted. */
export class HeapArena implements Arena {
  private used = 0;
  get bytesUsed(): number { return this.used; }
  f32(n: number): Float32Array { this.used += 4 * n; return new Float32Array(n); }
  u16(n: number): Uint16Array { this.used += 2 * n; return new Uint16Array(n); }
  i32(n: number): Int32Array { this.used += 4 * n; return new Int32Array(n); }
  u8(n: number): Uint8Array { this.used += n; return new Uint8Array(n); }
}
