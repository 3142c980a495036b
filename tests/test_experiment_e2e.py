"""A tiny experiment end to end with the real trainer and real scoring: files written, caching, and every number
of the report recomputable from the saved score files with `spoofrl metrics`. The `spoofrl demo --fast` run is
marked slow."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.cli import main
from spoofrl.data.manifest import Utterance, write_manifest
from spoofrl.experiment.layout import Layout
from spoofrl.experiment.tables import fmt_stat
from test_experiment_report import check_report, check_shown_table

SR = 16000
DET = "logmel-linear"
SUBSETS = {"posttrain": 12, "posttrain_dev": 6, "target_train": 8, "target_dev": 6, "target_eval": 8, "ood_x": 8}
# '[3/5 arm runs] logmel-linear/sft/seed0: trained and scored in 2 s; 2 left' -> ('logmel-linear/sft/seed0',
# 'trained and scored'); a post-training run is keyed by its folder ('logmel-linear/posttrain')
PROGRESS = re.compile(r"\[\d+/\d+ [^\]]+\] (\S+): ((?:trained|scored|cached)(?: and scored)?) in ")


def _wave(rng: np.random.Generator, label: str, subset: str) -> np.ndarray:
    """Bona fide: a voiced-like harmonic tone; spoof: the same with a buzzy noise floor. The target domain is
    reverberant-ish (a low-pass smear), so the domains differ."""
    t = np.arange(int(0.6 * SR)) / SR
    f0 = rng.uniform(100, 220)
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    if label == "spoof":
        x = x + 0.6 * rng.standard_normal(t.size)
    if subset.startswith("target"):
        x = np.convolve(x, np.ones(8) / 8, mode="same")
    return (0.1 * x / np.abs(x).max()).astype(np.float32)


def _write_bench(root: Path, sizes: dict[str, int], seed: int) -> Path:
    """Writes `sizes[subset]` clips per subset (alternating spoof / bona fide) and their manifest under root."""
    rng = np.random.default_rng(seed)
    rows = []
    for subset, n in sizes.items():
        for i in range(n):
            label = "bonafide" if i % 2 else "spoof"
            rel = f"audio/{subset}_{i}.wav"
            (root / rel).parent.mkdir(exist_ok=True)
            sf.write(root / rel, _wave(rng, label, subset), SR)
            rows.append(Utterance(rel, label, "-" if label == "bonafide" else "buzz", "tone", "clean", subset))
    write_manifest(rows, root / "manifest.csv")
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return _write_bench(tmp_path_factory.mktemp("e2e"), SUBSETS, seed=1)


def _config(bench: Path, tmp_path: Path) -> Path:
    """Real recipes, a handful of steps: post-trained only, SFT, GRPO, and SFT->GRPO sharing the SFT run."""
    steps = ["schedule.steps=3", "schedule.eval_every=3", "schedule.log_every=1", "data.crop_seconds=0.5",
             "data.batch_size=4", "data.workers=0", "data.augment.rawboost.algo=0", "objective.num_generations=8"]
    config = {
        "name": "tiny e2e", "detectors": [DET], "seeds": 2, "workers": 1, "device": "cpu",
        "data": {"manifest": str(bench), "in_domain_name": "target", "ood": {"x": {"subsets": ["ood_x"]}}},
        "posttrain": {"overrides": steps},
        "finetune": {"overrides": steps},
        "arms": {"posttrained": {"label": "Post-trained", "train": False},
                 "sft": {"label": "SFT", "overrides": ["objective.name=sft"]},
                 "grpo": {"label": "GRPO", "overrides": ["objective.name=grpo"]},
                 "sft_then_grpo": {"label": "SFT->GRPO", "after": "sft", "overrides": ["objective.name=grpo"]}},
        "report": {"bootstrap": 50},
    }
    path = tmp_path / "tiny.yaml"
    import yaml
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def finished(bench, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    out = tmp / "out"
    argv = ["experiment", str(_config(bench, tmp)), "--out", str(out)]
    assert main(argv) == 0
    return argv, out


def test_tiny_experiment_writes_every_file(finished, capsys):
    _, out = finished
    # the report read back: its tables hold results.json's per-run numbers, its figures are real images
    check_report(out)
    import yaml
    saved_cfg = yaml.safe_load((out / "experiment.yaml").read_text())  # the resolved config of the run
    assert saved_cfg["name"] == "tiny e2e" and saved_cfg["seeds"] == 2 and saved_cfg["detectors"] == [DET]
    assert set(saved_cfg["arms"]) == {"posttrained", "sft", "grpo", "sft_then_grpo"}
    layout = Layout(out)
    assert (out / DET / "posttrain" / "summary.json").is_file()
    for arm in ("sft", "grpo", "sft_then_grpo"):
        for seed in (0, 1):
            assert (layout.stage(DET, arm, seed, 0) / "summary.json").is_file()
    # SFT->GRPO started from the SFT arm's model of the same seed, not from a second SFT run
    spec = json.loads((layout.stage(DET, "sft_then_grpo", 1, 0) / "experiment_stage.json").read_text())
    assert spec["init"] == f"OUT/{DET}/arms/sft/seed1/stage1"  # paths inside the output folder: relative
    results = json.loads((out / "results.json").read_text())
    assert results["missing_runs"] == [] and results["test_sets"] == ["target", "x"]
    # the first invocation trained each run once and scored it (post-training: trained only)
    statuses = dict(m.groups() for m in map(PROGRESS.search, (out / "experiment.log").read_text().splitlines()) if m)
    assert statuses.pop(f"{DET}/posttrain") == "trained" and statuses.pop(f"{DET}/posttrained/seed0") == "scored"
    assert len(statuses) == 6 and set(statuses.values()) == {"trained and scored"}, statuses
    arms = results["detectors"][DET]["arms"]
    assert [r["seed"] for r in arms["grpo"]["runs"]] == [0, 1]
    assert [r["seed"] for r in arms["posttrained"]["runs"]] == [0]
    # its training history (curves, seconds) is the SFT run's stage followed by its own GRPO stage
    chain = arms["sft_then_grpo"]["runs"][1]["training"]
    assert [(t["arm"], t["objective"]) for t in chain] == [("sft", "sft"), ("sft_then_grpo", "grpo")]
    # GRPO runs log rewards and KL; their curves come from the runs' metrics.csv
    grpo_csv = (layout.stage(DET, "grpo", 0, 0) / "metrics.csv").read_text().splitlines()
    assert grpo_csv[0].startswith("step,epoch,loss,reward_mean,kl")
    assert any(line.split(",")[3] for line in grpo_csv[1:])


def test_report_numbers_are_recomputed_by_spoofrl_metrics(finished, capsys):
    _, out = finished
    results = json.loads((out / "results.json").read_text())
    argv = results["metric_settings"]["recompute"].split()[1:]
    checked = 0
    for info in results["detectors"][DET]["arms"].values():
        for run in info["runs"]:
            for name, stored in run["sets"].items():
                score_file = out / stored["scores"]
                table = score_file.read_text().splitlines()
                assert table[0].split("\t")[:3] == ["utt", "score", "label"]
                assert len(table) - 1 == SUBSETS["target_eval" if name == "target" else "ood_x"]
                cmd = list(argv)
                cmd[cmd.index("FILE")] = str(score_file)
                capsys.readouterr()
                assert main(cmd) == 0
                fresh = json.loads(capsys.readouterr().out)
                for key in ("eer", "min_dcf", "act_dcf", "cllr", "n_bonafide", "n_spoof", "eer_ci"):
                    assert stored[key] == fresh[key], (info["label"], run["seed"], name, key)
                checked += 1
    assert checked == (1 + 3 * 2) * 2
    # the Markdown table shows exactly the mean ± std of those per-run numbers
    md = (out / "results.md").read_text()
    for info in results["detectors"][DET]["arms"].values():
        eers = [r["sets"]["target"]["eer"] for r in info["runs"]]
        stat = {"mean": float(np.mean(eers)), "std": float(np.std(eers, ddof=1)) if len(eers) > 1 else None}
        cell = fmt_stat(stat, 100)
        row = next(line for line in md.splitlines() if line.startswith(f"| {info['label']} |"))
        assert re.split(r"\s*\|\s*", row)[3] == cell, (row, cell)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "SFT-&gt;GRPO" in html


def test_rerun_is_cached(finished, capsys):
    argv, out = finished
    log = out / "experiment.log"
    first_run_lines = len(log.read_text().splitlines())
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.tsv")}
    summaries = {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")}
    assert main(["-q"] + argv) == 0  # quiet on the console; the log file still gets the progress lines
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.tsv")} == stamps
    assert {p: p.stat().st_mtime_ns for p in out.rglob("summary.json")} == summaries
    second = log.read_text().splitlines()[first_run_lines:]
    statuses = dict(m.groups() for m in map(PROGRESS.search, second) if m)
    assert set(statuses) == {f"{DET}/posttrain", f"{DET}/posttrained/seed0"} | {
        f"{DET}/{a}/seed{s}" for a in ("sft", "grpo", "sft_then_grpo") for s in (0, 1)}
    assert set(statuses.values()) == {"cached"}, statuses
    assert "INFO" not in capsys.readouterr().err


DEMO_SUBSETS = ["posttrain", "posttrain_dev", "target_train", "target_dev", "target_eval", "ood_attack", "ood_source",
                "ood_channel", "ood_mix"]


DEMO_LABELS = ["Post-trained", "SFT", "GRPO", "SFT->GRPO", "GRPO w/o neg."]


def _check_printed_table(printed: str, results: dict) -> list[list[str]]:
    """The EER table `spoofrl demo` prints: under its title, one row per arm, every cell an EER in % in
    [0, 100] (mean ± std) equal to what results.json's runs give; returns the rows (header first)."""
    lines = printed.splitlines()
    det = next(iter(results["detectors"]))
    start = lines.index(f"{results['experiment']} - detector {det}: EER (%), mean ± std over seeds")
    assert set(lines[start + 2].replace(" ", "")) == {"-"}  # the rule under the header
    rows = [re.split(r"\s{2,}", lines[start + 1].strip())]
    for line in lines[start + 3:]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    check_shown_table(rows, results, det, "eer")
    for row in rows[1:]:
        for cell in row[2:]:
            assert 0 <= float(cell.split(" ± ")[0]) <= 100, (row, cell)
    # the printed reading is the report's
    for line in results["reading"]:
        assert f"- {line}" in lines
    return rows


@pytest.fixture(scope="module")
def demo_bench(tmp_path_factory) -> Path:
    """A tiny stand-in for the `small` benchmark: its subsets and its synth.json stamp, 8 files each."""
    root = tmp_path_factory.mktemp("demo_bench")
    _write_bench(root, {subset: 8 for subset in DEMO_SUBSETS}, seed=2)
    (root / "synth.json").write_text(json.dumps({"design": "real", "version": 2, "preset": "small", "seed": 0}))
    return root


def test_demo_command_on_a_reused_benchmark(demo_bench, tmp_path, capsys):
    """`spoofrl demo --fast` end to end on a tiny prepared benchmark (reused, not generated) with a few steps:
    the command, its five arms, the printed table and the timing file. The real run is the slow test below."""
    steps = ["schedule.steps=2", "schedule.eval_every=2", "data.crop_seconds=0.5", "data.batch_size=4",
             "data.workers=0", "data.augment.rawboost.algo=0", "objective.num_generations=4"]
    out = tmp_path / "demo"
    argv = ["demo", "--fast", "--data", str(demo_bench), "--out", str(out), "--seeds", "1", "--workers", "1",
            "--set", f"posttrain.overrides={steps}", "--set", f"finetune.overrides={steps}",
            "--set", "report.bootstrap=20"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    results = check_report(out)
    assert results["missing_runs"] == [] and results["ood"] == ["attack", "source", "channel", "mix"]
    table = _check_printed_table(printed, results)
    assert [row[:2] for row in table[1:]] == [[label, "1"] for label in DEMO_LABELS]
    assert re.search(r"^wall time \d+\.\d min \(benchmark 0 s, experiment \d+ s, 1 worker\(s\)\)$", printed, re.M)
    timing = json.loads((out / "demo_timing.json").read_text())
    assert timing["data_seconds"] == 0 and timing["variant"] == "demo-fast"
    # the full demo needs the other preset: it refuses this benchmark instead of silently using it
    assert main(["demo", "--data", str(demo_bench), "--out", str(tmp_path / "full")]) == 2
    assert "holds the 'small' benchmark" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_fast_end_to_end(tmp_path, capsys):
    """`spoofrl demo --fast` from nothing: the fetch (cached, or a download of the real recordings), benchmark
    generation, post-training, the five arms, the report. The printed table holds the measured EERs, and the
    detector learned: BENCHMARKS.md records (in-domain / OOD avg EER %, design 2) post-trained 36.7 / 40.0,
    SFT 39.2 / 42.2, GRPO 40.0 / 41.9, SFT->GRPO 40.0 / 45.5, GRPO w/o neg. 39.6 / 40.9 (60 fine-tuning steps on
    120 files do not adapt on real speech); the bounds below leave a margin of 5 points or more."""
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = check_report(out)
    assert results["missing_runs"] == [] and results["ood"] == ["attack", "source", "channel", "mix"]
    det = next(iter(results["detectors"].values()))
    assert list(det["arms"]) == ["posttrained", "sft", "grpo", "sft_then_grpo", "grpo_noneg"]
    table = _check_printed_table(printed, results)
    assert [row[:2] for row in table[1:]] == [[DEMO_LABELS[0], "1"]] + [[label, "2"] for label in DEMO_LABELS[1:]]
    eer = {arm: {name: np.mean([r["sets"][name]["eer"] for r in info["runs"]]) for name in results["test_sets"]}
           for arm, info in det["arms"].items()}
    # post-training learned the task: well below chance (50 %) in-domain and on average out of domain
    assert eer["posttrained"]["target"] < 0.45, eer["posttrained"]
    assert np.mean([eer["posttrained"][o] for o in results["ood"]]) < 0.45, eer["posttrained"]
    # every arm stays well below chance in-domain on average (recorded: 36.7-40.0 %)
    assert all(e["target"] < 0.45 for e in eer.values()), eer
    # every fine-tuned run of every arm trained for the configured steps and is below chance in-domain
    for arm, info in det["arms"].items():
        for run in info["runs"]:
            assert run["sets"]["target"]["eer"] < 0.5, (arm, run["seed"])
            for stage in run["training"]:
                assert stage["steps"] == 60 and 0 <= stage["best_dev_eer"] <= 1, (arm, stage)
    timing = json.loads((out / "demo_timing.json").read_text())
    assert timing["total_seconds"] > timing["experiment_seconds"] > 0 and timing["data_seconds"] > 0
    assert timing["variant"] == "demo-fast"


def test_demo_reuses_only_a_benchmark_of_its_own_design(tmp_path):
    """Same preset and seed but another design: another benchmark, never reused silently."""
    from spoofrl.errors import ConfigError
    from spoofrl.experiment.benchmark import _check_reused
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "synth.json").write_text(json.dumps({"design": "real", "version": 2, "preset": "small", "seed": 0}))
    _check_reused(folder, "small", 0)  # the default demo (design real) reuses it
    with pytest.raises(ConfigError, match="design 'real'.*needs 'small' of design 'v1'"):
        _check_reused(folder, "small", 0, "v1")
    with pytest.raises(ConfigError, match="needs 'demo'"):
        _check_reused(folder, "demo", 0)
    (folder / "synth.json").write_text(json.dumps({"preset": "small", "seed": 0}))
    _check_reused(folder, "small", 0, "v1")  # a v1 folder (no design key) is reused by --design v1
    with pytest.raises(ConfigError, match="design 'v1'.*needs 'small' of design 'real'"):
        _check_reused(folder, "small", 0)
