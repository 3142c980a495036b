"""Configuration as typed, validated, documented data.

Every option of spoofrl lives in a dataclass field declared with `option(default, "doc")`.
`from_dict` turns a nested dict (from YAML) into those dataclasses, refusing unknown keys and wrong
types with a message naming the key; `to_dict` goes back; `apply_overrides` applies command-line
`--set a.b=value` strings (values parsed as YAML); `describe` lists every option with its doc.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from spoofrl.errors import ConfigError

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, doc: str = "", *, factory: Any = _MISSING):
    """A documented dataclass field. Use `factory` for mutable defaults."""
    if default is not _MISSING and isinstance(default, (list, dict, set)):
        raise TypeError("use factory= for mutable defaults")
    kw: dict[str, Any] = {"metadata": {"doc": doc}}
    if factory is not _MISSING:
        kw["default_factory"] = factory
    elif default is not _MISSING:
        kw["default"] = default
    return dataclasses.field(**kw)


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
        raise ConfigError(f"{key}: {value!r} is not {' or '.join(_type_name(a) for a in args)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(repr(a) for a in get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, val_tp = get_args(tp) or (Any, Any)
        return {k: _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} options, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if tp is float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            # PyYAML follows YAML 1.1, which reads `1e-6` (no dot) as a string; users mean the number
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict | None, prefix: str = ""):
    """Build dataclass `cls` from `data`, validating keys and types recursively."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f" in {prefix}" if prefix else ""
        raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(repr(u) for u in unknown)}{where}; valid: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], f"{prefix}.{name}" if prefix else name)
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
            raise ConfigError(f"{prefix + ': ' if prefix else ''}{err}") from None
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
    """'a.b.c=value' -> (['a','b','c'], yaml-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Return a copy of nested dict `data` with each `key.path=value` applied."""
    import copy
    data = copy.deepcopy(data)
    for text in overrides or []:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: '{k}' is not a section")
            node = child
        node[keys[-1]] = value
    return data


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
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def differences(old: dict, new: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """'key: old -> new' for every differing key of two flat dicts (long values cut), sorted by key."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in ignore)
    return [f"{k}: {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys]


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with a clear error for a missing file or bad syntax."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


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
        rows.append((key, _type_name(tp), default, f.metadata.get("doc", "")))
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
