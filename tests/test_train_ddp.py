"""Two CPU processes (gloo) train one model with DistributedDataParallel: both end with identical weights, the
model one process trains on the same global batch, and a dev EER computed over both processes' shares."""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch._dynamo  # noqa: F401  (optimisers import it; loaded before the fork, so the children need not)
import torch.utils.tensorboard  # noqa: F401  (same)

from conftest import chain_ops, float_tol
from spoofrl.training import Trainer, load_train_config
from test_train_data import write_toy_corpus


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GRPO = {
    "data": {"crop_seconds": 0.5, "batch_size": 4},
    # sampled labels differ between the processes (seeded by rank): only the gradient all-reduce can
    # keep their models equal
    "objective": {"name": "grpo", "num_generations": 8, "beta": 0.04, "old_policy_refresh_steps": 2},
    "optim": {"lr": 0.01}, "schedule": {"steps": 4, "eval_every": 2, "log_every": 1}, "device": "cpu"}
# A run whose gradient is the plain mean over the global batch: no batch statistics (no batch-norm), no dropout,
# no augmentation, fixed-length crops, plain SGD without clipping (a gradient summed instead of averaged over
# the processes doubles every step). Two processes with batch_size 4 then train the model that one process
# trains with batch_size 8: the planner gives rank r the global batches r, r + 2, ... of 4 utterances, which
# are the halves of the single process's batches of 8 (same seed, same order).
EXACT = {
    "model": {"frontend": {"name": "logmel", "n_mels": 20},
              "backend": {"name": "ffn", "hidden": [16], "dropout": 0.0}},
    "data": {"crop_seconds": 0.5, "crop": "start", "batch_size": 4, "augment": {"rawboost": {"algo": 0}}},
    "objective": {"name": "sft"},
    "optim": {"name": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0, "max_grad_norm": 0.0},
    "schedule": {"steps": 4, "eval_every": 2, "log_every": 1}, "device": "cpu"}


def _config(base: dict, manifest: str, **data):
    return load_train_config(dict(base, data=dict(base["data"], manifest=manifest, **data)))


def _worker(rank: int, world: int, ports: list[int], manifest: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      SPOOFRL_NO_PROGRESS="1")
    torch.set_num_threads(1)
    logging.getLogger("spoofrl").setLevel(logging.INFO)  # as `spoofrl train` runs it: train.log gets the progress
    for (name, base), port in zip((("grpo", GRPO), ("exact", EXACT)), ports):
        os.environ["MASTER_PORT"] = str(port)  # each run sets up (and tears down) its own process group
        trainer = Trainer(_config(base, manifest), Path(out) / name)
        trainer.run()
        state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        torch.save(state, Path(out) / f"{name}_rank{rank}.pt")


def _dev_eer_of_saved_model(run: Path, manifest: Path) -> float:
    """The EER of the run's saved (best) model on its dev set, scored here in one process."""
    from spoofrl.data.manifest import BONAFIDE, SPOOF, read_manifest
    from spoofrl.inference import score_utterances
    from spoofrl.metrics import compute_eer
    from spoofrl.models import load_model
    dev = read_manifest(manifest, ["dev"])
    scores = score_utterances(load_model(run), dev)
    labels = np.array([u.label for u in dev])
    return float(compute_eer(scores[labels == BONAFIDE], scores[labels == SPOOF])[0])


def _logged(run: Path) -> tuple[list[str], dict[str, float]]:
    """metrics.csv: the step of every row, and the dev EER of each validated step."""
    rows = (run / "metrics.csv").read_text().splitlines()
    head = rows[0].split(",")
    cells = [dict(zip(head, r.split(","))) for r in rows[1:]]
    return [c["step"] for c in cells], {c["step"]: float(c["dev_eer"]) for c in cells if c.get("dev_eer")}


def test_two_gloo_processes_train_one_model(tmp_path):
    """What DDP must guarantee, on two CPU processes (gloo): both end with identical weights even when their
    sampled labels differ (GRPO); the averaged gradient is the global batch's (the model equals a
    single-process run with the same global batch); validation gathers every process's share of the dev set
    (the dev EER is the EER of the saved model on the whole dev set); rank 0 alone writes the run folder."""
    manifest = write_toy_corpus(tmp_path / "corpus", n_train=8, n_dev=3)
    out = tmp_path / "ddp"
    # fork: the children inherit the imported modules (spawn would re-import torch in each, ~10 s on 2 cores)
    mp.start_processes(_worker, args=(2, [_free_port(), _free_port()], str(manifest), str(out)), nprocs=2,
                       join=True, start_method="fork")
    from spoofrl.models import build_model
    for name in ("grpo", "exact"):
        w0 = torch.load(out / f"{name}_rank0.pt", weights_only=True)
        w1 = torch.load(out / f"{name}_rank1.pt", weights_only=True)
        assert w0.keys() == w1.keys()
        for k in w0:
            assert torch.equal(w0[k], w1[k]), (name, k)
        run = out / name
        # training happened (weights left their initial values)
        torch.manual_seed(0)
        initial = build_model(load_train_config(run / "config.yaml").model).state_dict()
        assert any(not torch.equal(initial[k], w0[k]) for k in initial), name
        # the logs: 4 steps, each logged once, validated at steps 2 and 4; the run knows it had 2 processes
        steps, dev = _logged(run)
        assert steps == ["1", "2", "3", "4"], (name, steps)
        assert list(dev) == ["2", "4"] and all(0 <= e <= 1 for e in dev.values()), (name, dev)
        summary = json.loads((run / "summary.json").read_text())
        assert (summary["processes"], summary["steps"], summary["train_utterances"], summary["dev_utterances"]) \
            == (2, 4, 16, 6), (name, summary)
        assert 0 <= summary["best_dev_eer"] <= 1 and summary["best_step"] in (2, 4)
        # metrics.csv keeps 6 significant digits (5e-7 of an EER <= 1)
        assert summary["best_dev_eer"] == pytest.approx(min(dev.values()), abs=1e-6)
        assert dev[str(summary["best_step"])] == pytest.approx(summary["best_dev_eer"], abs=1e-6)
        # the dev EER is that of the saved best model on the whole dev set, not of one process's share: an EER
        # is a ratio of counts (float64, 1e-16), and the rounding of scores between the two scorings (~1e-6)
        # cannot reorder 6 scores of these models (> 1e-2 apart); one process's share would give another EER
        assert summary["best_dev_eer"] == pytest.approx(_dev_eer_of_saved_model(run, manifest), abs=1e-12), name
        log = (run / "train.log").read_text()
        assert log.count("finished: 4 steps") == 1 and "x 2 processes" in log, name
    # the averaged gradient is the global batch's: one process with batch_size 8 trains the same model
    single = Trainer(_config(EXACT, str(manifest), batch_size=8), tmp_path / "single")
    single.run()
    alone = single.model.state_dict()
    w0 = torch.load(out / "exact_rank0.pt", weights_only=True)
    torch.manual_seed(0)
    initial = build_model(load_train_config(out / "exact" / "config.yaml").model).state_dict()
    # Two half-batch gradients averaged vs one mean over 8: float32 sums in another order. Each of the 4 steps'
    # gradients goes through the 512-point STFT, 257-bin mels, a mean over 50 frames, the 20 -> 16 -> 2 network
    # and a mean over 8 clips, forward and back (~120 roundings by chain_ops), relative to the step it makes: 4 x
    # 120 eps of the distance each tensor moved (0.1 to 0.4), plus the weights' own rounding. A gradient summed
    # over the processes instead of averaged would double every step: off by all of that distance.
    steps = 4 * 2 * chain_ops(512, 257, 50, 20, 16, 2, 8)
    for k in w0:
        moved = float((alone[k] - initial[k]).abs().max())
        tol = float_tol(torch.float32, steps, moved) + float_tol(torch.float32, 4, float(alone[k].abs().max()))
        torch.testing.assert_close(w0[k], alone[k], rtol=0, atol=tol, msg=k)
    assert json.loads((tmp_path / "single" / "summary.json").read_text())["processes"] == 1
    assert _logged(tmp_path / "single")[1] == _logged(out / "exact")[1]  # the same dev EERs


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_torchrun_command_of_the_docs(tmp_path, parallel):
    """The exact command docs/training.md gives (torchrun --no-python spoofrl train ...), 2 gloo processes, with
    the model replicated (DDP) or sharded (FSDP). Slow (~20 s: torchrun starts two fresh interpreters); the
    forked tests here and in test_train_fsdp_trainer.py are its small versions."""
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
           "--set", "schedule.eval_every=2", "--set", f"parallel={parallel}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines() == [str(out)]          # rank 0 alone prints the run folder
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["processes"], summary["steps"], summary["objective"]) == (2, 4, "grpo")
    assert (summary["train_utterances"], summary["dev_utterances"]) == (16, 6)
    steps, dev = _logged(out)
    # a row at each validation (the default log_every, 10, is longer than the run), written once (rank 0)
    assert steps == ["2", "4"] and list(dev) == ["2", "4"]
    assert 0 <= summary["best_dev_eer"] <= 1 and summary["best_step"] in (2, 4)
    assert dev[str(summary["best_step"])] == pytest.approx(summary["best_dev_eer"], abs=1e-6)
    # the dev EER gathered over both processes is the saved best model's EER on the whole dev set
    assert summary["best_dev_eer"] == pytest.approx(_dev_eer_of_saved_model(out, manifest), abs=1e-12)
    log = (out / "train.log").read_text()
    assert log.count("finished: 4 steps") == 1 and f"x 2 processes ({parallel})" in log
