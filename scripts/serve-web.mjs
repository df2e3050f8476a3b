#!/usr/bin/env node
/**
 * Serves the web page (web/) on 127.0.0.1: `npm run serve:web` (or `node scripts/serve-web.mjs [PORT]`).
 * Builds the page's bundle first (web/build.mjs), then serves
 *   /                  web/index.html          /dist/*   the bundle
 *   /models/index.json the bundled models       /models/* their files (models/<name>/...)
 *   /golden/index.json the golden cases         /golden/* spec/golden/<family>/<case>.{json,safetensors}
 * Every response carries the cross-origin isolation headers (COOP/COEP): the WASM kernels use a
 * shared WebAssembly.Memory, which browsers only allow on a cross-origin isolated page.
 */
import { createServer } from 'node:http';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname, join, normalize, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildWeb } from '../web/build.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.map': 'application/json',
  '.json': 'application/json; charset=utf-8', '.css': 'text/css; charset=utf-8', '.png': 'image/png',
  '.safetensors': 'application/octet-stream', '.txt': 'text/plain; charset=utf-8',
};
const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

/** Every file under dir, as paths relative to it with '/' separators. */
function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const entry of readdirSync(d).sort()) {
      const p = join(d, entry);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/** Golden case names ('mor/vanilla_llama_baseline'): every CASE.safetensors with its CASE.json. */
function goldenIndex() {
  const dir = join(ROOT, 'spec/golden');
  const files = new Set(listFiles(dir));
  return [...files].filter((f) => f.endsWith('.safetensors') && files.has(f.replace(/\.safetensors$/, '.json'))).map((f) => f.replace(/\.safetensors$/, ''));
}

/** Bundled models: each directory under models/ that holds a config.json, with its file list. */
function modelIndex() {
  const dir = join(ROOT, 'models');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).sort()
    .filter((name) => existsSync(join(dir, name, 'config.json')))
    .map((name) => ({ name, files: listFiles(join(dir, name)) }));
}

/** The file a URL path maps to under base, or null when it would leave base. */
function under(base, urlPath) {
  const p = normalize(join(base, decodeURIComponent(urlPath)));
  return p === base || p.startsWith(base + sep) ? p : null;
}

function resolvePath(urlPath) {
  if (urlPath === '/' || urlPath === '/index.html') return join(ROOT, 'web/index.html');
  if (urlPath.startsWith('/dist/')) return under(join(ROOT, 'web/dist'), urlPath.slice('/dist/'.length));
  if (urlPath.startsWith('/models/')) return under(join(ROOT, 'models'), urlPath.slice('/models/'.length));
  if (urlPath.startsWith('/golden/')) return under(join(ROOT, 'spec/golden'), urlPath.slice('/golden/'.length));
  return null;
}

/** `isolation: false` leaves out COOP/COEP (only to test the page's fallback to the scalar kernels). */
export async function startWebServer({ port = 8080, host = '127.0.0.1', build = true, isolation = true } = {}) {
  const headers = isolation ? ISOLATION : { 'Cache-Control': 'no-store' };
  if (build) await buildWeb();
  const server = createServer((req, res) => {
    const urlPath = new URL(req.url ?? '/', 'http://localhost').pathname;
    const json = (value) => { res.writeHead(200, { ...headers, 'Content-Type': TYPES['.json'] }); res.end(JSON.stringify(value)); };
    if (urlPath === '/golden/index.json') return json(goldenIndex());
    if (urlPath === '/models/index.json') return json(modelIndex());
    const path = resolvePath(urlPath);
    if (!path || !existsSync(path) || !statSync(path).isFile()) {
      res.writeHead(404, { ...headers, 'Content-Type': TYPES['.txt'] });
      res.end(`not found: ${urlPath}\n`);
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(path)] ?? 'application/octet-stream', 'Content-Length': statSync(path).size });
    createReadStream(path).pipe(res);
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(port, host, resolve); });
  const address = server.address();
  return { url: `http://${host}:${address.port}/`, close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const port = process.argv[2] === undefined ? 8080 : Number(process.argv[2]);
  const { url } = await startWebServer({ port });
  console.log(`ponder web page: ${url}  (Ctrl-C to stop)`);
}
