/**
 * Load test of `ponder serve` (issue 15), loopback only and bounded (500 requests, 10 minutes at
 * most): the real CLI (bin/ponder.js, build first) serves models/ouro-sotu (a trained model; --model NAME
 * for another folder of models/); 50 concurrent
 * streaming clients send 500 seeded requests in all (random prompts, lengths, temperatures and
 * depth policies), and about one in six disconnects after a few chunks. Then it checks:
 *
 * - every completed response equals the same request run alone afterwards (text, per-token depths);
 * - every disconnect freed its turn: the server logged each one as stopped early (or never
 *   started it), nothing is left running or waiting, and every other request completed or got 429;
 * - requests beyond the line's capacity got 429 with Retry-After;
 * - the server's RSS after the run is within 10 % of its RSS before.
 *
 * RSS "before" is taken after a warm-up round of as many other requests.
 *
 * It prints requests/s, time to first token (p50/p99) and tokens/s under load, and tokens/s and
 * time to first token of one client alone (the reruns), with the CPU model and `uptime` before and
 * after. Exit 1 when a check fails.
 *
 *   npm run build && node --import tsx bench/serve-load.ts [--requests 500] [--clients 50] [--queue 16] [--model ouro-sotu] [--log FILE]
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { execSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';

const { values } = parseArgs({ options: { requests: { type: 'string' }, clients: { type: 'string' }, queue: { type: 'string' }, log: { type: 'string' }, model: { type: 'string' } } });
const REQUESTS = Number(values.requests ?? 500);
const CLIENTS = Number(values.clients ?? 50);
const QUEUE = Number(values.queue ?? 16);
const DEADLINE_MS = 10 * 60_000;
const MODEL = values.model ?? 'ouro-sotu';

interface Spec { prompt: string; max_tokens: number; temperature: number; seed: number; policy: string; disconnectAfter: number | null }
interface Outcome { spec: Spec; status: 'completed' | 'disconnected' | 'rejected' | 'failed'; text: string; steps: number[]; tokens: number; ttftMs: number | null; error?: string; retryAfter?: string | null }

/** A deterministic mix of requests (mulberry32 from a fixed seed), so runs are comparable. */
function specs(n: number): Spec[] {
  let a = 0x5eed;
  const rand = (): number => { a |= 0; a = (a + 0x6d2b79f5) | 0; let t = Math.imul(a ^ (a >>> 15), 1 | a); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const prompts = ['Once upon a time', 'The recursive model', 'def fib(n):', 'In the beginning', 'Q: why loop?\nA:'];
  const policies = ['default', 'exit(gate, 0.5)', 'fixed(2)', 'exit(kl, 1e-3)'];
  return Array.from({ length: n }, () => ({
    prompt: prompts[Math.floor(rand() * prompts.length)],
    max_tokens: 8 + Math.floor(rand() * 57),
    temperature: [0, 0.7, 1][Math.floor(rand() * 3)],
    seed: Math.floor(rand() * 2 ** 32),
    policy: policies[Math.floor(rand() * policies.length)],
    disconnectAfter: rand() < 1 / 6 ? 1 + Math.floor(rand() * 4) : null,
  }));
}

async function run(client: OpenAI, spec: Spec): Promise<Outcome> {
  const controller = new AbortController();
  const start = performance.now();
  const out: Outcome = { spec, status: 'completed', text: '', steps: [], tokens: 0, ttftMs: null };
  try {
    const { disconnectAfter: _, ...body } = spec;
    const stream = await client.completions.create({ model: MODEL, ...body, stream: true } as OpenAI.CompletionCreateParamsStreaming, { signal: controller.signal });
    let chunks = 0;
    for await (const chunk of stream) {
      const choice = chunk.choices[0] as (typeof chunk.choices)[0] & { depth?: { steps: number[] } };
      if (choice.finish_reason) break;
      out.ttftMs ??= performance.now() - start;
      out.text += choice.text;
      out.steps.push(...(choice.depth?.steps ?? []));
      out.tokens++;
      if (spec.disconnectAfter !== null && ++chunks >= spec.disconnectAfter) { controller.abort(); out.status = 'disconnected'; break; }
    }
  } catch (e) {
    if (out.status === 'disconnected') return out;
    if (e instanceof OpenAI.APIError && e.status === 429) { out.status = 'rejected'; out.retryAfter = e.headers?.get('retry-after') ?? null; return out; }
    out.status = 'failed';
    out.error = String(e);
  }
  return out;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
}

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(/(\d+)/.exec(line)![1]) * 1024;
}

const uptimeBefore = execSync('uptime').toString().trim();
const server = spawn(process.execPath, ['bin/ponder.js', 'serve', '--model', `models/${MODEL}`, '--port', '0', '--queue', String(QUEUE)], { stdio: ['ignore', 'ignore', 'pipe'] });
process.on('exit', () => server.kill('SIGKILL')); // never leave the server behind
let log = '';
const url = await new Promise<string>((resolve, reject) => {
  server.stderr!.on('data', (d: Buffer) => {
    log += d.toString();
    const found = /listening on (\S+)/.exec(log)?.[1];
    if (found && log.includes('ready: ')) resolve(found);
  });
  server.on('exit', (code) => reject(new Error(`ponder serve exited ${code}:\n${log}`)));
});
const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: DEADLINE_MS });
const failures: string[] = [];
const check = (ok: boolean, what: string): void => { if (!ok) failures.push(what); };
const deadline = setTimeout(() => { console.error('deadline passed: stopping'); server.kill('SIGKILL'); process.exit(1); }, DEADLINE_MS);

// warm-up: the same mix at the same concurrency, so "before" includes compiled code, heap and the
// KV caches a full line needs (RSS is compared after it, to see growth with the number of requests)
const rssReady = rssBytes(server.pid!);
/** CLIENTS clients sending `batch` between them; after a 429 a client waits as long as Retry-After says. */
async function load(batch: Spec[]): Promise<Outcome[]> {
  let next = 0;
  const outcomes: Outcome[] = [];
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (next < batch.length) {
      const outcome = await run(client, batch[next++]);
      outcomes.push(outcome);
      if (outcome.status === 'rejected') await new Promise((r) => setTimeout(r, Number(outcome.retryAfter ?? 1) * 1000));
    }
  }));
  return outcomes;
}
// warm-up: a whole round of other requests of the same mix at the same concurrency, so "before"
// includes what a loaded server holds anyway (compiled code, the V8 heap's working size, socket
// buffers, the KV caches of a full line); the RSS check then looks for growth with the number served
await load(specs(2 * REQUESTS).slice(REQUESTS));
const rssBefore = rssBytes(server.pid!);
const all = specs(REQUESTS);
const logStart = log.length;
const t0 = performance.now();
const outcomes = await load(all);
const loadMs = performance.now() - t0;
await new Promise((r) => setTimeout(r, 200)); // the last disconnects reach the server
const health = await (await fetch(`${url}/health`)).json() as { queue: { running: number; waiting: number } };
const rssAfter = rssBytes(server.pid!);

// each completed request again, alone
const completed = outcomes.filter((o) => o.status === 'completed');
const aloneTtft: number[] = [];
let aloneTokens = 0;
const ta = performance.now();
for (const o of completed) {
  const alone = await run(client, { ...o.spec, disconnectAfter: null });
  aloneTtft.push(alone.ttftMs ?? NaN);
  aloneTokens += alone.tokens;
  check(alone.text === o.text && JSON.stringify(alone.steps) === JSON.stringify(o.steps), `request ${JSON.stringify(o.spec)} under load differs from the same request alone`);
}
const aloneMs = performance.now() - ta;

server.kill('SIGTERM');
const code = await new Promise<number | null>((r) => server.on('exit', (c) => r(c)));
clearTimeout(deadline);
const uptimeAfter = execSync('uptime').toString().trim();

const by = (s: Outcome['status']): Outcome[] => outcomes.filter((o) => o.status === s);
const disconnected = by('disconnected'), rejected = by('rejected'), failed = by('failed');
const loadLog = log.slice(logStart);
const stoppedEarly = [...loadLog.matchAll(/client disconnected after (\d+) tokens/g)].length;
const neverStarted = [...loadLog.matchAll(/ 499 \d+ ms \(client disconnected\)/g)].length;
check(outcomes.length === REQUESTS, `${outcomes.length} outcomes for ${REQUESTS} requests`);
check(failed.length === 0, `failed requests: ${failed.map((f) => f.error).slice(0, 3).join('; ')}`);
check(health.queue.running === 0 && health.queue.waiting === 0, `after the run the queue holds ${JSON.stringify(health.queue)}`);
check(stoppedEarly + neverStarted <= disconnected.length && stoppedEarly > 0, `disconnects: ${disconnected.length} by clients, ${stoppedEarly} stopped early and ${neverStarted} dropped from the line by the server`);
check(rejected.length > 0 && rejected.every((r) => Number(r.retryAfter) >= 1), `${rejected.length} requests got 429, each with Retry-After ≥ 1`);
check(Math.abs(rssAfter - rssBefore) <= 0.1 * rssBefore, `RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB before, ${(rssAfter / 2 ** 20).toFixed(1)} MiB after`);
check(code === 0, `ponder serve exited ${code} after SIGTERM`);

const ttft = outcomes.filter((o) => o.ttftMs !== null && o.status === 'completed').map((o) => o.ttftMs!);
const loadTokens = outcomes.reduce((s, o) => s + o.tokens, 0);
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
console.log(`ponder serve load test — ${MODEL}, ${CLIENTS} streaming clients, ${REQUESTS} requests, queue ${QUEUE}`);
console.log(`CPU: ${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}; node ${process.version}`);
console.log(`uptime before: ${uptimeBefore}`);
console.log(`uptime after:  ${uptimeAfter}`);
console.log(`outcomes: ${completed.length} completed, ${disconnected.length} disconnected by the client (${stoppedEarly} stopped early by the server, ${neverStarted} dropped while waiting), ${rejected.length} got 429, ${failed.length} failed`);
console.log(`under load: ${(completed.length / (loadMs / 1000)).toFixed(1)} completed requests/s, ${((completed.length + disconnected.length + rejected.length) / (loadMs / 1000)).toFixed(1)} answered requests/s; time to first token p50 ${percentile(ttft, 50).toFixed(0)} ms, p99 ${percentile(ttft, 99).toFixed(0)} ms; ${(loadTokens / (loadMs / 1000)).toFixed(0)} tokens/s streamed`);
console.log(`one client alone (the ${completed.length} completed requests again, one after another): ${(aloneTokens / (aloneMs / 1000)).toFixed(0)} tokens/s; time to first token p50 ${percentile(aloneTtft, 50).toFixed(0)} ms, p99 ${percentile(aloneTtft, 99).toFixed(0)} ms`);
console.log(`server RSS: ${mib(rssReady)} when ready, ${mib(rssBefore)} after a warm-up round of ${REQUESTS} other requests (= before the load), ${mib(rssAfter)} after the load (${(((rssAfter - rssBefore) / rssBefore) * 100).toFixed(1)} %)`);
console.log(failures.length ? `FAIL\n  ${failures.join('\n  ')}` : 'PASS: every completed response equals the same request alone; every disconnect freed its turn; 429 with Retry-After beyond the line; RSS within 10 %');
if (values.log) writeFileSync(values.log, log); // the server's own log lines, one per request
process.exit(failures.length ? 1 : 0);
