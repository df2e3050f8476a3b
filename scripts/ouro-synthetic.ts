/**
 * Writes a synthetic Ouro checkpoint with the real shapes (default: Ouro-1.4B, ~2.9 GB of bf16)
 * for bench/ouro.bench.ts and bench/llama.bench.ts: the published config.json plus two
 * safetensors shards and model.safetensors.index.json (a Hugging Face sharded layout). The
 * writer and the values are scripts/synthetic-checkpoint.ts's (`ouro-2.6b` there writes the
 * published one-file layout).
 *
 *   node --import tsx scripts/ouro-synthetic.ts [OUT_DIR] [--layers 24] [--seed 1]
 *
 * OUT_DIR defaults to /tmp/ouro-1.4b-synthetic (outside the repository: never commit it).
 * Tensors are streamed to disk one at a time, so memory stays at one tensor.
 */
import { parseArgs } from 'node:util';
import { ouroCheckpoint, ouroPublishedConfig, writeSyntheticCheckpoint } from './synthetic-checkpoint.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { layers: { type: 'string', default: '24' }, seed: { type: 'string', default: '1' } },
});
const outDir = positionals[0] ?? '/tmp/ouro-1.4b-synthetic';
const started = performance.now();
const bytes = writeSyntheticCheckpoint(outDir, ouroCheckpoint(ouroPublishedConfig(Number(values.layers)), Number(values.seed)), 2, (l) => console.log(l));
console.log(`${outDir}: ${(bytes / 1e9).toFixed(2)} GB of bf16 weights in ${((performance.now() - started) / 1000).toFixed(1)} s`);
