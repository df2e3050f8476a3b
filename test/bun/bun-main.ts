/**
 * Bun entry of the portable suite: `bun dist/test/bun/bun-main.js [GOLDEN_DIR [MODELS_DIR]]`.
 * Lists and reads the golden files with Bun's own APIs (Bun.Glob, Bun.file).
 */
import { runPortableMain } from '../portable/main.js';
import { webWorkerFactory } from '../../src/web/worker-factory.js';
import type { GoldenFiles } from '../../src/conform/portable.js';
import type { ModelFileReader } from '../portable/generation.js';

declare const Bun: {
  readonly argv: string[];
  readonly version: string;
  file(path: string): { text(): Promise<string>; arrayBuffer(): Promise<ArrayBuffer> };
  Glob: new (pattern: string) => { scan(options: { cwd: string }): AsyncIterable<string> };
};

const dir = Bun.argv[2] ?? 'spec/golden';
const modelsDir = Bun.argv[3] ?? 'models';
const files: GoldenFiles = {
  async listCases() {
    const names: string[] = [];
    for await (const p of new Bun.Glob('*/*.safetensors').scan({ cwd: dir })) names.push(p.slice(0, -'.safetensors'.length));
    return names;
  },
  readText: (p) => Bun.file(`${dir}/${p}`).text(),
  readBytes: async (p) => new Uint8Array(await Bun.file(`${dir}/${p}`).arrayBuffer()),
};
const modelFiles = (model: string): ModelFileReader => ({
  readText: (p) => Bun.file(`${modelsDir}/${model}/${p}`).text(),
  readBytes: async (p) => new Uint8Array(await Bun.file(`${modelsDir}/${model}/${p}`).arrayBuffer()),
});
const ok = await runPortableMain(`bun ${Bun.version}`, files, modelFiles, webWorkerFactory(new URL('../../src/web/pool-worker.js', import.meta.url)), (line) => console.log(line));
// Bun has process, but this entry stays on Bun's own API surface; a failed suite must fail the process.
if (!ok) throw new Error('conformance failed under Bun');
