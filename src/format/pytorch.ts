/**
 * PyTorch checkpoints as `torch.save` writes them by default (since PyTorch 1.6): a zip archive
 * (src/format/zip.ts) holding `ARCHIVE/data.pkl`, a pickle of the saved object, and one entry
 * `ARCHIVE/data/KEY` of raw little-endian bytes per storage. Only state dicts are read: a dict or
 * OrderedDict mapping names to tensors, each rebuilt by `torch._utils._rebuild_tensor_v2` from a
 * storage the pickle names through a persistent id ('storage', torch.XStorage, KEY, device, numel).
 *
 * The unpickler (src/format/pickle.ts) allows exactly these globals: collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2 and the storage classes; anything else is PT_PICKLE_GLOBAL and
 * nothing is ever executed. Every tensor's extent is checked against its storage before a byte is
 * read. Tensors that share a storage (aliases, tied weights) say so through `storageKey`.
 */
import { describeValue, PonderError } from '../errors.js';
import { numel, type DType, type TensorArray } from './safetensors.js';
import { describePickleValue, PickleDict, PickleTuple, unpickle, type PickleGlobal, type PickleObject, type PickleValue } from './pickle.js';
import { ZipArchive, type ByteSource, type ZipEntry } from './zip.js';

/** torch's storage classes → element type (and the ones we know but do not read). */
const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  FloatStorage: 'F32', BFloat16Storage: 'BF16', HalfStorage: 'F16', LongStorage: 'I64', IntStorage: 'I32', ByteStorage: 'U8', BoolStorage: 'BOOL',
};
const UNSUPPORTED_STORAGES: Readonly<Record<string, string>> = {
  DoubleStorage: 'float64', ShortStorage: 'int16', CharStorage: 'int8', ComplexFloatStorage: 'complex64', ComplexDoubleStorage: 'complex128',
  QInt8Storage: 'qint8', QUInt8Storage: 'quint8', QInt32Storage: 'qint32', UntypedStorage: 'untyped bytes',
};
const ITEM_BYTES: Readonly<Record<DType, number>> = { F32: 4, BF16: 2, F16: 2, I64: 8, I32: 4, U32: 4, BOOL: 1, U8: 1 };
/** data.pkl larger than this is refused (a state dict's pickle is kilobytes to a few megabytes). */
const MAX_PICKLE_BYTES = 256 << 20;

export interface PytorchTensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** in elements */
  readonly stride: readonly number[];
  /** in elements, within the storage */
  readonly storageOffset: number;
  /** tensors with the same key share one storage (torch aliases them) */
  readonly storageKey: string;
}

export interface PytorchCheckpoint {
  readonly label: string;
  /** in the state dict's order */
  readonly tensors: ReadonlyMap<string, PytorchTensorInfo>;
  /** A copy of the tensor's elements in row-major order (BF16/F16 as raw u16 bits). */
  read(name: string): TensorArray;
  /** Checks every storage's CRC-32 now (PT_ZIP_CRC), so a corrupt archive is refused before anything is written from it. */
  verify(): void;
}

interface StorageRef extends PickleObject {
  readonly kind: 'storage';
  readonly key: string;
  readonly dtype: DType;
  readonly numel: number;
}
interface TensorRef extends PickleObject {
  readonly kind: 'tensor';
  readonly storage: StorageRef;
  readonly offset: number;
  readonly shape: number[];
  readonly stride: number[];
}
interface StorageClass extends PickleGlobal { readonly storageDtype: DType }

function tensorError(label: string, name: string, what: string): PonderError {
  return new PonderError('PT_TENSOR', `${label}: tensor ${name} ${what}`, { path: label, tensor: name, hint: 'the checkpoint is corrupt or crafted' });
}

function layoutError(label: string, what: string, hint = 'the checkpoint is corrupt, or not written by torch.save'): PonderError {
  return new PonderError('PT_LAYOUT', `${label}: ${what}`, { path: label, hint });
}

/** What a file that is not a torch.save zip looks like, from its first bytes. */
function sniff(head: Uint8Array): string | undefined {
  const ascii = String.fromCharCode(...head.subarray(0, 32));
  if (head[0] === 0x80 && head[1] >= 2 && head[1] <= 5) return 'a bare pickle: the legacy torch.save format (PyTorch < 1.6), which ponder does not read; load it in PyTorch and torch.save it again';
  if (ascii.startsWith('version https://git-lfs')) return 'a git-LFS pointer (the real file was never downloaded: run `git lfs pull`)';
  if (/^\s*<(!doctype|html|\?xml)/i.test(ascii)) return 'an HTML/XML page (an error page saved instead of the file?)';
  if (head.length >= 9 && head[8] === 0x7b && head[6] === 0 && head[7] === 0) return 'a safetensors file (read it directly, it needs no conversion)';
  return undefined;
}

/** Opens a torch.save checkpoint. Errors: PT_* (spec/errors.md). */
export function openPytorchCheckpoint(source: ByteSource): PytorchCheckpoint {
  if (source === null || typeof source !== 'object' || typeof source.read !== 'function' || !Number.isSafeInteger(source.size) || source.size < 0 || typeof source.label !== 'string') {
    throw new PonderError('ARG_INVALID', `openPytorchCheckpoint needs a ByteSource { label, size, read(offset, length) }, got ${describeValue(source)}`, { field: 'source', hint: 'bytesSource(bytes, label) in memory, openFileSource(path) in Node' });
  }
  const label = source.label;
  const head = source.read(0, Math.min(source.size, 64));
  if (!(head[0] === 0x50 && head[1] === 0x4b)) {
    const kind = sniff(head);
    throw new PonderError('PT_NOT_ZIP', `${label}: not a PyTorch zip checkpoint${kind ? `, it looks like ${kind}` : ''}`, {
      path: label, hint: 'pass the pytorch_model.bin that torch.save wrote (a zip archive)',
    });
  }
  const zip = new ZipArchive(source);
  const pickles = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pickles.length !== 1) throw layoutError(label, pickles.length === 0 ? 'has no ARCHIVE/data.pkl entry' : `has ${pickles.length} data.pkl entries (${pickles.join(', ')})`);
  const prefix = pickles[0].slice(0, -'data.pkl'.length);
  const byteorder = zip.entries.get(prefix + 'byteorder');
  if (byteorder) {
    const order = new TextDecoder().decode(zip.read(byteorder));
    if (order !== 'little') throw layoutError(label, `stores its tensors ${JSON.stringify(order)}-endian`, 'ponder reads little-endian checkpoints; save it on a little-endian machine');
  }
  const pkl = zip.entries.get(pickles[0])!;
  if (pkl.size > MAX_PICKLE_BYTES) throw layoutError(label, `has a ${pkl.size}-byte data.pkl, beyond the ${MAX_PICKLE_BYTES} a state dict needs`);

  const storages = new Map<string, StorageRef & { entry: ZipEntry }>();
  const pickleLabel = `${label} (${pickles[0]})`;
  const root = unpickle(zip.read(pkl), {
    label: pickleLabel,
    resolveGlobal: (name) => resolveGlobal(name, pickleLabel),
    persistentLoad: (pid) => {
      const fail = (what: string): never => { throw layoutError(label, `names a storage ${what}`); };
      if (!(pid instanceof PickleTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') return fail(`with the persistent id ${describePickleValue(pid)}, not ('storage', class, key, device, numel)`);
      const [, cls, key, , count] = pid.items;
      const storageClass = cls as StorageClass;
      if (typeof cls !== 'object' || cls === null || storageClass.kind !== 'global' || storageClass.storageDtype === undefined) return fail(`of class ${describePickleValue(cls)}`);
      if (typeof key !== 'string') return fail(`with the key ${describePickleValue(key)}`);
      if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) return fail(`${key} of ${describePickleValue(count)} elements`);
      const known = storages.get(key);
      if (known) {
        if (known.dtype !== storageClass.storageDtype || known.numel !== count) return fail(`${key} twice, as ${known.dtype}[${known.numel}] and ${storageClass.storageDtype}[${count}]`);
        return known;
      }
      const entry = zip.entries.get(`${prefix}data/${key}`);
      if (!entry) return fail(`${key}, but the archive has no entry ${prefix}data/${key}`);
      const bytes = count * ITEM_BYTES[storageClass.storageDtype];
      if (entry.size !== bytes) return fail(`${key} of ${count} ${storageClass.storageDtype} elements (${bytes} bytes), but its entry has ${entry.size} bytes`);
      const ref = { kind: 'storage' as const, key, dtype: storageClass.storageDtype, numel: count, entry };
      storages.set(key, ref);
      return ref;
    },
  });

  if (!(root instanceof PickleDict)) {
    throw new PonderError('PT_STATE_DICT', `${label}: holds ${describePickleValue(root)}, not a state dict (a dict of tensors)`, {
      path: label, hint: 'save model.state_dict() with torch.save',
    });
  }
  const tensors = new Map<string, PytorchTensorInfo & { ref: TensorRef }>();
  for (const [name, value] of root.entries) {
    if (typeof name !== 'string') throw new PonderError('PT_STATE_DICT', `${label}: has the key ${describePickleValue(name)}, not a tensor name`, { path: label, hint: 'save model.state_dict() with torch.save' });
    if (typeof value !== 'object' || value === null || (value as PickleObject).kind !== 'tensor') {
      throw new PonderError('PT_STATE_DICT', `${label}: entry ${name} holds ${describePickleValue(value as PickleValue)}, not a tensor`, {
        path: label, tensor: name, hint: 'a state dict maps names to tensors; save model.state_dict() alone (a training checkpoint with optimizer state or step counters is not one)',
      });
    }
    const ref = value as TensorRef;
    checkExtent(label, name, ref);
    tensors.set(name, { name, dtype: ref.storage.dtype, shape: ref.shape, stride: ref.stride, storageOffset: ref.offset, storageKey: ref.storage.key, ref });
  }

  return {
    label,
    tensors,
    verify(): void {
      for (const t of tensors.values()) zip.verify(storages.get(t.storageKey)!.entry);
    },
    read(name: string): TensorArray {
      const t = tensors.get(name);
      if (!t) throw new PonderError('PT_TENSOR', `${label}: no tensor named ${name}`, { path: label, tensor: name, hint: 'list the checkpoint\'s tensors with `ponder inspect`' });
      const storage = storages.get(t.storageKey)!;
      const size = ITEM_BYTES[t.dtype];
      const count = numel(t.shape);
      const raw = new Uint8Array(count * size);
      if (count > 0) {
        if (isRowMajor(t.shape, t.stride)) {
          raw.set(zip.read(storage.entry, t.storageOffset * size, count * size));
        } else {
          // a strided view (e.g. a saved transpose): gather element by element from the storage
          const all = zip.read(storage.entry);
          const index = new Array<number>(t.shape.length).fill(0);
          for (let i = 0; i < count; i++) {
            let at = t.storageOffset;
            for (let d = 0; d < index.length; d++) at += index[d] * t.stride[d];
            raw.set(all.subarray(at * size, at * size + size), i * size);
            for (let d = index.length - 1; d >= 0; d--) { if (++index[d] < t.shape[d]) break; index[d] = 0; }
          }
        }
      }
      switch (t.dtype) {
        case 'F32': return new Float32Array(raw.buffer);
        case 'BF16': case 'F16': return new Uint16Array(raw.buffer);
        case 'I64': return new BigInt64Array(raw.buffer);
        case 'I32': return new Int32Array(raw.buffer);
        case 'U32': return new Uint32Array(raw.buffer);
        case 'BOOL': case 'U8': return raw;
      }
    },
  };
}

function isRowMajor(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d];
  }
  return true;
}

/** The highest element the tensor touches must lie inside its storage (computed exactly). */
function checkExtent(label: string, name: string, t: TensorRef): void {
  let count = 1n, last = BigInt(t.offset);
  for (let d = 0; d < t.shape.length; d++) {
    count *= BigInt(t.shape[d]);
    last += BigInt(Math.max(t.shape[d] - 1, 0)) * BigInt(t.stride[d]);
  }
  if (count > BigInt(Number.MAX_SAFE_INTEGER)) throw tensorError(label, name, `has shape [${t.shape.join(', ')}], too many elements`);
  if (count > 0n && last >= BigInt(t.storage.numel)) {
    throw tensorError(label, name, `reaches element ${last} of storage ${t.storage.key}, which has ${t.storage.numel} (shape [${t.shape.join(', ')}], stride [${t.stride.join(', ')}], offset ${t.offset})`);
  }
}

function intList(v: PickleValue, what: string, fail: (what: string) => never): number[] {
  if (!(v instanceof PickleTuple)) return fail(`has ${describePickleValue(v)} as its ${what}, not a tuple`);
  return v.items.map((x) => (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 ? x : fail(`has ${describePickleValue(x)} in its ${what}`)));
}

/** The allow-list: the globals a state dict's pickle uses, as values that build plain data. */
function resolveGlobal(name: string, label: string): PickleGlobal | undefined {
  if (name === 'collections.OrderedDict') {
    return {
      kind: 'global', name,
      call: (args) => {
        if (args.length !== 0) throw new PonderError('PT_PICKLE', `${label}: OrderedDict is built with ${args.length} arguments; torch.save passes none`, { path: label, hint: 'the checkpoint is corrupt or crafted' });
        return new PickleDict(true);
      },
    };
  }
  if (name === 'torch._utils._rebuild_tensor_v2') {
    return {
      kind: 'global', name,
      call: (args): TensorRef => {
        const fail = (what: string): never => { throw new PonderError('PT_TENSOR', `${label}: a tensor record ${what}`, { path: label, hint: 'the checkpoint is corrupt or crafted' }); };
        if (args.length < 6 || args.length > 7) fail(`has ${args.length} arguments; _rebuild_tensor_v2 takes 6 or 7`);
        const [storage, offset, size, stride, requiresGrad, hooks] = args;
        if (typeof storage !== 'object' || storage === null || (storage as PickleObject).kind !== 'storage') fail(`has ${describePickleValue(storage)} as its storage`);
        if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) fail(`has the storage offset ${describePickleValue(offset)}`);
        const shape = intList(size, 'size', fail), strides = intList(stride, 'stride', fail);
        if (shape.length !== strides.length) fail(`has ${shape.length} sizes but ${strides.length} strides`);
        if (typeof requiresGrad !== 'boolean') fail(`has requires_grad ${describePickleValue(requiresGrad)}`);
        if (!(hooks instanceof PickleDict) || hooks.entries.size !== 0) fail('has backward hooks');
        return { kind: 'tensor', storage: storage as StorageRef, offset: offset as number, shape, stride: strides };
      },
    };
  }
  const storage = /^torch\.(\w+Storage)$/.exec(name);
  if (storage && Object.hasOwn(STORAGE_DTYPES, storage[1])) return { kind: 'global', name, storageDtype: STORAGE_DTYPES[storage[1]] } as StorageClass;
  if (storage && Object.hasOwn(UNSUPPORTED_STORAGES, storage[1])) {
    throw new PonderError('PT_TENSOR', `${label}: a tensor is stored as ${name} (${UNSUPPORTED_STORAGES[storage[1]]}), which ponder does not read`, {
      path: label, hint: 'convert the weights to float32, bfloat16 or float16 in PyTorch and save again',
    });
  }
  return undefined;
}
