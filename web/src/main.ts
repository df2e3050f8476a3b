/**
 * The page: controls, the live depth heatmap and the conformance table. All model work is in
 * worker.ts; this file only sends requests and paints what comes back. Results are also kept on
 * `window.ponderPage` (and data-state attributes) so the browser tests can read exactly what the
 * page painted.
 */
import { depthRgb, rgbHex, textRgbOn, DEPTH_STOPS } from '../../src/trace/palette.js';
import { escapeHtml } from '../../src/trace/html.js';
import type { CaseResult, SuiteResult } from '../../src/conform/portable.js';
import { parseTraceJSON } from '../../src/trace/trace.js';
import { DEFAULT_MODEL, DEFAULT_MODEL_POLICY, DEFAULT_PROMPT } from '../../src/defaults.js';
import { parsePolicy } from '../../src/depth/policy.js';
import { renderTraceHtml } from '../../src/trace/html.js';
import { defaultThreads } from '../../src/runtime/pool.js';
import type { FromWorker, GenerateRequest, ModelChoice, ModelInfo, PolicyChoice, ToWorker, TokenEvent } from './protocol.js';

interface PageState {
  conformance: SuiteResult | null;
  /** kernel calls the thread pool split, as of the last conformance run or generation */
  threadJobs: number;
  model: ModelInfo | null;
  /** what the heatmap shows: prompt positions (once the generation is done), then generated tokens */
  tokens: TokenEvent[];
  traceJson: string | null;
  finishReason: string | null;
  error: string | null;
}
const state: PageState = { threadJobs: 0, conformance: null, model: null, tokens: [], traceJson: null, finishReason: null, error: null };
(window as unknown as { ponderPage: PageState }).ponderPage = state;

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const statusEl = $('status'), tokensEl = $('tokens'), legendEl = $('legend'), summaryEl = $('summary'), conformEl = $('conformance');
const modelSelect = $<HTMLSelectElement>('model'), folderInput = $<HTMLInputElement>('folder');
$<HTMLTextAreaElement>('prompt').value = DEFAULT_PROMPT;

function setStatus(text: string, isError = false): void {
  statusEl.textContent = text;
  statusEl.classList.toggle('error', isError);
}

const isolationNote = crossOriginIsolated ? '' :
  'This page is not cross-origin isolated (no COOP/COEP headers), so WebAssembly shared memory is unavailable: running on the slower scalar TypeScript kernels. `npm run serve:web` sends the headers.';
const isolationEl = $('isolation');
isolationEl.textContent = isolationNote;
isolationEl.hidden = isolationNote === '';

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const send = (message: ToWorker): void => worker.postMessage(message);

// ---- heatmap ----

function swatch(depth: number, fullDepth: number, label: string): string {
  const bg = depthRgb(depth, fullDepth);
  return `<span class="sw" style="background:${rgbHex(bg)};color:${rgbHex(textRgbOn(bg))}">${escapeHtml(label)}</span>`;
}

function paintLegend(fullDepth: number): void {
  const depths = fullDepth <= 16 ? Array.from({ length: fullDepth + 1 }, (_, d) => d)
    : Array.from({ length: DEPTH_STOPS.length }, (_, i) => Math.round((i * fullDepth) / (DEPTH_STOPS.length - 1)));
  legendEl.innerHTML = `depth&nbsp;${depths.map((d) => swatch(d, fullDepth, String(d))).join('')}<span class="caption">steps used per token, of ${fullDepth}; lighter = fewer</span>`;
}

function tokenSpan(t: TokenEvent): HTMLSpanElement {
  const bg = depthRgb(Math.min(t.steps, t.maxSteps), Math.max(1, t.maxSteps));
  const span = document.createElement('span');
  span.className = t.phase === 'prefill' ? 'tok prompt' : 'tok';
  span.style.background = rgbHex(bg);
  span.style.color = rgbHex(textRgbOn(bg));
  span.textContent = t.text === '' ? `⟨${t.id}⟩` : t.text;
  span.title = `#${t.index} id ${t.id}${t.phase === 'prefill' ? ' (prompt)' : ''}\ndepth ${t.steps}/${t.maxSteps}, exit: ${t.exitReason}`;
  span.dataset.steps = String(t.steps);
  span.dataset.id = String(t.id);
  span.dataset.phase = t.phase;
  return span;
}

// ---- conformance table ----

function caseRow(r: CaseResult): string {
  const worst = r.tensors.reduce((m, t) => (Number.isFinite(t.maxAbsError) ? Math.max(m, t.maxAbsError) : m), 0);
  return `<tr><td class="${r.pass ? 'pass' : 'fail'}">${r.pass ? 'PASS' : 'FAIL'}</td><td>${escapeHtml(r.name)}</td>`
    + `<td>${r.error ? escapeHtml(r.error.split('\n')[0]) : `${r.tensors.length} tensors`}</td><td>${r.error ? '' : worst.toExponential(2)}</td><td>${r.seconds.toFixed(2)} s</td></tr>`;
}

let caseRows: string[] = [];
function paintConformance(done: SuiteResult | null): void {
  const head = '<tr><th></th><th>case</th><th>tensors</th><th>max error</th><th>time</th></tr>';
  const totals = done ? `<p><b>${done.passed} passed, ${done.failed} failed</b> (${escapeHtml(done.kernels)}) — tensor digest <code>${done.digest}</code></p>` : '';
  conformEl.innerHTML = `${totals}<table class="cases">${head}${caseRows.join('')}</table>`;
}

// ---- worker messages ----

worker.onmessage = (event: MessageEvent<FromWorker>) => {
  const m = event.data;
  switch (m.type) {
    case 'status': setStatus(m.text); break;
    case 'case': caseRows.push(caseRow(m.result)); paintConformance(null); break;
    case 'conform-done':
      state.conformance = m.result;
      state.threadJobs = m.threadJobs;
      paintConformance(m.result);
      conformEl.dataset.state = 'done';
      setStatus(`conformance: ${m.result.passed} passed, ${m.result.failed} failed`);
      break;
    case 'model': {
      state.model = m.info;
      fillPolicies(m.info);
      paintLegend(Math.max(1, m.info.defaultDepth));
      modelInfoEl.textContent = `${m.info.family}, full depth ${m.info.defaultDepth}, kernels ${m.info.kernels}`;
      generateButton.disabled = false;
      policySelect.dataset.state = 'ready';
      break;
    }
    case 'token':
      if (state.tokens.length === 0) paintLegend(Math.max(1, m.token.maxSteps));
      state.tokens.push(m.token);
      tokensEl.append(tokenSpan(m.token));
      setStatus(`generating… ${state.tokens.length} tokens`);
      break;
    case 'generate-done': {
      // The prompt's depths are known once the prefill ran; they go in front, underlined.
      tokensEl.prepend(...m.prompt.map(tokenSpan));
      state.tokens = [...m.prompt, ...state.tokens];
      state.traceJson = m.traceJson;
      state.finishReason = m.finishReason;
      state.threadJobs = m.threadJobs;
      summaryEl.textContent = m.summary;
      if (traceUrl) URL.revokeObjectURL(traceUrl);
      traceUrl = URL.createObjectURL(new Blob([renderTraceHtml(parseTraceJSON(m.traceJson))], { type: 'text/html' }));
      traceLink.href = traceUrl;
      traceLink.hidden = false;
      tokensEl.dataset.state = 'done';
      generateButton.disabled = false;
      stopButton.disabled = true;
      setStatus(`done (${m.finishReason})`);
      break;
    }
    case 'error':
      state.error = m.message;
      setStatus(m.message, true);
      tokensEl.dataset.state = tokensEl.dataset.state === 'running' ? 'error' : tokensEl.dataset.state;
      generateButton.disabled = state.model === null;
      stopButton.disabled = true;
      if (policySelect.dataset.state === 'loading') policySelect.dataset.state = 'error';
      conformEl.dataset.state = conformEl.dataset.state === 'running' ? 'error' : conformEl.dataset.state;
      break;
  }
};
worker.onerror = (e) => { state.error = e.message; setStatus(`worker error: ${e.message}`, true); };

// ---- controls ----

const policySelect = $<HTMLSelectElement>('policy'), stepsInput = $<HTMLInputElement>('steps'), thresholdInput = $<HTMLInputElement>('threshold');
const generateButton = $<HTMLButtonElement>('generate'), stopButton = $<HTMLButtonElement>('stop'), modelInfoEl = $('modelInfo'), traceLink = $<HTMLAnchorElement>('traceLink');
let traceUrl: string | null = null;
let policies: PolicyChoice[] = [];

function fillPolicies(info: ModelInfo): void {
  const previous = policySelect.value;
  policies = info.policies;
  policySelect.innerHTML = policies.map((p) => `<option value="${escapeHtml(p.template)}">${escapeHtml(p.label)}</option>`).join('');
  // Keep the user's choice when the new model supports it; the default model starts with the policy
  // it is paired with (src/defaults.ts); otherwise the first policy with a threshold shows depth best.
  const paired = info.label === DEFAULT_MODEL && previous === '' ? pairedPolicy() : null;
  const keep = policies.find((p) => p.template === previous) ?? policies.find((p) => p.template === paired?.template)
    ?? policies.find((p) => p.threshold !== undefined) ?? policies[0];
  if (keep) policySelect.value = keep.template;
  stepsInput.value = String(info.defaultDepth);
  onPolicyChange();
  if (paired && keep?.template === paired.template) thresholdInput.value = String(paired.threshold);
}

/** DEFAULT_MODEL_POLICY as the page's template and threshold, e.g. exit(latent-diff, {T}) and 0.1. */
function pairedPolicy(): { template: string; threshold: number } | null {
  const p = parsePolicy(DEFAULT_MODEL_POLICY);
  return p.kind === 'exit' && typeof p.threshold === 'number' ? { template: `exit(${p.criterion}, {T})`, threshold: p.threshold } : null;
}

function onPolicyChange(): void {
  const p = policies.find((c) => c.template === policySelect.value);
  stepsInput.disabled = !p?.template.includes('{N}');
  thresholdInput.disabled = !p?.template.includes('{T}');
  if (p?.threshold !== undefined) thresholdInput.value = String(p.threshold);
}
policySelect.addEventListener('change', onPolicyChange);

function policySpelling(): string {
  const template = policySelect.value;
  return template.replace('{N}', String(Math.max(1, Math.floor(Number(stepsInput.value))))).replace('{T}', thresholdInput.value.trim() === '' ? 'auto' : String(Number(thresholdInput.value)));
}

const threadsInput = $<HTMLInputElement>('threads');
threadsInput.value = String(defaultThreads(navigator.hardwareConcurrency)); // one per core, at most 8
let currentChoice: ModelChoice | null = null;

/** Loads `choice` on a runtime with the threads the control asks for (the files are copied, so a reload can reuse them). */
function loadModelChoice(choice: ModelChoice): void {
  currentChoice = choice;
  state.model = null;
  generateButton.disabled = true;
  policySelect.dataset.state = 'loading';
  modelInfoEl.textContent = '';
  send({ type: 'load', model: choice, threads: Math.min(16, Math.max(1, Math.floor(Number(threadsInput.value)) || 1)) });
}
threadsInput.addEventListener('change', () => { if (currentChoice) loadModelChoice(currentChoice); });

async function loadModelList(): Promise<void> {
  const r = await fetch('/models/index.json');
  const models = r.ok ? ((await r.json()) as Array<{ name: string }>) : [];
  modelSelect.innerHTML = models.map((m) => `<option value="${escapeHtml(m.name)}">${escapeHtml(m.name)}</option>`).join('');
  if (models.length === 0) { setStatus('no bundled model is served; pick a local model folder', true); return; }
  // The trained model writes prose (src/defaults.ts); without it, the Ouro demo's exit gate gives the most varied depths.
  modelSelect.value = [DEFAULT_MODEL, 'demo-ouro'].find((name) => models.some((m) => m.name === name)) ?? models[0].name;
  loadModelChoice({ kind: 'bundled', name: modelSelect.value });
}

modelSelect.addEventListener('change', () => {
  if (modelSelect.value !== '') loadModelChoice({ kind: 'bundled', name: modelSelect.value });
});

folderInput.addEventListener('change', async () => {
  const list = [...(folderInput.files ?? [])];
  if (list.length === 0) return;
  const files: Record<string, ArrayBuffer> = {};
  // webkitRelativePath is "<folder>/<path>"; the model sees paths relative to the folder.
  for (const f of list) files[f.webkitRelativePath.split('/').slice(1).join('/') || f.name] = await f.arrayBuffer();
  const label = list[0].webkitRelativePath.split('/')[0] || 'local folder';
  modelSelect.querySelector('option[value=""]')?.remove();
  modelSelect.insertAdjacentHTML('afterbegin', `<option value="" selected>${escapeHtml(label)} (local)</option>`);
  modelSelect.value = '';
  loadModelChoice({ kind: 'files', label, files });
});

generateButton.disabled = true;
generateButton.addEventListener('click', () => {
  state.tokens = [];
  state.traceJson = null;
  state.finishReason = null;
  state.error = null;
  tokensEl.replaceChildren();
  summaryEl.textContent = '';
  traceLink.hidden = true;
  tokensEl.dataset.state = 'running';
  generateButton.disabled = true;
  const request: GenerateRequest = {
    prompt: $<HTMLTextAreaElement>('prompt').value,
    policy: policySpelling(),
    maxNewTokens: Math.max(1, Math.floor(Number($<HTMLInputElement>('maxNewTokens').value))),
    temperature: Number($<HTMLInputElement>('temperature').value),
    seed: Math.floor(Number($<HTMLInputElement>('seed').value)),
  };
  setStatus(`generating with ${request.policy}…`);
  stopButton.disabled = false;
  send({ type: 'generate', request });
});

stopButton.addEventListener('click', () => {
  stopButton.disabled = true;
  send({ type: 'stop' });
});

$('conform').addEventListener('click', () => {
  caseRows = [];
  state.conformance = null;
  conformEl.dataset.state = 'running';
  paintConformance(null);
  send({ type: 'conform' });
});

await loadModelList();
