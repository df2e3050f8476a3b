/**
 * Same-run memory bandwidth baseline for the decode benchmark: `stream_read_f32` (assembly/stream.ts)
 * reads blocks of the same size as the decode weights, rotating through a buffer as large as the
 * cold weight copies, so it sees the same DRAM the decode kernel does. DRAM bandwidth on the shared
 * host drifts 18–27 GB/s minute to minute (perf.md §2), so each decode row is timed right next to
 * its own stream measurement and reported as a percentage of it.
 *
 * It runs in its own instance and memory (the stream kernel does not depend on the runtime's).
 */
import { KERNELS_WASM } from '../src/kernels/wasm-binary.js';
import { timeSync, type TimingOptions } from './timing.js';

const PAGE_BYTES = 65536;
const MAX_PAGES = 65536; // 4 GiB, the wasm32 limit

export class StreamBaseline {
  private constructor(
    private readonly read: (pointer: number, floats: number) => number,
    private readonly bufferBytes: number,
  ) {}

  /** Allocates and touches a `bufferBytes` buffer in a fresh instance of the kernels module. */
  static async create(bufferBytes: number): Promise<StreamBaseline> {
    const module = await WebAssembly.compile(new Uint8Array(Buffer.from(KERNELS_WASM, 'base64')));
    const pages = Math.ceil(bufferBytes / PAGE_BYTES) + 1; // page 0 left for the module's own data
    const memory = new WebAssembly.Memory({ initial: pages, maximum: MAX_PAGES, shared: true });
    const env: Record<string, WebAssembly.ImportValue> = {};
    for (const imp of WebAssembly.Module.imports(module)) {
      if (imp.kind === 'memory') env[imp.name] = memory;
      else if (imp.kind === 'function') env[imp.name] = () => { throw new Error(`kernels module called env.${imp.name}`); };
    }
    const instance = await WebAssembly.instantiate(module, { env });
    const read = instance.exports.stream_read_f32 as ((pointer: number, floats: number) => number) | undefined;
    if (typeof read !== 'function') throw new Error('the kernels module has no stream_read_f32 export (rebuild with `npm run build:wasm`)');
    // Write every page: untouched pages all map to the kernel's shared zero page and read from cache.
    new Float32Array(memory.buffer, PAGE_BYTES, bufferBytes / 4).fill(1);
    return new StreamBaseline(read, bufferBytes);
  }

  /** Median GB/s of reading `blockBytes` per call, each call the next block of the buffer. */
  async gbps(blockBytes: number, timing: TimingOptions): Promise<number> {
    const floats = Math.floor(blockBytes / 64) * 16; // whole cache lines, as the kernel requires
    const blocks = Math.max(1, Math.floor(this.bufferBytes / (floats * 4)));
    let next = 0;
    let sink = 0;
    const t = await timeSync(() => {
      sink += this.read(PAGE_BYTES + next * floats * 4, floats);
      next = (next + 1) % blocks;
    }, timing);
    if (Number.isNaN(sink)) throw new Error('stream read returned NaN');
    return (floats * 4) / t.seconds / 1e9;
  }
}
