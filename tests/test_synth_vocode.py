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


# ------------------------------------------------------------------------------------------ output paths stay in OUT

def _tree(root: Path) -> dict[Path, bytes | str]:
    """Every path under `root` with its content (files), link target (symlinks) or '' (folders)."""
    found = {}
    for p in root.rglob("*"):
        found[p] = f"-> {p.readlink()}" if p.is_symlink() else p.read_bytes() if p.is_file() else ""
    return found


def test_manifest_paths_with_dotdot_or_absolute_never_write_outside_out(tmp_path, capsys):
    (tmp_path / "in2").mkdir()
    sf.write(str(tmp_path / "in2" / "a.wav"), speechlike(seed=1), SR)
    (tmp_path / "abs" / "path").mkdir(parents=True)
    sf.write(str(tmp_path / "abs" / "path" / "b.wav"), speechlike(seed=2), SR)
    lists = tmp_path / "lists" / "x" / "y"
    lists.mkdir(parents=True)
    sf.write(str(lists / "c.wav"), speechlike(seed=3), SR)
    manifest = lists / "in.csv"
    write_manifest([Utterance("../../../in2/a.wav", "bonafide"),
                    Utterance(str(tmp_path / "abs" / "path" / "b.wav"), "bonafide"),
                    Utterance("c.wav", "bonafide")], manifest)
    out = tmp_path / "out"
    before = _tree(tmp_path)
    rc, err = _run(capsys, "--in", str(manifest), "--out", str(out), "--attacks", "minphase")
    assert rc == 0, err
    after = _tree(tmp_path)
    outside = {p for p in after if not p.is_relative_to(out)}
    assert outside == set(before) and all(after[p] == before[p] for p in before), sorted(outside - set(before))
    rows = read_manifest(out / "manifest.csv")
    spoofs = [r for r in rows if r.label == "spoof"]
    assert len(spoofs) == 3
    for r in spoofs:
        assert r.audio_path.is_file() and r.audio_path.resolve().is_relative_to(out.resolve()), r.path
        assert ".." not in Path(r.path).parts and not Path(r.path).is_absolute()
    origins = {Path(r.extra["origin"]).resolve() for r in spoofs}
    assert origins == {(tmp_path / "in2" / "a.wav").resolve(), (tmp_path / "abs" / "path" / "b.wav").resolve(),
                       (lists / "c.wav").resolve()}
    made = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flac"))
    assert made == sorted(r.path for r in spoofs)


def test_spoof_keys_are_safe_and_unique():
    from spoofrl.synth.vocode import KeyMaker, safe_parts
    keys = KeyMaker()
    given = ["../../../in2/a.wav", "/abs/path/b.wav", "..\\..\\win\\c.wav", "C:\\data\\d.wav", "e\x00f.wav",
             "..", "./a.wav", "a.flac", "A.wav", "a.flac/g.wav", "in2/./a.wav"]
    made = [keys.key_for(p) for p in given]
    assert made == ["in2/a", "abs/path/b", "win/c", "C_/data/d", "e_f", "input", "a", "a_flac", "A_wav",
                    "a_flac/g_wav", "in2/a_wav"]
    assert len({k.casefold() for k in made}) == len(made)
    for key in made:
        assert ".." not in key.split("/") and not key.startswith("/") and "\\" not in key and "\x00" not in key
    assert safe_parts("a/../../b") == ["a", "b"] and safe_parts("///") == ["input"]
    again = KeyMaker()
    assert [again.key_for(p) for p in ["x.wav", "x.flac", "x.mp3", "x.mp3"]] == ["x", "x_flac", "x_mp3", "x_mp3~2"]


def test_symlink_in_output_folder_leading_outside_is_refused(recordings, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / "audio").mkdir(parents=True)
    (out / "audio" / "minphase").symlink_to(elsewhere, target_is_directory=True)
    rc, err = _run(capsys, "--in", str(recordings), "--out", str(out), "--attacks", "minphase")
    assert rc == 2 and "outside --out" in err and "Traceback" not in err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("name", ["manifest.csv.tmp", "manifest.csv", "failures.tsv"])
def test_symlinked_manifest_or_listing_leading_outside_is_refused(recordings, tmp_path, capsys, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    rc, err = _run(capsys, "--in", str(recordings), "--out", str(out), "--attacks", "minphase")
    assert rc == 2 and "outside --out" in err and err.count("\n") == 1
    assert victim.read_text() == "precious"


# ------------------------------------------------------------------------------------------ every failure named

def test_every_failure_is_named_and_listed_in_failures_tsv(recordings, tmp_path, capsys):
    bad = [f"bad{i}.wav" for i in range(7)]
    for name in bad:
        (recordings / name).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    out = tmp_path / "out"
    rc, err = _run(capsys, "--in", str(recordings), "--out", str(out), "--attacks", "minphase")
    assert rc == 2 and "7 of 9 input files failed" in err and "more" not in err and "Traceback" not in err
    for name in bad:
        assert str(recordings / name) + ": " in err, name
    assert str(out / "failures.tsv") in err.strip().splitlines()[-1]
    listed = (out / "failures.tsv").read_text().splitlines()
    assert listed[0] == "kind\tpath\treason" and len(listed) == 8
    assert sorted(Path(line.split("\t")[1]).name for line in listed[1:]) == bad
    assert all(line.startswith("input\t") and line.split("\t")[2] for line in listed[1:])
    # fixed and rerun: no failures, and the stale listing is gone
    for name in bad:
        (recordings / name).unlink()
    rc, err = _run(capsys, "--in", str(recordings), "--out", str(out), "--attacks", "minphase")
    assert rc == 0, err
    assert not (out / "failures.tsv").exists()


def test_malformed_manifest_lines_are_listed_in_failures_tsv(recordings, tmp_path, capsys):
    manifest = tmp_path / "mine.csv"
    manifest.write_text("path,label,attack,source,condition,subset\nrecs/a.wav,bonafide,-,me,-,train\n"
                        + "".join(f"recs/x{i}.wav,real,-,me,-,train\n" for i in range(6)))
    out = tmp_path / "out"
    rc, err = _run(capsys, "--in", str(manifest), "--out", str(out), "--attacks", "minphase")
    assert rc == 2 and "6 malformed manifest lines skipped" in err and "more" not in err
    for line in range(3, 9):
        assert f"mine.csv:{line}: label must be" in err
    listed = (out / "failures.tsv").read_text().splitlines()[1:]
    assert [row.split("\t")[:2] for row in listed] == [["manifest_line", f"{manifest}:{i}"] for i in range(3, 9)]


def test_symlink_is_reported_by_its_own_name(recordings, tmp_path, capsys):
    hidden = tmp_path / "elsewhere"
    hidden.mkdir()
    (hidden / "target_corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    (recordings / "link.wav").symlink_to(hidden / "target_corrupt.wav")
    out = tmp_path / "out"
    rc, err = _run(capsys, "--in", str(recordings), "--out", str(out), "--attacks", "minphase")
    assert rc == 2 and f"{recordings / 'link.wav'}: " in err and "target_corrupt" not in err
    assert "target_corrupt" not in (out / "failures.tsv").read_text()
    assert str(recordings / "link.wav") in (out / "failures.tsv").read_text()


def test_symlinked_good_file_keeps_its_own_name_in_the_manifest(recordings, tmp_path):
    hidden = tmp_path / "elsewhere"
    hidden.mkdir()
    sf.write(str(hidden / "target.wav"), speechlike(seed=4), SR)
    (recordings / "link.wav").symlink_to(hidden / "target.wav")
    vocode(recordings, tmp_path / "out", ["minphase"], show_progress=False)
    rows = read_manifest(tmp_path / "out" / "manifest.csv")
    assert str(recordings / "link.wav") in {r.path for r in rows}
    assert (tmp_path / "out" / "audio" / "minphase" / "link.flac").is_file()


# ------------------------------------------------------------------------------------------ failed manifest rows kept

def test_failed_bonafide_manifest_row_is_kept_and_marked(recordings, tmp_path, capsys):
    (recordings / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    manifest = tmp_path / "in.csv"
    write_manifest([Utterance("recs/a.wav", "bonafide", source="me", subset="dev", extra={"speaker": "s1"}),
                    Utterance("recs/broken.wav", "bonafide", source="me", subset="dev", extra={"speaker": "s2"}),
                    Utterance("recs/day2/b.flac", "spoof", attack="A07", source="me", subset="dev")], manifest)
    out = tmp_path / "out"
    rc, err = _run(capsys, "--in", str(manifest), "--out", str(out), "--attacks", "minphase")
    assert rc == 2 and "recs/broken.wav: " in err and "1 of 2 input files failed" in err
    rows = read_manifest(out / "manifest.csv")
    assert [(Path(r.path).name, r.label) for r in rows] == [("a.wav", "bonafide"), ("broken.wav", "bonafide"),
                                                            ("b.flac", "spoof"), ("a.flac", "spoof")]
    broken = rows[1]
    assert broken.path == str((recordings / "broken.wav").resolve()) and broken.extra["speaker"] == "s2"
    assert broken.extra["vocode_error"] not in ("", "-") and broken.extra["origin"] == "-"
    assert all(r.extra["vocode_error"] == "-" for r in rows if r is not broken)
    assert not any(r.extra["origin"] == broken.path for r in rows)
    # a rerun with the file fixed clears the mark; the help text says what happens
    sf.write(str(recordings / "broken.wav"), speechlike(seed=5), SR)
    rc, err = _run(capsys, "--in", str(manifest), "--out", str(out), "--attacks", "minphase")
    assert rc == 0, err
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == 5 and not any("vocode_error" in r.extra for r in rows)
    with pytest.raises(SystemExit):
        main(["vocode", "--help"])
    assert "vocode_error" in " ".join(capsys.readouterr().out.split())
