/**
 * The worker's model side: load a model (bundled, over fetch; or a picked folder, from memory),
 * tell the page which depth policies it can run, and stream a generation token by token.
 */
import { loadModel } from '../../src/api/load.js';
import type { Model } from '../../src/api/model.js';
import { parsePolicy } from '../../src/depth/policy.js';
import { PonderError } from '../../src/errors.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { AUTO_THRESHOLDS } from '../../src/depth/criteria.js';
import { summarizeTrace, traceToJSON } from '../../src/trace/trace.js';
import { formatSummary } from '../../src/trace/terminal.js';
import type { FromWorker, GenerateRequest, ModelChoice, ModelInfo, PolicyChoice, TokenEvent } from './protocol.js';

type Post = (m: FromWorker) => void;

/** Every policy the page offers; a model shows the ones its family accepts (Model.checkPolicy). */
const POLICY_CANDIDATES: PolicyChoice[] = [
  { template: 'default', label: 'default (as upstream)' },
  { template: 'fixed({N})', label: 'fixed(n): every token n steps' },
  { template: 'exit(gate, {T})', label: 'exit: learned gate (Ouro)', threshold: 0.5 },
  ...Object.entries(AUTO_THRESHOLDS).map(([criterion, t]) => ({ template: `exit(${criterion}, {T})`, label: `exit: ${criterion}`, threshold: t })),
  { template: 'router(upstream)', label: 'router (upstream MoR)' },
  { template: 'router(causal, {T})', label: 'router, causal threshold', threshold: 0.5 },
];

export function spellPolicy(template: string, steps: number, threshold: number | undefined): string {
  return template.replace('{N}', String(steps)).replace('{T}', String(threshold ?? 'auto'));
}

const importTokenizers = () => import('@huggingface/tokenizers');

async function load(choice: ModelChoice, runtime: Runtime, post: Post): Promise<Model> {
  const onProgress = ({ bytesDone, bytesTotal }: { bytesDone: number; bytesTotal: number }) =>
    post({ type: 'status', text: `loading ${choice.kind === 'bundled' ? choice.name : choice.label}: ${(bytesDone / 1024).toFixed(0)} of ${(bytesTotal / 1024).toFixed(0)} KiB` });
  if (choice.kind === 'bundled') {
    return loadModel(new URL(`/models/${encodeURIComponent(choice.name)}/`, self.location.origin).href, { runtime, importTokenizers, onProgress });
  }
  const text = (name: string): string | undefined => (choice.files[name] ? new TextDecoder().decode(choice.files[name]) : undefined);
  const config = text('config.json');
  if (config === undefined) {
    throw new PonderError('MODEL_NO_CONFIG', `${choice.label} has no config.json`, { path: choice.label, hint: 'pick a model folder in Hugging Face layout: config.json next to model.safetensors' });
  }
  const weights = Object.fromEntries(Object.entries(choice.files).filter(([name]) => name.endsWith('.safetensors') || name === 'model.safetensors.index.json'));
  return loadModel({
    config, files: weights, label: choice.label,
    tokenizer: text('tokenizer.json'), tokenizerConfig: text('tokenizer_config.json'), generationConfig: text('generation_config.json'),
  }, { runtime, importTokenizers, onProgress });
}

let current: { model: Model; info: ModelInfo } | null = null;
let running: AbortController | null = null;

/** Ends the running generation after its current token (its finish reason becomes 'aborted'). */
export function stopGeneration(): void {
  running?.abort();
}

/** Drops the loaded model (its runtime is about to be replaced). */
export function forgetModel(): void {
  current = null;
}

export async function loadInWorker(choice: ModelChoice, runtime: Runtime, post: Post): Promise<void> {
  current = null;
  const model = await load(choice, runtime, post);
  const policies = POLICY_CANDIDATES.filter((p) => {
    try { model.checkPolicy(parsePolicy(spellPolicy(p.template, model.defaultDepth, p.threshold))); return true; } catch { return false; }
  });
  const info: ModelInfo = { label: choice.kind === 'bundled' ? choice.name : `${choice.label} (local)`, family: model.family, defaultDepth: model.defaultDepth, policies, kernels: runtime.kernels.name };
  current = { model, info };
  post({ type: 'model', info });
  post({ type: 'status', text: `${info.label}: ${model.family}, full depth ${model.defaultDepth}, vocabulary ${model.vocabSize}, kernels ${info.kernels}` });
}

function tokenText(model: Model, id: number): string {
  return model.tokenizer ? model.tokenizer.decode([id]) : '';
}

export async function generateInWorker(request: GenerateRequest, post: Post, threadJobs: () => Promise<number>): Promise<void> {
  if (!current) throw new PonderError('ARG_INVALID', 'no model is loaded', { hint: 'pick a model first' });
  const { model } = current;
  running = new AbortController();
  // With a signal, the generation yields to the event loop between tokens, so a 'stop' message gets through.
  const generation = model.generate(request.prompt, {
    maxNewTokens: request.maxNewTokens, seed: request.seed, policy: parsePolicy(request.policy), sampling: { temperature: request.temperature }, signal: running.signal,
  });
  try {
    for await (const event of generation) {
      const t = event.trace;
      const token: TokenEvent = { index: event.index, id: event.id, text: event.text, steps: t.steps, maxSteps: t.maxSteps, phase: 'decode', exitReason: t.exitReason };
      post({ type: 'token', token });
    }
  } finally {
    running = null;
  }
  const result = await generation.result();
  const prompt: TokenEvent[] = result.trace.tokens.filter((t) => t.phase === 'prefill').map((t, index) => (
    { index, id: t.id, text: tokenText(model, t.id), steps: t.steps, maxSteps: t.maxSteps, phase: 'prefill', exitReason: t.exitReason }));
  post({ type: 'generate-done', prompt, traceJson: traceToJSON(result.trace), summary: formatSummary(summarizeTrace(result.trace)), finishReason: result.finishReason, threadJobs: await threadJobs() });
}
