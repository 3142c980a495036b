"""FSDP2 (torch.distributed.fsdp.fully_shard) on two CPU processes with gloo: spoofrl.training.fsdp's helpers.

One forked pair of processes runs every scenario once (module fixture) and writes what each rank saw; the
tests compare it with the same models trained here in one process, unsharded:
- sharded training on per-rank halves of a global batch = unsharded training on the whole batch (SGD, AdamW);
- a full state dict + full optimizer state saved and loaded into a fresh sharded model continues bit for bit;
- a parameter snapshot (local shards) evaluated with call_with gives the snapshot-time outputs, also between a
  live forward and its backward (GRPO's old / reference logits);
- no_sync: two micro-batches accumulated without communication = one step on the whole batch;
- generation as a gathered method (inside `unsharded`) runs different numbers of decoding steps on the ranks;
- a Detector sharded with entry point forward_features and its frozen front-end replicated trains like one
  process, and plain_copy scores a rank-dependent number of waves.
"""
from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

# loaded before the fork, so that the children need not import them (optimizers import torch._dynamo)
import torch._dynamo  # noqa: F401
import torch.distributed.checkpoint.state_dict  # noqa: F401
import torch.distributed.fsdp  # noqa: F401
from transformers import Qwen2Config, Qwen2ForCausalLM

from conftest import chain_ops, float_tol
from spoofrl.training import fsdp
from spoofrl.training.distributed import DistInfo

WORLD = 2
VOCAB, SEQ, BATCH, STEPS = 64, 8, 4, 3


# --- models and data, identical in the workers and in the single-process references ----------------------------
def tiny_lm(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    return Qwen2ForCausalLM(cfg)


def global_batch(step: int) -> torch.Tensor:
    """Token ids [BATCH, SEQ] of step `step` (no padding: each row has the same number of loss tokens, so the
    mean over the whole batch is the mean of the two halves' means)."""
    return torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(100 + step))


def half(x: torch.Tensor, rank: int) -> torch.Tensor:
    n = x.shape[0] // WORLD
    return x[rank * n:(rank + 1) * n]


def lm_loss(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, labels=ids).loss


def freeze_first_mlp(model: Qwen2ForCausalLM) -> Qwen2ForCausalLM:
    """Frozen parameters in a sharded block beside trainable ones (as a LoRA model has them)."""
    model.model.layers[0].mlp.requires_grad_(False)
    return model


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.5, momentum=0.9)
    return torch.optim.AdamW(params, lr=0.01, weight_decay=0.1)


def train_steps(model, optimizer, steps, rank: int | None, norms: list | None = None) -> None:
    """`steps` updates; rank None: the whole global batch, else that rank's half."""
    for step in steps:
        ids = global_batch(step)
        lm_loss(model, ids if rank is None else half(ids, rank)).backward()
        norm = fsdp.clip_grad_norm(model.parameters(), 1e9)   # max_norm: no clipping, just the total norm
        if norms is not None:
            norms.append(norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def eval_logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=global_batch(99)).logits


def tiny_detector(seed: int = 0):
    """A detector whose front-end has parameters (sinc filters), frozen as optim.frontend_lr_scale: 0 does."""
    from spoofrl.models import build_model
    torch.manual_seed(seed)
    detector = build_model({"frontend": {"name": "sinc", "n_filters": 8, "kernel_size": 33},
                            "backend": {"name": "ffn", "hidden": [16], "dropout": 0.0}})
    detector.frontend.requires_grad_(False)
    return detector


def build_tiny_detector():
    return tiny_detector(seed=7)   # other weights than the trained one: plain_copy must load them


def detector_batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(200 + step)
    wave = torch.randn(BATCH, 4000, generator=g) * 0.1
    return wave, torch.full((BATCH,), 4000), torch.tensor([0, 1, 1, 0])


def detector_step(forward, detector, optimizer, step: int, rank: int | None, precomputed: bool) -> None:
    """One SGD step through TrainForward: the full forward, or forward_features on compute_features' output (the
    frozen-front-end path of spoofrl.training.forward)."""
    from spoofrl.training.forward import compute_features
    wave, lengths, targets = detector_batch(step)
    if rank is not None:
        wave, lengths, targets = half(wave, rank), half(lengths, rank), half(targets, rank)
    if precomputed:
        logits = forward(wave, lengths, *compute_features(detector, wave, lengths))
    else:
        logits = forward(wave, lengths)
    torch.nn.functional.cross_entropy(logits, targets).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def dev_waves(count: int) -> list:
    g = torch.Generator().manual_seed(300)
    return [(torch.randn(3000 + 500 * i, generator=g) * 0.1).numpy() for i in range(count)]


def tiny_alm():
    from spoofrl.alm import AlmConfig, build_alm, train_tokenizer
    from spoofrl.alm.toy import toy_texts
    tok = train_tokenizer(toy_texts(), vocab_size=300)
    cfg = AlmConfig(frontend={"name": "logmel", "n_mels": 16}, conv_channels=16, encoder_layers=0, lm_layers=2,
                    lm_width=32, lm_heads=4, lm_kv_heads=2, lm_ffn=64, max_positions=256,
                    attn_implementation="eager")
    return build_alm(cfg, tok, seed=0)


def alm_batch():
    from spoofrl.alm.toy import toy_batch
    return toy_batch(WORLD, seed=3)


def alm_scores(model, batch, comps, grad: bool = False) -> torch.Tensor:
    return model.token_logprobs(batch, comps, grad=grad)[0]


# --- the two processes -------------------------------------------------------------------------------------------
def _local(tensors: dict) -> dict:
    return {k: (v.to_local() if hasattr(v, "to_local") else v).detach().clone() for k, v in tensors.items()}


def _scenario_training(info: DistInfo, out: Path, results: dict) -> None:
    """1. per-rank halves = the whole batch; 2. save / resume."""
    rank = info.rank
    for name in ("sgd", "adamw"):
        lm = freeze_first_mlp(tiny_lm()) if name == "sgd" else tiny_lm()
        model = fsdp.shard_model(lm, info)
        opt = make_optimizer(name, [p for p in model.parameters() if p.requires_grad])
        norms: list[float] = []
        train_steps(model, opt, range(STEPS), rank, norms)
        state = fsdp.full_state_dict(model)
        results[f"{name}_norms"] = norms
        if name != "adamw":
            results[f"{name}_state"] = state
            continue
        # the resume point, as the trainer would keep it: rank 0 writes the full optimizer state, every rank
        # reads it back; the model state goes by broadcast from rank 0
        saved = fsdp.full_optimizer_state(model, opt)
        if rank == 0:
            torch.save(saved, out / "optimizer.pt")
        torch.distributed.barrier()
        optim_state = torch.load(out / "optimizer.pt", weights_only=True)
        before = eval_logits(model)
        train_steps(model, opt, [STEPS], rank)
        uninterrupted = fsdp.full_state_dict(model)
        fresh = fsdp.shard_model(tiny_lm(seed=123), info)          # other initial weights: all must be loaded
        fresh_opt = make_optimizer(name, fresh.parameters())
        fsdp.load_full_state_dict(fresh, state if rank == 0 else {}, from_rank0=True)
        fsdp.load_full_optimizer_state(fresh, fresh_opt, optim_state)
        results["resumed_logits_equal"] = bool(torch.equal(eval_logits(fresh), before))
        train_steps(fresh, fresh_opt, [STEPS], rank)
        resumed = fsdp.full_state_dict(fresh)
        results["saved_optimizer_empty"] = saved == {}
        if rank == 0:
            results.update(adamw_state=state, uninterrupted=uninterrupted, resumed=resumed,
                           optim_keys=sorted(optim_state["state"]))


def _scenario_no_sync(info: DistInfo, results: dict) -> None:
    """4. two micro-batches per rank, the first without gradient sync, then one SGD step."""
    model = fsdp.shard_model(tiny_lm(), info)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    mine = half(global_batch(0), info.rank)
    with fsdp.no_sync(model):
        (lm_loss(model, mine[:1]) / 2).backward()
    # nothing was reduced: the sharded gradients appear only at the synced backward
    results["grad_after_no_sync"] = [p.grad is not None for p in model.parameters()]
    (lm_loss(model, mine[1:]) / 2).backward()
    opt.step()
    state = fsdp.full_state_dict(model)
    if info.rank == 0:
        results["no_sync_state"] = state


def _scenario_snapshot(info: DistInfo, out: Path, results: dict) -> None:
    """3. snapshot + call_with on the audio LLM (entry point token_logprobs, gathered method generate); saving
    through full_weights and loading a saved folder."""
    from spoofrl.alm import SamplingConfig
    rank = info.rank
    model = fsdp.shard_model(tiny_alm(), info, forward_methods=("token_logprobs",), gathered_methods=("generate",))
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    batch = alm_batch().select([rank])   # each rank its own item: the ranks' outputs differ
    comps = model.completions_from_text(list(batch.references))
    snap = fsdp.snapshot_tensors(model)
    params = dict(model.named_parameters())
    results["snapshot_is_local"] = all(hasattr(v, "to_local") for k, v in snap.items() if k in params)
    at_snapshot = alm_scores(model, batch, comps)
    for _ in range(2):
        model.sft_loss(batch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    live = alm_scores(model, batch, comps)
    replay = fsdp.call_with(model, snap, lambda: alm_scores(model, batch, comps))
    results.update(snap_changed=float((live - at_snapshot).abs().max()),
                   snap_replay=float((replay - at_snapshot).abs().max()),
                   live_after_replay=float((alm_scores(model, batch, comps) - live).abs().max()))
    # between a live forward and its backward: the backward still sees the live parameters
    model.sft_loss(batch).backward()
    clean = _local({n: p.grad for n, p in model.named_parameters()})
    opt.zero_grad(set_to_none=True)
    loss = model.sft_loss(batch)
    fsdp.call_with(model, snap, lambda: alm_scores(model, batch, comps))
    loss.backward()
    mixed = _local({n: p.grad for n, p in model.named_parameters()})
    opt.zero_grad(set_to_none=True)
    results["grads_between"] = max(float((clean[k] - mixed[k]).abs().max()) for k in clean)
    # a different number of decoding steps on each rank: generate is a gathered method (runs unsharded)
    sampling = SamplingConfig(do_sample=False, max_completion_length=3 + 2 * rank)
    results["generated"] = model.generate(batch, 2, sampling).ids
    # as validation does: one gather around a rank-dependent number of generate calls (each gathered itself)
    with fsdp.unsharded(model):
        results["generated_in_loop"] = [model.generate(batch, 2, sampling).ids for _ in range(1 + rank)]
    results["sharded_after_generate"] = all(hasattr(p, "to_local") for p in model.parameters())
    state = fsdp.full_state_dict(model)
    gathered = fsdp.gather_tensors(snap)
    resharded = fsdp.shard_like(model, fsdp.gather_tensors(snap, all_ranks=True))
    results["shard_like_round_trip"] = all(torch.equal(_local({k: resharded[k]})[k], _local({k: v})[k])
                                           for k, v in snap.items())
    folder = out / "alm"
    with fsdp.full_weights(model):
        if rank == 0:   # what the task's save_model does on rank 0
            from spoofrl.alm import save_alm
            results["full_weights"] = {k: v.clone() for k, v in model.state_dict().items()}
            save_alm(model, folder)
    torch.distributed.barrier()
    # the stage switch's load_weights: a saved folder (tied weights stored once) into the sharded model
    from safetensors.torch import load_file
    fresh = fsdp.shard_model(tiny_alm(), info, forward_methods=("token_logprobs",))
    fsdp.load_full_state_dict(fresh, load_file(str(folder / "model.safetensors")))
    results["reloaded_equal"] = bool(torch.equal(alm_scores(fresh, batch, comps), alm_scores(model, batch, comps)))
    results.update(alm_state=state, alm_snapshot=gathered)


def _scenario_detector(info: DistInfo, results: dict) -> None:
    """A Detector as the FSDP root with entry point forward_features and its frozen front-end replicated, trained
    through TrainForward by its forward and by forward_features on compute_features' output; then scored on a
    rank-dependent number of waves through plain_copy, as validation scores each rank's share."""
    from spoofrl.inference import score_waveforms
    from spoofrl.training.forward import TrainForward, compute_features
    detector = fsdp.shard_model(tiny_detector(), info, forward_methods=("forward_features",),
                                replicate_frozen=True)
    results["frontend_replicated"] = not any(hasattr(p, "to_local") for p in detector.frontend.parameters())
    forward = TrainForward(detector)
    opt = torch.optim.SGD([p for p in detector.parameters() if p.requires_grad], lr=0.5)
    for step in range(2):
        detector_step(forward, detector, opt, step, info.rank, precomputed=step == 1)
    for _ in range(info.rank * 2):   # feature-cache misses differ between ranks: no collective in there
        compute_features(detector, *detector_batch(0)[:2])
    results["detector_state"] = fsdp.full_state_dict(detector)   # replicated and sharded tensors: rank 0 only
    plain = fsdp.plain_copy(detector, build_tiny_detector)
    results["dev_scores"] = score_waveforms(plain, dev_waves(3)[info.rank::WORLD], batch_size=1)


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a collective one rank never joins fails in a minute instead of hanging the test run
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    info = DistInfo(rank, WORLD, rank, torch.device("cpu"))
    results: dict = {}
    try:
        _scenario_training(info, Path(out), results)
        _scenario_no_sync(info, results)
        _scenario_snapshot(info, Path(out), results)
        _scenario_detector(info, results)
    finally:
        torch.save(results, Path(out) / f"rank{rank}.pt")
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fsdp")


@pytest.fixture(scope="module")
def alm_folder(ranks, workdir) -> Path:
    return workdir / "alm"


@pytest.fixture(scope="module")
def ranks(workdir) -> list[dict]:
    out = workdir
    # fork: the children inherit the imported modules (a fresh interpreter re-imports torch, ~10 s on 2 cores)
    mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True, start_method="fork")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _assert_states_close(got: dict, want: dict, **tol) -> None:
    assert got.keys() == want.keys()
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, msg=lambda m, k=k: f"{k}: {m}", **tol)


# Sharded halves vs one process on the whole batch: the same float32 gradients summed in another order. One
# step of tiny_lm forward and back runs through ~290 roundings (chain_ops: 2 layers of 32-wide projections and
# norms, 8-wide heads over 8 positions, the 64-wide MLP, the 64-way log-softmax, a mean over 32 tokens), each
# relative to the step it makes; over the steps a weight drifts by that share of the distance it moved, plus
# its own rounding. A gradient that is not the global batch's mean (one half only, summed over the ranks)
# changes the step by 50% or more. The detector: a 33-tap sinc conv, a mean over 4000 samples, 8 -> 16 -> 2.
LM_STEP_OPS = 2 * chain_ops(32, *((32,) * 8 + (8, 8, 64)) * 2, 32, 32, 64, 32)
DETECTOR_STEP_OPS = 2 * chain_ops(33, 4000, 8, 16, 2, 4)


def _assert_trained_alike(got: dict, want: dict, initial: dict, n_ops: float, noise_gain: float = 1.0) -> None:
    """got == want within float_tol(n_ops) of the distance each tensor moved from `initial` (x noise_gain) plus
    a few roundings of its size."""
    assert got.keys() == want.keys()
    for k, v in want.items():
        moved = float((v - initial[k]).abs().max())
        tol = noise_gain * float_tol(torch.float32, n_ops, moved) + float_tol(torch.float32, 4, float(v.abs().max()))
        torch.testing.assert_close(got[k], v, rtol=0, atol=tol, msg=lambda m, k=k: f"{k}: {m}")


# --- the tests ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_sharded_halves_train_the_full_batch_model(ranks, name):
    """Two ranks, each on its half of every global batch, end with the model one process trains on the whole
    batches (FSDP averages the gradients over ranks), frozen parameters in a sharded block included (SGD run);
    clip_grad_norm's float is the total norm of all shards."""
    single = freeze_first_mlp(tiny_lm()) if name == "sgd" else tiny_lm()
    opt = make_optimizer(name, [p for p in single.parameters() if p.requires_grad])
    norms: list[float] = []
    train_steps(single, opt, range(STEPS), None, norms)
    state = ranks[0][f"{name}_state"]
    initial = tiny_lm().state_dict()
    assert not torch.equal(state["lm_head.weight"], initial["lm_head.weight"])  # it trained
    if name == "sgd":  # the frozen parameters stayed as they were
        assert torch.equal(state["model.layers.0.mlp.up_proj.weight"], initial["model.layers.0.mlp.up_proj.weight"])
    # AdamW divides each gradient by its own size, so a gradient that nearly cancels (the key biases': a
    # constant per query that softmax ignores, up to RoPE) keeps the relative rounding of the terms it sums:
    # up to 10 times that of the others (noise_gain); Adam's steps are lr each, the weights move 3 lr = 0.03
    _assert_trained_alike(state, single.state_dict(), initial, STEPS * LM_STEP_OPS,
                          noise_gain=1.0 if name == "sgd" else 10.0)
    assert ranks[0][f"{name}_norms"] == ranks[1][f"{name}_norms"]       # every rank gets the same total
    # the total gradient norm (~1.7) through the same steps: relative rounding of STEPS x LM_STEP_OPS; one
    # shard's norm alone would be ~30% smaller
    assert ranks[0][f"{name}_norms"] == pytest.approx(norms, rel=float_tol(torch.float32, STEPS * LM_STEP_OPS))
    if name == "sgd":
        assert ranks[1]["sgd_state"] == {}                             # full state dicts: rank 0 only


def test_full_state_round_trip_resumes_bit_for_bit(ranks):
    """full_state_dict -> load_full_state_dict (broadcast from rank 0) into a fresh sharded model gives the same
    outputs, and with the optimizer state (full, by parameter name) the next AdamW step is bit-identical."""
    r0 = ranks[0]
    assert all(r["resumed_logits_equal"] for r in ranks)
    assert [r["saved_optimizer_empty"] for r in ranks] == [False, True]   # gathered on rank 0 only
    assert r0["optim_keys"] == sorted(n for n, _ in tiny_lm().named_parameters())
    assert r0["resumed"].keys() == r0["uninterrupted"].keys()
    for k in r0["uninterrupted"]:
        assert torch.equal(r0["resumed"][k], r0["uninterrupted"][k]), k
        assert not torch.equal(r0["uninterrupted"][k], r0["adamw_state"][k]), k   # the extra step changed it


def test_snapshot_call_with_gives_snapshot_time_outputs(ranks):
    """snapshot_tensors stores local shards; call_with evaluates them after optimizer steps moved the live model,
    gives exactly the snapshot-time log-probs, leaves the live model as it was, and can run between a live
    forward and its backward without changing the gradients."""
    for r in ranks:
        assert r["snapshot_is_local"]
        assert r["snap_changed"] > 1e-3                  # the live model moved away from the snapshot
        assert r["snap_replay"] == 0.0
        assert r["live_after_replay"] == 0.0
        assert r["grads_between"] == 0.0
        assert r["shard_like_round_trip"]
        assert r["sharded_after_generate"]
    # the gathered snapshot is the initial model's trainable weights (and buffers)
    initial = tiny_alm()
    wanted = {n: p for n, p in initial.named_parameters()} | dict(initial.named_buffers())
    _assert_states_close(ranks[0]["alm_snapshot"], {k: v.detach() for k, v in wanted.items()}, rtol=0, atol=0)
    assert ranks[1]["alm_snapshot"] == {}
    # full_weights: rank 0's module held the full tensors, its state dict is the full one, save_alm wrote it
    _assert_states_close(ranks[0]["full_weights"], ranks[0]["alm_state"], rtol=0, atol=0)
    assert all(r["reloaded_equal"] for r in ranks)


def test_unsharded_generation_matches_a_single_process_model(ranks, alm_folder):
    """generate as a gathered method (run inside `unsharded`): each rank decodes its own number of steps (3 and
    5) without a collective per step, also a rank-dependent number of calls inside one outer `unsharded`; the
    completions are the greedy ones of the same weights in one process."""
    from spoofrl.alm import SamplingConfig, load_alm
    model = load_alm(alm_folder, device="cpu")   # the folder save_alm wrote inside full_weights on rank 0
    _assert_states_close(model.state_dict(), ranks[0]["alm_state"], rtol=0, atol=0)
    batch = alm_batch()
    for rank, r in enumerate(ranks):
        sampling = SamplingConfig(do_sample=False, max_completion_length=3 + 2 * rank)
        ids = model.generate(batch.select([rank]), 2, sampling).ids
        assert r["generated"].shape[-1] <= 3 + 2 * rank
        assert torch.equal(r["generated"], ids), rank
        assert len(r["generated_in_loop"]) == 1 + rank
        assert all(torch.equal(g, ids) for g in r["generated_in_loop"]), rank


def test_no_sync_accumulation_equals_one_full_batch_step(ranks):
    """no_sync over the first of two micro-batches (half-weighted losses): no gradient is reduced inside, and the
    one SGD step after the second is the step of one process on the whole batch."""
    for r in ranks:
        assert not any(r["grad_after_no_sync"])
    single = tiny_lm()
    lm_loss(single, global_batch(0)).backward()
    torch.optim.SGD(single.parameters(), lr=0.5).step()
    _assert_trained_alike(ranks[0]["no_sync_state"], single.state_dict(), tiny_lm().state_dict(), LM_STEP_OPS)


def test_sharded_detector_with_entry_points(ranks):
    """A Detector as the FSDP root (frozen front-end replicated), trained through TrainForward once by its forward
    (which calls forward_features inside) and once by forward_features on extract_features' output, equals one
    process on the whole batches; plain_copy scores each rank's share of the dev waves as that model does."""
    from spoofrl.inference import score_waveforms
    from spoofrl.training.forward import TrainForward
    assert all(r["frontend_replicated"] for r in ranks)
    detector = tiny_detector()
    forward = TrainForward(detector)
    opt = torch.optim.SGD([p for p in detector.parameters() if p.requires_grad], lr=0.5)
    for step in range(2):
        detector_step(forward, detector, opt, step, None, precomputed=step == 1)
    _assert_trained_alike(ranks[0]["detector_state"], detector.state_dict(), tiny_detector().state_dict(),
                          2 * DETECTOR_STEP_OPS)
    assert ranks[1]["detector_state"] == {}
    scores = score_waveforms(detector, dev_waves(3), batch_size=1)
    # scores |s| < 0.01 of weights equal to the above (~1e-6) through the detector's forward (~80 roundings of
    # values < 1): 1.2e-5; the three waves' scores differ from each other by 9e-5 or more
    for rank, r in enumerate(ranks):
        assert len(r["dev_scores"]) == len(scores[rank::WORLD])
        assert r["dev_scores"] == pytest.approx(scores[rank::WORLD], rel=0, abs=float_tol(torch.float32, 100))


def test_helpers_do_the_plain_thing_without_sharding():
    """Not distributed: shard_model returns the model unchanged and the helpers fall back to plain torch."""
    model = tiny_lm()
    assert fsdp.shard_model(model, DistInfo()) is model and not fsdp.is_sharded(model)
    snap = fsdp.snapshot_tensors(model)
    before = eval_logits(model)
    opt = make_optimizer("adamw", model.parameters())
    train_steps(model, opt, [0], None)
    assert torch.equal(fsdp.call_with(model, snap, lambda: eval_logits(model)), before)
    state, optim_state = fsdp.full_state_dict(model), fsdp.full_optimizer_state(model, opt)
    other = tiny_lm(seed=1)
    other_opt = make_optimizer("adamw", other.parameters())
    fsdp.load_full_state_dict(other, state)
    fsdp.load_full_optimizer_state(other, other_opt, optim_state)
    assert torch.equal(eval_logits(other), eval_logits(model))
    with fsdp.no_sync(model), fsdp.unsharded(model), fsdp.full_weights(model):
        pass
