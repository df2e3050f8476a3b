/**
 * Text in, text out: a thin wrapper over `@huggingface/tokenizers` (pure JS, an optional
 * dependency). The library is imported only when `loadTokenizer` is called, so the core has no
 * dependency and ids-in / ids-out generation works without it installed.
 *
 * Decoding never applies transformers' `clean_up_tokenization_spaces` (which rewrites " ," to ","
 * and so on): decode(encode(text)) gives `text` back exactly, and the streamed pieces concatenate
 * to the same string as a one-shot decode. Token ids are what the model and the golden cases see;
 * the text is theirs, unedited.
 */
import { describeValue, PonderError } from './errors.js';
import { LIMITS, limitNote } from './limits.js';
import { importOptional } from './optional.js';

export interface EncodeOptions {
  /** Add the tokens the tokenizer's post-processor adds (e.g. a BOS token). Default true, as in transformers. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (those marked `special` in tokenizer.json, e.g. <|endoftext|>). Default false. */
  skipSpecialTokens?: boolean;
}

/** Token-by-token text: the pieces returned by `push` and `flush` concatenate to `decode(allIds)`. */
export interface TokenTextStream {
  /**
   * Feed the next id; returns the text it completes, possibly ''. A token that ends inside a
   * multi-byte character (byte-level BPE splits emoji and CJK characters over several tokens)
   * yields '' until the character is complete.
   */
  push(id: number): string;
  /** Whatever is still held back (an incomplete character at the end of generation, shown as U+FFFD). */
  flush(): string;
}

/**
 * What `encode(text, { addSpecialTokens: true })` adds around the text, and which setting decided
 * it (transformers' rule): tokenizer_config.json's `add_bos_token` / `add_eos_token` when it sets
 * either (then bos_token / eos_token are added as those flags say), or when tokenizer.json has no
 * post-processor; otherwise tokenizer.json's post-processor.
 */
export interface SpecialTokenRule {
  readonly prefix: readonly number[];
  readonly suffix: readonly number[];
  readonly source: 'tokenizer_config.json add_bos_token/add_eos_token' | 'tokenizer.json post_processor' | 'none';
}

export interface TextTokenizer {
  /** One more than the largest id the tokenizer knows. The model's vocabulary may be padded beyond it. */
  readonly vocabSize: number;
  /** Ids of the tokens tokenizer.json marks `special`. */
  readonly specialIds: ReadonlySet<number>;
  /** The special tokens encode adds when asked to, and why. */
  readonly specialTokenRule: SpecialTokenRule;
  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  decodeStream(options?: DecodeOptions): TokenTextStream;
  /** The id of a token string (e.g. "<|endoftext|>"), or undefined. */
  tokenToId(token: string): number | undefined;
}

/** The part of `@huggingface/tokenizers`' Tokenizer class we use. */
interface LibraryTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
  get_added_tokens_decoder(): Map<number, { special: boolean }>;
}
type LibraryTokenizerClass = new (tokenizerJson: object, tokenizerConfig: object) => LibraryTokenizer;

export interface LoadTokenizerOptions {
  /**
   * How to load `@huggingface/tokenizers`. By default a dynamic import of the bare name at call time.
   * A bundler cannot see that import; pass `() => import('@huggingface/tokenizers')` to let it.
   */
  importLibrary?: () => Promise<unknown>;
}

const LIBRARY = '@huggingface/tokenizers';

/**
 * A tokenizer from the text of tokenizer.json and, optionally, tokenizer_config.json.
 * Errors: TOKENIZER_UNAVAILABLE (library not installed), TOKENIZER_INVALID (bad JSON, or a
 * tokenizer the library cannot build).
 */
export async function loadTokenizer(tokenizerJsonText: string, configText?: string, options: LoadTokenizerOptions = {}): Promise<TextTokenizer> {
  const tokenizerJson = parseJsonObject(tokenizerJsonText, 'tokenizer.json');
  checkTokenIds(tokenizerJson);
  const config = configText === undefined ? {} : parseJsonObject(configText, 'tokenizer_config.json');
  const flags = configFlags(config as Record<string, unknown>);
  const TokenizerClass = await importTokenizerClass(options.importLibrary);
  let inner: LibraryTokenizer;
  try {
    // clean-up off at the source, so no code path can apply it (see the file comment)
    inner = new TokenizerClass(tokenizerJson, { ...config, clean_up_tokenization_spaces: false });
  } catch (err) {
    throw new PonderError('TOKENIZER_INVALID', `tokenizer.json: ${LIBRARY} cannot build this tokenizer: ${(err as Error).message}`, {
      path: 'tokenizer.json',
      hint: 'check that tokenizer.json comes from the model directory and is not truncated',
    });
  }
  const byConfig = flags.given || (tokenizerJson as { post_processor?: unknown }).post_processor == null;
  return new WrappedTokenizer(inner, byConfig ? ruleFromConfig(inner, config as Record<string, unknown>, flags) : null);
}

/** tokenizer_config.json's add_bos_token / add_eos_token: each a boolean when present. */
function configFlags(config: Record<string, unknown>): { given: boolean; bos: boolean; eos: boolean } {
  for (const key of ['add_bos_token', 'add_eos_token']) {
    if (config[key] !== undefined && config[key] !== null && typeof config[key] !== 'boolean') {
      throw new PonderError('TOKENIZER_INVALID', `tokenizer_config.json: ${key} must be true or false, got ${JSON.stringify(config[key])}`, { path: 'tokenizer_config.json', field: key, hint: 'as transformers saves it: a boolean' });
    }
  }
  return { given: typeof config.add_bos_token === 'boolean' || typeof config.add_eos_token === 'boolean', bos: config.add_bos_token === true, eos: config.add_eos_token === true };
}

/** The rule transformers' update_post_processor builds: bos_token before the text and eos_token after it, as the flags say. */
function ruleFromConfig(inner: LibraryTokenizer, config: Record<string, unknown>, flags: { given: boolean; bos: boolean; eos: boolean }): SpecialTokenRule {
  const idOf = (key: 'bos_token' | 'eos_token', flag: string): number[] => {
    const raw = config[key];
    const token = typeof raw === 'string' ? raw : typeof raw === 'object' && raw !== null && typeof (raw as { content?: unknown }).content === 'string' ? (raw as { content: string }).content : undefined;
    if (!token) return []; // transformers turns the flag off when the token is unset
    const id = inner.token_to_id(token);
    if (id === undefined || id === null) {
      throw new PonderError('TOKENIZER_INVALID', `tokenizer_config.json: ${flag} is true but ${key} ${JSON.stringify(token)} is not in tokenizer.json's vocabulary`, { path: 'tokenizer_config.json', field: key, hint: 'check that tokenizer.json and tokenizer_config.json come from the same model' });
    }
    return [id];
  };
  return {
    prefix: flags.bos ? idOf('bos_token', 'add_bos_token') : [],
    suffix: flags.eos ? idOf('eos_token', 'add_eos_token') : [],
    source: flags.given ? 'tokenizer_config.json add_bos_token/add_eos_token' : 'none',
  };
}

/** What the post-processor adds, found by encoding a probe text with and without special tokens. */
function probeRule(inner: LibraryTokenizer): SpecialTokenRule {
  for (const probe of ['a', '0', ' ', '.']) {
    const base = inner.encode(probe, { add_special_tokens: false }).ids;
    const full = inner.encode(probe, { add_special_tokens: true }).ids;
    if (base.length === 0) continue;
    for (let at = 0; at + base.length <= full.length; at++) {
      if (base.every((id, i) => full[at + i] === id)) {
        return { prefix: full.slice(0, at), suffix: full.slice(at + base.length), source: full.length > base.length ? 'tokenizer.json post_processor' : 'none' };
      }
    }
  }
  const full = inner.encode('', { add_special_tokens: true }).ids;
  return { prefix: full, suffix: [], source: full.length > 0 ? 'tokenizer.json post_processor' : 'none' };
}

/**
 * Every token id tokenizer.json assigns (model.vocab's values, added_tokens' ids) is an integer in
 * [0, LIMITS.vocab): the library sizes arrays and loops by the largest id, so one id of 2^31 would
 * make it build a 2-billion-entry vocabulary (a hang) rather than fail.
 */
function checkTokenIds(json: object): void {
  const bad = (where: string, id: unknown): PonderError => new PonderError('TOKENIZER_INVALID',
    `tokenizer.json: ${where} has the id ${describeValue(id)}, not an integer in [0, ${LIMITS.vocab}) (${limitNote('vocab')})`,
    { path: 'tokenizer.json', hint: 'check that tokenizer.json comes from the model directory and is not corrupt' });
  const isId = (id: unknown): boolean => Number.isSafeInteger(id) && (id as number) >= 0 && (id as number) < LIMITS.vocab;
  const { model, added_tokens: added } = json as { model?: { vocab?: unknown }; added_tokens?: unknown };
  const vocab = model !== null && typeof model === 'object' ? model.vocab : undefined;
  if (vocab !== null && typeof vocab === 'object' && !Array.isArray(vocab)) {
    const owner = new Map<number, string>();
    for (const [token, id] of Object.entries(vocab)) {
      if (!isId(id)) throw bad(`model.vocab[${describeValue(token)}]`, id);
      // two tokens with one id leave another id without a token: its text would fail only when generated
      const other = owner.get(id as number);
      if (other !== undefined) throw new PonderError('TOKENIZER_INVALID', `tokenizer.json: model.vocab gives the id ${id} to both ${describeValue(other)} and ${describeValue(token)}`, { path: 'tokenizer.json', hint: 'each token needs its own id; tokenizer.json is corrupt' });
      owner.set(id as number, token);
    }
  } else if (Array.isArray(vocab) && vocab.length > LIMITS.vocab) {
    throw bad('model.vocab (a list)', vocab.length);
  }
  if (Array.isArray(added)) {
    added.forEach((t, i) => { const id = (t as { id?: unknown } | null)?.id; if (!isId(id)) throw bad(`added_tokens[${i}]`, id); });
  }
}

function parseJsonObject(text: string, name: string): object {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new PonderError('TOKENIZER_INVALID', `${name} is not valid JSON: ${(err as Error).message}`, {
      path: name,
      hint: `check that ${name} is complete (a partial download?)`,
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PonderError('TOKENIZER_INVALID', `${name} must hold a JSON object`, { path: name, hint: `check that this file really is ${name}` });
  }
  return value;
}

async function importTokenizerClass(importLibrary?: () => Promise<unknown>): Promise<LibraryTokenizerClass> {
  const library = await importOptional(LIBRARY, importLibrary, (err) => new PonderError('TOKENIZER_UNAVAILABLE', `text input/output needs the optional package ${LIBRARY}, which could not be loaded: ${err.message}`, {
    hint: `install it with \`npm install ${LIBRARY}\`, or pass token ids instead of text (ponder run --ids ...)`,
  }));
  const TokenizerClass = (library as { Tokenizer?: unknown }).Tokenizer;
  if (typeof TokenizerClass !== 'function') {
    throw new PonderError('TOKENIZER_UNAVAILABLE', `${LIBRARY} was loaded but exports no Tokenizer class`, {
      hint: `install a supported version: npm install ${LIBRARY}@0.2.0`,
    });
  }
  return TokenizerClass as LibraryTokenizerClass;
}

class WrappedTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly specialIds: ReadonlySet<number>;
  readonly specialTokenRule: SpecialTokenRule;
  private readonly inner: LibraryTokenizer;
  /** the rule is tokenizer_config.json's: encode adds its tokens itself instead of the post-processor */
  private readonly configRule: boolean;

  constructor(inner: LibraryTokenizer, configRule: SpecialTokenRule | null) {
    this.inner = inner;
    this.configRule = configRule !== null;
    this.specialTokenRule = configRule ?? probeRule(inner);
    let maxId = -1;
    for (const id of inner.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;
    const special = new Set<number>();
    for (const [id, token] of inner.get_added_tokens_decoder()) if (token.special) special.add(id);
    this.specialIds = special;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') {
      throw new PonderError('ARG_INVALID', `encode expects a string, got ${typeof text}`, { field: 'text', hint: 'pass the prompt as a string' });
    }
    const add = options.addSpecialTokens ?? true;
    try {
      if (!this.configRule) return this.inner.encode(text, { add_special_tokens: add }).ids;
      const ids = this.inner.encode(text, { add_special_tokens: false }).ids;
      return add ? [...this.specialTokenRule.prefix, ...ids, ...this.specialTokenRule.suffix] : ids;
    } catch (err) {
      throw new PonderError('TOKENIZER_INVALID', `the tokenizer failed to encode the text: ${(err as Error).message}`, {
        path: 'tokenizer.json',
        hint: 'the tokenizer uses a feature the pure-JS library does not support; pass token ids instead',
      });
    }
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    if (ids.length === 0) return ''; // the library rejects an empty list
    const list = new Array<number>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      // The library maps an unknown id to its unk token, or to nothing: we refuse instead.
      if (!Number.isInteger(id) || this.inner.id_to_token(id) === undefined) {
        throw new PonderError('TOKENIZER_UNKNOWN_ID', `token id ${String(id)} (at position ${i}) is not in the tokenizer's vocabulary of ${this.vocabSize}`, {
          field: 'ids',
          hint: 'the model vocabulary may be padded beyond the tokenizer; mask padded ids out of the logits, or check that tokenizer.json belongs to this model',
        });
      }
      list[i] = id;
    }
    return this.inner.decode(list, { skip_special_tokens: options.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  decodeStream(options: DecodeOptions = {}): TokenTextStream {
    return new DecodeStream(this, options);
  }

  tokenToId(token: string): number | undefined {
    return this.inner.token_to_id(token);
  }
}

/**
 * Incremental decoding by re-decoding a short window: `window` holds the ids since the last point
 * where text was emitted plus the one token before it (some decoders, e.g. Metaspace, drop a
 * leading space only at the very start, so a token needs its left neighbour to decode as it does
 * in context). Text is emitted once the decoded window is longer than its already-emitted prefix
 * and does not end in U+FFFD (an incomplete UTF-8 sequence).
 */
class DecodeStream implements TokenTextStream {
  private readonly tokenizer: TextTokenizer;
  private readonly options: DecodeOptions;
  private window: number[] = [];
  private prefixLength = 0; // ids at the start of `window` whose text has been emitted
  private prefixText = ''; // decode(window[0 .. prefixLength))

  constructor(tokenizer: TextTokenizer, options: DecodeOptions) {
    this.tokenizer = tokenizer;
    this.options = options;
  }

  push(id: number): string {
    this.window.push(id);
    const text = this.tokenizer.decode(this.window, this.options);
    if (text.length <= this.prefixText.length || text.endsWith('\uFFFD')) return '';
    const piece = text.slice(this.prefixText.length);
    // keep only the newest id as left context for the next token
    this.window = this.window.slice(this.window.length - 1);
    this.prefixLength = 1;
    this.prefixText = this.tokenizer.decode(this.window, this.options);
    return piece;
  }

  flush(): string {
    if (this.window.length <= this.prefixLength) return '';
    const text = this.tokenizer.decode(this.window, this.options);
    const piece = text.slice(this.prefixText.length);
    this.window = this.window.slice(this.window.length - 1);
    this.prefixLength = 1;
    this.prefixText = this.tokenizer.decode(this.window, this.options);
    return piece;
  }
}
