"""The generation task under DistributedDataParallel: two CPU processes (gloo) train one audio LLM through an
SFT stage and a GRPO stage whose rollouts differ by process (sampling is seeded by rank), with the dapo
normaliser's one all_reduce per pass, micro-batches and two updates per rollout: only the gradient
all-reduce can keep the two models equal, and nothing may deadlock."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.multiprocessing as mp
import torch._dynamo  # noqa: F401  (optimisers import it; loaded before the fork, so the children need not)
import torch.utils.tensorboard  # noqa: F401  (same)

from spoofrl.training import Trainer, load_train_config
from test_alm_train import low_high_config, write_low_high
from test_train_ddp import _free_port

STAGES = {"stages": [{"objective": "sft", "steps": 2},
                     {"objective": "grpo", "options": {"num_generations": 4, "num_iterations": 2,
                                                       "micro_batch_size": 1, "loss_type": "dapo", "beta": 0.04}}],
          "device": "cpu"}


def _worker(rank: int, world: int, port: int, manifest: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), SPOOFRL_NO_PROGRESS="1")
    torch.set_num_threads(1)
    trainer = Trainer(load_train_config(low_high_config(Path(manifest), 5, **STAGES)), Path(out) / "run")
    trainer.run()
    torch.save({k: v.detach().clone() for k, v in trainer.model.state_dict().items()}, Path(out) / f"rank{rank}.pt")


def test_two_gloo_processes_train_one_audio_llm(tmp_path):
    manifest = write_low_high(tmp_path / "data")
    out = tmp_path / "ddp"
    mp.start_processes(_worker, args=(2, _free_port(), str(manifest), str(out)), nprocs=2, join=True,
                       start_method="fork")
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    from spoofrl.alm import build_alm, load_tokenizer
    from spoofrl.alm.config import AlmConfig
    from spoofrl.config import from_dict
    cfg = load_train_config(str(out / "run" / "config.yaml"))
    initial = build_alm(from_dict(AlmConfig, cfg.model["alm"]), load_tokenizer(out / "run" / "tokenizer"),
                        seed=cfg.seed).state_dict()
    assert any(not torch.equal(initial[k], w0[k]) for k in initial)
    summary = json.loads((out / "run" / "summary.json").read_text())
    assert (summary["processes"], summary["steps"], summary["train_utterances"]) == (2, 5, 24)
    rows = (out / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].endswith(",dev_error") and len(rows) > 2
