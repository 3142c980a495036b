"""Exceptions raised on bad user input.

Every error a user can cause derives from `SpoofrlError`; its message names the file (and line,
where there is one) and the reason. The CLI prints such messages on one line, never a traceback.
"""
from __future__ import annotations

from pathlib import Path


class SpoofrlError(Exception):
    """Base class of every user-facing error."""


class AudioError(SpoofrlError):
    """An audio file cannot be used: missing, empty, corrupt, silent, not audio, ..."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # rebuild from the constructor's arguments so the error crosses process boundaries (worker pools)
        return type(self), (self.path, self.reason)


class ProtocolError(SpoofrlError):
    """A manifest, protocol or score file has a malformed line or a missing column."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None, text: str | None = None):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        self.text = text
        shown = f" (line: {text.strip()[:120]!r})" if text is not None else ""
        super().__init__(f"{where}: {reason}{shown}")

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.line, self.text)


class ConfigError(SpoofrlError):
    """A configuration is invalid: unknown key, wrong type, bad value."""


class RegistryError(ConfigError):
    """A registry key names no known component."""
