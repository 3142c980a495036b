"""Configuration as typed, validated, documented data.

Every option of spoofrl lives in a dataclass field declared with `option(default, "doc")`.
`from_dict` turns a nested dict (from YAML) into those dataclasses, refusing unknown keys, wrong
types and values out of range with a message naming the key; `to_dict` goes back; `apply_overrides`
applies command-line `--set a.b=value` strings (values parsed as YAML); `describe` lists every option
with its doc.

Ranges are declared on the field: `option(1e-4, "doc", gt=0, le=10)` (ge/gt/le/lt: inclusive/exclusive
bounds, checked for numbers and for each number of a list, before the section's validate()). Every float
must be finite (no .nan, .inf) unless its option says `finite=False`; for a float without a declared range
this is checked after validate(), whose own message comes first. Errors about one option are
`OptionError`s carrying the dotted `key`, so a loader can point at the line of the YAML file that set it
(`load_yaml_lines`, `key_line`, `error_location`).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from spoofrl.errors import ConfigError

_MISSING = dataclasses.MISSING


class OptionError(ConfigError):
    """A ConfigError about one option: `key` is its dotted path (`optim.lr`, `optim.betas[0]`), `reason` the
    message without the key. `str()` is the message as before; loaders add the file and line."""

    def __init__(self, message: str, key: str = "", reason: str | None = None, relative: bool = False):
        super().__init__(message)
        self.key = key
        self.reason = message if reason is None else reason
        self.relative = relative  # raised by a section's validate(): key is relative to the section

    def __reduce__(self):
        return type(self), (str(self), self.key, self.reason, self.relative)


def _option_error(key: str, reason: str) -> OptionError:
    return OptionError(f"{key}: {reason}" if key else reason, key=key, reason=reason)


def invalid(key: str, reason: str) -> OptionError:
    """For a section's validate(): an error about its option `key` (relative to the section), e.g.
    `raise invalid("sft_steps", "must be at least 1 for sft_then_grpo")`; from_dict adds the section's path."""
    err = _option_error(key, reason)
    err.relative = True
    return err


def option(default: Any = _MISSING, doc: str = "", *, factory: Any = _MISSING, ge: float | None = None,
           gt: float | None = None, le: float | None = None, lt: float | None = None, finite: bool = True):
    """A documented dataclass field. Use `factory` for mutable defaults.

    ge / gt / le / lt bound the value (each number of a list value): >=, >, <=, <. `finite=False` lets a
    float be nan or infinite (say so in the doc); by default every float must be finite."""
    if default is not _MISSING and isinstance(default, (list, dict, set)):
        raise TypeError("use factory= for mutable defaults")
    if ge is not None and gt is not None or le is not None and lt is not None:
        raise TypeError("give at most one lower bound (ge or gt) and one upper bound (le or lt)")
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    kw: dict[str, Any] = {"metadata": {"doc": doc, "bounds": bounds, "finite": finite}}
    if factory is not _MISSING:
        kw["default_factory"] = factory
    elif default is not _MISSING:
        kw["default"] = default
    return dataclasses.field(**kw)


def _bound_text(bounds: dict[str, float]) -> str:
    """{'gt': 0, 'le': 10} -> '(0, 10]'; {'ge': 0} -> '>= 0'."""
    lo = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    hi = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if lo and hi:
        return f"{lo[0]}{_number(lo[1])}, {_number(hi[1])}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {_number(lo[1])}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {_number(hi[1])}"
    return ""


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _check_bounds(value: Any, meta: Any, key: str) -> None:
    """The declared range (and finiteness) of an option, for a number or each number of a list / mapping."""
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_bounds(v, meta, f"{key}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_bounds(v, meta, f"{key}.{k}")
        return
    if dataclasses.is_dataclass(value):
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value) and meta.get("finite", True):
        raise _option_error(key, f"must be a finite number, got {value}")
    bounds = meta.get("bounds") or {}
    ok = (("ge" not in bounds or value >= bounds["ge"]) and ("gt" not in bounds or value > bounds["gt"])
          and ("le" not in bounds or value <= bounds["le"]) and ("lt" not in bounds or value < bounds["lt"]))
    if not ok:
        text = _bound_text(bounds)
        raise _option_error(key, f"must be {'in ' if text[0] in '[(' else ''}{text}, got {_number(value)}")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


# scientific notation without a dot (1e-6, -2E+3): a string to PyYAML, a float to every user
_YAML11_EXPONENT = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp`, converting where lossless (int -> float, dict -> dataclass)."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise _option_error(key, f"{value!r} is not {' or '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise _option_error(key, f"{value!r} is not one of {', '.join(repr(a) for a in get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _option_error(key, f"expected a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _option_error(key, f"expected a mapping, got {value!r}")
        _, val_tp = get_args(tp) or (Any, Any)
        return {k: _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise _option_error(key, f"expected a mapping of {tp.__name__} options, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if tp is float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            # PyYAML follows YAML 1.1, which reads `1e-6` (no dot) as a string; users mean the number
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _option_error(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _option_error(key, f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _option_error(key, f"expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _option_error(key, f"expected a string, got {value!r}")
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise _option_error(key, f"expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict | None, prefix: str = ""):
    """Build dataclass `cls` from `data`, validating keys, types and ranges recursively."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        where = f" in {prefix}" if prefix else ""
        valid = ", ".join(sorted(fields))
        first = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        names = ", ".join(repr(u) for u in unknown)
        plural = "s" if len(unknown) > 1 else ""
        reason = (f"unknown options {names}{where}; valid: {valid}" if plural
                  else f"unknown option {names}; valid{where}: {valid}")
        raise OptionError(f"unknown option{plural} {names}{where}; valid: {valid}", key=first, reason=reason)
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _convert(value, hints[name], key)
        if fields[name].metadata.get("bounds"):  # a declared range: checked before validate() sees the value
            _check_bounds(kwargs[name], fields[name].metadata, key)
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is _MISSING and f.default_factory is _MISSING]
    if missing:
        raise ConfigError(f"missing required option{'s' if len(missing) > 1 else ''} "
                          f"{', '.join((prefix + '.' if prefix else '') + m for m in missing)}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError as err:
            if not prefix:
                raise
            if isinstance(err, OptionError) and err.key and err.relative:  # invalid(key, ...): key in the section
                key = f"{prefix}.{err.key}"
                raise OptionError(f"{key}: {err.reason}", key=key, reason=err.reason) from None
            if isinstance(err, OptionError) and err.key:  # from a nested from_dict: the key is already whole
                raise OptionError(f"{prefix}: {err}", key=err.key, reason=err.reason) from None
            raise OptionError(f"{prefix}: {err}", key=prefix, reason=str(err)) from None
    for name in data:  # the finiteness of floats without a declared range, after validate()'s own messages
        if not fields[name].metadata.get("bounds"):
            _check_bounds(kwargs[name], fields[name].metadata, f"{prefix}.{name}" if prefix else name)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclasses (nested) -> plain dicts/lists suitable for YAML."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=value' -> (['a','b','c'], yaml-parsed value); a key may index a list: 'stages[1].lr=0.1' ->
    (['stages[1]', 'lr'], 0.1)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = _compose_and_construct(raw)[0] if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({_yaml_reason(err, column=True)})") from None
    keys = key.split(".")
    for segment in keys:
        _key_steps(segment, text)
    return keys, value


_SEGMENT = re.compile(r"([^\[\]]+)((?:\[\d+\])*)")


def _key_steps(segment: str, text: str) -> list[str | int]:
    """'stages[1]' -> ['stages', 1]: a key, then the list indices that follow it."""
    match = _SEGMENT.fullmatch(segment.strip())
    if not match:
        raise ConfigError(f"override {text!r}: {segment!r} is not a key or key[index] (e.g. stages[1].lr=0.1)")
    return [match.group(1), *(int(i) for i in re.findall(r"\d+", match.group(2)))]


def _yaml_reason(err: yaml.YAMLError, column: bool = False) -> str:
    """PyYAML's multi-line message (context, problem, a quoted snippet with a caret) as one short line."""
    problem = getattr(err, "problem", None)
    if not problem:
        return " ".join(str(err).split())
    parts = [p for p in (getattr(err, "context", None), problem) if p]
    mark = getattr(err, "problem_mark", None)
    where = f" at column {mark.column + 1}" if column and mark is not None else ""
    return " ".join(": ".join(parts).split()) + where


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Return a copy of nested dict `data` with each `key.path=value` applied."""
    import copy
    data = copy.deepcopy(data)
    for text in overrides or []:
        keys, value = parse_override(text)
        steps = [step for segment in keys for step in _key_steps(segment, text)]
        node: Any = data
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            fresh = None if last else [] if isinstance(steps[i + 1], int) else {}
            node = _override_step(node, step, value if last else fresh, last, text, steps[:i])
    return data


def _override_step(node: Any, step: str | int, new: Any, last: bool, text: str, before: list) -> Any:
    """One step of an override's key into `node`: the child it leads to (made from `new` when absent), or the
    value set there when `last`. A list index may be one past the end: the item is appended."""
    where = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in before).lstrip(".") or "the config"
    if isinstance(step, str):
        if not isinstance(node, dict):
            raise ConfigError(f"override {text!r}: {where} is not a section")
        if not last and node.get(step) is None and isinstance(new, list):
            name = f"{where}.{step}" if before else step
            raise ConfigError(f"override {text!r}: {name} is not in the config, so it has no items to index; give "
                              f"the whole list ({name}=[...])")
        if last or node.get(step) is None:
            node[step] = new
        return node[step]
    if not isinstance(node, list):
        raise ConfigError(f"override {text!r}: {where} is not a list")
    if step > len(node):
        raise ConfigError(f"override {text!r}: {where} has {len(node)} item(s); index {step} is past its end "
                          f"(index {len(node)} appends one)")
    if step == len(node):
        node.append(new)
    elif last:
        node[step] = new
    return node[step]


def flatten(data: dict, keep_whole: tuple[str, ...] = (), prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; a section named in `keep_whole` stays one value."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key not in keep_whole:
            out.update(flatten(value, keep_whole, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any, limit: int = 60) -> str:
    return _cut(repr(value), limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _contrast(old: Any, new: Any, limit: int = 60) -> tuple[str, str]:
    """Two differing values as short texts. Cut at the start, long values that begin alike would read the same:
    those are cut around where they first differ instead."""
    short_old, short_new = _short(old, limit), _short(new, limit)
    if short_old != short_new:
        return short_old, short_new
    a, b = repr(old), repr(new)
    start = max(len(os.path.commonprefix([a, b])) - limit // 3, 0)
    return "..." + _cut(a[start:], limit - 3), "..." + _cut(b[start:], limit - 3)


def differences(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """'key: old -> new' for every differing key of two flat dicts (long values cut, showing where they differ),
    sorted by key."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in ignore)
    return [f"{k}: {' -> '.join(_contrast(old.get(k), new.get(k)))}" for k in keys]


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with a clear error for a missing file or bad syntax."""
    return load_yaml_lines(path)[0]


# A config is a few KB. The bounds keep a hostile file (a config.yaml in a model folder someone sent) from taking
# the memory or the stack: a few hundred bytes of nested aliases expand to gigabytes once walked or copied.
MAX_CONFIG_BYTES = 4 << 20
MAX_VALUES = 100_000   # values of a document, those an alias brings in counted again (expanded)
MAX_NESTING = 100


class _Refused(yaml.MarkedYAMLError):
    """A YAML document the bounded loader will not build (its message is the reason, at the line of the mark)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a bound on the values of a document with its aliases expanded (recursive aliases
    refused) and on nesting, checked while composing: before anything walks or copies the expanded tree."""

    def __init__(self, stream):
        super().__init__(stream)
        self._expanded_size: dict[int, int] = {}   # id(node) -> its values, aliases expanded
        self._values = 0
        self._depth = 0

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            self._count_alias(node, mark)
            return node
        self._count(1, mark, "the file has more than {limit} values; a config has far fewer")
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise _Refused(problem=f"values nested deeper than {MAX_NESTING} levels", problem_mark=mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._expanded_size[id(node)] = 1 + sum(self._expanded_size[id(child)] for child in _children(node))
        return node

    def _count_alias(self, node: yaml.Node, mark) -> None:
        size = self._expanded_size.get(id(node))
        if size is None:  # the anchored node is still being composed: the alias is inside it
            raise _Refused(problem="recursive alias (a value that contains itself)", problem_mark=mark)
        self._count(size, mark, "YAML aliases expand the file to more than {limit} values; write them out instead")

    def _count(self, values: int, mark, reason: str) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            raise _Refused(problem=reason.format(limit=MAX_VALUES), problem_mark=mark)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _read_config_text(path: Path) -> str:
    """The file's text: at most MAX_CONFIG_BYTES, UTF-8, else a ConfigError naming the file (and line)."""
    with path.open("rb") as fh:
        raw = fh.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MB; a config file is a few KB "
                          f"(is this the right file?)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{path}:{line}: not a UTF-8 text file (byte 0x{raw[err.start]:02x} at offset "
                          f"{err.start})") from None


def _compose_and_construct(text: str) -> tuple[Any, yaml.Node | None]:
    """(data, node) of a one-document YAML text, through the bounded loader; YAMLErrors propagate."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    finally:
        loader.dispose()


def _yaml_error_message(path: Path, text: str, err: yaml.YAMLError) -> str:
    """`FILE:LINE: reason` for a YAML error of the file's text."""
    if isinstance(err, yaml.reader.ReaderError):  # a control character (NUL, ...): binary data
        line = text.count("\n", 0, err.position) + 1
        return f"{path}:{line}: not a text file (character #x{err.character:04x} at offset {err.position})"
    mark = getattr(err, "problem_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    if isinstance(err, _Refused):
        return f"{path}{line}: {err.problem}"
    return f"{path}{line}: invalid YAML ({_yaml_reason(err)})"


_TYPE_NAMES = {list: "a list", str: "a string", int: "an int", float: "a float", bool: "a boolean"}


def load_yaml_lines(path: str | Path) -> tuple[dict, dict[str, int]]:
    """`load_yaml`, plus the line (1-based) of every key of the file: {'optim': 3, 'optim.lr': 4,
    'optim.betas[0]': 5, ...}, for messages that point at the line (see `key_line`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = _read_config_text(path)
    try:
        data, node = _compose_and_construct(text)
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_error_message(path, text, err)) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        got = _TYPE_NAMES.get(type(data), type(data).__name__)
        raise ConfigError(f"{path}: expected a mapping (key: value lines) at the top level, got {got}")
    lines: dict[str, int] = {}
    _key_lines(node, "", lines, set())
    return data, lines


def _key_lines(node: yaml.Node, prefix: str, out: dict[str, int], active: set[int]) -> None:
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        # after construction, merge keys (<<) are flattened into node.value ahead of the mapping's own keys;
        # the last occurrence of a key wins, as in the constructed data
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            out[key] = key_node.start_mark.line + 1
            _key_lines(value_node, key, out, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            out[key] = item.start_mark.line + 1
            _key_lines(item, key, out, active)
    active.discard(id(node))


def key_line(lines: dict[str, int], key: str) -> int | None:
    """The line of `key` (dotted, with [i] for list items) in `lines` from `load_yaml_lines`, else the line of
    the nearest enclosing key that is in the file; None when neither is."""
    while key:
        if key in lines:
            return lines[key]
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return None


def error_location(err: ConfigError, where: str, lines: dict[str, int] | None = None,
                   overridden: tuple[str, ...] = (), override_label: str = "--set") -> str:
    """One line for a config error of the file `where`: `FILE:LINE: key: reason` for an OptionError whose key
    (or an enclosing section) is in the file, `FILE: key (from --set): reason` for one whose value came from
    an override (`overridden`: the dotted keys set by --set; `override_label` names them), `FILE: message`
    otherwise."""
    if not isinstance(err, OptionError) or not err.key:
        return f"{where}: {err}"
    key = err.key
    plain = re.sub(r"\([^)]*\)", "", key)  # model.frontend(logmel).n_mels -> model.frontend.n_mels
    if any(plain == o or plain.startswith((o + ".", o + "[")) for o in overridden):
        return f"{where}: {key} (from {override_label}): {err.reason}"
    line = key_line(lines, plain) if lines is not None else None
    return f"{where}{'' if line is None else f':{line}'}: {key}: {err.reason}"


def save_yaml(data: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(data), sort_keys=False))


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) for every option of `cls`, nested sections flattened."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.append((key, "section", "", f.metadata.get("doc", "")))
            rows.extend(describe(tp, key + "."))
            continue
        if f.default is not _MISSING:
            default = repr(f.default)
        elif f.default_factory is not _MISSING:
            default = repr(to_dict(f.default_factory()))
        else:
            default = "(required)"
        doc = f.metadata.get("doc", "")
        bounds = _bound_text(f.metadata.get("bounds") or {})
        if bounds:
            doc = f"{doc} (allowed: {bounds})" if doc else f"allowed: {bounds}"
        rows.append((key, _type_name(tp), default, doc))
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is list and typing.get_args(tp) else None
        if dataclasses.is_dataclass(item):   # the fields of each item (e.g. stages[].objective)
            rows.extend(describe(item, key + "[]."))
    return rows


def config_dir() -> Path:
    """The folder of bundled configs: the repository's configs/ or the copy packaged with spoofrl."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_configs", here.parents[1] / "configs"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("bundled configs not found (expected configs/ beside src/ or spoofrl/_configs)")


def resolve_preset(kind: str, name_or_path: str) -> Path:
    """A preset name (e.g. 'lcnn-lfcc' in configs/models/) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        return path
    folder = config_dir() / kind
    candidate = folder / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"unknown {kind[:-1] if kind.endswith('s') else kind} preset '{name_or_path}'; "
                          f"known: {', '.join(known)}")
    return candidate
