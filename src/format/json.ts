/**
 * A strict JSON reader (RFC 8259) for headers and configs that come from untrusted files.
 *
 * Why not JSON.parse: it keeps the last of two duplicate keys (a parser differential with loaders
 * that reject them, TOB-SFTN-7), rounds integers above 2^53 (18446744073709551615 silently becomes
 * 18446744073709552000), and gives no position we can report. This reader keeps every key in source
 * order, keeps number literals as text, and reports the offset of the first error.
 *
 * Positions are UTF-16 offsets into the text; `utf8Offset` converts one to a byte offset.
 */

export type JsonNode =
  | { readonly kind: 'object'; readonly pos: number; readonly entries: readonly JsonEntry[] }
  | { readonly kind: 'array'; readonly pos: number; readonly items: readonly JsonNode[] }
  | { readonly kind: 'string'; readonly pos: number; readonly value: string }
  /** `text` is the literal as written, so callers can read integers exactly (BigInt(text)). */
  | { readonly kind: 'number'; readonly pos: number; readonly text: string }
  | { readonly kind: 'bool'; readonly pos: number; readonly value: boolean }
  | { readonly kind: 'null'; readonly pos: number };

export interface JsonEntry {
  readonly key: string;
  readonly keyPos: number;
  readonly value: JsonNode;
}

export class JsonSyntaxError extends Error {
  constructor(readonly pos: number, readonly reason: string) {
    super(`${reason} at offset ${pos}`);
  }
}

/** Deeper nesting than this is an error, so a `[[[[...` header cannot exhaust the stack. */
export const MAX_JSON_DEPTH = 64;

// RFC 8259 §6: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/** Parses one JSON value surrounded by optional JSON whitespace (space, tab, LF, CR; no BOM). */
export function parseJsonStrict(text: string): JsonNode {
  let i = 0;

  const fail = (reason: string, at = i): never => {
    throw new JsonSyntaxError(at, reason);
  };

  const skipWhitespace = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };

  const describe = (at: number): string => (at >= text.length ? 'end of input' : `${JSON.stringify(text[at])}`);

  const parseString = (): string => {
    // text[i] is the opening quote
    const start = i;
    i++;
    let out = '';
    let runStart = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string', start);
      const c = text.charCodeAt(i);
      if (c === 0x22) { // closing quote
        out += text.slice(runStart, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('control character in string');
      if (c !== 0x5c) { i++; continue; }
      out += text.slice(runStart, i);
      const e = text[i + 1];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const unit = readHex4(i + 2);
          i += 6;
          if (unit >= 0xd800 && unit <= 0xdbff) {
            // a high surrogate must be followed by an escaped low surrogate (serde_json rejects lone ones too)
            if (text[i] !== '\\' || text[i + 1] !== 'u') fail('lone surrogate in \\u escape', i - 6);
            const low = readHex4(i + 2);
            if (low < 0xdc00 || low > 0xdfff) fail('lone surrogate in \\u escape', i - 6);
            out += String.fromCharCode(unit, low);
            i += 6;
          } else if (unit >= 0xdc00 && unit <= 0xdfff) {
            fail('lone surrogate in \\u escape', i - 6);
          } else {
            out += String.fromCharCode(unit);
          }
          runStart = i;
          continue;
        }
        default: fail('invalid escape in string');
      }
      i += 2;
      runStart = i;
    }
  };

  const readHex4 = (at: number): number => {
    const hex = text.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape', at - 2);
    return parseInt(hex, 16);
  };

  const parseValue = (depth: number): JsonNode => {
    if (depth > MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    skipWhitespace();
    const pos = i;
    const c = text[i];
    if (c === '{') {
      i++;
      const entries: JsonEntry[] = [];
      skipWhitespace();
      if (text[i] === '}') { i++; return { kind: 'object', pos, entries }; }
      for (;;) {
        skipWhitespace();
        if (text[i] !== '"') fail(`expected a string key, found ${describe(i)}`);
        const keyPos = i;
        const key = parseString();
        skipWhitespace();
        if (text[i] !== ':') fail(`expected ':' after key, found ${describe(i)}`);
        i++;
        const value = parseValue(depth + 1);
        entries.push({ key, keyPos, value });
        skipWhitespace();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return { kind: 'object', pos, entries }; }
        fail(`expected ',' or '}' in object, found ${describe(i)}`);
      }
    }
    if (c === '[') {
      i++;
      const items: JsonNode[] = [];
      skipWhitespace();
      if (text[i] === ']') { i++; return { kind: 'array', pos, items }; }
      for (;;) {
        items.push(parseValue(depth + 1));
        skipWhitespace();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return { kind: 'array', pos, items }; }
        fail(`expected ',' or ']' in array, found ${describe(i)}`);
      }
    }
    if (c === '"') return { kind: 'string', pos, value: parseString() };
    if (text.startsWith('true', i)) { i += 4; return { kind: 'bool', pos, value: true }; }
    if (text.startsWith('false', i)) { i += 5; return { kind: 'bool', pos, value: false }; }
    if (text.startsWith('null', i)) { i += 4; return { kind: 'null', pos }; }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m && m[0].length > 0) {
      i += m[0].length;
      return { kind: 'number', pos, text: m[0] };
    }
    return fail(`unexpected ${describe(i)}`);
  };

  const root = parseValue(0);
  skipWhitespace();
  if (i < text.length) fail(`unexpected ${describe(i)} after the JSON value`);
  return root;
}

/** The first key that appears twice in an object, or undefined. */
export function findDuplicateKey(node: Extract<JsonNode, { kind: 'object' }>): JsonEntry | undefined {
  const seen = new Set<string>();
  for (const entry of node.entries) {
    if (seen.has(entry.key)) return entry;
    seen.add(entry.key);
  }
  return undefined;
}

/** The first duplicate key anywhere in the tree, with its dotted path (e.g. `weight_map.lm_head.weight`). */
export function findDuplicateKeyDeep(node: JsonNode, path = ''): { path: string; entry: JsonEntry } | undefined {
  if (node.kind === 'object') {
    const dup = findDuplicateKey(node);
    if (dup) return { path: path + dup.key, entry: dup };
    for (const e of node.entries) {
      const inner = findDuplicateKeyDeep(e.value, `${path}${e.key}.`);
      if (inner) return inner;
    }
  } else if (node.kind === 'array') {
    for (let k = 0; k < node.items.length; k++) {
      const inner = findDuplicateKeyDeep(node.items[k], `${path}${k}.`);
      if (inner) return inner;
    }
  }
  return undefined;
}

/** Converts a checked tree to plain JS values (numbers through Number(), as JSON.parse would). */
export function toPlain(node: JsonNode): unknown {
  switch (node.kind) {
    case 'object': {
      const out: Record<string, unknown> = {};
      // defineProperty, not assignment: a "__proto__" key must stay an ordinary key
      for (const e of node.entries) Object.defineProperty(out, e.key, { value: toPlain(e.value), enumerable: true, writable: true, configurable: true });
      return out;
    }
    case 'array': return node.items.map(toPlain);
    case 'number': return Number(node.text);
    case 'string': case 'bool': return node.value;
    case 'null': return null;
  }
}

/** What a node is, for messages ("an array", "the number 5"). */
export function describeJson(node: JsonNode): string {
  switch (node.kind) {
    case 'object': return 'an object';
    case 'array': return 'an array';
    case 'string': return `the string ${JSON.stringify(node.value.length > 40 ? node.value.slice(0, 40) + '…' : node.value)}`;
    case 'number': return `the number ${node.text.length > 40 ? node.text.slice(0, 40) + '…' : node.text}`;
    case 'bool': return `${node.value}`;
    case 'null': return 'null';
  }
}

/** The UTF-8 byte offset of UTF-16 offset `pos` in `text`. */
export function utf8Offset(text: string, pos: number): number {
  return new TextEncoder().encode(text.slice(0, pos)).length;
}

/** The byte offset of the first invalid UTF-8 sequence in `bytes`, or -1 if it is all valid. */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    if (b < 0x80) { i++; continue; }
    let need: number;
    let min: number; // smallest code point for this length (rejects overlong forms)
    let cp: number;
    if (b >= 0xc2 && b <= 0xdf) { need = 1; min = 0x80; cp = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) { need = 2; min = 0x800; cp = b & 0x0f; }
    else if (b >= 0xf0 && b <= 0xf4) { need = 3; min = 0x10000; cp = b & 0x07; }
    else return i;
    for (let k = 1; k <= need; k++) {
      const cont = bytes[i + k];
      if (cont === undefined || (cont & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (cont & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return -1;
}
