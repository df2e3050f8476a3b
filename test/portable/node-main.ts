/** Node entry of the portable suite: `node dist/test/portable/node-main.js [GOLDEN_DIR [MODELS_DIR]]` (default spec/golden, models). */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { nodeWorkerFactory } from '../../src/node/pool-worker.js';
import { runPortableMain } from './main.js';
import type { GoldenFiles } from '../../src/conform/portable.js';
import type { ModelFileReader } from './generation.js';

const dir = process.argv[2] ?? 'spec/golden';
const modelsDir = process.argv[3] ?? 'models';
const files: GoldenFiles = {
  async listCases() {
    const names: string[] = [];
    for (const family of (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory())) {
      for (const f of await readdir(join(dir, family.name))) if (f.endsWith('.safetensors')) names.push(`${family.name}/${f.slice(0, -'.safetensors'.length)}`);
    }
    return names;
  },
  readText: (p) => readFile(join(dir, p), 'utf8'),
  readBytes: async (p) => new Uint8Array(await readFile(join(dir, p))),
};
const modelFiles = (model: string): ModelFileReader => ({
  readText: (p) => readFile(join(modelsDir, model, p), 'utf8'),
  readBytes: async (p) => new Uint8Array(await readFile(join(modelsDir, model, p))),
});
const ok = await runPortableMain(`node ${process.versions.node}`, files, modelFiles, nodeWorkerFactory, (line) => console.log(line));
process.exitCode = ok ? 0 : 1;
