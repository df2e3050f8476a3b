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
    entryPoints: [join(WEB, 'src/main.ts'), join(WEB, 'src/worker.ts'), join(WEB, 'src/pool-worker.ts')],
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
