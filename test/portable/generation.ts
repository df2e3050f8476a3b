/**
 * The generation smoke test every runtime runs: each bundled demo model (models/demo-*) loaded from
 * in-memory bytes through the public loadModel, a short seeded generation under a depth policy
 * that makes tokens use different depths, and the outcome (ids, per-token depths, text) that the
 * runtime tests compare with the Node run.
 */
import { loadModel } from '../../src/api/load.js';
import { parsePolicy } from '../../src/depth/policy.js';
import type { Runtime } from '../../src/runtime/runtime.js';

/** One model directory's files, read by the runtime's shim ('config.json', 'model.safetensors', 'tokenizer.json'). */
export interface ModelFileReader {
  readText(path: string): Promise<string>;
  readBytes(path: string): Promise<Uint8Array>;
}

export interface SmokeRun { readonly model: string; readonly policy: string; readonly prompt: string; readonly maxNewTokens: number; readonly seed: number }

/** One run per family, each under a policy where depth varies per token. */
export const SMOKE_RUNS: readonly SmokeRun[] = [
  { model: 'demo-huginn', policy: 'exit(kl, 0.001)', prompt: 'The recursive model thinks', maxNewTokens: 12, seed: 0 },
  { model: 'demo-ouro', policy: 'exit(gate, 0.5)', prompt: 'The recursive model thinks', maxNewTokens: 12, seed: 0 },
  { model: 'demo-mor', policy: 'router(causal, 0.5)', prompt: 'The recursive model thinks', maxNewTokens: 12, seed: 0 },
];

export interface SmokeResult extends SmokeRun {
  readonly family: string;
  readonly generatedIds: number[];
  readonly text: string;
  readonly finishReason: string;
  /** every trace entry, prompt positions first: [id, phase, steps, maxSteps, exitReason] */
  readonly depths: Array<[number, string, number, number, string]>;
  readonly tokensStreamed: number;
}

export async function runGenerationSmoke(run: SmokeRun, files: ModelFileReader, runtime: Runtime): Promise<SmokeResult> {
  const model = await loadModel({
    config: await files.readText('config.json'),
    files: { 'model.safetensors': await files.readBytes('model.safetensors') },
    tokenizer: await files.readText('tokenizer.json'),
    label: run.model,
  }, { runtime, importTokenizers: () => import('@huggingface/tokenizers') });
  const generation = model.generate(run.prompt, { maxNewTokens: run.maxNewTokens, seed: run.seed, policy: parsePolicy(run.policy), sampling: { temperature: 0 } });
  let tokensStreamed = 0;
  for await (const _event of generation) tokensStreamed++;
  const result = await generation.result();
  return {
    ...run,
    family: model.family,
    generatedIds: result.generatedIds,
    text: result.text,
    finishReason: result.finishReason,
    depths: result.trace.tokens.map((t) => [t.id, t.phase ?? 'decode', t.steps, t.maxSteps, t.exitReason]),
    tokensStreamed,
  };
}

export function formatSmoke(r: SmokeResult): string {
  const decode = r.depths.filter((d) => d[1] === 'decode').map((d) => d[2]);
  return `generate ${r.model} (${r.family}) ${r.policy}: ${r.generatedIds.length} tokens, ${r.finishReason}, depths [${decode.join(' ')}], text ${JSON.stringify(r.text)}`;
}
