/**
 * Property and mutation tests of the safetensors reader: random valid files round-trip exactly;
 * truncated, bit-flipped and random inputs never crash (the only outcomes are a PonderError or a
 * file whose every tensor reads back at its declared size), never hang (each test has a timeout),
 * and never allocate more than twice the input before deciding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { PonderError } from '../src/errors.js';
import { DTYPE_BYTES, numel, parseSafetensors, readTensor, writeSafetensors, type DType, type TensorToWrite } from '../src/format/safetensors.js';
import { entry, stFile } from './fixtures/safetensors-bytes.js';

const DTYPES = Object.keys(DTYPE_BYTES) as DType[];

const tensorArb = fc.record({
  name: fc.string({ unit: 'grapheme', maxLength: 12 }),
  dtype: fc.constantFrom(...DTYPES),
  shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
  seed: fc.integer(),
});

function materialize(specs: { name: string; dtype: DType; shape: number[]; seed: number }[]): TensorToWrite[] {
  const seen = new Set<string>();
  const out: TensorToWrite[] = [];
  for (const s of specs) {
    if (seen.has(s.name) || s.name === '__metadata__') continue;
    seen.add(s.name);
    const bytes = new Uint8Array(numel(s.shape) * DTYPE_BYTES[s.dtype]);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (s.seed * 31 + i * 97) & 0xff;
    out.push({ name: s.name, dtype: s.dtype, shape: s.shape, data: bytes });
  }
  return out;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

test('random valid files written by writeSafetensors round-trip: names, dtypes, shapes, metadata and bytes', () => {
  fc.assert(fc.property(fc.array(tensorArb, { maxLength: 8 }), fc.option(fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 })), (specs, metadata) => {
    const tensors = materialize(specs);
    const file = parseSafetensors(writeSafetensors(tensors, metadata ?? undefined), 'roundtrip');
    // the header is a JSON object: its key order is not part of the format (JSON.parse lists integer-like keys such as "0" first)
    assert.deepEqual([...file.tensors.keys()].sort(), tensors.map((t) => t.name).sort());
    assert.deepEqual({ ...file.metadata }, { ...(metadata ?? {}) });
    for (const t of tensors) {
      const info = file.tensors.get(t.name)!;
      assert.equal(info.dtype, t.dtype);
      assert.deepEqual(info.shape, t.shape);
      assert.deepEqual(bytesOf(readTensor(file, t.name)), bytesOf(t.data));
    }
  }), { numRuns: 200 });
});

test('random valid files with data in a different order than the header and any whitespace padding load exactly', () => {
  fc.assert(fc.property(fc.array(tensorArb, { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 9 }),
    (specs, shuffleSeed, leading, trailing) => {
      const tensors = materialize(specs);
      // lay the data out in a rotated order, so header order and offset order differ
      const order = tensors.map((_, i) => (i + shuffleSeed) % tensors.length);
      const offsets = new Map<string, [number, number]>();
      const chunks: Uint8Array[] = [];
      let at = 0;
      for (const i of order) {
        const t = tensors[i];
        offsets.set(t.name, [at, at + t.data.byteLength]);
        chunks.push(bytesOf(t.data));
        at += t.data.byteLength;
      }
      const data = new Uint8Array(at);
      let pos = 0;
      for (const c of chunks) { data.set(c, pos); pos += c.length; }
      const header = ' '.repeat(leading) + `{${tensors.map((t) => `${JSON.stringify(t.name)}:${entry(t.dtype, [...t.shape], offsets.get(t.name)!)}`).join(',')}}` + '\n'.repeat(trailing);
      const file = parseSafetensors(stFile(header, data), 'shuffled');
      for (const t of tensors) assert.deepEqual(bytesOf(readTensor(file, t.name)), bytesOf(t.data));
    }), { numRuns: 200 });
});

/** The outcome of parsing untrusted bytes: a PonderError code, or 'ok' after reading every tensor back. */
function outcome(bytes: Uint8Array, path: string): string {
  try {
    const file = parseSafetensors(bytes, path);
    for (const [name, info] of file.tensors) {
      const data = readTensor(file, name);
      assert.equal(data.byteLength, numel(info.shape) * DTYPE_BYTES[info.dtype], `${name} reads back at its declared size`);
    }
    return 'ok';
  } catch (e) {
    if (e instanceof PonderError) return e.code;
    throw new Error(`not a PonderError on ${path}: ${(e as Error).stack}`);
  }
}

/** Runs `body` and checks host ArrayBuffer memory did not grow by more than twice the input (plus 1 MiB slack). */
function withinMemory(inputBytes: number, body: () => void): void {
  const before = process.memoryUsage().arrayBuffers;
  body();
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown <= 2 * inputBytes + (1 << 20), `allocated ${grown} bytes for a ${inputBytes}-byte input`);
}

const goldenFiles = ['huginn', 'mor', 'ouro'].flatMap((family) => readdirSync(join('spec/golden', family)).filter((f) => f.endsWith('.safetensors')).map((f) => join('spec/golden', family, f)));
const golden = goldenFiles.map((path) => ({ path, bytes: new Uint8Array(readFileSync(path)) }));

test('every prefix of a small valid file is rejected (only the whole file loads)', { timeout: 30_000 }, () => {
  const tensors = materialize([
    { name: 'a', dtype: 'F32', shape: [2, 3], seed: 1 },
    { name: 'b', dtype: 'BF16', shape: [5], seed: 2 },
    { name: 'c', dtype: 'I64', shape: [], seed: 3 },
    { name: 'd', dtype: 'BOOL', shape: [2, 0], seed: 4 },
  ]);
  const whole = writeSafetensors(tensors, { format: 'pt' });
  const codes = new Map<string, number>();
  for (let len = 0; len < whole.length; len++) {
    const code = outcome(whole.slice(0, len), `prefix-${len}`);
    assert.notEqual(code, 'ok', `a ${len}-byte prefix must not load`);
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
  assert.equal(outcome(whole, 'whole'), 'ok');
  // cut inside the length field, inside the header, or inside the data: each has its own rule
  assert.deepEqual([...codes.keys()].sort(), ['ST_HEADER_LENGTH', 'ST_HEADER_TOO_SMALL', 'ST_INCOMPLETE_BUFFER']);
});

test('prefixes of the golden files never crash: every header-region length of one file, random lengths of all', { timeout: 60_000 }, (t) => {
  const smallest = golden.reduce((a, b) => (a.bytes.length < b.bytes.length ? a : b));
  const headerEnd = 8 + Number(new DataView(smallest.bytes.buffer).getBigUint64(0, true));
  const histogram = new Map<string, number>();
  for (let len = 0; len <= headerEnd + 16; len++) {
    const code = outcome(smallest.bytes.subarray(0, len), smallest.path);
    histogram.set(code, (histogram.get(code) ?? 0) + 1);
  }
  fc.assert(fc.property(fc.integer({ min: 0, max: golden.length - 1 }), fc.nat(), (k, r) => {
    const { path, bytes } = golden[k];
    const len = r % bytes.length;
    const code = outcome(bytes.subarray(0, len), path);
    assert.notEqual(code, 'ok');
    histogram.set(code, (histogram.get(code) ?? 0) + 1);
  }), { numRuns: 300 });
  t.diagnostic(`prefix outcomes: ${JSON.stringify(Object.fromEntries(histogram))}`);
  assert.equal(histogram.get('ok'), undefined);
});

test('bit flips in golden files never crash, hang or over-allocate; a flipped file that loads reads back consistently', { timeout: 120_000 }, (t) => {
  const histogram = new Map<string, number>();
  let slowest = 0;
  fc.assert(fc.property(fc.integer({ min: 0, max: golden.length - 1 }), fc.nat(), fc.integer({ min: 0, max: 7 }), fc.boolean(), (k, r, bit, inHeader) => {
    const { path, bytes } = golden[k];
    const headerEnd = 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    // half the flips go into the length and the header, where the decisions are made
    const pos = inHeader ? r % headerEnd : r % bytes.length;
    const copy = bytes.slice();
    copy[pos] ^= 1 << bit;
    withinMemory(copy.length, () => {
      const start = performance.now();
      const code = outcome(copy, `${path}@${pos}.${bit}`);
      slowest = Math.max(slowest, performance.now() - start);
      histogram.set(code, (histogram.get(code) ?? 0) + 1);
    });
  }), { numRuns: 1500 });
  // reported, not asserted: a hang would hit the test's timeout, speed belongs to benchmarks
  t.diagnostic(`bit-flip outcomes: ${JSON.stringify(Object.fromEntries(histogram))}; slowest case ${slowest.toFixed(1)} ms`);
  assert.ok(histogram.size > 3, 'the flips reached several different rules');
});

test('digit mutations in golden headers reach the offset, size and length rules and never crash', { timeout: 60_000 }, (t) => {
  const histogram = new Map<string, number>();
  fc.assert(fc.property(fc.integer({ min: 0, max: golden.length - 1 }), fc.nat(), fc.constantFrom(...'0123456789'), (k, r, digit) => {
    const { path, bytes } = golden[k];
    const headerEnd = 8 + Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const digits: number[] = [];
    for (let i = 8; i < headerEnd; i++) if (bytes[i] >= 0x30 && bytes[i] <= 0x39) digits.push(i);
    const copy = bytes.slice();
    copy[digits[r % digits.length]] = digit.charCodeAt(0);
    const code = outcome(copy, path);
    histogram.set(code, (histogram.get(code) ?? 0) + 1);
  }), { numRuns: 1000 });
  t.diagnostic(`digit-mutation outcomes: ${JSON.stringify(Object.fromEntries(histogram))}`);
  for (const code of ['ST_OFFSETS', 'ST_SIZE_MISMATCH']) assert.ok(histogram.has(code), `reached ${code}`);
});

test('random bytes and random JSON headers never crash', { timeout: 60_000 }, () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
    outcome(bytes, 'random');
  }), { numRuns: 500 });
  fc.assert(fc.property(fc.json(), fc.integer({ min: 0, max: 64 }), (json, dataLength) => {
    outcome(stFile(json, dataLength), 'random-json');
  }), { numRuns: 500 });
  // headers built from plausible parts, so that the later rules (offsets, sizes, lengths) are reached
  const part = fc.record({
    name: fc.constantFrom('a', 'b', 'c', '__metadata__'),
    dtype: fc.constantFrom('F32', 'BF16', 'I64', 'U8', 'F33', 'f32'),
    shape: fc.array(fc.oneof(fc.integer({ min: -2, max: 5 }), fc.constantFrom('18446744073709551615', '2.5', '9007199254740993')), { maxLength: 3 }),
    begin: fc.oneof(fc.integer({ min: -1, max: 40 }), fc.constant('18446744073709551615')),
    size: fc.integer({ min: 0, max: 40 }),
  });
  fc.assert(fc.property(fc.array(part, { maxLength: 4 }), fc.integer({ min: 0, max: 80 }), (parts, dataLength) => {
    const header = `{${parts.map((p) => `"${p.name}":${entry(p.dtype, `[${p.shape.join(',')}]`, typeof p.begin === 'string' ? `[${p.begin},0]` : [p.begin, p.begin + p.size])}`).join(',')}}`;
    outcome(stFile(header, dataLength), 'plausible');
  }), { numRuns: 1000 });
});
