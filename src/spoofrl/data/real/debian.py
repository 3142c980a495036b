"""Getting Debian packages without installing them: `apt-get download`, a check of the archive, and an atomic,
resumable unpack (`dpkg-deb -x`) into a cache. No root is needed and nothing is installed.

Without dpkg-deb (a non-Debian system, with .deb files downloaded by hand and given with --debs) the
archive is read in Python: a .deb is an `ar` archive holding control.tar.* and data.tar.{gz,xz,bz2}.
Every failure is a `FetchError` whose one-line message says what is missing and how to get it.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from spoofrl.errors import SpoofrlError

LOG = logging.getLogger(__name__)

STAMP = ".spoofrl-unpacked.json"      # written last into an unpacked package folder: the unpack is complete
PACKAGE_PAGE = "https://packages.debian.org/bookworm/all/{}/download"
_APT_TIMEOUT_S = 3600


class FetchError(SpoofrlError):
    """A package cannot be had: no tools, unknown to apt, not downloadable, missing from --debs, corrupt.

    `kind` is one of tools, unknown-package, network, apt, missing-deb (their messages are built by
    `failure_message`, so that the errors of several packages read as one line), corrupt, wrong-package
    (messages naming the file)."""

    def __init__(self, kind: str, packages, detail: str = "", message: str | None = None):
        self.kind, self.packages, self.detail = kind, tuple(packages), detail
        super().__init__(message or failure_message(kind, self.packages, detail))

    def __reduce__(self):
        return type(self), (self.kind, self.packages, self.detail, str(self))


def how_to_get(packages) -> str:
    """The manual route, for messages: where the .deb files come from."""
    return (f"download the .deb files (`apt-get download {' '.join(packages)}` on a Debian/Ubuntu machine, or "
            f"from {PACKAGE_PAGE.format('PACKAGE')}) into a folder and rerun with --debs FOLDER")


def failure_message(kind: str, packages, detail: str = "") -> str:
    """One line saying what is missing and how to get it, for one package or several failing alike."""
    packages = list(packages)
    names = ", ".join(packages)
    what = f" ({detail})" if detail else ""
    if kind == "tools":
        return f"apt-get not found (not a Debian/Ubuntu system?): cannot download {names}; {how_to_get(packages)}"
    if kind == "unknown-package":
        return (f"apt does not know {names}{what}: the package lists are missing or out of date: run "
                f"`sudo apt-get update` (with Debian 'main' in the apt sources), or {how_to_get(packages)}")
    if kind == "network":
        return f"cannot download {names}{what}: check the network connection or proxy, or {how_to_get(packages)}"
    if kind == "missing-deb":
        return f"--debs {detail or 'folder'} has no .deb for {names} (PACKAGE_VERSION_ARCH.deb); {how_to_get(packages)}"
    return f"cannot get {names}{what}; {how_to_get(packages)}"


# --------------------------------------------------------------------------------------------- the archive

@dataclass(frozen=True)
class DebInfo:
    path: Path
    package: str
    version: str
    architecture: str
    size: int

    @property
    def folder_name(self) -> str:
        """PKG-VERSION, the epoch's ':' written '%3a' as apt does in file names."""
        return f"{self.package}-{self.version.replace(':', '%3a')}"


class _Member(io.RawIOBase):
    """A read-only window onto one member of an ar archive (tarfile reads it as a stream)."""

    def __init__(self, fh, offset: int, size: int):
        self.fh, self.left = fh, size
        fh.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        data = self.fh.read(n)
        buffer[:len(data)] = data
        self.left -= len(data)
        return len(data)


def _ar_members(path: Path) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) of the members of a .deb, checking that each lies wholly inside the file."""
    size = path.stat().st_size
    members: dict[str, tuple[int, int]] = {}
    with path.open("rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise ValueError("not a Debian package (no ar archive header)")
        while True:
            header = fh.read(60)
            if not header:
                break
            if len(header) < 60 or header[58:60] != b"`\n":
                raise ValueError("truncated or damaged archive (bad member header)")
            name = header[:16].decode("ascii", errors="replace").strip().rstrip("/")
            try:
                length = int(header[48:58].decode("ascii").strip())
            except ValueError:
                raise ValueError("damaged archive (bad member size)") from None
            offset = fh.tell()
            if offset + length > size:
                raise ValueError(f"truncated: member {name} needs {offset + length - size} more bytes")
            members[name] = (offset, length)
            fh.seek(length + (length & 1), os.SEEK_CUR)
    for wanted in ("debian-binary", "control.tar", "data.tar"):
        if not any(m == wanted or m.startswith(wanted + ".") for m in members):
            raise ValueError(f"not a Debian package (no {wanted} member)")
    return members


def _control_fields(path: Path, members: dict[str, tuple[int, int]]) -> dict[str, str]:
    name = next(m for m in members if m.startswith("control.tar"))
    offset, length = members[name]
    with path.open("rb") as fh:
        fh.seek(offset)
        blob = fh.read(length)
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            member = next((m for m in tar.getmembers() if PurePosixPath(m.name).as_posix().lstrip("./") == "control"),
                          None)
            if member is None:
                raise ValueError("control.tar holds no control file")
            text = tar.extractfile(member).read().decode("utf-8", errors="replace")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"damaged control member ({err})") from None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z][\w-]*):\s*(.*)$", line)
        if m:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def _dpkg_deb_info(path: Path) -> None:
    proc = subprocess.run(["dpkg-deb", "--info", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise ValueError(lines[-1].replace("dpkg-deb: error: ", "") if lines else "dpkg-deb --info failed")


def inspect_deb(path: Path, expected: str | None = None) -> DebInfo:
    """Check a .deb (structure, every member complete, `dpkg-deb --info` where dpkg-deb exists) and read its
    name and version. A damaged file raises `FetchError(kind='corrupt')` naming it."""
    path = Path(path)
    try:
        members = _ar_members(path)
        if shutil.which("dpkg-deb"):
            _dpkg_deb_info(path)
        fields = _control_fields(path, members)
    except (ValueError, OSError) as err:
        raise FetchError("corrupt", (expected,) if expected else (), str(err),
                         f"{path}: corrupt or truncated .deb ({err})") from None
    package, version = fields.get("Package", ""), fields.get("Version", "")
    if not package or not version:
        raise FetchError("corrupt", (expected,) if expected else (), "no Package/Version",
                         f"{path}: corrupt .deb (its control file names no Package/Version)")
    if expected and package != expected:
        raise FetchError("wrong-package", (expected,), package,
                         f"{path}: holds package {package!r}, not {expected!r} (a renamed file?)")
    return DebInfo(path, package, version, fields.get("Architecture", "all"), path.stat().st_size)


def _inside(path: str) -> bool:
    """A relative archive path that stays inside the extraction folder."""
    norm = os.path.normpath(path)
    return not os.path.isabs(path) and norm != ".." and not norm.startswith("../")


def _safe_member(member: tarfile.TarInfo, dest: str):
    """Keep regular files and folders inside `dest`, and links that stay inside it; drop the rest."""
    if not _inside(member.name):
        return None
    if member.issym():
        if not _inside(os.path.join(os.path.dirname(member.name), member.linkname)):
            return None
    elif member.islnk():
        if not _inside(member.linkname):
            return None
    elif not (member.isfile() or member.isdir()):
        return None
    if hasattr(tarfile, "data_filter"):
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError:
            return None
    member.mode = (member.mode or 0o644) & 0o755
    return member


def _python_extract(info: DebInfo, dest: Path) -> None:
    members = _ar_members(info.path)
    name = next(m for m in members if m.startswith("data.tar"))
    if name.endswith(".zst"):
        raise FetchError("unpack-tools", (info.package,), "zstd",
                         f"{info.path}: its data.tar.zst needs dpkg-deb to unpack (Debian's dpkg package)")
    offset, length = members[name]
    with info.path.open("rb") as fh:
        stream = io.BufferedReader(_Member(fh, offset, length), 1 << 20)
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                safe = _safe_member(member, str(dest))
                if safe is not None:
                    tar.extract(safe, dest, set_attrs=False, **({"filter": "fully_trusted"}
                                                                if hasattr(tarfile, "data_filter") else {}))


def _extract(info: DebInfo, dest: Path) -> None:
    try:
        if shutil.which("dpkg-deb"):
            proc = subprocess.run(["dpkg-deb", "-x", str(info.path), str(dest)], capture_output=True, text=True)
            if proc.returncode != 0:
                lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                raise ValueError(lines[-1].replace("dpkg-deb: error: ", "") if lines else "dpkg-deb -x failed")
        else:
            _python_extract(info, dest)
    except (ValueError, tarfile.TarError, EOFError, OSError, lzma.LZMAError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise                                    # disk full, no permission: not the archive's fault
        raise FetchError("corrupt", (info.package,), str(err),
                         f"{info.path}: corrupt or truncated .deb, unpacking failed ({err})") from None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpacked(pkgs_dir: Path, info: DebInfo) -> Path | None:
    """The finished unpack folder of this package version, or None."""
    folder = pkgs_dir / info.folder_name
    stamp = folder / STAMP
    if not stamp.is_file():
        return None
    try:
        meta = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None
    return folder if meta.get("package") == info.package and meta.get("version") == info.version else None


def unpack(info: DebInfo, pkgs_dir: Path) -> tuple[Path, bool]:
    """Unpack into PKGS_DIR/PKG-VERSION/ (temp folder, stamp, rename: never a half folder). Returns (folder,
    unpacked now); a folder already stamped for this version is reused."""
    done = unpacked(pkgs_dir, info)
    if done is not None:
        return done, False
    pkgs_dir.mkdir(parents=True, exist_ok=True)
    final = pkgs_dir / info.folder_name
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{info.folder_name}-", dir=pkgs_dir))
    try:
        _extract(info, tmp)
        files = sum(1 for p in tmp.rglob("*") if p.is_file())
        (tmp / STAMP).write_text(json.dumps({"package": info.package, "version": info.version,
                                             "deb": info.path.name, "sha256": sha256(info.path),
                                             "files": files}, indent=1))
        if final.exists():                         # an unstamped (interrupted, foreign) folder
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, True


def clean_temporaries(pkgs_dir: Path) -> None:
    """Remove temp folders left by an interrupted unpack."""
    if pkgs_dir.is_dir():
        for tmp in pkgs_dir.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------- finding .deb files

def _deb_candidates(folder: Path, package: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"{glob_escape(package)}_*.deb") if p.is_file())


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def find_deb(folders: list[Path], package: str) -> Path | None:
    """The newest-named PKG_*.deb in the folders (first folder first)."""
    for folder in folders:
        found = _deb_candidates(Path(folder), package)
        if found:
            if len(found) > 1:
                LOG.info("%s: %d versions in %s, using %s", package, len(found), folder, found[-1].name)
            return found[-1]
    return None


# --------------------------------------------------------------------------------------------- apt-get download

_NETWORK = re.compile(r"Could not resolve|Temporary failure resolving|Could not connect|Connection (?:failed|"
                      r"timed out|refused)|Network is unreachable|No route to host|Unable to connect|"
                      r"Failed to fetch", re.I)


def _apt_reason(output: str) -> str:
    errors = [ln[3:].strip() for ln in output.splitlines() if ln.startswith("E: ")]
    return errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1].strip()


def apt_download(package: str, folder: Path) -> Path:
    """`apt-get download PACKAGE` run in FOLDER; returns the .deb. Failures are `FetchError`s of kind
    'tools' (no apt-get), 'unknown-package' (apt's lists do not have it), 'network' or 'apt'."""
    if shutil.which("apt-get") is None:
        raise FetchError("tools", (package,))
    folder.mkdir(parents=True, exist_ok=True)
    before = {p: p.stat().st_mtime_ns for p in _deb_candidates(folder, package)}
    try:
        proc = subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True, text=True,
                              timeout=_APT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FetchError("network", (package,), f"apt-get download ran over {_APT_TIMEOUT_S // 60} min") from None
    output = (proc.stdout or "") + "\n" + (proc.stderr or "")
    if proc.returncode != 0:
        reason = _apt_reason(output)
        if re.search(r"Unable to locate package|has no installation candidate|Can't select candidate", output):
            raise FetchError("unknown-package", (package,), reason)
        if _NETWORK.search(output):
            raise FetchError("network", (package,), reason)
        raise FetchError("apt", (package,), f"apt-get download exit {proc.returncode}: {reason}")
    after = [p for p in _deb_candidates(folder, package) if before.get(p) != p.stat().st_mtime_ns]
    found = after or _deb_candidates(folder, package)
    if not found:
        raise FetchError("apt", (package,), f"apt-get download reported success but left no {package}_*.deb "
                                            f"in {folder}")
    return max(found, key=lambda p: p.stat().st_mtime_ns)
