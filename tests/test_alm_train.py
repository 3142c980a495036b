"""The generation task in the one trainer: the built-in ALM trained by SFT and GRPO through `spoofrl train`'s
code path (load_train_config + train), on toy tasks built from the built-in benchmark and from espeak-ng.

Learning claims are asserted on measured numbers with margins from repeated runs (BENCHMARKS.md, "Audio LLM
training"): the margins below are below the worst seed measured."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import chain_ops, float_tol
from spoofrl.alm import AlmBatch, SamplingConfig, load_alm
from spoofrl.alm.toy import attack_family, attack_family_manifest, spoken_digits_manifest, toy_item
from spoofrl.audio import load_audio
from spoofrl.cli import main
from spoofrl.errors import ConfigError
from spoofrl.training.config import load_train_config
from spoofrl.training.trainer import train

SMALL_ALM = {"alm": {"lm_layers": 2, "lm_width": 64, "lm_heads": 2, "lm_kv_heads": 1, "lm_ffn": 128,
                     "conv_channels": 64, "encoder_layers": 1, "encoder_heads": 2, "encoder_ffn": 128}}
FAMILY_PROMPT = "<audio>\nWhich attack family made this clip?"


@pytest.fixture(scope="module")
def families(tmp_path_factory) -> Path:
    """'Name the attack family': the tiny benchmark (design v1, no download) cut into training and held-out
    time segments of every file."""
    root = tmp_path_factory.mktemp("family")
    assert main(["data", "synth", "--design", "v1", "--out", str(root / "tiny"), "--preset", "tiny", "--seed", "5",
                 "--workers", "2"]) == 0
    return attack_family_manifest(root / "tiny" / "manifest.csv", root / "family")


def family_config(manifest: Path, objective: dict, steps: int, seed: int = 0, **extra) -> dict:
    return {"task": "generation", "seed": seed, "model": SMALL_ALM,
            "data": {"manifest": str(manifest), "train_subsets": ["train"], "dev_subsets": ["heldout"],
                     "crop_seconds": 1.0, "batch_size": 8},
            "generation": {"prompt": FAMILY_PROMPT, "completion": "{family}", "metric": "exact_match"},
            "objective": {"max_completion_length": 6, **objective},
            "schedule": {"steps": steps, "eval_every": steps}, **extra}


def heldout_rows(manifest: Path) -> list[dict]:
    return [r for r in csv.DictReader(manifest.open()) if r["subset"] == "heldout"]


def heldout_batch(manifest: Path) -> tuple[AlmBatch, list[str]]:
    rows = heldout_rows(manifest)
    waves = [load_audio(manifest.parent / r["path"], 16000) for r in rows]
    return AlmBatch.from_waves(waves, FAMILY_PROMPT), [r["family"] for r in rows]


def heldout_accuracy(folder: Path, manifest: Path, num: int, sampling: SamplingConfig) -> float:
    """Share of the held-out completions (num per clip) that name the right family."""
    model = load_alm(folder, device="cpu")
    batch, truth = heldout_batch(manifest)
    texts = model.generate(batch, num, sampling, generator=torch.Generator().manual_seed(123)).text
    return float(np.mean([[t.strip() == want for t in group] for group, want in zip(texts, truth)]))


def test_attack_family_names():
    assert [attack_family(a) for a in ("-", "tts-flite-cg+upsampler_x2", "codec2", "upsampler_x4", "griffinlim")] \
        == ["none", "tts", "codec", "upsampler", "vocoder"]


def test_sft_names_the_attack_family_of_unheard_segments(families, tmp_path):
    """Measured (seeds 0, 1, 2; 600 steps): held-out exact match 0.69, 0.56, 0.50 of greedy answers; the
    majority family is 12 of 36 (0.33), chance over the four families present 0.25."""
    cfg = load_train_config(family_config(families, {"name": "sft"}, 600, optim={"lr": 2e-3}))
    run = train(cfg, tmp_path / "sft")
    rows = heldout_rows(families)
    majority = max(np.mean([r["family"] == f for r in rows]) for f in {r["family"] for r in rows})
    greedy = SamplingConfig(do_sample=False, max_completion_length=6)
    accuracy = heldout_accuracy(run, families, 1, greedy)
    assert accuracy >= majority + 0.10, (accuracy, majority)
    summary = json.loads((run / "summary.json").read_text())
    # the kept model is the best validated one: shares k / 36 in float64 (rounding ~1e-16 < 1e-9 << 1 / 36)
    assert summary["best_dev_error"] <= 1 - accuracy + 1e-9


def test_grpo_from_a_weak_sft_model_raises_the_heldout_reward(families, tmp_path):
    """Measured (seeds 0-3; SFT 150 steps, then GRPO 100 steps, G = 8, answer reward on `family`): held-out
    mean reward of sampled answers 0.28 -> 0.52, 0.26 -> 0.35, 0.30 -> 0.46, 0.35 -> 0.50 (+0.08 at worst)."""
    sft = train(load_train_config(family_config(families, {"name": "sft"}, 150, optim={"lr": 2e-3})), tmp_path / "sft")
    grpo_cfg = family_config(families, {"name": "grpo", "num_generations": 8, "beta": 0.0, "scale_rewards": "group",
                                        "rewards": [{"name": "answer", "options": {"target_column": "family"}}]},
                             100, optim={"lr": 1e-3})
    grpo_cfg.pop("model")
    grpo = train(load_train_config(grpo_cfg), tmp_path / "grpo", init=sft)
    sampled = SamplingConfig(temperature=1.0, max_completion_length=6)
    before = heldout_accuracy(sft, families, 8, sampled)
    after = heldout_accuracy(grpo, families, 8, sampled)
    assert after >= before + 0.05, (before, after)
    metrics = list(csv.DictReader((grpo / "metrics.csv").open()))
    assert "dev_error" in metrics[0] and "dev_eer" not in metrics[0]
    assert float(metrics[-1]["reward_mean"]) > float(metrics[0]["reward_mean"])


# --- a small manifest for mechanics -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def low_high(tmp_path_factory) -> Path:
    return write_low_high(tmp_path_factory.mktemp("lowhigh"))


def write_low_high(root: Path) -> Path:
    """Low tones (labelled bonafide) and high noise (spoof): 24 training and 8 dev files."""
    (root / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["path,label,attack,source,condition,subset"]
    for split, n in (("train", 24), ("dev", 8)):
        for i in range(n):
            kind = ("low", "high")[i % 2]
            path = f"wav/{split}_{i}.wav"
            sf.write(root / path, toy_item(rng, kind)["wave"], 16000)
            lines.append(f"{path},{'bonafide' if kind == 'low' else 'spoof'},{'-' if kind == 'low' else 'hp'},"
                         f"toy,-,{split}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def low_high_config(manifest: Path, steps: int, **sections) -> dict:
    cfg = {"task": "generation", "model": {"alm": {**SMALL_ALM["alm"], "encoder_layers": 0}},
           "data": {"manifest": str(manifest), "crop_seconds": 0.5, "batch_size": 4},
           "generation": {"prompt": "<audio> low or high?", "metric": "answer"},
           "objective": {"max_completion_length": 8},
           "optim": {"lr": 3e-3}, "schedule": {"steps": steps, "eval_every": 4, "log_every": 2}}
    for key, value in sections.items():
        merge = isinstance(value, dict) and key != "model"    # a model section replaces the default one
        cfg[key] = {**cfg.get(key, {}), **value} if merge else value
    return cfg


STAGED = {"stages": [{"objective": "sft", "steps": 6},
                     {"objective": "grpo", "options": {"num_generations": 4, "num_iterations": 2,
                                                       "micro_batch_size": 3, "beta": 0.04}}]}


def test_staged_generation_run_resumes_bit_identically(low_high, tmp_path):
    cfg = lambda: load_train_config(low_high_config(low_high, 12, **STAGED))  # noqa: E731
    whole = train(cfg(), tmp_path / "whole")
    part = train(cfg(), tmp_path / "part", stop_after=8)      # inside the GRPO stage
    assert not (part / "summary.json").exists()
    train(cfg(), part, resume=True)
    a = load_alm(whole, device="cpu").state_dict()
    b = load_alm(part, device="cpu").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (whole / "metrics.csv").read_text() == (part / "metrics.csv").read_text()
    assert (whole / "stage1" / "alm.json").is_file() and (whole / "tokenizer" / "tokenizer.json").is_file()
    saved = load_train_config(str(whole / "config.yaml"))
    assert saved.model["alm"]["vocab_size"] > 0 and saved.stages[1].options["num_iterations"] == 2


def test_generation_model_folder_loads_and_answers(low_high, tmp_path):
    run = train(load_train_config(low_high_config(low_high, 4)), tmp_path / "run")
    model = load_alm(run, device="cpu")
    wave = sf.read(low_high.parent / "wav" / "dev_0.wav", dtype="float32")[0]
    comps = model.generate(AlmBatch.from_waves([wave], "<audio> low or high?"), 2,
                           SamplingConfig(max_completion_length=8, seed=0))
    assert comps.ids.shape[:2] == (1, 2) and len(comps.text[0]) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric"] == "answer" and "best_dev_error" in summary


def test_generative_sft_loss_is_the_models_sft_loss(low_high, tmp_path):
    from spoofrl.training.objectives.generative_sft import GenerativeSFT
    from spoofrl.training.trainer import Trainer
    trainer = Trainer(load_train_config(low_high_config(low_high, 2)), tmp_path / "t")
    trainer.dist = __import__("spoofrl.training.distributed", fromlist=["setup"]).setup("cpu")
    trainer.device = trainer.dist.device
    trainer.out.mkdir()
    trainer._build_model(None)
    trainer._build_data()
    task = trainer.task
    batch = next(task.batches(0, 1))[3]
    objective = GenerativeSFT(trainer.cfg.objective)
    access = task.access(objective, None, None)
    alm_batch, weights = task.step_inputs(batch, access, objective)
    loss, stats = objective(alm_batch, access, weights, None)
    assert alm_batch.references == [f"<answer>{'bonafide' if t == 1 else 'spoof'}</answer>"
                                    for t in batch.targets.tolist()]
    # the same log-probs summed in another order (per item, then over items, vs all at once): float32 sums of
    # <= 100 terms of |log-prob| < 10, as a mean; per-sequence instead of per-token weighting would move it O(0.1)
    torch.testing.assert_close(loss, task.model.sft_loss(alm_batch), rtol=0,
                               atol=float_tol(torch.float32, chain_ops(100, 100), 10))     # 2.4e-5
    assert 0 < float(stats["p_token"]) < 1


@pytest.mark.parametrize("mixed", [False, True])
def test_speech_to_text_grpo_on_bleu(tmp_path, mixed):
    """Speech-to-text of espeak-ng digit strings through the same keys: SFT, then GRPO on the BLEU reward
    (arXiv 2509.16990), once with mixed-policy GRPO (the transcript as the off-policy group member)."""
    manifest = spoken_digits_manifest(tmp_path / "digits", train=24, heldout=8, seed=1)
    cfg = {"task": "generation", "model": {"alm": {**SMALL_ALM["alm"], "encoder_layers": 0},
                                           "tokenizer": {"vocab_size": 300}},
           "data": {"manifest": str(manifest), "train_subsets": ["train"], "dev_subsets": ["heldout"],
                    "crop_seconds": 0, "batch_size": 4, "batching": "dynamic", "batch_seconds": 8},
           "generation": {"prompt": "<audio>\nTranscribe the digits.", "completion": "{transcript}",
                          "metric": "bleu"},
           "objective": {"max_completion_length": 12, "num_generations": 4, "beta": 0.0, "mixed_policy": mixed,
                         "rewards": [{"name": "bleu"}, {"name": "chrf", "weight": 0.5}]},
           "stages": [{"objective": "sft", "steps": 20}, {"objective": "grpo"}],
           "optim": {"lr": 3e-3}, "schedule": {"steps": 26, "eval_every": 13, "log_every": 2}}
    run = train(load_train_config(cfg), tmp_path / "run")
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    grpo_rewards = [float(r["reward_mean"]) for r in rows if r["reward_mean"] and int(r["step"]) > 20]
    assert grpo_rewards and all(0.0 <= r <= 1.5 for r in grpo_rewards)
    if mixed:  # every group holds the transcript itself, scored BLEU 1 and chrF 1 (total 1.5 of 1.5)
        # a float32 mean of 4 rewards <= 1.5 (eps 1.2e-7 x 4 x 1.5 = 7e-7) written with 6 digits (2e-7): 1e-6
        assert min(grpo_rewards) >= 1.5 / 4 - 1e-6
    dev = [float(r["dev_error"]) for r in rows if r["dev_error"]]
    assert len(dev) == 3 and all(0.0 <= d <= 1.0 for d in dev)


# --- config errors -----------------------------------------------------------------------------------------
def test_generation_config_errors(low_high, tmp_path):
    with pytest.raises(ConfigError, match="model: unknown keys \\['preset'\\]"):
        load_train_config(low_high_config(low_high, 2, model={"preset": "logmel-linear"}))
    with pytest.raises(ConfigError, match="model.alm.lm_layers"):
        load_train_config(low_high_config(low_high, 2, model={"alm": {"lm_layers": 0}}))
    with pytest.raises(ConfigError, match="task"):
        load_train_config({"task": "translation"})
    bad_template = load_train_config(low_high_config(low_high, 2, generation={"completion": "{transcript}"}))
    with pytest.raises(ConfigError, match=r"manifest.csv \(row wav/train_0.wav\): generation.completion uses "
                                          r"\{transcript\}"):
        train(bad_template, tmp_path / "a")
    exact = load_train_config(low_high_config(low_high, 2, objective={"name": "grpo", "estimator": "exact"}))
    with pytest.raises(ConfigError, match="estimator"):
        train(exact, tmp_path / "b")


def test_detection_default_model_section_is_unchanged():
    cfg = load_train_config({"data": {"manifest": "x.csv"}})
    assert cfg.task == "detection" and cfg.model["preset"] == "logmel-linear"


def test_hugging_face_audio_llm_with_lora_in_the_trainer(low_high, tmp_path):
    """model.hf: a (tiny, random) Qwen2-Audio from a local folder with LoRA adapters, SFT then GRPO in the one
    loop; the run folder is its adapter folder (loads back onto the base), and --resume is bit-identical."""
    from spoofrl.alm.hf import load_hf_alm
    from spoofrl.alm.hf.tiny import build_qwen2_audio
    base = tmp_path / "qwen2-audio"
    build_qwen2_audio(base)
    cfg = lambda: load_train_config(low_high_config(  # noqa: E731
        low_high, 5, model={"hf": {"path": str(base), "lora": {"r": 4, "alpha": 8}}},
        stages=[{"objective": "sft", "steps": 2},
                {"objective": "grpo", "options": {"num_generations": 3, "micro_batch_size": 2, "beta": 0.04}}],
        optim={"lr": 1e-2}))
    whole = train(cfg(), tmp_path / "whole")
    part = train(cfg(), tmp_path / "part", stop_after=3)
    train(cfg(), part, resume=True)
    assert (whole / "adapter_config.json").is_file() and (whole / "stage1" / "adapter_config.json").is_file()
    trained = load_hf_alm(whole, device="cpu")
    again = load_hf_alm(part, device="cpu")
    plain = load_hf_alm(base, device="cpu")
    wave = sf.read(low_high.parent / "wav" / "dev_1.wav", dtype="float32")[0]
    batch = AlmBatch.from_waves([wave], "<audio> low or high?")
    targets = trained.completions_from_text(["<answer>spoof</answer>"])
    logp = trained.token_logprobs(batch, targets, grad=False)[0]
    assert torch.equal(logp, again.token_logprobs(batch, targets, grad=False)[0])
    assert not torch.allclose(logp, plain.token_logprobs(batch, targets, grad=False)[0])
    saved = load_train_config(str(whole / "config.yaml"))
    assert saved.model["hf"]["lora"]["r"] == 4 and saved.model["hf"]["lora"]["target_modules"]
    with pytest.raises(ConfigError, match="model.hf.path"):
        load_train_config(low_high_config(low_high, 2, model={"hf": {}}))


def test_hugging_face_audio_llm_without_lora_starts_a_stage_from_its_best(low_high, tmp_path):
    """model.hf without LoRA (every weight trains): a stage folder is a transformers folder, whose file names are
    not the module's; the next stage starts from it (loaded through the backend) and the run folder loads."""
    from spoofrl.alm.hf import load_hf_alm
    from spoofrl.alm.hf.tiny import build_qwen2_audio
    from safetensors.torch import load_file

    from spoofrl.training.tasks.generation import GenerationTask
    base = tmp_path / "qwen2-audio"
    build_qwen2_audio(base)
    cfg = load_train_config(low_high_config(
        low_high, 3, model={"hf": {"path": str(base)}}, optim={"lr": 1e-3},
        stages=[{"objective": "sft", "steps": 2}, {"objective": "sft", "start": "best"}],
        schedule={"steps": 3, "eval_every": 1, "eval_at_start": True}))
    run = train(cfg, tmp_path / "run")
    stage = tmp_path / "run" / "stage1"
    rows = (run / "metrics.csv").read_text().splitlines()[1:4]     # steps 0, 1, 2 of the first stage
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2"] and len({r.split(",")[-1] for r in rows}) == 1
    # no step beat the untrained model (a random tiny model never writes an <answer>): the stage's best is its
    # start, and the second stage began from it, not from the trained weights of step 2
    plain = load_hf_alm(base, device="cpu").state_dict()
    best = load_hf_alm(stage, device="cpu").state_dict()
    start = load_file(str(stage / "sft_start.safetensors"))
    assert all(torch.equal(start[k], best[k]) and torch.equal(best[k], plain[k]) for k in start)
    trained = load_file(str(run / "last" / "model.safetensors"))   # step 3's weights: they did train
    assert any(not torch.equal(plain[k], trained[k]) for k in trained)
    task = GenerationTask.__new__(GenerationTask)
    assert task.has_model(stage) and not task.has_model(tmp_path)


def test_rationale_sft_then_grounded_grpo_and_explained_clips(families, tmp_path):
    """The explainable-detection recipe end to end on tiny data: `spoofrl data rationales` writes the SFT targets
    and evidence, SFT learns the FT format from them, GRPO with ft_grounded checks the sampled rationales'
    claims against each clip's evidence, and the run folder carries the reference profile its claims are
    checked with (spoofrl.detect.explanations)."""
    from spoofrl.evidence import ReferenceProfile, evidence
    from spoofrl.detect.explanations import explain_waves, summarise
    manifest = families.parent.parent / "tiny" / "manifest.csv"
    rationales = tmp_path / "rationales.jsonl"
    assert main(["data", "rationales", "--manifest", str(manifest), "--out", str(rationales)]) == 0
    base = {"task": "generation", "model": {"alm": {**SMALL_ALM["alm"], "encoder_layers": 0},
                                            "tokenizer": {"vocab_size": 600}},
            "data": {"manifest": str(manifest), "train_subsets": ["posttrain", "target_train"],
                     "dev_subsets": ["posttrain_dev"], "crop_seconds": 0, "batching": "dynamic",
                     "batch_seconds": 12},
            "generation": {"rationales": str(rationales), "metric": "answer"},
            "objective": {"max_completion_length": 96}, "optim": {"lr": 3e-3}}
    sft = train(load_train_config({**base, "objective": {**base["objective"], "name": "sft"},
                                   "schedule": {"steps": 12, "eval_every": 12}}), tmp_path / "sft")
    assert (sft / "evidence_reference.json").is_file()
    grpo_cfg = {**base, "objective": {**base["objective"], "name": "grpo", "num_generations": 3, "beta": 0.0,
                                      "rewards": [{"name": "answer"}, {"name": "ft_presence", "weight": 0.1},
                                                  {"name": "ft_grounded", "weight": 0.1}]},
                "schedule": {"steps": 2, "eval_every": 2}}
    grpo_cfg.pop("model")
    grpo = train(load_train_config(grpo_cfg), tmp_path / "grpo", init=sft)
    model = load_alm(grpo, device="cpu")
    profile = ReferenceProfile.load(grpo / "evidence_reference.json")
    rows = [r for r in csv.DictReader(manifest.open()) if r["subset"] == "ood_attack"]
    waves = [load_audio(manifest.parent / r["path"], 16000) for r in rows]
    explained = explain_waves(model, waves, cfg_prompt(grpo), max_completion_length=96,
                              evidence=[evidence(w, 16000, profile) for w in waves])
    summary = summarise(explained, [r["label"] for r in rows])
    assert summary["clips"] == len(rows) and all(e.checked for e in explained)
    assert all(np.isfinite(e.score) for e in explained)
    with pytest.raises(ConfigError, match="whole clips"):
        train(load_train_config({**base, "data": {**base["data"], "crop_seconds": 1.0, "batching": "fixed"},
                                 "schedule": {"steps": 1}}), tmp_path / "bad")


def cfg_prompt(run: Path) -> str:
    return load_train_config(str(run / "config.yaml")).generation.prompt
