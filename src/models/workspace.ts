/**
 * A model's work buffers: named arena buffers that a call asks for by size. A buffer is reused
 * while it is large enough and replaced by one of at least twice the size when a longer call needs
 * more (the arena is a bump allocator that never frees, so growth is geometric and rare). Views
 * may be longer than asked for; kernels take their sizes from their shape arguments.
 *
 * Every family uses this one type: Huginn asks per use site, Ouro per call for its row count, MoR
 * once at load for its longest sequence.
 */
import type { Runtime } from '../runtime/runtime.js';

type WorkBuffer = Float32Array | Int32Array | Uint16Array | Uint8Array;

export class Workspace {
  private readonly buffers = new Map<string, WorkBuffer>(); // 'f32:x', 'i32:positions', ...

  constructor(private readonly runtime: Runtime) {}

  /** A Float32Array of at least `n` elements: the buffer of the last call with this name while it is long enough. */
  f32(name: string, n: number): Float32Array {
    return this.get(`f32:${name}`, n, (m) => this.runtime.arena.f32(m));
  }

  i32(name: string, n: number): Int32Array {
    return this.get(`i32:${name}`, n, (m) => this.runtime.arena.i32(m));
  }

  u16(name: string, n: number): Uint16Array {
    return this.get(`u16:${name}`, n, (m) => this.runtime.arena.u16(m));
  }

  u8(name: string, n: number): Uint8Array {
    return this.get(`u8:${name}`, n, (m) => this.runtime.arena.u8(m));
  }

  private get<T extends WorkBuffer>(key: string, n: number, allocate: (n: number) => T): T {
    const old = this.buffers.get(key) as T | undefined;
    if (old !== undefined && old.length >= n) return old;
    const b = allocate(Math.max(n, 2 * (old?.length ?? 0)));
    this.buffers.set(key, b);
    return b;
  }
}
