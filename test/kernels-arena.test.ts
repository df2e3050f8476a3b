import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWasmRuntime } from '../src/kernels/wasm.js';
import { LARGE_BYTES, LINE_ALIGN, PAGE_ALIGN, WasmArena, WASM_MAX_BYTES } from '../src/runtime/wasm-arena.js';
import { PonderError } from '../src/errors.js';

test('arena views start on a cache line, are disjoint, and stay valid (same bytes) after the memory grows', async () => {
  const { arena } = await createWasmRuntime();
  const a = arena.f32(3), b = arena.u16(5), c = arena.u8(1), d = arena.i32(7);
  for (const v of [a, b, c, d]) assert.equal(v.byteOffset % LINE_ALIGN, 0);
  const spans = [a, b, c, d].map((v) => [v.byteOffset, v.byteOffset + v.byteLength]).sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i][0] >= spans[i - 1][1], 'views overlap');
  a.set([1.5, 2.5, 3.5]);
  const before = arena.bytesCommitted;
  const big = arena.f32(20 * 1024 * 1024); // forces growth
  assert.ok(arena.bytesCommitted > before);
  assert.deepEqual([...a], [1.5, 2.5, 3.5]);
  assert.ok(arena.owns(a) && arena.owns(big));
});

test('buffers of LARGE_BYTES or more start on a 4 KiB page, whatever was allocated before them; smaller ones stay packed on cache lines', async () => {
  const { arena } = await createWasmRuntime();
  const views: ArrayBufferView[] = [];
  for (const [kind, n] of [['u8', 3], ['u16', LARGE_BYTES / 2], ['f32', 5], ['u8', LARGE_BYTES + 1], ['u8', LARGE_BYTES - 1], ['i32', 7], ['u16', 3 * LARGE_BYTES]] as const) {
    const v = arena[kind](n);
    if (v.byteLength >= LARGE_BYTES) assert.equal(v.byteOffset % PAGE_ALIGN, 0, `${kind}(${n}) starts on a page`);
    else assert.equal(v.byteOffset % LINE_ALIGN, 0, `${kind}(${n}) starts on a cache line`);
    views.push(v);
  }
  const spans = views.map((v) => [v.byteOffset, v.byteOffset + v.byteLength]).sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i][0] >= spans[i - 1][1], 'views overlap');
  const after = arena.u8(1);
  assert.ok(after.byteOffset - (views[6].byteOffset + views[6].byteLength) < LINE_ALIGN, 'a small buffer after a large one is not padded to a page');
});

test('kernels refuse views from another runtime and plain typed arrays', async () => {
  const one = await createWasmRuntime(), other = await createWasmRuntime();
  const y = one.arena.f32(3), mine = one.arena.f32(3);
  assert.throws(() => one.kernels.add(y, mine, other.arena.f32(3), 3), { code: 'KERNEL_FOREIGN_BUFFER' });
  assert.throws(() => one.kernels.add(y, mine, new Float32Array(3), 3), { code: 'KERNEL_FOREIGN_BUFFER' });
});

test('kernels keep working on views created before a growth', async () => {
  const { kernels, arena } = await createWasmRuntime();
  const a = arena.f32(4), y = arena.f32(4);
  a.set([1, 2, 3, 4]);
  arena.reserve(64 * 1024 * 1024);
  kernels.add(y, a, a, 4);
  assert.deepEqual([...y], [2, 4, 6, 8]);
});

test('reserve grows the memory once so the planned allocations need no further growth', async () => {
  const { arena } = await createWasmRuntime();
  arena.reserve(40 * 1024 * 1024);
  const committed = arena.bytesCommitted;
  arena.f32(5 * 1024 * 1024); arena.u16(4 * 1024 * 1024);
  assert.equal(arena.bytesCommitted, committed);
});

test('an allocation past 4 GiB is MEM_MODEL_TOO_LARGE naming the bytes needed', async () => {
  const { arena } = await createWasmRuntime();
  assert.throws(() => arena.f32(WASM_MAX_BYTES / 4), (e: unknown) => e instanceof PonderError && e.code === 'MEM_MODEL_TOO_LARGE' && /\d{10} bytes/.test(e.message));
  assert.throws(() => arena.reserve(WASM_MAX_BYTES), { code: 'MEM_MODEL_TOO_LARGE' });
  assert.throws(() => arena.f32(-1), { code: 'MEM_BAD_SIZE' });
});

test('a host RangeError while growing becomes MEM_HOST_OOM', () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  memory.grow = () => { throw new RangeError('WebAssembly.Memory.grow(): Unable to grow instance memory'); };
  const arena = new WasmArena(memory, 1024);
  assert.throws(() => arena.f32(1 << 20), { code: 'MEM_HOST_OOM' });
});
