"""`spoofrl explain`: an audio LLM's verdict, score and rationale per file, its claims checked against the clip's
measured evidence, per-file errors like `spoofrl detect`, and the bundled default (or its absence).

One tiny explainer is trained for the module as tests/test_alm_train.py does (the tiny benchmark, `spoofrl data
rationales`, a few SFT steps): enough for a model folder of the real layout, not for sensible rationales. The
claims-table tests therefore also run it with a scripted `generate` that writes the evidence-grounded rationale
of the clip it is given (`write_rationale`): the claims then must come out true, and cite the evidence the
command measured on that clip."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.detect.explain_report import INTERRUPTED, NO_REFERENCE
from spoofrl.detect.explainer import NO_BUNDLED_EXPLAINER

SR = 16000
TINY_ALM = {"lm_layers": 2, "lm_width": 64, "lm_heads": 2, "lm_kv_heads": 1, "lm_ffn": 128, "conv_channels": 64,
            "encoder_layers": 0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A generation run folder of a tiny explainer (SFT on the rationales of the tiny benchmark)."""
    from spoofrl.training.config import load_train_config
    from spoofrl.training.trainer import train
    root = tmp_path_factory.mktemp("explainer")
    assert main(["-q", "data", "synth", "--design", "v1", "--out", str(root / "tiny"), "--preset", "tiny",
                 "--seed", "5", "--workers", "2"]) == 0
    manifest = root / "tiny" / "manifest.csv"
    rationales = root / "rationales.jsonl"
    assert main(["-q", "data", "rationales", "--manifest", str(manifest), "--out", str(rationales),
                 "--subsets", "posttrain"]) == 0
    cfg = {"task": "generation", "model": {"alm": TINY_ALM, "tokenizer": {"vocab_size": 600}},
           "data": {"manifest": str(manifest), "train_subsets": ["posttrain"], "dev_subsets": [],
                    "crop_seconds": 0, "batching": "dynamic", "batch_seconds": 12},
           "generation": {"rationales": str(rationales), "metric": "answer"},
           "objective": {"name": "sft", "max_completion_length": 48}, "optim": {"lr": 3e-3},
           "schedule": {"steps": 6}}
    return train(load_train_config(cfg), root / "run")


@pytest.fixture(scope="module")
def clips(run_dir) -> list[Path]:
    """Two clips of the tiny benchmark, one bona fide and one spoof."""
    manifest = run_dir.parent / "tiny" / "manifest.csv"
    rows = list(csv.DictReader(manifest.open()))
    pick = [next(r for r in rows if r["label"] == label) for label in ("bonafide", "spoof")]
    return [manifest.parent / r["path"] for r in pick]


def script_generate(monkeypatch, profile_path) -> None:
    """SmallAlm.generate replaced by the writer: each clip's true rationale, from evidence measured (with the
    profile at `profile_path`) on the waveform the model was handed, answered 'spoof'."""
    from spoofrl.alm import SmallAlm
    from spoofrl.evidence import ReferenceProfile, evidence
    from spoofrl.explain import write_rationale
    profile = ReferenceProfile.load(profile_path)

    def generate(self, batch, num=1, sampling=None, **kw):
        texts = []
        for wave, length in zip(batch.waves, batch.lengths):
            items = evidence(wave[:int(length)].cpu().numpy(), SR, profile)
            texts.append(write_rationale(items, "spoof", np.random.default_rng(0)).completion)
        return self.completions_from_text(texts)
    monkeypatch.setattr(SmallAlm, "generate", generate)


@pytest.fixture
def scripted(run_dir, monkeypatch):
    """The model's generate replaced by the rationale writer (script_generate) with the run's profile."""
    script_generate(monkeypatch, run_dir / "evidence_reference.json")


def explain(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["explain", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def explain_json(capsys, *args: str) -> tuple[int, dict, str]:
    rc, out, err = explain(capsys, *args, "--json")
    return rc, json.loads(out), err


def by_name(report: dict) -> dict[str, dict]:
    return {Path(f["path"]).name: f for f in report["files"]}


def cited_items(record: dict) -> list[dict]:
    return [item for claim in record["claims"] for item in claim["evidence"]]


# ------------------------------------------------------------------------------------------ reports

def test_json_report_holds_verdict_score_rationale_and_checked_claims(run_dir, clips, capsys):
    from spoofrl.audio import load_audio
    from spoofrl.evidence import ReferenceProfile, evidence
    rc, report, _ = explain_json(capsys, *map(str, clips), "--model", str(run_dir), "--device", "cpu")
    assert rc == 0
    model = report["model"]
    assert model["path"] == str(run_dir) and model["kind"] == "spoofrl-alm" and model["claims_checked"] is True
    assert model["sample_rate"] == SR and model["max_completion_length"] == 48 and model["note"] is None
    assert "higher = more bona fide" in report["settings"]["score"]
    assert report["summary"]["files"] == 2 and report["summary"]["error"] == 0
    profile = ReferenceProfile.load(run_dir / "evidence_reference.json")
    for path, record in zip(clips, report["files"]):
        assert record["path"] == str(path) and record["error"] is None
        assert record["verdict"] in ("bonafide", "spoof", "unanswered")
        assert isinstance(record["score"], float) and np.isfinite(record["score"])
        assert isinstance(record["rationale"], str) and record["completion"].startswith(record["rationale"][:5])
        assert record["claims_checked"] is True and record["clipped"] is False
        assert record["n_claims"] == len(record["claims"]) == (record["n_true"] + record["n_false"]
                                                               + record["n_unverifiable"])
        measured = [item.to_dict() for item in evidence(load_audio(path, SR), SR, profile)]
        assert record["evidence"] == json.loads(json.dumps(measured))   # what the command measured: the same
        assert all(item in record["evidence"] for item in cited_items(record))


def test_claims_are_checked_against_the_clips_own_evidence(run_dir, clips, capsys, scripted):
    rc, report, _ = explain_json(capsys, *map(str, clips), "--model", str(run_dir), "--batch-size", "1")
    assert rc == 0
    for record in report["files"]:
        assert record["verdict"] == "spoof" and record["well_formed"] is True
        assert record["n_claims"] >= 2 and record["n_true"] == record["n_claims"]   # all true: same evidence
        cited = cited_items(record)
        assert cited and all(item in record["evidence"] for item in cited)
        assert all({"kind", "value", "unit", "z", "band_hz", "span_s"} <= set(item) for item in cited)


def test_text_report_shows_verdict_score_rationale_and_a_claims_table(run_dir, clips, capsys, scripted):
    rc, out, _ = explain(capsys, str(clips[0]), "--model", str(run_dir))
    assert rc == 0
    assert "log p(bonafide answer) - log p(spoof answer)" in out and "higher = more bona fide" in out
    assert str(clips[0]) in out and "verdict: spoof" in out and "score: " in out
    assert "rationale:" in out and "<Frequency Domain>" in out and "<Time Domain>" in out
    assert "#  verdict" in out and " true " in out and "why: " in out
    cites = [line for line in out.splitlines() if "cites: " in line]
    assert cites and all(" z " in line for line in cites)
    assert any(" Hz " in line or " s " in line for line in cites)   # where the cited item lies


def test_out_writes_the_report_to_a_file(run_dir, clips, capsys, tmp_path):
    out = tmp_path / "reports" / "explained.json"
    rc, stdout, _ = explain(capsys, str(clips[0]), "--model", str(run_dir), "--json", "--out", str(out))
    assert rc == 0 and stdout == ""
    assert json.loads(out.read_text())["files"][0]["path"] == str(clips[0])


# ------------------------------------------------------------------------------------------ bad inputs

def test_bad_files_get_per_file_errors_and_the_good_file_is_still_explained(run_dir, clips, capsys, tmp_path):
    good = shutil.copy(clips[0], tmp_path / "good.wav")
    (tmp_path / "text.wav").write_text("definitely not audio\n" * 50)
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(str(tmp_path / "silent.wav"), np.zeros(SR, np.float32), SR)
    sf.write(str(tmp_path / "cut.wav"), np.random.default_rng(0).uniform(-0.3, 0.3, SR).astype(np.float32), SR)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "cut.wav").read_bytes()[:SR])   # header says twice as much
    huge = np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 1e30   # float WAVs can hold this
    sf.write(str(tmp_path / "huge.wav"), huge, SR, subtype="FLOAT")
    (tmp_path / "notes.txt").write_text("not audio, and not an audio suffix: left out of the folder")
    expected = {"text.wav": "not a readable audio", "empty.wav": "empty", "silent.wav": "silent",
                "cut.wav": "truncated", "huge.wav": "the samples reach", "missing.wav": "not found",
                "nothing*.flac": "matched no files"}
    if shutil.which("ffmpeg"):   # a playlist would make ffmpeg read another file: refused, whatever it names
        (tmp_path / "list.wav").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:/etc/hostname\n"
                                           "#EXT-X-ENDLIST\n")
        expected["list.wav"] = "not a plain audio file"
    rc, report, err = explain_json(capsys, str(tmp_path), str(tmp_path / "missing.wav"),
                                   str(tmp_path / "nothing*.flac"), "--model", str(run_dir))
    n = len(expected)
    assert rc == 1 and f"{n} of {n + 1} file(s) could not be explained" in err and "Traceback" not in err
    files = by_name(report)
    assert set(files) == {"good.wav", *expected}   # notes.txt: not an audio suffix, so not taken from the folder
    for name, reason in expected.items():
        record = files[name]
        assert record["verdict"] == "error" and record["score"] is None and record["rationale"] is None, name
        assert reason in record["error"] and "\n" not in record["error"], (name, record["error"])
    assert files["good.wav"]["path"] == str(good) and files["good.wav"]["verdict"] != "error"
    assert report["summary"]["error"] == n and report["summary"]["files"] == n + 1


def test_long_file_is_clipped_to_max_seconds_and_says_so(run_dir, clips, capsys, tmp_path):
    from spoofrl.audio import load_audio
    long = tmp_path / "long.wav"
    sf.write(str(long), np.tile(load_audio(clips[0], SR), 3), SR)
    rc, report, err = explain_json(capsys, str(long), "--model", str(run_dir), "--max-seconds", "1.5")
    record = report["files"][0]
    assert rc == 0 and record["clipped"] is True and record["seconds"] == 1.5
    assert record["file_seconds"] == pytest.approx(3 * sf.info(str(clips[0])).duration, abs=1e-3)  # 3 decimals
    assert "only the first 1.5 s" in record["notes"][0] and "--max-seconds" in err
    assert max(item["span_s"][1] for item in record["evidence"]) <= 1.5 + 1e-6   # measured on the clip only


def test_ctrl_c_reports_the_files_finished_before_it(run_dir, clips, capsys, monkeypatch, tmp_path):
    from spoofrl.detect import explain_report as cmd
    paths = [shutil.copy(clips[i % 2], tmp_path / f"{i}.wav") for i in range(3)]
    real = cmd.read_clip

    def stop_at_the_third(path, *args):
        if path == str(paths[2]):
            raise KeyboardInterrupt
        return real(path, *args)
    monkeypatch.setattr(cmd, "read_clip", stop_at_the_third)
    rc, report, err = explain_json(capsys, *map(str, paths), "--model", str(run_dir), "--batch-size", "1")
    assert rc == 130 and "interrupted" in err
    verdicts = [f["verdict"] for f in report["files"]]
    assert verdicts[2] == "error" and report["files"][2]["error"] == INTERRUPTED
    assert "error" not in verdicts[:2]   # explained before Ctrl-C (batches of one)


# ------------------------------------------------------------------------------------------ the model folder

def test_model_without_evidence_reference_explains_without_checking(run_dir, clips, capsys, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("evidence_reference.json", "last", "tb"))
    rc, report, err = explain_json(capsys, *map(str, clips), "--model", str(bare))
    assert rc == 0 and err.count(NO_REFERENCE) == 1
    assert report["model"]["claims_checked"] is False and report["model"]["note"] == NO_REFERENCE
    for record in report["files"]:
        assert record["verdict"] != "error" and record["claims_checked"] is False
        assert record["claims"] == [] and record["evidence"] is None and np.isfinite(record["score"])
    rc, out, _ = explain(capsys, str(clips[0]), "--model", str(bare))
    assert rc == 0 and out.count(NO_REFERENCE) == 1 and "verdict: " in out


def test_without_model_and_without_bundled_explainer_one_line_error(capsys, monkeypatch, tmp_path, clips):
    from spoofrl.detect import explainer as bundled
    monkeypatch.setattr(bundled, "default_explainer_path", lambda: tmp_path / "not-shipped-yet")
    rc, out, err = explain(capsys, str(clips[0]))
    assert rc == 2 and out == ""
    assert err.strip().splitlines() == [f"spoofrl explain: error: {NO_BUNDLED_EXPLAINER}"]


def test_bundled_explainer_path_is_inside_the_package():
    import spoofrl
    from spoofrl.detect.explainer import default_explainer_path
    assert default_explainer_path() == Path(spoofrl.__file__).parent / "assets" / "explainer"


def test_bad_model_folders_and_options_are_one_line_errors(capsys, tmp_path, clips, run_dir):
    detector_like = tmp_path / "detector"
    detector_like.mkdir()
    (detector_like / "config.yaml").write_text("task: detection\n")
    cases = [(["--model", str(tmp_path / "nope")], "no such folder"),
             (["--model", str(detector_like)], "not an explainer folder"),
             (["--model", str(run_dir), "--max-seconds", "0"], "--max-seconds"),
             (["--model", str(run_dir), "--max-seconds", "500"], "evidence reference measures clips of at most"),
             (["--model", str(run_dir), "--batch-size", "0"], "--batch-size"),
             (["--model", str(run_dir), "--out", str(tmp_path)], "is a folder")]
    for extra, reason in cases:
        rc, out, err = explain(capsys, str(clips[0]), *extra)
        assert rc == 2 and out == "", extra
        lines = err.strip().splitlines()
        assert len(lines) == 1 and reason in lines[0], (extra, err)


def test_hugging_face_folder_is_recognised_by_its_files(capsys, tmp_path, clips):
    """A Hugging Face audio LLM folder (config.json, no config.yaml, no evidence reference) is loaded by
    load_hf_alm and explained with the default prompt, unchecked."""
    from spoofrl.alm.hf.tiny import build_qwen2_audio
    folder = tmp_path / "qwen2-audio"
    build_qwen2_audio(folder)
    rc, report, err = explain_json(capsys, str(clips[0]), "--model", str(folder), "--max-completion-length", "4",
                                   "--max-seconds", "1")
    assert rc == 0 and NO_REFERENCE in err
    assert report["model"]["kind"] == "huggingface" and report["model"]["config"] is None
    record = report["files"][0]
    assert record["verdict"] in ("bonafide", "spoof", "unanswered") and np.isfinite(record["score"])
    assert record["tokens"] <= 4


def test_help_states_what_the_score_means(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["explain", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "log p(bonafide answer) - log p(spoof answer) after the model's own rationale; higher = more bona fide" \
        in text
