/**
 * What a chat template says about its turns, found by rendering probe conversations (no rule per
 * checkpoint): the role an answer is written under, and the token that ends an answer. Plus the
 * one list of default stop ids, each with where it comes from (spec/api.md §Chat).
 */
import type { FamilyStops } from '../models/family.js';
import type { TextTokenizer } from '../tokenizer.js';
import type { ChatMessage, ChatTemplate } from './template.js';

/** A stop id, its token text (when a tokenizer knows it), and every rule that makes it one. */
export interface StopId {
  id: number;
  token: string | null;
  sources: string[];
}

/** Texts no template rewrites (no spaces to trim, no tags to split on). */
const QUESTION = 'PonderProbeQuestion';
const ANSWER = 'PonderProbeAnswer';

function tryRender(template: ChatTemplate, messages: ChatMessage[], addGenerationPrompt: boolean): string | null {
  try {
    return template.render(messages, { addGenerationPrompt });
  } catch {
    return null; // a template may refuse a probe (e.g. it insists on a system message): then it tells us nothing
  }
}

/**
 * The role under which `template` writes an answer the way its generation prompt opens one:
 * 'assistant' when that works (ChatML), else a word of the generation prompt (Huginn's header
 * `<|begin_header|>Huginn<|end_header|>` → 'Huginn'); 'assistant' when no candidate fits.
 */
export function assistantRole(template: ChatTemplate): string {
  const question: ChatMessage = { role: 'user', content: QUESTION };
  const closed = tryRender(template, [question], false);
  const open = tryRender(template, [question], true);
  if (closed === null || open === null || !open.startsWith(closed)) return 'assistant';
  const header = open.slice(closed.length);
  const candidates = ['assistant', ...new Set(header.match(/[A-Za-z][A-Za-z0-9_-]*/g) ?? [])];
  for (const role of candidates) {
    const text = tryRender(template, [question, { role, content: ANSWER }], false);
    if (text !== null && text.startsWith(closed + header + ANSWER)) return role;
  }
  return 'assistant';
}

/** The token that ends an answer: the first token of what the template writes after an answer's text, when it is a special token (`<|im_end|>`, `<|end_turn|>`). */
export function endOfTurnToken(template: ChatTemplate, role: string, tokenizer: TextTokenizer): { id: number; token: string } | null {
  const text = tryRender(template, [{ role: 'user', content: QUESTION }, { role, content: ANSWER }], false);
  const at = text === null ? -1 : text.lastIndexOf(ANSWER);
  if (at === -1) return null;
  const after = text!.slice(at + ANSWER.length);
  if (after.length === 0) return null;
  const first = tokenizer.encode(after, { addSpecialTokens: false })[0];
  if (first === undefined || !tokenizer.specialIds.has(first)) return null;
  return { id: first, token: tokenizer.decode([first]) };
}

function eosIdsOf(value: unknown): number[] {
  if (typeof value === 'number') return [value];
  if (Array.isArray(value)) return value.filter((x): x is number => typeof x === 'number');
  return [];
}

export interface StopIdInputs {
  family: FamilyStops;
  generationConfig: Readonly<Record<string, unknown>> | null;
  tokenizer: TextTokenizer | null;
  /** chat calls: the template's end-of-turn token and the tokenizer's eos_token */
  chat?: { endOfTurn: { id: number; token: string } | null; eosToken: string | undefined };
}

/**
 * The default stop ids: generation_config.json's eos_token_id, or config.json's when there is no
 * generation_config.json (transformers then derives one from the model config); the family's
 * upstream built-in stops; for chat, the end-of-turn token and the tokenizer's eos_token.
 */
export function defaultStopIds(inputs: StopIdInputs): StopId[] {
  const out = new Map<number, StopId>();
  const add = (id: number, source: string): void => {
    let entry = out.get(id);
    if (!entry) {
      let token: string | null = null;
      try { token = inputs.tokenizer ? inputs.tokenizer.decode([id]) : null; } catch { token = null; }
      entry = { id, token, sources: [] };
      out.set(id, entry);
    }
    if (!entry.sources.includes(source)) entry.sources.push(source);
  };
  if (inputs.generationConfig) for (const id of eosIdsOf(inputs.generationConfig.eos_token_id)) add(id, 'generation_config.json eos_token_id');
  else for (const id of inputs.family.eosIds) add(id, 'config.json eos_token_id');
  for (const id of inputs.family.builtin) add(id, inputs.family.builtinSource ?? 'the family\'s upstream generation');
  if (inputs.chat) {
    if (inputs.chat.endOfTurn) add(inputs.chat.endOfTurn.id, 'chat template: ends an answer');
    const eos = inputs.chat.eosToken === undefined ? undefined : inputs.tokenizer?.tokenToId(inputs.chat.eosToken);
    if (eos !== undefined && eos !== null) add(eos, 'tokenizer eos_token');
  }
  return [...out.values()];
}
