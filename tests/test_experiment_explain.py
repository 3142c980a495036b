"""The explainable-detection study (configs/experiments/explain-fast.yaml) end to end on a tiny benchmark: the
experiment runner makes the benchmark and the rationales itself, trains the five generation arms (binary SFT,
FT-SFT, RFT from scratch, FT-GRPO and grounded FT-GRPO after FT-SFT), writes score files and per-clip
explanations, reports the explain table, and reruns nothing the second time."""
from __future__ import annotations

import json
import time

import pytest

from spoofrl.config import load_yaml, resolve_preset
from spoofrl.experiment import load_experiment_config, run_experiment
from spoofrl.experiment.results import EXPLAIN_METRICS
from spoofrl.experiment.tables import EXPLAIN_COLUMNS

ARMS = ["binary_sft", "ft_sft", "rft", "ft_grpo", "ft_grpo_grounded"]
TINY_MODEL = ["model.alm.lm_width=32", "model.alm.lm_heads=2", "model.alm.lm_kv_heads=1", "model.alm.lm_ffn=64",
              "model.alm.conv_channels=32", "model.alm.encoder_layers=0", "model.tokenizer.vocab_size=400",
              "objective.max_completion_length=24", "generation.dev_max_items=3", "data.batch_seconds=12",
              "optim.lr=3.0e-3"]


def tiny_config() -> dict:
    """explain-fast.yaml on the v1 tiny benchmark (offline, seconds), 1 seed, a tiny model, 2-4 steps."""
    data = load_yaml(resolve_preset("experiments", "explain-fast"))
    data["data"]["benchmark"] = {"preset": "tiny", "design": "v1", "seed": 0}
    data["data"]["rationales"]["workers"] = 1
    data["finetune"]["overrides"] = TINY_MODEL
    data.update(seeds=1, workers=1)
    data["report"]["bootstrap"] = 20
    for name, arm in data["arms"].items():
        grpo = name in ("rft", "ft_grpo", "ft_grpo_grounded")
        steps = ["schedule.steps=2", "schedule.eval_every=2"] if grpo else ["schedule.steps=4",
                                                                               "schedule.eval_every=4"]
        arm["overrides"] = list(arm.get("overrides") or []) + steps + (
            ["objective.num_generations=2", "objective.micro_batch_size=0"] if grpo else [])
    return data


def test_explain_study_end_to_end_and_cached(tmp_path):
    out = tmp_path / "explain"
    cfg = load_experiment_config(tiny_config())
    assert cfg.is_generation() and not cfg.needs_posttraining()
    results = run_experiment(cfg, out)

    # the data it made itself
    assert (out / "benchmark" / "manifest.csv").is_file()
    assert (out / "data" / "rationales.jsonl").is_file() and (out / "data" / "rationales.reference.json").is_file()
    assert not (out / "alm" / "posttrain").exists()   # no arm uses post-training
    det = results["detectors"]["alm"]
    assert list(det["arms"]) == ARMS and not results["missing_runs"]
    sets = results["test_sets"]
    assert sets == ["target", "attack", "source", "channel", "mix"]
    for arm in ARMS:
        run_dir = out / "alm" / "arms" / arm / "seed0"
        stage = run_dir / "stage1"
        assert (stage / "summary.json").is_file() and (stage / "model.safetensors").is_file()
        trained = load_yaml(stage / "config.yaml")
        assert trained["task"] == "generation"
        rationales = trained["generation"]["rationales"]   # binary SFT: the completion template's answer only
        assert rationales == "" if arm == "binary_sft" else rationales.endswith("rationales.jsonl")
        assert (stage / "evidence_reference.json").is_file() == (arm != "binary_sft")
        for name in sets:
            assert (run_dir / "scores" / f"{name}.tsv").is_file()
            lines = (run_dir / "scores" / f"{name}.explain.jsonl").read_text().splitlines()
            record = json.loads(lines[0])
            assert {"utt", "label", "completion", "answer", "score", "well_formed", "claims", "checked"} <= set(record)
            assert record["checked"] == (arm != "binary_sft")
        run = det["arms"][arm]["runs"][0]
        assert set(run["sets"]["target"]["explain"]) == set(EXPLAIN_METRICS)
        assert "explain" in det["arms"][arm]["summary"]["ood_avg"]
    # FT-GRPO arms started from the FT-SFT model of their seed; RFT and the SFT arms from scratch
    stage_spec = json.loads((out / "alm/arms/ft_grpo/seed0/stage1/experiment_stage.json").read_text())
    assert stage_spec["init"].endswith("arms/ft_sft/seed0/stage1")
    assert json.loads((out / "alm/arms/rft/seed0/stage1/experiment_stage.json").read_text())["init"] is None
    grpo_cfg = load_yaml(out / "alm/arms/ft_grpo_grounded/seed0/stage1/config.yaml")
    assert [r["name"] for r in grpo_cfg["objective"]["rewards"]] == ["answer", "format", "ft_presence", "ft_grounded"]

    report = (out / "results.md").read_text()
    assert "### Explanations" in report and "OOD avg" in report
    for _, title, _, _ in EXPLAIN_COLUMNS:
        assert title in report
    for arm in ARMS:
        assert cfg.arm_label(arm) in report
    assert "after the model's own greedy rationale" in report
    assert "explain" in results["metric_settings"]
    assert (out / "report.html").is_file() and "Explanations" in (out / "report.html").read_text()

    # rerunning does nothing: every stage and score file is cached
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.suffix in (".tsv", ".jsonl", ".safetensors")}
    t0 = time.time()
    again = run_experiment(load_experiment_config(tiny_config()), out)
    assert time.time() - t0 < 20
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["detectors"]["alm"]["arms"]["ft_sft"]["summary"] == det["arms"]["ft_sft"]["summary"]


def test_generation_study_needs_one_detector_name():
    data = tiny_config()
    data["detectors"] = ["alm", "other"]
    with pytest.raises(Exception, match="one detector"):
        load_experiment_config(data)
