/**
 * `ponder convert mor`: the MoR release (pytorch_model.bin + base config.json + experiment YAML)
 * into a model directory `ponder run` loads. The work is in src/node/convert.ts.
 */
import { PonderError } from '../errors.js';
import { convertMor } from '../node/convert.js';
import { parseFlags } from './args.js';
import type { CliIO } from './io.js';

export const CONVERT_HELP = `ponder convert mor --weights FILE --config FILE --experiment FILE OUT

Converts a Mixture-of-Recursions checkpoint as the MoR release ships it into a model directory
that \`ponder run\` loads: OUT/config.json (ponder's {model_config, cfg} MoR config) and
OUT/model.safetensors.

  --weights FILE      pytorch_model.bin as torch.save wrote it (a model.safetensors of the same
                      state dict works too); read with a restricted unpickler that runs no code
  --config FILE       the base model's config.json (e.g. HuggingFaceTB/SmolLM-360M's)
  --experiment FILE   the experiment's Hydra YAML (conf/pretrain/NAME.yaml): recursion, sharing,
                      router, capacity; needs the optional package \`yaml\`
  OUT                 the output directory: new, empty, or a previous conversion

Shared layers, stored under every alias in the checkpoint, are checked equal and written once;
a tied lm_head is checked equal to the embedding and not written (the loader reads the embedding),
whether or not the checkpoint holds it. Both files are written
to temporary files and renamed, so OUT never holds a half-written model.

Example:
  ponder convert mor --weights checkpoints/mor-rec3/pytorch_model.bin \\
    --config SmolLM-360M/config.json \\
    --experiment conf/pretrain/250720_pretrain_smollm-360m_rec3_middle_cycle_random_lr3e-3_mor_expert_linear_alpha_0.1_sigmoid_aux_loss_0.001.yaml \\
    mor-rec3/
  ponder run --model mor-rec3 --ids 1,2,3 -n 8
`;

export async function convertCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('convert', argv, {
    weights: { type: 'string' }, config: { type: 'string' }, experiment: { type: 'string' },
  });
  if (values.help || positionals.length === 0) { io.out(CONVERT_HELP); return values.help ? 0 : 2; }
  const [kind, out, ...extra] = positionals;
  if (kind !== 'mor') throw new PonderError('ARG_INVALID', `convert: unknown kind ${JSON.stringify(kind)}; ponder converts "mor" checkpoints`, { hint: 'ponder convert mor --weights ... --config ... --experiment ... OUT' });
  if (out === undefined) throw new PonderError('ARG_MISSING_PATH', 'convert mor: the output directory OUT is missing', { hint: 'see `ponder convert --help`' });
  if (extra.length > 0) throw new PonderError('ARG_INVALID', `convert mor: unexpected argument ${JSON.stringify(extra[0])}`, { hint: 'see `ponder convert --help`' });
  for (const flag of ['weights', 'config', 'experiment'] as const) {
    if (typeof values[flag] !== 'string') throw new PonderError('ARG_MISSING_PATH', `convert mor: --${flag} FILE is required`, { field: flag, hint: 'see `ponder convert --help`' });
  }
  let lastShown = -1;
  const result = await convertMor({
    weights: values.weights as string, config: values.config as string, experiment: values.experiment as string, out,
    onProgress: (done, total) => {
      const percent = total === 0 ? 100 : Math.floor((100 * done) / total);
      if (percent >= lastShown + 10 || done === total) { lastShown = percent; io.err(`\rwriting ${out}/model.safetensors: ${percent}%`); }
    },
  }).catch((e: unknown) => {
    if (lastShown >= 0) io.err('\n'); // the error starts a line of its own
    throw e;
  });
  if (lastShown >= 0) io.err('\n');
  for (const note of result.notes) io.out(`note: ${note}\n`);
  io.out(`wrote ${out}: config.json, model.safetensors (${result.tensors} tensors, ${(result.bytes / 2 ** 20).toFixed(1)} MiB)\n`);
  return 0;
}
