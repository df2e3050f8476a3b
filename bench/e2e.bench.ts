/**
 * End-to-end speed through the public API: for every bundled demo model and every depth policy its
 * family runs, prefill tokens/s (a 32-token prompt) and decode tokens/s (32 generated tokens), with
 * the depth the policy used. Timings are the API's own (trace.prefillMs / trace.decodeMs), medians
 * over the iterations tinybench runs.
 *
 *   node --import tsx bench/e2e.bench.ts [--quick] [--json]      or      ponder bench e2e
 *
 * The demo models are tiny (hidden 48–64), so these figures measure per-token overhead (API,
 * sampling, traces, kernel-call overhead) as much as arithmetic; see bench/{huginn,mor,ouro}.bench.ts
 * for realistic shapes.
 */
import { Bench } from 'tinybench';
import { loadModelDir } from '../src/node/index.js';
import { budget, exit, fixed, router, describePolicy, type DepthPolicy } from '../src/api/index.js';
import type { Runtime } from '../src/runtime/runtime.js';

export interface E2eRow {
  model: string;
  policy: string;
  promptTokens: number;
  newTokens: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  meanDepth: number;
  fullDepth: number;
  computeSaved: number;
  samples: number;
}

export const E2E_PLAN: Record<string, DepthPolicy[]> = {
  'demo-huginn': [{ kind: 'default' }, fixed(4), exit('kl', 5e-4), exit('entropy-diff', 'auto'), budget(128, exit('kl', 5e-4))],
  'demo-mor': [{ kind: 'default' }, router('causal', 0.5), fixed(1), exit('kl', 1e-3)],
  'demo-ouro': [{ kind: 'default' }, fixed(2), exit('gate', 0.5), exit('gate', 0.5, { mode: 'select' }), exit('kl', 0.3)],
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export async function runE2eBench(options: { modelsDir: string; quick?: boolean; createRuntime?: () => Promise<Runtime>; onRow?: (row: E2eRow) => void }): Promise<E2eRow[]> {
  const rows: E2eRow[] = [];
  const promptIds = Array.from({ length: 32 }, (_, i) => (7 * i + 3) % 90 + 1);
  const newTokens = 32;
  for (const [name, policies] of Object.entries(E2E_PLAN)) {
    const runtime = options.createRuntime ? await options.createRuntime() : undefined;
    const model = await loadModelDir(`${options.modelsDir}/${name}`, runtime ? { runtime } : {});
    for (const policy of policies) {
      const prefill: number[] = [];
      const decode: number[] = [];
      let last = null as Awaited<ReturnType<ReturnType<typeof model.generate>['result']>> | null;
      const bench = new Bench({ time: options.quick ? 150 : 1000, warmupTime: options.quick ? 50 : 200, iterations: 3 });
      bench.add(`${name} ${describePolicy(policy)}`, async () => {
        last = await model.generate(promptIds, { maxNewTokens: newTokens, policy, stopIds: [] }).result();
        prefill.push(last.trace.prefillMs ?? 0);
        decode.push(last.trace.decodeMs);
      });
      await bench.run();
      const row: E2eRow = {
        model: name, policy: describePolicy(policy), promptTokens: promptIds.length, newTokens,
        prefillTokensPerSecond: (promptIds.length * 1000) / median(prefill),
        decodeTokensPerSecond: (newTokens * 1000) / median(decode),
        meanDepth: last!.summary.meanDepth, fullDepth: last!.summary.fullDepth, computeSaved: last!.summary.computeSaved,
        samples: prefill.length,
      };
      rows.push(row);
      options.onRow?.(row);
    }
  }
  return rows;
}

export function e2eHeader(): string {
  return `${'model'.padEnd(13)}${'policy'.padEnd(34)}${'prefill tok/s'.padStart(14)}${'decode tok/s'.padStart(14)}${'depth'.padStart(12)}${'saved'.padStart(8)}${'n'.padStart(5)}\n`;
}

export function e2eLine(r: E2eRow): string {
  return `${r.model.padEnd(13)}${r.policy.padEnd(34)}${r.prefillTokensPerSecond.toFixed(0).padStart(14)}${r.decodeTokensPerSecond.toFixed(0).padStart(14)}`
    + `${`${r.meanDepth.toFixed(2)}/${r.fullDepth}`.padStart(12)}${`${(100 * r.computeSaved).toFixed(0)}%`.padStart(8)}${String(r.samples).padStart(5)}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const json = process.argv.includes('--json');
  if (!json) process.stdout.write(e2eHeader());
  const rows = await runE2eBench({ modelsDir: new URL('../models', import.meta.url).pathname, quick: process.argv.includes('--quick'), onRow: json ? undefined : (r) => process.stdout.write(e2eLine(r)) });
  if (json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
}
