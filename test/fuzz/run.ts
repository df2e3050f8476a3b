/**
 * The fuzzer (`npm run fuzz -- --cases N [--seed S]`): seeded mutations of every bundled model's
 * config.json, model.safetensors, tokenizer.json and generation_config.json, of trace JSON, of chat
 * templates, of the MoR release's PyTorch checkpoint and of `ponder serve` request bodies
 * (test/fuzz/cases.ts), each case's commands run in-process in a worker (`inspect` and a 2-token
 * `run` for a model; `trace --html`; chat rendering; `convert mor` then `inspect` and `run`; the
 * request posted to the server core) under a time and a memory budget.
 *
 * A case fails on a crash (an exception out of the CLI, a worker that dies), a hang (over the time
 * budget: the worker is killed), a stack trace, INTERNAL, an error code spec/errors.md does not
 * list, a broken error contract (no hint, stdout on error) or memory over the budget. Each failure
 * prints its seed and the command that reproduces it alone:
 *
 *   npm run fuzz -- --seed 7 --case 1234 --save /tmp/case-1234    # its files stay in /tmp/case-1234
 *
 * `--target T` makes every case mutate one target (config.json, model.safetensors, tokenizer.json,
 * generation_config.json, trace, chat, pytorch, serve).
 *
 * The report gives the outcome counts, every error code seen (with counts) and the slowest case.
 * `npm test` runs a short seeded run (test/fuzz.test.ts); `--cases 5000` is the release check.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT, TARGET_NAMES, type Target } from './cases.js';
import type { CaseOutcome, FromWorker, ToWorker } from './worker.js';

export interface FuzzOptions {
  readonly seed: number;
  /** cases 0..cases-1 (unless `only`) */
  readonly cases: number;
  /** run only these case indices */
  readonly only?: readonly number[];
  /** every case mutates this target (default: each case picks one, weighted) */
  readonly target?: Target;
  /** a case's commands together may take this long (a hang otherwise): wall time, on a shared machine */
  readonly timeBudgetMs?: number;
  /** the worker's resident memory may not pass this while a case runs */
  readonly memoryBudgetMb?: number;
  /** keep the (single) case's files in this directory */
  readonly save?: string;
  /** stops the run after the case in flight; the report covers the cases completed */
  readonly stop?: AbortSignal;
  /** called after each case (progress) */
  readonly onCase?: (outcome: CaseOutcome, failures: readonly Failure[]) => void;
}

export interface Failure {
  readonly index: number;
  readonly target: string;
  readonly mutation: string;
  readonly kind: 'crash' | 'hang' | 'stack trace' | 'INTERNAL' | 'unlisted code' | 'contract' | 'memory';
  readonly detail: string;
  readonly reproduce: string;
}

export interface FuzzReport {
  readonly seed: number;
  /** cases completed */
  readonly cases: number;
  /** cases asked for (more than `cases` when the run was stopped) */
  readonly requested: number;
  readonly commands: number;
  /** commands that ended with exit 0 */
  readonly accepted: number;
  /** commands that ended with a typed error, by code */
  readonly codes: Record<string, number>;
  readonly failures: Failure[];
  readonly slowest: { index: number; target: string; mutation: string; ms: number } | null;
  readonly peakRssMb: number;
  readonly seconds: number;
}

/** Codes listed in spec/errors.md (first column of its tables). */
export function documentedCodes(): Set<string> {
  const out = new Set<string>();
  for (const line of readFileSync(join(ROOT, 'spec', 'errors.md'), 'utf8').split('\n')) {
    const first = /^\|([^|]*)\|/.exec(line)?.[1] ?? '';
    for (const m of first.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) out.add(m[1]);
  }
  return out;
}

/** The HTTP-level codes of spec/serve.md's error table (its third column), which serve cases report as `serve:<code>`. */
export function documentedServeCodes(): Set<string> {
  const out = new Set<string>();
  const text = readFileSync(join(ROOT, 'spec', 'serve.md'), 'utf8');
  const table = text.slice(text.indexOf('## Errors'));
  for (const line of table.split('\n')) {
    const cells = line.split('|');
    if (cells.length < 5) continue;
    for (const m of cells[3].matchAll(/`([a-z][a-z_]*)`/g)) out.add(`serve:${m[1]}`);
  }
  return out;
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Cases the worker runs before it is replaced by a fresh one (a small heap baseline for the memory budget). */
const CASES_PER_WORKER = 200;
/** The worker is killed past this, whatever the budget: a runaway allocation must not take the machine down. */
const HARD_MEMORY_MB = 3000;

class Worker {
  readonly child: ChildProcess;
  private listener: ((m: FromWorker) => void) | null = null;
  private exited: ((why: string) => void) | null = null;
  casesRun = 0;

  private constructor(child: ChildProcess) {
    this.child = child;
    child.on('message', (m: FromWorker) => this.listener?.(m));
    child.on('exit', (code, signal) => this.exited?.(`the worker exited (${signal ?? `code ${code}`})`));
  }

  static async start(): Promise<Worker> {
    const child = fork(fileURLToPath(new URL('worker.ts', import.meta.url)), [], {
      execArgv: ['--import', 'tsx', '--expose-gc', '--max-old-space-size=2048', '--stack-size=984'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      cwd: ROOT,
      detached: true, // its own process group: a Ctrl-C meant for the run (which then stops cleanly) does not kill the case in flight
    });
    let stderr = '';
    child.stderr!.on('data', (d) => { if (stderr.length < 10_000) stderr += d; });
    const w = new Worker(child);
    await new Promise<void>((resolve, reject) => {
      w.listener = (m) => { if (m.type === 'ready') resolve(); };
      w.exited = (why) => reject(new Error(`fuzz worker did not start: ${why}\n${stderr}`));
    });
    return w;
  }

  /** Runs one case; resolves with its outcome, or with why it did not finish (hang, crash, memory). */
  run(message: ToWorker, timeBudgetMs: number): Promise<{ outcome: CaseOutcome | null; failure: string | null; kind?: Failure['kind']; peakMb: number; described: { target: string; mutation: string } | null }> {
    this.casesRun++;
    return new Promise((resolve) => {
      let peakMb = 0;
      let timer: NodeJS.Timeout | null = null;
      let described: { target: string; mutation: string } | null = null;
      let running: readonly string[] = [];
      const sampler = setInterval(() => {
        const mb = rssMb(this.child.pid!);
        peakMb = Math.max(peakMb, mb);
        if (mb > HARD_MEMORY_MB) finish(null, `resident memory ${mb.toFixed(0)} MB, over the hard limit of ${HARD_MEMORY_MB} MB (killed)`, 'memory');
      }, 20);
      const finish = (outcome: CaseOutcome | null, failure: string | null, kind?: Failure['kind']): void => {
        clearInterval(sampler);
        if (timer) clearTimeout(timer);
        this.listener = null;
        this.exited = null;
        if (failure !== null && this.child.exitCode === null) this.child.kill('SIGKILL');
        resolve({ outcome, failure, kind, peakMb, described });
      };
      this.listener = (m) => {
        if (m.type === 'start') {
          described = { target: m.target, mutation: m.mutation };
          timer = setTimeout(() => finish(null, `no result after ${timeBudgetMs} ms (killed) in: ponder ${running.join(' ')}`, 'hang'), timeBudgetMs);
        } else if (m.type === 'step') {
          running = m.argv;
        } else if (m.type === 'done') {
          peakMb = Math.max(peakMb, rssMb(this.child.pid!));
          finish(m.outcome, null);
        }
      };
      this.exited = (why) => finish(null, why, 'crash');
      this.child.send(message);
    });
  }

  stop(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

function reproduce(seed: number, index: number, target: Target | undefined): string {
  return `npm run fuzz -- --seed ${seed} --case ${index}${target ? ` --target ${target}` : ''} --save /tmp/ponder-fuzz-${seed}-${index}`;
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const t0 = performance.now();
  const timeBudgetMs = o.timeBudgetMs ?? 20_000;
  const memoryBudgetMb = o.memoryBudgetMb ?? 500;
  const documented = new Set([...documentedCodes(), ...documentedServeCodes()]);
  const indices = o.only ?? Array.from({ length: o.cases }, (_, i) => i);
  const codes: Record<string, number> = {};
  const failures: Failure[] = [];
  let commands = 0, accepted = 0, peakRssMb = 0;
  let slowest: FuzzReport['slowest'] = null;
  let worker: Worker | null = null;
  let completed = 0;
  try {
    for (const index of indices) {
      if (o.stop?.aborted) break;
      if (!worker || worker.child.exitCode !== null || worker.casesRun >= CASES_PER_WORKER) {
        worker?.stop();
        worker = await Worker.start();
      }
      const r = await worker.run({ type: 'case', seed: o.seed, index, target: o.target, save: o.save }, timeBudgetMs);
      peakRssMb = Math.max(peakRssMb, r.peakMb);
      const caseFailures: Failure[] = [];
      const fail = (kind: Failure['kind'], detail: string, target = r.outcome?.target ?? '?', mutation = r.outcome?.mutation ?? '?'): void => {
        caseFailures.push({ index, target, mutation, kind, detail, reproduce: reproduce(o.seed, index, o.target) });
      };
      if (r.outcome === null) {
        fail(r.kind ?? 'crash', r.failure ?? 'no result', r.described?.target ?? '?', r.described?.mutation ?? '?');
        worker = null;
      } else {
        const out = r.outcome;
        if (!slowest || out.ms > slowest.ms) slowest = { index, target: out.target, mutation: out.mutation, ms: out.ms };
        if (r.peakMb > memoryBudgetMb) fail('memory', `resident memory peaked at ${r.peakMb.toFixed(0)} MB, over the ${memoryBudgetMb} MB budget`);
        for (const s of out.steps) {
          commands++;
          if (s.exit === 0) accepted++;
          if (s.code !== null) codes[s.code] = (codes[s.code] ?? 0) + 1;
          const cmd = `ponder ${s.argv.join(' ')}`;
          if (s.exit === -1) fail('crash', `${cmd}: ${s.firstLine}`);
          else if (s.code === 'INTERNAL') fail('INTERNAL', `${cmd}: ${s.firstLine}`);
          else if (s.problems.includes('stack trace on stderr')) fail('stack trace', `${cmd}: ${s.firstLine}`);
          else if (s.problems.length > 0) fail('contract', `${cmd}: ${s.problems.join(', ')}: ${s.firstLine}`);
          if (s.code !== null && s.code !== 'INTERNAL' && !documented.has(s.code)) fail('unlisted code', `${cmd}: ${s.code} is not in ${s.code.startsWith('serve:') ? "spec/serve.md's error table" : 'spec/errors.md'}`);
        }
      }
      failures.push(...caseFailures);
      completed++;
      if (r.outcome) o.onCase?.(r.outcome, caseFailures);
      else o.onCase?.({ index, target: r.described?.target ?? '?', mutation: r.described?.mutation ?? '?', steps: [], ms: 0 }, caseFailures);
    }
  } finally {
    worker?.stop();
  }
  return { seed: o.seed, cases: completed, requested: indices.length, commands, accepted, codes, failures, slowest, peakRssMb, seconds: (performance.now() - t0) / 1000 };
}

export function formatReport(r: FuzzReport): string {
  const lines: string[] = [];
  const byKind = new Map<string, number>();
  for (const f of r.failures) byKind.set(f.kind, (byKind.get(f.kind) ?? 0) + 1);
  const kinds: [Failure['kind'], string][] = [['crash', 'crashes'], ['hang', 'hangs'], ['stack trace', 'stack traces'], ['INTERNAL', 'INTERNAL'], ['unlisted code', 'unlisted codes'], ['contract', 'broken error contracts'], ['memory', 'over the memory budget']];
  lines.push(`fuzz seed ${r.seed}: ${r.cases} cases${r.cases < r.requested ? ` (stopped: ${r.requested} asked for)` : ''}, ${r.commands} commands in ${r.seconds.toFixed(1)} s`);
  lines.push(`  accepted (exit 0): ${r.accepted}; typed errors (exit 2): ${Object.values(r.codes).reduce((a, b) => a + b, 0)}`);
  lines.push(`  failures: ${r.failures.length} (${kinds.map(([k, label]) => `${byKind.get(k) ?? 0} ${label}`).join(', ')})`);
  lines.push(`  codes seen: ${Object.entries(r.codes).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ') || 'none'}`);
  if (r.slowest) lines.push(`  slowest case: #${r.slowest.index} (${r.slowest.target}: ${r.slowest.mutation}) ${(r.slowest.ms / 1000).toFixed(2)} s`);
  lines.push(`  peak resident memory of the worker: ${r.peakRssMb.toFixed(0)} MB`);
  for (const f of r.failures.slice(0, 50)) {
    lines.push(`FAIL #${f.index} [${f.kind}] ${f.target}: ${f.mutation}`);
    lines.push(`  ${f.detail}`);
    lines.push(`  reproduce: ${f.reproduce}`);
  }
  if (r.failures.length > 50) lines.push(`… and ${r.failures.length - 50} more failures`);
  return lines.join('\n');
}

function parseCli(argv: string[]): FuzzOptions & { json: boolean } {
  const value = (flag: string): string | undefined => { const i = argv.indexOf(flag); return i >= 0 ? argv[i + 1] : undefined; };
  const int = (flag: string, fallback: number): number => {
    const v = value(flag);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v)) throw new Error(`${flag} needs a non-negative integer, got ${v}`);
    return Number(v);
  };
  const known = ['--cases', '--seed', '--case', '--target', '--save', '--time-budget-ms', '--memory-budget-mb', '--json'];
  for (const a of argv) if (a.startsWith('--') && !known.includes(a)) throw new Error(`unknown flag ${a}; flags: ${known.join(' ')}`);
  const seed = int('--seed', Math.floor(Math.random() * 2 ** 31));
  const only = value('--case') !== undefined ? [int('--case', 0)] : undefined;
  const target = value('--target') as Target | undefined;
  if (target !== undefined && !TARGET_NAMES.includes(target)) throw new Error(`--target takes one of ${TARGET_NAMES.join(', ')}, got ${target}`);
  return { seed, cases: int('--cases', 200), only, target, save: value('--save'), timeBudgetMs: int('--time-budget-ms', 20_000), memoryBudgetMb: int('--memory-budget-mb', 500), json: argv.includes('--json') };
}

async function cli(): Promise<void> {
  let options;
  try {
    options = parseCli(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\nusage: npm run fuzz -- [--cases N] [--seed S] [--target T] [--case K [--save DIR]] [--time-budget-ms MS] [--memory-budget-mb MB] [--json]\n`);
    process.exitCode = 2;
    return;
  }
  let done = 0;
  const started = performance.now();
  const total = options.only?.length ?? options.cases;
  // Ctrl-C (or SIGTERM) stops after the case in flight and reports the cases completed; a second one ends at once
  const stop = new AbortController();
  const onSignal = (): void => {
    if (stop.signal.aborted) process.exit(130);
    stop.abort();
    process.stderr.write(`\nstopping after the case in flight (again to end at once)\n`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stderr.write(`fuzz: seed ${options.seed}, ${total} case${total === 1 ? '' : 's'}${options.target ? ` of ${options.target}` : ''}\n`);
  const report = await runFuzz({
    ...options,
    stop: stop.signal,
    onCase: (outcome, failures) => {
      done++;
      for (const f of failures) process.stderr.write(`\nFAIL #${f.index} [${f.kind}] ${f.target}: ${f.mutation}\n`);
      if (options.only) {
        process.stderr.write(`#${outcome.index} ${outcome.target}: ${outcome.mutation}\n`);
        for (const s of outcome.steps) process.stderr.write(`  ponder ${s.argv.join(' ')} → exit ${s.exit}${s.code ? ` ${s.code}` : ''} (${s.ms.toFixed(0)} ms)${s.firstLine && s.exit !== 0 ? `\n    ${s.firstLine}` : ''}\n`);
      } else if (done % 50 === 0 || done === total) process.stderr.write(`\r${done}/${total} cases (${Math.round((performance.now() - started) / 1000)} s)`);
    },
  });
  process.stderr.write('\n');
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
  process.exitCode = report.failures.length > 0 ? 1 : report.cases < report.requested ? 130 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await cli();
