"""Experiment config validation, aggregation over seeds, the table, the written reading and the report, from
synthetic score files (no training)."""
from __future__ import annotations

import json
import math
import re
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

# Reading the report back: what a reader sees (tables, captions, figures) must hold the numbers of results.json.
# Also used by test_experiment_e2e.py on the reports of real runs.

def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    import struct
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def png_pixels(data: bytes) -> np.ndarray:
    """[height, width, 3] RGB as uint8."""
    import io

    import matplotlib.image
    return (matplotlib.image.imread(io.BytesIO(data), format="png")[..., :3] * 255 + 0.5).astype(np.uint8)


def pixels_near(rgb: np.ndarray, color, tol: int = 8) -> int:
    """Pixels within `tol` (of 255) of `color` (RGB in 0..1) on every channel."""
    target = np.round(np.asarray(color, dtype=float)[:3] * 255).astype(np.int16)
    return int((np.abs(rgb.reshape(-1, 3).astype(np.int16) - target).max(axis=1) <= tol).sum())


def check_figure(data: bytes, size: tuple[int, int], colors: dict[str, tuple] | None = None) -> None:
    """A real figure: a PNG of exactly `size` pixels (matplotlib at 100 dpi: the panel layout), not one colour,
    partly but not mostly ink, with coloured (not grey: the axes, text and grid) pixels, and each of `colors`
    (what -> RGB in 0..1) drawn on at least 10 pixels."""
    width, height = png_size(data)
    assert abs(width - size[0]) <= 1 and abs(height - size[1]) <= 1, ((width, height), size)
    rgb = png_pixels(data)
    assert rgb.shape[:2] == (height, width)
    packed = rgb.reshape(-1, 3).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    assert len(np.unique(packed)) > 20, "(nearly) a single colour"
    ink = (rgb.min(axis=2) < 242).mean()
    assert 0.01 < ink < 0.9, ink
    for what, color in (colors or {}).items():
        assert pixels_near(rgb, color) >= 10, f"{what}: colour {color} not drawn"
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    assert (spread > 60).sum() >= 10, "nothing in colour: no curve, bar or legend drawn"


def _html_parts(text: str) -> dict:
    """Tables (rows of cell texts, entities decoded), links, images (alt, data) and visible text of report.html."""
    from html.parser import HTMLParser

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tables, self.links, self.images, self.text, self.cell = [], [], [], [], None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "table":
                self.tables.append([])
            elif tag == "tr":
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = []
            elif tag == "a" and self.cell is not None:
                self.links.append(attrs["href"])
            elif tag == "img":
                self.images.append(attrs)

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.tables[-1][-1].append("".join(self.cell).strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)
            self.text.append(data)

    parser = Parser()
    parser.feed(text)
    parser.close()
    return {"tables": parser.tables, "links": parser.links, "images": parser.images,
            "text": " ".join("".join(parser.text).split())}


def _markdown_tables(md: str, detector: str) -> dict[str, tuple[str, list[list[str]]]]:
    """metric title -> (caption, table rows) of `detector`'s section of results.md."""
    lines = md.splitlines()
    start = lines.index(f"## Detector `{detector}`")
    found = {}
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("## "):
            break
        m = re.match(r"\*\*(.+?)\*\*: (.+)$", lines[i])
        if m:
            j = i + 2 if not lines[i + 1].strip() else i + 1
            rows = []
            while j < len(lines) and lines[j].startswith("|"):
                if not re.fullmatch(r"\|(---\|)+", lines[j]):
                    rows.append([c.strip() for c in lines[j].strip().strip("|").split("|")])
                j += 1
            found[m.group(1)] = (m.group(2), rows)
    return found


def _stat(values: list[float], scale: float) -> tuple[float, float | None]:
    return float(np.mean(values)) * scale, float(np.std(values, ddof=1)) * scale if len(values) > 1 else None


def expected_table(results: dict, detector: str, metric: str) -> list[tuple[str, int, list]]:
    """(label, runs, [(mean, std)] per column) of each arm, computed here from the per-run numbers."""
    scale = 100.0 if metric == "eer" else 1.0
    sets, ood = [results["in_domain"]] + results["ood"], results["ood"]
    rows = []
    for info in results["detectors"][detector]["arms"].values():
        runs = info["runs"]
        cols = [_stat([r["sets"][s][metric] for r in runs], scale) for s in sets]
        if ood:  # OOD avg: each run's mean over the OOD sets, then mean / std over the runs
            cols.append(_stat([np.mean([r["sets"][o][metric] for o in ood]) for r in runs], scale))
        rows.append((info["label"], len(runs), cols))
    return rows


def check_shown_table(rows: list[list[str]], results: dict, detector: str, metric: str) -> None:
    """A shown results table (Markdown, HTML or printed): the header, then one row per arm (in order) with its
    label, number of runs and every cell's 'mean ± std' equal to the per-run numbers of results.json."""
    digits = 2 if metric == "eer" else 3
    head = ["arm", "runs", f"{results['in_domain']} (in-domain)"] + results["ood"] + (
        ["OOD avg"] if results["ood"] else [])
    assert rows[0] == head, rows[0]
    expected = expected_table(results, detector, metric)
    assert [r[0] for r in rows[1:]] == [e[0] for e in expected]
    for row, (label, n, cols) in zip(rows[1:], expected):
        assert row[1] == str(n) and len(row) == len(head), (label, row)
        for cell, (mean, std), title in zip(row[2:], cols, head[2:]):
            m = re.fullmatch(r"(-?\d+\.\d+)(?: ± (\d+\.\d+))?", cell)
            assert m, (label, title, cell)
            assert abs(float(m.group(1)) - mean) <= 0.51 * 10 ** -digits, (label, title, cell, mean)
            assert (m.group(2) is None) == (std is None), (label, title, cell)
            if std is not None:
                assert abs(float(m.group(2)) - std) <= 0.51 * 10 ** -digits, (label, title, cell, std)


def check_report(root: Path, distinct_curves: bool = False) -> dict:
    """Open every report file under `root` and check what it shows against results.json; returns results.
    distinct_curves: the arms' DET and training curves differ (else one arm's curve may hide another's, and
    curves of perfect detectors lie outside the DET axes): every arm's colour must then show."""
    import matplotlib

    results = json.loads((root / "results.json").read_text())
    detectors, sets, ood = list(results["detectors"]), results["test_sets"], results["ood"]
    assert sets == [results["in_domain"]] + ood
    # results.json: each arm's summary is the mean / sample std of its runs
    for det in detectors:
        for arm, info in results["detectors"][det]["arms"].items():
            for name in sets:
                values = [r["sets"][name]["eer"] for r in info["runs"]]
                assert info["summary"][name]["eer"]["mean"] == pytest.approx(np.mean(values)), (arm, name)
                assert info["summary"][name]["eer"]["n"] == len(values)
            for run in info["runs"]:
                for name in sets:
                    m = run["sets"][name]
                    assert 0 <= m["eer"] <= 1 and 0 <= m["min_dcf"] and (root / m["scores"]).is_file()
    md = (root / "results.md").read_text()
    page = _html_parts((root / "report.html").read_text())
    assert md.startswith(f"# {results['experiment']}: results")
    for det_index, det in enumerate(detectors):
        shown = _markdown_tables(md, det)
        assert list(shown) == ["EER (%)", "minDCF"]
        for k, (title, metric) in enumerate((("EER (%)", "eer"), ("minDCF", "min_dcf"))):
            cap, rows = shown[title]
            assert "mean ± sample std over seeds" in cap and "lower is better" in cap, cap
            assert (f"OOD avg = mean over the {len(ood)} out-of-domain sets" in cap) == bool(ood), cap
            check_shown_table(rows, results, det, metric)
            assert page["tables"][2 * det_index + k] == rows  # report.html shows the same table ...
            assert f"{title}: {cap}" in page["text"]            # ... under the same caption
    # the reading, in both
    for line in results["reading"]:
        assert f"- {line}" in md.splitlines() and " ".join(line.split()) in page["text"]
    assert results["metric_settings"]["recompute"] in md
    # report.html: the arms, test sets, the per-run table (every seed, its EER linked to its score file)
    text = page["text"]
    assert f"In-domain test set: {results['in_domain']}" in text and "Scores: higher = more bona fide" in text
    assert f"out-of-domain: {', '.join(ood) or 'none'}" in text
    for det_index, det in enumerate(detectors):
        arms = results["detectors"][det]["arms"]
        for arm, info in arms.items():
            assert f"{info['label']} ({arm}):" in text, arm
        runs_table = page["tables"][2 * len(detectors) + det_index]
        assert runs_table[0][:2] == ["arm", "seed"] and runs_table[0][-3:] == ["best step", "best dev EER %",
                                                                                "train s (total)"]
        expected_rows = [(info, run) for info in arms.values() for run in info["runs"]]
        assert len(runs_table) - 1 == len(expected_rows)
        for row, (info, run) in zip(runs_table[1:], expected_rows):
            assert row[:2] == [info["label"], str(run["seed"])], row
            for cell, name in zip(row[2:], sets):
                m = run["sets"][name]
                got = re.fullmatch(r"(\d+\.\d+)(?: \[(\d+\.\d), (\d+\.\d)\])?; (\d+\.\d+)(?: \[.*\])?", cell)
                assert got, cell
                assert abs(float(got.group(1)) - m["eer"] * 100) <= 0.0051, (cell, m["eer"])
                assert abs(float(got.group(4)) - m["min_dcf"]) <= 0.00051, (cell, m["min_dcf"])
                if m.get("eer_ci"):
                    assert abs(float(got.group(2)) - m["eer_ci"][0] * 100) <= 0.051, cell
                    assert abs(float(got.group(3)) - m["eer_ci"][1] * 100) <= 0.051, cell
                assert m["scores"] in page["links"]
            dev = run["training"][-1]["best_dev_eer"] if run["training"] else None
            assert row[-2] == (f"{dev * 100:.2f}" if dev is not None else "–"), row
    # figures: files of the expected layout, embedded in the page byte for byte after their captions
    n_rows = sum(1 for det in detectors for info in results["detectors"][det]["arms"].values() if info["runs"])
    tab10 = matplotlib.colormaps["tab10"]
    first = results["detectors"][detectors[0]]["arms"]
    arm_colors = {info["label"]: tab10(i % 10) for i, info in enumerate(first.values())}
    trained = {label: c for (label, c), info in zip(arm_colors.items(), first.values()) if info["trained"]}
    check_figure((root / "det.png").read_bytes(), (330 * len(sets), 330 * len(detectors)),
                 arm_colors if distinct_curves else None)
    blend = {name: 0.55 * np.array(matplotlib.colors.to_rgb(name)) + 0.45 for name in ("tab:red", "tab:green")}
    check_figure((root / "scores_hist.png").read_bytes(), (420 * (1 + bool(ood)), 220 * n_rows),
                 {"spoof (red)": blend["tab:red"], "bona fide (green)": blend["tab:green"]})
    check_figure((root / "training_curves.png").read_bytes(), (360 * 4, 280 * len(detectors)),
                 trained if distinct_curves else None)
    import base64
    embedded = {img["alt"]: base64.b64decode(img["src"].split(",", 1)[1]) for img in page["images"]}
    assert [img["src"].split(",")[0] for img in page["images"]] == ["data:image/png;base64"] * 3
    for name in ("det.png", "scores_hist.png", "training_curves.png"):
        assert embedded[name] == (root / name).read_bytes(), name
    assert text.index("DET curves on normal-deviate axes") < text.index("Score distributions of bona fide") < \
        text.index("Training curves from each run's metrics.csv") < text.index("Reproducing the numbers")
    return results



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
    # every report file read back: tables = the per-run numbers, captions, seeds, figures
    saved = check_report(layout.root, distinct_curves=True)  # separations differ per arm (SEPARATION)
    assert saved["ood"] == ["oa"] and saved["test_sets"] == ["target", "oa"]
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
    # the OOD average agrees with the per-run numbers
    sft = arms["sft"]
    ood = [r["sets"]["oa"]["eer"] for r in sft["runs"]]
    assert sft["summary"]["ood_avg"]["eer"]["mean"] == pytest.approx(np.mean(ood))
    assert sft["summary"]["ood_avg"]["eer"]["std"] == pytest.approx(np.std(ood, ddof=1))
    assert table_rows(results, DET) == _markdown_tables(layout.results_md.read_text(), DET)["EER (%)"][1]
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
