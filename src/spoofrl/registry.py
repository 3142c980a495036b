"""Name -> component registries.

Components are referenced lazily as "module:attribute" strings, so that optional heavy dependencies
(transformers for SSL front-ends) are imported only when that component is built. Adding a component
is one file plus one line in the registry table that lists it.
"""
from __future__ import annotations

import importlib
from typing import Any

from spoofrl.errors import RegistryError


class Registry:
    def __init__(self, kind: str, entries: dict[str, str] | None = None):
        self.kind = kind
        self._entries: dict[str, str | Any] = dict(entries or {})

    def add(self, name: str, target: str | Any) -> None:
        """Register `target` (an object or a "module:attr" string) under `name`."""
        if name in self._entries:
            raise RegistryError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = target

    def register(self, name: str):
        """Decorator form of `add`, for components defined outside the package."""
        def wrap(obj):
            self.add(name, obj)
            return obj
        return wrap

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} '{name}'; known: {', '.join(self.names())}")
        target = self._entries[name]
        if isinstance(target, str):
            target = self._import(name, target)
            self._entries[name] = target
        return target

    def _import(self, name: str, target: str) -> Any:
        module, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:  # a wrong entry, or an optional dependency missing
            raise RegistryError(f"{self.kind} '{name}' is registered as '{target}', which cannot be imported "
                                f"({type(err).__name__}: {err})") from None
