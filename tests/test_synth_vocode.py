"""`spoofrl vocode`: spoofed copies of a user's recordings, paired in a manifest; bad inputs give clear errors."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.data.manifest import Utterance, read_manifest, write_manifest
from spoofrl.errors import ConfigError
from spoofrl.synth.attacks import ATTACKS
from spoofrl.synth.vocode import apply_blockwise, parse_attacks, vocode
from test_synth_attacks import speechlike

SR = 16000
FAST = ["minphase", "envsmooth"]  # quick attacks keep these tests fast


@pytest.fixture
def recordings(tmp_path) -> Path:
    folder = tmp_path / "recs"
    (folder / "day2").mkdir(parents=True)
    sf.write(str(folder / "a.wav"), speechlike(seed=1), SR)
    sf.write(str(folder / "day2" / "b.flac"), speechlike(seed=2), 22050)  # other rate: resampled on input
    return folder


@pytest.fixture(autouse=True)
def _console_log_on_this_tests_stderr(monkeypatch):
    """The CLI's console log handler is made once, bound to the sys.stderr of that moment; under pytest that
    is an earlier test's (closed) capture. Start each test without it so warnings reach capsys."""
    logger = logging.getLogger("spoofrl")
    monkeypatch.setattr(logger, "handlers", [h for h in logger.handlers if isinstance(h, logging.FileHandler)])


def _run(capsys, *argv) -> tuple[int, str]:
    rc = main(["vocode", *argv])
    return rc, capsys.readouterr().err


def test_folder_input_gives_paired_manifest(recordings, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = _run(capsys, "--in", str(recordings), "--out", str(out), "--attacks", ",".join(FAST), "--workers", "2")
    assert rc == 0, err
    rows = read_manifest(out / "manifest.csv")
    bona = [r for r in rows if r.label == "bonafide"]
    spoof = [r for r in rows if r.label == "spoof"]
    assert len(bona) == 2 and len(spoof) == 4
    assert {Path(r.path).name for r in bona} == {"a.wav", "b.flac"}
    assert all(Path(r.path).is_absolute() and r.extra["origin"] == "-" for r in bona)
    originals = {r.path for r in bona}
    for r in spoof:
        assert r.extra["origin"] in originals and r.attack in FAST
        assert r.audio_path.is_file() and sf.info(str(r.audio_path)).samplerate == SR
        assert r.path == f"audio/{r.attack}/{Path(r.extra['origin']).relative_to(recordings).with_suffix('').as_posix()}.flac"
    # spoof and original have the same duration (at 16 kHz)
    pair = next(r for r in spoof if r.extra["origin"].endswith("b.flac"))
    assert abs(sf.info(str(pair.audio_path)).duration - sf.info(pair.extra["origin"]).duration) < 0.01


def test_same_seed_same_spoofs_and_rerun_skips(recordings, tmp_path):
    first = vocode(recordings, tmp_path / "o1", FAST, seed=3, show_progress=False)
    second = vocode(recordings, tmp_path / "o2", FAST, seed=3, show_progress=False)
    assert first.spoofs_written == second.spoofs_written == 4
    for p in (tmp_path / "o1").glob("audio/*/*.flac"):
        q = tmp_path / "o2" / p.relative_to(tmp_path / "o1")
        np.testing.assert_array_equal(sf.read(str(p))[0], sf.read(str(q))[0])
    again = vocode(recordings, tmp_path / "o1", FAST, seed=3, show_progress=False)
    assert again.spoofs_written == 0 and again.spoofs_skipped == 4


def test_manifest_input_vocodes_bonafide_rows_and_keeps_all(recordings, tmp_path):
    manifest = tmp_path / "in.csv"
    write_manifest([Utterance("recs/a.wav", "bonafide", source="me", condition="clean", subset="dev",
                              extra={"speaker": "s1"}),
                    Utterance("recs/day2/b.flac", "spoof", attack="A07", source="me", subset="dev",
                              extra={"speaker": "s2"})], manifest)
    report = vocode(manifest, tmp_path / "out", ["minphase"], show_progress=False)
    assert report.inputs == 1 and report.spoofs_written == 1
    rows = read_manifest(tmp_path / "out" / "manifest.csv")
    assert [r.label for r in rows] == ["bonafide", "spoof", "spoof"]
    made = rows[2]
    assert (made.attack, made.subset, made.source, made.condition) == ("minphase", "dev", "me", "clean")
    assert made.extra["speaker"] == "s1" and made.extra["origin"] == rows[0].path
    assert rows[1].attack == "A07"                                        # existing spoof rows are kept


def test_corrupt_file_is_named_and_the_others_are_processed(recordings, tmp_path, capsys):
    (recordings / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    out = tmp_path / "out"
    rc, err = _run(capsys, "--in", str(recordings), "--out", str(out), "--attacks", "minphase")
    assert rc == 2 and "broken.wav" in err and "1 of 3 input files failed" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == 4 and not any("broken" in r.path for r in rows)
    assert all(r.audio_path.is_file() for r in rows)


def test_unusable_files_of_every_kind_are_named_and_the_others_processed(recordings, tmp_path, capsys):
    (recordings / "empty.wav").write_bytes(b"")
    (recordings / "notes.flac").write_text("these are my notes, not audio")
    sf.write(str(recordings / "silent.wav"), np.zeros(SR), SR)
    sf.write(str(recordings / "blip.wav"), speechlike(seed=3)[:400], SR)
    out = tmp_path / "out"
    rc, err = _run(capsys, "--in", str(recordings), "--out", str(out), "--attacks", "minphase")
    assert rc == 2 and "4 of 6 input files failed" in err and "Traceback" not in err
    for name, why in [("empty.wav", "file is empty"), ("notes.flac", "not a readable audio file"), ("silent.wav", "all samples are zero"),
                      ("blip.wav", "too short")]:
        assert f"{name}: {why}" in err, name
    rows = read_manifest(out / "manifest.csv")
    assert sorted(Path(r.path).name for r in rows) == ["a.flac", "a.wav", "b.flac", "b.flac"]
    assert all(r.audio_path.is_file() for r in rows)


def test_malformed_manifest_lines_are_named_and_good_rows_vocoded(recordings, tmp_path, capsys):
    manifest = tmp_path / "mine.csv"
    manifest.write_text("path,label,attack,source,condition,subset\n"
                        "recs/a.wav,bonafide,-,me,-,train\n"
                        "recs/day2/b.flac,real,-,me,-,train\n"          # unknown label
                        "recs/day2/b.flac,bonafide,-,me\n"              # missing fields
                        ",bonafide,-,me,-,train\n")                     # empty path
    out = tmp_path / "out"
    rc, err = _run(capsys, "--in", str(manifest), "--out", str(out), "--attacks", "minphase")
    final = err.strip().splitlines()[-1]
    assert rc == 2 and "3 malformed manifest lines skipped" in final and "Traceback" not in err
    for line, why in [(3, "label must be"), (4, "expected 6 fields"), (5, "empty path")]:
        assert f"mine.csv:{line}: {why}" in err
    rows = read_manifest(out / "manifest.csv")
    assert [(Path(r.path).name, r.label) for r in rows] == [("a.wav", "bonafide"), ("a.flac", "spoof")]
    assert rows[1].audio_path.is_file()


def test_output_that_is_a_file_is_a_one_line_error(recordings, tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("x")
    rc, err = _run(capsys, "--in", str(recordings), "--out", str(target), "--attacks", "minphase")
    assert rc == 2 and "--out must be a folder" in err and err.count("\n") == 1


@pytest.mark.parametrize("setup,attacks,message", [
    ("missing", "minphase", "not found"),
    ("empty", "minphase", "no audio files found"),
    ("folder", "minphase,wrld", "unknown attack 'wrld'"),
    ("folder", ",", "--attacks is empty"),
    ("manifest_without_bonafide", "minphase", "no bona fide rows"),
    ("bad_manifest", "minphase", "missing column"),
])
def test_bad_inputs_are_one_line_errors(setup, attacks, message, recordings, tmp_path, capsys):
    target = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "folder": recordings,
              "manifest_without_bonafide": tmp_path / "m.csv", "bad_manifest": tmp_path / "bad.csv"}[setup]
    if setup == "empty":
        target.mkdir()
        (target / "readme.txt").write_text("no audio here")
    if setup == "manifest_without_bonafide":
        write_manifest([Utterance(str(recordings / "a.wav"), "spoof", attack="x")], target)
    if setup == "bad_manifest":
        target.write_text("file,kind\na.wav,bonafide\n")
    rc, err = _run(capsys, "--in", str(target), "--out", str(tmp_path / "out"), "--attacks", attacks)
    assert rc == 2 and message in err and err.count("\n") == 1, err


def test_too_short_input_is_reported(tmp_path):
    folder = tmp_path / "short"
    folder.mkdir()
    sf.write(str(folder / "blip.wav"), speechlike(seed=0)[:800], SR)
    report = vocode(folder, tmp_path / "out", ["minphase"], show_progress=False)
    assert report.failed and "too short" in report.failed[0][1]


def test_parse_attacks():
    assert parse_attacks("all") == list(ATTACKS)
    assert parse_attacks(" world , hnm,world") == ["world", "hnm"]
    with pytest.raises(ConfigError, match="known: celp"):
        parse_attacks("nope")


def test_long_recordings_are_vocoded_in_cross_faded_blocks():
    x = np.tile(speechlike(seed=0), 4)
    y = apply_blockwise(ATTACKS["envsmooth"], x, SR, np.random.default_rng(0), block_s=1.5, fade_s=0.05)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    whole = ATTACKS["envsmooth"](x, SR, np.random.default_rng(0))
    assert np.corrcoef(whole, y)[0, 1] > 0.95                 # blocks join without gaps or clicks


def test_output_inside_input_folder_is_not_vocoded_again(recordings):
    out = recordings / "vocoded"
    first = vocode(recordings, out, ["minphase"], show_progress=False)
    again = vocode(recordings, out, ["minphase"], show_progress=False)
    assert first.inputs == again.inputs == 2 and again.spoofs_written == 0
