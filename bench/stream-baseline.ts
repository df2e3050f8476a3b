/**
 * Same-run memory bandwidth baseline for the decode benchmark: `stream_read_f32` (assembly/stream.ts)
 * reads blocks of the same size as the decode weights, rotating through a buffer as large as the
 * cold weight copies, so it sees the same DRAM the decode kernel does. DRAM bandwidth on the shared
 * host drifts 18–27 GB/s minute to minute (perf.md §2), so each decode row is timed right next to
 * its own stream measurement and reported as a percentage of it.
 *
 * It runs in its own instance and memory (the stream kernel does not depend on the runtime's).
 * With `threads` > 1, worker threads read their share of each block at the same time (one more
 * thread adds only part of one thread's bandwidth: perf.md §5), so a multi-thread kernel is
 * compared with what that many threads can stream.
 */
import { Worker } from 'node:worker_threads';
import { KERNELS_WASM } from '../src/kernels/wasm-binary.js';
import { timeSync, type TimingOptions } from './timing.js';

const PAGE_BYTES = 65536;
const MAX_PAGES = 65536; // 4 GiB, the wasm32 limit
// Control block (i32 per worker, at the start of page 0's second half): job counter, done counter,
// pointer and floats of the worker's share.
const CONTROL = 32768;
const SLOT_INTS = 16;

// A worker: instantiates the module on the shared memory, then reads its share whenever the job
// counter moves; -1 stops it. Blocks its thread: spins for the next block of a measurement, then
// sleeps in Atomics.wait until the next job's notify. No timeout: a worker that woke every 50 ms to
// spin again took ~15 % of a core for as long as it lived, which on a 2-core host preempted the
// decode threads being measured beside it for milliseconds at a time.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, slot } = workerData;
const read = new WebAssembly.Instance(module, { env: { memory, abort() { throw new Error('abort'); } } }).exports.stream_read_f32;
const c = new Int32Array(memory.buffer, ${CONTROL} + slot * ${SLOT_INTS * 4}, ${SLOT_INTS});
parentPort.postMessage('ready');
let seen = 0, sink = 0;
for (;;) {
  let spins = 0;
  while (Atomics.load(c, 0) === seen) if (++spins > 1e6) Atomics.wait(c, 0, seen);
  seen = Atomics.load(c, 0);
  if (seen === -1) break;
  sink += read(c[2], c[3]);
  Atomics.store(c, 1, seen);
}
if (Number.isNaN(sink)) throw new Error('NaN');
`;

export class StreamBaseline {
  private generation = 0;
  private constructor(
    private readonly read: (pointer: number, floats: number) => number,
    private readonly bufferBytes: number,
    private readonly control: Int32Array,
    private readonly workers: Worker[],
  ) {}

  /** Allocates and touches a `bufferBytes` buffer in a fresh instance of the kernels module; `threads` − 1 workers join it. */
  static async create(bufferBytes: number, threads = 1): Promise<StreamBaseline> {
    const module = await WebAssembly.compile(new Uint8Array(Buffer.from(KERNELS_WASM, 'base64')));
    const pages = Math.ceil(bufferBytes / PAGE_BYTES) + 1; // page 0 left for the module's own data and the control block
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
    const control = new Int32Array(memory.buffer, CONTROL, SLOT_INTS * Math.max(1, threads - 1));
    const workers: Worker[] = [];
    for (let slot = 0; slot < threads - 1; slot++) {
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { module, memory, slot } });
      await new Promise<void>((ok, fail) => { w.once('message', () => ok()); w.once('error', fail); });
      workers.push(w);
    }
    return new StreamBaseline(read, bufferBytes, control, workers);
  }

  /** Threads reading each block (this one plus the workers). */
  get threads(): number { return this.workers.length + 1; }

  /** Median GB/s of reading `blockBytes` per call, each call the next block of the buffer, split over the threads. */
  async gbps(blockBytes: number, timing: TimingOptions): Promise<number> {
    if (blockBytes > this.bufferBytes) throw new Error(`stream baseline: a ${blockBytes}-byte block does not fit its ${this.bufferBytes}-byte buffer`);
    const floats = Math.floor(blockBytes / 64) * 16; // whole cache lines, as the kernel requires
    const blocks = Math.max(1, Math.floor(this.bufferBytes / (floats * 4)));
    const n = this.threads;
    const share = Math.floor(floats / 16 / n) * 16; // each worker's floats (whole lines); this thread reads the rest, last
    let next = 0;
    let sink = 0;
    const c = this.control;
    const t = await timeSync(() => {
      const base = PAGE_BYTES + next * floats * 4;
      const gen = ++this.generation;
      for (let w = 0; w < n - 1; w++) {
        const slot = w * SLOT_INTS;
        c[slot + 2] = base + w * share * 4;
        c[slot + 3] = share;
        Atomics.store(c, slot, gen);
        Atomics.notify(c, slot);
      }
      sink += this.read(base + (n - 1) * share * 4, floats - (n - 1) * share);
      for (let w = 0; w < n - 1; w++) while (Atomics.load(c, w * SLOT_INTS + 1) !== gen) { /* spin: a share takes well under a millisecond */ }
      next = (next + 1) % blocks;
    }, timing);
    if (Number.isNaN(sink)) throw new Error('stream read returned NaN');
    return (floats * 4) / t.seconds / 1e9;
  }

  /** Stops the worker threads. */
  async dispose(): Promise<void> {
    for (let w = 0; w < this.workers.length; w++) { Atomics.store(this.control, w * SLOT_INTS, -1); Atomics.notify(this.control, w * SLOT_INTS); }
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
