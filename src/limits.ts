/**
 * Hard limits on every count ponder takes from a config or a caller, in one place (normative:
 * spec/limits.md, which test/limits.test.ts holds to these values).
 *
 * They are checked where the count is read — a config while it is parsed, before any tensor list
 * exists; a policy or option before any compute — so an absurd count (2^31 layers, fixed(1e9)) is
 * a typed error in milliseconds instead of an allocation or a loop sized by it. They are far above
 * every published checkpoint (huginn-0125: 8 layers, 32 recurrences; Ouro-2.6B: 48 layers, 4 loops;
 * Llama-3.1-405B: 126 layers, 131,072 positions) and say nothing about whether a model fits in
 * memory: what is too big for the machine is the memory plan's to refuse (MEM_MODEL_TOO_LARGE).
 */
export const LIMITS = {
  /** decoder layers of one stack (Huginn prelude / core block / coda, Ouro's loop, MoR's model) */
  layers: 1024,
  /** steps per token: Huginn recurrences, Ouro loops, MoR recursions — a config's depth, fixed(n), an exit or depth function's maxSteps, minSteps and checkEvery */
  depth: 1024,
  /** positions of one sequence (block_size, max_position_embeddings) */
  context: 1 << 20,
  /** tokens of the vocabulary */
  vocab: 1 << 20,
  /** width of the hidden state (n_embd, hidden_size) and of one head (head_dim) */
  width: 1 << 16,
  /** width of the MLP (intermediate_size) */
  intermediate: 1 << 20,
  /** attention heads (query and key/value) */
  heads: 1 << 12,
  /** maxNewTokens of one generation (a generation also ends at the model's context) */
  newTokens: 2 ** 31 - 1,
  /** budget(n): steps shared by the generated tokens of one sequence */
  budgetSteps: 2 ** 31 - 1,
  /** characters of a policy as text (`--policy`) */
  policyText: 1000,
  /** parentheses nested in a policy as text: budget(64, exit(kl)) nests 2 */
  policyNesting: 8,
  /** WASM kernel threads */
  threads: 64,
  /** bytes of a JSON file ponder reads whole: config.json, generation_config.json, the shard index, tokenizer.json, tokenizer_config.json, a trace */
  jsonFileBytes: 100_000_000,
} as const;

export type LimitName = keyof typeof LIMITS;

/** "(ponder's limit on layers, spec/limits.md)": the tail of a message that refuses a count over a limit. */
export function limitNote(name: LimitName): string {
  return `ponder's limit on ${name}, spec/limits.md`;
}
