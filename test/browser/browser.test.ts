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
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { ROOT, comparableConformance, nodeReference } from '../portable/run-entry.js';
import type { SuiteResult } from '../../src/conform/portable.js';
import { createScalarRuntime, loadModel, parsePolicy, type Runtime } from '../../src/node/index.js';
import { depthRgb } from '../../src/trace/palette.js';
import { DEFAULT_MODEL, DEFAULT_MODEL_POLICY } from '../../src/defaults.js';
import { defaultThreads } from '../../src/runtime/pool.js';
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

test('in Chromium every golden case passes and every produced tensor is bit-identical to Node, on the page\'s default kernel threads (one per core)', async () => {
  const threads = defaultThreads(await page.evaluate(() => navigator.hardwareConcurrency));
  assert.equal(await page.inputValue('#threads'), String(threads), 'the threads control starts at the available cores (at most 8)');
  await page.click('#conform');
  await page.waitForSelector('#conformance[data-state="done"], #conformance[data-state="error"]', { timeout: 300_000 });
  const browserRun = await page.evaluate(() => (window as unknown as { ponderPage: { conformance: unknown; error: string | null } }).ponderPage);
  assert.equal(browserRun.error, null);
  const conformance = browserRun.conformance as SuiteResult;
  console.log(`  ${conformance.runtime} [${conformance.kernels}]: ${conformance.passed} passed, ${conformance.failed} failed; tensor digest ${conformance.digest}`);
  assert.match(conformance.runtime, /^browser Chrome\//);
  assert.equal(conformance.failed, 0);
  assert.ok(conformance.passed >= 22, `expected all golden cases, got ${conformance.passed}`);
  assert.equal(conformance.kernels, threads > 1 ? `wasm-simd-x${threads}` : 'wasm-simd');
  assert.deepEqual({ ...(comparableConformance(conformance) as object), kernels: 'wasm-simd' }, comparableConformance(nodeReference().conformance));
  await page.screenshot({ path: join(ARTIFACTS, 'web-conformance.png'), fullPage: true });
});

interface PaintedToken { id: number; phase: string; steps: number; background: string }

/** The heatmap's token spans: id, phase, depth and the colour the page painted. */
function readPainted(p: Page): Promise<PaintedToken[]> {
  return p.$$eval('#tokens .tok', (spans) => spans.map((s) => {
    const el = s as HTMLElement;
    return { id: Number(el.dataset.id), phase: el.dataset.phase!, steps: Number(el.dataset.steps), background: getComputedStyle(el).backgroundColor };
  }));
}

/** Waits until the page's generation has ended, and asserts it ended without an error. */
async function finishedWithoutError(p: Page): Promise<void> {
  await p.waitForSelector('#tokens[data-state="done"], #tokens[data-state="error"]', { timeout: 120_000 });
  assert.equal(await p.evaluate(() => (window as unknown as { ponderPage: { error: string | null } }).ponderPage.error), null);
}

/** What the Node run of the same model, prompt, seed and policy gives, as the page would paint it. */
async function nodeRun(model: string, prompt: string, policy: string, maxNewTokens: number, seed: number, runtime?: Runtime, temperature = 0): Promise<{ painted: PaintedToken[]; generated: number }> {
  const m = await loadModel(join(ROOT, 'models', model), runtime ? { runtime } : {});
  const result = await m.generate(prompt, { maxNewTokens, seed, policy: parsePolicy(policy), sampling: { temperature } }).result();
  const painted = result.trace.tokens.map((t) => {
    const [r, g, b] = depthRgb(Math.min(t.steps, t.maxSteps), Math.max(1, t.maxSteps));
    return { id: t.id, phase: t.phase ?? 'decode', steps: t.steps, background: `rgb(${r}, ${g}, ${b})` };
  });
  return { painted, generated: result.generatedIds.length };
}

test('the page starts with the trained model and the policy it is paired with, and its first generation is prose whose depth varies', async () => {
  await page.waitForSelector('#policy[data-state="ready"], #policy[data-state="error"]', { timeout: 60_000 });
  assert.equal(await page.inputValue('#model'), DEFAULT_MODEL);
  const paired = parsePolicy(DEFAULT_MODEL_POLICY);
  assert.ok(paired.kind === 'exit' && typeof paired.threshold === 'number');
  assert.equal(await page.inputValue('#policy'), `exit(${paired.criterion}, {T})`);
  assert.equal(Number(await page.inputValue('#threshold')), paired.threshold);
  await page.click('#generate');
  await finishedWithoutError(page);
  const painted = await readPainted(page);
  const [prompt, maxNewTokens, seed, temperature] = [await page.inputValue('#prompt'), Number(await page.inputValue('#maxNewTokens')), Number(await page.inputValue('#seed')), Number(await page.inputValue('#temperature'))];
  const expected = await nodeRun(DEFAULT_MODEL, prompt, DEFAULT_MODEL_POLICY, maxNewTokens, seed, undefined, temperature);
  assert.deepEqual(painted, expected.painted, 'the heatmap shows the Node run of the same defaults');
  const generated = painted.filter((t) => t.phase === 'decode');
  assert.ok(new Set(generated.map((t) => t.steps)).size > 1, 'the depth varies');
  const text: string = await page.$eval('#tokens', (el) => el.textContent ?? '');
  assert.ok((text.match(/[A-Za-z]+/g) ?? []).length >= 20, text);
  console.log(`  ${DEFAULT_MODEL} ${DEFAULT_MODEL_POLICY}: ${text.slice(0, 160)}…`);
  await page.screenshot({ path: join(ARTIFACTS, `web-${DEFAULT_MODEL}.png`), fullPage: true });
});

for (const [model, policy, threshold] of [['demo-ouro', 'exit(gate, {T})', '0.5'], ['demo-huginn', 'exit(kl, {T})', '0.001'], ['demo-mor', 'router(causal, {T})', '0.5']] as const) {
  test(`the page streams a ${model} generation from its worker and paints every token with the depth the Node run gives (${policy.replace('{T}', threshold)})`, async () => {
    const prompt = 'The recursive model thinks';
    const maxNewTokens = 16, seed = 3;
    await page.waitForSelector('#policy[data-state="ready"], #policy[data-state="error"]', { timeout: 60_000 });
    if ((await page.inputValue('#model')) !== model) {
      await page.selectOption('#model', model);
      await page.waitForFunction((name) => (window as unknown as { ponderPage: { model: { label: string } | null } }).ponderPage.model?.label === name, model, { timeout: 60_000 });
    }
    await page.selectOption('#policy', policy);
    await page.fill('#threshold', threshold);
    await page.fill('#prompt', prompt);
    await page.fill('#maxNewTokens', String(maxNewTokens));
    await page.fill('#temperature', '0');
    await page.fill('#seed', String(seed));
    // Record how tokens reach the heatmap: each streamed token event adds one span while the
    // generation is still running (the prompt's spans come in one batch when it is done).
    await page.evaluate(() => {
      const w = window as unknown as { tokenBatches: string[]; tokenObserver?: MutationObserver };
      w.tokenObserver?.disconnect();
      w.tokenBatches = [];
      const tokens = document.getElementById('tokens')!;
      w.tokenObserver = new MutationObserver((records) => {
        for (const r of records) if (r.addedNodes.length) w.tokenBatches.push(`${r.addedNodes.length}@${tokens.dataset.state}`);
      });
      w.tokenObserver.observe(tokens, { childList: true });
    });
    await page.click('#generate');
    await finishedWithoutError(page);
    const painted = await readPainted(page);
    const batches: string[] = await page.evaluate(() => (window as unknown as { tokenBatches: string[] }).tokenBatches);
    const expected = await nodeRun(model, prompt, policy.replace('{T}', threshold), maxNewTokens, seed);
    console.log(`  ${model} ${policy.replace('{T}', threshold)}: depths ${painted.map((t) => `${t.phase === 'prefill' ? 'p' : ''}${t.steps}`).join(' ')}`);
    assert.ok(expected.generated > 0);
    assert.deepEqual(painted, expected.painted, 'the heatmap shows the Node run\'s ids, phases and depths, in the depth colours');
    assert.ok(new Set(painted.map((t) => t.steps)).size > 1, 'the policy makes depth vary, so the heatmap is not one colour');
    assert.equal(batches.filter((b) => b === '1@running').length, expected.generated, `one span per generated token, painted while running (batches ${batches.join(',')})`);
    await page.screenshot({ path: join(ARTIFACTS, `web-${model}.png`), fullPage: true });
  });
}

test('a model folder picked with the folder input loads from the files and generates the same depths as Node', async () => {
  await page.setInputFiles('#folder', join(ROOT, 'models/demo-mor'));
  await page.waitForFunction(() => (window as unknown as { ponderPage: { model: { label: string } | null } }).ponderPage.model?.label === 'demo-mor (local)', undefined, { timeout: 60_000 });
  await page.selectOption('#policy', 'router(causal, {T})');
  await page.fill('#threshold', '0.4');
  await page.fill('#maxNewTokens', '8');
  await page.fill('#seed', '1');
  await page.click('#generate');
  await finishedWithoutError(page);
  const painted = await readPainted(page);
  const expected = await nodeRun('demo-mor', await page.inputValue('#prompt'), 'router(causal, 0.4)', 8, 1);
  assert.deepEqual(painted, expected.painted);
});

test('Stop ends a running generation after the token in progress, and the tokens painted so far match the Node run', async () => {
  const maxNewTokens = 200;
  await page.selectOption('#model', 'demo-ouro');
  await page.waitForFunction(() => (window as unknown as { ponderPage: { model: { label: string } | null } }).ponderPage.model?.label === 'demo-ouro', undefined, { timeout: 60_000 });
  await page.selectOption('#policy', 'exit(gate, {T})');
  await page.fill('#threshold', '0.5');
  await page.fill('#maxNewTokens', String(maxNewTokens));
  await page.fill('#seed', '0');
  await page.click('#generate');
  await page.waitForFunction(() => (window as unknown as { ponderPage: { tokens: unknown[] } }).ponderPage.tokens.length >= 3, undefined, { timeout: 60_000 });
  await page.click('#stop');
  await page.waitForSelector('#tokens[data-state="done"], #tokens[data-state="error"]', { timeout: 120_000 });
  const finish = await page.evaluate(() => (window as unknown as { ponderPage: { finishReason: string | null; error: string | null } }).ponderPage);
  assert.equal(finish.error, null);
  assert.equal(finish.finishReason, 'aborted');
  const painted = await readPainted(page);
  const generated = painted.filter((t) => t.phase === 'decode').length;
  assert.ok(generated >= 3 && generated < maxNewTokens, `stopped after ${generated} of ${maxNewTokens} tokens`);
  const expected = await nodeRun('demo-ouro', await page.inputValue('#prompt'), 'exit(gate, 0.5)', maxNewTokens, 0);
  assert.deepEqual(painted, expected.painted.slice(0, painted.length));
});

test('with 2 kernel threads in the page the pool splits work, and conformance and generation stay bit-identical to Node on one thread', async () => {
  type Page2 = { ponderPage: { model: { label: string; kernels: string } | null; conformance: SuiteResult | null; threadJobs: number; error: string | null } };
  const setThreads = async (n: number): Promise<void> => {
    await page.locator('#threads').fill(String(n));
    await page.locator('#threads').dispatchEvent('change');
    await page.waitForFunction((kernels) => (window as unknown as Page2).ponderPage.model?.kernels === kernels, n === 1 ? 'wasm-simd' : `wasm-simd-x${n}`, { timeout: 60_000 });
  };
  await page.selectOption('#model', 'demo-ouro');
  await page.waitForFunction(() => (window as unknown as Page2).ponderPage.model?.label === 'demo-ouro', undefined, { timeout: 60_000 });
  await setThreads(2);
  try {
    await page.click('#conform');
    await page.waitForSelector('#conformance[data-state="done"], #conformance[data-state="error"]', { timeout: 300_000 });
    const run = await page.evaluate(() => (window as unknown as Page2).ponderPage);
    assert.equal(run.error, null);
    const conformance = run.conformance!;
    console.log(`  ${conformance.runtime} [${conformance.kernels}]: ${conformance.passed} passed, ${conformance.failed} failed; tensor digest ${conformance.digest}; ${run.threadJobs} kernel calls split across threads`);
    assert.equal(conformance.kernels, 'wasm-simd-x2');
    assert.ok(run.threadJobs > 0, 'the pool actually split some kernel calls');
    const node = nodeReference().conformance;
    assert.deepEqual({ ...(comparableConformance(conformance) as object), kernels: 'wasm-simd' }, comparableConformance(node));

    await page.selectOption('#policy', 'exit(gate, {T})');
    await page.fill('#threshold', '0.5');
    await page.fill('#maxNewTokens', '16');
    await page.fill('#seed', '0');
    await page.click('#generate');
    await page.waitForSelector('#tokens[data-state="done"], #tokens[data-state="error"]', { timeout: 120_000 });
    const painted = await readPainted(page);
    assert.deepEqual(painted, (await nodeRun('demo-ouro', await page.inputValue('#prompt'), 'exit(gate, 0.5)', 16, 0)).painted);
  } finally {
    await setThreads(1);
  }
});

test('a screenshot of the page after a generation and a conformance run is saved as a test artifact', async () => {
  // The Ouro demo with its learned exit gate, then the conformance table below it.
  await page.selectOption('#model', 'demo-ouro');
  await page.waitForFunction(() => (window as unknown as { ponderPage: { model: { label: string } | null } }).ponderPage.model?.label === 'demo-ouro', undefined, { timeout: 60_000 });
  await page.selectOption('#policy', 'exit(gate, {T})');
  await page.fill('#threshold', '0.5');
  await page.fill('#maxNewTokens', '40');
  await page.click('#generate');
  await page.waitForSelector('#tokens[data-state="done"]', { timeout: 120_000 });
  const path = join(ARTIFACTS, 'web.png');
  await page.screenshot({ path, fullPage: false });
  assert.ok(existsSync(path));
  if (process.env.UPDATE_README_SCREENSHOT === '1') copyFileSync(path, join(ROOT, 'docs/web-screenshot.png'));
});

test('served without COOP/COEP the page says so, falls back to the scalar kernels and still paints the Node scalar run\'s depths', async () => {
  const plain = await startWebServer({ port: 0, build: false, isolation: false });
  const plainPage = await browser.newPage();
  try {
    await plainPage.goto(plain.url);
    assert.equal(await plainPage.evaluate(() => crossOriginIsolated), false);
    assert.match(await plainPage.textContent('#isolation') ?? '', /not cross-origin isolated/);
    assert.equal(await plainPage.isVisible('#isolation'), true);
    await plainPage.waitForSelector('#policy[data-state="ready"]', { timeout: 60_000 });
    await plainPage.selectOption('#model', 'demo-ouro');
    await plainPage.waitForFunction(() => (window as unknown as { ponderPage: { model: { label: string } | null } }).ponderPage.model?.label === 'demo-ouro', undefined, { timeout: 60_000 });
    await plainPage.selectOption('#policy', 'exit(gate, {T})');
    await plainPage.fill('#threshold', '0.5');
    await plainPage.fill('#maxNewTokens', '8');
    await plainPage.fill('#temperature', '0');
    await plainPage.click('#generate');
    await finishedWithoutError(plainPage);
    const painted = await readPainted(plainPage);
    const expected = await nodeRun('demo-ouro', await plainPage.inputValue('#prompt'), 'exit(gate, 0.5)', 8, Number(await plainPage.inputValue('#seed')), createScalarRuntime());
    assert.deepEqual(painted, expected.painted);
  } finally {
    await plainPage.close();
    await plain.close();
  }
});
