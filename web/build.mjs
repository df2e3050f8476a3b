/**
 * Bundles the page's script, its model worker and the kernel pool worker with esbuild (a dev dependency) into web/dist/.
 * `node web/build.mjs` from the repository root; scripts/serve-web.mjs calls buildWeb() itself.
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const WEB = dirname(fileURLToPath(import.meta.url));

export async function buildWeb() {
  await build({
    entryPoints: {
      main: join(WEB, 'src/main.ts'),
      worker: join(WEB, 'src/worker.ts'),
      // the kernel threads of the WASM thread pool: the same entry Deno and Bun use
      'pool-worker': join(WEB, '../src/web/pool-worker.ts'),
    },
    outdir: join(WEB, 'dist'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
    logLevel: 'warning',
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await buildWeb();
