/**
 * A restricted unpickler: it reads the pickle opcodes that `torch.save` (protocol 2) and Python's
 * pickler at protocols 2-4 emit for plain data, builds plain values, and never runs anything.
 *
 * A global (GLOBAL / STACK_GLOBAL) is looked up in the allow-list the caller gives; any other one
 * is refused at once with PT_PICKLE_GLOBAL naming it (`os.system`, `builtins.eval`, ...), before
 * it could be called. REDUCE / NEWOBJ call only allow-listed callables, which build values; BUILD
 * sets attributes only on the dicts they made. Every length is checked against the bytes left,
 * so a hostile pickle gets a typed error, never a crash, a hang or a huge allocation.
 */
import { PonderError } from '../errors.js';

/** A Python tuple (a JS array is a list). */
export class PickleTuple {
  constructor(readonly items: PickleValue[]) {}
}

/** A Python dict (or OrderedDict), keys in insertion order; `attributes` holds what BUILD set on it. */
export class PickleDict {
  readonly entries = new Map<PickleKey, PickleValue>();
  readonly attributes = new Map<string, PickleValue>();
  constructor(readonly ordered: boolean) {}
}

/** A value an allow-listed global built (e.g. a tensor record), or the global itself. */
export interface PickleObject {
  readonly kind: string;
}

export type PickleKey = string | number | bigint | boolean | null;
export type PickleValue = PickleKey | Uint8Array | PickleValue[] | PickleTuple | PickleDict | PickleObject;

/** An allow-listed global: `call` (REDUCE / NEWOBJ) builds a value from the arguments, or is absent (the global is only data, e.g. a storage class). */
export interface PickleGlobal extends PickleObject {
  readonly kind: 'global';
  readonly name: string;
  call?(args: PickleValue[]): PickleValue;
}

export interface UnpickleOptions {
  /** for messages: the file / entry being read */
  readonly label: string;
  /** The allowed global `module.name`, or undefined to refuse it. */
  resolveGlobal(qualifiedName: string): PickleGlobal | undefined;
  /** BINPERSID: turns a persistent id into a value (torch: a storage). */
  persistentLoad(pid: PickleValue): PickleValue;
}

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

/** Longest LONG1/LONG4 integer accepted, in bytes (a state dict holds small integers only). */
const MAX_LONG_BYTES = 64;

export function describePickleValue(v: PickleValue, depth = 0): string {
  if (v === null) return 'None';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Uint8Array) return `bytes of length ${v.length}`;
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (v instanceof PickleTuple) return depth > 1 ? 'a tuple' : `(${v.items.slice(0, 6).map((x) => describePickleValue(x, depth + 1)).join(', ')}${v.items.length > 6 ? ', …' : ''})`;
  if (v instanceof PickleDict) return `a dict of ${v.entries.size}`;
  return (v as PickleGlobal).kind === 'global' ? `the global ${(v as PickleGlobal).name}` : `a ${v.kind}`;
}

export function unpickle(bytes: Uint8Array, options: UnpickleOptions): PickleValue {
  const { label } = options;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let opPos = 0;
  const stack: StackItem[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PickleValue>();

  const fail = (what: string): never => {
    throw new PonderError('PT_PICKLE', `${label}: ${what} (pickle byte ${opPos})`, { path: label, hint: 'the checkpoint is corrupt or was not written by torch.save' });
  };
  const need = (n: number): void => {
    if (n < 0 || pos + n > bytes.length) fail(`needs ${n} more bytes but the pickle ends`);
  };
  const u8 = (): number => { need(1); return bytes[pos++]; };
  const u16 = (): number => { need(2); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = (): number => { need(4); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const i32 = (): number => { need(4); const v = dv.getInt32(pos, true); pos += 4; return v; };
  const u64 = (): number => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(bytes.length)) fail(`a length of ${v} is longer than the pickle`);
    return Number(v);
  };
  const take = (n: number): Uint8Array => { need(n); const out = bytes.subarray(pos, pos + n); pos += n; return out; };
  const utf8 = (b: Uint8Array): string => {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(b);
    } catch {
      return fail('a string is not valid UTF-8');
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('a GLOBAL name is not terminated by a newline');
    const text = utf8(bytes.subarray(pos, end));
    pos = end + 1;
    return text;
  };
  const pop = (): PickleValue => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) fail('pops from an empty stack');
    return stack.pop() as PickleValue;
  };
  const top = (): PickleValue => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) fail('reads an empty stack');
    return stack[stack.length - 1] as PickleValue;
  };
  const popMark = (): PickleValue[] => {
    const at = marks.pop();
    if (at === undefined) fail('has no mark to pop to');
    const items = stack.splice(at! + 1) as PickleValue[];
    stack.pop(); // the mark itself
    return items;
  };
  const littleEndianInt = (b: Uint8Array): number | bigint => {
    if (b.length > MAX_LONG_BYTES) fail(`holds a ${b.length}-byte integer`);
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const key = (k: PickleValue): PickleKey => {
    if (k === null || ['string', 'number', 'bigint', 'boolean'].includes(typeof k)) return k as PickleKey;
    return fail(`uses ${describePickleValue(k)} as a dict key`);
  };
  const setItems = (target: PickleValue, items: PickleValue[]): void => {
    if (!(target instanceof PickleDict)) fail(`sets items on ${describePickleValue(target)}, not a dict`);
    if (items.length % 2 !== 0) fail('sets items from an odd number of values');
    for (let i = 0; i < items.length; i += 2) (target as PickleDict).entries.set(key(items[i]), items[i + 1]);
  };
  const lookupGlobal = (name: string): PickleGlobal => {
    const found = options.resolveGlobal(name);
    if (!found) {
      throw new PonderError('PT_PICKLE_GLOBAL', `${label}: the pickle asks for the Python global ${name}, which ponder does not allow (pickle byte ${opPos}); it was not run`, {
        path: label, hint: 'a checkpoint is tensors in (ordered) dicts; one that refers to other Python objects or code is refused — load it in PyTorch, keep the state_dict, and torch.save that',
      });
    }
    return found;
  };
  const call = (callee: PickleValue, args: PickleValue): PickleValue => {
    if (typeof callee !== 'object' || callee === null || (callee as PickleGlobal).kind !== 'global' || typeof (callee as PickleGlobal).call !== 'function') {
      fail(`calls ${describePickleValue(callee)}, which is not callable`);
    }
    if (!(args instanceof PickleTuple)) fail(`calls ${(callee as PickleGlobal).name} with ${describePickleValue(args)} instead of an argument tuple`);
    return (callee as PickleGlobal).call!((args as PickleTuple).items);
  };

  for (;;) {
    opPos = pos;
    const op = u8();
    switch (op) {
      case 0x80: { const proto = u8(); if (proto > 5) fail(`uses pickle protocol ${proto}`); break; } // PROTO
      case 0x95: take(8); break; // FRAME (protocol 4): only a read-ahead hint
      case 0x2e: { // STOP
        const result = pop();
        if (stack.length !== 0 || marks.length !== 0) fail('stops with values left on the stack');
        if (pos !== bytes.length) fail(`has ${bytes.length - pos} bytes after STOP`);
        return result;
      }
      case 0x28: marks.push(stack.length); stack.push(MARK); break; // MARK
      case 0x29: stack.push(new PickleTuple([])); break; // EMPTY_TUPLE
      case 0x74: stack.push(new PickleTuple(popMark())); break; // TUPLE
      case 0x85: stack.push(new PickleTuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(), a = pop(); stack.push(new PickleTuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(), b = pop(), a = pop(); stack.push(new PickleTuple([a, b, c])); break; } // TUPLE3
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x61: { const v = pop(); const list = top(); if (!Array.isArray(list)) fail(`appends to ${describePickleValue(list)}, not a list`); (list as PickleValue[]).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); const list = top(); if (!Array.isArray(list)) fail(`appends to ${describePickleValue(list)}, not a list`); for (const item of items) (list as PickleValue[]).push(item); break; } // APPENDS (a loop: a list may have more items than a call takes arguments)
      case 0x7d: stack.push(new PickleDict(false)); break; // EMPTY_DICT
      case 0x73: { const v = pop(), k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(i32()); break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(littleEndianInt(take(u8()))); break; // LONG1
      case 0x8b: { const n = i32(); if (n < 0) fail('has a negative LONG4 length'); stack.push(littleEndianInt(take(n))); break; } // LONG4
      case 0x47: { need(8); stack.push(dv.getFloat64(pos, false)); pos += 8; break; } // BINFLOAT (big-endian)
      case 0x58: stack.push(utf8(take(u32()))); break; // BINUNICODE
      case 0x8c: stack.push(utf8(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(utf8(take(u64()))); break; // BINUNICODE8
      case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x63: { const module = line(); const name = line(); stack.push(lookupGlobal(`${module}.${name}`)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(lookupGlobal(`${module}.${name}`));
        break;
      }
      case 0x52: { const args = pop(); const callee = pop(); stack.push(call(callee, args)); break; } // REDUCE
      case 0x81: { const args = pop(); const cls = pop(); stack.push(call(cls, args)); break; } // NEWOBJ
      case 0x62: { // BUILD
        const state = pop();
        const target = top();
        if (!(target instanceof PickleDict) || !(state instanceof PickleDict)) fail(`BUILD sets ${describePickleValue(state)} on ${describePickleValue(target)}; only dict attributes are accepted`);
        for (const [k, v] of (state as PickleDict).entries) {
          if (typeof k !== 'string') fail('BUILD sets an attribute whose name is not a string');
          (target as PickleDict).attributes.set(k as string, v);
        }
        break;
      }
      case 0x51: stack.push(options.persistentLoad(pop())); break; // BINPERSID
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const index = op === 0x68 ? u8() : u32();
        if (!memo.has(index)) fail(`reads memo slot ${index}, which was never written`);
        stack.push(memo.get(index)!);
        break;
      }
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      default:
        throw new PonderError('PT_PICKLE_OPCODE', `${label}: pickle opcode 0x${op.toString(16).padStart(2, '0')} (${JSON.stringify(String.fromCharCode(op))}) at byte ${opPos} is not one a state dict uses`, {
          path: label, hint: 'only the opcodes torch.save writes for tensors in dicts are read; the file is corrupt, or holds other Python objects',
        });
    }
  }
}
