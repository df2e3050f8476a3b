/**
 * safetensors reader for untrusted input. The format rules and the error codes are listed in
 * spec/errors.md (from ../shared/research/reliability.md §1, §7).
 * Pure: takes bytes, never touches the file system (src/node/ does that).
 */
import { PonderError } from '../errors.js';

export type DType = 'F32' | 'BF16' | 'F16' | 'I64' | 'I32' | 'BOOL' | 'U8';
export const DTYPE_BYTES: Record<DType, number> = { F32: 4, BF16: 2, F16: 2, I64: 8, I32: 4, BOOL: 1, U8: 1 };

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** byte range within the data section, [begin, end) */
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsFile {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** in header order */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** the data section (everything after the header) */
  readonly data: Uint8Array;
}

export type TensorArray = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const MAX_HEADER_BYTES = 100_000_000;
const SUPPORTED = Object.keys(DTYPE_BYTES).join(', ');

export function parseSafetensors(bytes: Uint8Array, path = '<buffer>'): SafetensorsFile {
  if (bytes.byteLength < 8) {
    throw new PonderError('ST_HEADER_TOO_SMALL', `${path}: ${bytes.byteLength} bytes is too short for a safetensors file (needs an 8-byte header length)`, { path, hint: 'the file is empty or truncated; download it again' });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = view.getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new PonderError('ST_HEADER_TOO_LARGE', `${path}: header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`, { path, hint: 'this is not a safetensors file, or it is corrupt' });
  }
  const n = Number(headerLen);
  if (8 + n > bytes.byteLength) {
    throw new PonderError('ST_HEADER_LENGTH', `${path}: header claims ${n} bytes but only ${bytes.byteLength - 8} follow`, { path, hint: 'the file is truncated; download it again' });
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new PonderError('ST_HEADER_JSON', `${path}: header is not valid UTF-8 JSON (${(e as Error).message})`, { path, hint: 'the file is corrupt or not safetensors' });
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new PonderError('ST_HEADER_JSON', `${path}: header is not a JSON object`, { path, hint: 'the file is corrupt or not safetensors' });
  }
  const data = bytes.subarray(8 + n);
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (!(e.dtype in DTYPE_BYTES)) {
      throw new PonderError('ST_DTYPE', `${path}: tensor ${name} has unsupported dtype ${JSON.stringify(e.dtype)}`, { path, tensor: name, hint: `supported dtypes: ${SUPPORTED}` });
    }
    const dtype = e.dtype as DType;
    const [begin, end] = e.data_offsets;
    if (end - begin !== numel(e.shape) * DTYPE_BYTES[dtype] || end > data.byteLength) {
      throw new PonderError('ST_SIZE_MISMATCH', `${path}: tensor ${name} spans ${end - begin} bytes but ${dtype}${JSON.stringify(e.shape)} needs ${numel(e.shape) * DTYPE_BYTES[dtype]}`, { path, tensor: name, hint: 'the file is corrupt' });
    }
    tensors.set(name, { name, dtype, shape: e.shape, begin, end });
  }
  return { path, metadata, tensors, data };
}

/** A copy of the tensor's data as the typed array of its dtype (BF16/F16 as raw u16 bits, BOOL as u8). */
export function readTensor(file: SafetensorsFile, name: string): TensorArray {
  const info = file.tensors.get(name);
  if (!info) throw new PonderError('ST_NO_TENSOR', `${file.path}: no tensor named ${name}`, { path: file.path, tensor: name, hint: 'run `ponder inspect` on the file to list its tensors' });
  const raw = file.data.slice(info.begin, info.end); // copy: aligned, and independent of the file buffer
  const count = numel(info.shape);
  switch (info.dtype) {
    case 'F32': return new Float32Array(raw.buffer, 0, count);
    case 'BF16': case 'F16': return new Uint16Array(raw.buffer, 0, count);
    case 'I64': return new BigInt64Array(raw.buffer, 0, count);
    case 'I32': return new Int32Array(raw.buffer, 0, count);
    case 'BOOL': case 'U8': return raw;
  }
}
