/**
 * One test per safetensors format rule (spec/format.md): each builds a file that breaks exactly
 * that rule and checks the error code, that the message names the file and the tensor, and
 * the numbers it must state. Then valid-but-awkward files, which must load bit-exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSafetensors, readTensor, MAX_HEADER_BYTES, DTYPE_BYTES } from '../src/format/safetensors.js';
import { bf16BitsToF32 } from '../src/kernels/scalar.js';
import { entry, expectPonderError, stFile, withHeaderLength } from './fixtures/safetensors-bytes.js';

const P = 'bad.safetensors';
const parse = (bytes: Uint8Array) => () => parseSafetensors(bytes, P);

test('ST_HEADER_TOO_SMALL: a file of 0 to 7 bytes has no room for the header length', () => {
  for (let n = 0; n < 8; n++) {
    const err = expectPonderError(parse(new Uint8Array(n)), 'ST_HEADER_TOO_SMALL', { path: P });
    assert.ok(err.message.includes(`${n} bytes`));
  }
});

test('ST_HEADER_TOO_LARGE: N = 2^64-1 and N = 100,000,001 are rejected on the exact u64, before reading', () => {
  for (const n of [2n ** 64n - 1n, BigInt(MAX_HEADER_BYTES) + 1n, 2n ** 53n + 1n]) {
    const err = expectPonderError(parse(withHeaderLength(n, [0x7b, 0x7d])), 'ST_HEADER_TOO_LARGE', { path: P });
    assert.ok(err.message.includes(String(n)), `states the exact length ${n}: ${err.message}`);
  }
  // exactly the limit is not "too large": it fails only because the file is shorter
  expectPonderError(parse(withHeaderLength(BigInt(MAX_HEADER_BYTES), [0x7b, 0x7d])), 'ST_HEADER_LENGTH', { path: P });
});

test('ST_HEADER_LENGTH: 8 + N beyond the end of the file gives expected and actual sizes', () => {
  const err = expectPonderError(parse(withHeaderLength(100n, new Uint8Array(50).fill(0x20))), 'ST_HEADER_LENGTH', { path: P });
  assert.ok(err.message.includes('108') && err.message.includes('58'), err.message);
});

test('ST_NOT_SAFETENSORS: HTML pages, git-LFS pointers, GGUF, zip and pickle checkpoints are named as what they are', () => {
  const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  const cases: [string, Uint8Array, RegExp][] = [
    ['html doctype', ascii('<!DOCTYPE html>\n<html><body>404 Not Found</body></html>'), /HTML/],
    ['html tag', ascii('  <html>\n<head><title>Error</title></head></html>'), /HTML/],
    ['git-lfs pointer', ascii('version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 5242880\n'), /git-LFS/],
    ['gguf', Uint8Array.from([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), /GGUF/],
    ['zip (torch.save)', Uint8Array.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0, 8, 0]), /zip/],
    ['pickle protocol 2', Uint8Array.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x28, 0x58, 0x05, 0, 0, 0]), /pickle/],
    ['json', ascii('{"weight_map": {"a": "b"}}'), /JSON/],
  ];
  for (const [label, bytes, kind] of cases) {
    const err = expectPonderError(parse(bytes), 'ST_NOT_SAFETENSORS', { path: P });
    assert.match(err.message, kind, label);
  }
});

test('ST_HEADER_JSON: invalid UTF-8 in the header is reported with its byte position', () => {
  const header = new TextEncoder().encode('{"abc":1}');
  header[3] = 0xff; // inside the key
  const err = expectPonderError(parse(stFile(header)), 'ST_HEADER_JSON', { path: P });
  assert.match(err.message, /UTF-8 at header byte 3 \(file byte 11\)/);
  // an overlong encoding of '/' and a lone surrogate encoded in UTF-8 are invalid too
  expectPonderError(parse(stFile(Uint8Array.from([0x7b, 0xc0, 0xaf, 0x7d]))), 'ST_HEADER_JSON', { path: P });
  expectPonderError(parse(stFile(Uint8Array.from([0x7b, 0xed, 0xa0, 0x80, 0x7d]))), 'ST_HEADER_JSON', { path: P });
});

test('ST_HEADER_JSON: truncated or malformed JSON is reported with its byte position', () => {
  const err = expectPonderError(parse(stFile('{"a": {"dtype": "F32", "shape": [1], "data_off')), 'ST_HEADER_JSON', { path: P });
  assert.match(err.message, /at header byte \d+ \(file byte \d+\)/);
  for (const text of ['{"a":1,}', "{'a':1}", '{"a":01}', '{"a":NaN}', '{"a":"\\x"}', '{"a":"tab\there"}', '{} {}', '\uFEFF{}', '{}\0\0\0']) {
    expectPonderError(parse(stFile(text)), 'ST_HEADER_JSON', { path: P });
  }
  expectPonderError(parse(stFile('['.repeat(1000) + ']'.repeat(1000))), 'ST_HEADER_JSON', { path: P });
});

test('ST_HEADER_JSON: a header that is not an object, or an entry that is not an object', () => {
  for (const text of ['[]', '"x"', '123', 'null']) expectPonderError(parse(stFile(text)), 'ST_HEADER_JSON', { path: P });
  expectPonderError(parse(stFile('{"w":[1,2]}')), 'ST_HEADER_JSON', { path: P, tensor: 'w' });
  expectPonderError(parse(stFile(`{"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4)), 'ST_HEADER_JSON', { path: P, tensor: 'w' });
});

test('ST_DUPLICATE_NAME: a name twice in the header is rejected although JSON.parse would keep the last', () => {
  const header = `{"w":${entry('F32', [1], [0, 4])},"w":${entry('F32', [1], [4, 8])}}`;
  assert.doesNotThrow(() => JSON.parse(header)); // the differential this rule closes
  expectPonderError(parse(stFile(header, 8)), 'ST_DUPLICATE_NAME', { path: P, tensor: 'w' });
});

test('ST_METADATA: __metadata__ values must be strings and it cannot be shaped like a tensor', () => {
  expectPonderError(parse(stFile('{"__metadata__":{"format":"pt","step":1000}}')), 'ST_METADATA', { path: P, tensor: '__metadata__' });
  expectPonderError(parse(stFile(`{"__metadata__":${entry('F32', [1], [0, 4])}}`, 4)), 'ST_METADATA', { path: P, tensor: '__metadata__' });
  expectPonderError(parse(stFile('{"__metadata__":"pt"}')), 'ST_METADATA', { path: P, tensor: '__metadata__' });
  expectPonderError(parse(stFile('{"__metadata__":{"a":"1","a":"2"}}')), 'ST_METADATA', { path: P, tensor: '__metadata__' });
});

test('ST_DTYPE: unknown, lower-case, unsupported or missing dtypes name the tensor and list the supported ones', () => {
  for (const dtype of ['F33', 'f32', 'F8_E4M3', 'F64', 'toString', '__proto__']) {
    const err = expectPonderError(parse(stFile(`{"w":${entry(dtype, [1], [0, 4])}}`, 4)), 'ST_DTYPE', { path: P, tensor: 'w' });
    for (const d of Object.keys(DTYPE_BYTES)) assert.ok(err.hint.includes(d), `hint lists ${d}`);
  }
  expectPonderError(parse(stFile('{"w":{"shape":[1],"data_offsets":[0,4]}}', 4)), 'ST_DTYPE', { path: P, tensor: 'w' });
  expectPonderError(parse(stFile('{"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}', 4)), 'ST_DTYPE', { path: P, tensor: 'w' });
});

test('ST_SHAPE: negative, fractional, exponent, non-number and above-2^53 dims', () => {
  for (const shape of ['[-1]', '[2.5]', '[1e2]', '["2"]', '[null]', '2', '[18446744073709551615]', '[9007199254740992]', '[2, 9223372036854775807]']) {
    expectPonderError(parse(stFile(`{"w":${entry('F32', shape, [0, 4])}}`, 4)), 'ST_SHAPE', { path: P, tensor: 'w' });
  }
  const err = expectPonderError(parse(stFile(`{"w":${entry('F32', '[18446744073709551615]', [0, 4])}}`, 4)), 'ST_SHAPE', { path: P, tensor: 'w' });
  assert.ok(err.message.includes('18446744073709551615'), `states the exact dim, not a rounded one: ${err.message}`);
  expectPonderError(parse(stFile('{"w":{"dtype":"F32","data_offsets":[0,4]}}', 4)), 'ST_SHAPE', { path: P, tensor: 'w' });
});

test('ST_OVERFLOW: a shape whose byte size passes 2^53-1 is rejected with BigInt arithmetic, before any allocation', () => {
  for (const shape of [[2, 2 ** 52], [2 ** 20, 2 ** 20, 2 ** 20], [4194304, 4194304, 1024]]) {
    expectPonderError(parse(stFile(`{"w":${entry('F32', shape, [0, 4])}}`, 4)), 'ST_OVERFLOW', { path: P, tensor: 'w' });
  }
  // a zero dim makes the tensor empty however large the other dims are: this one is valid
  const ok = parseSafetensors(stFile(`{"w":${entry('F32', [0, 2 ** 52], [0, 0])}}`), P);
  assert.deepEqual(ok.tensors.get('w')!.shape, [0, 2 ** 52]);
});

test('ST_OFFSETS: data_offsets that are not two non-negative integers below 2^53, or END < BEGIN', () => {
  for (const offsets of ['[0]', '[0,4,8]', '"0,4"', '[0,"4"]', '[-4,0]', '[0,4.0]', '[8,4]', '[0,18446744073709551615]', '[9007199254740992,9007199254740996]']) {
    expectPonderError(parse(stFile(`{"w":${entry('I32', [1], offsets)}}`, 4)), 'ST_OFFSETS', { path: P, tensor: 'w' });
  }
  expectPonderError(parse(stFile('{"w":{"dtype":"F32","shape":[1]}}', 4)), 'ST_OFFSETS', { path: P, tensor: 'w' });
});

test('ST_OFFSETS: overlapping ranges (10 names on [0,16]) are "not contiguous"', () => {
  const names = Array.from({ length: 10 }, (_, i) => `t${i}`);
  const header = `{${names.map((n) => `"${n}":${entry('F32', [4], [0, 16])}`).join(',')}}`;
  const err = expectPonderError(parse(stFile(header, 16)), 'ST_OFFSETS', { path: P });
  assert.match(err.message, /not contiguous/);
  assert.match(err.message, /overlaps/);
  assert.ok(names.includes(err.tensor!), 'names one of the tensors');
});

test('ST_OFFSETS: a gap between tensors, or a first tensor not at 0, is "not contiguous"', () => {
  const gap = expectPonderError(parse(stFile(`{"a":${entry('F32', [1], [0, 4])},"b":${entry('F32', [1], [8, 12])}}`, 12)), 'ST_OFFSETS', { path: P, tensor: 'b' });
  assert.match(gap.message, /not contiguous: there is a gap of 4 bytes/);
  const late = expectPonderError(parse(stFile(`{"a":${entry('F32', [1], [4, 8])}}`, 8)), 'ST_OFFSETS', { path: P, tensor: 'a' });
  assert.match(late.message, /starts at 4, not 0/);
});

test('ST_SIZE_MISMATCH: END-BEGIN must equal numel × itemsize; both numbers are stated', () => {
  const err = expectPonderError(parse(stFile(`{"w":${entry('I32', [2, 2], [0, 4])}}`, 4)), 'ST_SIZE_MISMATCH', { path: P, tensor: 'w' });
  assert.match(err.message, /spans 4 bytes/);
  assert.match(err.message, /needs 16/);
});

test('ST_INCOMPLETE_BUFFER: trailing bytes after the last tensor, or a file that ends early', () => {
  const header = `{"w":${entry('F32', [2], [0, 8])}}`;
  const headerLen = new TextEncoder().encode(header).length;
  const tail = expectPonderError(parse(stFile(header, 12)), 'ST_INCOMPLETE_BUFFER', { path: P });
  assert.ok(tail.message.includes(String(8 + headerLen + 8)) && tail.message.includes(String(8 + headerLen + 12)), tail.message);
  const short = expectPonderError(parse(stFile(header, 6)), 'ST_INCOMPLETE_BUFFER', { path: P });
  assert.ok(short.message.includes(String(8 + headerLen + 8)) && short.message.includes(String(8 + headerLen + 6)), short.message);
  expectPonderError(parse(stFile('{}', 1)), 'ST_INCOMPLETE_BUFFER', { path: P });
});

// --- valid but awkward files --------------------------------------------------------------------

test('valid awkward: a [2,0] tensor, a [] scalar and an empty header load', () => {
  const scalar = new Float32Array([Math.PI]);
  const file = parseSafetensors(stFile(`{"empty":${entry('F32', [2, 0], [0, 0])},"scalar":${entry('F32', [], [0, 4])}}`, new Uint8Array(scalar.buffer)), P);
  assert.equal(readTensor(file, 'empty').length, 0);
  assert.deepEqual(file.tensors.get('scalar')!.shape, []);
  assert.equal((readTensor(file, 'scalar') as Float32Array)[0], scalar[0]);
  assert.equal(parseSafetensors(stFile('{}'), P).tensors.size, 0);
});

test('valid awkward: a header padded with whitespace on both sides loads', () => {
  const file = parseSafetensors(stFile(` \n\t{"w":${entry('U8', [3], [0, 3])}}\r\n    `, Uint8Array.from([7, 8, 9])), P);
  assert.deepEqual([...readTensor(file, 'w')], [7, 8, 9]);
});

test('valid awkward: F32 and I64 data at offsets not divisible by 4 or 8 are copied bit-exactly', () => {
  const f32 = new Float32Array([1.5, -0, NaN, -Infinity, 1e-45]);
  const i64 = new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, -1n]);
  const data = new Uint8Array(1 + f32.byteLength + i64.byteLength);
  data.set(new Uint8Array(f32.buffer), 1);
  data.set(new Uint8Array(i64.buffer), 1 + f32.byteLength);
  for (let pad = 0; pad < 8; pad++) {
    // pad shifts the data section; the 1-byte U8 tensor first makes every later offset odd
    const header = `{"u":${entry('U8', [1], [0, 1])},"f":${entry('F32', [5], [1, 21])},"i":${entry('I64', [3], [21, 45])}}` + ' '.repeat(pad);
    const file = parseSafetensors(stFile(header, data), P);
    assert.deepEqual(new Uint8Array((readTensor(file, 'f') as Float32Array).buffer), new Uint8Array(f32.buffer));
    assert.deepEqual(readTensor(file, 'i'), i64);
  }
});

test('valid awkward: BF16 NaN, ±Inf and subnormal bit patterns survive loading and widen exactly (<<16)', () => {
  const bits = Uint16Array.from([0x7fc0, 0x7f81, 0xffc1, 0x7f80, 0xff80, 0x0001, 0x807f, 0x0000, 0x8000, 0x3f80]);
  const file = parseSafetensors(stFile(`{"b":${entry('BF16', [bits.length], [0, bits.byteLength])}}`, new Uint8Array(bits.buffer)), P);
  const loaded = readTensor(file, 'b') as Uint16Array;
  assert.deepEqual(loaded, bits);
  const widened = new Float32Array(1);
  const widenedBits = new Uint32Array(widened.buffer);
  for (let k = 0; k < bits.length; k++) {
    widened[0] = bf16BitsToF32(loaded[k]);
    // NaN payloads may be canonicalised by the engine, everything else is exact
    if (Number.isNaN(widened[0])) assert.ok(((bits[k] & 0x7f80) === 0x7f80) && (bits[k] & 0x7f) !== 0);
    else assert.equal(widenedBits[0], (bits[k] << 16) >>> 0);
  }
});

test('valid awkward: tensor names that are JS-special or non-ASCII are kept as written', () => {
  const names = ['__proto__', 'constructor', 'toString', '', 'ü.权重', 'a\nb'];
  const header = `{${names.map((n, k) => `${JSON.stringify(n)}:${entry('U8', [1], [k, k + 1])}`).join(',')}}`;
  const file = parseSafetensors(stFile(header, names.length), P);
  assert.deepEqual([...file.tensors.keys()], names);
  names.forEach((n, k) => assert.deepEqual([...readTensor(file, n)], [k]));
});

test('valid awkward: unknown fields in a tensor entry are ignored, as the reference does', () => {
  const file = parseSafetensors(stFile('{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"note":"x"}}', 1), P);
  assert.equal(file.tensors.get('w')!.dtype, 'U8');
});

test('valid awkward: zero-sized tensors may share an offset with each other and with a neighbour', () => {
  const header = `{"a":${entry('F32', [0], [0, 0])},"b":${entry('F32', [0, 3], [0, 0])},"c":${entry('U8', [2], [0, 2])},"d":${entry('I64', [0], [2, 2])}}`;
  const file = parseSafetensors(stFile(header, 2), P);
  assert.equal(file.tensors.size, 4);
  assert.deepEqual([...readTensor(file, 'c')], [0, 1]);
});
