"""`spoofrl train` end to end: run folder, resume equivalence, SFT -> GRPO switch, Ctrl-C, errors."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from spoofrl.cli import main
from spoofrl.training import load_train_config, train
from test_train_data import write_toy_corpus


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=8, n_dev=4)


def small_config(manifest: Path, **sections) -> dict:
    cfg = {"model": {"preset": "logmel-linear"},
           "data": {"manifest": str(manifest), "crop_seconds": 0.5, "batch_size": 4},
           "optim": {"lr": 0.01},
           "schedule": {"steps": 10, "eval_every": 4, "log_every": 2}}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def read_rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_sft_run_folder_via_cli(manifest, tmp_path, capsys):
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(yaml.safe_dump(small_config(manifest, objective={"name": "sft"})))
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--set", "schedule.steps=8"]) == 0
    for name in ("config.yaml", "model.safetensors", "metrics.csv", "train.log", "summary.json",
                 "last/model.safetensors", "last/optimizer.pt", "last/state.json", "last/config.yaml"):
        assert (out / name).exists(), name
    assert any((out / "tb").iterdir())
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["schedule"]["steps"] == 8 and saved["model"]["frontend"]["name"] == "logmel"  # resolved
    assert load_train_config(out / "config.yaml").schedule.steps == 8                           # reloads
    rows = read_rows(out)
    assert list(rows[0]) == ["step", "epoch", "loss", "reward_mean", "kl", "clip_frac", "entropy", "lr", "dev_eer"]
    assert [r["step"] for r in rows if r["dev_eer"]] == ["4", "8"] and rows[0]["reward_mean"] == ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["best_step"] in (4, 8)
    assert summary["best_dev_eer"] == min(float(r["dev_eer"]) for r in rows if r["dev_eer"])
    from spoofrl.inference import score_waveforms
    from spoofrl.models import load_model
    model = load_model(out)
    assert score_waveforms(model, [np.zeros(8000, np.float32) + 0.01]).shape == (1,)
    # a second run into the same folder is refused; resuming a finished run does nothing
    assert main(["train", str(recipe), "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", str(recipe), "--out", str(out), "--resume", "--set", "schedule.steps=8"]) == 0


def test_model_safetensors_is_the_best_on_dev(manifest, tmp_path, monkeypatch):
    # scripted dev EERs (validation at steps 4, 8, 12): the run must keep the step-8 weights, not the last
    from spoofrl.training.trainer import Trainer
    eers, snapshots = iter([0.30, 0.10, 0.20]), {}

    def scripted_validate(self):
        snapshots[self.step] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return next(eers)

    monkeypatch.setattr(Trainer, "validate", scripted_validate)
    run = train(load_train_config(small_config(manifest, objective={"name": "sft"}, schedule={"steps": 12})),
                tmp_path / "run")
    best = _weights(run, "model.safetensors")
    assert all(np.array_equal(best[k].numpy(), snapshots[8][k].numpy()) for k in best)
    assert any(not np.array_equal(best[k].numpy(), snapshots[12][k].numpy()) for k in best)
    assert [(r["step"], r["dev_eer"]) for r in read_rows(run) if r["dev_eer"]] == [("4", "0.3"), ("8", "0.1"),
                                                                                   ("12", "0.2")]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["best_step"], summary["best_dev_eer"]) == (8, 0.1)


def test_early_stop_ends_the_grpo_stage_not_the_sft_one(manifest, tmp_path, monkeypatch):
    # dev EER worsening from the second validation on: with early_stop 1 the SFT stage still runs its 4 steps,
    # GRPO starts, and the run stops at GRPO's first validation without a better EER (step 8 of 12)
    from spoofrl.training.trainer import Trainer
    eers = iter([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    monkeypatch.setattr(Trainer, "validate", lambda self: next(eers))
    cfg = small_config(manifest, objective={"name": "sft_then_grpo", "sft_steps": 4, "num_generations": 8},
                       schedule={"steps": 12, "eval_every": 2, "early_stop": 1})
    run = train(load_train_config(cfg), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 8 and (summary["best_step"], summary["best_dev_eer"]) == (6, 0.3)


def test_dynamic_batching_fills_batches_by_duration(manifest, tmp_path, monkeypatch):
    from spoofrl.training.trainer import Trainer
    shapes, train_step = [], Trainer._train_step

    def recording_step(self, step, batch):
        shapes.append(tuple(batch.wave.shape))
        return train_step(self, step, batch)

    monkeypatch.setattr(Trainer, "_train_step", recording_step)
    cfg = small_config(manifest, data={"crop_seconds": 0, "batching": "dynamic", "batch_seconds": 2.5},
                       objective={"name": "grpo", "num_generations": 8}, schedule={"steps": 0, "epochs": 1})
    train(load_train_config(cfg), tmp_path / "run")
    # whole files of 0.5-1 s, padded to the longest of their batch, at most 2.5 s of audio per batch
    assert sum(b for b, _ in shapes) == 16                        # every training file once in the epoch
    assert all(b * t <= 2.5 * 16000 for b, t in shapes) and len({b for b, _ in shapes}) > 1, shapes


def _weights(run: Path, name: str = "last/model.safetensors") -> dict:
    return load_file(str(run / name))


def test_resume_reaches_the_uninterrupted_result(manifest, tmp_path):
    # SFT then GRPO with an old policy (refresh 3), a reference model and its cache, sampled labels:
    # everything a resume must restore. Stops once in each stage.
    cfg = load_train_config(small_config(manifest, objective={
        "name": "sft_then_grpo", "sft_steps": 4, "num_generations": 8, "old_policy_refresh_steps": 3,
        "beta": 0.04, "grpo_start": "best", "grpo_reference": "switch"}))
    full, parts = tmp_path / "full", tmp_path / "parts"
    train(cfg, full)
    train(cfg, parts, stop_after=3)
    assert not (parts / "summary.json").exists() and json.loads((parts / "last/state.json").read_text())["step"] == 3
    train(cfg, parts, resume=True, stop_after=7)
    train(cfg, parts, resume=True)
    for name in ("last/model.safetensors", "model.safetensors", "stage1/model.safetensors",
                 "last/reference.safetensors", "last/old_policy.safetensors"):
        a, b = _weights(full, name), _weights(parts, name)
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k].numpy(), b[k].numpy()), (name, k)  # bitwise
    assert (full / "metrics.csv").read_text() == (parts / "metrics.csv").read_text()
    s_full, s_parts = (json.loads((r / "summary.json").read_text()) for r in (full, parts))
    assert s_full["best_step"] == s_parts["best_step"] and s_full["best_dev_eer"] == s_parts["best_dev_eer"]


def test_sft_then_grpo_switches_objective_and_reference(manifest, tmp_path):
    cfg = load_train_config(small_config(manifest, objective={
        "name": "sft_then_grpo", "sft_steps": 4, "num_generations": 8, "epsilon": None, "beta": 0.1,
        "grpo_start": "last", "grpo_reference": "switch"}, schedule={"steps": 8, "log_every": 1}))
    run = train(cfg, tmp_path / "run")
    rows = {int(r["step"]): r for r in read_rows(run)}
    assert all(rows[s]["reward_mean"] == "" and rows[s]["kl"] == "" for s in (1, 2, 3, 4))   # SFT stage
    assert all(rows[s]["reward_mean"] != "" and rows[s]["kl"] != "" for s in (5, 6, 7, 8))   # GRPO stage
    # first GRPO step: the reference is the model GRPO starts from; k3 = r - log r - 1 ~ d^2 / 2 of the
    # log-probs' rounding between two forwards (d < 1e-4): < 1e-8, where another model's KL is > 1e-2
    assert float(rows[5]["kl"]) < 1e-3
    start, ref = _weights(run, "stage1/grpo_start.safetensors"), _weights(run, "last/reference.safetensors")
    for k, v in ref.items():
        if k in start:
            assert np.array_equal(v.numpy(), start[k].numpy()), k
    assert (run / "stage1/model.safetensors").is_file() and (run / "stage1/config.yaml").is_file()


def test_grpo_with_init_uses_the_initial_model_as_reference(manifest, tmp_path):
    base = train(load_train_config(small_config(manifest, objective={"name": "sft"},
                                                schedule={"steps": 4, "eval_every": 0})), tmp_path / "base")
    cfg = load_train_config(small_config(manifest, objective={"name": "grpo", "num_generations": 8, "beta": 0.04,
                                                              "estimator": "exact"},
                                         schedule={"steps": 4, "eval_every": 0}))
    run = train(cfg, tmp_path / "grpo", init=base)
    ref, init = _weights(run, "last/reference.safetensors"), _weights(base, "model.safetensors")
    for k, v in ref.items():
        if k in init:
            assert np.array_equal(v.numpy(), init[k].numpy()), k
    assert json.loads((run / "summary.json").read_text())["init"] == str(base.resolve())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cuda_and_falls_back_to_fp32_on_cpu(manifest, tmp_path, precision):
    import torch
    from spoofrl.training.trainer import Trainer
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = load_train_config(small_config(manifest, objective={"name": "grpo", "num_generations": 8,
                                                              "old_policy_refresh_steps": 2},
                                         schedule={"steps": 4}), [f"precision={precision}", f"device={device}"])
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run()
    rows = read_rows(tmp_path / "run")
    assert all(np.isfinite(float(r["loss"])) for r in rows if r["loss"])
    with trainer.autocast():
        active = torch.is_autocast_enabled("cuda")
    assert active == (device == "cuda")                                   # autocast on CUDA only
    assert trainer.scaler.is_enabled() == (device == "cuda" and precision == "fp16")  # scaler for fp16 only


def test_ctrl_c_saves_a_resumable_checkpoint(manifest, tmp_path):
    recipe = tmp_path / "long.yaml"
    recipe.write_text(yaml.safe_dump(small_config(manifest, objective={"name": "sft"},
                                                  schedule={"steps": 100000, "log_every": 1, "eval_every": 0},
                                                  data={"dev_subsets": []})))
    out = tmp_path / "run"
    env = dict(os.environ, SPOOFRL_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", "from spoofrl.cli import entry; entry()", "train", str(recipe),
                             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until training is under way (a metrics row exists)
            if (out / "metrics.csv").is_file() and len((out / "metrics.csv").read_text().splitlines()) > 2:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    state = json.loads((out / "last/state.json").read_text())
    assert state["step"] >= 1 and not (out / "summary.json").exists()
    assert "interrupted" in err and "Traceback" not in err


def _copy_corpus(manifest: Path, dest: Path) -> Path:
    import shutil
    shutil.copytree(manifest.parent, dest)
    return dest / manifest.name


@pytest.mark.parametrize("broken", ["train_spoof_5.flac", "dev_bonafide_1.flac"], ids=["train-file", "dev-file"])
def test_bad_audio_keeps_the_steps_done_and_resume_reaches_the_same_result(manifest, tmp_path, broken):
    # A file that turns out unreadable mid-run (training batch, or the dev set at a validation) stops the run
    # with its AudioError; last/ keeps the steps done (and the pending validation), and once the file is
    # fixed --resume ends exactly where an uninterrupted run ends.
    from spoofrl.errors import AudioError
    cfg = small_config(manifest, objective={"name": "grpo", "num_generations": 8, "old_policy_refresh_steps": 3})
    full = train(load_train_config(cfg), tmp_path / "full")
    bad_manifest = _copy_corpus(manifest, tmp_path / "corpus")
    good = (bad_manifest.parent / broken).read_bytes()
    (bad_manifest.parent / broken).write_bytes(b"not audio")
    cfg["data"]["manifest"] = str(bad_manifest)
    run = tmp_path / "run"
    with pytest.raises(AudioError, match=broken):
        train(load_train_config(cfg, ["data.workers=1"]), run)  # the error crosses from a loader worker
    state = json.loads((run / "last/state.json").read_text())
    assert state["step"] >= 1 and not (run / "summary.json").exists()
    if broken.startswith("dev"):
        assert state["step"] == 4 and state["pending_eval"]["loss"] is not None  # the first validation failed
    (bad_manifest.parent / broken).write_bytes(good)
    train(load_train_config(cfg), run, resume=True)
    for name in ("model.safetensors", "last/model.safetensors"):
        a, b = _weights(full, name), _weights(run, name)
        assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a), name
    assert (full / "metrics.csv").read_text() == (run / "metrics.csv").read_text()


def test_bad_audio_in_a_loader_worker_is_one_line(manifest, tmp_path, capsys):
    bad_manifest = _copy_corpus(manifest, tmp_path / "corpus")
    (bad_manifest.parent / "train_bonafide_2.flac").write_bytes(b"")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(small_config(bad_manifest, objective={"name": "sft"},
                                                  data={"workers": 1})))
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("spoofrl train: error: ") and "train_bonafide_2.flac" in err[-1], err
    assert not any("Traceback" in line for line in err), "\n".join(err)


def test_resume_takes_the_init_of_the_run(manifest, tmp_path):
    base = train(load_train_config(small_config(manifest, objective={"name": "sft"},
                                                schedule={"steps": 2, "eval_every": 0})), tmp_path / "base")
    # the config names another architecture than the --init model: the run uses the --init one
    cfg = small_config(manifest, model={"preset": "resnet-logmel"},
                       objective={"name": "grpo", "num_generations": 8, "estimator": "exact"})
    run = tmp_path / "run"
    train(load_train_config(cfg), run, init=base, stop_after=4)
    from spoofrl.errors import ConfigError
    with pytest.raises(ConfigError, match="started with --init"):
        train(load_train_config(cfg), run, init=base / "last", resume=True)  # another model folder
    train(load_train_config(cfg), run, resume=True)  # --init may be left out on resume
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["init"] == str(base.resolve())
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["backend"]["name"] == "pool-linear"


def test_user_errors_are_one_line(tmp_path, capsys, manifest):
    assert main(["train", "no-such-recipe"]) == 2
    assert "unknown train preset" in capsys.readouterr().err
    assert main(["train", "sft", "--manifest", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["train", "grpo", "--set", "objective.epsilon=2", "--manifest", str(manifest)]) == 2
    assert "epsilon" in capsys.readouterr().err
    assert main(["train", "sft", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def _one_error_line(capsys) -> str:
    """The error of `spoofrl train`, checked to be one line: stderr holds nothing else but log records."""
    import re
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    other = [line for line in err if not re.match(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING) spoofrl", line)]
    assert len(other) == 1 and other[0].startswith("spoofrl train: error: "), err
    return other[0]


@pytest.mark.parametrize("setting", ["optim.lr=.nan", "optim.weight_decay=.nan", "data.crop_seconds=.nan",
                                     "data.crop_seconds=1e9", "seed=-1", "seed=1e20", "seed=100000000000000000000",
                                     "optim.lr=-1", "objective.temperature=.inf", "schedule.log_every=0"])
def test_impossible_values_are_one_line_errors_naming_the_key(manifest, tmp_path, capsys, setting):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(small_config(manifest, objective={"name": "sft"})))
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--set", setting]) == 2
    line = _one_error_line(capsys)
    key = setting.split("=")[0]
    assert line.startswith("spoofrl train: error: ") and f"{key} " in line and str(recipe) in line, line
    assert not (out / "last").exists()


def test_config_errors_give_the_yaml_line(manifest, tmp_path, capsys):
    recipe = tmp_path / "x.yaml"
    recipe.write_text(f"# a recipe\ndata:\n  manifest: {manifest}\n  batch_size: four\n"
                      "optim:\n  lr: 0.01\n  lrr: 3\nschedule: {steps: 2, warmup_steps: -1}\n")
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 2
    line = _one_error_line(capsys)
    assert f"{recipe}:4: data.batch_size: expected an integer" in line, line
    recipe.write_text(recipe.read_text().replace("batch_size: four", "batch_size: 4"))
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert f"{recipe}:7: optim.lrr: unknown option 'lrr'" in _one_error_line(capsys)
    from spoofrl.errors import ConfigError
    recipe.write_text(recipe.read_text().replace("  lrr: 3\n", ""))
    with pytest.raises(ConfigError, match=rf"^{recipe}:7: schedule.warmup_steps: must be in \[0, "):
        load_train_config(recipe)
    # a value from --set is not on a line of the file
    with pytest.raises(ConfigError, match=rf"^{recipe}: optim.lr \(from --set\): must be in \(0, 10\], got 0$"):
        load_train_config(recipe, ["schedule.warmup_steps=0", "optim.lr=0"])


def test_bad_yaml_in_set_is_one_line(manifest, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(small_config(manifest)))
    assert main(["train", str(recipe), "--out", str(tmp_path / "run"), "--set", "optim.lr=[1,"]) == 2
    line = _one_error_line(capsys)
    assert "optim.lr=[1," in line and "not valid YAML" in line, line


def test_unreadable_checkpoint_files_are_one_line_errors_naming_the_file(manifest, tmp_path, capsys):
    import shutil
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(small_config(manifest, objective={"name": "sft"},
                                                  schedule={"steps": 4, "eval_every": 0})))
    base = tmp_path / "base"
    assert main(["train", str(recipe), "--out", str(base), "--stop-after", "2"]) == 0
    capsys.readouterr()

    def truncate(path: Path) -> None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    damage = {"last/model.safetensors": truncate, "last/optimizer.pt": truncate,
              "last/state.json": lambda p: p.write_text('{"step": 2, '),
              "last/rng.json": lambda p: p.write_text("[1, 2")}
    for name, spoil in damage.items():
        run = tmp_path / name.replace("/", "_")
        shutil.copytree(base, run)
        spoil(run / name)
        assert main(["train", str(recipe), "--out", str(run), "--resume"]) == 2, name
        line = _one_error_line(capsys)
        assert str(run / name) in line and "internal error" not in line, line
    # a state.json that is JSON but not a checkpoint state
    run = tmp_path / "not-a-state"
    shutil.copytree(base, run)
    (run / "last/state.json").write_text("[]")
    assert main(["train", str(recipe), "--out", str(run), "--resume"]) == 2
    assert str(run / "last/state.json") in _one_error_line(capsys)


def test_resuming_a_finished_run_with_another_config_names_the_differences(manifest, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(small_config(manifest, objective={"name": "sft"},
                                                  schedule={"steps": 2, "eval_every": 0})))
    out = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out)]) == 0
    before = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    # the same config (device and other non-semantic options may differ): nothing to do, no warning
    assert main(["train", str(recipe), "--out", str(out), "--resume", "--set", "data.workers=0"]) == 0
    err = capsys.readouterr().err
    assert "nothing to do" in err and "differs" not in err, err
    # another config: still nothing trained, but the message says which keys differ
    assert main(["train", str(recipe), "--out", str(out), "--resume", "--set", "optim.lr=0.02",
                 "--set", "seed=3"]) == 0
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "nothing to do" in line)
    assert "WARNING" in line and "optim.lr: 0.01 -> 0.02" in line and "seed: 0 -> 3" in line, line
    assert (out / "model.safetensors").read_bytes() == before
