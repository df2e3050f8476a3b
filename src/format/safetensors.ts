/**
 * safetensors reader (and a small writer) for untrusted input.
 *
 * Layout: 8 bytes N (u64 little-endian), N bytes of UTF-8 JSON header, then the data section.
 * The header maps each tensor name to {dtype, shape, data_offsets: [BEGIN, END)} (offsets relative
 * to the data section) plus an optional `__metadata__` string→string map.
 *
 * Every rule of the format is enforced here, each with its own error code (spec/errors.md), and
 * decided from the header alone before any tensor byte is viewed or copied (spec/format.md lists
 * the rules and the reference crate's verdict per case). Sizes are checked exactly: integers in
 * the header are read from the literal text as BigInt, never through a rounded JS number.
 *
 * Pure: takes bytes, never touches the file system (src/node/ does that).
 */
import { bytesArgument, describeValue, invalidArgument, PonderError, stringArgument } from '../errors.js';
import { describeJson, findDuplicateKey, firstInvalidUtf8, JsonSyntaxError, parseJsonStrict, utf8Offset, type JsonNode } from './json.js';

export type DType = 'F32' | 'BF16' | 'F16' | 'I64' | 'I32' | 'U32' | 'BOOL' | 'U8';
/** U32: the packed codes of MLX-quantized weights (spec/quantization.md). */
export const DTYPE_BYTES: Record<DType, number> = { F32: 4, BF16: 2, F16: 2, I64: 8, I32: 4, U32: 4, BOOL: 1, U8: 1 };

/** Valid safetensors dtypes that ponder does not read, so the error can say "valid but unsupported". */
const OTHER_REFERENCE_DTYPES = ['I8', 'I16', 'U16', 'U64', 'F64', 'C64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2'];

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** byte range within the data section, [begin, end) */
  readonly begin: number;
  readonly end: number;
}

/** What the header says: enough to list tensors and to read any of them from the file later. */
export interface SafetensorsHeader {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** in header order */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** N, the header's byte length */
  readonly headerLength: number;
  /** 8 + N: the file offset of the data section */
  readonly dataStart: number;
  /** bytes in the data section (= the last tensor's END) */
  readonly dataLength: number;
}

export interface SafetensorsFile extends SafetensorsHeader {
  /** the data section (everything after the header) */
  readonly data: Uint8Array;
}

export type TensorArray = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint32Array | Uint8Array;

/** Element count of a validated shape ([] is a scalar: 1). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The reference reader's limit (safetensors tensor.rs MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const SUPPORTED = Object.keys(DTYPE_BYTES).join(', ');

// ---------------------------------------------------------------------------------------------
// Recognising files that are not safetensors at all

/**
 * What a file that is not safetensors looks like it is, from its first bytes, or undefined.
 * These are the usual wrong downloads: an HTML error page, a git-LFS pointer instead of the
 * object, a GGUF or PyTorch pickle/zip checkpoint, a JSON file.
 */
export function sniffNonSafetensors(bytes: Uint8Array): string | undefined {
  const head = bytes.subarray(0, 64);
  const ascii = String.fromCharCode(...head);
  const text = ascii.replace(/^\xEF\xBB\xBF/, '').trimStart().toLowerCase(); // a UTF-8 BOM, read as Latin-1
  if (text.startsWith('<!doctype') || text.startsWith('<html') || text.startsWith('<head') || text.startsWith('<?xml')) return 'an HTML/XML page (an error page saved instead of the file?)';
  if (ascii.startsWith('version https://git-lfs')) return 'a git-LFS pointer (the real file was never downloaded: run `git lfs pull`)';
  if (ascii.startsWith('GGUF')) return 'a GGUF file';
  if (ascii.startsWith('PK\x03\x04')) return 'a zip archive (a PyTorch .bin/.pt checkpoint?)';
  if (head[0] === 0x80 && head.length > 1 && head[1] >= 2 && head[1] <= 5) return 'a Python pickle (a PyTorch .bin/.pt checkpoint?)';
  if (ascii.startsWith('\x93NUMPY')) return 'a NumPy .npy file';
  if (text.startsWith('{') || text.startsWith('[')) return 'a JSON document';
  return undefined;
}

function notSafetensors(path: string, kind: string): PonderError {
  return new PonderError('ST_NOT_SAFETENSORS', `${path}: not a safetensors file, it looks like ${kind}`, {
    path, hint: 'point at the .safetensors weights (download them again if this was meant to be one)',
  });
}

// ---------------------------------------------------------------------------------------------
// Header

/**
 * Reads and checks N from the first bytes of a file of `fileLength` bytes (`bytes` holds at least
 * min(8, fileLength) of them; 64 lets the sniffer name a wrong file kind). Returns N.
 */
export function readHeaderLength(bytes: Uint8Array, fileLength: number, path: string): number {
  if (fileLength < 8) {
    const kind = sniffNonSafetensors(bytes);
    if (kind) throw notSafetensors(path, kind);
    throw new PonderError('ST_HEADER_TOO_SMALL', `${path}: ${fileLength} bytes is too short for a safetensors file (it needs at least the 8-byte header length)`,
      { path, hint: 'the file is empty or truncated; download it again' });
  }
  if (bytes.byteLength < 8) throw new Error(`readHeaderLength: given ${bytes.byteLength} bytes of a ${fileLength}-byte file, it needs the first 8`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const n = view.getBigUint64(0, true); // decided on the exact u64: 2^64-1 must not round to anything smaller
  if (n > BigInt(MAX_HEADER_BYTES)) {
    // A real safetensors header length has zero high bytes; text, zip, pickle and GGUF magics do not.
    const kind = sniffNonSafetensors(bytes);
    if (kind) throw notSafetensors(path, kind);
    throw new PonderError('ST_HEADER_TOO_LARGE', `${path}: header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes`,
      { path, hint: 'this is not a safetensors file, or its first 8 bytes are corrupt' });
  }
  const headerLength = Number(n);
  if (8 + headerLength > fileLength) {
    throw new PonderError('ST_HEADER_LENGTH', `${path}: the header claims ${headerLength} bytes but the file has only ${fileLength - 8} after the length field (expected at least ${8 + headerLength} bytes, got ${fileLength})`,
      { path, hint: 'the file is truncated or corrupt; download it again' });
  }
  return headerLength;
}

/**
 * Parses and validates the header of a safetensors file of `fileLength` bytes. `bytes` holds the
 * file's first 8 + N bytes (or more). Everything that the header alone decides is checked here,
 * including that the data section has exactly the length the tensors need.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileLength: number, path = '<buffer>'): SafetensorsHeader {
  bytesArgument(bytes, 'parseSafetensorsHeader bytes');
  stringArgument(path, 'parseSafetensorsHeader path');
  if (!Number.isSafeInteger(fileLength) || fileLength < bytes.byteLength) throw invalidArgument('parseSafetensorsHeader fileLength', `the file's length in bytes (an integer ≥ the ${bytes.byteLength} bytes given)`, fileLength);
  const headerLength = readHeaderLength(bytes, fileLength, path);
  const dataStart = 8 + headerLength;
  if (bytes.byteLength < dataStart) throw new PonderError('ARG_INVALID', `parseSafetensorsHeader: given ${bytes.byteLength} bytes, the header needs ${dataStart}`, { field: 'bytes', hint: 'pass the first 8 + N bytes of the file (N: the header length in its first 8 bytes)' });
  const headerBytes = bytes.subarray(8, dataStart);

  const headerError = (what: string, headerPos?: number): PonderError => new PonderError('ST_HEADER_JSON',
    `${path}: ${what}${headerPos === undefined ? '' : ` at header byte ${headerPos} (file byte ${8 + headerPos})`}`,
    { path, hint: 'the header is corrupt, or this is not a safetensors file' });

  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, where the JSON reader rejects it like serde_json does
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw headerError('header is not valid UTF-8', Math.max(0, firstInvalidUtf8(headerBytes)));
  }
  let root: JsonNode;
  try {
    root = parseJsonStrict(text);
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    throw headerError(`header is not valid JSON: ${e.reason}`, utf8Offset(text, e.pos));
  }
  if (root.kind !== 'object') throw headerError(`header is ${describeJson(root)}, not a JSON object`);

  const duplicate = findDuplicateKey(root);
  if (duplicate) {
    throw new PonderError('ST_DUPLICATE_NAME', `${path}: tensor name ${JSON.stringify(duplicate.key)} appears twice in the header (second at header byte ${utf8Offset(text, duplicate.keyPos)})`,
      { path, tensor: duplicate.key, hint: 'the file is corrupt or was written by a broken writer; each name must appear once' });
  }

  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const { key: name, value: entry } of root.entries) {
    if (name === '__metadata__') {
      metadata = readMetadata(entry, path);
      continue;
    }
    tensors.set(name, readTensorEntry(name, entry, path));
  }

  const dataLength = checkContiguous([...tensors.values()], path);
  for (const info of tensors.values()) {
    // dtype and shape were checked, so this is exact (readTensorEntry bounded it below 2^53)
    const needed = numel(info.shape) * DTYPE_BYTES[info.dtype];
    if (info.end - info.begin !== needed) {
      throw new PonderError('ST_SIZE_MISMATCH', `${path}: tensor ${displayName(info.name)} spans ${info.end - info.begin} bytes [${info.begin}, ${info.end}) but ${info.dtype}${fmtShape(info.shape)} needs ${needed}`,
        { path, tensor: info.name, hint: 'the header is corrupt: dtype, shape and data_offsets disagree' });
    }
  }

  const expectedLength = dataStart + dataLength;
  if (expectedLength !== fileLength) {
    const hint = fileLength < expectedLength
      ? 'the file ends early (an interrupted download?); download it again'
      : 'bytes after the last tensor are not allowed (they could hide another file format); the file is corrupt or was tampered with';
    throw new PonderError('ST_INCOMPLETE_BUFFER', `${path}: the header describes a file of ${expectedLength} bytes (8 + ${headerLength} header + ${dataLength} data) but the file has ${fileLength}`,
      { path, hint });
  }
  return { path, metadata, tensors, headerLength, dataStart, dataLength };
}

function readMetadata(entry: JsonNode, path: string): Record<string, string> {
  const bad = (what: string): PonderError => new PonderError('ST_METADATA', `${path}: __metadata__ ${what}`,
    { path, tensor: '__metadata__', hint: '__metadata__ must map strings to strings; the file was written by a broken writer (a tensor named __metadata__?)' });
  if (entry.kind === 'null') return {}; // the reference reads `null` as "no metadata"
  if (entry.kind !== 'object') throw bad(`is ${describeJson(entry)}, not an object of strings`);
  const dup = findDuplicateKey(entry);
  if (dup) throw bad(`has the key ${JSON.stringify(dup.key)} twice`);
  const out: Record<string, string> = {};
  for (const { key, value } of entry.entries) {
    if (value.kind !== 'string') throw bad(`value for ${JSON.stringify(key)} is ${describeJson(value)}, not a string`);
    Object.defineProperty(out, key, { value: value.value, enumerable: true });
  }
  return out;
}

function readTensorEntry(name: string, entry: JsonNode, path: string): TensorInfo {
  const err = (code: string, what: string, hint: string): PonderError =>
    new PonderError(code, `${path}: tensor ${displayName(name)} ${what}`, { path, tensor: name, hint });
  if (entry.kind !== 'object') {
    throw err('ST_HEADER_JSON', `has ${describeJson(entry)} as its header entry, not an object {dtype, shape, data_offsets}`, 'the header is corrupt, or this is not a safetensors file');
  }
  const dupField = findDuplicateKey(entry);
  if (dupField) throw err('ST_HEADER_JSON', `has the field ${JSON.stringify(dupField.key)} twice in its header entry`, 'the header is corrupt');
  // Unknown fields are ignored, as the reference (serde without deny_unknown_fields) does.
  const field = (key: string): JsonNode | undefined => entry.entries.find((e) => e.key === key)?.value;

  const dtypeNode = field('dtype');
  if (dtypeNode === undefined || dtypeNode.kind !== 'string') {
    throw err('ST_DTYPE', dtypeNode === undefined ? 'has no dtype' : `has ${describeJson(dtypeNode)} as its dtype`, `supported dtypes: ${SUPPORTED}`);
  }
  const dtypeName = dtypeNode.value;
  if (!Object.hasOwn(DTYPE_BYTES, dtypeName)) {
    const known = OTHER_REFERENCE_DTYPES.includes(dtypeName);
    throw err('ST_DTYPE', `has dtype ${JSON.stringify(dtypeName)}, which ${known ? 'is valid safetensors but not supported by ponder' : 'is not a safetensors dtype (names are upper case)'}`,
      `supported dtypes: ${SUPPORTED}`);
  }
  const dtype = dtypeName as DType;

  const shapeNode = field('shape');
  if (shapeNode === undefined || shapeNode.kind !== 'array') {
    throw err('ST_SHAPE', shapeNode === undefined ? 'has no shape' : `has ${describeJson(shapeNode)} as its shape, not a list of dims`, 'the header is corrupt');
  }
  const shape: number[] = [];
  for (let k = 0; k < shapeNode.items.length; k++) {
    const dim = exactInteger(shapeNode.items[k]);
    if (dim === undefined || dim < 0n) {
      throw err('ST_SHAPE', `has dim ${k} = ${describeJson(shapeNode.items[k])}; dims must be non-negative integers`, 'the header is corrupt');
    }
    if (dim > MAX_SAFE) throw err('ST_SHAPE', `has dim ${k} = ${dim}, above 2^53-1`, 'no real tensor is this large; the header is corrupt');
    shape.push(Number(dim));
  }
  // numel and byte size in BigInt: a 1 KB header can declare exabytes. With no zero dim the
  // running product only grows, so we can stop as soon as it passes 2^53-1.
  if (!shape.includes(0)) {
    let bytes = BigInt(DTYPE_BYTES[dtype]);
    for (const d of shape) {
      bytes *= BigInt(d);
      if (bytes > MAX_SAFE) {
        throw err('ST_OVERFLOW', `has shape ${fmtShape(shape)} of ${dtype}, whose byte size overflows 2^53-1`, 'the header is corrupt');
      }
    }
  }

  const offsetsNode = field('data_offsets');
  if (offsetsNode === undefined || offsetsNode.kind !== 'array' || offsetsNode.items.length !== 2) {
    throw err('ST_OFFSETS', offsetsNode === undefined ? 'has no data_offsets' : `has ${describeJson(offsetsNode)}${offsetsNode.kind === 'array' ? ` of ${offsetsNode.items.length} items` : ''} as data_offsets, not [BEGIN, END]`, 'the header is corrupt');
  }
  const range = offsetsNode.items.map(exactInteger);
  for (let k = 0; k < 2; k++) {
    const v = range[k];
    const which = k === 0 ? 'BEGIN' : 'END';
    if (v === undefined || v < 0n) throw err('ST_OFFSETS', `has data_offsets ${which} = ${describeJson(offsetsNode.items[k])}; offsets must be non-negative integers`, 'the header is corrupt');
    if (v > MAX_SAFE) throw err('ST_OFFSETS', `has data_offsets ${which} = ${v}, above 2^53-1`, 'the header is corrupt');
  }
  const begin = Number(range[0]);
  const end = Number(range[1]);
  if (end < begin) throw err('ST_OFFSETS', `has data_offsets [${begin}, ${end}] with END < BEGIN`, 'the header is corrupt');
  return { name, dtype, shape, begin, end };
}

/** A JSON number written as a plain integer (no fraction or exponent), exactly; else undefined. */
function exactInteger(node: JsonNode): bigint | undefined {
  if (node.kind !== 'number' || !/^-?\d+$/.test(node.text)) return undefined;
  return BigInt(node.text);
}

/**
 * The tensors, sorted by offsets, must tile the data section: the first starts at 0 and each
 * BEGIN equals the previous END. No gaps (hidden bytes), no overlaps (two names owning the same
 * bytes: the reference's "JSON attack" DoS). Returns the data section's length.
 */
function checkContiguous(infos: TensorInfo[], path: string): number {
  const sorted = [...infos].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  let previous: TensorInfo | undefined;
  for (const info of sorted) {
    if (info.begin !== expected) {
      const where = previous === undefined
        ? `the first tensor by offset, ${displayName(info.name)}, starts at ${info.begin}, not 0`
        : info.begin > expected
          ? `there is a gap of ${info.begin - expected} bytes between ${displayName(previous.name)} (ends at ${expected}) and ${displayName(info.name)} (starts at ${info.begin})`
          : `${displayName(info.name)} [${info.begin}, ${info.end}) overlaps ${displayName(previous.name)} [${previous.begin}, ${previous.end})`;
      throw new PonderError('ST_OFFSETS', `${path}: tensor data is not contiguous: ${where}`,
        { path, tensor: info.name, hint: 'every byte of the data section must belong to exactly one tensor; the header is corrupt or crafted' });
    }
    expected = info.end;
    previous = info;
  }
  return expected;
}

/**
 * A tensor name as it appears in messages: as written, unless it is empty or holds control
 * characters (names are arbitrary strings from the file; an error must stay one line).
 */
export function displayName(name: string): string {
  return /^[^\x00-\x1f\x7f]+$/.test(name) ? name : JSON.stringify(name);
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

// ---------------------------------------------------------------------------------------------
// Whole files and tensors

/** Parses a whole safetensors file held in memory. */
export function parseSafetensors(bytes: Uint8Array, path = '<buffer>'): SafetensorsFile {
  bytes = bytesArgument(bytes, 'parseSafetensors bytes');
  const header = parseSafetensorsHeader(bytes, bytes.byteLength, path);
  return { ...header, data: bytes.subarray(header.dataStart) };
}

/**
 * A tensor's bytes as a fresh typed array of its dtype (BF16/F16 as raw u16 bits, BOOL as u8).
 * Always a copy: the data may sit at an offset that is not a multiple of the element size, where
 * a typed-array view would throw, and the result must not alias the file buffer.
 */
export function tensorFromBytes(info: TensorInfo, bytes: Uint8Array): TensorArray {
  // copy into a new, aligned ArrayBuffer (not bytes.slice(): on a Node Buffer that is a view of the whole file)
  const raw = Uint8Array.prototype.slice.call(bytes);
  const count = numel(info.shape);
  switch (info.dtype) {
    case 'F32': return new Float32Array(raw.buffer, 0, count);
    case 'BF16': case 'F16': return new Uint16Array(raw.buffer, 0, count);
    case 'I64': return new BigInt64Array(raw.buffer, 0, count);
    case 'I32': return new Int32Array(raw.buffer, 0, count);
    case 'U32': return new Uint32Array(raw.buffer, 0, count);
    case 'BOOL': case 'U8': return raw;
  }
}

/** A copy of the tensor's data as the typed array of its dtype (BF16/F16 as raw u16 bits, BOOL as u8). */
export function readTensor(file: SafetensorsFile, name: string): TensorArray {
  const info = file.tensors.get(name);
  if (!info) throw new PonderError('ST_NO_TENSOR', `${file.path}: no tensor named ${displayName(name)}`, { path: file.path, tensor: name, hint: 'run `ponder inspect` on the file to list its tensors' });
  return tensorFromBytes(info, file.data.subarray(info.begin, info.end));
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface TensorToWrite {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** little-endian element data (every JS engine we target is little-endian); BF16/F16 as u16 bits */
  readonly data: ArrayBufferView;
}

/**
 * The 8-byte length and the header of a safetensors file holding `tensors` in the given order,
 * contiguous, the header padded with spaces to a multiple of 8 bytes (as the reference writer
 * does, so that data starts 8-aligned), and the data section's length. The data follows: each
 * tensor's bytes in order. Refuses what the reader would reject (ST_WRITE).
 */
export function encodeSafetensorsHeader(tensors: readonly Omit<TensorToWrite, 'data'>[], metadata?: Readonly<Record<string, string>>): { header: Uint8Array; dataLength: number } {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header.__metadata__ = { ...metadata };
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    const fail = (what: string): never => { throw new PonderError('ST_WRITE', `writeSafetensors: tensor ${t.name} ${what}`, { tensor: t.name, hint: 'fix the tensor list given to writeSafetensors' }); };
    if (t.name === '__metadata__') fail('uses the reserved name __metadata__');
    if (seen.has(t.name)) fail('is listed twice');
    seen.add(t.name);
    if (!Object.hasOwn(DTYPE_BYTES, t.dtype)) fail(`has unsupported dtype ${t.dtype}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`has an invalid shape ${fmtShape(t.shape)}`);
    const size = numel(t.shape) * DTYPE_BYTES[t.dtype];
    Object.defineProperty(header, t.name, { value: { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + size] }, enumerable: true });
    offset += size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  return { header: out, dataLength: offset };
}

/**
 * Writes a safetensors file (see encodeSafetensorsHeader) in memory.
 * Used for synthetic checkpoints (benchmarks, tests). Refuses what the reader would reject.
 */
export function writeSafetensors(tensors: readonly TensorToWrite[], metadata?: Readonly<Record<string, string>>): Uint8Array {
  const bad = (what: string): PonderError => new PonderError('ST_WRITE', `writeSafetensors: ${what}`, { hint: 'pass [{ name, dtype, shape, data }], and metadata as an object of strings' });
  if (!Array.isArray(tensors as unknown)) throw bad(`tensors must be a list, got ${describeValue(tensors)}`);
  tensors.forEach((t, i) => {
    if (t === null || typeof t !== 'object') throw bad(`tensors[${i}] must be { name, dtype, shape, data }, got ${describeValue(t)}`);
    if (typeof t.name !== 'string') throw bad(`tensors[${i}].name must be a string, got ${describeValue(t.name)}`);
    if (typeof t.dtype !== 'string') throw bad(`tensor ${t.name}: dtype must be a string, got ${describeValue(t.dtype)}`);
    if (!Array.isArray(t.shape as unknown)) throw bad(`tensor ${t.name}: shape must be a list of integers, got ${describeValue(t.shape)}`);
    if (!ArrayBuffer.isView(t.data)) throw bad(`tensor ${t.name}: data must be a typed array, got ${describeValue(t.data)}`);
  });
  if (metadata !== undefined && (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata))) throw bad(`metadata must be an object of strings, got ${describeValue(metadata)}`);
  for (const t of tensors) {
    const size = Object.hasOwn(DTYPE_BYTES, t.dtype) && t.shape.every((d) => Number.isSafeInteger(d) && d >= 0) ? numel(t.shape) * DTYPE_BYTES[t.dtype] : -1;
    if (size >= 0 && t.data.byteLength !== size) {
      throw new PonderError('ST_WRITE', `writeSafetensors: tensor ${t.name} has ${t.data.byteLength} bytes of data but ${t.dtype}${fmtShape(t.shape)} needs ${size}`, { tensor: t.name, hint: 'fix the tensor list given to writeSafetensors' });
    }
  }
  const { header, dataLength } = encodeSafetensorsHeader(tensors, metadata);
  const out = new Uint8Array(header.length + dataLength);
  out.set(header);
  let at = header.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}
