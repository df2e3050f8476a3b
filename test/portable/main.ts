/**
 * The body every runtime's entry runs (test/portable/node-main.ts, test/deno/deno-main.ts,
 * test/bun/bun-main.ts): the golden conformance suite on the WASM kernels, then a generation smoke
 * test. Prints a human line per case, then one `RESULT {json}` line the runtime tests compare.
 */
import { createWasmRuntime } from '../../src/kernels/wasm.js';
import { formatCase, formatTotals, runPortableConformance, type GoldenFiles } from './suite.js';
import { formatSmoke, runGenerationSmoke, SMOKE_RUNS, type ModelFileReader, type SmokeResult } from './generation.js';

export async function runPortableMain(
  runtimeName: string, golden: GoldenFiles, modelFiles: (model: string) => ModelFileReader, print: (line: string) => void,
): Promise<boolean> {
  const runtime = await createWasmRuntime();
  const conformance = await runPortableConformance(runtimeName, golden, runtime, (r) => print(formatCase(r)));
  print(formatTotals(conformance));
  const generation: SmokeResult[] = [];
  for (const run of SMOKE_RUNS) {
    const r = await runGenerationSmoke(run, modelFiles(run.model), runtime);
    print(formatSmoke(r));
    generation.push(r);
  }
  print('RESULT ' + JSON.stringify({ conformance, generation }));
  return conformance.failed === 0 && generation.every((g) => g.generatedIds.length > 0);
}
