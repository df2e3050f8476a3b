/**
 * `ponder chat`: an interactive conversation with a chat model. Each line typed is a user message;
 * the answer streams with the depth colours (thinking dimmed, or left out with --hide-thinking),
 * followed by a one-line summary on stderr. The session keeps its KV cache across turns where the
 * family allows it (spec/api.md §Chat). `/reset` starts over, `/exit` or end of input quits;
 * Ctrl-C cancels the answer being written and keeps the conversation, and Ctrl-C twice in a row
 * at the prompt quits.
 */
import { createInterface } from 'node:readline';
import { PonderError } from '../errors.js';
import { depthLegend, formatSummary } from '../trace/terminal.js';
import type { ChatOptions, ChatSession, Model } from '../api/model.js';
import { intFlag, parseFlags } from './args.js';
import { CHAT_FLAGS, CHAT_HELP, GENERATION_FLAGS, GENERATION_HELP, chatFlags, disposeRuntime, prepare, printNotes, streamGeneration } from './run.js';
import type { CliIO } from './io.js';

/** An answer may be longer than `run`'s 32-token default. */
const CHAT_MAX_NEW_TOKENS = 512;

export const CHAT_COMMAND_HELP = `ponder chat [options]

An interactive conversation with a chat model (its tokenizer_config.json or chat_template.jinja holds
the template). Type a message and press Enter; the answer streams with each token coloured by the
depth it used (on a terminal), then a summary line goes to stderr. Lines can also come from a pipe
or a file (\`ponder chat -m DIR < questions.txt\`).

  /reset      start a new conversation (the --system message stays)
  /exit       quit (so does end of input, Ctrl-D)
  Ctrl-C      cancel the answer being written; the conversation goes on. Twice at the prompt: quit

${GENERATION_HELP.replace(/\n {2}--prompt[^\n]*\n {2}--ids[^\n]*/, '').replace('tokens to generate (default 32)', `tokens per answer at most (default ${CHAT_MAX_NEW_TOKENS})`)}
${CHAT_HELP}
  --context N             positions the conversation's KV cache holds (default: twice what the first
                          turn needs, at most the model's context; a turn that needs more allocates a
                          larger cache and computes the conversation again). With a large model, set
                          what fits the memory: the old cache is not returned to the WASM memory

Example:
  ponder chat --model ~/models/Ouro-1.4B-Thinking --system "Be brief." --template-arg enable_thinking=false
`;

/** Lines from the input, one at a time; null at the end of input or when closed. */
class LineReader {
  private readonly lines: string[] = [];
  private waiting: ((line: string | null) => void) | null = null;
  private ended = false;

  push(line: string): void {
    if (this.waiting) { const w = this.waiting; this.waiting = null; w(line); } else this.lines.push(line);
  }

  end(): void {
    this.ended = true;
    if (this.waiting) { const w = this.waiting; this.waiting = null; w(null); }
  }

  next(): Promise<string | null> {
    if (this.lines.length > 0) return Promise.resolve(this.lines.shift()!);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => { this.waiting = resolve; });
  }
}

export async function chatCommand(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('chat', argv, { ...withoutPrompt(GENERATION_FLAGS), ...CHAT_FLAGS, context: { type: 'string' } });
  if (values.help) { io.out(CHAT_COMMAND_HELP); return 0; }
  if (positionals.length > 0) throw new PonderError('ARG_INVALID', `chat: unexpected argument ${JSON.stringify(positionals[0])}`, { hint: 'type the messages after it starts; see `ponder chat --help`' });
  if (!io.input) throw new PonderError('ARG_INVALID', 'chat: there is no input to read messages from', { hint: 'run it in a terminal, or pipe the messages in' });
  const conversation = chatFlags(values);
  const capacity = values.context === undefined ? undefined : intFlag('chat', 'context', values.context as string, 0);
  const { model, options, notes, runtime } = await prepare('chat', { 'max-new-tokens': String(CHAT_MAX_NEW_TOKENS), ...values }, io, true);
  try {
    // CHAT_TEMPLATE_MISSING before any output
    const session = model.chatSession({ ...(conversation.system === undefined ? {} : { system: conversation.system }), ...(capacity === undefined ? {} : { capacity }) });
    const turnOptions: ChatOptions = { ...options, ...(conversation.templateKwargs ? { templateKwargs: conversation.templateKwargs } : {}) };
    model.renderChat([...session.messages, { role: 'user', content: '' }], turnOptions); // the template and its arguments work, before the prompt appears
    printNotes(notes, io);

    const interactive = io.inputIsTTY === true;
    io.err(`ponder chat · ${model.label} (${model.family}) · /reset starts over, /exit quits, Ctrl-C cancels an answer\n`);
    io.err(`${depthLegend(model.defaultDepth, io.isTTY === true)}\n`);
    return await converse(model, session, turnOptions, conversation.hideThinking, io, interactive);
  } finally {
    await disposeRuntime(runtime); // an in-process chat leaves no kernel threads behind
  }
}

async function converse(model: Model, session: ChatSession, turnOptions: ChatOptions, hideThinking: boolean, io: CliIO, interactive: boolean): Promise<number> {
  const reader = new LineReader();
  const rl = createInterface({ input: io.input!, output: interactive ? process.stdout : undefined, terminal: interactive });
  rl.on('line', (line) => reader.push(line));
  rl.on('close', () => reader.end());
  let answering: AbortController | null = null;
  let interrupted = false; // the last thing the user did was Ctrl-C
  const onInterrupt = (): void => {
    if (answering) { answering.abort(); interrupted = true; return; }
    if (interrupted) { reader.end(); return; } // a second Ctrl-C in a row at the prompt quits
    interrupted = true;
    io.err('\n(Ctrl-C again to quit, or /exit)\n');
    if (interactive) rl.prompt();
  };
  rl.on('SIGINT', onInterrupt); // a terminal in raw mode delivers Ctrl-C as a key
  const unsubscribe = io.onInterrupt?.(onInterrupt) ?? ((): void => {}); // a pipe's Ctrl-C is a signal
  rl.setPrompt('> ');
  try {
    for (;;) {
      if (interactive) rl.prompt();
      const line = await reader.next();
      if (line === null) break;
      interrupted = false;
      const text = line.trim();
      if (text === '') continue;
      if (text === '/exit' || text === '/quit') break;
      if (text === '/reset') { session.reset(); io.err('(new conversation)\n'); continue; }
      answering = new AbortController();
      try {
        const generation = session.send(line, { ...turnOptions, signal: answering.signal });
        const { result } = await streamGeneration(generation, model, io, { hideThinking, legend: false });
        io.out('\n');
        const cancelled = result.finishReason === 'aborted';
        io.err(`${cancelled ? '(cancelled) ' : ''}${formatSummary(result.summary)} · prompt ${result.promptIds.length} tokens (${result.cachedTokens} from the cache) · finished: ${result.finishReason}\n`);
      } catch (e) {
        if (!(e instanceof PonderError)) throw e;
        io.err(`error[${e.code}]: ${e.message}\n`);
        if (e.hint) io.err(`  hint: ${e.hint}\n`);
      } finally {
        answering = null;
      }
    }
  } finally {
    unsubscribe();
    rl.close();
  }
  return 0;
}

/** The generation flags but --prompt and --ids: the messages are typed. */
function withoutPrompt(flags: typeof GENERATION_FLAGS): typeof GENERATION_FLAGS {
  const { prompt: _prompt, ids: _ids, ...rest } = flags;
  return rest;
}
