"""`spoofrl detect`: inputs (files, folders, globs), every kind of bad file, any rate/channels/codec,
chunk timeline of long files, calibrated scores, report formats and exit codes.

Scores come from a hand-set log-mel model whose verdict we can predict: low-frequency energy reads
as bona fide, high-frequency energy as spoof. So a tone followed by hiss must show a spoof chunk where
the hiss is."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import chain_ops, float_tol
from spoofrl.cli import main
from spoofrl.detect import DetectOptions, detect_files, expand_inputs, load_detection_model

SR = 16000
# The crafted model's test signals (tones, hiss) hold no speech, so the tests of scoring score them anyway;
# the speech gate itself (verdict no-speech) is tested at the end of this file and in test_vad.py.
ANYWAY = "--score-without-speech"


def scoring(**kw) -> DetectOptions:
    """Options of the scoring tests: no progress bar, and tones / hiss scored although they hold no speech."""
    return DetectOptions(show_progress=False, score_without_speech=True, **kw)


def low_tone(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonics of 150 Hz + a little noise: energy in the low mel bands -> bona fide for the crafted model."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 5)) * 0.2
    return (x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def hiss(seconds: float, sr: int = SR, seed: int = 1) -> np.ndarray:
    """High-passed noise: energy in the top mel bands -> spoof for the crafted model."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * sr))
    x = np.diff(np.diff(x, prepend=0), prepend=0)  # second difference = strong high-pass
    return (0.1 * x / np.abs(x).max()).astype(np.float32)


def crafted_model_dir(folder: Path) -> Path:
    """A logmel-linear detector whose head scores low mel bands up and high bands down."""
    import torch

    from spoofrl.models import build_model, load_model_preset, save_model
    model = build_model(load_model_preset("logmel-linear"))
    head = model.backend.head
    with torch.no_grad():
        slope = torch.linspace(1.0, -1.0, head.weight.shape[1])
        head.weight.copy_(torch.stack([-slope, slope]))
        head.bias.zero_()
    return save_model(model, folder)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return crafted_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def loaded(model_dir):
    return load_detection_model(model_dir, "cpu")


def score_tol(score: float) -> float:
    """How far two float32 computations of one crafted-model score may drift (other batch shapes): the 512-point
    STFT, 257-bin mel sums, a mean over <= 400 frames and the 60-wide head, on |score| (~70 here; at least the
    head's terms, |w x| <= 14); plus the report's 6 significant digits (5e-7 of |score|) on either side."""
    return float_tol(np.float32, chain_ops(512, 257, 400, 60), max(abs(score), 14.0)) + 1e-6 * abs(score)


def write(path: Path, x: np.ndarray, sr: int = SR, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, **kw)
    return path


def run_json(capsys, args: list[str], anyway: bool = True) -> tuple[int, dict]:
    rc = main(["detect", *([ANYWAY] if anyway else []), *args, "--format", "json"])
    return rc, json.loads(capsys.readouterr().out)


def by_name(report: dict) -> dict[str, dict]:
    return {Path(f["path"]).name: f for f in report["files"]}


# ------------------------------------------------------------------------------------------ inputs

def test_folders_are_searched_recursively_and_globs_expand(tmp_path):
    write(tmp_path / "a" / "one.wav", low_tone(0.5))
    write(tmp_path / "a" / "deep" / "two.flac", low_tone(0.5))
    (tmp_path / "a" / "notes.txt").write_text("not audio")  # ignored inside folders (not an audio suffix)
    write(tmp_path / "b" / "three.wav", low_tone(0.5))
    files = expand_inputs([str(tmp_path / "a"), str(tmp_path / "b" / "*.wav"), str(tmp_path / "a" / "one.wav")])
    assert [Path(f.path).name for f in files] == ["two.flac", "one.wav", "three.wav"]  # sorted paths, once each
    assert all(f.problem is None for f in files)


def test_unmatched_glob_missing_file_and_empty_folder_are_reported(tmp_path, model_dir, capsys):
    (tmp_path / "empty").mkdir()
    good = write(tmp_path / "good.wav", low_tone(1.0))
    rc, report = run_json(capsys, [str(good), str(tmp_path / "nothing*.wav"), str(tmp_path / "missing.wav"),
                                   str(tmp_path / "empty"), "--model", str(model_dir)])
    assert rc == 1
    reasons = {Path(f["path"]).name: f["error"] for f in report["files"]}
    assert reasons["good.wav"] is None
    assert "matched no files" in reasons["nothing*.wav"]
    assert "not found" in reasons["missing.wav"]
    assert "no audio files" in reasons["empty"]
    assert report["summary"] == {"files": 4, "bonafide": 1, "spoof": 0, "no-speech": 0, "error": 3}


# ------------------------------------------------------------------------------------------ bad files

def test_bad_files_get_error_verdicts_and_the_rest_are_scored(tmp_path, model_dir, capsys):
    write(tmp_path / "good.wav", low_tone(1.0))
    write(tmp_path / "spoofy.wav", hiss(1.0))
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("definitely not audio\n" * 50)
    write(tmp_path / "silent.wav", np.zeros(SR, np.float32))
    write(tmp_path / "zero_frames.wav", np.zeros(0, np.float32))
    corrupt = tmp_path / "corrupt.flac"
    write(corrupt, low_tone(2.0))
    data = bytearray(corrupt.read_bytes())
    data[200:] = np.random.default_rng(0).integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    corrupt.write_bytes(bytes(data))

    rc, report = run_json(capsys, [str(tmp_path), "--model", str(model_dir)])
    files = by_name(report)
    assert rc == 1
    assert files["good.wav"]["verdict"] == "bonafide" and files["spoofy.wav"]["verdict"] == "spoof"
    expected = {"empty.wav": "empty", "text.wav": "not a readable audio", "silent.wav": "silent",
                "zero_frames.wav": "no samples", "corrupt.flac": "corrupt"}
    for name, reason in expected.items():
        f = files[name]
        assert f["verdict"] == "error" and f["score"] is None, name
        assert reason in f["error"] and "\n" not in f["error"], (name, f["error"])


def test_huge_float_samples_are_an_error_not_a_nan_spoof(tmp_path, model_dir, capsys):
    """Finite float samples >= 1e19 overflow the features: the score would be NaN, read as 'spoof'."""
    write(tmp_path / "good.wav", low_tone(1.0))
    write(tmp_path / "huge.wav", (low_tone(1.0) * 1e20).astype(np.float32), subtype="FLOAT")
    rc = main(["detect", ANYWAY, str(tmp_path), "--model", str(model_dir), "--format", "json"])
    text = capsys.readouterr().out
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    files = by_name(report)
    assert rc == 1
    assert files["good.wav"]["verdict"] == "bonafide"
    huge = files["huge.wav"]
    assert huge["verdict"] == "error" and huge["score"] is None and huge["p_spoof"] is None
    assert "non-finite score" in huge["error"] and "[-1, 1]" in huge["error"]
    assert report["summary"]["error"] == 1


def test_model_with_nan_weights_gives_errors_with_a_reason(tmp_path, loaded, model_dir):
    import dataclasses

    import torch
    model = load_detection_model(model_dir, "cpu").model
    with torch.no_grad():
        model.backend.head.weight.fill_(float("nan"))
    damaged = dataclasses.replace(loaded, model=model)
    write(tmp_path / "a.wav", low_tone(1.0))
    [result] = detect_files(damaged, [str(tmp_path / "a.wav")], scoring())
    assert result.failed and result.score is None
    assert "non-finite score" in result.error and "damaged" in result.error


def test_exit_code_zero_when_all_files_score(tmp_path, model_dir, capsys):
    write(tmp_path / "a.wav", low_tone(1.0))
    assert main(["detect", ANYWAY, str(tmp_path / "a.wav"), "--model", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "a.wav" in out and "bonafide" in out and str(Path(model_dir).resolve()) in out


def test_one_bad_file_makes_exit_code_nonzero_and_table_names_the_reason(tmp_path, model_dir, capsys):
    write(tmp_path / "a.wav", low_tone(1.0))
    (tmp_path / "b.wav").write_text("nope")
    rc = main(["detect", ANYWAY, str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--model", str(model_dir)])
    captured = capsys.readouterr()
    assert rc == 1
    lines = captured.out.splitlines()
    assert any(line.startswith(str(tmp_path / "a.wav")) and line.endswith("bonafide") for line in lines)
    assert any("error:" in line and "not a readable audio file" in line for line in lines)
    assert "1 of 2 file(s) could not be scored" in captured.err


# ------------------------------------------------------------------------------------------ formats / rates

def test_stereo_48k_and_8k_mulaw_score_like_the_16k_original(tmp_path, loaded):
    x = low_tone(2.0)
    ref = write(tmp_path / "ref.wav", x)
    x48 = low_tone(2.0, sr=48000)
    stereo = write(tmp_path / "stereo48.wav", np.stack([x48, x48], axis=1), sr=48000)
    mulaw = write(tmp_path / "mulaw8k.wav", low_tone(2.0, sr=8000), sr=8000, subtype="ULAW")
    assert sf.info(str(mulaw)).subtype == "ULAW"
    results = {Path(r.path).name: r for r in detect_files(loaded, [str(ref), str(stereo), str(mulaw)], scoring())}
    for name in ("stereo48.wav", "mulaw8k.wav"):
        r = results[name]
        assert r.error is None and abs(r.duration - 2.0) < 0.01, name
        assert r.verdict == "bonafide", name
    # Same content at another rate and channel count: the same evidence, up to resampling.
    assert results["stereo48.wav"].score == pytest.approx(results["ref.wav"].score, rel=0.05)


def test_csv_has_one_row_per_file_and_names_the_model(tmp_path, model_dir, capsys):
    write(tmp_path / "a.wav", low_tone(1.0))
    write(tmp_path / "b.wav", hiss(9.0))
    out_file = tmp_path / "out" / "report.csv"
    rc = main(["detect", ANYWAY, str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--model", str(model_dir),
               "--format", "csv", "-o", str(out_file)])
    assert rc == 0 and capsys.readouterr().out == ""
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert [Path(r["path"]).name for r in rows] == ["a.wav", "b.wav"]
    assert rows[0]["verdict"] == "bonafide" and rows[1]["verdict"] == "spoof"
    assert rows[1]["spoof_segments"] == "0.0-9.0"  # consecutive spoof chunks merged
    assert rows[0]["score_type"] == "log-odds" and model_dir.name in rows[0]["model"]


# ------------------------------------------------------------------------------------------ long files

def test_long_file_timeline_shows_where_the_fake_part_is(tmp_path, model_dir, capsys):
    x = np.concatenate([low_tone(8.0), hiss(4.0), low_tone(4.5)])  # 16.5 s: tail 0.5 s joins the last chunk
    path = write(tmp_path / "partly_fake.wav", x)
    rc, report = run_json(capsys, [str(path), "--model", str(model_dir), "--chunk-seconds", "4"])
    assert rc == 0
    f = report["files"][0]
    assert [(c["start"], c["end"]) for c in f["chunks"]] == [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 16.5)]
    assert [c["verdict"] for c in f["chunks"]] == ["bonafide", "bonafide", "spoof", "bonafide"]
    # File score = duration-weighted mean of the chunk scores.
    weights = [c["end"] - c["start"] for c in f["chunks"]]
    # the scores are written with 6 significant digits (5e-7 relative), the file's from the unrounded chunks';
    # equal weights instead would move it by ~1 (the 4.5 s chunk's extra 0.5 s, on scores -68 to +50)
    worst = max(abs(c["score"]) for c in f["chunks"])
    assert f["score"] == pytest.approx(np.average([c["score"] for c in f["chunks"]], weights=weights), rel=0,
                                       abs=1e-6 * worst)
    assert f["duration"] == pytest.approx(16.5)
    assert report["settings"]["aggregation"].startswith("duration-weighted mean")


def test_ffmpeg_only_format_is_streamed_with_a_timeline(tmp_path, loaded):
    """m4a (AAC) is not a soundfile format: it is decoded through an ffmpeg pipe chunk by chunk."""
    import shutil
    import subprocess
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    wav = write(tmp_path / "src.wav", np.concatenate([low_tone(4.0), hiss(4.0)]))
    m4a = tmp_path / "partly_fake.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(wav), "-c:a", "aac", "-b:a", "128k", str(m4a)],
                   check=True)
    truncated = tmp_path / "truncated.m4a"
    truncated.write_bytes(m4a.read_bytes()[: m4a.stat().st_size // 2])
    good, bad = detect_files(loaded, [str(m4a), str(truncated)], scoring())
    assert good.error is None and good.duration == pytest.approx(8.0, abs=0.1)
    assert [c["verdict"] for c in good.chunks] == ["bonafide", "spoof"]
    assert bad.verdict == "error" and "not a readable audio file" in bad.error and "\n" not in bad.error


def test_short_file_has_no_timeline_and_batch_size_does_not_change_scores(tmp_path, loaded):
    seconds = [0.5, 1.75, 3.0, 4.25, 5.5]
    paths = [write(tmp_path / f"{i}.wav", low_tone(s, seed=i) if i % 2 else hiss(s, seed=i))
             for i, s in enumerate(seconds)]
    one = detect_files(loaded, [str(p) for p in paths], scoring(batch_size=1))
    many = detect_files(loaded, [str(p) for p in paths], scoring(batch_size=16))
    # Up to one chunk (4 s) plus a tail under a quarter chunk: no timeline; 5.5 s: two chunks.
    assert [len(r.chunks) for r in one] == [0, 0, 0, 0, 2]
    # Only equal-length chunks share a forward pass, so the batch size changes nothing but float rounding
    # (score_tol: ~1e-3 on scores of ~70); a chunk zero-padded to its batch mates' length would move by > 1
    for a, b in zip(one, many):
        assert a.score == pytest.approx(b.score, rel=0, abs=score_tol(b.score))
    assert [r.verdict for r in one] == ["spoof", "bonafide", "spoof", "bonafide", "spoof"]


def test_a_files_score_does_not_depend_on_the_other_files(tmp_path, loaded):
    """A 5 s file has a 1 s last chunk; batched with other files' 4 s chunks it would be zero-padded, and the
    padded frames move a short chunk's pooled statistics. The same file must get the same score however it
    is run: alone, or in one command with other files."""
    target = write(tmp_path / "target.wav", np.concatenate([low_tone(4.0), hiss(1.0)]))
    others = [write(tmp_path / f"other{i}.wav", low_tone(4.0 + i, seed=i)) for i in range(3)]
    opts = scoring()
    (alone,) = detect_files(loaded, [str(target)], opts)
    together = detect_files(loaded, [str(p) for p in others] + [str(target)], opts)[-1]
    assert together.chunks == alone.chunks and together.score == alone.score


def test_long_file_is_streamed_in_chunks_not_loaded_whole(tmp_path, loaded, monkeypatch):
    """10 minutes of audio is 38 MB as float32: the Python-side peak while scoring must stay a small fraction
    of that (chunks of 4 s), and the model never sees more than one chunk (plus a merged tail) per wave."""
    import tracemalloc

    import spoofrl.inference
    path = tmp_path / "ten_minutes.wav"
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
        for i in range(10):
            out.write(low_tone(60.0, seed=i))
    longest = []
    real_score = spoofrl.inference.score_waveforms

    def spy(model, waves, **kw):
        longest.append(max(len(w) for w in waves))
        return real_score(model, waves, **kw)
    monkeypatch.setattr(spoofrl.inference, "score_waveforms", spy)
    tracemalloc.start()
    try:
        (result,) = detect_files(loaded, [str(path)], scoring(batch_size=4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error is None and result.duration == pytest.approx(600.0) and len(result.chunks) == 150
    assert max(longest) == 4 * SR
    assert peak < 10e6, f"peak {peak / 1e6:.1f} MB of Python allocations: the file was not streamed"


def test_truncated_wav_is_an_error_but_a_streamed_wav_header_is_fine(tmp_path, loaded):
    """A cut-off WAV (interrupted copy) still announces its full length in the header (spoofrl.audio checks)."""
    import subprocess
    full = write(tmp_path / "full.wav", low_tone(6.0))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    results = detect_files(loaded, [str(full), str(cut)], scoring())
    assert results[0].error is None
    assert results[1].verdict == "error" and "truncated" in results[1].error
    # ffmpeg writing to a pipe cannot know the length: the header's size is unknown, not a truncation.
    piped = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(full), "-f", "wav", "-"],
                           capture_output=True, check=True).stdout
    (tmp_path / "piped.wav").write_bytes(piped)
    (result,) = detect_files(loaded, [str(tmp_path / "piped.wav")], scoring())
    assert result.error is None and result.duration == pytest.approx(6.0)


def test_ctrl_c_keeps_the_files_already_scored(tmp_path, model_dir, capsys, monkeypatch):
    import spoofrl.detect.engine as engine
    paths = [write(tmp_path / f"{i}.wav", low_tone(1.0 + i, seed=i)) for i in range(4)]
    real_read = engine._read_file

    def read_until_the_third(state, *args):
        if state.item.path == str(paths[2]):
            raise KeyboardInterrupt
        return real_read(state, *args)
    monkeypatch.setattr(engine, "_read_file", read_until_the_third)
    out = tmp_path / "report.csv"
    rc = main(["detect", ANYWAY, *map(str, paths), "--model", str(model_dir), "--format", "csv", "-o", str(out),
               "--batch-size", "64"])  # the finished files' chunks are still waiting in the batch at Ctrl-C
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["verdict"] for r in rows] == ["bonafide", "bonafide", "error", "error"]
    assert all("interrupted" in r["error"] and r["duration"] == "" for r in rows[2:])


def test_bad_options_and_output_fail_before_any_scoring(tmp_path, model_dir, capsys, monkeypatch):
    import spoofrl.detect.engine as engine

    def must_not_score(*args, **kw):
        raise AssertionError("scored despite a bad option")
    monkeypatch.setattr(engine, "detect_files", must_not_score)
    path = str(write(tmp_path / "a.wav", low_tone(1.0)))
    cases = {("--chunk-seconds", "0.01"): "between 0.5 and 600", ("--chunk-seconds", "inf"): "between 0.5 and 600",
             ("--batch-size", "0"): "--batch-size must be >= 1", ("--threshold", "nan"): "finite",
             ("--min-speech-share", "1.5"): "between 0 and 1", ("--min-speech-share", "nan"): "between 0 and 1",
             ("-o", str(tmp_path)): "is a folder"}
    for option, words in cases.items():
        assert main(["detect", ANYWAY, path, "--model", str(model_dir), *option]) == 2, option
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, (option, err)


def test_too_short_file_is_an_error(tmp_path, loaded):
    path = write(tmp_path / "blip.wav", low_tone(0.01))
    (result,) = detect_files(loaded, [str(path)], scoring())
    assert result.verdict == "error" and "too short" in result.error


# ------------------------------------------------------------------------------------------ calibration, model info

def test_calibrated_model_reports_llr_and_prior_based_p_spoof(tmp_path, model_dir, capsys):
    import shutil
    cal_dir = tmp_path / "calibrated"
    shutil.copytree(model_dir, cal_dir)
    (cal_dir / "calibration.json").write_text(json.dumps({"a": 0.5, "b": 1.0, "prior": 0.2}))
    path = write(tmp_path / "a.wav", low_tone(1.0))
    _, raw_report = run_json(capsys, [str(path), "--model", str(model_dir)])
    rc, report = run_json(capsys, [str(path), "--model", str(cal_dir)])
    assert rc == 0 and report["model"]["score_type"] == "llr"
    raw, f = raw_report["files"][0]["score"], report["files"][0]
    # both scores are written with 6 significant digits (5e-7 relative each) after a float32 affine map (eps):
    # 1e-5 relative; without the calibration the score would be off by half of itself
    assert f["score_type"] == "llr" and f["score"] == pytest.approx(0.5 * raw + 1.0, rel=1e-5)
    # P(spoof | x) = sigmoid(-(llr + logit(P(bona fide)))); from the rounded score (|score| x 5e-7 ~ 2e-5 on the
    # sigmoid's argument, at most that relative on p) and itself rounded to 6 digits: 1e-4
    expected = 1 / (1 + np.exp(f["score"] + np.log(0.2 / 0.8)))
    assert f["p_spoof"] == pytest.approx(expected, rel=1e-4)


def test_threshold_moves_the_verdict(tmp_path, model_dir, capsys):
    path = write(tmp_path / "a.wav", low_tone(1.0))
    _, report = run_json(capsys, [str(path), "--model", str(model_dir)])
    score = report["files"][0]["score"]
    _, report = run_json(capsys, [str(path), "--model", str(model_dir), "--threshold", str(score + 1)])
    assert report["files"][0]["verdict"] == "spoof"
    assert report["settings"]["threshold"] == pytest.approx(score + 1)


def test_bad_model_folder_is_a_one_line_error(tmp_path, capsys):
    write(tmp_path / "a.wav", low_tone(1.0))
    rc = main(["detect", ANYWAY, str(tmp_path / "a.wav"), "--model", str(tmp_path / "no-such-run")])
    err = capsys.readouterr().err
    assert rc == 2 and "no-such-run" in err and "model folder not found" in err and err.count("\n") == 1


def test_default_model_is_bundled_and_says_what_it_is(tmp_path, capsys):
    """Without --model the packaged default model scores, and the report says it is a demonstration model
    trained on the built-in benchmark (no neural deepfakes)."""
    from spoofrl.detect import default_model_dir
    folder = default_model_dir()
    assert (folder / "config.yaml").is_file() and (folder / "MODEL_CARD.md").is_file()
    assert (folder / "model.safetensors").stat().st_size < 8e6  # "a few MB"
    path = write(tmp_path / "a.wav", low_tone(1.0))
    rc, report = run_json(capsys, [str(path)])
    assert rc == 0
    assert report["model"]["default"] is True and report["model"]["demonstration_model"] is True
    assert "real human recordings" in report["model"]["trained_on"]
    assert "no modern neural TTS" in report["model"]["trained_on"]
    assert report["files"][0]["verdict"] in ("bonafide", "spoof")
    # The bundled model ships calibrated: its scores are LLRs with a stated prior.
    assert report["model"]["score_type"] == "llr" and 0 < report["model"]["calibration"]["prior_bonafide"] < 1
    # Every format says which model scored and that it is a demonstration.
    assert main(["detect", ANYWAY, str(path)]) == 0
    table = capsys.readouterr().out
    assert "spoofrl default model" in table and "trained on: spoofrl's built-in benchmark, design 2" in table
    assert main(["detect", ANYWAY, str(path), "--format", "csv"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert "default model" in row["model"] and "no neural deepfakes seen" in row["model"]


@pytest.mark.slow
def test_default_model_recipe_runs_end_to_end(tmp_path):
    """scripts/train_default_model.sh on the tiny benchmark (about a minute of CPU; downloads the one small
    Debian package it needs): fetch, synth, train, calibrate, model card; with INSTALL=0 the bundled assets stay untouched, and the result scores like the bundled model."""
    import hashlib
    import os
    import subprocess
    from spoofrl.detect import default_model_dir
    repo = Path(__file__).resolve().parents[1]
    bundled = default_model_dir() / "model.safetensors"
    before = hashlib.sha256(bundled.read_bytes()).hexdigest()
    # the tiny benchmark with the demo's small detector (the shipped LCNN needs the demo preset and ~20 min)
    small_detector = repo / "configs" / "experiments" / "models" / "lfcc-ffn.yaml"
    env = dict(os.environ, WORK=str(tmp_path / "dm"), PRESET="tiny", INSTALL="0", MODEL_PRESET=str(small_detector),
               EPOCHS="2", LR="3e-3", FETCH_SOURCES="asterisk-en", SPOOFRL_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(["bash", str(repo / "scripts" / "train_default_model.sh")], env=env, cwd=repo,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = (tmp_path / "dm" / "MODEL_CARD.md").read_text()
    assert "**not a production deepfake detector**" in card and "| ood_attack |" in card and "| ood_channel |" in card
    assert "## Real human speech from unseen speakers" in card and "## Spoofs called spoof" in card
    run = tmp_path / "dm" / "run"
    assert {"model.safetensors", "config.yaml", "calibration.json"} <= {p.name for p in run.iterdir()}
    assert hashlib.sha256(bundled.read_bytes()).hexdigest() == before
    loaded = load_detection_model(run, "cpu")
    assert loaded.score_type == "llr"
    clip = write(tmp_path / "a.wav", low_tone(2.0))
    (result,) = detect_files(loaded, [str(clip)], scoring())
    assert result.verdict in ("bonafide", "spoof")


# ------------------------------------------------------------------------------------------ speech gate
# Tones and hiss hold no speech (speech share 0): without --score-without-speech they get verdict no-speech.
# Real speech (espeak-ng) and the VAD itself are tested in test_vad.py.

def test_files_without_speech_get_no_speech_verdict_no_score_and_exit_zero(tmp_path, model_dir, capsys):
    write(tmp_path / "tone.wav", low_tone(2.0))
    write(tmp_path / "hiss.wav", hiss(1.0))
    (tmp_path / "text.wav").write_text("not audio")
    rc, report = run_json(capsys, [str(tmp_path / "tone.wav"), str(tmp_path / "hiss.wav"), "--model", str(model_dir)],
                          anyway=False)
    assert rc == 0  # no-speech is an answer, not a failure
    for f in report["files"]:
        assert f["verdict"] == "no-speech" and f["score"] is None and f["p_spoof"] is None, f
        assert f["speech_share"] == 0.0 and f["error"] is None and "not scored" in f["note"]
        assert f["duration"] is not None
    assert report["summary"] == {"files": 2, "bonafide": 0, "spoof": 0, "no-speech": 2, "error": 0}
    assert report["settings"]["min_speech_share"] == 0.05 and report["settings"]["score_without_speech"] is False
    assert report["settings"]["verdict_rule"].startswith("no-speech (not scored) when the speech share is below 0.05")
    assert "silero-vad" in report["settings"]["vad"]
    # With a file that fails, the exit code is 1 as before; the no-speech files are counted apart.
    rc = main(["detect", *(str(tmp_path / n) for n in ("tone.wav", "hiss.wav", "text.wav")), "--model", str(model_dir)])
    captured = capsys.readouterr()
    assert rc == 1
    lines = captured.out.splitlines()
    assert any(line.startswith(str(tmp_path / "tone.wav")) and line.endswith("0.0%  no-speech") for line in lines)
    assert lines[-1] == "3 file(s): 0 bonafide, 0 spoof, 2 no-speech, 1 error"
    assert "2 of 3 file(s) hold too little speech" in captured.err
    assert "1 of 3 file(s) could not be scored" in captured.err


def test_csv_reports_speech_share_and_the_no_speech_verdict(tmp_path, model_dir, capsys):
    write(tmp_path / "tone.wav", low_tone(2.0))
    assert main(["detect", str(tmp_path / "tone.wav"), "--model", str(model_dir), "--format", "csv"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["verdict"] == "no-speech" and row["score"] == "" and row["p_spoof"] == ""
    assert row["speech_share"] == "0.0000" and "not scored" in row["note"] and row["error"] == ""


def test_score_without_speech_scores_anyway_with_a_note(tmp_path, model_dir, capsys):
    path = write(tmp_path / "partly_fake.wav", np.concatenate([low_tone(8.0), hiss(4.0)]))
    gated_rc, gated = run_json(capsys, [str(path), "--model", str(model_dir)], anyway=False)
    rc, report = run_json(capsys, [str(path), "--model", str(model_dir)])  # --score-without-speech
    assert gated_rc == rc == 0
    g, f = gated["files"][0], report["files"][0]
    # Gated: a no-speech timeline (per-chunk speech share, no scores).
    assert [(c["verdict"], c["score"], c["speech_share"]) for c in g["chunks"]] == [("no-speech", None, 0.0)] * 3
    # Anyway: the verdict comes from the score, the speech share and a note are still there.
    assert f["verdict"] == "bonafide" and f["score"] is not None and f["speech_share"] == 0.0
    assert f["note"].startswith("scored although only 0.0 % of it is speech")
    assert [c["verdict"] for c in f["chunks"]] == ["bonafide", "bonafide", "spoof"]
    assert all(c["speech_share"] == 0.0 for c in f["chunks"])
    assert report["settings"]["score_without_speech"] is True and report["summary"]["no-speech"] == 0
    # --min-speech-share 0 gates nothing: scored, and no note (nothing is below the minimum).
    _, zero = run_json(capsys, [str(path), "--model", str(model_dir), "--min-speech-share", "0"], anyway=False)
    assert zero["files"][0]["score"] == f["score"] and zero["files"][0]["note"] is None


def test_no_speech_files_do_not_change_the_other_files_scores(tmp_path, loaded):
    tone = write(tmp_path / "tone.wav", low_tone(5.0))
    other = write(tmp_path / "other.wav", hiss(5.0))
    scored = scoring()
    (alone,) = detect_files(loaded, [str(tone)], scored)
    gated_other, _ = detect_files(loaded, [str(other), str(tone)], DetectOptions(show_progress=False))
    mixed = detect_files(loaded, [str(other), str(tone)], DetectOptions(show_progress=False, min_speech_share=0.0))
    assert gated_other.verdict == "no-speech" and mixed[1].score == alone.score


def test_cli_defaults_of_the_speech_gate_agree_with_the_engine():
    """cmd_detect / cmd_serve write the default out (importing the engine would slow the CLI's start)."""
    from spoofrl.cli import build_parser, cmd_detect
    from spoofrl.detect.engine import DEFAULT_MIN_SPEECH_SHARE
    from spoofrl.serve import ServeLimits
    assert DetectOptions().min_speech_share == DEFAULT_MIN_SPEECH_SHARE == cmd_detect.DEFAULT_MIN_SPEECH_SHARE
    assert ServeLimits().min_speech_share == DEFAULT_MIN_SPEECH_SHARE
    parser = build_parser()
    assert parser.parse_args(["detect", "a.wav"]).min_speech_share == DEFAULT_MIN_SPEECH_SHARE
    assert parser.parse_args(["serve"]).min_speech_share == DEFAULT_MIN_SPEECH_SHARE
    assert parser.parse_args(["detect", "a.wav"]).score_without_speech is False


def test_huge_samples_are_an_error_for_the_speech_gate_too(tmp_path, loaded):
    """Samples >= 1e19 make the VAD's probabilities NaN: the speech share is unknown, which is an error with
    the reason, never a silent no-speech."""
    path = write(tmp_path / "huge.wav", (low_tone(1.0) * 1e20).astype(np.float32), subtype="FLOAT")
    (result,) = detect_files(loaded, [str(path)], DetectOptions(show_progress=False))
    assert result.verdict == "error" and result.score is None and result.speech_share is None
    assert "voice activity detector gave non-finite" in result.error and "[-1, 1]" in result.error
