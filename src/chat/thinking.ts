/**
 * Splits streamed answer text into reasoning and answer: what a Thinking model writes between
 * `<think>` and `</think>` (the tags included) is thinking, the rest answer. Text that could be the
 * start of a tag is held back until it cannot (a tag may arrive over several tokens), so a tag is
 * never split between two segments. When the prompt itself opened the block (a generation prompt
 * ending in `<think>\n`), the stream starts inside it.
 */

export interface TextSegment {
  text: string;
  thinking: boolean;
}

export const THINK_OPEN = '<think>';
export const THINK_CLOSE = '</think>';

/** True when `prompt` leaves a `<think>` block open, so the answer starts by thinking. */
export function promptOpensThinking(prompt: string): boolean {
  return prompt.lastIndexOf(THINK_OPEN) > prompt.lastIndexOf(THINK_CLOSE);
}

export class ThinkingSplitter {
  private held = '';
  private inside: boolean;

  constructor(startInside = false) {
    this.inside = startInside;
  }

  /** Feed the next piece of text; returns the segments now complete (possibly none). */
  push(text: string): TextSegment[] {
    const out: TextSegment[] = [];
    let rest = this.held + text;
    this.held = '';
    for (;;) {
      const tag = this.inside ? THINK_CLOSE : THINK_OPEN;
      const at = rest.indexOf(tag);
      if (at === -1) break;
      // the opening tag belongs to the thinking segment, and so does the closing one
      const cut = this.inside ? at + tag.length : at;
      emit(out, rest.slice(0, cut), this.inside);
      rest = rest.slice(cut);
      if (!this.inside) { emit(out, tag, true); rest = rest.slice(tag.length); }
      this.inside = !this.inside;
    }
    const keep = partialTagLength(rest, this.inside ? THINK_CLOSE : THINK_OPEN);
    emit(out, rest.slice(0, rest.length - keep), this.inside);
    this.held = rest.slice(rest.length - keep);
    return merge(out);
  }

  /** The text still held back (the stream ended). */
  flush(): TextSegment[] {
    const out: TextSegment[] = [];
    emit(out, this.held, this.inside);
    this.held = '';
    return out;
  }

  /** Inside a thinking block now. */
  get thinking(): boolean {
    return this.inside;
  }
}

function emit(out: TextSegment[], text: string, thinking: boolean): void {
  if (text.length > 0) out.push({ text, thinking });
}

function merge(segments: TextSegment[]): TextSegment[] {
  const out: TextSegment[] = [];
  for (const s of segments) {
    const last = out[out.length - 1];
    if (last && last.thinking === s.thinking) last.text += s.text;
    else out.push({ ...s });
  }
  return out;
}

/** Length of the longest suffix of `text` that is a proper prefix of `tag`. */
function partialTagLength(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (tag.startsWith(text.slice(text.length - n))) return n;
  return 0;
}
