/**
 * The Node file adapter: the only place in the library that touches the file system.
 * The core (src/ outside node/ and cli/) takes bytes and never imports a Node module.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, basename, resolve } from 'node:path';
import { PonderError } from '../errors.js';
import { parseGoldenCase, type GoldenCase } from '../conform/golden.js';
import type { ByteSource } from '../format/zip.js';

export function readBytes(path: string): Uint8Array {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new PonderError('IO_NOT_FOUND', `${path}: no such file or directory`, { path, hint: 'check the path' });
  }
  if (st.isDirectory()) throw new PonderError('IO_IS_DIRECTORY', `${path} is a directory, not a file`, { path, hint: 'pass a file inside it' });
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new PonderError('IO_READ', `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { path, hint: 'check the permissions' });
  }
}

/**
 * A file as a ByteSource for the core's readers: random access through one open descriptor, so
 * a multi-GB file is never held in memory. Call close() when done.
 */
export function openFileSource(path: string): ByteSource & { close(): void } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new PonderError('IO_NOT_FOUND', `${path}: no such file or directory`, { path, hint: 'check the path' });
    throw new PonderError('IO_READ', `${path}: cannot open (${code ?? (e as Error).message})`, { path, hint: 'check the permissions' });
  }
  const st = fstatSync(fd);
  if (st.isDirectory()) {
    closeSync(fd);
    throw new PonderError('IO_IS_DIRECTORY', `${path} is a directory, not a file`, { path, hint: 'pass a file inside it' });
  }
  return {
    label: path,
    size: st.size,
    read(offset: number, length: number): Uint8Array {
      const out = new Uint8Array(length);
      for (let done = 0; done < length;) {
        let got: number;
        try {
          got = readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
        } catch (e) {
          throw new PonderError('IO_READ', `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { path, hint: 'check the file and the disk' });
        }
        if (got === 0) throw new PonderError('IO_READ', `${path}: the file ended after ${offset + done} bytes (did it change while open?)`, { path, hint: 'do not modify the file while ponder reads it' });
        done += got;
      }
      return out;
    },
    close: () => closeSync(fd),
  };
}

export function readText(path: string): string {
  return new TextDecoder().decode(readBytes(path));
}

/** Every golden case under `dir` (recursively): each CASE.json beside its CASE.safetensors, sorted by path. */
export function findGoldenCases(dir: string): string[] {
  if (!existsSync(dir)) throw new PonderError('IO_NOT_FOUND', `${dir}: no such directory`, { path: dir, hint: 'pass a directory of golden cases (CASE.json + CASE.safetensors)' });
  if (!statSync(dir).isDirectory()) {
    if (dir.endsWith('.json')) return [resolve(dir).slice(0, -'.json'.length)];
    throw new PonderError('IO_NOT_DIRECTORY', `${dir} is not a directory`, { path: dir, hint: 'pass a directory of golden cases, or one CASE.json' });
  }
  const found: string[] = [];
  const walk = (d: string): void => {
    for (const entry of readdirSync(d).sort()) {
      const p = join(d, entry);
      if (statSync(p).isDirectory()) walk(p);
      else if (entry.endsWith('.json') && existsSync(p.slice(0, -'.json'.length) + '.safetensors')) found.push(p.slice(0, -'.json'.length));
    }
  };
  walk(dir);
  return found;
}

/** Loads CASE (a path without extension). The case's name is `<family dir>/<case>`. */
export function loadGoldenCase(casePath: string): GoldenCase {
  const parent = basename(resolve(casePath, '..'));
  const name = `${parent}/${basename(casePath)}`;
  return parseGoldenCase(name, readText(`${casePath}.json`), readBytes(`${casePath}.safetensors`), casePath);
}
