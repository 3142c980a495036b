"""`parallel: fsdp` in the one trainer: two CPU processes (gloo) train with every parameter sharded (FSDP2).

Each scenario runs in one forked pair of processes (module fixture), then the tests compare:
- generation (SFT stage -> GRPO stage with rollouts that differ by process, dapo, micro-batches, two updates per
  rollout, a k3 reference, the next stage starting from the SFT stage's best): the sharded run ends with the
  weights of the same run under DDP (same per-process batches, gradients averaged either way), both processes
  hold the same full weights, a run stopped inside the GRPO stage and resumed ends bit for bit as the
  uninterrupted one (checkpoints of gathered weights, optimizer moments and reference snapshot, cut back into
  shards), and the saved model folder loads in one process with those weights; the same for LoRA adapters on
  each Hugging Face backend (tiny random models), and a run started in one process continues sharded;
- detection: the EXACT run of test_train_ddp (plain SGD, fixed crops) sharded equals one process on the global
  batch; GRPO with an old policy and a reference (snapshots evaluated in the shards) equals its DDP run; the dev
  EER gathered over both processes' shares (each scored on a full copy) is the saved model's on the whole set;
  a detector with batch norms keeps rank 0's running statistics on both processes, as under DDP.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

# loaded before the fork, so that the children need not import them
import torch._dynamo  # noqa: F401,E402
import torch.distributed.checkpoint.state_dict  # noqa: F401,E402
import torch.distributed.fsdp  # noqa: F401,E402
import torch.utils.tensorboard  # noqa: F401,E402

from conftest import float_tol  # noqa: E402
from spoofrl.training import Trainer, fsdp, load_train_config  # noqa: E402
from test_alm_train import low_high_config, write_low_high  # noqa: E402
from test_train_data import write_toy_corpus  # noqa: E402
from test_train_ddp import EXACT, GRPO, _config, _dev_eer_of_saved_model, _free_port  # noqa: E402

GENERATION = {"stages": [{"objective": "sft", "steps": 2, "options": {}},
                         {"objective": "grpo", "start": "best",
                          "options": {"num_generations": 4, "num_iterations": 2, "micro_batch_size": 1,
                                      "loss_type": "dapo", "beta": 0.04}}],
              "schedule": {"steps": 5, "eval_every": 2, "log_every": 1}, "device": "cpu"}
STOP_AT = 3   # inside the GRPO stage
HF_KINDS = ("qwen2_audio", "qwen2_5_omni_thinker", "granite_speech")
# a detector with batch norms (LCNN's input norm and blocks) and dropout: running statistics are buffers
BATCH_NORM = dict(EXACT, model={"frontend": {"name": "logmel", "n_mels": 20},
                                "backend": {"name": "lcnn", "width": 0.25, "lstm": False}},
                  optim={"name": "adamw", "lr": 1e-3})


def _generation_config(manifest: str, parallel: str):
    return load_train_config(dict(low_high_config(Path(manifest), 5, **GENERATION), parallel=parallel))


def _hf_config(manifest: str, base: str, parallel: str):
    """A tiny random HF audio LLM with LoRA: the frozen base is sharded with the adapters inside its layers."""
    return load_train_config(dict(low_high_config(
        Path(manifest), 4, model={"hf": {"path": base, "lora": {"r": 4, "alpha": 8}}},
        stages=[{"objective": "sft", "steps": 2},
                {"objective": "grpo", "start": "best",
                 "options": {"num_generations": 3, "micro_batch_size": 2, "beta": 0.04}}],
        optim={"lr": 1e-2}, schedule={"steps": 4, "eval_every": 2}, device="cpu"), parallel=parallel))


def _run(out: Path, cfg, rank: int, **kwargs) -> Trainer:
    trainer = Trainer(cfg, out, **kwargs)
    trainer.run()
    if kwargs.get("stop_after") is None:   # the full weights from the shards (a collective), on every process
        state = {k: v.full_tensor() if hasattr(v, "full_tensor") else v.detach().clone()
                 for k, v in trainer.model.state_dict().items()}
        torch.save(state, out.parent / f"{out.name}_rank{rank}.pt")
        (out.parent / f"{out.name}_rank{rank}.sharded").write_text(str(fsdp.is_sharded(trainer.model)))
    return trainer


def _worker(rank: int, world: int, port: int, generation: str, detection: str, hf_base: str, single: str,
            out: str) -> None:
    import torch.distributed as dist
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), SPOOFRL_NO_PROGRESS="1")
    torch.set_num_threads(1)
    logging.getLogger("spoofrl").setLevel(logging.INFO)   # as `spoofrl train` runs it: train.log gets progress
    # one process group for every run (the trainer joins it and leaves it up), so the weights can be gathered
    dist.init_process_group("gloo", rank=rank, world_size=world)
    out_dir = Path(out)
    _run(out_dir / "gen_fsdp", _generation_config(generation, "fsdp"), rank)
    _run(out_dir / "gen_ddp", _generation_config(generation, "ddp"), rank)
    _run(out_dir / "gen_resumed", _generation_config(generation, "fsdp"), rank, stop_after=STOP_AT)
    _run(out_dir / "gen_resumed", _generation_config(generation, "fsdp"), rank, resume=True)
    for kind in HF_KINDS:
        for parallel in ("fsdp", "ddp"):
            _run(out_dir / f"hf_{kind}_{parallel}", _hf_config(generation, f"{hf_base}/{kind}", parallel), rank)
    # a run started in one process (optimizer state keyed by position) continues sharded
    _run(Path(single), _generation_config(generation, "fsdp"), rank, resume=True)
    for name, base in (("exact", EXACT), ("grpo", GRPO), ("bn", BATCH_NORM)):
        for parallel in ("fsdp", "ddp"):
            _run(out_dir / f"det_{name}_{parallel}", _config(dict(base, parallel=parallel), detection), rank)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fsdp_trainer")
    generation = write_low_high(root / "generation")
    detection = write_toy_corpus(root / "detection", n_train=8, n_dev=3)
    from spoofrl.alm.hf.tiny import BUILDERS
    hf_base = root / "hf"
    for kind in HF_KINDS:
        BUILDERS[kind](hf_base / kind)
    out = root / "runs"
    out.mkdir()
    Trainer(_generation_config(str(generation), "ddp"), out / "single_fsdp", stop_after=2).run()   # one process
    mp.start_processes(_worker, args=(2, _free_port(), str(generation), str(detection), str(hf_base),
                                      str(out / "single_fsdp"), str(out)), nprocs=2, join=True,
                       start_method="fork")
    return out


def _weights(runs: Path, name: str, rank: int = 0) -> dict[str, torch.Tensor]:
    sharded = (runs / f"{name}_rank{rank}.sharded").read_text() == "True"
    assert sharded == name.endswith(("fsdp", "resumed")), name   # the fsdp runs ran sharded, the ddp runs not
    return torch.load(runs / f"{name}_rank{rank}.pt", weights_only=True)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# FSDP vs DDP (or one process on the global batch): the same float32 gradients reduced in another order. Each
# update carries their relative rounding, eps x the forward and backward reductions (chain_ops: <= ~700 for the
# tiny HF models, ~240 for the detector), of the step it makes: Adam's steps are <= lr (1e-2 with LoRA, 3e-3 for
# the built-in ALM), x 10 for nearly cancelling gradients (see test_train_fsdp); plain SGD moves the detector by
# <= 0.4 in all. Over <= 7 updates the worst is the SGD detector's 4 x 240 x eps x 0.42 = 5e-5: DRIFT = 1e-4,
# plus a few roundings of each weight. A gradient of one process's half, or ranks out of step, moves weights by
# whole steps (>= 1e-3).
DRIFT = 1e-4


def _close(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=float_tol(torch.float32, 4), atol=DRIFT, msg=f"{what}: {k}")


def test_sharded_generation_run_equals_its_ddp_run(runs):
    sharded, ddp = _weights(runs, "gen_fsdp"), _weights(runs, "gen_ddp")
    assert _same(sharded, _weights(runs, "gen_fsdp", rank=1))
    _close(sharded, ddp, "fsdp vs ddp")
    from spoofrl.alm import build_alm, load_tokenizer
    from spoofrl.alm.config import AlmConfig
    from spoofrl.config import from_dict
    cfg = load_train_config(str(runs / "gen_fsdp" / "config.yaml"))
    assert cfg.parallel == "fsdp"
    initial = build_alm(from_dict(AlmConfig, cfg.model["alm"]), load_tokenizer(runs / "gen_fsdp" / "tokenizer"),
                        seed=cfg.seed).state_dict()
    moved = max(float((initial[k] - sharded[k]).abs().max()) for k in initial)
    assert moved > 10 * DRIFT   # it trained: far above the fsdp / ddp tolerance
    summary = json.loads((runs / "gen_fsdp" / "summary.json").read_text())
    assert (summary["processes"], summary["steps"]) == (2, 5)
    log = (runs / "gen_fsdp" / "train.log").read_text()
    assert "grpo starts from its best weights" in log and log.count("finished: 5 steps") == 1


def test_sharded_generation_run_resumes_bit_for_bit(runs):
    resumed = _weights(runs, "gen_resumed")
    assert _same(resumed, _weights(runs, "gen_fsdp"))
    assert "resumed" in (runs / "gen_resumed" / "train.log").read_text()
    whole = (runs / "gen_fsdp" / "metrics.csv").read_text()
    assert (runs / "gen_resumed" / "metrics.csv").read_text() == whole


def test_sharded_generation_run_saves_loadable_full_weights(runs):
    from safetensors.torch import load_file

    from spoofrl.alm.io import load_alm
    last = load_file(str(runs / "gen_fsdp" / "last" / "model.safetensors"))
    full = _weights(runs, "gen_fsdp")
    assert all(torch.equal(last[k], full[k]) for k in last) and len(last) >= len(full) - 1   # tied: one name
    best = load_alm(runs / "gen_fsdp", device="cpu").state_dict()
    ddp_best = load_alm(runs / "gen_ddp", device="cpu").state_dict()
    _close(best, ddp_best, "best model folders")


@pytest.mark.parametrize("kind", HF_KINDS)
def test_sharded_lora_audio_llm_equals_its_ddp_run(runs, kind):
    """peft adapters inside sharded layers of a frozen base (each backend: Qwen2-Audio, the Qwen2.5-Omni thinker,
    Granite Speech): trained, saved as an adapter folder, the GRPO stage started from the SFT stage's best
    adapters (loaded into the shards by their state-dict names)."""
    from spoofrl.alm.hf import load_hf_alm
    name = f"hf_{kind}"
    sharded = _weights(runs, f"{name}_fsdp")
    assert _same(sharded, _weights(runs, f"{name}_fsdp", rank=1))
    _close(sharded, _weights(runs, f"{name}_ddp"), f"{kind} lora fsdp vs ddp")
    adapters = [k for k in sharded if "lora_B" in k]
    assert adapters and max(float(sharded[k].abs().max()) for k in adapters) > 10 * DRIFT   # B starts at 0
    for run in (f"{name}_fsdp", f"{name}_ddp"):
        assert (runs / run / "adapter_config.json").is_file() and (runs / run / "stage1" / "adapter_config.json").is_file()
    a = load_hf_alm(runs / f"{name}_fsdp", device="cpu").state_dict()
    b = load_hf_alm(runs / f"{name}_ddp", device="cpu").state_dict()
    _close(a, b, f"{kind} adapter folders")
    assert "grpo starts from its best weights" in (runs / f"{name}_fsdp" / "train.log").read_text()


def test_sharded_detector_equals_one_process_on_the_global_batch(runs, tmp_path):
    sharded = _weights(runs, "det_exact_fsdp")
    assert _same(sharded, _weights(runs, "det_exact_fsdp", rank=1))
    _close(sharded, _weights(runs, "det_exact_ddp"), "exact fsdp vs ddp")
    manifest = runs.parent / "detection" / "manifest.csv"
    single = Trainer(_config(EXACT, str(manifest), batch_size=8), tmp_path / "single")
    single.run()
    _close(sharded, single.model.state_dict(), "exact fsdp vs one process")


def test_sharded_detection_grpo_equals_its_ddp_run_and_validates_the_whole_dev_set(runs):
    sharded = _weights(runs, "det_grpo_fsdp")
    _close(sharded, _weights(runs, "det_grpo_ddp"), "grpo fsdp vs ddp")
    run = runs / "det_grpo_fsdp"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["processes"], summary["dev_utterances"]) == (2, 6)
    manifest = runs.parent / "detection" / "manifest.csv"
    assert summary["best_dev_eer"] == pytest.approx(_dev_eer_of_saved_model(run, manifest), abs=1e-12)


def test_batch_norm_statistics_are_rank_0s_as_under_ddp(runs):
    sharded = _weights(runs, "det_bn_fsdp")
    stats = [k for k in sharded if k.endswith(("running_mean", "running_var"))]
    assert stats and _same(sharded, _weights(runs, "det_bn_fsdp", rank=1))   # buffers included
    _close(sharded, _weights(runs, "det_bn_ddp"), "batch-norm detector fsdp vs ddp")
    run = runs / "det_bn_fsdp"
    summary = json.loads((run / "summary.json").read_text())
    manifest = runs.parent / "detection" / "manifest.csv"
    assert summary["best_dev_eer"] == pytest.approx(_dev_eer_of_saved_model(run, manifest), abs=1e-12)


def test_a_one_process_checkpoint_resumes_sharded(runs):
    run = runs / "single_fsdp"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["processes"], summary["steps"]) == (2, 5)
    assert _same(_weights(runs, "single_fsdp"), _weights(runs, "single_fsdp", rank=1))
    log = (run / "train.log").read_text()
    assert "resumed" in log and "x 2 processes (fsdp)" in log


def test_fsdp_refuses_fp16_and_micro_batches_of_dynamic_batching(tmp_path):
    from types import SimpleNamespace

    from spoofrl.errors import ConfigError
    from spoofrl.training.distributed import DistInfo
    with pytest.raises(ConfigError, match="precision"):
        load_train_config({"parallel": "fsdp", "precision": "fp16"})
    trainer = Trainer(load_train_config({"parallel": "fsdp", "data": {"batching": "dynamic"}}), tmp_path)
    trainer.dist = DistInfo(rank=0, world=2)
    grpo = SimpleNamespace(options=SimpleNamespace(micro_batch_size=2), config=SimpleNamespace(objective="grpo"))
    trainer.stages = [grpo]
    with pytest.raises(ConfigError, match=r"stages\[0\] \(grpo\).*data.batching fixed"):
        trainer._check_sharded_forwards()
    trainer.cfg.data.batching = "fixed"
    trainer._check_sharded_forwards()             # fixed batches: every process runs as many micro-batches
    trainer.cfg.data.batching, trainer.cfg.parallel = "dynamic", "ddp"
    trainer._check_sharded_forwards()             # DDP: no_sync lets the numbers differ
