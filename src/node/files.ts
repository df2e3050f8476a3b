/**
 * The Node file adapter: the only place in the library that touches the file system, and the one
 * helper every command reads and writes through. The core (src/ outside node/ and cli/) takes
 * bytes and never imports a Node module.
 *
 * Reading: a path is opened only if it is a regular file (or a symlink to one). It is opened
 * non-blocking and checked on the open descriptor, so a FIFO cannot block the open or the read,
 * and a FIFO, socket, device or directory is refused (IO_NOT_REGULAR, IO_IS_DIRECTORY) before
 * any byte is read; a symlink loop is IO_SYMLINK_LOOP. Whole-file reads are bounded: a file over
 * its limit is refused from its size, before anything is allocated.
 *
 * Writing: an output is written to a temporary file beside its target (created exclusively, so a
 * planted file or link at the temporary name is never followed) and renamed into place when
 * complete. A target that exists but is not a regular file — a device node, a FIFO, a directory,
 * a symlink — is refused (IO_WRITE) and left as it was, never replaced.
 */
import { closeSync, constants, fstatSync, fsyncSync, lstatSync, openSync, readSync, readdirSync, realpathSync, renameSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { PonderError, stringArgument } from '../errors.js';
import { parseGoldenCase, parseGoldenJson, type GoldenCase } from '../conform/golden.js';
import { parseSafetensorsHeader, readHeaderLength, tensorFromBytes, type SafetensorsHeader, type TensorArray, type TensorInfo } from '../format/safetensors.js';
import type { ByteSource } from '../format/zip.js';

// ---------------------------------------------------------------------------------------------
// Errors

/** What the entry at a path is, for messages ("a FIFO", "a character device"). */
export function describeEntry(st: Stats): string {
  return st.isFile() ? 'a regular file' : st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symbolic link'
    : st.isFIFO() ? 'a FIFO (named pipe)' : st.isSocket() ? 'a socket' : st.isCharacterDevice() ? 'a character device'
    : st.isBlockDevice() ? 'a block device' : 'not a regular file';
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** A PonderError for a failed file system call on `path`. */
export function ioError(path: string, e: unknown): PonderError {
  const code = errnoOf(e);
  if (e instanceof PonderError) return e;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new PonderError('IO_NOT_FOUND', `${path}: no such file or directory`, { path, hint: 'check the path (a symlink whose target is missing counts as missing)' });
  if (code === 'EISDIR') return new PonderError('IO_IS_DIRECTORY', `${path} is a directory, not a file`, { path, hint: 'pass a file inside it' });
  if (code === 'ELOOP') return symlinkLoop(path);
  if (code === 'EACCES' || code === 'EPERM') return new PonderError('IO_READ', `${path}: cannot read (${code})`, { path, hint: 'check the file permissions' });
  return new PonderError('IO_READ', `${path}: cannot read (${code ?? (e as Error).message})`, { path, hint: 'check the file and the disk' });
}

function symlinkLoop(path: string, via?: string): PonderError {
  return new PonderError('IO_SYMLINK_LOOP', via ? `${path}: a symbolic link leads back to ${via}, which is already being read (a directory cycle)` : `${path}: a symbolic link loop (the link points, directly or through others, to itself)`,
    { path, hint: 'fix or remove the symbolic link' });
}

function notRegular(path: string, st: Stats): PonderError {
  return new PonderError('IO_NOT_REGULAR', `${path} is ${describeEntry(st)}, not a regular file; ponder reads only regular files`, { path, hint: 'pass the file itself (a FIFO or device would block or never end)' });
}

// ---------------------------------------------------------------------------------------------
// Reading

/** An open regular file: its size, exact reads at an offset, and close(). */
export interface RegularFile {
  readonly path: string;
  readonly size: number;
  /** exactly `length` bytes at `offset`, or IO_READ (the file shrank while open) */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

/**
 * Opens `path` for reading if it is a regular file or a symlink to one. Opened with O_NONBLOCK
 * (which regular files ignore) and checked with fstat on the descriptor: a FIFO neither blocks
 * the open nor gets read, and nothing can swap the file between the check and the read.
 */
export function openRegularFile(path: string): RegularFile {
  stringArgument(path, 'a file path');
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw ioError(path, e);
  }
  let st: Stats;
  try {
    st = fstatSync(fd);
  } catch (e) {
    closeSync(fd);
    throw ioError(path, e);
  }
  if (!st.isFile()) {
    closeSync(fd);
    if (st.isDirectory()) throw ioError(path, Object.assign(new Error('is a directory'), { code: 'EISDIR' }));
    throw notRegular(path, st);
  }
  return {
    path,
    size: st.size,
    read(offset: number, length: number): Uint8Array {
      const out = new Uint8Array(length);
      for (let done = 0; done < length;) {
        let got: number;
        try {
          got = readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
        } catch (e) {
          throw ioError(path, e);
        }
        if (got === 0) throw new PonderError('IO_READ', `${path}: the file ended after ${offset + done} bytes while reading ${length} bytes at ${offset} (did it change while open?)`, { path, hint: 'do not modify the file while ponder reads it' });
        done += got;
      }
      return out;
    },
    close: () => closeSync(fd),
  };
}

/** Runs `body` on the open regular file at `path` and closes it. */
export function withRegularFile<T>(path: string, body: (file: RegularFile) => T): T {
  const file = openRegularFile(path);
  try {
    return body(file);
  } finally {
    file.close();
  }
}

/** How big a whole-file read may be, and the error for a file over it (CFG_JSON for a config, TRACE_INVALID for a trace...). */
export interface ReadLimit {
  readonly maxBytes: number;
  readonly code: string;
  /** what the file should be, for the message: "a JSON config" */
  readonly what: string;
}

/** The whole file, refused from its size (before any allocation) when over `limit`. */
export function readBytes(path: string, limit: ReadLimit): Uint8Array {
  return withRegularFile(path, (file) => {
    if (file.size > limit.maxBytes) {
      throw new PonderError(limit.code, `${path}: ${file.size} bytes is too large for ${limit.what} (limit ${limit.maxBytes} bytes)`, { path, hint: 'this is not the right file' });
    }
    return file.read(0, file.size);
  });
}

/** The whole file as text (UTF-8; invalid bytes become U+FFFD), bounded like readBytes. */
export function readText(path: string, limit: ReadLimit): string {
  const bytes = readBytes(path, limit);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'); // Node's native decoder: a 35 MB trace in milliseconds
}

/** Whether anything is at `path` (not following a final symlink): a dangling or looping symlink exists, and reading it says why it cannot be read. */
export function entryExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** stat (following symlinks) with every failure as a PonderError (IO_NOT_FOUND, IO_SYMLINK_LOOP, IO_READ). */
export function statPath(path: string): Stats {
  try {
    return statSync(path);
  } catch (e) {
    throw ioError(path, e);
  }
}

/**
 * A file as a ByteSource for the core's readers: random access through one open descriptor, so
 * a multi-GB file is never held in memory. Call close() when done.
 */
export function openFileSource(path: string): ByteSource & { close(): void } {
  const file = openRegularFile(path);
  return { label: path, size: file.size, read: (offset, length) => file.read(offset, length), close: () => file.close() };
}

// ---------------------------------------------------------------------------------------------
// Safetensors files

/** Reads and validates a safetensors file's header (not its data). Allocates at most 8 + N bytes, N ≤ 100 MB and ≤ the file size. */
export function readSafetensorsHeaderFile(path: string): SafetensorsHeader {
  return withRegularFile(path, (file) => {
    const first = file.read(0, Math.min(file.size, 64));
    const headerLength = readHeaderLength(first, file.size, path);
    return parseSafetensorsHeader(file.read(0, 8 + headerLength), file.size, path);
  });
}

/** One tensor's data, read from the file of a validated header. */
export function readTensorFromFile(header: SafetensorsHeader, info: TensorInfo): TensorArray {
  return withRegularFile(header.path, (file) => tensorFromBytes(info, file.read(header.dataStart + info.begin, info.end - info.begin)));
}

// ---------------------------------------------------------------------------------------------
// Writing

function writeError(path: string, what: string, hint: string): PonderError {
  return new PonderError('IO_WRITE', `${path}: ${what}`, { path, hint });
}

/**
 * Refuses to write over `path` if something that is not a regular file is there (a device node,
 * a FIFO, a directory, a symlink — never replaced); checks its directory exists.
 */
export function checkWriteTarget(path: string): void {
  let st: Stats | null = null;
  try {
    st = lstatSync(path);
  } catch (e) {
    if (errnoOf(e) !== 'ENOENT') throw writeError(path, `cannot be checked (${errnoOf(e) ?? (e as Error).message})`, 'check the path and its permissions');
  }
  if (st && !st.isFile()) {
    throw writeError(path, `exists and is ${describeEntry(st)}, which ponder does not replace`, st.isSymbolicLink() ? 'write to the link\'s target path itself, or remove the link' : 'choose another output path');
  }
  const dir = dirname(resolve(path));
  let dst: Stats;
  try {
    dst = statSync(dir);
  } catch {
    throw new PonderError('IO_NOT_FOUND', `${dir}: no such directory for ${path}`, { path, hint: 'create the directory first' });
  }
  if (!dst.isDirectory()) throw new PonderError('IO_NOT_DIRECTORY', `${dir} is not a directory, so ${path} cannot be written`, { path, hint: 'choose an output path inside a directory' });
}

/** An output being written beside its target: `commit()` renames it into place, `discard()` removes it. */
export interface PendingFile {
  readonly target: string;
  readonly temp: string;
  write(chunk: Uint8Array): void;
  commit(): void;
  discard(): void;
}

/** Starts writing `target` atomically (checkWriteTarget first): the data goes to a new temporary file in the same directory. */
export function beginAtomicWrite(target: string): PendingFile {
  checkWriteTarget(target);
  const temp = join(dirname(resolve(target)), `.${basename(target)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  let fd: number | null;
  try {
    fd = openSync(temp, 'wx', 0o644);
  } catch (e) {
    throw writeError(target, `cannot create a temporary file beside it (${errnoOf(e) ?? (e as Error).message})`, 'check that the directory is writable');
  }
  const closeFd = (): void => { if (fd !== null) { closeSync(fd); fd = null; } };
  const discard = (): void => {
    closeFd();
    try { unlinkSync(temp); } catch { /* already gone */ }
  };
  return {
    target,
    temp,
    write(chunk: Uint8Array): void {
      for (let done = 0; done < chunk.byteLength;) {
        try {
          done += writeSync(fd!, chunk, done, chunk.byteLength - done);
        } catch (e) {
          discard();
          throw writeError(target, `cannot write (${errnoOf(e) ?? (e as Error).message})`, 'check the free disk space');
        }
      }
    },
    commit(): void {
      try {
        fsyncSync(fd!);
        closeFd();
        checkWriteTarget(target); // nothing else appeared at the target meanwhile
        renameSync(temp, target);
      } catch (e) {
        discard();
        if (e instanceof PonderError) throw e;
        throw writeError(target, `cannot be replaced (${errnoOf(e) ?? (e as Error).message})`, 'check the directory\'s permissions');
      }
    },
    discard,
  };
}

/** Writes `data` to `path` through a temporary file and a rename: the target is whole or untouched. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const file = beginAtomicWrite(path);
  try {
    file.write(typeof data === 'string' ? new Uint8Array(Buffer.from(data, 'utf8')) : data);
  } catch (e) {
    file.discard();
    throw e;
  }
  file.commit();
}

// ---------------------------------------------------------------------------------------------
// Golden cases

/** A golden case's JSON description is small. */
const GOLDEN_JSON_LIMIT: ReadLimit = { maxBytes: 100_000_000, code: 'GOLDEN_JSON', what: 'a golden case description' };
/** Its tensors are held in memory whole (Node reads at most 2 GiB at once). */
const GOLDEN_TENSORS_LIMIT: ReadLimit = { maxBytes: 2 ** 31 - 1, code: 'GOLDEN_TENSOR', what: 'a golden case\'s tensors (held in memory whole)' };

/**
 * Every golden case under `dir` (recursively, following symlinks): each CASE.json beside its
 * CASE.safetensors, sorted by path. A symlink loop, or a link back into a directory being walked,
 * is IO_SYMLINK_LOOP.
 */
export function findGoldenCases(dir: string): string[] {
  const st = statPath(dir);
  if (!st.isDirectory()) {
    if (dir.endsWith('.json')) return [resolve(dir).slice(0, -'.json'.length)];
    throw new PonderError('IO_NOT_DIRECTORY', `${dir} is not a directory`, { path: dir, hint: 'pass a directory of golden cases, or one CASE.json' });
  }
  const found: string[] = [];
  const walking: string[] = []; // real paths of the directories being walked (the current chain)
  const walk = (d: string): void => {
    let real: string;
    try {
      real = realpathSync(d);
    } catch (e) {
      throw ioError(d, e);
    }
    if (walking.includes(real)) throw symlinkLoop(d, real);
    walking.push(real);
    let entries: string[];
    try {
      entries = readdirSync(d).sort();
    } catch (e) {
      throw ioError(d, e);
    }
    for (const entry of entries) {
      const p = join(d, entry);
      if (statPath(p).isDirectory()) walk(p);
      else if (entry.endsWith('.json') && entryExists(p.slice(0, -'.json'.length) + '.safetensors')) found.push(p.slice(0, -'.json'.length));
    }
    walking.pop();
  };
  walk(dir);
  return found;
}

/** Checks CASE's description and its tensor file's header without reading the tensors: GOLDEN_JSON, ST_*, IO_* for a malformed case. */
export function checkGoldenCase(casePath: string): void {
  parseGoldenJson(readText(`${casePath}.json`, GOLDEN_JSON_LIMIT), casePath);
  readSafetensorsHeaderFile(`${casePath}.safetensors`);
}

/** Loads CASE (a path without extension). The case's name is `<family dir>/<case>`. */
export function loadGoldenCase(casePath: string): GoldenCase {
  const parent = basename(resolve(casePath, '..'));
  const name = `${parent}/${basename(casePath)}`;
  return parseGoldenCase(name, readText(`${casePath}.json`, GOLDEN_JSON_LIMIT), readBytes(`${casePath}.safetensors`, GOLDEN_TENSORS_LIMIT), casePath);
}
