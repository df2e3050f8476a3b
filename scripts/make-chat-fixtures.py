#!/usr/bin/python3
"""Writes test/fixtures/chat/*.json: chat templates, the messages rendered with them, and the
prompt text Python's jinja2 produces in the environment transformers' apply_chat_template
renders in (utils/chat_template_utils.py: _compile_jinja_template, render_jinja_template).

Hand-run tooling, never run by CI or tests (they only read the JSON it writes). Needs Debian's
python3-jinja2 (>= 3.1) and nothing else:

    /usr/bin/python3 scripts/make-chat-fixtures.py

The environment reproduced here, as transformers sets it up:
  - ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with loop controls and the
    `generation` block tag (rendered as its body);
  - filter tojson = json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    with those keyword arguments exposed;
  - globals raise_exception(message) (raises TemplateError) and strftime_now(format);
  - render(messages=..., tools=... or None, documents=... or None, add_generation_prompt=...,
    **special_tokens_map, **template_kwargs), special_tokens_map built from tokenizer_config.json the
    way transformers' property does (set, non-empty attributes only; AddedToken -> its content);
  - continue_final_message through the CONTINUE_FINAL_MESSAGE_TAG marker.
strftime_now reads a fixed clock here (FIXED_NOW), which the tests pass to our renderer.
"""
import copy
import datetime
import json
import os

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

OUT_DIR = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'chat')
FIXED_NOW = datetime.datetime(2025, 1, 31, 9, 5, 7)
SPECIAL_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token', 'additional_special_tokens']
CONTINUE_TAG = 'CONTINUE_FINAL_MESSAGE_TAG '


class Generation(Extension):
    """transformers' AssistantTracker without the tracking: {% generation %}...{% endgeneration %} renders its body."""
    tags = {'generation'}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(['name:endgeneration'], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method('_body'), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
    env.filters['tojson'] = tojson
    env.globals['raise_exception'] = raise_exception
    env.globals['strftime_now'] = strftime_now
    return env


def special_tokens_map(tokenizer_config):
    out = {}
    for key in SPECIAL_TOKEN_KEYS:
        value = tokenizer_config.get(key)
        if isinstance(value, dict):
            value = value.get('content')
        if key == 'additional_special_tokens' and isinstance(value, list):
            value = [v['content'] if isinstance(v, dict) else v for v in value]
        if value:
            out[key] = value
    return out


def render(env, template, tokenizer_config, case):
    chat = copy.deepcopy(case['messages'])
    final = None
    if case.get('continue_final_message'):
        final = chat[-1]['content']
        chat[-1]['content'] = final + CONTINUE_TAG
    kwargs = {**special_tokens_map(tokenizer_config), **case.get('kwargs', {})}
    rendered = env.from_string(template).render(
        messages=chat, tools=case.get('tools'), documents=case.get('documents'),
        add_generation_prompt=case.get('add_generation_prompt', False), **kwargs)
    if final is not None:
        assert final.strip() in rendered and CONTINUE_TAG.strip() in rendered
        at = rendered.rindex(CONTINUE_TAG.strip())
        rendered = rendered[:at] if rendered[at:at + len(CONTINUE_TAG)] == CONTINUE_TAG else rendered[:at].rstrip()
    return rendered


# ------------------------------------------------------------------------------------------------
# Templates (ours, written in the formats the checkpoints use) and the conversations rendered

CHATML_DEFAULT_SYSTEM = """\
{% for message in messages %}
  {% if loop.first and message.role != 'system' %}
<|im_start|>system
You are a helpful assistant.<|im_end|>
  {% endif %}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"""

CHATML_THINKING = """\
{%- if messages and messages[0]['role'] == 'system' -%}
  {%- set system_text = messages[0]['content'] -%}
  {%- set turns = messages[1:] -%}
{%- else -%}
  {%- set system_text = 'You are a helpful assistant.' -%}
  {%- set turns = messages -%}
{%- endif -%}
{{- '<|im_start|>system\\n' + system_text + '<|im_end|>\\n' -}}
{%- for message in turns -%}
  {%- set content = message['content'] -%}
  {%- if message['role'] == 'assistant' and '</think>' in content -%}
    {#- earlier answers go back into the context without their reasoning -#}
    {%- set content = content.split('</think>')[-1].lstrip('\\n') -%}
  {%- endif -%}
  {{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '<|im_start|>assistant\\n' -}}
  {%- if enable_thinking is defined and enable_thinking is true -%}
    {{- '<think>\\n' -}}
  {%- elif enable_thinking is defined and enable_thinking is false -%}
    {{- '<think>\\n\\n</think>\\n\\n' -}}
  {%- endif -%}
{%- endif -%}
"""

HUGINN_HEADERS = (
    "{% for message in messages %}"
    "{% set turn = '<|begin_header|>' + message['role'] + '<|end_header|>\\n\\n' + message['content'] | trim + '<|end_turn|>' %}"
    "{% if loop.index0 == 0 %}{% set turn = bos_token + turn %}{% endif %}"
    "{{ turn }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|begin_header|>Huginn<|end_header|>\\n\\n' }}{% endif %}"
)

TOOLS_STRICT = """\
{%- set ns = namespace(system='', expect_user=true, calls=0) -%}
{%- for message in messages -%}
  {%- if message.role == 'system' -%}
    {%- if not loop.first -%}
      {{- raise_exception('A system message may only come first.') -}}
    {%- endif -%}
    {%- set ns.system = message.content -%}
    {%- continue -%}
  {%- endif -%}
  {%- if message.role == 'tool' -%}{%- continue -%}{%- endif -%}
  {%- if (message.role == 'user') != ns.expect_user -%}
    {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
  {%- endif -%}
  {%- set ns.expect_user = not ns.expect_user -%}
{%- endfor -%}
{{ bos_token }}
{%- if ns.system %}[SYSTEM] {{ ns.system }} (today: {{ strftime_now('%d %b %Y') }})
{% endif -%}
{%- if tools is not none %}
[TOOLS]
{% for tool in tools %}
{{ loop.index }}/{{ loop.length }} {{ tool | tojson }}
{% endfor %}
[/TOOLS]
{% endif -%}
{%- if documents %}
{% for doc in documents %}
[DOC {{ loop.index0 }}] {{ doc.title | upper }}: {{ doc.text }}
{% endfor %}
{% endif -%}
{%- for message in messages if message.role != 'system' %}
  {%- if max_turns is defined and loop.index > max_turns %}{% break %}{% endif %}
  {%- if message.role == 'user' %}
[USER] {{ message.content }}
  {%- elif message.role == 'tool' %}
[RESULT {{ message.name }}] {{ message.content | tojson(ensure_ascii=True) }}
  {%- elif message.tool_calls is defined %}
[CALLS] {{ message.tool_calls | map(attribute='function') | list | tojson(separators=(',', ':')) }}
    {%- set ns.calls = ns.calls + message.tool_calls | length %}
  {%- else %}
[ASSISTANT] {% generation %}{{ message.content }}{% endgeneration %}{{ eos_token }}
  {%- endif %}
{% endfor %}
{%- if ns.calls > 0 %}[{{ ns.calls }} call{{ 's' if ns.calls > 1 }}]
{% endif -%}
{%- if add_generation_prompt %}[ASSISTANT] {% endif -%}
"""

QWEN_STYLE_CONFIG = {
    'add_prefix_space': False,
    'bos_token': None,
    'eos_token': '<|im_end|>',
    'pad_token': '<|endoftext|>',
    'unk_token': None,
    'additional_special_tokens': ['<|im_start|>', '<|im_end|>'],
    'model_max_length': 65536,
}

FIXTURES = [
    {
        'name': 'chatml-default-system',
        'about': 'ChatML as the Ouro models use it (<|im_start|>ROLE\\n...<|im_end|>\\n, ids 1 and 2) with a default system prompt '
                 'when the conversation has none; multi-line source relying on trim_blocks and lstrip_blocks',
        'template': CHATML_DEFAULT_SYSTEM,
        'tokenizer_config': QWEN_STYLE_CONFIG,
        'cases': [
            {'name': 'user only, generation prompt', 'add_generation_prompt': True,
             'messages': [{'role': 'user', 'content': 'What is 2+2?'}]},
            {'name': 'own system prompt replaces the default', 'add_generation_prompt': True,
             'messages': [{'role': 'system', 'content': 'Answer in French.'}, {'role': 'user', 'content': 'Hello'}]},
            {'name': 'two turns, no generation prompt',
             'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello! How can I help?'},
                          {'role': 'user', 'content': '  spaces and\nnew lines  '}]},
            {'name': 'continue the final assistant message', 'continue_final_message': True,
             'messages': [{'role': 'user', 'content': 'Count to three.'}, {'role': 'assistant', 'content': 'One, two,'}]},
            {'name': 'empty conversation', 'add_generation_prompt': True, 'messages': []},
        ],
    },
    {
        'name': 'chatml-thinking',
        'about': 'ChatML of the Ouro Thinking models with <think> handling: enable_thinking=True opens the answer with "<think>\\n", '
                 'False closes an empty reasoning block; earlier answers lose their reasoning',
        'template': CHATML_THINKING,
        'tokenizer_config': {**QWEN_STYLE_CONFIG, 'eos_token': {'__type': 'AddedToken', 'content': '<|im_end|>', 'lstrip': False, 'normalized': False, 'rstrip': False, 'single_word': False, 'special': True}},
        'cases': [
            {'name': 'thinking on', 'add_generation_prompt': True, 'kwargs': {'enable_thinking': True},
             'messages': [{'role': 'user', 'content': 'Is 91 prime?'}]},
            {'name': 'thinking off', 'add_generation_prompt': True, 'kwargs': {'enable_thinking': False},
             'messages': [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Is 91 prime?'}]},
            {'name': 'thinking not set', 'add_generation_prompt': True,
             'messages': [{'role': 'user', 'content': 'Is 91 prime?'}]},
            {'name': 'history answer loses its reasoning', 'add_generation_prompt': True, 'kwargs': {'enable_thinking': True},
             'messages': [{'role': 'user', 'content': 'Is 91 prime?'},
                          {'role': 'assistant', 'content': '<think>\n91 = 7 * 13.\n</think>\n\nNo: 91 = 7 × 13.'},
                          {'role': 'user', 'content': 'And 97?'}]},
        ],
    },
    {
        'name': 'huginn-headers',
        'about': "Huginn-0125's header turns: bos_token before the first turn, <|begin_header|>ROLE<|end_header|>\\n\\n, the content "
                 "trimmed (the filter binds tighter than +), <|end_turn|>, and the assistant header 'Huginn'",
        'template': HUGINN_HEADERS,
        'tokenizer_config': {
            'bos_token': '<|begin_text|>', 'eos_token': '<|end_text|>', 'pad_token': '<|pad|>', 'unk_token': None,
            'model_max_length': 4096, 'clean_up_tokenization_spaces': False,
        },
        'cases': [
            {'name': 'system and user, generation prompt', 'add_generation_prompt': True,
             'messages': [{'role': 'system', 'content': 'You are a helpful assistant that can assist users with mathematical reasoning.'},
                          {'role': 'user', 'content': 'Natalia sold clips to 48 friends in April, and half as many in May. How many total?'}]},
            {'name': 'contents are trimmed, headers are not', 'add_generation_prompt': True,
             'messages': [{'role': 'user', 'content': '\n\n  padded question \t\n'}, {'role': 'Huginn', 'content': ' answer '},
                          {'role': 'user', 'content': 'next'}]},
            {'name': 'no generation prompt',
             'messages': [{'role': 'user', 'content': 'Hello'}]},
        ],
    },
    {
        'name': 'tools-strict',
        'about': 'loops with filters, loop.index/length/index0, break/continue, a namespace, raise_exception on bad role order, '
                 'tojson with its options (ensure_ascii, separators), map/list/length/upper filters, tools and documents, '
                 '{% generation %}, strftime_now, and template kwargs',
        'template': TOOLS_STRICT,
        'tokenizer_config': {'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>', 'pad_token': None},
        'cases': [
            {'name': 'tools, a call and its result', 'add_generation_prompt': True,
             'tools': [{'type': 'function', 'function': {'name': 'get_weather', 'description': 'Weather in a city — now',
                                                          'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']}}},
                       {'type': 'function', 'function': {'name': 'clock', 'parameters': {'type': 'object', 'properties': {}}}}],
             'messages': [{'role': 'system', 'content': 'Use tools when needed.'},
                          {'role': 'user', 'content': 'Weather in Zürich?'},
                          {'role': 'assistant', 'tool_calls': [{'type': 'function', 'function': {'name': 'get_weather', 'arguments': {'city': 'Zürich'}}}]},
                          {'role': 'tool', 'name': 'get_weather', 'content': '{"temp": "3 °C", "sky": "clear"}'},
                          {'role': 'user', 'content': 'Thanks!'}]},
            {'name': 'documents and a turn limit', 'add_generation_prompt': True, 'kwargs': {'max_turns': 2},
             'documents': [{'title': 'ouro', 'text': 'Looped language model.'}, {'title': 'huginn', 'text': 'Recurrent depth.'}],
             'messages': [{'role': 'user', 'content': 'Summarise.'}, {'role': 'assistant', 'content': 'Both loop.'},
                          {'role': 'user', 'content': 'This turn is past max_turns.'}]},
            {'name': 'roles out of order are refused',
             'messages': [{'role': 'user', 'content': 'a'}, {'role': 'user', 'content': 'b'}],
             'error': 'Conversation roles must alternate user/assistant/user/assistant/...'},
            {'name': 'a late system message is refused',
             'messages': [{'role': 'user', 'content': 'a'}, {'role': 'system', 'content': 'b'}],
             'error': 'A system message may only come first.'},
        ],
    },
]


def main():
    env = environment()
    os.makedirs(OUT_DIR, exist_ok=True)
    for fixture in FIXTURES:
        out = {
            'about': fixture['about'],
            'generated_by': f'scripts/make-chat-fixtures.py, jinja2 {jinja2.__version__} in transformers\' chat-template environment; '
                            f'strftime_now reads {FIXED_NOW.isoformat()} (local time)',
            'template': fixture['template'],
            'tokenizer_config': fixture['tokenizer_config'],
            'cases': [],
        }
        for case in fixture['cases']:
            entry = {k: v for k, v in case.items() if k != 'error'}
            try:
                rendered = render(env, fixture['template'], fixture['tokenizer_config'], case)
                assert 'error' not in case, f"{case['name']}: expected an error"
                entry['expected'] = rendered
            except jinja2.exceptions.TemplateError as e:
                assert case.get('error') == str(e), f"{case['name']}: {e}"
                entry['expected_error'] = str(e)
            out['cases'].append(entry)
        path = os.path.join(OUT_DIR, fixture['name'] + '.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write('\n')
        print(f"wrote {path}: {len(out['cases'])} cases")


if __name__ == '__main__':
    main()
