"""`spoofrl data fetch`: real speech from Debian packages. Offline tests build tiny .deb files with
`dpkg-deb --build` in the layout of the Asterisk prompt packages (a clip package and a transcript package)
and exercise the manifest, resume and every error path with fake `apt-get` scripts; one slow test really
downloads the smallest real source."""
from __future__ import annotations

import csv
import gzip
import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.data.manifest import read_manifest
from spoofrl.data.real import SOURCES, FetchError, fetch_real_speech, resolve_sources
from spoofrl.data.real.debian import inspect_deb
from spoofrl.data.real.parsers import Clip, lua_calls, parse_fillets, parse_hedgewars, parse_ktuberling
from spoofrl.errors import ConfigError

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None,
                                reason="needs dpkg-deb to build the fixture .deb files")

AUDIO_PKG, TEXT_PKG = "asterisk-core-sounds-en-g722", "asterisk-core-sounds-en"
VOICE = "usr/share/asterisk/sounds/en_US_f_Allison"
COPYRIGHT = textwrap.dedent("""\
    Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
    Upstream-Name: asterisk-core-sounds

    Files: *
    Copyright: 2003-2010, Allison Smith
    Comment: The CREDITS file:
     Recorded by: Allison Smith
    License: CC-BY-SA-3.0

    Files: debian/*
    Copyright: 2010, Tzafrir Cohen
    License: GPL-2+
    """)
PROMPTS = textwrap.dedent("""\
    ; Core Asterisk Sounds in English

    hello: Hello there.
    digits/1: one
    beep: [this is a simple beep tone]
    """)


def _wav(seconds: float = 0.5, seed: int = 0) -> bytes:
    """A short noisy tone as 16 kHz WAV bytes (written by soundfile)."""
    import io
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.01 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class Link(str):
    """A symbolic link in a fixture package, pointing at this target."""


def build_deb(out_dir: Path, package: str, files: dict[str, bytes | Link], version: str = "1.6.1-1") -> Path:
    """A real .deb built by dpkg-deb from a fake package tree; a `Link` value becomes a symbolic link in it."""
    tree = out_dir / f"tree-{package}"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
                                         f"Maintainer: Test <test@example.org>\nDescription: test fixture\n")
    for rel, data in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Link):
            path.symlink_to(str(data))
        else:
            path.write_bytes(data)
    deb = out_dir / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True,
                   capture_output=True)
    shutil.rmtree(tree)
    return deb


@pytest.fixture
def debs(tmp_path: Path) -> Path:
    """A folder with the two fixture packages of source asterisk-en: 2 clips with transcripts, one clip not
    in the prompt list, a beep and a silence (not speech), and a file that is not audio."""
    folder = tmp_path / "debs"
    folder.mkdir()
    build_deb(folder, AUDIO_PKG, {
        f"{VOICE}/hello.wav": _wav(0.5, 1),
        f"{VOICE}/digits/1.wav": _wav(0.25, 2),
        f"{VOICE}/unlisted.wav": _wav(0.3, 3),
        f"{VOICE}/beep.wav": _wav(0.2, 4),
        f"{VOICE}/silence/1.wav": np.zeros(1600, np.int16).tobytes(),   # not even a wav: excluded anyway
        f"{VOICE}/broken.wav": b"this is not audio\n" * 10,
        f"usr/share/doc/{AUDIO_PKG}/copyright": COPYRIGHT.encode(),
    })
    build_deb(folder, TEXT_PKG, {
        f"usr/share/doc/{TEXT_PKG}/core-sounds-en.txt.gz": gzip.compress(PROMPTS.encode()),
        f"usr/share/doc/{TEXT_PKG}/copyright": COPYRIGHT.encode(),
    })
    return folder


def _problems(cache: Path) -> list[dict]:
    with (cache / "problems.tsv").open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def fake_apt(tmp_path: Path, body: str) -> dict[str, str]:
    """An `apt-get` script first on PATH; it logs its arguments to CALLS."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "apt-get"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'calls'}\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


# --------------------------------------------------------------------------------------------- manifest

def test_manifest_rows_from_debs(debs, tmp_path):
    cache = tmp_path / "cache"
    report = fetch_real_speech("asterisk-en", cache, debs=debs, workers=1)
    assert report.ok and report.manifest == cache / "manifest.csv"
    rows = {Path(r.path).name: r for r in read_manifest(report.manifest)}
    assert set(rows) == {"hello.wav", "1.wav", "unlisted.wav"}
    hello = rows["hello.wav"]
    assert (hello.label, hello.attack, hello.source, hello.condition, hello.subset) == \
        ("bonafide", "-", "asterisk-en", "pcm16-16k", "-")
    assert hello.audio_path.is_file() and not Path(hello.path).is_absolute()
    assert hello.extra["speaker"] == "asterisk:Allison" and hello.extra["gender"] == "f"
    assert hello.extra["language"] == "en" and hello.extra["transcript"] == "Hello there."
    assert hello.extra["license"] == "CC-BY-SA-3.0" and hello.extra["package"] == AUDIO_PKG
    assert hello.extra["version"] == "1.6.1-1" and hello.extra["sample_rate"] == "16000"
    assert float(hello.extra["duration"]) == pytest.approx(0.5, abs=1e-3)
    assert rows["1.wav"].extra["transcript"] == "one" and rows["unlisted.wav"].extra["transcript"] == ""
    src = report.sources["asterisk-en"]
    assert (src.clips, src.problems, src.excluded, len(src.speakers), src.transcribed) == (3, 1, 2, 1, 2)
    assert src.license_checked
    by_name = {Path(p["path"]).name: p for p in _problems(cache)}
    assert by_name["broken.wav"]["kind"] == "unreadable" and by_name["broken.wav"]["reason"]
    assert by_name["beep.wav"]["kind"] == "excluded" and "not speech" in by_name["beep.wav"]["reason"]
    assert by_name["1.wav"]["kind"] == "excluded" and "silence" in by_name["1.wav"]["reason"]
    assert any("3 clips" in line and "1 unreadable" in line for line in report.summary())


def test_rerun_resumes_without_unpacking(debs, tmp_path):
    cache = tmp_path / "cache"
    first = fetch_real_speech("asterisk-en", cache, debs=debs, workers=1)
    assert sorted(first.unpacked) == sorted([AUDIO_PKG, TEXT_PKG]) and first.reused == []
    stamps = {p: p.stat().st_mtime_ns for p in (cache / "pkgs").glob("*/.spoofrl-unpacked.json")}
    (cache / "pkgs" / ".tmp-interrupted-xyz").mkdir()          # an interrupted unpack's leftovers
    second = fetch_real_speech("asterisk-en", cache, debs=debs, workers=1)
    assert second.unpacked == [] and sorted(second.reused) == sorted([AUDIO_PKG, TEXT_PKG])
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert not (cache / "pkgs" / ".tmp-interrupted-xyz").exists()
    assert [r.path for r in second.rows] == [r.path for r in first.rows]


def test_python_unpack_without_dpkg(debs, tmp_path, monkeypatch):
    """No dpkg-deb (a non-Debian system with downloaded .deb files): the archive is read in Python."""
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    report = fetch_real_speech("asterisk-en", tmp_path / "cache", debs=debs, workers=1)
    assert report.sources["asterisk-en"].clips == 3
    assert {r.extra["transcript"] for r in report.rows} == {"Hello there.", "one", ""}


# --------------------------------------------------------------------------------------------- error paths

def test_corrupt_deb_in_debs_is_named(debs, tmp_path):
    deb = next(debs.glob(f"{AUDIO_PKG}_*.deb"))
    data = deb.read_bytes()
    deb.write_bytes(data[:len(data) // 2])                  # truncated download
    with pytest.raises(FetchError, match="corrupt or truncated") as err:
        fetch_real_speech("asterisk-en", tmp_path / "cache", debs=debs)
    assert str(deb) in str(err.value) and "download it again" in str(err.value)
    assert deb.exists()                                      # the user's file is never deleted
    assert "\n" not in str(err.value)


def test_garbage_deb_is_corrupt(tmp_path):
    bad = tmp_path / f"{AUDIO_PKG}_1_all.deb"
    bad.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(FetchError, match="not a Debian package"):
        inspect_deb(bad, AUDIO_PKG)


def test_missing_package_in_debs(debs, tmp_path):
    next(debs.glob(f"{TEXT_PKG}_*.deb")).unlink()
    with pytest.raises(FetchError) as err:
        fetch_real_speech("asterisk-en", tmp_path / "cache", debs=debs)
    message = str(err.value)
    assert f"has no .deb for {TEXT_PKG}" in message and f"apt-get download {TEXT_PKG}" in message
    assert str(debs) in message


def test_partial_success_writes_manifest_and_fails_the_rest(debs, tmp_path, capsys):
    cache = tmp_path / "cache"
    rc = main(["data", "fetch", "--sources", "asterisk-en,asterisk-fr", "--debs", str(debs), "--cache", str(cache)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "asterisk-en: 3 clips" in out
    assert "1 of 2 sources not fetched" in err and "asterisk-fr" in err and "asterisk-core-sounds-fr-g722" in err
    assert len(err.strip().splitlines()) == 1
    assert {r.source for r in read_manifest(cache / "manifest.csv")} == {"asterisk-en"}
    assert any(p["kind"] == "not-fetched" and p["source"] == "asterisk-fr" for p in _problems(cache))


def test_no_apt_get(tmp_path, monkeypatch):
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FetchError) as err:
        fetch_real_speech("asterisk-en", tmp_path / "cache")
    message = str(err.value)
    assert err.value.kind == "tools" and "apt-get not found" in message
    assert AUDIO_PKG in message and TEXT_PKG in message and "--debs" in message


def test_apt_unable_to_locate_package(tmp_path, monkeypatch):
    env = fake_apt(tmp_path, 'echo "Reading package lists..."\n'
                             'echo "E: Unable to locate package $2" >&2\nexit 100')
    monkeypatch.setenv("PATH", env["PATH"])
    with pytest.raises(FetchError) as err:
        fetch_real_speech("asterisk-en", tmp_path / "cache")
    assert err.value.kind == "unknown-package"
    assert "sudo apt-get update" in str(err.value) and AUDIO_PKG in str(err.value)
    assert _calls(tmp_path)[0] == f"download {AUDIO_PKG}"


def test_apt_network_error(tmp_path, monkeypatch, capsys):
    env = fake_apt(tmp_path, textwrap.dedent("""\
        url="http://deb.debian.org/debian/pool/main/a/asterisk-core-sounds/$2_1.6.1-1_all.deb"
        echo "Err:1 http://deb.debian.org/debian bookworm/main amd64 $2 all 1.6.1-1"
        echo "  Temporary failure resolving 'deb.debian.org'"
        echo "E: Failed to fetch $url  Temporary failure resolving 'deb.debian.org'" >&2
        exit 100"""))
    monkeypatch.setenv("PATH", env["PATH"])
    rc = main(["data", "fetch", "--sources", "asterisk-en", "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "Temporary failure resolving" in err and "--debs" in err
    assert AUDIO_PKG in err and TEXT_PKG in err
    assert len(_calls(tmp_path)) == 1                          # no second try after a network failure


def test_corrupt_download_is_fetched_again(debs, tmp_path, monkeypatch):
    """A damaged .deb in the cache (interrupted download) is deleted and downloaded once more."""
    cache = tmp_path / "cache"
    (cache / "debs").mkdir(parents=True)
    good = next(debs.glob(f"{AUDIO_PKG}_*.deb"))
    (cache / "debs" / good.name).write_bytes(good.read_bytes()[:1000])
    shutil.copy(next(debs.glob(f"{TEXT_PKG}_*.deb")), cache / "debs")
    env = fake_apt(tmp_path, f'cp "{debs}/$2"_*.deb .')
    monkeypatch.setenv("PATH", env["PATH"])
    report = fetch_real_speech("asterisk-en", cache, workers=1)
    assert report.redownloaded == [AUDIO_PKG] and report.downloaded == [AUDIO_PKG]
    assert report.sources["asterisk-en"].clips == 3


def test_corrupt_twice_fails(debs, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    env = fake_apt(tmp_path, 'printf "!<arch>\\ndebian-binary   " > "$2_1.0_all.deb"')
    monkeypatch.setenv("PATH", env["PATH"])
    with pytest.raises(FetchError, match="downloaded again, still damaged"):
        fetch_real_speech("asterisk-en", cache)
    assert _calls(tmp_path) == [f"download {AUDIO_PKG}"] * 2 + [f"download {TEXT_PKG}"] * 2


def test_unknown_source_name():
    with pytest.raises(ConfigError, match="unknown real-speech source 'nope'"):
        resolve_sources("nope")
    assert [s.name for s in resolve_sources("asterisk")] == [n for n in SOURCES if n.startswith("asterisk-")]


# --------------------------------------------------------------------------------------------- parsers

def test_lua_dialogue_calls():
    text = textwrap.dedent('''\
        -- a comment dialogId("no", "x", "y")
        dialogId("vit-m-a", "font_small", "Hi \\"you\\" ".."there.")
        dialogStr("Ahoj, [[not long]] \\\\ tam.")
        dialogId("z", "", [[long
        string]])
        for i = 0, 3 do dialogId("key"..i, "", "") end
        ''')
    calls = lua_calls(text, {"dialogId", "dialogStr"})
    assert calls[0] == ("dialogId", ["vit-m-a", "font_small", 'Hi "you" there.'])
    assert calls[1] == ("dialogStr", ["Ahoj, [[not long]] \\ tam."])
    assert calls[2] == ("dialogId", ["z", "", "long\nstring"])
    assert len(calls) == 3                                    # the loop's call has a variable argument


def test_fillets_scripts_give_transcript_and_character(tmp_path):
    game = "usr/share/games/fillets-ng"
    data, audio = tmp_path / "data", tmp_path / "cs"
    script = data / game / "script"
    (script / "city").mkdir(parents=True)
    (script / "share").mkdir()
    (script / "city/dialogs_cs.lua").write_text(
        'dialogId("vit-m-a", "font_small", "Welcome.")\ndialogStr("Vítejte.")\n\n'
        'dialogId("vit-hs-b", "font_white", "Calm.")\ndialogStr("Klid.")\n', encoding="utf-8")
    (script / "share/bore_dialogs_cs.lua").write_text('dialogId("br-v-x", "font_big", "Bored.")\n'
                                                      'dialogStr("Nuda.")\n', encoding="utf-8")
    (script / "share/stddialogs.lua").write_text('dialogLoad("script/share/bore_", "sound/share/borejokes/")\n')
    files = []
    for rel in ("city/cs/vit-m-a.ogg", "city/cs/vit-hs-b.ogg", "share/borejokes/cs/br-v-x.ogg", "city/cs/new.ogg"):
        path = audio / game / "sound" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        files.append(path)
    parsed = parse_fillets(SOURCES["fillets-cs"], files, {"fillets-ng-data-cs": audio, "fillets-ng-data": data})
    got = {c.path.stem: (c.speaker, c.transcript, c.gloss, c.language) for c in parsed.clips}
    assert got["vit-m-a"] == ("fillets-cs:small_fish", "Vítejte.", "Welcome.", "cs")
    assert got["vit-hs-b"] == ("fillets-cs:city-white", "Klid.", "Calm.", "cs")
    assert got["br-v-x"] == ("fillets-cs:big_fish", "Nuda.", "Bored.", "cs")
    assert got["new"] == ("-", "", "", "cs")
    assert [n.kind for n in parsed.notes] == ["unlisted"]


def test_ktuberling_words_from_file_names(tmp_path):
    base = tmp_path / "usr/share/ktuberling/sounds"
    extra = [(f"egypt_x{i}", f"x{i}") for i in range(5)]       # 5+ names sharing egypt_: a theme prefix
    themes = {"fr": [("eye", "fr/patate_oeil.wav"), ("egypt_camel", "fr/egypte_chameau.wav")]
              + [(n, f"fr/egypte_{w}.wav") for n, w in extra] + [(n, f"fr/patate_{w}.wav") for n, w in extra],
              "uk": [("eye", "uk/eye.ogg")],
              "en": [("egypt_camel", "en/egypt_camel.ogg")] + [(n, f"en/{n}.ogg") for n, _ in extra]}
    files = []
    for lang, sounds in themes.items():
        (base / lang).mkdir(parents=True)
        (base / f"{lang}.soundtheme").write_text(f'<language code="{lang}">\n' + "".join(
            f'  <sound name="{n}" file="{f}" />\n' for n, f in sounds) + "</language>\n")
        for _, f in sounds:
            (base / f).write_bytes(b"")
            files.append(base / f)
    parsed = parse_ktuberling(SOURCES["ktuberling"], sorted(files), {"ktuberling-data": tmp_path})
    got = {c.path.relative_to(base).as_posix(): (c.transcript, c.gloss) for c in parsed.clips}
    assert got["fr/patate_oeil.wav"] == ("oeil", "eye")
    assert got["fr/egypte_chameau.wav"] == ("chameau", "camel")
    assert got["uk/eye.ogg"] == ("", "eye")                 # named after the English id: word unknown
    assert got["en/egypt_camel.ogg"] == ("camel", "camel")
    assert parsed.notes == []


def test_hedgewars_packs(tmp_path):
    voices = tmp_path / "usr/share/games/hedgewars/Data/Sounds/voices"
    files = []
    for rel in ("Pirate/Illgetyou.ogg", "Pirate/Ow2.ogg", "Default_pl/Illgetyou.ogg", "Robot/Hello.ogg"):
        (voices / rel).parent.mkdir(parents=True, exist_ok=True)
        (voices / rel).write_bytes(b"")
        files.append(voices / rel)
    clips: dict[str, Clip] = {c.path.relative_to(voices).as_posix(): c
                              for c in parse_hedgewars(SOURCES["hedgewars"], files, {"hedgewars-data": tmp_path}).clips}
    assert (clips["Pirate/Illgetyou.ogg"].transcript, clips["Pirate/Illgetyou.ogg"].speaker) == \
        ("I'll get you!", "hedgewars:Pirate")
    assert clips["Pirate/Ow2.ogg"].transcript == ""
    assert (clips["Default_pl/Illgetyou.ogg"].language, clips["Default_pl/Illgetyou.ogg"].transcript,
            clips["Default_pl/Illgetyou.ogg"].gloss) == ("pl", "", "I'll get you!")
    assert clips["Robot/Hello.ogg"].excluded


def test_catalogue_covers_the_packages():
    packages = {p for s in SOURCES.values() for p in s.packages}
    assert {"fillets-ng-data-cs", "fillets-ng-data-nl", "fillets-ng-data", "klettres-data", "ktuberling-data",
            "hedgewars-data", "asterisk-core-sounds-en"} <= packages
    assert {f"asterisk-core-sounds-{lang}-g722" for lang in ("en", "fr", "it", "ru", "es")} <= packages
    for source in SOURCES.values():
        assert source.license and source.clips and source.transcripts and source.speakers


# --------------------------------------------------------------------------------------------- real download

@pytest.mark.slow
def test_real_download_of_the_smallest_source(tmp_path):
    """The smallest real source, really downloaded: asterisk-core-sounds-en-g722 (11 MB) + its prompt list."""
    if shutil.which("apt-get") is None:
        pytest.skip("not a Debian/Ubuntu system")
    try:
        report = fetch_real_speech("asterisk-en", tmp_path / "cache", workers=2)
    except FetchError as err:
        if err.kind in ("network", "unknown-package"):
            pytest.skip(f"cannot download here: {err}")
        raise
    src = report.sources["asterisk-en"]
    assert sorted(report.downloaded) == sorted([AUDIO_PKG, TEXT_PKG])
    assert src.clips >= 500 and src.transcribed >= 500 and src.problems == 0
    assert src.speakers == {"asterisk:Allison"} and src.license_checked
    rows = read_manifest(report.manifest)
    assert all(r.extra["license"] == "CC-BY-SA-3.0" and r.condition == "g722-16k" for r in rows)
    assert 20 * 60 < sum(float(r.extra["duration"]) for r in rows) < 30 * 60


def test_missing_debs_folder_is_one_line(tmp_path, capsys):
    missing = tmp_path / "no/such/folder"
    rc = main(["data", "fetch", "--sources", "asterisk-en", "--debs", str(missing), "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and str(missing) in err and "no such folder" in err


def test_fetch_error_survives_pickling():
    import pickle
    err = pickle.loads(pickle.dumps(FetchError("network", ("a", "b"), "Could not resolve 'x'")))
    assert (err.kind, err.packages, err.detail) == ("network", ("a", "b"), "Could not resolve 'x'")
    assert "cannot download a, b (Could not resolve 'x')" in str(err)
