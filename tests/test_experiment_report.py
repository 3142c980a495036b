"""Experiment config validation, aggregation over seeds, the table, the written reading and the report, from
synthetic score files (no training)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from spoofrl.cli import main
from spoofrl.errors import ConfigError
from spoofrl.experiment.config import load_experiment_config, parse_pair
from spoofrl.experiment.layout import Layout
from spoofrl.experiment.reading import write_reading
from spoofrl.experiment.report import build_report
from spoofrl.experiment.results import collect_results, mean_std, ood_average, summarize_runs
from spoofrl.experiment.tables import fmt_stat, results_markdown, table_rows
from spoofrl.metrics.scorefile import write_scores

DET = "logmel-linear"


# ------------------------------------------------------------------------------------------ aggregation

def test_mean_std_uses_sample_std_and_skips_missing():
    stat = mean_std([0.10, 0.20, 0.30, None])
    assert stat["n"] == 3
    assert stat["mean"] == pytest.approx(0.20)
    assert stat["std"] == pytest.approx(0.10)  # sample std (n - 1): sqrt((0.01 + 0 + 0.01) / 2)
    single = mean_std([0.25])
    assert single == {"mean": 0.25, "std": None, "n": 1}
    assert mean_std([]) == {"mean": None, "std": None, "n": 0}


def test_ood_average_is_mean_over_ood_sets_only():
    per_set = {"target": {"eer": 0.5}, "a": {"eer": 0.1}, "b": {"eer": 0.3}}
    assert ood_average(per_set, ["a", "b"]) == pytest.approx(0.2)
    assert ood_average(per_set, []) is None
    assert ood_average({"a": {"eer": 0.1}}, ["a", "b"]) is None


def test_summarize_runs_averages_per_seed_ood_means():
    runs = [{"sets": {"t": {"eer": 0.1}, "a": {"eer": 0.2}, "b": {"eer": 0.4}}, "ood_avg": {"eer": 0.3}},
            {"sets": {"t": {"eer": 0.3}, "a": {"eer": 0.2}, "b": {"eer": 0.2}}, "ood_avg": {"eer": 0.2}}]
    summary = summarize_runs(runs, ["t", "a", "b"], ["a", "b"])
    assert summary["t"]["eer"]["mean"] == pytest.approx(0.2)
    assert summary["ood_avg"]["eer"]["mean"] == pytest.approx(0.25)
    assert summary["ood_avg"]["eer"]["std"] == pytest.approx(math.sqrt(0.005))


def test_fmt_stat():
    assert fmt_stat({"mean": 0.1026, "std": 0.005, "n": 3}, 100) == "10.26 ± 0.50"
    assert fmt_stat({"mean": 0.0269, "std": None, "n": 1}, 100) == "2.69"
    assert fmt_stat({"mean": None, "std": None, "n": 0}, 100) == "–"


# ------------------------------------------------------------------------------------------ config

def _cfg(**extra):
    data = {"data": {"manifest": "m.csv", "ood": {"oa": {"subsets": ["ood_attack"]}}},
            "arms": {"posttrained": {"train": False}, "sft": {"overrides": ["objective.name=sft"]},
                     "grpo": {"overrides": ["objective.name=grpo"]}}}
    data.update(extra)
    return data


def test_config_defaults_and_overrides(tmp_path):
    cfg = load_experiment_config(_cfg(), ["seeds=5", "data.ood.oa.subsets=[x, y]"], base=tmp_path)
    assert cfg.seeds == 5 and cfg.seed_list() == [0, 1, 2, 3, 4]
    assert cfg.data.ood["oa"].subsets == ["x", "y"]
    assert cfg.data.manifest == str(tmp_path / "m.csv")  # relative paths resolved
    assert list(cfg.test_sets()) == ["target", "oa"]
    # an untrained arm on a shared post-trained model is one run, not N identical copies
    assert cfg.arm_seeds("posttrained") == [0] and cfg.arm_seeds("sft") == [0, 1, 2, 3, 4]
    per_seed = load_experiment_config(_cfg(posttrain={"per_seed": True}))
    assert per_seed.arm_seeds("posttrained") == [0, 1, 2]


@pytest.mark.parametrize("bad, message", [
    ({"seeds": 0}, "seeds must be at least 1"),
    ({"arms": {}}, "no arms"),
    ({"arms": {"bad name": {}}}, "arm name 'bad name'"),
    ({"arms": {"x": {"train": False, "overrides": ["a=1"]}}}, "arms.x: train is false"),
    ({"arms": {"x": {"train": False, "init": "none"}}}, "untrained random model"),
    ({"arms": {"x": {"init": "pretrained"}}}, "'posttrained', 'none'"),
    ({"arms": {"x": {"overrides": ["no_equals_sign"]}}}, "arms.x: override"),
    ({"report": {"compare": ["grpo versus sft"]}}, "not of the form 'ARM vs ARM'"),
    ({"nonsense": 1}, "unknown option 'nonsense'"),
    ({"detectors": ["a.yaml", "dir/a.yaml"]}, "share the name a"),
    ({"arms": {"x": {"after": "nope"}}}, "arms.x.after: no arm named 'nope'"),
    ({"arms": {"x": {"after": "y"}, "y": {"after": "x"}}}, "circular"),
    ({"arms": {"p": {"train": False}, "x": {"after": "p"}}}, "arm 'p' trains nothing"),
    ({"arms": {"s": {}, "x": {"after": "s", "train": False}}}, "would only score arm s's model again"),
    ({"detectors": ["no-such-model"]}, "detectors: unknown model preset 'no-such-model'"),
    ({"detectors": ["missing/model.yaml"]}, "detectors: .*missing/model.yaml: config file not found"),
    ({"finetune": {"recipe": "no-such-recipe"}}, "finetune.recipe: unknown train preset 'no-such-recipe'"),
    ({"arms": {"x": {"stages": [{"recipe": "nope.yaml"}]}}}, r"arms.x.stages\[0\].recipe: .*nope.yaml"),
])
def test_config_validation_errors(bad, message):
    with pytest.raises(ConfigError, match=message if "\\[" in message or ".*" in message
                       else message.replace("(", r"\(").replace(")", r"\)")):
        load_experiment_config(_cfg(**bad))


def test_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("arms: {}\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_experiment_config(path)


def test_after_arms_wait_for_their_source_and_are_pulled_in_by_selection():
    from spoofrl.experiment.runner import select_arms
    cfg = load_experiment_config(_cfg(arms={"posttrained": {"train": False}, "sft": {}, "grpo": {},
                                            "sft_then_grpo": {"after": "sft"}, "third": {"after": "sft_then_grpo"}}))
    assert cfg.arm_levels() == {"posttrained": 0, "sft": 0, "grpo": 0, "sft_then_grpo": 1, "third": 2}
    assert select_arms(cfg, ["third", "grpo"]) == ["sft", "grpo", "sft_then_grpo", "third"]


def test_parse_pair():
    assert parse_pair("grpo vs sft") == ("grpo", "sft")
    assert parse_pair(" a  vs. b ") == ("a", "b")


BUNDLED = ["demo", "demo-fast", "ablations", "study-xlsr", "study-xlsr-ablations"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_experiment_configs_are_valid(name, tmp_path, monkeypatch):
    """Each bundled config loads from any directory, and every training stage it would run (post-training and
    each arm's stages, for each detector) resolves to a valid train config - the same planning the runner does
    before training anything."""
    from spoofrl.experiment.runner import plan_posttraining, plan_runs
    monkeypatch.chdir(tmp_path)  # detector files beside a config are found from any directory
    cfg = load_experiment_config(name)
    assert cfg.arms and cfg.detectors
    layout = Layout(tmp_path / "out")
    manifests = {"posttrain": tmp_path / "posttrain.csv", "target": tmp_path / "target.csv"}
    posttrain = plan_posttraining(cfg, layout, manifests)
    runs = plan_runs(cfg, layout, manifests, list(cfg.arms))
    assert len(posttrain) == (len(cfg.detectors) if not cfg.posttrain.from_model else 0)
    assert len(runs) == len(cfg.detectors) * sum(len(cfg.arm_seeds(a)) for a in cfg.arms)
    for run in runs:
        for stage in run.stages:
            assert stage.train_config["objective"]["name"] in ("sft", "grpo"), run.key
    by_arm = {run.arm: run for run in runs}
    assert not by_arm["posttrained"].stages and by_arm["sft"].stages[0].train_config["objective"]["name"] == "sft"
    assert by_arm["grpo"].stages[0].train_config["objective"]["name"] == "grpo"


def test_bundled_configs_hold_the_studys_arms_and_settings():
    from spoofrl.config import config_dir
    from spoofrl.experiment.runner import plan_runs
    demo = load_experiment_config("demo")
    assert Path(demo.detectors[0]) == config_dir() / "experiments" / "models" / "lfcc-ffn.yaml"
    assert set(demo.arms) == {"posttrained", "sft", "grpo", "sft_then_grpo", "grpo_noneg"}
    assert demo.arms["sft_then_grpo"].after == "sft" and demo.seeds == 3
    ablations = load_experiment_config("ablations")
    assert {"grpo_beta0", "grpo_beta1", "grpo_exact", "grpo_group", "grpo_noneg"} <= set(ablations.arms)
    study = load_experiment_config("study-xlsr")
    assert set(study.ood_names()) == {"ADD23", "FoR", "ItW"} and study.data.in_domain_name == "DFE24"
    runs = {r.arm: r.stages[0].train_config for r in plan_runs(study, Layout(Path("/tmp/x")),
                                                                {"target": Path("/tmp/t.csv")}, ["sft", "grpo"])}
    grpo, sft = runs["grpo"], runs["sft"]
    # the study's hyper-parameters (arXiv 2603.02914): identical optimiser for SFT and GRPO
    assert grpo["optim"] == sft["optim"]
    assert (grpo["optim"]["lr"], grpo["optim"]["weight_decay"], grpo["optim"]["eps"],
            grpo["optim"]["max_grad_norm"]) == (1e-6, 0.01, 1e-6, 100.0)
    objective = grpo["objective"]
    assert (objective["num_generations"], objective["beta"], objective["epsilon"], objective["kl_estimator"],
            objective["old_policy_refresh_steps"], objective["std_eps"]) == (64, 0.04, 0.2, "k3", 1000, 1e-5)
    assert grpo["data"]["augment"]["rawboost"]["algo"] == 5 and grpo["precision"] == "fp16"


# ------------------------------------------------------------------------------------------ report

SEPARATION = {"posttrained": (0.3, 3.0), "sft": (3.0, 0.6), "grpo": (2.8, 2.4)}


def _fake_outputs(tmp_path: Path, seeds: int = 3):
    """An experiment folder with score files and training logs, as if every run had finished."""
    cfg = load_experiment_config(_cfg(seeds=seeds, report={"bootstrap": 200}), base=tmp_path)
    layout = Layout(tmp_path / "out")
    rng = np.random.default_rng(0)
    for arm in cfg.arms:
        for seed in cfg.arm_seeds(arm):
            for name in cfg.test_sets():
                d = SEPARATION[arm][0 if name == "target" else 1]
                bona, spoof = rng.normal(d / 2, 1, 150), rng.normal(-d / 2, 1, 120)
                utts = [f"{name}/{i}.wav" for i in range(270)]
                write_scores(layout.scores(DET, arm, seed, name), utts, np.r_[bona, spoof],
                             ["bonafide"] * 150 + ["spoof"] * 120, ["-"] * 150 + ["A1"] * 120, ["clean"] * 270)
            if cfg.arms[arm].train:
                stage = layout.stage(DET, arm, seed, 0)
                stage.mkdir(parents=True)
                (stage / "summary.json").write_text(json.dumps({"best_step": 4, "best_dev_eer": 0.2, "steps": 6,
                                                                "seconds": 1.5}))
                (stage / "metrics.csv").write_text(
                    "step,epoch,loss,reward_mean,kl,clip_frac,entropy,lr,dev_eer\n"
                    + "".join(f"{k},0,{1 / k},{0.5 + k / 20},{k / 100},,,0.001,{'0.2' if k % 3 == 0 else ''}\n"
                              for k in range(1, 7)))
    return cfg, layout


@pytest.fixture(scope="module")
def three_seed_report(tmp_path_factory):
    cfg, layout = _fake_outputs(tmp_path_factory.mktemp("report"))
    return cfg, layout, build_report(cfg, layout)


def test_report_files_and_numbers_match_spoofrl_metrics(three_seed_report, capsys):
    cfg, layout, results = three_seed_report
    for path in (layout.results_json, layout.results_md, layout.det_png, layout.hist_png, layout.curves_png,
                 layout.report_html):
        assert path.is_file() and path.stat().st_size > 200, path
    saved = json.loads(layout.results_json.read_text())
    assert saved["missing_runs"] == []
    arms = saved["detectors"][DET]["arms"]
    assert [r["seed"] for r in arms["sft"]["runs"]] == [0, 1, 2]
    assert [r["seed"] for r in arms["posttrained"]["runs"]] == [0]
    settings = saved["metric_settings"]
    # every stored number is what `spoofrl metrics FILE --json --ci` prints for the saved score file
    for arm in ("posttrained", "grpo"):
        run = arms[arm]["runs"][0]
        for name, stored in run["sets"].items():
            argv = settings["recompute"].split()[1:]
            argv[argv.index("FILE")] = str(layout.root / stored["scores"])
            assert main(argv) == 0
            fresh = json.loads(capsys.readouterr().out)
            for key in ("eer", "min_dcf", "act_dcf", "cllr", "n_bonafide", "n_spoof", "eer_ci"):
                assert stored[key] == fresh[key], (arm, name, key)
    # the OOD average and the table agree with the per-run numbers
    sft = arms["sft"]
    ood = [r["sets"]["oa"]["eer"] for r in sft["runs"]]
    assert sft["summary"]["ood_avg"]["eer"]["mean"] == pytest.approx(np.mean(ood))
    assert sft["summary"]["ood_avg"]["eer"]["std"] == pytest.approx(np.std(ood, ddof=1))
    rows = table_rows(results, DET)
    assert rows[0] == ["arm", "runs", "target (in-domain)", "oa", "OOD avg"]
    sft_row = next(r for r in rows if r[0] == "sft")
    assert sft_row[1] == "3" and sft_row[-1] == fmt_stat(sft["summary"]["ood_avg"]["eer"], 100)
    md = layout.results_md.read_text()
    assert sft_row[-1] in md and "spoofrl metrics" in md
    html = layout.report_html.read_text()
    assert html.count("data:image/png;base64,") == 3 and "http://" not in html and "https://" not in html
    assert 'href="logmel-linear/arms/sft/seed0/scores/target.tsv"' in html


def test_reading_reports_direction_and_spread_honestly(three_seed_report):
    results = three_seed_report[2]
    reading = " ".join(results["reading"])
    # GRPO keeps OOD separation (2.4) far better than SFT (0.6) in every seed: a clear, stated difference
    grpo_ood = next(x for x in results["reading"] if x.startswith("OOD average EER: grpo"))
    assert "grpo is" in grpo_ood and "points lower" in grpo_ood and "lower in 3 of 3 paired seeds" in grpo_ood
    assert "larger than the seed spread" in grpo_ood
    # in-domain the two are close (3.0 vs 2.8): must not claim a difference beyond the spread
    grpo_id = next(x for x in results["reading"] if x.startswith("In-domain EER: grpo"))
    assert "within the seed spread" in grpo_id or "larger than the seed spread" in grpo_id
    sft_eers = [r["sets"]["target"]["eer"] for r in results["detectors"][DET]["arms"]["sft"]["runs"]]
    grpo_eers = [r["sets"]["target"]["eer"] for r in results["detectors"][DET]["arms"]["grpo"]["runs"]]
    spread = np.std(sft_eers, ddof=1) + np.std(grpo_eers, ddof=1)
    claimed_larger = "larger than the seed spread" in grpo_id
    assert claimed_larger == (abs(np.mean(grpo_eers) - np.mean(sft_eers)) > spread)
    assert "significance test" in reading


def test_reading_single_seed_draws_no_conclusion(tmp_path):
    from spoofrl.experiment.reading import write_reading
    from spoofrl.experiment.results import collect_results
    cfg, layout = _fake_outputs(tmp_path, seeds=1)
    results = collect_results(cfg, layout)
    results["reading"] = write_reading(results, cfg.report.compare)
    ood = next(x for x in results["reading"] if x.startswith("OOD average EER: grpo"))
    assert "no conclusion" in ood


def test_missing_runs_are_listed_not_invented(tmp_path):
    cfg, layout = _fake_outputs(tmp_path)
    layout.scores(DET, "grpo", 2, "oa").unlink()
    results = collect_results(cfg, layout)
    assert results["missing_runs"] == [f"{DET}/grpo/seed2"]
    assert [r["seed"] for r in results["detectors"][DET]["arms"]["grpo"]["runs"]] == [0, 1]
    assert "grpo/seed2" in results_markdown(results, ["-"])


def test_reading_with_no_comparable_arms():
    results = {"detectors": {DET: {"arms": {}}}, "in_domain": "target", "ood": []}
    assert "No pair" in write_reading(results, ["grpo vs sft"])[0]


def test_min_dcf_interval_uses_the_replicates_of_the_eer_interval(three_seed_report):
    """results.json's min_dcf_ci (which `spoofrl metrics` does not print) is drawn like its eer_ci: the same
    replicates give that command's EER interval and, with the experiment's costs, the minDCF interval."""
    from spoofrl.experiment.results import MetricSettings
    from spoofrl.metrics import bootstrap_cis, bootstrap_eer_ci
    from spoofrl.metrics.scorefile import read_scores
    cfg, layout, results = three_seed_report
    settings = MetricSettings.from_config(cfg)
    costs = {"p_spoof": settings.p_spoof, "c_miss": settings.c_miss, "c_fa": settings.c_fa}
    for arm in ("posttrained", "sft"):
        stored = results["detectors"][DET]["arms"][arm]["runs"][0]["sets"]["target"]
        table = read_scores(layout.root / stored["scores"])
        bona, spoof = table.bonafide_scores(), table.spoof_scores()
        both = bootstrap_cis(bona, spoof, settings.bootstrap, settings.alpha, settings.seed, min_dcf_costs=costs)
        eer_only = bootstrap_eer_ci(bona, spoof, settings.bootstrap, settings.alpha, settings.seed)
        assert list(both["eer"]) == pytest.approx(stored["eer_ci"]) and both["eer"] == eer_only
        assert stored["min_dcf_ci"] == list(both["min_dcf"])
        lo, hi = stored["min_dcf_ci"]
        assert 0.0 <= lo < hi <= 1.0 + 1e-9
    # well separated classes (posttrained in-domain d' = 0.3, sft 3.0) give clearly different intervals
    sep = {a: results["detectors"][DET]["arms"][a]["runs"][0]["sets"]["target"]["min_dcf_ci"]
           for a in ("posttrained", "sft")}
    assert sep["sft"][1] < sep["posttrained"][0]


@pytest.mark.parametrize("base, ablations", [("demo", "ablations"), ("study-xlsr", "study-xlsr-ablations")])
def test_ablation_configs_reuse_the_base_experiments_runs(base, ablations, tmp_path):
    """The ablation configs are meant to run into their base experiment's output folder: the arms they share
    must plan identical stages (same train config, same starting model), or the runner would refuse them."""
    from spoofrl.experiment.runner import plan_posttraining, plan_runs
    layout = Layout(tmp_path / "out")
    manifests = {"posttrain": tmp_path / "posttrain.csv", "target": tmp_path / "target.csv"}
    plans = {}
    for name in (base, ablations):
        cfg = load_experiment_config(name, ["data.manifest=m.csv"] if name in ("demo", "ablations") else None)
        runs = plan_runs(cfg, layout, manifests, ["sft", "grpo", "grpo_noneg"])
        plans[name] = ([(s.folder, s.train_config) for s in plan_posttraining(cfg, layout, manifests)],
                       {(r.key, s.folder): (s.train_config, s.init) for r in runs for s in r.stages})
    assert plans[base] == plans[ablations]
