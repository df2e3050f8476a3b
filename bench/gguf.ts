/**
 * A small GGUF writer for the llama.cpp peer benchmark (bench/llama.bench.ts): the decoder shapes
 * of one Ouro loop written as a Llama-architecture model with random weights, in F16, BF16, Q8_0
 * or Q4_0, streamed tensor by tensor (memory stays at one chunk), optionally split into shards
 * of at most `maxShardBytes` the way llama.cpp's gguf-split does (wllama loads files of at most
 * 2 GB). Never committed: files go under /work/big or /tmp.
 *
 * GGUF v3 (llama.cpp docs/gguf.md): "GGUF", version, tensor count, metadata count; metadata as
 * (key, type, value); tensor infos as (name, n_dims, dims from the innermost, ggml type, offset
 * into the data section); then the data section, every tensor aligned to `general.alignment` (32).
 * Split shards: the first holds every metadata key, each holds `split.no`, `split.count`,
 * `split.tensors.count` and its own tensors; files are named PREFIX-0000i-of-0000n.gguf.
 *
 * Block formats (ggml-quants.c, quantize_row_*_ref):
 *   Q8_0: 32 weights → f16 d = max|x| / 127, then 32 × int8 round(x / d)          (34 bytes)
 *   Q4_0: 32 weights → f16 d = x_m / −8 (x_m: the weight of largest |x|), then 16 bytes of
 *         nibbles q = min(15, trunc(x / d + 8.5)): weight j in the low nibble of byte j, weight
 *         16 + j in its high nibble                                                (18 bytes)
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { f32ToF16Bits, f32ToBf16Bits } from '../src/kernels/scalar.js';

// f32 → f16 / bf16 bits live with their inverses in src/kernels/scalar.ts (ponder quantize writes them too)
export { f32ToF16Bits, f32ToBf16Bits };

export type GgmlType = 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0';

const GGML_TYPE_ID: Record<GgmlType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 };
// llama_ftype ("general.file_type") of a file whose big tensors are of this type
export const GGUF_FILE_TYPE: Record<Exclude<GgmlType, 'F32'>, number> = { F16: 1, Q4_0: 2, Q8_0: 7, BF16: 32 };
const BLOCK: Record<GgmlType, { values: number; bytes: number }> = {
  F32: { values: 1, bytes: 4 }, F16: { values: 1, bytes: 2 }, BF16: { values: 1, bytes: 2 },
  Q8_0: { values: 32, bytes: 34 }, Q4_0: { values: 32, bytes: 18 },
};
const ALIGNMENT = 32;

export type MetaValue =
  | { type: 'u32'; value: number } | { type: 'i32'; value: number } | { type: 'u16'; value: number } | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean } | { type: 'string'; value: string }
  | { type: 'string[]'; value: string[] } | { type: 'f32[]'; value: Float32Array } | { type: 'i32[]'; value: Int32Array };

export interface TensorSpec {
  name: string;
  /** ggml order: dims[0] is the row length (in features), dims[1] the rows (out features) */
  dims: number[];
  type: GgmlType;
  /** writes the next values (row-major, rows of dims[0]) into `out`; called until the tensor is full */
  fill(out: Float32Array): void;
}

export function tensorBytes(t: Pick<TensorSpec, 'dims' | 'type'>): number {
  const n = t.dims.reduce((a, b) => a * b, 1);
  const b = BLOCK[t.type];
  if (n % b.values !== 0 || t.dims[0] % b.values !== 0) throw new Error(`${t.type} needs rows that are whole blocks of ${b.values}, got dims ${t.dims.join('×')}`);
  return (n / b.values) * b.bytes;
}

const align = (n: number): number => Math.ceil(n / ALIGNMENT) * ALIGNMENT;

/** Little-endian byte builder for the header part of a file. */
class Bytes {
  private chunks: Uint8Array[] = [];
  length = 0;
  private push(b: Uint8Array): void { this.chunks.push(b); this.length += b.length; }
  u8(v: number): void { this.push(Uint8Array.of(v)); }
  u16(v: number): void { const b = new Uint8Array(2); new DataView(b.buffer).setUint16(0, v, true); this.push(b); }
  u32(v: number): void { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); this.push(b); }
  i32(v: number): void { const b = new Uint8Array(4); new DataView(b.buffer).setInt32(0, v, true); this.push(b); }
  f32(v: number): void { const b = new Uint8Array(4); new DataView(b.buffer).setFloat32(0, v, true); this.push(b); }
  u64(v: number): void { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v), true); this.push(b); }
  str(s: string): void { const b = new TextEncoder().encode(s); this.u64(b.length); this.push(b); }
  raw(b: Uint8Array): void { this.push(b); }
  pad(to: number): void { const n = align(this.length) - this.length; if (to && n) this.push(new Uint8Array(n)); }
  concat(): Uint8Array { const out = new Uint8Array(this.length); let o = 0; for (const c of this.chunks) { out.set(c, o); o += c.length; } return out; }
}

const META_TYPE = { u16: 2, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;

function writeMeta(b: Bytes, key: string, m: MetaValue): void {
  b.str(key);
  switch (m.type) {
    case 'u16': b.u32(META_TYPE.u16); b.u16(m.value); break;
    case 'u32': b.u32(META_TYPE.u32); b.u32(m.value); break;
    case 'i32': b.u32(META_TYPE.i32); b.i32(m.value); break;
    case 'f32': b.u32(META_TYPE.f32); b.f32(m.value); break;
    case 'bool': b.u32(META_TYPE.bool); b.u8(m.value ? 1 : 0); break;
    case 'string': b.u32(META_TYPE.string); b.str(m.value); break;
    case 'string[]': b.u32(META_TYPE.array); b.u32(META_TYPE.string); b.u64(m.value.length); for (const s of m.value) b.str(s); break;
    case 'f32[]': b.u32(META_TYPE.array); b.u32(META_TYPE.f32); b.u64(m.value.length); b.raw(new Uint8Array(m.value.buffer, m.value.byteOffset, m.value.byteLength)); break;
    case 'i32[]': b.u32(META_TYPE.array); b.u32(META_TYPE.i32); b.u64(m.value.length); b.raw(new Uint8Array(m.value.buffer, m.value.byteOffset, m.value.byteLength)); break;
  }
}

/**
 * Writes `tensors` with `meta` to `path` (one file), or, when their data exceeds `maxShardBytes`,
 * to shards PATH_WITHOUT_.gguf-0000i-of-0000n.gguf. Returns the paths written, first shard first.
 */
export function writeGguf(path: string, meta: Record<string, MetaValue>, tensors: TensorSpec[], maxShardBytes = Infinity, onTensor?: (name: string) => void): string[] {
  const shards: TensorSpec[][] = [[]];
  let inShard = 0;
  for (const t of tensors) {
    const bytes = align(tensorBytes(t));
    if (inShard > 0 && inShard + bytes > maxShardBytes) { shards.push([]); inShard = 0; }
    shards[shards.length - 1].push(t);
    inShard += bytes;
  }
  const n = shards.length;
  const paths = n === 1 ? [path] : shards.map((_, i) => `${path.replace(/\.gguf$/, '')}-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.gguf`);
  shards.forEach((shard, i) => {
    const shardMeta: Record<string, MetaValue> = i === 0 ? { ...meta } : {};
    if (n > 1) {
      shardMeta['split.no'] = { type: 'u16', value: i };
      shardMeta['split.count'] = { type: 'u16', value: n };
      shardMeta['split.tensors.count'] = { type: 'i32', value: tensors.length };
    }
    writeOneFile(paths[i], shardMeta, shard, onTensor);
  });
  return paths;
}

function writeOneFile(path: string, meta: Record<string, MetaValue>, tensors: TensorSpec[], onTensor?: (name: string) => void): void {
  const head = new Bytes();
  head.raw(new TextEncoder().encode('GGUF'));
  head.u32(3);
  head.u64(tensors.length);
  head.u64(Object.keys(meta).length);
  for (const [k, v] of Object.entries(meta)) writeMeta(head, k, v);
  let offset = 0;
  for (const t of tensors) {
    head.str(t.name);
    head.u32(t.dims.length);
    for (const d of t.dims) head.u64(d);
    head.u32(GGML_TYPE_ID[t.type]);
    head.u64(offset);
    offset += align(tensorBytes(t));
  }
  head.pad(ALIGNMENT);
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, head.concat());
    for (const t of tensors) {
      writeTensorData(fd, t);
      const pad = align(tensorBytes(t)) - tensorBytes(t);
      if (pad) writeSync(fd, new Uint8Array(pad));
      onTensor?.(t.name);
    }
  } finally {
    closeSync(fd);
  }
}

const CHUNK_VALUES = 1 << 20; // a multiple of every block size

function writeTensorData(fd: number, t: TensorSpec): void {
  let left = t.dims.reduce((a, b) => a * b, 1);
  const values = new Float32Array(Math.min(CHUNK_VALUES, left));
  while (left > 0) {
    const n = Math.min(values.length, left);
    const chunk = values.subarray(0, n);
    t.fill(chunk);
    writeSync(fd, encode(chunk, t.type));
    left -= n;
  }
}

function encode(x: Float32Array, type: GgmlType): Uint8Array {
  switch (type) {
    case 'F32': return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case 'F16': { const o = new Uint16Array(x.length); for (let i = 0; i < x.length; i++) o[i] = f32ToF16Bits(x[i]); return new Uint8Array(o.buffer); }
    case 'BF16': { const o = new Uint16Array(x.length); for (let i = 0; i < x.length; i++) o[i] = f32ToBf16Bits(x[i]); return new Uint8Array(o.buffer); }
    case 'Q8_0': return quantizeQ8_0(x);
    case 'Q4_0': return quantizeQ4_0(x);
  }
}

export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
    const d = amax / 127, id = d ? 1 / d : 0;
    view.setUint16(b * 34, f32ToF16Bits(d), true);
    for (let j = 0; j < 32; j++) view.setInt8(b * 34 + 2 + j, Math.sign(x[b * 32 + j] * id) * Math.round(Math.abs(x[b * 32 + j] * id))); // roundf: ties away from 0
  }
  return out;
}

export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 18);
  const view = new DataView(out.buffer);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0, max = 0;
    for (let j = 0; j < 32; j++) { const v = x[b * 32 + j]; if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; } }
    const d = max / -8, id = d ? 1 / d : 0;
    view.setUint16(b * 18, f32ToF16Bits(d), true);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(x[b * 32 + j] * id + 8.5));
      const q1 = Math.min(15, Math.trunc(x[b * 32 + 16 + j] * id + 8.5));
      out[b * 18 + 2 + j] = q0 | (q1 << 4);
    }
  }
  return out;
}
