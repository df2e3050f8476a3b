/**
 * KV caches live in the WASM arena, which never frees memory, so a model reuses the caches of ended
 * sessions (src/models/cache-pool.ts). A long-lived model (a server) must neither grow without
 * bound nor let a reused cache change any result: after one round of requests the arena stops
 * growing, and every request gives the same tokens, depths and logits in any order — so stale
 * entries of an earlier sequence are never read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, createWasmRuntime, exit, fixed, type Model } from '../src/node/index.js';
import type { Runtime } from '../src/runtime/runtime.js';
import { Prng } from '../src/generate/prng.js';
import type { DepthPolicy } from '../src/depth/policy.js';

interface Request { prompt: number[]; maxNewTokens: number; abortAfter: number | null; policy: DepthPolicy | undefined }

/** Requests of varying prompt and output length (some aborted part-way), drawn from a seed. */
function requests(model: Model, seed: number, count: number): Request[] {
  const rng = new Prng(seed);
  const int = (n: number): number => rng.nextIndex(n);
  const policies: (DepthPolicy | undefined)[] = model.family === 'ouro' ? [undefined, exit('gate', 0.5), fixed(2)] : model.family === 'huginn' ? [undefined, exit('kl', 1e-3)] : [undefined];
  return Array.from({ length: count }, () => {
    const promptLength = 1 + int(Math.min(20, model.contextLength / 2));
    return {
      prompt: Array.from({ length: promptLength }, () => int(model.vocabSize)),
      maxNewTokens: 1 + int(model.contextLength - promptLength - 1),
      abortAfter: int(4) === 0 ? int(3) : null,
      policy: policies[int(policies.length)],
    };
  });
}

async function run(model: Model, r: Request): Promise<unknown> {
  const controller = new AbortController();
  const generation = model.generate(r.prompt, { maxNewTokens: r.maxNewTokens, policy: r.policy, signal: controller.signal });
  for await (const event of generation) if (event.index === r.abortAfter) controller.abort();
  const result = await generation.result();
  const { logits } = model.forward(r.prompt, { policy: r.policy });
  return { ids: result.generatedIds, steps: result.trace.tokens.map((t) => t.steps), finish: result.finishReason, logits: Array.from(logits) };
}

for (const family of ['ouro', 'mor', 'huginn'] as const) {
  test(`${family}: after one round of requests the arena stops growing, and a reused cache gives the results of a fresh one`, async () => {
    const runtime: Runtime = await createWasmRuntime();
    const model = await loadModel(`models/demo-${family}`, { runtime });
    const batch = requests(model, 7, 16);
    const first = [];
    for (const r of batch) first.push(await run(model, r));
    const afterFirstRound = runtime.arena.bytesUsed;
    // the same requests in reverse order: every cache now holds another sequence's entries
    const again = [];
    for (const r of [...batch].reverse()) again.push(await run(model, r));
    assert.equal(runtime.arena.bytesUsed, afterFirstRound, 'the second round allocated no arena memory');
    assert.deepEqual(again.reverse(), first);
    // and each equals the request on a model that never ran another sequence
    const fresh = await loadModel(`models/demo-${family}`, { runtime: await createWasmRuntime() });
    for (const [i, r] of batch.entries()) if (i % 5 === 0) assert.deepEqual(await run(fresh, r), first[i], `request ${i}`);
  });
}
