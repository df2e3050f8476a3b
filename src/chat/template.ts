/**
 * Chat templates: the Jinja template a chat model ships in tokenizer_config.json (`chat_template`,
 * a string or a list of named templates) or in chat_template.jinja, rendered with
 * `@huggingface/jinja` (an optional dependency, imported on first use) in an environment set up
 * like the one transformers' `apply_chat_template` renders in:
 *
 * - trim_blocks and lstrip_blocks on, loop controls ({% break %}, {% continue %}) available, a single
 *   trailing newline of the template dropped and \r\n / \r read as \n (jinja2's lexer does both);
 * - globals `raise_exception(message)` (the render fails with that message: CHAT_TEMPLATE_RAISED),
 *   `strftime_now(format)` (local time, Python's directives, English names) and `range`;
 * - `tojson` with transformers' defaults: ensure_ascii=False, separators (", ", ": ") or, with
 *   indent, (",", ": "), as json.dumps writes them;
 * - variables: messages, tools and documents (None when not given, so `tools is defined` holds as in
 *   transformers), add_generation_prompt, every special token of the tokenizer
 *   (bos_token, eos_token, ... additional_special_tokens; transformers' `special_tokens_map`), and
 *   the caller's template kwargs (e.g. enable_thinking), which win over the special tokens.
 *
 * The rules, and where @huggingface/jinja's semantics differ from jinja2's, are in spec/chat.md.
 * Pure: takes text, never touches the file system.
 */
import { describeValue, optionsArgument, PonderError } from '../errors.js';
import { importOptional } from '../optional.js';
import { strftime } from './strftime.js';

/** One chat turn as transformers takes it: a role and a content (a string, or a list of content blocks), plus any fields a template reads (tool_calls, ...). */
export interface ChatMessage {
  role: string;
  content?: unknown;
  [field: string]: unknown;
}

export interface ChatRenderOptions {
  /** End with the header of an assistant turn, so the model writes the answer. Default false, as in transformers. */
  addGenerationPrompt?: boolean;
  /** Leave the last message open (no end-of-turn after it), so generation continues it. Not with addGenerationPrompt. */
  continueFinalMessage?: boolean;
  /** Tool (function) JSON schemas; the `tool_use` template of a named set is used when given. */
  tools?: readonly unknown[];
  /** Documents for retrieval-augmented templates: objects with `title` and `text`. */
  documents?: readonly unknown[];
  /** Extra template variables, e.g. `{ enable_thinking: true }`; they override the special tokens. */
  templateKwargs?: Readonly<Record<string, unknown>>;
  /** Which named template to use (a template set from tokenizer_config.json's list form). */
  templateName?: string;
  /** The clock `strftime_now` reads. Default: the current time. */
  now?: () => Date;
}

export interface ChatTemplateFiles {
  /** The text of tokenizer_config.json: `chat_template` and the special tokens. */
  tokenizerConfig?: string;
  /** The text of chat_template.jinja; when present it is the template (transformers gives it precedence). */
  chatTemplateJinja?: string;
  /** The text of special_tokens_map.json, whose entries override tokenizer_config.json's. */
  specialTokensMap?: string;
}

export interface LoadChatTemplateOptions {
  /**
   * How to load `@huggingface/jinja`. By default a dynamic import of the bare name at call time;
   * a bundler cannot see that import, so pass `() => import('@huggingface/jinja')` to let it.
   */
  importLibrary?: () => Promise<unknown>;
}

/** Where a template came from. */
export type ChatTemplateOrigin = 'chat_template.jinja' | 'tokenizer_config.json' | 'text';

const LIBRARY = '@huggingface/jinja';
/** The special-token attributes transformers puts in `special_tokens_map`, in its order. */
const SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token', 'additional_special_tokens'] as const;
/** Names the renderer sets itself; a template kwarg may not take them (transformers raises a TypeError). */
const RESERVED_VARIABLES = ['messages', 'tools', 'documents', 'add_generation_prompt'];
/** transformers marks the end of the message to continue with this tag, then cuts the render there. */
const CONTINUE_TAG = 'CONTINUE_FINAL_MESSAGE_TAG ';
/** `range()` longer than this is refused: a template cannot make the renderer allocate without bound. */
const MAX_RANGE = 1_000_000;

// ---------------------------------------------------------------------------------------------
// The library (an optional dependency), through the small part of its API we use

interface JinjaEnvironment { set(name: string, value: unknown): unknown }
interface JinjaLibrary {
  tokenize(source: string, options: { lstrip_blocks: boolean; trim_blocks: boolean }): unknown[];
  parse(tokens: unknown[]): unknown;
  Environment: new (parent?: JinjaEnvironment) => JinjaEnvironment;
  Interpreter: new (env: JinjaEnvironment) => { run(program: unknown): { value: unknown } };
}

async function importJinja(importLibrary?: () => Promise<unknown>): Promise<JinjaLibrary> {
  const library = await importOptional(LIBRARY, importLibrary, (err) => new PonderError('CHAT_TEMPLATE_UNAVAILABLE', `chat templates need the optional package ${LIBRARY}, which could not be loaded: ${err.message}`, {
    hint: `install it with \`npm install ${LIBRARY}\`, or write the prompt text yourself instead of passing messages`,
  }));
  const lib = library as Partial<JinjaLibrary>;
  if (typeof lib.tokenize !== 'function' || typeof lib.parse !== 'function' || typeof lib.Environment !== 'function' || typeof lib.Interpreter !== 'function') {
    throw new PonderError('CHAT_TEMPLATE_UNAVAILABLE', `${LIBRARY} was loaded but does not export tokenize, parse, Environment and Interpreter`, {
      hint: `install a supported version: npm install ${LIBRARY}@0.5.13`,
    });
  }
  return lib as JinjaLibrary;
}

// ---------------------------------------------------------------------------------------------
// Reading the template and the special tokens from the tokenizer's files

function parseJsonFile(text: string, name: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new PonderError('TOKENIZER_INVALID', `${name} is not valid JSON: ${(err as Error).message}`, { path: name, hint: `check that ${name} is complete (a partial download?)` });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PonderError('TOKENIZER_INVALID', `${name} must hold a JSON object`, { path: name, hint: `check that this file really is ${name}` });
  }
  return value as Record<string, unknown>;
}

/**
 * The templates of tokenizer_config.json's `chat_template`: one template (a string), or named
 * templates (the list form `[{"name": "default", "template": "..."}, ...]`); null when it has none.
 */
export function chatTemplatesFromConfig(config: Readonly<Record<string, unknown>>, path = 'tokenizer_config.json'): string | Map<string, string> | null {
  const value = config.chat_template;
  const invalid = (what: string): PonderError => new PonderError('CHAT_TEMPLATE_INVALID', `${path}: chat_template ${what}`, {
    path, field: 'chat_template', hint: 'chat_template must be a template string, or a list of {"name": ..., "template": ...} objects as transformers saves it',
  });
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) throw invalid(`is ${typeof value}, not a string or a list of named templates`);
  const named = new Map<string, string>();
  value.forEach((item: unknown, i) => {
    const entry = item as { name?: unknown; template?: unknown } | null;
    if (typeof entry !== 'object' || entry === null || typeof entry.name !== 'string' || typeof entry.template !== 'string') {
      throw invalid(`[${i}] is not an object with a string "name" and a string "template"`);
    }
    if (named.has(entry.name)) throw invalid(`names the template ${JSON.stringify(entry.name)} twice`);
    named.set(entry.name, entry.template);
  });
  if (named.size === 0) throw invalid('is an empty list');
  return named;
}

/** A special token as tokenizer_config.json writes it: a string, or an AddedToken object with `content`. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') return (value as { content: string }).content;
  return undefined;
}

/**
 * The special tokens as transformers' `special_tokens_map` holds them, which `apply_chat_template`
 * passes to the template: bos_token, eos_token, unk_token, sep_token, pad_token, cls_token,
 * mask_token (strings) and additional_special_tokens (a list), each only when set and non-empty.
 * `overrides` (special_tokens_map.json) replace the config's entries.
 */
export function specialTokenVariables(tokenizerConfig: Readonly<Record<string, unknown>>, overrideValues?: Readonly<Record<string, unknown>>): Record<string, string | string[]> {
  const config = optionsArgument(tokenizerConfig as Record<string, unknown>, 'specialTokenVariables config');
  const overrides = optionsArgument(overrideValues as Record<string, unknown> | undefined, 'specialTokenVariables overrides');
  const out: Record<string, string | string[]> = {};
  for (const key of SPECIAL_TOKEN_KEYS) {
    const raw = Object.hasOwn(overrides, key) ? overrides[key] : config[key];
    if (key === 'additional_special_tokens') {
      if (!Array.isArray(raw)) continue;
      const list = raw.map(tokenText).filter((t): t is string => t !== undefined);
      if (list.length > 0) out[key] = list;
      continue;
    }
    const text = tokenText(raw);
    if (text) out[key] = text; // transformers leaves out unset and empty tokens
  }
  return out;
}

/**
 * The chat template of a tokenizer, from its files: chat_template.jinja when given, else
 * tokenizer_config.json's `chat_template`. Errors: CHAT_TEMPLATE_MISSING (neither has one),
 * CHAT_TEMPLATE_INVALID, CHAT_TEMPLATE_SYNTAX, CHAT_TEMPLATE_UNAVAILABLE, TOKENIZER_INVALID.
 */
export async function loadChatTemplate(chatFiles: ChatTemplateFiles, loadOptions?: LoadChatTemplateOptions): Promise<ChatTemplate> {
  const files = optionsArgument(chatFiles, 'loadChatTemplate files');
  const options = optionsArgument(loadOptions, 'loadChatTemplate options');
  for (const key of ['tokenizerConfig', 'specialTokensMap', 'chatTemplateJinja'] as const) {
    if (files[key] !== undefined && typeof files[key] !== 'string') throw new PonderError('ARG_INVALID', `loadChatTemplate files.${key} must be the file's text, got ${describeValue(files[key])}`, { field: key, hint: 'read the file as UTF-8 text and pass the string' });
  }
  const config = files.tokenizerConfig === undefined ? {} : parseJsonFile(files.tokenizerConfig, 'tokenizer_config.json');
  const overrides = files.specialTokensMap === undefined ? {} : parseJsonFile(files.specialTokensMap, 'special_tokens_map.json');
  let templates: string | Map<string, string> | null;
  let origin: ChatTemplateOrigin;
  if (files.chatTemplateJinja !== undefined) {
    templates = files.chatTemplateJinja;
    origin = 'chat_template.jinja';
  } else {
    templates = chatTemplatesFromConfig(config);
    origin = 'tokenizer_config.json';
  }
  if (templates === null) {
    throw new PonderError('CHAT_TEMPLATE_MISSING', 'this tokenizer has no chat template: tokenizer_config.json has no chat_template and there is no chat_template.jinja', {
      path: 'tokenizer_config.json', field: 'chat_template',
      hint: 'this is not a chat model (or its tokenizer files are incomplete); give the prompt as plain text, or supply a template',
    });
  }
  const jinja = await importJinja(options.importLibrary);
  return new ChatTemplate(jinja, templates, origin, specialTokenVariables(config, overrides));
}

/** A template given as text, rendered with the given special tokens (e.g. `{ bos_token: '<s>' }`). */
export async function compileChatTemplate(text: string, specialTokens: Readonly<Record<string, string | string[]>> = {}, options: LoadChatTemplateOptions = {}): Promise<ChatTemplate> {
  if (typeof text !== 'string') throw new PonderError('ARG_INVALID', `a chat template must be a string, got ${typeof text}`, { hint: 'pass the template text' });
  const jinja = await importJinja(options.importLibrary);
  return new ChatTemplate(jinja, text, 'text', { ...specialTokens });
}

// ---------------------------------------------------------------------------------------------
// Rendering

/** Thrown by the template's raise_exception() call; turned into CHAT_TEMPLATE_RAISED. */
class TemplateRaised extends Error {}

/** Python's range(), bounded. */
function pythonRange(a: unknown, b?: unknown, step: unknown = 1): number[] {
  let start = a, stop = b;
  if (stop === undefined) { stop = start; start = 0; }
  if (![start, stop, step].every((v) => Number.isInteger(v))) throw new Error('range() arguments must be integers');
  const [s, e, k] = [start as number, stop as number, step as number];
  if (k === 0) throw new Error('range() arg 3 must not be zero');
  const length = Math.max(0, Math.ceil((e - s) / k));
  if (length > MAX_RANGE) throw new Error(`range() of ${length} items is more than the ${MAX_RANGE} a chat template may make`);
  return Array.from({ length }, (_, i) => s + i * k);
}

/** Python's str.isspace() characters (JS \\s differs: it has U+FEFF and lacks U+001C-U+001F and U+0085). */
const PY_SPACE = '[\\t\\n\\v\\f\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const pyStrip = (s: string): string => s.replace(new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, 'g'), '');
const pyRstrip = (s: string): string => s.replace(new RegExp(`${PY_SPACE}+$`), '');

export class ChatTemplate {
  /** The names of a template set (tokenizer_config.json's list form), or [] for a single template. */
  readonly names: readonly string[];
  private readonly programs: Map<string | null, unknown>;

  constructor(private readonly jinja: JinjaLibrary, templates: string | ReadonlyMap<string, string>, readonly origin: ChatTemplateOrigin,
    /** The special-token variables every render gets (transformers' special_tokens_map). */
    readonly specialTokens: Readonly<Record<string, string | string[]>>) {
    const entries: [string | null, string][] = typeof templates === 'string' ? [[null, templates]] : [...templates];
    this.names = typeof templates === 'string' ? [] : [...templates.keys()];
    this.programs = new Map(entries.map(([name, text]) => [name, this.compile(name, text)]));
  }

  private label(name: string | null): string {
    return name === null ? `chat template (${this.origin})` : `chat template "${name}" (${this.origin})`;
  }

  private compile(name: string | null, text: string): unknown {
    try {
      // jinja2 reads \r\n and \r as \n; the library drops the one trailing newline itself.
      const source = text.replace(/\r\n?/g, '\n');
      return this.jinja.parse(this.jinja.tokenize(source, { lstrip_blocks: true, trim_blocks: true }));
    } catch (err) {
      throw new PonderError('CHAT_TEMPLATE_SYNTAX', `${this.label(name)} cannot be parsed: ${(err as Error).message}`, {
        path: this.origin, field: 'chat_template',
        hint: 'the template is not valid Jinja, or uses syntax @huggingface/jinja does not support (spec/chat.md lists what it does)',
      });
    }
  }

  /** Which template a render uses: the one named, else `tool_use` when tools are given and it exists, else `default` (transformers' rule). */
  private choose(options: ChatRenderOptions): string | null {
    if (this.names.length === 0) {
      if (options.templateName !== undefined) {
        throw new PonderError('CHAT_TEMPLATE_MISSING', `there is no chat template named ${JSON.stringify(options.templateName)}: this tokenizer has a single template`, { field: 'templateName', hint: 'leave templateName out' });
      }
      return null;
    }
    if (options.templateName !== undefined) {
      if (!this.programs.has(options.templateName)) {
        throw new PonderError('CHAT_TEMPLATE_MISSING', `there is no chat template named ${JSON.stringify(options.templateName)}`, { field: 'templateName', hint: `the templates are: ${this.names.join(', ')}` });
      }
      return options.templateName;
    }
    if (options.tools !== undefined && this.programs.has('tool_use')) return 'tool_use';
    if (this.programs.has('default')) return 'default';
    throw new PonderError('CHAT_TEMPLATE_MISSING', `this tokenizer has several chat templates and none is named "default" (${this.names.join(', ')})`, {
      field: 'templateName', hint: 'choose one with templateName',
    });
  }

  /** The prompt text for `messages`, exactly as transformers' apply_chat_template(..., tokenize=False) renders it. */
  render(messages: readonly ChatMessage[], options: ChatRenderOptions = {}): string {
    checkMessages(messages);
    const name = this.choose(options);
    const kwargs = options.templateKwargs ?? {};
    for (const reserved of RESERVED_VARIABLES) {
      if (Object.hasOwn(kwargs, reserved)) throw new PonderError('ARG_INVALID', `templateKwargs may not set ${reserved}; it is a render option of its own`, { field: `templateKwargs.${reserved}`, hint: 'pass it through the render options' });
    }
    if (options.continueFinalMessage && options.addGenerationPrompt) {
      throw new PonderError('CHAT_MESSAGES', 'continueFinalMessage and addGenerationPrompt cannot both be set', {
        hint: 'addGenerationPrompt starts a new assistant turn; continueFinalMessage continues the last one. Choose one',
      });
    }
    let chat: unknown[] = [...messages];
    let finalText = '';
    if (options.continueFinalMessage) ({ chat, finalText } = markFinalMessage(messages));

    const globals = new this.jinja.Environment();
    for (const [k, v] of Object.entries({ false: false, true: true, none: null, False: false, True: true, None: null })) globals.set(k, v);
    globals.set('raise_exception', (message: unknown) => { throw new TemplateRaised(String(message)); });
    globals.set('strftime_now', (format: unknown) => strftime((options.now ?? (() => new Date()))(), String(format)));
    globals.set('range', pythonRange);
    // Render variables shadow globals (as in jinja2), so they live in a child scope.
    const scope = new this.jinja.Environment(globals);
    const variables: Record<string, unknown> = {
      ...this.specialTokens, ...kwargs,
      messages: chat, tools: options.tools ?? null, documents: options.documents ?? null, add_generation_prompt: options.addGenerationPrompt ?? false,
    };
    let rendered: string;
    try {
      for (const [k, v] of Object.entries(variables)) scope.set(k, v);
      rendered = String(new this.jinja.Interpreter(scope).run(this.programs.get(name)).value);
    } catch (err) {
      if (err instanceof PonderError) throw err;
      if (err instanceof TemplateRaised) {
        throw new PonderError('CHAT_TEMPLATE_RAISED', `${this.label(name)} refused the messages: ${err.message}`, {
          field: 'messages', hint: 'the template enforces this rule on the conversation (raise_exception); change the messages to follow it',
        });
      }
      const message = err instanceof RangeError && /call stack/i.test(err.message) ? 'recursion too deep' : (err as Error).message;
      throw new PonderError('CHAT_TEMPLATE_RENDER', `${this.label(name)} failed while rendering: ${message}`, {
        hint: 'the template uses a feature @huggingface/jinja does not support, or reads a message field that is missing or of another type (spec/chat.md)',
      });
    }
    return options.continueFinalMessage ? cutAtFinalMessage(rendered, finalText) : rendered;
  }
}

function checkMessages(messages: readonly ChatMessage[]): void {
  const bad = (what: string): PonderError => new PonderError('CHAT_MESSAGES', `messages ${what}`, {
    field: 'messages', hint: 'pass a list of {role: "system" | "user" | "assistant" | ..., content: "..."} objects',
  });
  if (!Array.isArray(messages)) throw bad(`must be a list, got ${messages === null ? 'null' : typeof messages}`);
  messages.forEach((m: unknown, i) => {
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw bad(`[${i}] is ${m === null ? 'null' : Array.isArray(m) ? 'a list' : typeof m}, not an object`);
    if (typeof (m as ChatMessage).role !== 'string') throw bad(`[${i}] has no string "role"`);
  });
}

/** A copy of the chat whose last text ends in CONTINUE_TAG, and that text (transformers' continue_final_message). */
function markFinalMessage(messages: readonly ChatMessage[]): { chat: unknown[]; finalText: string } {
  const noText = (what: string): PonderError => new PonderError('CHAT_MESSAGES', `continueFinalMessage is set but ${what}`, {
    field: 'messages', hint: 'the last message must have text content to continue',
  });
  if (messages.length === 0) throw noText('there are no messages');
  const chat = structuredClone(messages) as ChatMessage[];
  const last = chat[chat.length - 1];
  if (typeof last.content === 'string') {
    const finalText = last.content;
    last.content = last.content + CONTINUE_TAG;
    return { chat, finalText };
  }
  if (Array.isArray(last.content)) {
    for (let i = last.content.length - 1; i >= 0; i--) {
      const block = last.content[i] as { text?: unknown } | null;
      if (typeof block === 'object' && block !== null && typeof block.text === 'string') {
        const finalText = block.text;
        block.text = block.text + CONTINUE_TAG;
        return { chat, finalText };
      }
    }
    throw noText('the final message has no text block to continue');
  }
  throw noText('the final message has no content to continue');
}

function cutAtFinalMessage(rendered: string, finalText: string): string {
  const tag = CONTINUE_TAG.trim();
  if (!rendered.includes(pyStrip(finalText)) || !rendered.includes(tag)) {
    throw new PonderError('CHAT_MESSAGES', 'continueFinalMessage is set but the final message does not appear in the rendered chat (the template rewrites or drops it)', {
      field: 'messages', hint: 'this template cannot continue that message; use addGenerationPrompt instead',
    });
  }
  const at = rendered.lastIndexOf(tag);
  // Where the template kept the tag's trailing space, the message's own spacing survived too.
  return rendered.slice(at, at + CONTINUE_TAG.length) === CONTINUE_TAG ? rendered.slice(0, at) : pyRstrip(rendered.slice(0, at));
}
