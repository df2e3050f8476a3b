/**
 * model.dispose(): frees what the model owns — the kernel threads of the runtime loadModel made for
 * it — and never a runtime the caller passed in; idempotent; every later call is MODEL_DISPOSED,
 * and work still under way stops with it at its next step.
 *
 * Threads are counted as the OS sees them (/proc/self/task): a pool's worker_threads are unref'd,
 * so the process would exit anyway; what must hold is that they are gone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { loadModel, createNodeWasmRuntime, type Model } from '../src/node/index.js';
import { isPonderError } from '../src/errors.js';

const MODEL = 'models/ouro-sotu';
const threads = (): number => readdirSync('/proc/self/task').length;
const osThreads = { skip: existsSync('/proc/self/task') ? false : 'no /proc/self/task on this host' };
const disposedError = (e: unknown): boolean => isPonderError(e) && e.code === 'MODEL_DISPOSED' && e.message.includes(MODEL) && e.hint !== undefined;

/** Polls until `f` holds (thread exit is asynchronous to terminate() in the OS's view), at most ~2 s. */
async function eventually(f: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
  return f();
}

test('a model loaded without a runtime stops its own kernel threads on dispose()', osThreads, async () => {
  const before = threads();
  const model = await loadModel(MODEL);
  await model.generate([1, 2, 3], { maxNewTokens: 2 }).result();
  const loaded = threads();
  assert.ok(loaded > before, `the default runtime runs worker threads (${before} → ${loaded})`);
  await model.dispose();
  assert.ok(await eventually(() => threads() <= before), `threads after dispose: ${threads()}, before load: ${before}`);
});

test('a runtime passed in stays the caller\'s: disposing a model on it leaves its threads and other models running', osThreads, async () => {
  const runtime = await createNodeWasmRuntime({ threads: 2 });
  try {
    const withPool = threads();
    const a = await loadModel(MODEL, { runtime });
    const b = await loadModel(MODEL, { runtime });
    const expected = await b.generate([1, 2, 3], { maxNewTokens: 4 }).result();
    await a.dispose();
    assert.equal(threads(), withPool, 'the pool\'s threads are still there');
    const splitBefore = runtime.splitJobs();
    const again = await b.generate([1, 2, 3], { maxNewTokens: 4 }).result();
    assert.deepEqual(again.generatedIds, expected.generatedIds);
    assert.ok(runtime.splitJobs() > splitBefore, 'the other model still runs on the pool');
  } finally {
    await runtime.dispose();
  }
});

test('dispose() is idempotent, and every later call on the model is MODEL_DISPOSED naming it', async () => {
  const model = await loadModel(MODEL);
  assert.equal(model.disposed, false);
  await Promise.all([model.dispose(), model.dispose()]);
  await model.dispose();
  assert.equal(model.disposed, true);
  const calls: Array<[string, (m: Model) => unknown]> = [
    ['generate', (m) => m.generate([1, 2, 3])],
    ['forward', (m) => m.forward([1, 2, 3])],
    ['score', (m) => m.score([1, 2, 3])],
    ['chat', (m) => m.chat([{ role: 'user', content: 'Hi' }])],
    ['chatSession', (m) => m.chatSession()],
    ['encode', (m) => m.encode('Hi')],
    ['decode', (m) => m.decode([1, 2])],
    ['checkPolicy', (m) => m.checkPolicy({ kind: 'default' })],
    ['stopIds', (m) => m.stopIds()],
  ];
  for (const [name, call] of calls) assert.throws(() => call(model), disposedError, name);
  assert.equal(model.family, 'ouro', 'its description stays readable');
});

test('a generation or scoring still under way stops with MODEL_DISPOSED at its next step, never on a stopped runtime', async () => {
  const model = await loadModel(MODEL);
  const generation = model.generate([1, 2, 3], { maxNewTokens: 40 });
  const seen: number[] = [];
  await assert.rejects(async () => {
    for await (const event of generation) {
      seen.push(event.id);
      if (seen.length === 2) await model.dispose();
    }
  }, disposedError);
  assert.equal(seen.length, 2);

  const other = await loadModel(MODEL);
  const scoring = other.score(Array.from({ length: 30 }, (_, i) => (i * 7) % 100), { window: 5 });
  let windows = 0;
  await assert.rejects(async () => {
    for await (const _chunk of scoring) {
      windows++;
      await other.dispose();
    }
  }, disposedError);
  assert.equal(windows, 1);
});
