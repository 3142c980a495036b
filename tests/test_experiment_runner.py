"""The experiment runner's caching and resumption, with the trainer replaced by a fast stand-in that writes a
real run folder (model.safetensors, metrics.csv, summary.json): what is cached, what is re-run, what is refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import spoofrl.inference
import spoofrl.training
from spoofrl.data.manifest import Utterance, write_manifest
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.experiment import load_experiment_config, run_experiment
from spoofrl.experiment.layout import Layout

DET = "logmel-linear"
SUBSETS = ["posttrain", "posttrain_dev", "target_train", "target_dev", "target_eval", "ood_attack"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    rows = []
    for subset in SUBSETS:
        for i in range(8):
            label = "bonafide" if i % 2 else "spoof"
            wave = rng.standard_normal(4000).astype(np.float32) * (0.1 if label == "bonafide" else 0.03)
            rel = f"wav/{subset}_{i}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, wave, 16000)
            rows.append(Utterance(rel, label, "-" if label == "bonafide" else "A1", "s", "clean", subset))
    write_manifest(rows, root / "manifest.csv")
    return root / "manifest.csv"


class FakeTrainer:
    """Records calls; writes a finished run folder unless told to 'die' after its first checkpoint."""

    def __init__(self):
        self.calls: list[tuple[str, str | None, bool]] = []
        self.die_on: str | None = None

    def load_train_config(self, source, overrides=None):
        from spoofrl.config import apply_overrides
        return apply_overrides(source, overrides)

    def train(self, cfg, out_dir, *, init=None, resume=False):
        from spoofrl.models import build_model, load_model, load_model_preset, save_model
        out = Path(out_dir)
        self.calls.append((out.relative_to(out.parents[2]).as_posix() if "arms" in out.parts else "posttrain",
                           None if init is None else Path(init).name, resume))
        torch.manual_seed(cfg["seed"])
        model = load_model(init) if init else build_model(load_model_preset(cfg["model"]["preset"]))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        (out / "last").mkdir(parents=True, exist_ok=True)
        if self.die_on and self.die_on in str(out) and not resume:
            raise KeyboardInterrupt  # killed mid-run: last/ exists, summary.json does not
        save_model(model, out, run_config={k: v for k, v in cfg.items() if k != "model"})
        (out / "metrics.csv").write_text("step,epoch,loss,reward_mean,kl,clip_frac,entropy,lr,dev_eer\n"
                                         "1,0,0.7,0.5,0.0,,,0.001,\n2,0,0.6,0.6,0.01,,,0.001,0.3\n")
        (out / "summary.json").write_text(json.dumps({"best_step": 2, "best_dev_eer": 0.3, "steps": 2,
                                                      "seconds": 0.01}))
        return out


def fake_score_utterances(model, utts, *, device=None, batch_size=16, max_seconds=None, desc=""):
    from spoofrl.audio import load_audio
    waves = [torch.tensor(load_audio(u.audio_path, 16000)) for u in utts]
    with torch.no_grad():
        return np.array([float(model.score(w[None])[0]) for w in waves], dtype=np.float64)


@pytest.fixture
def fake(monkeypatch):
    trainer = FakeTrainer()
    monkeypatch.setattr(spoofrl.training, "train", trainer.train, raising=False)
    monkeypatch.setattr(spoofrl.training, "load_train_config", trainer.load_train_config, raising=False)
    monkeypatch.setattr(spoofrl.inference, "score_utterances", fake_score_utterances, raising=False)
    for name in ("plot_det", "plot_histograms", "plot_training_curves"):  # figures are tested elsewhere
        monkeypatch.setattr(f"spoofrl.experiment.report.{name}", lambda *a, **k: None)
    return trainer


def _config(manifest: Path, tmp_path: Path, **extra):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("schedule: {steps: 2}\n")
    data = {"data": {"manifest": str(manifest), "ood": {"attack": {"subsets": ["ood_attack"]}}},
            "posttrain": {"recipe": str(recipe)}, "finetune": {"recipe": str(recipe)}, "seeds": 2,
            "arms": {"posttrained": {"train": False}, "sft": {"overrides": ["objective=sft"]},
                     "two_stage": {"stages": [{"overrides": ["objective=sft"]}, {"overrides": ["objective=grpo"]}]}},
            "report": {"bootstrap": 20}}
    data.update(extra)
    return load_experiment_config(data)


def test_runs_once_then_everything_is_cached(manifest, tmp_path, fake):
    cfg = _config(manifest, tmp_path)
    out = tmp_path / "out"
    results = run_experiment(cfg, out)
    # post-trained once, shared; each trained arm x seed; stage 2 starts from stage 1
    assert fake.calls[0] == ("posttrain", None, False)
    assert ("sft/seed1/stage1", "posttrain", False) in fake.calls
    assert ("two_stage/seed0/stage2", "stage1", False) in fake.calls
    assert len(fake.calls) == 1 + 2 + 2 * 2
    assert results["missing_runs"] == []
    layout = Layout(out)
    assert layout.scores(DET, "posttrained", 0, "attack").is_file()
    assert not layout.run(DET, "posttrained", 1).exists()  # shared model: one run, not identical copies
    assert (out / "experiment.yaml").is_file() and (out / "data" / "target.csv").is_file()
    before = layout.scores(DET, "sft", 1, "target").stat().st_mtime_ns
    fake.calls.clear()
    again = run_experiment(cfg, out)
    assert fake.calls == []
    assert layout.scores(DET, "sft", 1, "target").stat().st_mtime_ns == before
    assert again["detectors"][DET]["arms"]["sft"]["summary"] == results["detectors"][DET]["arms"]["sft"]["summary"]


def test_killed_run_resumes_and_only_missing_work_is_done(manifest, tmp_path, fake):
    cfg = _config(manifest, tmp_path)
    out = tmp_path / "out"
    fake.die_on = "sft/seed1/stage1"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, out)
    fake.die_on = None
    fake.calls.clear()
    results = run_experiment(cfg, out)
    # the killed stage resumes from last/; finished stages and scored runs are left alone
    assert ("sft/seed1/stage1", "posttrain", True) in fake.calls
    assert ("posttrain", None, False) not in fake.calls
    assert ("sft/seed0/stage1", "posttrain", False) not in fake.calls
    assert results["missing_runs"] == []
    # more seeds: only the new seed trains
    fake.calls.clear()
    more = _config(manifest, tmp_path, seeds=3)
    run_experiment(more, out)
    assert sorted(c[0] for c in fake.calls) == ["sft/seed2/stage1", "two_stage/seed2/stage1",
                                                "two_stage/seed2/stage2"]


def test_new_test_set_is_scored_without_retraining(manifest, tmp_path, fake):
    cfg = _config(manifest, tmp_path, seeds=1)
    out = tmp_path / "out"
    run_experiment(cfg, out)
    fake.calls.clear()
    wider = _config(manifest, tmp_path, seeds=1,
                    data={"manifest": str(manifest), "ood": {"attack": {"subsets": ["ood_attack"]},
                                                             "dev_as_ood": {"subsets": ["target_dev"]}}})
    results = run_experiment(wider, out)
    assert fake.calls == []
    assert Layout(out).scores(DET, "sft", 0, "dev_as_ood").is_file()
    assert results["ood"] == ["attack", "dev_as_ood"]


def test_changed_config_is_refused_not_mixed(manifest, tmp_path, fake):
    out = tmp_path / "out"
    run_experiment(_config(manifest, tmp_path, seeds=1), out)
    changed = _config(manifest, tmp_path, seeds=1, finetune={"recipe": str(tmp_path / "recipe.yaml"),
                                                             "overrides": ["optim.lr=0.5"]})
    fake.calls.clear()
    with pytest.raises(ConfigError, match=r"sft/seed0/stage1: made with a different configuration \(optim.lr"):
        run_experiment(changed, out)
    assert fake.calls == []  # refused before training anything


def test_options_that_do_not_change_what_is_learned_may_differ(manifest, tmp_path, fake):
    """The stage check compares configs as a resumed training run does (training.config.NON_SEMANTIC_KEYS)."""
    out = tmp_path / "out"
    run_experiment(_config(manifest, tmp_path, seeds=1), out)
    fake.calls.clear()
    other_loader = _config(manifest, tmp_path, seeds=1, finetune={"recipe": str(tmp_path / "recipe.yaml"),
                                                                  "overrides": ["data.workers=0",
                                                                                "schedule.log_every=7"]})
    run_experiment(other_loader, out)
    assert fake.calls == []  # nothing retrained, nothing refused


def test_report_only_and_arm_selection(manifest, tmp_path, fake):
    cfg = _config(manifest, tmp_path, seeds=1)
    out = tmp_path / "out"
    results = run_experiment(cfg, out, arms=["posttrained", "sft"])
    assert set(results["detectors"][DET]["arms"]) == {"posttrained", "sft"}
    assert not Layout(out).run(DET, "two_stage", 0).exists()
    fake.calls.clear()
    partial = run_experiment(cfg, out, report_only=True)
    assert fake.calls == [] and partial["missing_runs"] == [f"{DET}/two_stage/seed0"]
    with pytest.raises(ConfigError, match="unknown arm nope"):
        run_experiment(cfg, out, arms=["nope"])


def test_missing_audio_fails_before_training(manifest, tmp_path, fake):
    rows = manifest.read_text().splitlines()
    broken = manifest.parent / "broken.csv"  # beside the audio: relative paths stay valid
    broken.write_text("\n".join(rows + ["wav/nowhere.wav,spoof,A1,s,clean,target_eval"]) + "\n")
    cfg = _config(broken, tmp_path, seeds=1)
    with pytest.raises(SpoofrlError, match="1 audio file missing: .*nowhere.wav"):
        run_experiment(cfg, tmp_path / "out")
    assert fake.calls == []


def test_posttrain_dev_absent_fails_with_hint_or_is_held_out(manifest, tmp_path, fake):
    rows = [r for r in manifest.read_text().splitlines() if not r.endswith(",posttrain_dev")]
    no_dev = manifest.parent / "no_dev.csv"
    no_dev.write_text("\n".join(rows) + "\n")
    with pytest.raises(SpoofrlError, match=r"no_dev.csv: data.posttrain_dev: no utterances in subset posttrain_dev "
                                           r"\(.*data.posttrain_dev.subsets: \[\]"):
        run_experiment(_config(no_dev, tmp_path, seeds=1), tmp_path / "out")
    assert fake.calls == []
    # subsets [] = hold out a share of the post-training data, per label, the same for every run
    held = _config(no_dev, tmp_path, seeds=1, arms={"posttrained": {"train": False}},
                   data={"manifest": str(no_dev), "posttrain_dev": {"subsets": []}},
                   posttrain={"recipe": str(tmp_path / "recipe.yaml"), "dev_fraction": 0.25})
    run_experiment(held, tmp_path / "out2")
    from spoofrl.data.manifest import read_manifest
    written = read_manifest(tmp_path / "out2" / "data" / "posttrain.csv")
    dev = [r for r in written if r.subset == "dev"]
    train = [r for r in written if r.subset == "train"]
    assert sorted(r.label for r in dev) == ["bonafide", "spoof"]  # ceil(0.25 * 4) per label
    assert len(train) == 6 and not {r.path for r in dev} & {r.path for r in train}


def _pretend_retrained(stage: Path) -> None:
    """A retrained run writes a new summary.json (its timing differs)."""
    summary = json.loads((stage / "summary.json").read_text())
    summary["seconds"] += 1.0
    (stage / "summary.json").write_text(json.dumps(summary))


def test_retrained_model_is_rescored_and_its_dependants_are_refused(manifest, tmp_path, fake):
    """Score files and later stages belong to one model: a stage redone since (here: a new summary.json, as a
    retrained run writes) makes its run's scores stale and the stages built on it refuse to continue."""
    cfg = _config(manifest, tmp_path, seeds=1)
    out = tmp_path / "out"
    run_experiment(cfg, out)
    layout = Layout(out)
    sft_scores = layout.scores(DET, "sft", 0, "target")
    before = sft_scores.stat().st_mtime_ns
    # retrained, then killed before scoring: the report no longer counts the old scores...
    _pretend_retrained(layout.stage(DET, "sft", 0, 0))
    from spoofrl.experiment.results import collect_results
    assert collect_results(cfg, layout)["missing_runs"] == [f"{DET}/sft/seed0"]
    # ...and the next invocation rescores that run only, without training
    fake.calls.clear()
    other = layout.scores(DET, "two_stage", 0, "target").stat().st_mtime_ns
    results = run_experiment(cfg, out)
    assert fake.calls == [] and results["missing_runs"] == []
    from spoofrl.experiment.models import model_identity, recorded_score_model
    assert recorded_score_model(sft_scores.parent) == model_identity(layout.stage(DET, "sft", 0, 0))
    assert sft_scores.stat().st_mtime_ns != before  # rewritten (same content: the weights did not change)
    assert layout.scores(DET, "two_stage", 0, "target").stat().st_mtime_ns == other
    # a second stage whose first stage was redone since would mix two models: refused, naming the folder
    _pretend_retrained(layout.stage(DET, "two_stage", 0, 0))
    with pytest.raises(ConfigError, match=r"two_stage/seed0/stage2: trained from a model that was retrained"):
        run_experiment(cfg, out)


def test_copied_output_folder_continues_without_redoing_anything(manifest, tmp_path, fake):
    import shutil
    cfg = _config(manifest, tmp_path, seeds=1)
    run_experiment(cfg, tmp_path / "out")
    shutil.copytree(tmp_path / "out", tmp_path / "moved", copy_function=shutil.copy)  # new mtimes too
    moved = Layout(tmp_path / "moved")
    scored = {p: p.stat().st_mtime_ns for p in moved.root.rglob("*.tsv")}
    fake.calls.clear()
    results = run_experiment(cfg, moved.root)
    assert fake.calls == [] and results["missing_runs"] == []
    assert {p: p.stat().st_mtime_ns for p in moved.root.rglob("*.tsv")} == scored  # nothing rescored
    spec = json.loads((moved.stage(DET, "sft", 0, 0) / "experiment_stage.json").read_text())
    assert spec["init"] == f"OUT/{DET}/posttrain" and spec["train_config"]["data"]["manifest"] == "OUT/data/target.csv"


def test_test_set_problems_fail_before_any_training(manifest, tmp_path, fake):
    root = manifest.parent
    rows = manifest.read_text().splitlines()
    (root / "wav" / "notaudio.wav").write_text("this is text, not audio\n")
    (root / "wav" / "empty.wav").write_bytes(b"")
    bad_audio = root / "bad_audio.csv"
    bad_audio.write_text("\n".join(rows + ["wav/notaudio.wav,spoof,A1,s,clean,ood_attack",
                                           "wav/empty.wav,spoof,A1,s,clean,ood_attack"]) + "\n")
    with pytest.raises(SpoofrlError, match=r"bad_audio.csv: data.ood.attack: 2 unusable audio file\(s\): "
                                           r".*notaudio.wav: not a readable audio file.*empty.wav: file is empty"):
        run_experiment(_config(bad_audio, tmp_path, seeds=1), tmp_path / "out")
    # a trial listed in two subsets that one test set combines would be scored twice
    twice = _config(manifest, tmp_path, seeds=1, data={"manifest": str(manifest), "ood": {
        "both": {"subsets": ["ood_attack", "target_eval"]}}})
    rows_twice = rows + [r.replace(",target_eval", ",ood_attack") for r in rows if r.endswith(",target_eval")][:1]
    dup = root / "dup.csv"
    dup.write_text("\n".join(rows_twice) + "\n")
    twice.data.manifest = str(dup)
    with pytest.raises(SpoofrlError, match=r"dup.csv: data.ood.both: 1 utterance\(s\) listed more than once"):
        run_experiment(twice, tmp_path / "out2")
    assert fake.calls == []


def test_quiet_console_still_logs_progress_to_the_experiment_log(manifest, tmp_path, fake, capsys):
    import logging

    from spoofrl.log import setup_logging
    setup_logging(logging.WARNING)  # as `spoofrl -q`
    run_experiment(_config(manifest, tmp_path, seeds=1), tmp_path / "out")
    log = (tmp_path / "out" / "experiment.log").read_text()
    assert f"{DET}/sft/seed0: trained and scored in" in log and f"{DET}/posttrain: trained in" in log
    assert "INFO" not in capsys.readouterr().err


def test_console_logging_follows_a_replaced_stderr(monkeypatch):
    """Regression: the console handler kept the sys.stderr of the first command (under pytest a capture that
    is closed after its test); every later record then failed with 'I/O operation on closed file'."""
    import io
    import logging
    import sys

    from spoofrl.log import setup_logging
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging(logging.INFO)
    logging.getLogger("spoofrl.experiment").info("first record")
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    setup_logging(logging.INFO)
    logging.getLogger("spoofrl.experiment").info("second record")
    assert "second record" in second.getvalue() and "Logging error" not in second.getvalue()
    handlers = [h for h in logging.getLogger("spoofrl").handlers if type(h).__name__ == "ConsoleHandler"]
    assert len(handlers) == 1


def test_worker_process_errors_reach_the_caller_without_hanging(tmp_path):
    """A user error raised in a worker process (here an AudioError, whose constructor takes two arguments and
    so did not survive unpickling, which left the pool waiting forever) ends the run with its message."""
    import threading

    from spoofrl.audio import load_audio
    from spoofrl.experiment.runner import TaskPool
    outcome = {}

    def run():
        try:
            with TaskPool(2, tmp_path / "log.txt") as pool:
                pool.run([(load_audio, tmp_path / "a.wav"), (load_audio, tmp_path / "b.wav")], "test tasks")
        except BaseException as err:  # noqa: B036 - handed to the test thread
            outcome["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(240)
    assert not worker.is_alive(), "the process pool hung"
    assert isinstance(outcome.get("error"), SpoofrlError)
    assert "file not found" in str(outcome["error"]) and ".wav" in str(outcome["error"])


def test_a_reused_benchmark_folder_is_checked_by_its_stamp(tmp_path, caplog):
    from spoofrl.errors import ConfigError
    from spoofrl.experiment.benchmark import _check_reused
    _check_reused(tmp_path, "small", 0)   # no synth.json: used as given, with a warning
    assert "not made by `spoofrl data synth`" in caplog.text
    (tmp_path / "synth.json").write_text(json.dumps({"design": "real", "preset": "demo", "seed": 0}))
    _check_reused(tmp_path, "demo", 0)
    with pytest.raises(ConfigError, match="holds the 'demo' benchmark of design 'real'.*needs 'small'"):
        _check_reused(tmp_path, "small", 0)
    (tmp_path / "synth.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"synth.json: unreadable"):
        _check_reused(tmp_path, "demo", 0)
