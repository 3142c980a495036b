"""Probe defects of issue 25: importer audio paths that leave --root, JSON nested beyond the parser's reach in
FT-GRPO label files, and `data rationales` workers outliving a killed parent."""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.data.importers import IMPORTERS, ImportOptions, import_corpus
from spoofrl.data.manifest import Utterance, write_manifest
from spoofrl.errors import ProtocolError


def _audio(path: Path, seed: int = 0, seconds: float = 0.05) -> Path:
    """A noisy harmonic tone (the importers only need existing audio; the rationales need speech-like audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * (180 + 10 * seed) * k * t) / k for k in range(1, 6)) * 0.2
    sf.write(str(path), (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32), 16000)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------- audio outside --root
# Every importer of the registry has a layout here (test_every_importer_is_probed fails for a new one without):
# protocol formats name their audio on a protocol line, walked formats take every audio file under a folder.

@dataclass(frozen=True)
class ProtocolLayout:
    audio_dir: str                                   # where the format expects audio, relative to --root
    ext: str                                         # the audio's suffix
    appends_ext: bool                                # the protocol names a file id, the importer adds `ext`
    write: Callable[[Path, str], tuple[Path, int]]   # (root, reference) -> (protocol, line naming it)
    given: bool = False                              # the protocol is passed with --protocol


def _asv2019(root: Path, ref: str) -> tuple[Path, int]:
    _audio(root / "ASVspoof2019_LA_train" / "flac" / "LA_T_1.flac")
    return _write(root / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt",
                  f"LA_0079 LA_T_1 - - bonafide\nLA_0079 {ref} - A01 spoof\n"), 2


def _asv2021(track: str, width: int) -> Callable[[Path, str], tuple[Path, int]]:
    def write(root: Path, ref: str) -> tuple[Path, int]:
        _audio(root / f"ASVspoof2021_{track}_eval" / "flac" / "E_1.flac")
        tail = " -" * (width - 8)
        lines = f"S1 E_1 none - bonafide bonafide notrim eval{tail}\nS1 {ref} none - A07 spoof notrim eval{tail}\n"
        return _write(root / "keys" / track / "CM" / "trial_metadata.txt", lines), 2
    return write


def _asv5(root: Path, ref: str) -> tuple[Path, int]:
    _audio(root / "flac_T" / "T_1.flac")
    return _write(root / "ASVspoof5.train.tsv", f"T_1 T_1 F - - - bonafide bonafide bonafide -\n"
                                                f"T_2 {ref} M - - - AC1 A05 spoof -\n"), 2


def _itw(root: Path, ref: str) -> tuple[Path, int]:
    _audio(root / "release_in_the_wild" / "0.wav")
    meta = f"file,speaker,label\n0.wav,A,spoof\n{ref},B,bona-fide\n"
    return _write(root / "release_in_the_wild" / "meta.csv", meta), 3


def _ftgrpo(root: Path, ref: str) -> tuple[Path, int]:
    _audio(root / "a.wav")
    records = [{"audios": ["a.wav"], "solution": "real"}, {"audios": [ref], "solution": "fake"}]
    return _write(root.parent / "labels" / "x_train.jsonl", "".join(json.dumps(r) + "\n" for r in records)), 2


PROTOCOL_LAYOUTS = {
    "asvspoof2019-la": ProtocolLayout("ASVspoof2019_LA_train/flac", ".flac", True, _asv2019),
    "asvspoof2021-la": ProtocolLayout("ASVspoof2021_LA_eval/flac", ".flac", True, _asv2021("LA", 8)),
    "asvspoof2021-df": ProtocolLayout("ASVspoof2021_DF_eval/flac", ".flac", True, _asv2021("DF", 13)),
    "asvspoof5": ProtocolLayout("flac_T", ".flac", True, _asv5),
    "in-the-wild": ProtocolLayout("release_in_the_wild", ".wav", False, _itw),
    "ftgrpo": ProtocolLayout("", ".wav", False, _ftgrpo, given=True),
}
# walked formats: (a good file, the place of a link to audio outside the root), relative to --root
WALKED_LAYOUTS = {
    "folders": ("real/a.wav", "fake/gen/b.wav"),
    "wavefake": ("ljspeech_melgan/a.wav", "ljspeech_melgan/b.wav"),
    "mlaad": ("fake/de/model/a.wav", "fake/de/model/b.wav"),
}


def test_every_importer_is_probed():
    assert set(IMPORTERS) == set(PROTOCOL_LAYOUTS) | set(WALKED_LAYOUTS), \
        "add a layout for the new importer above, so its audio paths are checked against --root"


def _reference(tmp_path: Path, root: Path, layout: ProtocolLayout, escape: str) -> str:
    """What a protocol line names to reach audio outside `root` by `escape` (the audio exists there)."""
    outside = _audio(tmp_path / "outside" / f"secret{layout.ext}")
    audio_dir = root / layout.audio_dir
    if escape == "symlink":
        link = audio_dir / f"clip2{layout.ext}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside)
        target = link
    else:
        target = outside
    name = str(target) if escape == "absolute" else os.path.relpath(target, audio_dir)
    return name[:-len(layout.ext)] if layout.appends_ext else name


@pytest.mark.parametrize("escape", ["dotdot", "absolute", "symlink"])
@pytest.mark.parametrize("fmt", sorted(PROTOCOL_LAYOUTS))
def test_protocol_audio_outside_root_is_refused_naming_the_line(tmp_path, fmt, escape):
    layout = PROTOCOL_LAYOUTS[fmt]
    root = tmp_path / "corpus"
    ref = _reference(tmp_path, root, layout, escape)
    protocol, line = layout.write(root, ref)
    with pytest.raises(ProtocolError) as caught:
        import_corpus(fmt, root, protocols=[protocol] if layout.given else [], out=tmp_path / "m.csv")
    message = str(caught.value)
    assert message.startswith(f"{protocol}:{line}: "), message
    # in-the-wild refuses a name that is absolute or climbs out of meta.csv's folder as it reads the line
    assert re.search(r"outside --root|must be a name relative", message), message
    assert ref in message   # the line's text


@pytest.mark.parametrize("fmt", sorted(WALKED_LAYOUTS))
def test_walked_audio_linking_outside_root_is_refused_naming_the_link(tmp_path, fmt):
    good, linked = WALKED_LAYOUTS[fmt]
    root = tmp_path / "corpus"
    _audio(root / good)
    link = root / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(_audio(tmp_path / "outside" / "secret.wav"))
    with pytest.raises(ProtocolError, match=f"^{re.escape(str(link))}: .*outside --root"):
        import_corpus(fmt, root, out=tmp_path / "m.csv")


def test_linked_folder_leaving_a_bonafide_root_is_refused(tmp_path):
    root, bona = tmp_path / "wavefake", tmp_path / "ljspeech"
    _audio(root / "ljspeech_melgan" / "a.wav")
    _audio(bona / "wavs" / "b.wav")
    _audio(tmp_path / "elsewhere" / "c.wav")
    (bona / "more").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    opts = ImportOptions(bonafide_roots=[str(bona)])
    with pytest.raises(ProtocolError, match=f"^{re.escape(str(bona / 'more' / 'c.wav'))}: .*outside .*{bona}"):
        import_corpus("wavefake", root, options=opts)
    (bona / "more").unlink()   # bona fide audio under its own root is fine, though outside --root
    assert {Path(r.path).name for r in import_corpus("wavefake", root, options=opts)} == {"a.wav", "b.wav"}


def test_links_and_absolute_paths_inside_the_root_are_kept(tmp_path):
    root = tmp_path / "corpus"
    _audio(root / "store" / "x.wav")
    (root / "clips").mkdir()
    (root / "clips" / "x.wav").symlink_to(root / "store" / "x.wav")
    labels = _write(tmp_path / "l_train.jsonl", json.dumps({"audios": ["clips/x.wav"], "solution": "real"}) + "\n" +
                    json.dumps({"audios": [str(root / "store" / "x.wav")], "solution": "fake"}) + "\n")
    rows = import_corpus("ftgrpo", root, protocols=[labels])
    assert [(r.path, r.label) for r in rows] == [(str(root / "clips" / "x.wav"), "bonafide"),
                                                 (str(root / "store" / "x.wav"), "spoof")]


def test_the_path_checked_is_the_path_written(tmp_path):
    """`link/..` goes elsewhere through the link than on paper: the manifest writes the path on paper, so that
    one must be inside --root too."""
    root = tmp_path / "corpus"
    flac = root / "ASVspoof2019_LA_train" / "flac"
    (flac / "d1" / "d2" / "d3").mkdir(parents=True)
    (flac / "link").symlink_to(flac / "d1" / "d2" / "d3")
    _audio(root / "ASVspoof2019_LA_train" / "secret.flac")   # where the link leads: inside
    _audio(tmp_path / "secret.flac")                          # where the written path leads: outside
    protocol, line = _asv2019(root, "link/../../../../secret")
    with pytest.raises(ProtocolError, match=f"^{re.escape(str(protocol))}:{line}: audio {tmp_path}/secret.flac is "
                                            f"outside --root"):
        import_corpus("asvspoof2019-la", root)


def test_missing_audio_outside_root_is_refused_not_searched_for(tmp_path):
    root = tmp_path / "corpus"
    _audio(root / "deep" / "nothere.wav")   # same name under the root: must not stand in for the escaping path
    labels = _write(tmp_path / "l_train.jsonl", json.dumps({"audios": ["../nothere.wav"], "solution": "real"}) + "\n")
    with pytest.raises(ProtocolError, match=f"^{re.escape(str(labels))}:1: audio .*nothere.wav.* outside --root"):
        import_corpus("ftgrpo", root, protocols=[labels])


def test_ftgrpo_system_files_from_the_probe_fail_on_one_line(tmp_path, capsys):
    root = tmp_path / "corpus"
    _audio(root / "a.wav")
    climb = "../" * (len(root.parts) + 2) + "etc/passwd"
    labels = _write(tmp_path / "probe_train.jsonl", "".join(
        json.dumps({"audios": [a], "solution": "real"}) + "\n" for a in ("a.wav", climb, "/etc/shadow")))
    assert main(["data", "import", "ftgrpo", "--root", str(root), "--protocol", str(labels),
                 "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{labels}:2: audio /etc/passwd " in err and "outside --root" in err
    assert not (tmp_path / "m.csv").exists()


# --------------------------------------------------------------------------------------------- FT-GRPO JSON limits

GOOD = json.dumps({"audios": ["a.wav"], "solution": "real"})


@pytest.fixture
def ftgrpo_root(tmp_path):
    root = tmp_path / "corpus"
    _audio(root / "a.wav")
    _audio(root / "b.wav", 1)
    return root


def _import_labels(root: Path, labels: Path, capsys) -> tuple[int, str]:
    rc = main(["data", "import", "ftgrpo", "--root", str(root), "--protocol", str(labels),
               "--out", str(root / "m.csv")])
    return rc, capsys.readouterr().err


def test_deeply_nested_json_line_names_file_and_line(ftgrpo_root, tmp_path, capsys):
    labels = _write(tmp_path / "x_train.jsonl", GOOD + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    rc, err = _import_labels(ftgrpo_root, labels, capsys)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"{labels}:2: JSON nested deeper than" in err


def test_deeply_nested_record_of_a_json_array_names_its_line(ftgrpo_root, tmp_path, capsys):
    labels = _write(tmp_path / "x_train.json", f"[\n{GOOD},\n" + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "\n]\n")
    rc, err = _import_labels(ftgrpo_root, labels, capsys)
    assert rc == 2 and err.count("\n") == 1
    assert f"{labels}:3: JSON nested deeper than" in err


def test_nesting_inside_strings_is_text(ftgrpo_root, tmp_path):
    brackets = "[{" * 5000
    labels = _write(tmp_path / "x_train.jsonl", json.dumps({"audios": ["a.wav"], "solution": "real",
                                                            "system": brackets}) + "\n")
    rows = import_corpus("ftgrpo", ftgrpo_root, protocols=[labels])
    assert rows[0].system == brackets


def test_overlong_record_names_file_and_line(ftgrpo_root, tmp_path, capsys):
    from spoofrl.data.importers import MAX_RECORD_CHARS
    huge = json.dumps({"audios": ["b.wav"], "solution": "fake", "system": "x" * MAX_RECORD_CHARS})
    labels = _write(tmp_path / "x_train.jsonl", GOOD + "\n" + huge + "\n")
    rc, err = _import_labels(ftgrpo_root, labels, capsys)
    assert rc == 2 and err.count("\n") == 1
    assert f"{labels}:2: record has {len(huge)} characters, more than" in err
    array = _write(tmp_path / "y_train.json", f"[\n{GOOD},\n{huge}\n]\n")
    rc, err = _import_labels(ftgrpo_root, array, capsys)
    assert rc == 2 and f"{array}:3: record 2 has {len(huge)} characters, more than" in err


# --------------------------------------------------------------------------------------------- workers die with parent

def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _identity(pid: int) -> str | None:
    """The process's start time, None once it is gone or a zombie (dead, only not yet reaped by init)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else fields[19]


def _wait_until_gone(pids: list[int], limit_s: float = 30.0) -> list[int]:
    """The processes still alive after up to `limit_s` (a generous bound, not a speed requirement)."""
    started = {pid: _identity(pid) for pid in pids}
    deadline = time.monotonic() + limit_s
    while True:
        alive = [p for p in pids if started[p] is not None and _identity(p) == started[p]]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _pipe_fill(fd: int) -> tuple[int, int]:
    """(bytes waiting in the pipe, its capacity)."""
    waiting = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
    return waiting, fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_rationale_workers_exit_when_the_command_is_killed(tmp_path):
    """The parent writes one warning per unreadable clip to a stderr pipe nobody reads, so it stops (blocked)
    with its pool up; kill -9 it there: the workers must not live on."""
    rows = [Utterance(str(_audio(tmp_path / f"ref{i}.wav", i, seconds=1.0)), "bonafide", subset="ref")
            for i in range(3)]
    for i in range(600):   # each logs ~250 bytes: more than a pipe holds
        bad = tmp_path / f"unreadable_{'x' * 150}_{i}.wav"
        bad.write_bytes(b"")
        rows.append(Utterance(str(bad), "spoof", attack="x", subset="bad"))
    write_manifest(rows, tmp_path / "m.csv")
    cmd = [sys.executable, "-m", "spoofrl", "data", "rationales", "--manifest", str(tmp_path / "m.csv"),
           "--subsets", "bad", "--reference-subsets", "ref", "--out", str(tmp_path / "r.jsonl"), "--workers", "2"]
    parent = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "SPOOFRL_NO_PROGRESS": "1"})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while parent.poll() is None and time.monotonic() < deadline:
            waiting, capacity = _pipe_fill(parent.stderr.fileno())
            # Results came back, so both workers were started; the parent cannot end (its warnings outgrow the
            # pipe): it is about to block, its pool up.
            if waiting >= capacity // 2:
                break
            time.sleep(0.1)
        assert parent.poll() is None, "the command ended before it filled half its stderr pipe"
        workers = _children(parent.pid)
        assert len(workers) >= 2, workers
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_until_gone(workers) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in _wait_until_gone(workers, limit_s=0):   # what a failed run left behind
            os.kill(pid, signal.SIGKILL)
        parent.stderr.close()


def test_rationale_workers_write_what_one_process_writes(tmp_path):
    """The armed workers still run the pool's own initializer (the reference profile, seed, max claims)."""
    rows = [Utterance(str(_audio(tmp_path / f"c{i}.wav", i, seconds=1.0)), "bonafide", subset="s") for i in range(4)]
    write_manifest(rows, tmp_path / "m.csv")
    for workers in ("1", "2"):
        assert main(["-q", "data", "rationales", "--manifest", str(tmp_path / "m.csv"), "--seed", "3",
                     "--out", str(tmp_path / f"r{workers}.jsonl"), "--workers", workers]) == 0
    one, two = (tmp_path / "r1.jsonl").read_text(), (tmp_path / "r2.jsonl").read_text()
    assert len(one.splitlines()) == 4 and one == two


WATCHED_CHILD = """
import os, sys, time
from spoofrl.workers import watch_parent
watch_parent(os.getppid(), poll_s=0.1)
print("ready", flush=True)
time.sleep(600)
"""
MIDDLE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "ready\\n"
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_watchdog_ends_a_process_whose_parent_died():
    """The fallback where prctl is missing: a thread that sees the parent change ends the process."""
    middle = subprocess.Popen([sys.executable, "-c", MIDDLE, WATCHED_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        child = int(middle.stdout.readline())
        middle.send_signal(signal.SIGKILL)
        middle.wait()
        assert _wait_until_gone([child]) == []
    finally:
        if middle.poll() is None:
            middle.kill()
            middle.wait()
        middle.stdout.close()
