#!/usr/bin/env python3
"""Expected outputs for Flover's Jinja engine, rendered by Python's jinja2 the way
transformers renders chat templates (ImmutableSandboxedEnvironment with trim_blocks,
lstrip_blocks and loop controls; raise_exception, tojson and the generation tag as
transformers defines them).

Writes
  tests/fixtures/chat_templates/expected.json: each published chat template of
      tests/fixtures/chat_templates/*.jinja and each built-in template of
      common/chat_templates/*.jinja rendered for several conversations;
  tests/fixtures/jinja/expected.json: small templates that pin down the engine's
      semantics (SNIPPETS below).
The C++ tests (tests/common/jinja_golden_test.cc) compare with these files; they need
no Python. Rerun after changing a template or a case, with jinja2 pinned in a venv of
its own (build/venv is the HTTP tests', scripts/python-env.sh):

  python3 -m venv build/jinja-venv && build/jinja-venv/bin/pip install jinja2==3.1.4
  build/jinja-venv/bin/python scripts/reference/chat_template_fixtures.py
"""

import json
import pathlib
import re
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

JINJA2_VERSION = "3.1.4"
ROOT = pathlib.Path(__file__).resolve().parents[2]
CHAT_FIXTURES = ROOT / "tests" / "fixtures" / "chat_templates"
BUILTINS = ROOT / "common" / "chat_templates"
SNIPPETS_OUT = ROOT / "tests" / "fixtures" / "jinja" / "expected.json"


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker as far as rendering goes: {% generation %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def render(env, source, variables):
    """{"output": text} or {"error": "Type: message"}. Object addresses are masked, so
    that the files are the same on every run."""
    try:
        return {"output": re.sub(r" at 0x[0-9a-f]+", " at 0x...", env.from_string(source).render(**variables))}
    except Exception as e:  # noqa: BLE001 - every failure is an expected outcome to record
        return {"error": f"{type(e).__name__}: {e}"}


# ---------------------------------------------------------------- chat templates

TOKENS = {  # bos_token, eos_token of the model each template belongs to
    "chatml": ("<s>", "</s>"),
    "gemma": ("<bos>", "<eos>"),
    "llama2": ("<s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral": ("<s>", "</s>"),
    "mistral-v0.2": ("<s>", "</s>"),
    "mistral-v0.3": ("<s>", "</s>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "qwen2": ("", "<|im_end|>"),
    "qwen2.5": ("", "<|im_end|>"),
    "tinyllama": ("<s>", "</s>"),
    "zephyr": ("<s>", "</s>"),
}


def msg(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "user": [msg("user", "Hello!")],
    "system_user": [msg("system", "You are a pirate."), msg("user", "Hi there")],
    "multi_turn": [msg("user", "What is 2+2?"), msg("assistant", "4"), msg("user", "And times 3?")],
    "system_multi_turn": [
        msg("system", "Be brief."),
        msg("user", "Hi"),
        msg("assistant", "Hello! How can I help?"),
        msg("user", "Tell me a joke."),
    ],
    "whitespace": [msg("user", "  padded \n"), msg("assistant", " answer\t"), msg("user", "next ")],
    "unicode": [msg("user", 'Grüße, 世界! 🎉 "quoted" \\ back\u00a0nbsp')],
    "not_alternating": [msg("user", "a"), msg("user", "b")],
    "system_only": [msg("system", "Only a system message.")],
    "late_system": [msg("user", "u1"), msg("assistant", "a1"), msg("system", "s2"), msg("user", "u2")],
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

# Conversations with tools: (messages, tools), for the templates that take tools.
TOOL_CONVERSATIONS = {
    "tools_user": ([msg("system", "You help."), msg("user", "Weather in Paris?")], [WEATHER_TOOL]),
    "tools_call": (
        [
            msg("user", "Weather in Paris?"),
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call12345",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call12345", "content": '{"temperature": 21.5}'},
            msg("assistant", "It is 21.5 °C in Paris."),
            msg("user", "Thanks"),
        ],
        [WEATHER_TOOL],
    ),
}
TOOL_TEMPLATES = {"qwen2.5", "llama3.1", "mistral-v0.3"}


def chat_cases(env):
    cases = []
    sources = [(p.stem, p, "fixture") for p in sorted(CHAT_FIXTURES.glob("*.jinja"))]
    sources += [(p.stem, p, "builtin") for p in sorted(BUILTINS.glob("*.jinja"))]
    for name, path, kind in sources:
        source = path.read_text(encoding="utf-8")
        bos, eos = TOKENS[name]
        conversations = {k: (v, None) for k, v in CONVERSATIONS.items()}
        if kind == "fixture" and name in TOOL_TEMPLATES:
            conversations.update(TOOL_CONVERSATIONS)
        for conversation, (messages, tools) in conversations.items():
            for generation_prompt in (True, False):
                variables = {
                    "messages": messages,
                    "bos_token": bos,
                    "eos_token": eos,
                    "add_generation_prompt": generation_prompt,
                    "tools": tools,
                    "documents": None,
                }
                case = {
                    "name": f"{kind}:{name}/{conversation}/{'gen' if generation_prompt else 'nogen'}",
                    "template": str(path.relative_to(ROOT)),
                    "variables": variables,
                }
                case.update(render(env, source, variables))
                cases.append(case)
    return cases


# ---------------------------------------------------------------- snippets
# (template, variables) or (template, variables, "unsupported") where Flover refuses
# on purpose what jinja2 renders.

V = {
    "messages": [msg("system", "S"), msg("user", "Hi"), msg("assistant", "Yo")],
    "d": {"b": 2, "a": 1, "nested": {"k": [1, 2, {"x": None}]}},
    "s": "Hello, World",
    "u": "Grüße 世界 🎉",
    "n": 7,
    "f": 2.5,
    "empty": [],
    "words": ["banana", "Apple", "cherry"],
}

SNIPPETS = [
    # output of values
    ("{{ 1 }}|{{ -3 }}|{{ 1.0 }}|{{ 2.5e3 }}|{{ 1e16 }}|{{ 1e-5 }}|{{ 0.1 + 0.2 }}|{{ 1_000 }}", {}),
    ("{{ none }}|{{ None }}|{{ true }}|{{ False }}|{{ x }}|{{ [1, 'a', none, true] }}|{{ ('a',) }}|{{ () }}", {}),
    ("{{ d }}|{{ {'q': \"it's\"} }}|{{ ['a\\nb', 'c\\\\d'] }}", V),
    ("{{ 'a' 'b' }}|{{ \"\\x41\\u00e9\\t|\" }}|{{ 'it\\'s' }}|{{ '\\d\\q' }}|{{ '\\101' }}", {}),
    ("{{ 0x1F }}|{{ 0o17 }}|{{ 0b101 }}|{{ 0_0 }}|{{ 1_2.5e-1_0 }}", {}),
    ("{{ 007 }}", {}),
    # arithmetic
    ("{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 % -3 }}|{{ 10 / 4 }}|{{ 4 / 2 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 2 ** 3 ** 2 }}", {}),
    ("{{ 7.5 // 2 }}|{{ -7.5 % 2 }}|{{ 1 + 2.0 }}|{{ true + 1 }}|{{ 3 * 'ab' }}|{{ 'ab' * 0 }}|{{ [1] * 3 }}|{{ [1, 2] + [3] }}", {}),
    ("{{ 'a' ~ 1 ~ none ~ x ~ [1] }}|{{ -n }}|{{ +f }}|{{ not n }}|{{ n - 10 }}", V),
    ("{{ 1 + 2 * 3 - 4 / 2 }}|{{ (1 + 2) * 3 }}|{{ -2 ** 2 }}|{{ 'x' ~ (2 + 3) }}|{{ 1 ~ 2 * 3 }}", {}),
    ("{{ 'x' ~ 2 + 3 }}", {}),
    ("{{ '%s and %d%%' % ('a', 3.9) }}|{{ '%s' % none }}|{{ '%r' % 'q' }}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{{ 1 // 0 }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ x + 1 }}", {}),
    # comparisons and logic
    ("{{ 1 == 1.0 }}|{{ true == 1 }}|{{ '1' == 1 }}|{{ none == none }}|{{ x == x }}|{{ [1, 2] == [1, 2] }}|{{ (1,) == [1] }}", {}),
    ("{{ 1 < 2 < 3 }}|{{ 3 > 2 > 2 }}|{{ 'a' < 'b' }}|{{ 'B' < 'a' }}|{{ [1, 2] < [1, 3] }}|{{ 'é' > 'z' }}", {}),
    ("{{ none < 1 }}", {}),
    ("{{ 1 and 'x' }}|{{ 0 and 'x' }}|{{ '' or 'y' }}|{{ 'a' or 'b' }}|{{ none or [] }}|{{ not none and 1 }}", {}),
    ("{{ 'ell' in s }}|{{ 'z' not in s }}|{{ 2 in [1, 2] }}|{{ 'a' in d }}|{{ 1 in d }}|{{ 'x' in y }}|{{ 'role' in messages[0] }}", V),
    ("{{ 1 in 'abc' }}", {}),
    ("{{ 'yes' if n > 5 else 'no' }}|{{ 'yes' if n > 50 }}|{{ ('yes' if false) is defined }}|{{ 1 if 0 else 2 if 0 else 3 }}", V),
    # attribute and item access
    ("{{ d.a }}|{{ d['b'] }}|{{ d.nested.k[2].x }}|{{ d.nested.k.1 }}|{{ d.missing }}|{{ d['missing'] is defined }}", V),
    ("{{ messages[0].role }}|{{ messages[-1]['content'] }}|{{ messages[5] is defined }}|{{ messages[1:] | length }}", V),
    ("{{ s[0] }}|{{ s[-1] }}|{{ s[1:4] }}|{{ s[::-1] }}|{{ s[::2] }}|{{ s[-5:] }}|{{ s[:100] }}|{{ s[7:2] }}|{{ s[7:2:-1] }}", V),
    ("{{ u[0] }}{{ u[6] }}|{{ u[-1] }}|{{ u | length }}|{{ u[::-1] }}|{{ u[2:7] }}", V),
    ("{{ [1, 2, 3, 4, 5][1::2] }}|{{ [1, 2, 3][::-1] }}|{{ (1, 2, 3)[:2] }}|{{ [1, 2, 3][-2:] }}|{{ [][5:] }}", {}),
    ("{{ x.y }}", {}),
    ("{{ messages[9].role }}", V),
    ("{{ none.x }}|{{ none.x is defined }}|{{ n.real is defined }}|{{ s.nope is defined }}|{{ messages.append is defined }}", V),
    ("{{ n.real }}", V, "unsupported"),
    ("{{ s[1:2:0] }}", V),
    # loops
    ("{% for m in messages %}{{ loop.index0 }}{{ loop.index }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", V),
    ("{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ loop.nextitem.role if loop.nextitem is defined else '-' }};{% endfor %}", V),
    ("{% for m in messages %}{{ loop.cycle('a', 'b') }}{% endfor %}|{% for i in range(3) %}{{ loop.depth }}{{ loop.depth0 }}{% endfor %}", V),
    ("{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }}{{ ',' if not loop.last }}{% endfor %}", V),
    ("{% for x in empty %}no{% else %}empty{% endfor %}|{% for x in [1] %}{% else %}no{% endfor %}|{% for c in 'abc' %}{{ c }}.{% endfor %}", V),
    ("{% for k in d %}{{ k }},{% endfor %}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d | items %}{{ k }}{% endfor %}", V),
    ("{% for a, b in [[1, 2], (3, 4), 'xy'] %}{{ a }}{{ b }}{% endfor %}|{% for (a, b) in [[5, 6]] %}{{ a + b }}{% endfor %}", {}),
    ("{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("{% for i in range(3) %}{% for j in range(2) %}{{ i }}{{ j }}{{ loop.index }}/{% endfor %}{{ loop.index }};{% endfor %}", {}),
    ("{{ range(3) | list }}|{{ range(1, 10, 3) | list }}|{{ range(5, 0, -2) | list }}|{{ range(0) | list }}", {}),
    ("{% for x in none %}{% endfor %}", {}),
    ("{% for x in x %}a{% endfor %}|{{ range(200000) | length }}", {}),
    # scoping
    ("{% set x = 0 %}{% for i in [1, 2] %}{{ x }}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}", {}),
    ("{% if true %}{% set y = 3 %}{% endif %}{{ y }}|{% for i in [1] %}{% set z = 1 %}{% endfor %}{{ z }}|{% set messages = messages[1:] %}{{ messages | length }}", V),
    ("{% set ns = namespace(total=0, names=[]) %}{% for m in messages %}{% set ns.total = ns.total + 1 %}{% set ns.names = ns.names + [m.role] %}{% endfor %}{{ ns.total }} {{ ns.names | join(',') }}", V),
    ("{% set ns = namespace() %}{% set ns.a = 1 %}{{ ns.a }}|{{ ns.b is defined }}|{{ ns['a'] }}", {}),
    ("{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set t = 1, 'x' %}{{ t }}|{% set c %}block {{ 1 + 1 }}{% endset %}[{{ c }}]", {}),
    ("{% set x = 1 %}{% set x.y = 2 %}", {}),
    # macros
    ("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }}|{{ greet('Bo', punct='?') }}|{{ greet(name='Cy') }}", {}),
    ("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(4) }}|{% macro g() %}{{ outer }}{% endmacro %}{% set outer = 'o' %}{{ g() }}", {}),
    ("{% macro f(a) %}{{ a }}{% endmacro %}{{ f(1, 2) }}", {}),
    # filters
    ("{{ '  x  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ s | upper }}|{{ s | lower }}|{{ 'hELLO wORLD' | capitalize }}|{{ 'a-b(c d[e' | title }}|{{ \"they're 1st\" | title }}", V),
    ("{{ s | length }}|{{ messages | count }}|{{ d | length }}|{{ x | length }}|{{ u | length }}", V),
    ("{{ x | default('d') }}|{{ '' | default('d') }}|{{ '' | default('d', true) }}|{{ none | default('d') }}|{{ x | d }}|{{ 0 | d(5, boolean=true) }}", {}),
    ("{{ messages | first }}|{{ messages | last }}|{{ 'abc' | first }}|{{ 'abc' | last }}|{{ [] | first }}|{{ x | first }}|{{ d | first }}", V),
    ("{{ [1, 2, 3] | join }}|{{ [1, 2, 3] | join(', ') }}|{{ messages | join('/', attribute='role') }}|{{ 'abc' | join('-') }}|{{ x | join(',') }}", V),
    ("{{ 'aaa' | replace('a', 'b') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'abc' | replace('', '-') }}|{{ 1.5 | replace('.', ',') }}", {}),
    ("{{ 1 | string }}|{{ none | string }}|{{ [1] | string }}|{{ x | string }}|{{ '42' | int + 1 }}|{{ '3.7' | int }}|{{ ' 12 ' | int }}|{{ 'x' | int }}|{{ 'x' | int(9) }}|{{ 3.9 | int }}|{{ true | int }}|{{ '0x1A' | int(0, 16) }}|{{ '1_0' | int }}", {}),
    ("{{ '2.5' | float }}|{{ 'x' | float }}|{{ 3 | float }}|{{ ' 1e3 ' | float }}|{{ 'inf' | float }}|{{ '-nan' | float }}", {}),
    ("{{ 'abc' | list }}|{{ d | list }}|{{ x | list }}|{{ (1, 2) | list }}|{{ range(2) | list }}", V),
    ("{{ d | items | list }}|{{ x | items | list }}|{{ d | dictsort }}|{{ d | dictsort(by='value', reverse=true) if false else '' }}", V),
    ("{{ words | sort }}|{{ words | sort(case_sensitive=true) }}|{{ words | sort(reverse=true) }}|{{ messages | sort(attribute='role') | map(attribute='content') | join }}", V),
    ("{{ words | min }}|{{ words | max }}|{{ [3, 1, 2] | max }}|{{ [] | max is defined }}|{{ ['a', 'A', 'b'] | unique | list }}|{{ [1, 2, 1] | unique | list }}", V),
    ("{{ [1, 2, 3] | sum }}|{{ [1.5, 2] | sum }}|{{ messages | sum(attribute='missing', start=0) if false else 0 }}|{{ [1, 2] | sum(start=10) }}", V),
    ("{{ [1, 2, 3] | reverse | list }}|{{ 'abc' | reverse }}|{{ -3 | abs }}|{{ -2.5 | abs }}|{{ d | attr('b') }}|{{ ns | attr('x') if false else 1 }}", V),
    ("{{ messages | map(attribute='role') | list }}|{{ ['a', 'b'] | map('upper') | join }}|{{ messages | map(attribute='name', default='?') | join }}|{{ [[1]] | map('first') | list }}", V),
    ("{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | join(',') }}|{{ [0, 1, 2, 3] | select | list }}|{{ [0, 1, 2, 3] | select('odd') | list }}|{{ [1, none, 2] | reject('none') | list }}", V),
    ("{{ messages | selectattr('name') | list }}|{{ x | selectattr('a') | list }}|{{ [1, 5, 10] | select('>', 4) | list }}|{{ [1, 5, 10] | select('lessthan', 6) | list }}|{{ ['a', 1] | select('string') | list }}", V),
    ("{% if messages | selectattr('role', 'equalto', 'tool') %}gen-true{% endif %}|{% set g = messages | map(attribute='role') %}{{ g | list }}{{ g | list }}", V),
    ("{{ messages | map(attribute='role') | length }}", V),
    ("{{ messages | map(attribute='role') }}", V, "unsupported"),
    ("{% set g = [1, 2, 3] | map('string') %}{{ g | first }}{{ g | list }}", {}, "unsupported"),
    # tojson
    ("{{ d | tojson }}|{{ messages[0] | tojson }}|{{ 'a\"b\\\\c\\n\\u00e9\\u0001' | tojson }}|{{ none | tojson }}|{{ [1.0, 2.5, true] | tojson }}", V),
    ("{{ d | tojson(indent=2) }}|{{ [] | tojson(indent=2) }}|{{ {} | tojson(indent=2) }}|{{ [1, [2]] | tojson(indent='\\t') }}", V),
    ("{{ d | tojson(sort_keys=true) }}|{{ d | tojson(separators=(',', ':')) }}|{{ u | tojson(ensure_ascii=true) }}|{{ (1, 'a') | tojson }}", V),
    ("{{ x | tojson }}", {}),
    ("{{ d.items() | tojson }}", V),
    # tests
    ("{{ x is defined }}{{ x is undefined }}{{ n is defined }}{{ none is none }}{{ x is none }}{{ n is not none }}|{{ s is string }}{{ n is string }}|{{ d is mapping }}{{ messages is mapping }}", V),
    ("{{ s is iterable }}{{ messages is iterable }}{{ d is iterable }}{{ n is iterable }}{{ x is iterable }}{{ none is iterable }}|{{ s is sequence }}{{ x is sequence }}{{ n is sequence }}", V),
    ("{{ n is number }}{{ f is number }}{{ true is number }}{{ s is number }}|{{ n is integer }}{{ true is integer }}{{ f is float }}|{{ true is boolean }}{{ 1 is boolean }}{{ true is true }}{{ 1 is true }}{{ false is false }}", V),
    ("{{ 4 is even }}{{ 3 is odd }}{{ 2.0 is even }}{{ 3.5 is odd }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}|{{ 1 is eq 1 }}{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 2 is ge 2 }}{{ 3 is gt 2 }}{{ 'a' is in 'cat' }}", {}),
    ("{{ 'abc' is lower }}{{ 'Abc' is lower }}{{ 'ABC' is upper }}{{ '123' is lower }}|{{ none is sameas none }}{{ false is sameas false }}{{ 0 is sameas false }}", {}),
    ("{{ messages[0].get('role') }}|{{ messages[0].get('zz') is none }}|{{ messages[0].get('zz', 'dflt') }}|{{ d.keys() | list }}|{{ d.values() | list | length }}", V),
    # string methods
    ("{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ s.startswith('Hell') }}|{{ s.startswith(('x', 'H')) }}|{{ s.endswith('ld') }}", V),
    ("{{ 'a b  c'.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ ' a b '.split(none, 1) }}|{{ ''.split() }}|{{ ''.split(',') }}", {}),
    ("{{ s.upper() }}|{{ s.lower() }}|{{ \"they're 1st\".title() }}|{{ 'hELLO'.capitalize() }}|{{ 'ßa'.upper() }}|{{ 'ǅ'.lower() if false else 'ok' }}|{{ 'ÀÉÎ'.lower() }}|{{ 'straße'.title() }}", V),
    ("{{ 'aaa'.replace('a', 'b') }}|{{ 'aaa'.replace('a', 'b', 1) }}|{{ s.find('o') }}|{{ s.find('z') }}|{{ u.find('世') }}|{{ 'aaaa'.count('aa') }}|{{ '-'.join(['a', 'b']) }}", V),
    ("{{ s.center(20) }}", V, "unsupported"),
    ("{{ s.format(1) }}", V, "unsupported"),
    ("{{ '\\u00a0 x \\u2003'.strip() }}|{{ 'a\\u3000b'.split() }}|{{ ' \\u0085x' | trim }}", {}),
    # whitespace control, trim_blocks, lstrip_blocks
    ("a\n  {% if true %}\n    b\n  {% endif %}\nc", {}),
    ("a\n  {%+ if true %}\n    b\n  {% endif +%}\nc", {}),
    ("a  {%- if true -%}  b  {%- endif -%}  c", {}),
    ("a\n  {{ 'x' }}\n  {{- 'y' -}}\n  z", {}),
    ("{# comment #}\nx\n  {# indented comment #}\ny {#- stripped -#} z", {}),
    ("line\n{% for i in [1, 2] %}\n  item {{ i }}\n{% endfor %}\nend\n", {}),
    ("a\r\nb\r{% if true %}\r\nc{% endif %}\n\n", {}),
    ("{% raw %}{{ not rendered }}{% endraw %}|{%- raw -%}  x  {%- endraw -%}|", {}),
    ("  {% generation %}\n  gen {{ 1 }}\n  {% endgeneration %}\n", {}),
    ("{{ {'a': {'b': 1}} }}|{{ {'a': {'b': 1}}['a']['b'] }}", {}),
    # raise_exception and errors
    ("{{ raise_exception('Conversation roles must alternate') }}", {}),
    ("{% if true %}{{ raise_exception('inside ' ~ 'if') }}{% endif %}", {}),
    ("{{ 'a' | nosuchfilter }}", {}),
    ("{{ 'a' is nosuchtest }}", {}),
    ("{% nosuchtag %}", {}),
    ("{% for x in y %}", {}),
    ("{% endif %}", {}),
    ("{{ 'unterminated }}", {}),
    ("{{ (1, 2 }}", {}),
    ("{% include 'x.html' %}", {}),
    ("{{ s | wordwrap(5) }}", V, "unsupported"),
    ("{% set x = cycler('a') %}{{ x.next() }}", {}, "unsupported"),
]


def snippet_cases(env):
    cases = []
    for i, snippet in enumerate(SNIPPETS):
        source, variables = snippet[0], snippet[1]
        case = {"name": f"snippet {i}", "template": source, "variables": variables}
        if len(snippet) > 2:
            case["flover"] = snippet[2]
        case.update(render(env, source, variables))
        cases.append(case)
    return cases


def write(path, cases):
    document = {
        "generator": "scripts/reference/chat_template_fixtures.py",
        "jinja2": jinja2.__version__,
        "cases": cases,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{path.relative_to(ROOT)}: {len(cases)} cases")


def main():
    if jinja2.__version__ != JINJA2_VERSION:
        sys.exit(f"jinja2 {jinja2.__version__} found; the fixtures are made with {JINJA2_VERSION} (pip install jinja2=={JINJA2_VERSION})")
    env = environment()
    write(CHAT_FIXTURES / "expected.json", chat_cases(env))
    write(SNIPPETS_OUT, snippet_cases(env))


if __name__ == "__main__":
    main()
