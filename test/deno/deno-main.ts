/**
 * Deno entry of the portable suite: `deno run --allow-read dist/test/deno/deno-main.js [GOLDEN_DIR [MODELS_DIR]]`.
 * Reads the golden files with Deno's own file API; the library itself never touches files.
 */
import { runPortableMain } from '../portable/main.js';
import { webWorkerFactory } from '../../src/web/worker-factory.js';
import type { GoldenFiles } from '../../src/conform/portable.js';
import type { ModelFileReader } from '../portable/generation.js';

interface DenoDirEntry { name: string; isFile: boolean; isDirectory: boolean }
declare const Deno: {
  readonly args: string[];
  readonly version: { deno: string };
  readDir(path: string): AsyncIterable<DenoDirEntry>;
  readFile(path: string): Promise<Uint8Array>;
  readTextFile(path: string): Promise<string>;
  exit(code: number): never;
};

const dir = Deno.args[0] ?? 'spec/golden';
const modelsDir = Deno.args[1] ?? 'models';
const files: GoldenFiles = {
  async listCases() {
    const names: string[] = [];
    for await (const family of Deno.readDir(dir)) {
      if (!family.isDirectory) continue;
      for await (const f of Deno.readDir(`${dir}/${family.name}`)) {
        if (f.isFile && f.name.endsWith('.safetensors')) names.push(`${family.name}/${f.name.slice(0, -'.safetensors'.length)}`);
      }
    }
    return names;
  },
  readText: (p) => Deno.readTextFile(`${dir}/${p}`),
  readBytes: (p) => Deno.readFile(`${dir}/${p}`),
};
const modelFiles = (model: string): ModelFileReader => ({
  readText: (p) => Deno.readTextFile(`${modelsDir}/${model}/${p}`),
  readBytes: (p) => Deno.readFile(`${modelsDir}/${model}/${p}`),
});
const ok = await runPortableMain(`deno ${Deno.version.deno}`, files, modelFiles, webWorkerFactory(new URL('../../src/web/pool-worker.js', import.meta.url)), (line) => console.log(line));
Deno.exit(ok ? 0 : 1);
