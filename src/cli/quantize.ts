/**
 * `ponder quantize IN OUT --bits 4|8`: a model directory of any family as an MLX-layout quantized
 * one (spec/quantization.md). The work is in src/node/quantize.ts.
 */
import { PonderError } from '../errors.js';
import { DEFAULT_KEEP } from '../convert/quantize.js';
import { quantizeModel } from '../node/quantize.js';
import { intFlag, parseFlags } from './args.js';
import type { CliIO } from './io.js';

export const QUANTIZE_HELP = `ponder quantize IN OUT --bits 4|8 [--group-size 64] [--keep PATTERN ...] [--no-default-keep]

Writes OUT, the model directory IN (Huginn, Ouro or MoR) with its Linear and embedding weights
quantized in MLX's affine group-wise layout, as mlx-lm saves it: each quantized module P holds
P.weight (U32 packed codes), P.scales and P.biases (in the model's dtype), and config.json gains
"quantization": {"group_size": G, "bits": B} (modules kept in float listed as false). The
tokenizer and generation files are copied. mlx-lm loads the result; ponder loads mlx-lm's.

  --bits 4|8          bits per weight code
  --group-size N      weights per scale and bias along the input axis: 32, 64 (default) or 128
  --keep PATTERN      keep matching modules in their dtype; * matches any text, matched against the
                      module path (e.g. 'model.layers.*.mlp.down_proj', '*lm_head'); repeatable;
                      a pattern that matches no Linear or embedding module is an error
  --no-default-keep   also quantize what is kept by default: ${DEFAULT_KEEP.join(', ')}
                      (exit gates and routers: tiny, and they decide the depth)
  OUT                 new, empty, or a previous \`ponder quantize\` output

Every file is written beside its target and renamed into place when complete, so OUT never holds
a half-written model.

Example:
  ponder quantize models/ouro-sotu /tmp/ouro-sotu-4bit --bits 4
  ponder run --model /tmp/ouro-sotu-4bit --prompt "The" -n 20
  ponder eval --compare models/ouro-sotu /tmp/ouro-sotu-4bit --text notes.txt
`;

export async function quantizeCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('quantize', argv, {
    bits: { type: 'string' }, 'group-size': { type: 'string' }, keep: { type: 'string', multiple: true }, 'no-default-keep': { type: 'boolean' },
  });
  if (values.help || positionals.length === 0) { io.out(QUANTIZE_HELP); return values.help ? 0 : 2; }
  const [input, out, ...extra] = positionals;
  if (out === undefined) throw new PonderError('ARG_MISSING_PATH', 'quantize: the output directory OUT is missing', { hint: 'ponder quantize IN OUT --bits 4' });
  if (extra.length > 0) throw new PonderError('ARG_INVALID', `quantize: unexpected argument ${JSON.stringify(extra[0])}`, { hint: 'see `ponder quantize --help`' });
  if (values.bits === undefined) throw new PonderError('ARG_INVALID', 'quantize: --bits 4 or --bits 8 is required', { field: 'bits', hint: 'see `ponder quantize --help`' });
  const bits = intFlag('quantize', 'bits', values.bits, 4);
  const groupSize = intFlag('quantize', 'group-size', values['group-size'], 64);
  let lastShown = -1;
  const result = await quantizeModel({
    input, out, bits: bits as 8 | 4, groupSize, keep: (values.keep as unknown as string[] | undefined) ?? [], noDefaultKeep: values['no-default-keep'] === true,
    onProgress: (done, total) => {
      const percent = total === 0 ? 100 : Math.floor((100 * done) / total);
      if (percent >= lastShown + 5 || done === total) { lastShown = percent; io.err(`\rquantizing ${input} → ${out}/model.safetensors: ${percent}%`); }
    },
  });
  if (lastShown >= 0) io.err('\n');
  for (const k of result.kept) io.out(`kept ${k.name}: ${k.reason}\n`);
  const mib = (n: number) => (n / 2 ** 20).toFixed(1);
  io.out(`wrote ${out}: ${result.quantized} tensors at ${bits} bits (group ${groupSize}), ${mib(result.bytesIn)} MiB → ${mib(result.bytesOut)} MiB${result.copied.length ? `; copied ${result.copied.join(', ')}` : ''}\n`);
  return 0;
}
