/**
 * PyTorch zip checkpoints (src/format/zip.ts, pickle.ts, pytorch.ts): a real torch.save file reads
 * back exactly; a pickle that asks for any callable outside the state-dict allow-list is refused
 * by name and never run; malformed archives and pickles, hand-made or fuzzed, give typed errors only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { openPytorchCheckpoint } from '../src/format/pytorch.js';
import { bytesSource, ZipArchive } from '../src/format/zip.js';
import { loadGoldenCase } from '../src/node/files.js';
import { readTensor } from '../src/format/safetensors.js';
import { PonderError } from '../src/errors.js';
import { checkpointZip, op, stateDictPickle, tensorPickle, zipStored } from './fixtures/pytorch-bytes.js';

// torch.save of a golden case's weights, every shared layer under each alias (scripts/make-mor-pytorch-fixture.py)
const RELEASE = new Uint8Array(readFileSync(new URL('./fixtures/mor-release/pytorch_model.bin', import.meta.url)));
const open = (bytes: Uint8Array) => openPytorchCheckpoint(bytesSource(bytes, 'test.bin'));

const isCode = (code: string, text?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof PonderError, `expected PonderError ${code}, got ${String((e as Error)?.stack ?? e)}`);
  assert.equal(e.code, code, e.message);
  if (text) assert.match(e.message, text);
  return true;
};

const f32Bytes = (values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

test('a torch.save state dict reads back: every tensor equals the golden weights it was made from, aliases share one storage', () => {
  const ckpt = open(RELEASE);
  const golden = loadGoldenCase('spec/golden/mor/mor_expert_middle_cycle_fwd');
  assert.equal(ckpt.tensors.size, 78);
  for (const [name, info] of ckpt.tensors) {
    const expected = readTensor(golden.file, `weights.${name}`) as Float32Array;
    assert.equal(info.dtype, 'F32');
    assert.deepEqual(info.shape, golden.file.tensors.get(`weights.${name}`)!.shape, name);
    assert.deepEqual(ckpt.read(name), expected, name);
  }
  const a = ckpt.tensors.get('model.layers.1.block.0.mlp.up_proj.weight')!, b = ckpt.tensors.get('model.layers.3.block.0.mlp.up_proj.weight')!;
  assert.equal(a.storageKey, b.storageKey);
  assert.equal(ckpt.tensors.get('lm_head.weight')!.storageKey, ckpt.tensors.get('model.embed_tokens.weight')!.storageKey);
  assert.notEqual(ckpt.tensors.get('model.layers.1.mor_router.router.weight')!.storageKey, ckpt.tensors.get('model.layers.2.mor_router.router.weight')!.storageKey);
});

test('strided views are gathered in row-major order; offsets are honoured', () => {
  const storage = f32Bytes([0, 1, 2, 3, 4, 5, 6]);
  const pickle = stateDictPickle([
    ['w', tensorPickle('FloatStorage', '0', 7, 0, [2, 3], [3, 1])],
    ['t', tensorPickle('FloatStorage', '0', 7, 0, [3, 2], [1, 3])], // w.T
    ['tail', tensorPickle('FloatStorage', '0', 7, 4, [3], [1])],
    ['empty', tensorPickle('FloatStorage', '0', 7, 7, [0, 4], [4, 1])],
  ]);
  const ckpt = open(checkpointZip(pickle, { 0: storage }));
  assert.deepEqual([...ckpt.read('w') as Float32Array], [0, 1, 2, 3, 4, 5]);
  assert.deepEqual([...ckpt.read('t') as Float32Array], [0, 3, 1, 4, 2, 5]);
  assert.deepEqual([...ckpt.read('tail') as Float32Array], [4, 5, 6]);
  assert.equal(ckpt.read('empty').length, 0);
});

test('a pickle that asks for any other callable is refused by name, before it could be called', () => {
  const callables: [string, string][] = [
    ['os', 'system'], ['posix', 'system'], ['builtins', 'eval'], ['builtins', 'exec'], ['__builtin__', 'eval'], ['torch', 'load'],
    ['torch.serialization', 'load'], ['subprocess', 'Popen'], ['torch._utils', '_rebuild_parameter'], ['collections', 'defaultdict'],
    ['numpy.core.multiarray', '_reconstruct'], ['torch', 'FloatTensor'],
  ];
  for (const [module, name] of callables) {
    for (const lookup of [op.global(module, name), op.stackGlobal(module, name)]) {
      // {'w': CALLABLE('echo pwned')}: what a malicious __reduce__ pickles
      const pickle = stateDictPickle([['w', [...lookup, ...op.str('echo pwned'), ...op.tuple1, ...op.reduce]]]);
      assert.throws(() => open(checkpointZip(pickle, {})), isCode('PT_PICKLE_GLOBAL', new RegExp(`the Python global ${module.replace(/\./g, '\\.')}\\.${name}, .*it was not run`)), `${module}.${name}`);
    }
  }
  // the storage classes are data, not callables
  const call = stateDictPickle([['w', [...op.global('torch', 'FloatStorage'), ...op.emptyTuple, ...op.reduce]]]);
  assert.throws(() => open(checkpointZip(call, {})), isCode('PT_PICKLE', /not callable/));
  // OrderedDict takes no arguments (an iterable would be a way to smuggle values)
  const args = stateDictPickle([['w', [...op.global('collections', 'OrderedDict'), ...op.str('x'), ...op.tuple1, ...op.reduce]]]);
  assert.throws(() => open(checkpointZip(args, {})), isCode('PT_PICKLE', /OrderedDict/));
});

test('opcodes a state dict does not use are refused', () => {
  for (const [code, bytes] of [['i', [0x69, ...new TextEncoder().encode('os\nsystem\n')]], ['o', [0x28, 0x6f]], ['\x82', [0x82, 1]], ['P', [0x50, 0x30, 0x0a]], ['S', [0x53, 0x27, 0x27, 0x0a]]] as const) {
    const pickle = Uint8Array.from([...op.proto(2), ...op.mark, ...bytes, ...op.stop]);
    assert.throws(() => open(checkpointZip(pickle, {})), isCode('PT_PICKLE_OPCODE'), code);
  }
});

test('what is not a state dict of tensors is PT_STATE_DICT naming the entry', () => {
  const list = Uint8Array.from([...op.proto(2), 0x5d, ...op.stop]);
  assert.throws(() => open(checkpointZip(list, {})), isCode('PT_STATE_DICT', /a list of 0/));
  const step = stateDictPickle([['step', op.int(1000)]]);
  assert.throws(() => open(checkpointZip(step, {})), isCode('PT_STATE_DICT', /entry step holds 1000/));
});

test('tensor records are checked against their storage before anything is read', () => {
  const storage = f32Bytes([0, 1, 2, 3, 4, 5]);
  const cases: [string, number[], Record<string, Uint8Array>, string, RegExp][] = [
    ['past the end', tensorPickle('FloatStorage', '0', 6, 0, [2, 3], [5, 1]), { 0: storage }, 'PT_TENSOR', /reaches element 7 of storage 0, which has 6/],
    ['offset past the end', tensorPickle('FloatStorage', '0', 6, 6, [1], [1]), { 0: storage }, 'PT_TENSOR', /reaches element 6/],
    ['float64', tensorPickle('DoubleStorage', '0', 3, 0, [3], [1]), { 0: storage }, 'PT_TENSOR', /DoubleStorage \(float64\)/],
    ['no storage entry', tensorPickle('FloatStorage', '9', 6, 0, [6], [1]), { 0: storage }, 'PT_LAYOUT', /no entry archive\/data\/9/],
    ['storage of the wrong size', tensorPickle('FloatStorage', '0', 7, 0, [6], [1]), { 0: storage }, 'PT_LAYOUT', /7 F32 elements \(28 bytes\), but its entry has 24/],
    ['sizes without strides', tensorPickle('FloatStorage', '0', 6, 0, [2, 3], [1]), { 0: storage }, 'PT_TENSOR', /2 sizes but 1 strides/],
  ];
  for (const [what, tensor, storages, code, text] of cases) {
    assert.throws(() => open(checkpointZip(stateDictPickle([['w', tensor]]), storages)), isCode(code, text), what);
  }
});

test('zip structure: compressed, encrypted, duplicate, corrupt or truncated archives are refused with their own codes', () => {
  const pickle = stateDictPickle([['w', tensorPickle('FloatStorage', '0', 2, 0, [2], [1])]]);
  const entries = [{ name: 'a/data.pkl', data: pickle }, { name: 'a/data/0', data: f32Bytes([1, 2]) }];
  assert.equal(open(zipStored(entries)).tensors.size, 1);
  assert.throws(() => open(zipStored([entries[0], { ...entries[1], method: 8 }])), isCode('PT_ZIP_COMPRESSED', /a\/data\/0 is deflate-compressed/));
  assert.throws(() => open(zipStored([entries[0], { ...entries[1], flags: 1 }])), isCode('PT_ZIP', /encrypted/));
  assert.throws(() => open(zipStored([...entries, entries[1]])), isCode('PT_ZIP', /two entries named a\/data\/0/));
  const badCrc = open(zipStored([entries[0], { ...entries[1], crc: 1234 }]));
  assert.throws(() => badCrc.read('w'), isCode('PT_ZIP_CRC', /a\/data\/0 is corrupt/));
  const good = zipStored(entries);
  assert.throws(() => open(Uint8Array.from([...good, 0])), isCode('PT_ZIP', /end-of-central-directory/));
  assert.throws(() => open(good.subarray(0, good.length - 30)), isCode('PT_ZIP'));
  assert.throws(() => open(zipStored([{ name: 'a/other.pkl', data: pickle }])), isCode('PT_LAYOUT', /no ARCHIVE\/data\.pkl/));
  assert.throws(() => open(zipStored([...entries, { name: 'a/byteorder', data: new TextEncoder().encode('big') }])), isCode('PT_LAYOUT', /"big"-endian/));
});

test('overlapping entries and a central directory pointing outside the file are refused', () => {
  const a = { name: 'a/data.pkl', data: stateDictPickle([]) };
  const zip = zipStored([a, { name: 'a/version', data: new Uint8Array(4) }]);
  // point the second central entry's local header offset at the first entry
  const patched = zip.slice();
  const dv = new DataView(patched.buffer);
  const cdOffset = dv.getUint32(patched.length - 6, true);
  const firstNameLength = dv.getUint16(cdOffset + 28, true);
  const second = cdOffset + 46 + firstNameLength;
  dv.setUint32(second + 42, 0, true);
  assert.throws(() => open(patched), isCode('PT_ZIP'));
  const outside = zip.slice();
  new DataView(outside.buffer).setUint32(outside.length - 6, 0xfffffff0, true);
  assert.throws(() => open(outside), isCode('PT_ZIP', /central directory/));
});

test('files that are not torch.save zips say what they look like', () => {
  const legacy = Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
  assert.throws(() => open(legacy), isCode('PT_NOT_ZIP', /legacy torch\.save format/));
  const safetensors = Uint8Array.from([16, 0, 0, 0, 0, 0, 0, 0, ...new TextEncoder().encode('{"__metadata__":{}}')]);
  assert.throws(() => open(safetensors), isCode('PT_NOT_ZIP', /safetensors/));
  assert.throws(() => open(new TextEncoder().encode('version https://git-lfs.github.com/spec/v1\n')), isCode('PT_NOT_ZIP', /git-LFS/));
  assert.throws(() => open(new Uint8Array(0)), isCode('PT_NOT_ZIP'));
});

/** Opens the bytes and reads every tensor; returns the error, if any. */
function readAll(bytes: Uint8Array): unknown {
  try {
    const ckpt = open(bytes);
    for (const name of ckpt.tensors.keys()) ckpt.read(name);
    return undefined;
  } catch (e) {
    return e;
  }
}

test('fuzz: bit flips and truncations of a real checkpoint give a typed error or the same tensors, never a crash', () => {
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.nat(RELEASE.length - 1), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 8 }),
    fc.option(fc.nat(RELEASE.length), { nil: undefined }),
    (flips, cut) => {
      const bytes = RELEASE.slice(0, cut);
      for (const [at, bit] of flips) if (at < bytes.length) bytes[at] ^= 1 << bit;
      const error = readAll(bytes);
      if (error !== undefined) assert.ok(error instanceof PonderError && /^PT_/.test(error.code), String((error as Error).stack ?? error));
    },
  ), { seed: 20261206, numRuns: 300 });
});

test('fuzz: a corrupted pickle inside a well-formed archive gives a typed error, never a crash or a hang', () => {
  const zip = new ZipArchive(bytesSource(RELEASE, 'release'));
  const pkl = zip.read(zip.entries.get([...zip.entries.keys()].find((n) => n.endsWith('/data.pkl'))!)!).slice();
  const storages: Record<string, Uint8Array> = {};
  for (const [name, entry] of zip.entries) {
    const m = /\/data\/(\w+)$/.exec(name);
    if (m) storages[m[1]] = zip.read(entry);
  }
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.nat(pkl.length - 1), fc.nat(255)), { minLength: 1, maxLength: 6 }),
    fc.option(fc.nat(pkl.length), { nil: undefined }),
    (edits, cut) => {
      const mutated = pkl.slice(0, cut);
      for (const [at, value] of edits) if (at < mutated.length) mutated[at] = value;
      const error = readAll(checkpointZip(mutated, storages));
      if (error !== undefined) assert.ok(error instanceof PonderError && /^PT_/.test(error.code), String((error as Error).stack ?? error));
    },
  ), { seed: 7, numRuns: 300 });
});
