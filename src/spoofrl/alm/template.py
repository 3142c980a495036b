"""Chat templates rendered under limits, for both kinds of audio LLM (SmallAlm and the Hugging Face backends).

A chat template is code that comes with a model folder. transformers renders it in jinja2's sandbox, which stops it
from reaching Python's internals but not from asking for 20 GB (`{{ 'x' * 20000000000 }}`) or running for ever
(nested `range(100000)` loops). `ChatTemplate` renders it in a sandbox that also bounds:

- the size of every value it makes: strings and lists from `*`, `+`, `%`, `~`, calls, methods and filters hold at
  most MAX_CHARS characters or items (checked before the operations that multiply sizes: repetition, replace,
  join, indent, wordwrap, expandtabs, format widths; integer arguments are at most MAX_CHARS);
- the output: at most MAX_CHARS characters;
- the work: at most MAX_STEPS Python line events while rendering (counted by a trace function: deterministic,
  where a wall-clock limit would not be);
- the template itself: at most MAX_TEMPLATE_CHARS characters.

A template beyond a limit, with a syntax error, or failing at run time is a one-line ConfigError naming the file
it came from. Rendering matches transformers' (trim_blocks, lstrip_blocks, loop controls, its `tojson`,
`raise_exception` and `strftime_now`, the tokenizer's special tokens as variables, `{% generation %}` blocks).
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any

from jinja2 import TemplateError, nodes
from jinja2.compiler import CodeGenerator
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from spoofrl.errors import ConfigError

MAX_CHARS = 100_000            # a rendered prompt is a few hundred characters; a long system prompt a few thousand
MAX_STEPS = 2_000_000          # a chat template renders in a few thousand line events
MAX_TEMPLATE_CHARS = 1_000_000  # real templates are under 20 KB


class TemplateLimitError(ConfigError):
    """A chat template went past a limit (size or work): the folder is refused, whatever the prompt."""


class TemplateRenderError(ConfigError):
    """A chat template failed on these messages (e.g. a template for string contents given a structured one)."""


class _Exceeded(TemplateError):
    """Raised inside the sandbox when a limit is reached (a TemplateError, so jinja passes it through)."""


def size_of(value: Any, budget: int = MAX_CHARS) -> int:
    """Characters or items of `value`, containers counted with their contents (a list repeating one long list
    is as long as its text), stopping once past `budget` (so measuring costs at most `budget` steps)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if not isinstance(value, (list, tuple, set, frozenset)):
        return 1
    total = len(value)
    for item in value:
        if total > budget:
            break
        if isinstance(item, (str, bytes, list, tuple, dict, set, frozenset)):
            total += size_of(item, budget - total)
    return total


def _check_size(value: Any, what: str) -> Any:
    if size_of(value) > MAX_CHARS:
        raise _Exceeded(f"{what} makes a value of more than {MAX_CHARS} characters or items")
    return value


def _check_ints(args: tuple, kwargs: dict, what: str) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CHARS:
            raise _Exceeded(f"{what} is given the number {value}, more than {MAX_CHARS}")


# the widths and precisions of format specifications: '%999999999s', '%.9999999f', '{:>999999999}'
_PERCENT_SPEC = re.compile(r"%[#0\- +]*(\d*)(?:\.(\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")


def _check_format(text: Any, what: str) -> None:
    if not isinstance(text, str):
        return
    numbers = [n for spec in _PERCENT_SPEC.findall(text) for n in spec if n]
    numbers += [n for spec in _BRACE_SPEC.findall(text) for n in re.findall(r"\d+", spec)]
    if any(len(n) > 6 or int(n) > MAX_CHARS for n in numbers):
        raise _Exceeded(f"{what} asks for a field wider than {MAX_CHARS} characters")


def _expected_size(name: str, args: tuple, kwargs: dict) -> int:
    """An upper bound of the size of what `name` (a filter, or "str." and a method, called with the string first)
    returns, before it runs, for the functions that multiply sizes; 0 for the others (their result is checked
    after)."""
    first = args[0] if args else ""
    name = name if name == "str.join" else name.removeprefix("str.")
    if name == "replace" and len(args) >= 3 and isinstance(first, str):
        old, new = str(args[1]), str(args[2])
        return len(first) + (first.count(old) if old else len(first) + 1) * len(new)
    if name in ("join", "str.join") and len(args) >= 2:
        # the filter join(items, sep), the method sep.join(items)
        items, sep = (args[1], first) if name == "str.join" else (first, args[1])
        try:
            items = list(items)[:MAX_CHARS + 1]
        except TypeError:
            return 0
        return size_of(items) + len(str(sep)) * len(items)
    if name == "indent" and isinstance(first, str):
        width = args[1] if len(args) > 1 else kwargs.get("width", 4)
        width = len(width) if isinstance(width, str) else int(width) if isinstance(width, int) else 0
        return len(first) + (first.count("\n") + 1) * width
    if name == "wordwrap" and isinstance(first, str):
        wrap = args[3] if len(args) > 3 else kwargs.get("wrapstring", "\n")
        return len(first) * (1 + len(str(wrap or "")))
    if name == "expandtabs" and isinstance(first, str):
        tab = args[1] if len(args) > 1 else kwargs.get("tabsize", 8)
        return len(first) * max(int(tab) if isinstance(tab, int) else 8, 1)
    return 0


def _guarded(function, name: str, what: str, *, pass_arg: bool = False):
    """`function` checking its arguments before and its result after (`pass_arg`: the first argument is jinja's
    context / environment, not a value)."""

    @wraps(function)
    def call(*args, **kwargs):
        values = args[1:] if pass_arg else args
        _check_ints(values, kwargs, what)
        if name == "format":
            _check_format(values[0] if values else None, what)
        if _expected_size(name, values, kwargs) > MAX_CHARS:
            raise _Exceeded(f"{what} would make more than {MAX_CHARS} characters")
        return _check_size(function(*args, **kwargs), what)

    return call


def _bounded_range(*args):
    _check_ints(args, {}, "range()")
    return range(*args)


def _raise_exception(message):
    raise TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' tojson: no HTML escaping, its options exposed
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


class _GenerationTag(Extension):
    """transformers' `{% generation %}...{% endgeneration %}` (it marks the assistant's text for masks): its
    content, rendered as is."""

    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _BoundedCodeGenerator(CodeGenerator):
    """Concatenation (`a ~ b`) compiles to a call the environment checks, not to a bare join."""

    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with transformers' chat-template settings and the size limits above."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self):
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols", _GenerationTag])
        self.filters["tojson"] = _tojson
        self.filters = {name: _guarded(f, name, f"the filter {name}", pass_arg=hasattr(f, "jinja_pass_arg"))
                        for name, f in self.filters.items()}
        self.globals.pop("lipsum", None)   # lorem ipsum of any length: no chat template needs it
        self.globals.update(range=_bounded_range, raise_exception=_raise_exception, strftime_now=_strftime_now)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        what = f"the operator {operator}"
        if operator == "*":
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(times, int) and isinstance(seq, (str, list, tuple)) and size_of(seq) * times > MAX_CHARS:
                raise _Exceeded(f"{what} would make more than {MAX_CHARS} characters or items")
        elif operator == "**" and isinstance(left, (int, float)) and isinstance(right, (int, float)):
            if abs(right) > 64 and abs(left) > 1:
                raise _Exceeded(f"{what} is given the exponent {right}")
        elif operator == "+" and size_of(left) + size_of(right) > MAX_CHARS:
            raise _Exceeded(f"{what} would make more than {MAX_CHARS} characters or items")
        elif operator == "%":
            _check_format(left, what)
        return _check_size(super().call_binop(context, operator, left, right), what)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja's signature
        name = getattr(__obj, "__name__", "a function")
        what = f"{name}()"
        _check_ints(args, kwargs, what)
        # a str method, or the sandbox's wrapper of str.format (which keeps the method as __wrapped__)
        bound = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(bound, str):
            if name in ("format", "format_map"):
                _check_format(bound, what)
            if _expected_size(f"str.{name}", (bound, *args), kwargs) > MAX_CHARS:
                raise _Exceeded(f"{what} would make more than {MAX_CHARS} characters")
        return _check_size(super().call(__context, __obj, *args, **kwargs), what)

    def bounded_concat(self, parts: tuple) -> str:
        texts = [str(p) for p in parts]
        if sum(len(t) for t in texts) > MAX_CHARS:
            raise _Exceeded(f"the operator ~ would make more than {MAX_CHARS} characters")
        return "".join(texts)


@contextlib.contextmanager
def _step_limit(limit: int):
    """Count Python line events while the block runs; past `limit`, raise inside the running code (a trace
    function that raises stops tracing and propagates its exception). The previous trace function (a debugger,
    coverage) is restored after."""
    steps = 0

    def trace(frame, event, arg):
        nonlocal steps
        steps += 1
        if steps > limit:
            raise _Exceeded(f"rendering took more than {limit} steps")
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        yield
    finally:
        sys.settrace(previous)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class ChatTemplate:
    """A chat template compiled in the BoundedEnvironment; `origin` (its file) is named in every error."""

    def __init__(self, source: str, origin: str | Path):
        self.source = source
        self.origin = str(origin)
        if not isinstance(source, str) or not source:
            raise ConfigError(f"{self.origin}: the chat template is empty or not text")
        if len(source) > MAX_TEMPLATE_CHARS:
            raise TemplateLimitError(f"{self.origin}: the chat template has {len(source)} characters, more than "
                                     f"{MAX_TEMPLATE_CHARS}")
        try:
            self.template = BoundedEnvironment().from_string(source)
        except (TemplateError, RecursionError, MemoryError, ValueError) as err:
            raise ConfigError(f"{self.origin}: chat template does not compile ({_one_line(err)})") from None
        self._trial()

    def __reduce__(self):
        # copied and pickled (a model's deepcopy, worker processes) by its text: a compiled jinja template is not
        return type(self), (self.source, self.origin)

    def _trial(self) -> None:
        """Render a typical conversation once, so that a template past the limits is refused when its folder is
        loaded, not at the first prompt (a template that merely fails on this conversation may still suit the
        prompts it is given)."""
        try:
            self.render([{"role": "system", "content": "system"}, {"role": "user", "content": "user"}])
        except TemplateRenderError:
            pass

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True, **variables) -> str:
        """The template's text for `messages`; TemplateLimitError past a limit, TemplateRenderError when the
        template fails on them."""
        pieces, total = [], 0
        try:
            with _step_limit(MAX_STEPS):
                for piece in self.template.generate(messages=messages, add_generation_prompt=add_generation_prompt,
                                                    tools=None, documents=None, **variables):
                    total += len(piece)
                    if total > MAX_CHARS:
                        raise _Exceeded(f"its output is longer than {MAX_CHARS} characters")
                    pieces.append(piece)
        except _Exceeded as err:
            raise TemplateLimitError(f"{self.origin}: chat template refused: {err}") from None
        except (MemoryError, RecursionError) as err:
            raise TemplateLimitError(f"{self.origin}: chat template refused: {_one_line(err)}") from None
        except Exception as err:  # noqa: BLE001 - template code from a model folder raises whatever it likes
            raise TemplateRenderError(f"{self.origin}: chat template failed ({_one_line(err)})") from None
        return "".join(pieces)


def template_variables(tokenizer) -> dict[str, Any]:
    """What transformers passes a chat template besides the messages: the tokenizer's special tokens
    (bos_token, eos_token, ...)."""
    special = getattr(tokenizer, "special_tokens_map", None) or {}
    return {k: v for k, v in special.items() if isinstance(v, (str, list))}
