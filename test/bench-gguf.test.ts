/**
 * The GGUF writer of the llama.cpp peer benchmark (bench/gguf.ts): number conversions against
 * their definitions, the Q8_0 / Q4_0 blocks against ggml's reference quantisation, and the file
 * layout read back by a small independent GGUF reader (header, metadata, tensor infos, aligned
 * data, split shards).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { f32ToBf16Bits, f32ToF16Bits, quantizeQ4_0, quantizeQ8_0, writeGguf, type TensorSpec } from '../bench/gguf.js';
import { bf16BitsToF32, f16BitsToF32 } from '../src/kernels/scalar.js';

test('f32 → f16 and → bf16 give back every finite half / bfloat pattern, and round to nearest even', () => {
  for (let h = 0; h < 0x10000; h++) {
    const x = f16BitsToF32(h);
    if (Number.isNaN(x)) assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(x))));
    else assert.equal(f32ToF16Bits(x), h, `f16 ${h.toString(16)}`);
    const y = bf16BitsToF32(h);
    if (Number.isNaN(y)) assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(y))));
    else assert.equal(f32ToBf16Bits(y), h, `bf16 ${h.toString(16)}`);
  }
  // any f32 lands on the nearer neighbour (ties to the even one)
  fc.assert(fc.property(fc.float({ noNaN: true, noDefaultInfinity: true, min: -60000, max: 60000 }), (x) => {
    const h = f32ToF16Bits(x), v = f16BitsToF32(h);
    for (const n of [h - 1, h + 1]) {
      if (n < 0 || (n & 0x7fff) >= 0x7c00 || ((n ^ h) & 0x8000)) continue;
      const w = f16BitsToF32(n);
      assert.ok(Math.abs(x - v) < Math.abs(x - w) || (Math.abs(x - v) === Math.abs(x - w) && (h & 1) === 0), `${x} → ${v}, but ${w} is nearer`);
    }
  }));
});

test('Q8_0 and Q4_0 blocks follow ggml: scale in f16 first, then the codes; dequantised within half a step', () => {
  // weights of ordinary magnitude (or 0): below ~1e-5 the f16 scale itself underflows, in ggml too
  const weight = fc.oneof(fc.constant(0), fc.float({ noNaN: true, min: Math.fround(1e-3), max: 4 }), fc.float({ noNaN: true, min: -4, max: Math.fround(-1e-3) }));
  fc.assert(fc.property(fc.array(weight, { minLength: 64, maxLength: 64 }), (vals) => {
    const x = Float32Array.from(vals);
    const q8 = quantizeQ8_0(x), q4 = quantizeQ4_0(x);
    assert.equal(q8.length, 2 * 34);
    assert.equal(q4.length, 2 * 18);
    const v8 = new DataView(q8.buffer), v4 = new DataView(q4.buffer);
    for (let b = 0; b < 2; b++) {
      const block = x.subarray(32 * b, 32 * b + 32);
      const amax = Math.max(...Array.from(block, Math.abs));
      const d8 = f16BitsToF32(v8.getUint16(34 * b, true));
      assert.equal(d8, f16BitsToF32(f32ToF16Bits(amax / 127)));
      for (let j = 0; j < 32; j++) {
        const q = v8.getInt8(34 * b + 2 + j);
        assert.ok(Math.abs(q) <= 127);
        assert.ok(Math.abs(q * d8 - block[j]) <= d8 / 2 + 2e-3 * amax + 1e-30, `q8 ${j}: ${q}·${d8} vs ${block[j]}`);
      }
      const d4 = f16BitsToF32(v4.getUint16(18 * b, true));
      for (let j = 0; j < 32; j++) {
        const byte = q4[18 * b + 2 + (j & 15)];
        const code = j < 16 ? byte & 15 : byte >> 4; // weight j low nibble, 16 + j high nibble
        // codes −8..7 around the largest weight (code 0): the other side clamps at code 15, up to a whole step off
        const step = code === 15 ? Math.abs(d4) : Math.abs(d4) / 2;
        assert.ok(Math.abs((code - 8) * d4 - block[j]) <= step + 2e-3 * amax + 1e-30, `q4 ${j}: (${code}−8)·${d4} vs ${block[j]}`);
      }
    }
  }), { numRuns: 100 });
});

/** An independent reader of what the writer must produce (GGUF v3, llama.cpp docs/gguf.md). */
function readGguf(path: string) {
  const b = readFileSync(path);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 0;
  const u32 = () => { const x = v.getUint32(o, true); o += 4; return x; };
  const u64 = () => { const x = Number(v.getBigUint64(o, true)); o += 8; return x; };
  const str = () => { const n = u64(); const s = b.subarray(o, o + n).toString('utf8'); o += n; return s; };
  const value = (type: number): unknown => {
    switch (type) {
      case 2: { const x = v.getUint16(o, true); o += 2; return x; }
      case 4: return u32();
      case 5: { const x = v.getInt32(o, true); o += 4; return x; }
      case 6: { const x = v.getFloat32(o, true); o += 4; return x; }
      case 7: return b[o++] !== 0;
      case 8: return str();
      case 9: { const t = u32(); const n = u64(); return Array.from({ length: n }, () => value(t)); }
      default: throw new Error(`metadata type ${type}`);
    }
  };
  assert.equal(b.subarray(0, 4).toString('latin1'), 'GGUF'); o = 4;
  assert.equal(u32(), 3);
  const nTensors = u64(), nMeta = u64();
  const meta: Record<string, unknown> = {};
  for (let i = 0; i < nMeta; i++) { const k = str(); meta[k] = value(u32()); }
  const tensors = Array.from({ length: nTensors }, () => {
    const name = str(); const nd = u32();
    const dims = Array.from({ length: nd }, u64);
    return { name, dims, type: u32(), offset: u64() };
  });
  const dataStart = Math.ceil(o / 32) * 32;
  return { meta, tensors, dataStart, size: b.length, bytes: b };
}

test('a written file reads back: metadata, tensor infos with 32-aligned offsets, data where the infos say; shards per gguf-split', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ponder-gguf-'));
  try {
    const ramp = (out: Float32Array) => { for (let i = 0; i < out.length; i++) out[i] = (i % 7) - 3; };
    const tensors: TensorSpec[] = [
      { name: 'a.weight', dims: [64, 3], type: 'Q8_0', fill: ramp },
      { name: 'norm.weight', dims: [5], type: 'F32', fill: ramp },
      { name: 'b.weight', dims: [32, 2], type: 'Q4_0', fill: ramp },
      { name: 'c.weight', dims: [8, 8], type: 'BF16', fill: ramp },
    ];
    const meta = { 'general.architecture': { type: 'string' as const, value: 'llama' }, 'x.tokens': { type: 'string[]' as const, value: ['<s>', 'ab'] }, 'x.eps': { type: 'f32' as const, value: 0.5 } };
    const [one] = writeGguf(join(dir, 'm.gguf'), meta, tensors);
    const f = readGguf(one);
    assert.deepEqual(f.meta, { 'general.architecture': 'llama', 'x.tokens': ['<s>', 'ab'], 'x.eps': 0.5 });
    assert.deepEqual(f.tensors.map((t) => [t.name, t.dims, t.type]), [['a.weight', [64, 3], 8], ['norm.weight', [5], 0], ['b.weight', [32, 2], 2], ['c.weight', [8, 8], 30]]);
    const sizes = [3 * 2 * 34, 20, 2 * 18, 128];
    let expected = 0;
    f.tensors.forEach((t, i) => { assert.equal(t.offset, expected); assert.equal(t.offset % 32, 0); expected += Math.ceil(sizes[i] / 32) * 32; });
    assert.equal(f.size, f.dataStart + expected);
    const norm = new Float32Array(f.bytes.buffer.slice(f.bytes.byteOffset + f.dataStart + f.tensors[1].offset, f.bytes.byteOffset + f.dataStart + f.tensors[1].offset + 20));
    assert.deepEqual(Array.from(norm), [-3, -2, -1, 0, 1]);

    // aligned data: a 224, norm 32, b 64, c 128 bytes; shards of at most 200 (a tensor never splits): [a] [norm b] [c]
    const shards = writeGguf(join(dir, 's.gguf'), meta, tensors, 200);
    assert.deepEqual(shards.map((p) => p.slice(dir.length + 1)), ['s-00001-of-00003.gguf', 's-00002-of-00003.gguf', 's-00003-of-00003.gguf']);
    const read = shards.map(readGguf);
    assert.equal(read[0].meta['general.architecture'], 'llama');
    assert.equal(read[1].meta['general.architecture'], undefined, 'only the first shard carries the model metadata');
    read.forEach((r, i) => assert.deepEqual([r.meta['split.no'], r.meta['split.count'], r.meta['split.tensors.count']], [i, 3, 4]));
    assert.deepEqual(read.flatMap((r) => r.tensors.map((t) => t.name)), tensors.map((t) => t.name));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
