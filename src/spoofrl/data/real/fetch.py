"""`fetch_real_speech`: the catalogue's packages downloaded (or taken from --debs), unpacked into a cache,
every clip checked, and one manifest of bona fide clips written with speaker, language, transcript and
licence per clip.

Cache layout (CACHE: --cache, else $SPOOFRL_CACHE/real, else ~/.cache/spoofrl/real):
  debs/                 .deb files fetched by `apt-get download` (run with this folder as cwd)
  pkgs/PKG-VERSION/     each package unpacked (temp folder, then renamed; `.spoofrl-unpacked.json` stamp);
                        `.spoofrl-clips.json` there caches the clip checks of a rerun: only verdicts about
                        the bytes, an error with the decoders (ffmpeg, ffprobe) it was made with
  manifest.csv          the bona fide clips of the sources of the last run (paths relative to it)
  problems.tsv          every clip not in the manifest, and why (unreadable, not speech, duplicate, ...),
                        plus notes on the packages' metadata and sources that could not be fetched
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import re
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from spoofrl.data.manifest import BONAFIDE, UNKNOWN, Utterance, write_manifest
from spoofrl.data.real.catalogue import CLIP_SUFFIXES, Source, resolve_sources
from spoofrl.data.real.debian import (DebInfo, FetchError, STAMP, apt_download, clean_temporaries, find_deb,
                                      inspect_deb, unpack, unpacked)
from spoofrl.data.real.parsers import PARSERS, Clip, Note, Parsed
from spoofrl.errors import SpoofrlError

LOG = logging.getLogger(__name__)

CHECKS = ".spoofrl-clips.json"   # per unpacked package: clip checks, reused while a file is unchanged
EXTRA_COLUMNS = ("speaker", "language", "gender", "transcript", "text_source", "gloss", "license", "package",
                 "version", "duration", "sample_rate")
PROBLEM_COLUMNS = ("source", "package", "path", "kind", "reason")
_CHECK_VERSION = 1
# Kinds of download failure that would hit every later download the same way: stop asking apt.
_STOP_KINDS = {"network", "tools"}


def default_cache() -> Path:
    """$SPOOFRL_CACHE/real, else $XDG_CACHE_HOME/spoofrl/real, else ~/.cache/spoofrl/real."""
    if os.environ.get("SPOOFRL_CACHE"):
        return Path(os.environ["SPOOFRL_CACHE"]).expanduser() / "real"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "spoofrl" / "real"


# --------------------------------------------------------------------------------------------- report

@dataclass
class SourceReport:
    name: str
    packages: dict[str, str] = field(default_factory=dict)   # package -> version
    clips: int = 0                                           # rows in the manifest
    seconds: float = 0.0
    speakers: set[str] = field(default_factory=set)
    languages: Counter = field(default_factory=Counter)      # language -> clips
    rates: Counter = field(default_factory=Counter)          # sample rate -> clips
    conditions: Counter = field(default_factory=Counter)     # codec-rate -> clips
    transcribed: int = 0                                     # clips with a transcript
    problems: int = 0                                        # unreadable / empty / zero-length clips
    unreadable: Counter = field(default_factory=Counter)     # why clips are unreadable -> clips
    provisional: Counter = field(default_factory=Counter)    # why -> clips unreadable maybe by this machine's
    decoder_missing: bool = False                            # ... doing: ffmpeg or ffprobe is not installed
    refused: int = 0                                         # symbolic links, paths outside the package
    excluded: int = 0                                        # not speech, synthetic, effect-processed
    duplicates: int = 0                                      # byte-identical to another clip of the source
    notes: int = 0                                           # remarks on the package's metadata
    license_checked: bool = False                            # the catalogue licence is in the copyright file

    def line(self) -> str:
        langs = ",".join(sorted(self.languages))
        rates = ",".join(f"{r // 1000 if r % 1000 == 0 else r / 1000:g}k" for r in sorted(self.rates))
        left = [f"{n} {what}" for n, what in ((self.problems, "unreadable"), (self.excluded, "not speech"),
                                              (self.duplicates, "duplicate"), (self.refused, "refused")) if n]
        return (f"{self.name}: {self.clips} clips, {self.seconds / 60:.1f} min, {len(self.speakers)} speaker"
                f"{'s' if len(self.speakers) != 1 else ''}, {len(self.languages)} language"
                f"{'s' if len(self.languages) != 1 else ''} ({langs}), {self.transcribed} with transcript, "
                f"{rates} Hz" + (f"; left out: {', '.join(left)}" if left else ""))

    def warnings(self) -> list[str]:
        """Loud lines for what the manifest would otherwise lack quietly: the whole source, or clips left out
        only because of this machine (a decoder missing)."""
        return ([self._left_out_line()] if self.clips == 0 else []) + \
            ([self._provisional_line()] if self.provisional else [])

    def _left_out_line(self) -> str:
        reasons = _most_common(self.unreadable)
        left = [f"{n} {what}" for n, what in ((self.problems, f"unreadable ({reasons})"), (self.excluded, "not speech"),
                                              (self.duplicates, "duplicate"), (self.refused, "refused")) if n]
        return (f"WARNING: {self.name}: the whole source is left out of the manifest: "
                f"{', '.join(left) or 'its package holds no clip'}")

    def _provisional_line(self) -> str:
        from spoofrl.prereqs import FFMPEG, install_hint
        line = (f"WARNING: {self.name}: {sum(self.provisional.values())} clips left out as unreadable on this "
                f"machine ({_most_common(self.provisional)}); not cached: they are checked again on the next fetch")
        if self.decoder_missing:
            line += f"; ffmpeg/ffprobe is not installed: {install_hint([FFMPEG.package])}, then fetch again"
        return line


def _most_common(reasons: Counter) -> str:
    """The two most frequent reasons with their counts, for one-line warnings."""
    return "; ".join(f"{n} {why}" for why, n in reasons.most_common(2))


@dataclass
class FetchReport:
    cache: Path
    manifest: Path | None
    problems_file: Path
    sources: dict[str, SourceReport]
    failed: dict[str, str]                 # source -> why it could not be fetched
    rows: list[Utterance]
    downloaded: list[str] = field(default_factory=list)   # packages fetched by apt-get in this run
    unpacked: list[str] = field(default_factory=list)     # packages unpacked in this run
    reused: list[str] = field(default_factory=list)       # packages already unpacked (resumed run)
    redownloaded: list[str] = field(default_factory=list)  # corrupt .deb deleted and fetched again
    errors: list[FetchError] = field(default_factory=list)  # why the packages of the failed sources are missing

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.sources.values())

    def summary(self) -> list[str]:
        lines = [s.line() for s in self.sources.values()]
        speakers = set().union(*(s.speakers for s in self.sources.values())) if self.sources else set()
        languages = set().union(*(s.languages for s in self.sources.values())) if self.sources else set()
        lines.append(f"packages: {len(self.downloaded)} downloaded, {len(self.unpacked)} unpacked, "
                     f"{len(self.reused)} already unpacked" + (f", {len(self.redownloaded)} corrupt and downloaded "
                                                              f"again" if self.redownloaded else ""))
        lines.append(f"total: {len(self.rows)} clips, {self.seconds / 3600:.2f} h, {len(speakers)} speakers, "
                     f"{len(languages)} languages; manifest: {self.manifest or '(none)'}; problems: "
                     f"{self.problems_file}")
        lines += [f"not fetched: {name}: {why}" for name, why in self.failed.items()]
        return lines + self.warnings()

    def warnings(self) -> list[str]:
        """'WARNING: ...' lines: sources left out whole, clips left out for want of a decoder (also in summary)."""
        return [line for s in self.sources.values() for line in s.warnings()]

    def failure_message(self) -> str:
        """One line for the sources not fetched (alike failures of several packages named together)."""
        if not self.failed:
            return ""
        total = len(self.failed) + len(self.sources)
        return (f"{len(self.failed)} of {total} sources not fetched ({', '.join(self.failed)}; the manifest has "
                f"the others): {_group_errors(self.errors)}")


# --------------------------------------------------------------------------------------------- packages

@dataclass
class _Package:
    name: str
    info: DebInfo | None = None
    root: Path | None = None
    error: FetchError | None = None


def _damaged(err: FetchError, name: str, advice: str) -> FetchError:
    """A 'corrupt' error with what to do about it appended; any other error unchanged."""
    return err if err.kind != "corrupt" else FetchError("corrupt", (name,), err.detail, f"{err}{advice}")


class _Packages:
    """Gets each package once (several sources share fillets-ng-data), remembering what happened."""

    def __init__(self, cache: Path, debs: list[Path] | None):
        self.cache, self.debs = cache, debs
        self.deb_dir, self.pkgs_dir = cache / "debs", cache / "pkgs"
        self.got: dict[str, _Package] = {}
        self.stopped: FetchError | None = None     # a network / tools failure: no more apt-get runs
        self.downloaded: list[str] = []
        self.unpacked: list[str] = []
        self.reused: list[str] = []
        self.redownloaded: list[str] = []

    def get(self, name: str) -> _Package:
        if name not in self.got:
            pkg = _Package(name)
            try:
                pkg.info, pkg.root = self._get(name)
            except FetchError as err:
                pkg.error = err
                if err.kind in _STOP_KINDS and self.debs is None:
                    self.stopped = err
            self.got[name] = pkg
        return self.got[name]

    def _open(self, path: Path, name: str) -> tuple[DebInfo, Path]:
        """Check a .deb and unpack it (a damaged one raises FetchError 'corrupt')."""
        info = inspect_deb(path, name)
        return info, self._unpack(info)

    def _unpack(self, info: DebInfo) -> Path:
        root, fresh = unpack(info, self.pkgs_dir)
        (self.unpacked if fresh else self.reused).append(info.package)
        return root

    def _get(self, name: str) -> tuple[DebInfo, Path]:
        if self.debs is not None:                          # offline: the user's files, never deleted
            path = find_deb(self.debs, name)
            if path is None:
                raise FetchError("missing-deb", (name,), ", ".join(str(d) for d in self.debs))
            try:
                return self._open(path, name)
            except FetchError as err:
                raise _damaged(err, name, f": download it again (`apt-get download {name}`) and replace it") from None
        path = find_deb([self.deb_dir], name)
        if path is None:
            done = self._stamped(name)
            if done is not None:                           # unpacked before, its .deb since removed
                self.reused.append(name)
                return done
        for attempt in (1, 2):
            if path is None:
                if self.stopped is not None:
                    raise FetchError(self.stopped.kind, (name,), self.stopped.detail)
                path = apt_download(name, self.deb_dir)
                self.downloaded.append(name)
            try:
                return self._open(path, name)
            except FetchError as err:
                if attempt == 2 or err.kind != "corrupt":
                    raise _damaged(err, name, " (downloaded again, still damaged: the mirror may be broken; try "
                                              "later, or download it by hand and use --debs)") from None
                LOG.warning("%s; deleting it and downloading it again", err)
                path.unlink(missing_ok=True)
                path = None
                self.redownloaded.append(name)
        raise AssertionError("unreachable")

    def _stamped(self, name: str) -> tuple[DebInfo, Path] | None:
        for stamp in sorted(self.pkgs_dir.glob(f"*/{STAMP}")):
            try:
                meta = json.loads(stamp.read_text())
            except (OSError, ValueError):
                continue
            if meta.get("package") == name:
                info = DebInfo(self.deb_dir / meta.get("deb", ""), name, meta.get("version", ""), "all", 0)
                if unpacked(self.pkgs_dir, info) == stamp.parent:
                    return info, stamp.parent
        return None


# --------------------------------------------------------------------------------------------- clips

def _clip_files(source: Source, root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The source's clip files, and the paths refused as clips with why: a package could otherwise make the
    manifest (and every later reader) use any file of this machine through a symbolic link."""
    inside = root.resolve()
    files: set[Path] = set()
    refused: dict[Path, str] = {}
    for pattern in source.clips:
        for path in root.glob(pattern):
            if path.suffix.lower() not in CLIP_SUFFIXES:
                continue
            why = _refusal(path, inside)
            if why:
                refused[path] = why
            elif path.is_file():
                files.add(path)
    return sorted(files), sorted(refused.items())


def _refusal(path: Path, inside: Path) -> str | None:
    """Why PATH cannot be a clip (a symbolic link, or a path through a linked folder out of INSIDE), or None."""
    if path.is_symlink():
        return (f"a symbolic link (to {os.readlink(path)}), not a file of the package: clips must be regular "
                f"files inside it")
    real = path.resolve()
    if not real.is_relative_to(inside):
        return f"lies outside the package (it is {real}, through a linked folder): clips must be inside it"
    return None


def _codec(path: Path) -> str:
    import soundfile as sf
    try:
        subtype = sf.info(str(path)).subtype
    except Exception:                                  # read through ffmpeg (g722, ...): the suffix says it
        return path.suffix.lstrip(".").lower() or "unknown"
    return {"VORBIS": "vorbis", "OPUS": "opus", "MPEG_LAYER_III": "mp3"}.get(
        subtype, re.sub(r"[^a-z0-9]", "", subtype.lower()))


_DECODERS = ("ffmpeg", "ffprobe")


def _program_id(name: str) -> str | None:
    """'path size mtime' of an installed program (changes when it is upgraded), None when not installed."""
    found = shutil.which(name)
    if found is None:
        return None
    real = os.path.realpath(found)
    try:
        stat = os.stat(real)
    except OSError:
        return None
    return f"{real} {stat.st_size} {stat.st_mtime_ns}"


def decoders() -> dict[str, str | None]:
    """The external decoders a clip check may use. An error verdict holds only for these: a newly installed
    or upgraded ffmpeg may read the clip, so an error is cached with them and reused only while they match."""
    return {name: _program_id(name) for name in _DECODERS}


def check_clip(path: Path, deep: bool = False, tools: dict[str, str | None] | None = None) -> dict:
    """What the manifest needs of one file: duration, rate, channels, codec, content hash; or its error.

    An error is `provisional` (never cached) when it may be this machine's doing, not the file's: a decoder
    is missing (TOOLS, default `decoders()`), or the check failed in a way that is not about the audio."""
    from spoofrl.audio import audio_info, load_audio
    tools = decoders() if tools is None else tools
    stat = path.stat()
    entry = {"size": stat.st_size, "mtime": stat.st_mtime_ns, "deep": deep, "v": _CHECK_VERSION}
    try:
        seconds, rate, channels = audio_info(path)
        if not seconds > 0:
            raise SpoofrlError(f"{path}: contains no samples (zero-length audio)")
        if deep:
            load_audio(path, sr=16000, max_seconds=None)
        digest = hashlib.sha1()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        entry.update(seconds=seconds, rate=rate, channels=channels, codec=_codec(path), sha1=digest.hexdigest())
    except Exception as err:                           # every failure is recorded, never lost
        reason = getattr(err, "reason", None) or str(err).replace(f"{path}: ", "")
        entry["error"] = reason if isinstance(err, SpoofrlError) else f"{type(err).__name__}: {reason}"
        entry["decoders"] = tools
        if not isinstance(err, SpoofrlError) or None in tools.values():
            entry["provisional"] = True
    return entry


class _CheckCache:
    """Clip checks of one unpacked package, reused on a rerun while size and mtime are unchanged; an error
    only while the decoders are those it was made with (a cache written without ffmpeg heals itself)."""

    def __init__(self, root: Path, tools: dict[str, str | None]):
        self.file = root / CHECKS
        try:
            self.entries = json.loads(self.file.read_text())
        except (OSError, ValueError):
            self.entries = {}
        if not isinstance(self.entries, dict):
            self.entries = {}
        self.root, self.tools, self.dirty = root, tools, False

    def get(self, path: Path, deep: bool) -> dict | None:
        entry = self.entries.get(path.relative_to(self.root).as_posix())
        if not isinstance(entry, dict) or entry.get("v") != _CHECK_VERSION or (deep and not entry.get("deep")):
            return None
        if "error" in entry and (entry.get("provisional") or entry.get("decoders") != self.tools):
            return None
        stat = path.stat()
        return entry if (entry.get("size"), entry.get("mtime")) == (stat.st_size, stat.st_mtime_ns) else None

    def put(self, path: Path, entry: dict) -> None:
        """Keep ENTRY for the next fetch, unless it is provisional (this machine's doing, not the file's)."""
        if not entry.get("provisional"):
            self.entries[path.relative_to(self.root).as_posix()] = entry
            self.dirty = True

    def save(self) -> None:
        if self.dirty:
            tmp = self.file.with_name(self.file.name + ".tmp")
            tmp.write_text(json.dumps(self.entries))
            tmp.replace(self.file)


def _check_all(clips: list[tuple[Clip, Path]], deep: bool, workers: int, show: bool) -> list[dict]:
    """Check every clip (reusing cached checks), in parallel; results in input order."""
    from spoofrl.log import progress
    tools = decoders()
    caches: dict[Path, _CheckCache] = {}
    results: list[dict | None] = []
    todo: list[int] = []
    for i, (clip, root) in enumerate(clips):
        if root not in caches:
            caches[root] = _CheckCache(root, tools)
        cache = caches[root]
        hit = cache.get(clip.path, deep)
        results.append(hit)
        if hit is None:
            todo.append(i)
    if todo:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            done = pool.map(lambda i: check_clip(clips[i][0].path, deep, tools), todo)
            for i, entry in zip(todo, progress(done, desc="checking clips", total=len(todo), unit="clip",
                                               disable=None if show else True)):
                results[i] = entry
                clip, root = clips[i]
                caches[root].put(clip.path, entry)
    for cache in caches.values():
        cache.save()
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- fetch

@contextlib.contextmanager
def _locked(cache: Path):
    """One fetch per cache at a time (a second one would unpack into the same folders)."""
    cache.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:                                # not POSIX: no lock
        yield
        return
    with (cache / ".lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SpoofrlError(f"{cache}: another `spoofrl data fetch` is using this cache; wait for it to "
                               f"finish or use another --cache") from None
        yield


def _license_checked(source: Source, root: Path) -> bool:
    copyright_file = root / "usr/share/doc" / source.packages[0] / "copyright"
    try:
        text = copyright_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(source.license_pattern, text) is not None


def _group_errors(errors: Iterable[FetchError]) -> str:
    """The errors of several packages as one line: alike failures (network, tools, ...) named together."""
    from spoofrl.data.real.debian import failure_message
    groups: dict[tuple[str, str], list[str]] = {}
    singles: list[str] = []
    for err in errors:
        if err.kind in ("tools", "network", "unknown-package", "missing-deb"):
            detail = err.detail if err.kind in ("network", "missing-deb") else ""
            names = groups.setdefault((err.kind, detail), [])
            names.extend(p for p in err.packages if p not in names)
        elif str(err) not in singles:
            singles.append(str(err))
    return "; ".join([failure_message(kind, names, detail) for (kind, detail), names in groups.items()] + singles)


def fetch_real_speech(sources: str | Sequence[str | Source] | None = "all", cache: str | Path | None = None,
                      debs: str | Path | Sequence[str | Path] | None = None, *, workers: int = 2,
                      manifest: str | Path | None = None, deep: bool = False,
                      show_progress: bool = True) -> FetchReport:
    """Fetch the catalogue's real speech and write its manifest (see the module docstring for the cache).

    sources: 'all', names / families ('asterisk-en,fillets'), or `Source` objects. debs: folder(s) of .deb
    files to use instead of `apt-get download` (offline; nothing is downloaded). deep: decode every clip
    (finds silent or damaged audio the header check misses; slower). A source whose packages cannot be had
    is reported in `FetchReport.failed` and the others still make the manifest; when none can be had a
    `FetchError` says why (one line: what is missing and how to get it).
    """
    from spoofrl.log import progress
    chosen = resolve_sources(sources)
    cache = Path(cache).expanduser() if cache is not None else default_cache()
    if debs is not None:
        debs = [Path(d).expanduser() for d in ([debs] if isinstance(debs, (str, Path)) else debs)]
        for folder in debs:
            if not folder.is_dir():
                raise FetchError("missing-deb", [p for s in chosen for p in s.packages], str(folder),
                                 f"--debs {folder}: no such folder")
    manifest = Path(manifest) if manifest is not None else cache / "manifest.csv"
    problems_file = cache / "problems.tsv"
    with _locked(cache):
        clean_temporaries(cache / "pkgs")
        packages = _Packages(cache, debs)
        names = list(dict.fromkeys(p for s in chosen for p in s.packages))
        for name in progress(names, desc="packages", unit="pkg", disable=None if show_progress else True):
            packages.get(name)
        problems: list[tuple[str, ...]] = []
        failed: dict[str, str] = {}
        prepared: list[_Prepared] = []
        for source in chosen:
            got = [packages.get(p) for p in source.packages]
            errors = [g.error for g in got if g.error is not None]
            if errors:
                failed[source.name] = _group_errors(errors)
                problems.append((source.name, ",".join(p for e in errors for p in e.packages), "-", "not-fetched",
                                 failed[source.name]))
            else:
                prepared.append(_prepare(source, got, cache, problems))
        errors = [g.error for g in packages.got.values() if g.error is not None]
        if not prepared:
            _write_problems(problems_file, problems)
            kinds = {e.kind for e in errors}
            raise FetchError(kinds.pop() if len(kinds) == 1 else "mixed", [p for e in errors for p in e.packages],
                             "", "nothing fetched: " + "; ".join(dict.fromkeys(failed.values())))
        checks = iter(_check_all([c for prep in prepared for c in prep.kept], deep, workers, show_progress))
        rows: list[Utterance] = []
        for prep in prepared:
            rows += _account(prep, [next(checks) for _ in prep.kept], cache, manifest.parent, problems)
        write_manifest(rows, manifest)
        _write_problems(problems_file, problems)
    return FetchReport(cache, manifest, problems_file, {p.source.name: p.report for p in prepared}, failed, rows,
                       packages.downloaded, packages.unpacked, packages.reused, packages.redownloaded, errors)


@dataclass
class _Prepared:
    source: Source
    report: SourceReport
    kept: list[tuple[Clip, Path]]          # (clip, root of its package) of the clips to check
    infos: dict[str, DebInfo]


def _prepare(source: Source, got: list[_Package], cache: Path, problems: list[tuple[str, ...]]) -> _Prepared:
    """The source's clips described by its parser; licence checked; excluded clips and notes recorded."""
    roots = {g.name: g.root for g in got}
    report = SourceReport(source.name, packages={g.name: g.info.version for g in got})
    report.license_checked = _license_checked(source, roots[source.packages[0]])
    if not report.license_checked:
        LOG.warning("%s: licence %s not found as expected in %s's copyright file; check it", source.name,
                    source.license, source.packages[0])
        problems.append((source.name, source.packages[0], f"usr/share/doc/{source.packages[0]}/copyright", "license",
                         f"catalogue licence {source.license} not found as expected"))
    files, refused = _clip_files(source, roots[source.packages[0]])
    for path, why in refused:
        report.refused += 1
        problems.append((source.name, source.packages[0], _rel(path, cache), "refused", why))
    if refused:
        LOG.warning("%s: %d clip%s of %s refused (listed in problems.tsv), e.g. %s: %s", source.name, len(refused),
                    "s" * (len(refused) > 1), source.packages[0], refused[0][0].name, refused[0][1])
    parsed = PARSERS[source.parser](source, files, roots)
    clips = _complete(parsed, files, source)
    for note in parsed.notes:
        report.notes += 1
        problems.append((source.name, note.package, note.path, note.kind, note.reason))
    kept = []
    for clip in clips:
        if clip.excluded:
            report.excluded += 1
            problems.append((source.name, clip.package, _rel(clip.path, cache), "excluded", clip.excluded))
        else:
            kept.append((clip, roots[clip.package]))
    return _Prepared(source, report, kept, {g.name: g.info for g in got})


def _account(prep: _Prepared, checks: list[dict], cache: Path, manifest_dir: Path,
             problems: list[tuple[str, ...]]) -> list[Utterance]:
    """Manifest rows of the checked clips; unreadable ones and duplicates (same bytes) go to the problems."""
    report, rows = prep.report, []
    seen: dict[str, Path] = {}
    for (clip, _root), entry in zip(prep.kept, checks):
        rel = _rel(clip.path, cache)
        if "error" in entry:
            report.problems += 1
            report.unreadable[entry["error"]] += 1
            if entry.get("provisional"):
                report.provisional[entry["error"]] += 1
                report.decoder_missing |= None in (entry.get("decoders") or {}).values()
            problems.append((prep.source.name, clip.package, rel, "unreadable", entry["error"]))
            continue
        first = seen.setdefault(entry["sha1"], clip.path)
        if first != clip.path:
            report.duplicates += 1
            problems.append((prep.source.name, clip.package, rel, "duplicate",
                             f"byte-identical to {_rel(first, cache)}"))
            continue
        row = _row(clip, entry, prep.source, prep.infos[clip.package], manifest_dir)
        rows.append(row)
        report.clips += 1
        report.seconds += entry["seconds"]
        if clip.speaker != UNKNOWN:
            report.speakers.add(clip.speaker)
        report.languages[clip.language] += 1
        report.rates[int(entry["rate"])] += 1
        report.conditions[row.condition] += 1
        report.transcribed += bool(clip.transcript)
    return rows


def _complete(parsed: Parsed, files: list[Path], source: Source) -> list[Clip]:
    """Exactly one clip per file, in file order: a file the parser left out gets an empty description."""
    by_path = {c.path: c for c in parsed.clips}
    out = []
    for path in files:
        clip = by_path.get(path)
        if clip is None:
            clip = Clip(path, source.packages[0])
            parsed.notes.append(Note(source.packages[0], path.name, "unlisted",
                                     f"the {source.parser} parser does not describe this file"))
        out.append(clip)
    return out


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _row(clip: Clip, entry: dict, source: Source, info: DebInfo, manifest_dir: Path) -> Utterance:
    rate = int(entry["rate"])
    khz = f"{rate // 1000}k"                          # 22050 -> 22k, 44100 -> 44k (the channel label)
    extra = {"speaker": clip.speaker, "language": clip.language, "gender": clip.gender,
             "transcript": clip.transcript, "text_source": clip.text_source, "gloss": clip.gloss,
             "license": source.license, "package": clip.package, "version": info.version,
             "duration": f"{entry['seconds']:.3f}", "sample_rate": str(rate)}
    return Utterance(_rel(clip.path, manifest_dir), BONAFIDE, UNKNOWN, source.name, f"{entry['codec']}-{khz}",
                     UNKNOWN, extra=extra)


def _write_problems(path: Path, problems: list[tuple[str, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(PROBLEM_COLUMNS)
        writer.writerows(tuple(" ".join(str(c).split()) for c in row) for row in problems)
    tmp.replace(path)
