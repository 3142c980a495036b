"""Issue 25. A fetch never caches a verdict that depends on this machine (ffmpeg missing) and heals a check
cache written without ffmpeg; a source left out whole is a loud warning. `spoofrl demo`, `data fetch` and
`data synth` check their system prerequisites (spoofrl.prereqs) before any long work and write nothing when
one is missing. A clip that is a symbolic link, or lies outside its package, is refused.

The .deb fixtures are built with `dpkg-deb --build` in the layout of test_data_fetch (asterisk-en)."""
from __future__ import annotations

import csv
import gzip
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from test_data_fetch import AUDIO_PKG, COPYRIGHT, PROMPTS, TEXT_PKG, VOICE, Link, _wav, build_deb

from spoofrl.cli import main
from spoofrl.data.manifest import read_manifest
from spoofrl.data.real import fetch_real_speech
from spoofrl.data.real import fetch as fetch_module

pytestmark = [
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build the fixture .deb files"),
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to write and read G.722 clips"),
]

ROOT = Path(__file__).resolve().parents[1]
# What the check cache of spoofrl before issue 25 holds for a G.722 clip checked without ffmpeg.
OLD_NO_FFMPEG_VERDICT = "not readable by soundfile, and ffmpeg (needed for mp3/m4a/opus/...) is not installed"


def g722(seconds: float, freq: int) -> bytes:
    """A tone as raw G.722 (what the asterisk-*-g722 packages ship), encoded by ffmpeg."""
    proc = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                           f"sine=frequency={freq}:duration={seconds}:sample_rate=16000", "-c:a", "g722",
                           "-f", "g722", "-"], check=True, capture_output=True)
    return proc.stdout


def asterisk_debs(folder: Path, clips: dict[str, bytes | Link], more: dict[str, bytes | Link] | None = None) -> Path:
    """The two packages of source asterisk-en, the clip package holding CLIPS (paths under the voice folder)
    and MORE (paths in the package)."""
    folder.mkdir(parents=True, exist_ok=True)
    build_deb(folder, AUDIO_PKG, {**{f"{VOICE}/{name}": data for name, data in clips.items()}, **(more or {}),
                                  f"usr/share/doc/{AUDIO_PKG}/copyright": COPYRIGHT.encode()})
    build_deb(folder, TEXT_PKG, {f"usr/share/doc/{TEXT_PKG}/core-sounds-en.txt.gz": gzip.compress(PROMPTS.encode()),
                                 f"usr/share/doc/{TEXT_PKG}/copyright": COPYRIGHT.encode()})
    return folder


@pytest.fixture
def g722_debs(tmp_path: Path) -> Path:
    """asterisk-en with two G.722 prompts (readable only through ffmpeg) and one damaged G.722 file."""
    return asterisk_debs(tmp_path / "debs", {"hello.g722": g722(0.5, 300), "digits/1.g722": g722(0.3, 500),
                                             "broken.g722": b""})


def hide(monkeypatch, *programs: str) -> None:
    """Make these programs look uninstalled (shutil.which finds nothing for them)."""
    real = shutil.which

    def which(cmd, *args, **kwargs):
        return None if os.path.basename(str(cmd)) in programs else real(cmd, *args, **kwargs)
    monkeypatch.setattr(shutil, "which", which)


def fake_apt(tmp_path: Path, monkeypatch) -> Path:
    """An apt-get first on PATH that logs each call and fails like an offline machine; returns the log."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    calls = tmp_path / "apt-calls"
    script = bindir / "apt-get"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n"
                      "echo \"E: Failed to fetch x  Temporary failure resolving 'deb.debian.org'\" >&2\nexit 100\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return calls


def _check_cache(cache: Path) -> Path:
    return next((cache / "pkgs").glob(f"{AUDIO_PKG}-*/{fetch_module.CHECKS}"))


def _count_checks(monkeypatch) -> list[str]:
    """Record the name of every clip the fetch really checks (not taken from the check cache)."""
    checked: list[str] = []
    real = fetch_module.check_clip

    def counting(path, *args, **kwargs):
        checked.append(Path(path).name)
        return real(path, *args, **kwargs)
    monkeypatch.setattr(fetch_module, "check_clip", counting)
    return checked


# --------------------------------------------------------------------------------------------- the check cache

def test_fetch_without_ffmpeg_warns_caches_nothing_and_heals(g722_debs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    with monkeypatch.context() as m:
        hide(m, "ffmpeg", "ffprobe")
        blind = fetch_real_speech("asterisk-en", cache, debs=g722_debs, workers=1)
    assert blind.sources["asterisk-en"].clips == 0
    warnings = [line for line in blind.summary() if line.startswith("WARNING")]
    assert any("asterisk-en" in w and "left out" in w and "ffmpeg" in w for w in warnings), blind.summary()
    healed = fetch_real_speech("asterisk-en", cache, debs=g722_debs, workers=1)
    assert sorted(Path(r.path).name for r in healed.rows) == ["1.g722", "hello.g722"]
    assert {r.condition for r in healed.rows} == {"g722-16k"}
    assert not [line for line in healed.summary() if line.startswith("WARNING")]


def test_check_cache_written_without_ffmpeg_by_an_older_version_is_healed(g722_debs, tmp_path):
    """The situation of issue 25: `.spoofrl-clips.json` holds 'ffmpeg is not installed' for every G.722
    clip (as spoofrl wrote it before); a fetch with ffmpeg installed checks them again."""
    cache = tmp_path / "cache"
    fetch_real_speech("asterisk-en", cache, debs=g722_debs, workers=1)
    checks = _check_cache(cache)
    entries = json.loads(checks.read_text())
    assert entries, "the fetch caches its clip checks"
    old = {rel: {"size": e["size"], "mtime": e["mtime"], "deep": False, "v": 1, "error": OLD_NO_FFMPEG_VERDICT}
           for rel, e in entries.items()}
    checks.write_text(json.dumps(old))
    report = fetch_real_speech("asterisk-en", cache, debs=g722_debs, workers=1)
    assert sorted(Path(r.path).name for r in report.rows) == ["1.g722", "hello.g722"]


def test_verdicts_about_the_bytes_are_reused_until_the_decoders_change(g722_debs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = fetch_real_speech("asterisk-en", cache, debs=g722_debs, workers=1)
    assert first.sources["asterisk-en"].problems == 1                    # broken.g722: an empty file
    checked = _count_checks(monkeypatch)
    fetch_real_speech("asterisk-en", cache, debs=g722_debs, workers=1)
    assert checked == []                                                 # every verdict came from the cache
    checks = _check_cache(cache)
    entries = json.loads(checks.read_text())
    broken = next(e for rel, e in entries.items() if rel.endswith("broken.g722"))
    assert "error" in broken
    broken["decoders"] = {"ffmpeg": "/an/older/ffmpeg 1 1", "ffprobe": "/an/older/ffprobe 1 1"}
    checks.write_text(json.dumps(entries))
    again = fetch_real_speech("asterisk-en", cache, debs=g722_debs, workers=1)
    assert checked == ["broken.g722"]                                    # an error made with other decoders
    assert again.sources["asterisk-en"].problems == 1 and again.sources["asterisk-en"].clips == 2


# --------------------------------------------------------------------------------------------- prerequisites

@pytest.mark.parametrize("design", ["real", "v1"])
def test_demo_without_system_packages_stops_at_once_and_writes_nothing(tmp_path, monkeypatch, capsys, design):
    hide(monkeypatch, "ffmpeg", "ffprobe", "espeak-ng", "festival")
    calls = fake_apt(tmp_path, monkeypatch)
    monkeypatch.setenv("SPOOFRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo-out"
    rc = main(["demo", "--out", str(out), "--design", design])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    for package in ("ffmpeg", "espeak-ng", "festival", "festvox-kallpc16k", "festvox-kdlpc16k", "festvox-us-slt-hts"):
        assert re.search(rf"\b{package}\b", err), (package, err)
    assert "flite" not in err.split("sudo apt-get install")[-1]         # installed: not asked for
    assert "bash scripts/install_system.sh" in err and "make demo" in err
    assert not out.exists() and not (tmp_path / "cache").exists() and not calls.exists()


def test_fetch_of_g722_sources_needs_ffmpeg_first(g722_debs, tmp_path, monkeypatch, capsys):
    hide(monkeypatch, "ffmpeg", "ffprobe")
    cache = tmp_path / "cache"
    rc = main(["data", "fetch", "--sources", "asterisk-en", "--debs", str(g722_debs), "--cache", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "ffmpeg" in err and "G.722" in err and "bash scripts/install_system.sh" in err
    assert not cache.exists()
    # the Vorbis sources need no ffmpeg: the fetch goes on (and fails here on the missing .deb files)
    rc = main(["data", "fetch", "--sources", "fillets-cs", "--debs", str(g722_debs), "--cache", str(cache)])
    err = capsys.readouterr().err
    assert rc == 2 and "has no .deb for fillets-ng-data-cs" in err and "ffmpeg" not in err


def test_synth_checks_its_programs_first(tmp_path, monkeypatch, capsys):
    hide(monkeypatch, "espeak-ng", "flite")
    monkeypatch.setenv("SPOOFRL_CACHE", str(tmp_path / "cache"))     # no fetched recordings either
    out = tmp_path / "bench"
    rc = main(["data", "synth", "--out", str(out), "--preset", "tiny"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "espeak-ng" in err and "flite" in err and "bash scripts/install_system.sh" in err
    assert not out.exists()


def test_a_missing_festival_voice_names_its_package(tmp_path, monkeypatch):
    """festival is there, but only with the kal_diphone voice (its answer to `(voice.list)`)."""
    from spoofrl import prereqs
    bindir = tmp_path / "bin"
    bindir.mkdir()
    festival = bindir / "festival"
    festival.write_text("#!/bin/sh\ncat > /dev/null\necho '(kal_diphone)'\n")
    festival.chmod(festival.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    missing = [p.package for p in prereqs.missing(prereqs.SYNTH)]
    assert missing == ["festvox-kdlpc16k", "festvox-us-slt-hts"]


def test_install_script_installs_every_prerequisite():
    from spoofrl import prereqs
    script = (ROOT / "scripts/install_system.sh").read_text()
    listed = re.search(r'^pkgs="([^"]*)"', script, re.MULTILINE).group(1).split()
    assert set(prereqs.PACKAGES) <= set(listed), set(prereqs.PACKAGES) - set(listed)


# --------------------------------------------------------------------------------------------- symlinks

def test_clips_that_are_links_or_lead_outside_the_package_are_refused(tmp_path, capsys):
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.wav").write_bytes(_wav(0.4, 5))         # a file of this machine, readable as audio
    debs = asterisk_debs(tmp_path / "debs", {
        "hello.wav": _wav(0.5, 1),
        "shadow.wav": Link("/etc/shadow"),
        "secret.wav": Link(str(host / "secret.wav")),
        "digits/1.wav": Link("../hello.wav"),                # a link inside the package: refused too
    })
    cache = tmp_path / "cache"
    rc = main(["data", "fetch", "--sources", "asterisk-en", "--debs", str(debs), "--cache", str(cache)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    rows = read_manifest(cache / "manifest.csv")
    assert [Path(r.path).name for r in rows] == ["hello.wav"]
    with (cache / "problems.tsv").open() as fh:
        refused = {Path(p["path"]).name: p["reason"] for p in csv.DictReader(fh, delimiter="\t")
                   if p["kind"] == "refused"}
    assert set(refused) == {"shadow.wav", "secret.wav", "1.wav"}
    assert "/etc/shadow" in refused["shadow.wav"] and "symbolic link" in refused["shadow.wav"]
    assert "asterisk-en: 1 clips" in out and "3 refused" in out


def test_clip_under_a_linked_folder_is_refused(tmp_path):
    """A voice folder that is a link to a folder of this machine: its files lie outside the package."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "outside.wav").write_bytes(_wav(0.4, 7))
    debs = asterisk_debs(tmp_path / "debs", {"hello.wav": _wav(0.5, 1)},
                         {"usr/share/asterisk/sounds/en_US_m_Intruder": Link(str(host))})
    report = fetch_real_speech("asterisk-en", tmp_path / "cache", debs=debs, workers=1)
    assert [Path(r.path).name for r in report.rows] == ["hello.wav"]
    assert report.sources["asterisk-en"].refused == 1
