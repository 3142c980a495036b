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
    assert float(rows[5]["kl"]) < 1e-3   # first GRPO step: the reference is the model GRPO starts from
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


def test_user_errors_are_one_line(tmp_path, capsys, manifest):
    assert main(["train", "no-such-recipe"]) == 2
    assert "unknown train preset" in capsys.readouterr().err
    assert main(["train", "sft", "--manifest", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["train", "grpo", "--set", "objective.epsilon=2", "--manifest", str(manifest)]) == 2
    assert "epsilon" in capsys.readouterr().err
    assert main(["train", "sft", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
