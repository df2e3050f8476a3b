import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { compileChatTemplate, loadChatTemplate, specialTokenVariables, chatTemplatesFromConfig, type ChatMessage } from '../src/chat/template.js';
import { strftime } from '../src/chat/strftime.js';
import { PonderError } from '../src/errors.js';

const isCode = (code: string, text?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof PonderError, `expected PonderError ${code}, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  if (text) assert.match(e.message, text);
  return true;
};

// Written by scripts/make-chat-fixtures.py: each case's expected text is what Python's jinja2 renders
// in transformers' chat-template environment.
interface FixtureCase {
  name: string;
  messages: ChatMessage[];
  add_generation_prompt?: boolean;
  continue_final_message?: boolean;
  kwargs?: Record<string, unknown>;
  tools?: unknown[];
  documents?: unknown[];
  expected?: string;
  expected_error?: string;
}
interface Fixture { about: string; template: string; tokenizer_config: Record<string, unknown>; cases: FixtureCase[] }

const FIXTURE_DIR = new URL('./fixtures/chat/', import.meta.url);
const fixtures = readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.json')).sort()
  .map((f) => ({ file: f, ...JSON.parse(readFileSync(new URL(f, FIXTURE_DIR), 'utf8')) as Fixture }));
// the script's fixed clock, in local time like Python's datetime.now()
const FIXED_NOW = () => new Date(2025, 0, 31, 9, 5, 7);

test('the fixtures cover ChatML, thinking, Huginn headers and a strict tool template', () => {
  assert.deepEqual(fixtures.map((f) => f.file), ['chatml-default-system.json', 'chatml-thinking.json', 'huginn-headers.json', 'tools-strict.json']);
});

for (const fixture of fixtures) {
  test(`${fixture.file}: every case renders to the text jinja2 renders in transformers' environment`, async () => {
    const template = await loadChatTemplate({ tokenizerConfig: JSON.stringify({ ...fixture.tokenizer_config, chat_template: fixture.template }) });
    assert.equal(template.origin, 'tokenizer_config.json');
    for (const c of fixture.cases) {
      const render = () => template.render(c.messages, {
        addGenerationPrompt: c.add_generation_prompt, continueFinalMessage: c.continue_final_message,
        templateKwargs: c.kwargs, tools: c.tools, documents: c.documents, now: FIXED_NOW,
      });
      if (c.expected_error !== undefined) {
        assert.throws(render, (e: unknown) => {
          assert.ok(e instanceof PonderError && e.code === 'CHAT_TEMPLATE_RAISED', String(e));
          assert.ok(e.message.endsWith(`: ${c.expected_error}`), e.message);
          return true;
        }, c.name);
      } else {
        assert.equal(render(), c.expected, c.name);
      }
    }
  });
}

test('special tokens are passed as transformers\' special_tokens_map: set and non-empty only, AddedToken as its content, special_tokens_map.json wins', () => {
  const config = {
    bos_token: { __type: 'AddedToken', content: '<s>', special: true }, eos_token: '</s>', unk_token: null, pad_token: '',
    additional_special_tokens: ['<a>', { content: '<b>' }], model_max_length: 10, chat_template: 'x',
  };
  assert.deepEqual(specialTokenVariables(config), { bos_token: '<s>', eos_token: '</s>', additional_special_tokens: ['<a>', '<b>'] });
  assert.deepEqual(specialTokenVariables(config, { eos_token: '<|end|>', additional_special_tokens: [] }), { bos_token: '<s>', eos_token: '<|end|>' });
});

test('template kwargs override special tokens; undefined special tokens stay undefined in the template', async () => {
  const t = await compileChatTemplate('{{ bos_token }}|{{ eos_token is defined }}|{{ tools is none }}|{{ documents is defined }}', { bos_token: '<s>' });
  assert.equal(t.render([]), '<s>|false|true|true');
  assert.equal(t.render([], { templateKwargs: { bos_token: '[B]' } }), '[B]|false|true|true');
  assert.throws(() => t.render([], { templateKwargs: { messages: [] } }), isCode('ARG_INVALID', /messages/));
});

test('chat_template.jinja takes precedence over tokenizer_config.json, whose tokens still apply', async () => {
  const t = await loadChatTemplate({ tokenizerConfig: JSON.stringify({ chat_template: 'config', eos_token: '</s>' }), chatTemplateJinja: 'file {{ eos_token }}\n' });
  assert.equal(t.origin, 'chat_template.jinja');
  assert.equal(t.render([]), 'file </s>'); // jinja2 drops the one trailing newline of the source
});

test('the list form picks "default", "tool_use" when tools are given, or the one named', async () => {
  const config = { chat_template: [{ name: 'default', template: 'D' }, { name: 'tool_use', template: 'T{{ tools | length }}' }, { name: 'rag', template: 'R' }] };
  const t = await loadChatTemplate({ tokenizerConfig: JSON.stringify(config) });
  assert.deepEqual(t.names, ['default', 'tool_use', 'rag']);
  assert.equal(t.render([]), 'D');
  assert.equal(t.render([], { tools: [{}, {}] }), 'T2');
  assert.equal(t.render([], { templateName: 'rag', tools: [{}] }), 'R');
  assert.throws(() => t.render([], { templateName: 'nope' }), isCode('CHAT_TEMPLATE_MISSING', /nope/));
  const noDefault = await loadChatTemplate({ tokenizerConfig: JSON.stringify({ chat_template: [{ name: 'a', template: 'A' }] }) });
  assert.throws(() => noDefault.render([]), isCode('CHAT_TEMPLATE_MISSING', /none is named "default"/));
});

test('a malformed chat_template is CHAT_TEMPLATE_INVALID; none at all is CHAT_TEMPLATE_MISSING', async () => {
  assert.equal(chatTemplatesFromConfig({}), null);
  assert.equal(chatTemplatesFromConfig({ chat_template: null }), null);
  for (const bad of [42, { name: 'x' }, [], [{ name: 'a' }], [{ name: 'a', template: 'x' }, { name: 'a', template: 'y' }]]) {
    assert.throws(() => chatTemplatesFromConfig({ chat_template: bad }), isCode('CHAT_TEMPLATE_INVALID'), JSON.stringify(bad));
  }
  await assert.rejects(loadChatTemplate({ tokenizerConfig: '{"eos_token": "</s>"}' }), isCode('CHAT_TEMPLATE_MISSING'));
  await assert.rejects(loadChatTemplate({ tokenizerConfig: '{"chat_template": ' }), isCode('TOKENIZER_INVALID', /tokenizer_config\.json/));
  await assert.rejects(loadChatTemplate({ tokenizerConfig: '[]' }), isCode('TOKENIZER_INVALID'));
});

test('syntax errors are reported when the template is loaded, render failures when it renders', async () => {
  await assert.rejects(compileChatTemplate('{% for m in messages %}{{ m.role }}'), isCode('CHAT_TEMPLATE_SYNTAX'));
  await assert.rejects(compileChatTemplate('{{ 1 + }}'), isCode('CHAT_TEMPLATE_SYNTAX'));
  const unknownFilter = await compileChatTemplate('{{ messages | frobnicate }}');
  assert.throws(() => unknownFilter.render([]), isCode('CHAT_TEMPLATE_RENDER'));
  const recursive = await compileChatTemplate('{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}');
  assert.throws(() => recursive.render([]), isCode('CHAT_TEMPLATE_RENDER'));
  const huge = await compileChatTemplate('{% for i in range(100000000) %}x{% endfor %}');
  assert.throws(() => huge.render([]), isCode('CHAT_TEMPLATE_RENDER', /range/));
  const raised = await compileChatTemplate("{{ raise_exception('no ' ~ messages | length) }}");
  assert.throws(() => raised.render([{ role: 'user', content: 'x' }]), isCode('CHAT_TEMPLATE_RAISED', /: no 1$/));
});

test('messages must be a list of objects with a string role', async () => {
  const t = await compileChatTemplate('{{ messages | length }}');
  for (const bad of [null, 'hi', [null], [['user', 'hi']], [{ content: 'x' }], [{ role: 1, content: 'x' }]]) {
    assert.throws(() => t.render(bad as unknown as ChatMessage[]), isCode('CHAT_MESSAGES'), JSON.stringify(bad));
  }
  assert.equal(t.render([{ role: 'user', content: [{ type: 'text', text: 'x' }] }]), '1');
});

test('continueFinalMessage: not with addGenerationPrompt, needs text, and the text must survive the template', async () => {
  const chatml = await compileChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>{% endfor %}");
  assert.equal(chatml.render([{ role: 'assistant', content: 'Once upon ' }], { continueFinalMessage: true }), '<assistant>Once upon');
  const blocks = await compileChatTemplate("{% for m in messages %}{% for b in m.content %}{{ b.text }}|{% endfor %}{% endfor %}");
  assert.equal(blocks.render([{ role: 'assistant', content: [{ type: 'text', text: 'a' }, { type: 'image' }, { type: 'text', text: 'b' }] }], { continueFinalMessage: true }), 'a||b');
  assert.throws(() => chatml.render([{ role: 'user', content: 'x' }], { continueFinalMessage: true, addGenerationPrompt: true }), isCode('CHAT_MESSAGES'));
  assert.throws(() => chatml.render([], { continueFinalMessage: true }), isCode('CHAT_MESSAGES'));
  assert.throws(() => chatml.render([{ role: 'assistant', content: null }], { continueFinalMessage: true }), isCode('CHAT_MESSAGES'));
  const drops = await compileChatTemplate('{% for m in messages %}{{ m.role }}{% endfor %}');
  assert.throws(() => drops.render([{ role: 'assistant', content: 'gone' }], { continueFinalMessage: true }), isCode('CHAT_MESSAGES', /does not appear/));
});

test('an unavailable library is CHAT_TEMPLATE_UNAVAILABLE with an install hint', async () => {
  await assert.rejects(compileChatTemplate('x', {}, { importLibrary: () => Promise.reject(new Error('Cannot find package')) }), (e: unknown) => {
    assert.ok(e instanceof PonderError && e.code === 'CHAT_TEMPLATE_UNAVAILABLE');
    assert.match(e.hint, /npm install @huggingface\/jinja/);
    return true;
  });
  await assert.rejects(compileChatTemplate('x', {}, { importLibrary: async () => ({}) }), isCode('CHAT_TEMPLATE_UNAVAILABLE'));
});

test('strftime follows Python\'s directives in the C locale', () => {
  const d = new Date(2024, 1, 29, 0, 7, 9, 250); // a Thursday in a leap year, just after midnight
  assert.equal(strftime(d, '%Y-%m-%d %H:%M:%S.%f'), '2024-02-29 00:07:09.250000');
  assert.equal(strftime(d, '%a %A %b %B %d %e %y %j %I %p %w %% %Q'), 'Thu Thursday Feb February 29 29 24 060 12 AM 4 % %Q');
  assert.equal(strftime(new Date(2024, 11, 31, 13, 0, 0), '%j %I%p'), '366 01PM');
});
