/**
 * When generation stops, and which text may be shown before it does.
 *
 * Stop ids end generation on the token itself: the id is part of the output ids, its text is not
 * shown. Stop strings are matched on the decoded text, across token boundaries: text that could
 * still turn out to be the start of a stop string is held back until it cannot, so a stop string
 * never appears in the streamed text, not even in part. (Upstream Huginn turns each stop string
 * into the first token id of its encoding instead; spec/sampling.md §Stopping.)
 */
import { invalidArgument, optionsArgument, PonderError } from '../errors.js';

export interface StopOptions {
  /** Token ids that end generation, e.g. the model's eos ids. */
  stopIds?: Iterable<number>;
  /** Strings that end generation when the generated text contains them. Each non-empty. */
  stopStrings?: readonly string[];
}

export type StopReason = 'stop_id' | 'stop_string';

export interface StopStep {
  /** Text that may be shown now ('' while text is held back). */
  text: string;
  /** Why generation must stop after this token, or null to go on. */
  stopped: StopReason | null;
}

export class StopCondition {
  private readonly stopIds: ReadonlySet<number>;
  private readonly stopStrings: readonly string[];
  private held = ''; // decoded text not yet shown: a suffix that is a prefix of some stop string
  private done = false;

  constructor(stopOptions?: StopOptions) {
    const options = optionsArgument(stopOptions, 'StopCondition options');
    if (options.stopIds !== undefined && !Array.isArray(options.stopIds as unknown)) throw invalidArgument('stopIds', 'a list of token ids', options.stopIds);
    if (options.stopStrings !== undefined && !Array.isArray(options.stopStrings as unknown)) throw invalidArgument('stopStrings', 'a list of strings', options.stopStrings);
    const ids = new Set<number>();
    for (const id of options.stopIds ?? []) {
      if (!Number.isInteger(id) || id < 0) {
        throw new PonderError('ARG_INVALID', `stopIds must hold token ids (integers ≥ 0), got ${String(id)}`, {
          field: 'stopIds',
          hint: 'pass the ids from generation_config.json eos_token_id, or tokenizer.tokenToId(...)',
        });
      }
      ids.add(id);
    }
    const strings = options.stopStrings ?? [];
    for (const s of strings) {
      if (typeof s !== 'string' || s.length === 0) {
        throw new PonderError('ARG_INVALID', `stopStrings must hold non-empty strings, got ${JSON.stringify(s)}`, {
          field: 'stopStrings',
          hint: 'remove the empty entry: an empty stop string would stop before the first token',
        });
      }
    }
    this.stopIds = ids;
    this.stopStrings = [...strings];
  }

  /** True when stop strings are set, so the caller must decode text even if it shows none. */
  get needsText(): boolean {
    return this.stopStrings.length > 0;
  }

  /** Feed the next token id and the text its decoding added (from a TokenTextStream; '' if none). */
  push(id: number, piece: string): StopStep {
    if (this.done) {
      throw new PonderError('ARG_INVALID', 'StopCondition.push after generation already stopped', {
        hint: 'create a new StopCondition for each generation',
      });
    }
    if (this.stopIds.has(id)) {
      this.done = true;
      const text = this.held; // what was held can no longer become a stop string
      this.held = '';
      return { text, stopped: 'stop_id' };
    }
    const pending = this.held + piece;
    let cut = -1;
    for (const s of this.stopStrings) {
      const at = pending.indexOf(s);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    if (cut !== -1) {
      this.done = true;
      this.held = '';
      return { text: pending.slice(0, cut), stopped: 'stop_string' };
    }
    const keep = this.longestStopPrefixSuffix(pending);
    this.held = pending.slice(pending.length - keep);
    return { text: pending.slice(0, pending.length - keep), stopped: null };
  }

  /** Generation ended for another reason (token limit, abort): release the held-back text. */
  flush(): string {
    const text = this.held;
    this.held = '';
    return text;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  private longestStopPrefixSuffix(text: string): number {
    let longest = 0;
    for (const s of this.stopStrings) {
      for (let len = Math.min(s.length - 1, text.length); len > longest; len--) {
        if (s.startsWith(text.slice(text.length - len))) {
          longest = len;
          break;
        }
      }
    }
    return longest;
  }
}
