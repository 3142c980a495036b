"""A reader of CTranslate2's `model.bin` (the layout of ctranslate2/specs/model_spec.py `_serialize`, binary
version 6), bounded and validated: every count, rank, shape and byte size is checked against what the file
still holds before anything is read, so a damaged or hostile file costs at most its own size in memory and
fails with one line naming the file and the byte offset.

Layout, little-endian:
  u32 version | str spec | u32 revision | u32 n |
  n x {str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, bytes[nbytes]} |
  u32 n_aliases | n_aliases x {str alias, str target}
  str = u16 (length + 1), UTF-8 bytes, NUL
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spoofrl.errors import SpoofrlError

SUPPORTED_VERSION = 6
# Index = CTranslate2's DataType id (include/ctranslate2/types.h). bfloat16 is read as raw uint16 bits.
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_NUMPY = {"float32": "<f4", "int8": "i1", "int16": "<i2", "int32": "<i4", "float16": "<f2", "bfloat16": "<u2"}
MAX_RANK = 8              # real specs use at most 4 (convolution weights)
MAX_NAME_BYTES = 4096     # longest variable name in real specs is under 100


class Ct2FormatError(SpoofrlError):
    """A model.bin that is not a well-formed CTranslate2 model: names the file, the byte offset and why."""

    def __init__(self, path: str | Path, offset: int, reason: str):
        self.path, self.offset, self.reason = str(path), offset, reason
        super().__init__(f"{self.path}: byte {offset}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.offset, self.reason)


@dataclass
class Ct2Model:
    """What a model.bin holds. bfloat16 variables are uint16 arrays (numpy has no bfloat16): see `dtypes`."""
    path: Path
    version: int
    spec: str
    revision: int
    tensors: dict[str, np.ndarray] = field(default_factory=dict)   # rank >= 1
    scalars: dict[str, np.ndarray] = field(default_factory=dict)   # rank 0 (head counts, flags, ...)
    aliases: dict[str, str] = field(default_factory=dict)          # alias -> target variable
    dtypes: dict[str, str] = field(default_factory=dict)           # variable -> CTranslate2 dtype name

    def variable(self, name: str) -> np.ndarray:
        """A tensor or scalar by name, following one alias."""
        name = self.aliases.get(name, name)
        return self.tensors[name] if name in self.tensors else self.scalars[name]


class _Cursor:
    """Reads the file's bytes in order, refusing any read past the end."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.offset = path, data, 0

    @property
    def left(self) -> int:
        return len(self.data) - self.offset

    def fail(self, reason: str, at: int | None = None) -> Ct2FormatError:
        return Ct2FormatError(self.path, self.offset if at is None else at, reason)

    def take(self, n: int, what: str) -> memoryview:
        if n > self.left:
            raise self.fail(f"truncated: {what} needs {n} bytes, the file has {self.left} left")
        view = memoryview(self.data)[self.offset:self.offset + n]
        self.offset += n
        return view

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        start = self.offset
        size = self.unpack("H", f"the length of {what}")
        if size == 0 or size > MAX_NAME_BYTES:
            raise self.fail(f"{what}: length {size} is not in 1..{MAX_NAME_BYTES}", start)
        raw = bytes(self.take(size, what))
        if raw[-1] != 0:
            raise self.fail(f"{what}: not NUL-terminated", start)
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what}: not UTF-8", start) from None


def read_ct2(path: str | Path, spec: str | None = None) -> Ct2Model:
    """Read a CTranslate2 model.bin; `spec` (e.g. 'WhisperSpec'), when given, is the only spec accepted."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SpoofrlError(f"{path}: cannot read: {err.strerror or err}") from None
    cur = _Cursor(path, data)
    version = cur.unpack("I", "the binary version")
    if version != SUPPORTED_VERSION:
        raise cur.fail(f"binary version {version}: this reader knows version {SUPPORTED_VERSION} "
                       f"(CTranslate2 >= 3)", 0)
    at = cur.offset
    name = cur.string("the spec name")
    if spec is not None and name != spec:
        raise cur.fail(f"unknown spec {name!r}: expected {spec!r}", at)
    model = Ct2Model(path, version, name, cur.unpack("I", "the spec revision"))
    count = cur.unpack("I", "the variable count")
    _check_count(cur, count, minimum_bytes=2 + 1 + 1 + 4 + 1, what="variables")
    for _ in range(count):
        _read_variable(cur, model)
    count = cur.unpack("I", "the alias count")
    _check_count(cur, count, minimum_bytes=2 * 3, what="aliases")
    for _ in range(count):
        at = cur.offset
        alias, target = cur.string("an alias name"), cur.string("an alias target")
        if target not in model.tensors and target not in model.scalars:
            raise cur.fail(f"alias {alias!r} names {target!r}, which the file does not hold", at)
        model.aliases[alias] = target
    if cur.left:
        raise cur.fail(f"{cur.left} bytes after the last alias: not a single CTranslate2 model")
    return model


def _check_count(cur: _Cursor, count: int, minimum_bytes: int, what: str) -> None:
    """A declared count the remaining bytes cannot hold is refused before any loop runs."""
    if count * minimum_bytes > cur.left:
        raise cur.fail(f"{count} {what} declared, but only {cur.left} bytes are left", cur.offset - 4)


def _read_variable(cur: _Cursor, model: Ct2Model) -> None:
    start = cur.offset
    name = cur.string("a variable name")
    if name in model.tensors or name in model.scalars:
        raise cur.fail(f"variable {name!r} appears twice", start)
    rank = cur.unpack("B", f"the rank of {name!r}")
    if rank > MAX_RANK:
        raise cur.fail(f"{name!r}: rank {rank} is over {MAX_RANK}", cur.offset - 1)
    dims = tuple(cur.unpack("I", f"the dimensions of {name!r}") for _ in range(rank))
    at = cur.offset
    type_id = cur.unpack("B", f"the dtype of {name!r}")
    if type_id >= len(DTYPES):
        raise cur.fail(f"{name!r}: unknown dtype id {type_id} (known: 0..{len(DTYPES) - 1} = "
                       f"{', '.join(DTYPES)})", at)
    dtype = DTYPES[type_id]
    at = cur.offset
    nbytes = cur.unpack("I", f"the byte size of {name!r}")
    expected = math.prod(dims) * np.dtype(_NUMPY[dtype]).itemsize
    if nbytes != expected:
        raise cur.fail(f"{name!r}: {nbytes} bytes declared, but shape {list(dims)} of {dtype} needs {expected}", at)
    array = np.frombuffer(cur.take(nbytes, f"the data of {name!r}"), dtype=_NUMPY[dtype]).reshape(dims)
    (model.tensors if rank else model.scalars)[name] = array
    model.dtypes[name] = dtype
