/**
 * What ponder starts with when nothing is chosen: `ponder run` / `trace` / `eval` without --model
 * and the web page load the bundled trained model (models/README.md), and run and the page pair it
 * with an adaptive policy so the depth visibly varies (the model's own default runs every token at
 * its full depth). The policy is the cheap latent criterion, not kl, which runs the coda and head
 * after every step: `ponder eval` measures both (models/README.md).
 */
export const DEFAULT_MODEL = 'huginn-sotu';
/** The prompt `run` and `trace` use without --prompt (the web page starts with the same): in the trained models' domain. */
export const DEFAULT_PROMPT = 'The Congress of the United States';
export const DEFAULT_MODEL_POLICY = 'exit(latent-diff, 0.1)';
