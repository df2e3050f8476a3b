/** The golden cases under spec/golden as the portable conformance runner reads them (Node tests). */
import { readFile } from 'node:fs/promises';
import type { GoldenFiles } from '../src/conform/portable.js';
import { findGoldenCases } from '../src/node/files.js';

export function goldenFiles(dir = 'spec/golden'): GoldenFiles {
  const names = ['mor', 'huginn', 'ouro'].flatMap((family) => findGoldenCases(`${dir}/${family}`).map((p) => `${family}/${p.split('/').pop()!.replace(/\.safetensors$|\.json$/, '')}`));
  return {
    listCases: async () => [...new Set(names)],
    readText: (p) => readFile(`${dir}/${p}`, 'utf8'),
    readBytes: async (p) => new Uint8Array(await readFile(`${dir}/${p}`)),
  };
}
