/**
 * scripts/serve-web.mjs, the page's static server: every response is cross-origin isolated
 * (COOP/COEP, which shared WebAssembly memory needs in a browser), the manifests list exactly the
 * golden cases and bundled models on disk, and no URL reaches a file outside the served folders.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'node:http';
// @ts-expect-error: a plain .mjs script without type declarations
import { startWebServer } from '../scripts/serve-web.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
let server: { url: string; close(): Promise<void> };

before(async () => { server = await startWebServer({ port: 0, build: false }); });
after(async () => { await server.close(); });

/** GET with the path sent exactly as written (fetch would normalise "..", which is what we test). */
function get(rawPath: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Uint8Array; text: string }> {
  const { hostname, port } = new URL(server.url);
  return new Promise((resolvePromise, reject) => {
    const req = request({ hostname, port, path: rawPath, method: 'GET' }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on('data', (c: Uint8Array) => chunks.push(new Uint8Array(c)));
      res.on('end', () => {
        const body = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let offset = 0;
        for (const c of chunks) { body.set(c, offset); offset += c.length; }
        resolvePromise({ status: res.statusCode ?? 0, headers: res.headers, body, text: new TextDecoder().decode(body) });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

test('every response, found or not, carries the cross-origin isolation headers', async () => {
  for (const path of ['/', '/golden/index.json', '/models/index.json', '/no/such/file']) {
    const r = await get(path);
    assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin', path);
    assert.equal(r.headers['cross-origin-embedder-policy'], 'require-corp', path);
  }
  assert.equal((await get('/')).status, 200);
  assert.equal((await get('/no/such/file')).status, 404);
});

test('the golden manifest lists every case on disk, and each case file is served byte for byte', async () => {
  const onDisk: string[] = [];
  for (const family of readdirSync(join(ROOT, 'spec/golden'), { withFileTypes: true }).filter((e) => e.isDirectory())) {
    for (const f of readdirSync(join(ROOT, 'spec/golden', family.name))) if (f.endsWith('.safetensors')) onDisk.push(`${family.name}/${f.replace(/\.safetensors$/, '')}`);
  }
  const listed = JSON.parse((await get('/golden/index.json')).text) as string[];
  assert.deepEqual([...listed].sort(), onDisk.sort());
  const first = listed[0];
  const served = (await get(`/golden/${first}.safetensors`)).body;
  const disk = new Uint8Array(readFileSync(join(ROOT, 'spec/golden', `${first}.safetensors`)));
  assert.equal(served.length, disk.length);
  assert.ok(served.every((b, i) => b === disk[i]), 'same bytes');
});

test('the model manifest lists each models/ folder that has a config.json', async () => {
  const listed = JSON.parse((await get('/models/index.json')).text) as Array<{ name: string; files: string[] }>;
  const expected = existsSync(join(ROOT, 'models')) ? readdirSync(join(ROOT, 'models')).filter((n) => existsSync(join(ROOT, 'models', n, 'config.json'))).sort() : [];
  assert.deepEqual(listed.map((m) => m.name), expected);
  for (const m of listed) assert.ok(m.files.includes('config.json'), m.name);
});

test('paths that climb out of a served folder are not found', async () => {
  for (const path of ['/golden/../../package.json', '/models/..%2f..%2fpackage.json', '/dist/%2e%2e/%2e%2e/package.json', '/golden/..%2F..%2F.git%2Fconfig']) {
    const r = await get(path);
    assert.equal(r.status, 404, path);
    assert.ok(!r.text.includes('"name": "ponder"'), path);
  }
});
