"""Two CPU processes (gloo) train one model with DistributedDataParallel: both end with identical weights."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch._dynamo  # noqa: F401  (optimisers import it; loaded before the fork, so the children need not)
import torch.utils.tensorboard  # noqa: F401  (same)

from spoofrl.training import Trainer, load_train_config
from test_train_data import write_toy_corpus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, manifest: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), SPOOFRL_NO_PROGRESS="1")
    torch.set_num_threads(1)
    cfg = load_train_config({
        "data": {"manifest": manifest, "crop_seconds": 0.5, "batch_size": 4},
        # sampled labels differ between the processes (seeded by rank): only the gradient all-reduce can
        # keep their models equal
        "objective": {"name": "grpo", "num_generations": 8, "beta": 0.04, "old_policy_refresh_steps": 2},
        "optim": {"lr": 0.01}, "schedule": {"steps": 4, "eval_every": 2, "log_every": 1}, "device": "cpu"})
    trainer = Trainer(cfg, out)
    trainer.run()
    state = {k: v.detach().clone() for k, v in trainer.detector.state_dict().items()}
    torch.save(state, Path(out) / f"rank{rank}.pt")


def test_two_gloo_processes_hold_identical_weights(tmp_path):
    manifest = write_toy_corpus(tmp_path / "corpus", n_train=8, n_dev=3)
    out = tmp_path / "run"
    # fork: the children inherit the imported modules (spawn would re-import torch in each, ~10 s on 2 cores)
    mp.start_processes(_worker, args=(2, _free_port(), str(manifest), str(out)), nprocs=2, join=True,
                       start_method="fork")
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # training happened (weights left their initial values) and rank 0 wrote the run folder once
    from spoofrl.models import build_model
    torch.manual_seed(0)
    initial = build_model(load_train_config(out / "config.yaml").model).state_dict()
    assert any(not torch.equal(initial[k], w0[k]) for k in initial)
    rows = (out / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert np.isfinite(summary["best_dev_eer"])


@pytest.mark.slow
def test_torchrun_command_of_the_docs(tmp_path):
    """The exact command docs/training.md gives (torchrun --no-python spoofrl train ...), 2 gloo processes.
    Slow (~20 s: torchrun starts two fresh interpreters); its small version is the forked test above."""
    import shutil
    import subprocess
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    manifest = write_toy_corpus(tmp_path / "corpus", n_train=8, n_dev=3)
    out = tmp_path / "run"
    env = dict(os.environ, SPOOFRL_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()), "--no-python", "spoofrl",
           "train", "grpo", "--manifest", str(manifest), "--out", str(out), "--device", "cpu",
           "--set", "data.train_subsets=[train]", "--set", "data.dev_subsets=[dev]", "--set", "data.crop_seconds=0.5",
           "--set", "data.batch_size=4", "--set", "objective.num_generations=8", "--set", "schedule.steps=4",
           "--set", "schedule.eval_every=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines() == [str(out)]          # rank 0 alone prints the run folder
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4 and np.isfinite(summary["best_dev_eer"])
