"""Metrics of every (detector, arm, seed, test set) from the saved score files, and their aggregation.

Every number comes from a score file through `spoofrl.metrics.summary.summarize`, the function behind `spoofrl
metrics FILE --json --ci`, with the same settings; results.json records the command that recomputes each one.
The minDCF's bootstrap interval (`min_dcf_ci`), which that command does not print, comes from the same
replicates as its EER interval (`spoofrl.metrics.bootstrap_cis`). Aggregation over seeds: mean and sample standard deviation (n - 1 in the denominator; none for
a single run). The OOD average of a run is the mean of its OOD test sets' values; the table's OOD average is the
mean ± std over seeds of those per-run averages.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable


from spoofrl.errors import SpoofrlError
from spoofrl.experiment.config import ExperimentConfig, detector_name
from spoofrl.experiment.layout import Layout
from spoofrl.experiment.models import final_model, model_identity, recorded_score_model
from spoofrl.runfiles import SCORES_MODEL, SUMMARY

LOG = logging.getLogger(__name__)

# Metrics aggregated over seeds (the others stay per run).
AGGREGATED = ("eer", "min_dcf", "act_dcf", "cllr")
OOD_AVG = "ood_avg"


@dataclass(frozen=True)
class MetricSettings:
    bootstrap: int = 1000
    alpha: float = 0.05
    seed: int = 0
    p_spoof: float = 0.05
    c_miss: float = 1.0
    c_fa: float = 10.0

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "MetricSettings":
        from spoofrl.metrics import official
        return cls(cfg.report.bootstrap, cfg.report.alpha, cfg.report.bootstrap_seed,
                   official.P_SPOOF, official.C_MISS, official.C_FA)

    def command(self, score_file: str = "FILE") -> str:
        """The `spoofrl metrics` command that recomputes a score file's numbers."""
        return (f"spoofrl metrics {score_file} --json --ci --n-boot {self.bootstrap} --alpha {self.alpha:g} "
                f"--seed {self.seed} --p-spoof {self.p_spoof:g} --c-miss {self.c_miss:g} --c-fa {self.c_fa:g}")


# ------------------------------------------------------------------------------------------ one score file

CACHE_VERSION = 2  # bump when the cached metrics gain or change keys


def _fingerprint(path: Path, settings: MetricSettings) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "settings": asdict(settings),
            "version": CACHE_VERSION}


def score_file_metrics(path: Path, settings: MetricSettings) -> dict:
    """`spoofrl metrics --json --ci` of one score file, cached beside it (keyed by size, mtime and settings)."""
    from spoofrl.metrics.scorefile import read_scores
    from spoofrl.metrics.summary import summarize
    cache = path.with_suffix(".metrics.json")
    fingerprint = _fingerprint(path, settings)
    if cache.is_file():
        try:
            stored = json.loads(cache.read_text())
            if stored.get("fingerprint") == fingerprint:
                return stored["metrics"]
        except (json.JSONDecodeError, KeyError):
            pass  # a damaged cache is recomputed
    table = read_scores(path)
    metrics = summarize(table, ci=True, n_boot=settings.bootstrap, alpha=settings.alpha, seed=settings.seed,
                        p_spoof=settings.p_spoof, c_miss=settings.c_miss, c_fa=settings.c_fa, min_dcf_ci=True)
    tmp = cache.with_name(cache.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "metrics": metrics}, indent=1))
    tmp.replace(cache)
    return metrics


# ------------------------------------------------------------------------------------------ aggregation

def mean_std(values: Iterable[float | None]) -> dict:
    """{'mean', 'std', 'n'} over the non-missing values; std is the sample std (None when n < 2)."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(vals)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def ood_average(per_set: dict[str, dict], ood_names: list[str], metric: str = "eer") -> float | None:
    """Mean of `metric` over the OOD test sets of one run (None without OOD sets or with a missing value)."""
    if not ood_names:
        return None
    values = [per_set.get(name, {}).get(metric) for name in ood_names]
    if any(v is None for v in values):
        return None
    return sum(values) / len(values)


# Explanation metrics of generation runs (spoofrl.detect.explanations.summarise of the explanations file; the EER
# stays the score file's), aggregated over seeds as the EER.
EXPLAIN_METRICS = ("accuracy", "format_rate", "answer_rate", "grounding_precision", "hallucination_rate",
                   "unverifiable_rate", "claims_per_clip", "rationale_tokens", "truncated_rate")


def explain_file_metrics(path: Path) -> dict:
    """`summarise` of a generation run's per-clip explanations file (labels from its lines)."""
    from spoofrl.detect.explanations import Explained, summarise
    fields = set(Explained.__dataclass_fields__)
    items, labels = [], []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                labels.append(record["label"])
                items.append(Explained(**{k: v for k, v in record.items() if k in fields}))
    summary = summarise(items, labels)
    return {m: summary.get(m) for m in EXPLAIN_METRICS}


def summarize_runs(runs: list[dict], test_names: list[str], ood_names: list[str]) -> dict:
    """Per test set (and 'ood_avg'): {metric: mean_std over the runs} (and 'explain': {metric: mean_std} for
    generation runs)."""
    summary: dict[str, dict] = {}
    explained = bool(runs) and all("explain" in r["sets"][n] for r in runs for n in test_names)
    for name in test_names:
        summary[name] = {m: mean_std(r["sets"][name].get(m) for r in runs) for m in AGGREGATED}
        if explained:
            summary[name]["explain"] = {m: mean_std(r["sets"][name]["explain"].get(m) for r in runs)
                                        for m in EXPLAIN_METRICS}
    if ood_names:
        summary[OOD_AVG] = {m: mean_std(r[OOD_AVG].get(m) for r in runs) for m in AGGREGATED}
        if explained:
            summary[OOD_AVG]["explain"] = {m: mean_std(r[OOD_AVG]["explain"].get(m) for r in runs)
                                           for m in EXPLAIN_METRICS}
    return summary


# ------------------------------------------------------------------------------------------ collection

EXPLAIN_NOTE = ("generation runs: the score is log p(<answer>bonafide</answer>) - log p(<answer>spoof</answer>), "
                "each teacher-forced after the model's own greedy rationale (spoofrl.detect.explanations); accuracy, "
                "format_rate (well-formed FT structure), grounding_precision (true / all claims), "
                "hallucination_rate (false / all claims), unverifiable_rate, claims_per_clip and "
                "rationale_tokens (completion tokens, EOS included) come from the greedy completions in "
                "<test set>.explain.jsonl (spoofrl.detect.explanations.summarise); claims are checked against each "
                "clip's evidence measured with the run's evidence_reference.json (none: not checked)")

def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SpoofrlError(f"{path}: not valid JSON ({err})") from None


def training_summary(layout: Layout, cfg: ExperimentConfig, detector: str, arm: str, seed: int) -> list[dict]:
    """summary.json of each finished training stage of a run (with its folder, relative to the output), in
    training order: an arm that starts from another arm's model (`after`) lists that arm's stages first,
    marked with 'arm', so its curves show the whole path from the post-trained model."""
    chain = [arm]
    while cfg.arms[chain[0]].after:
        chain.insert(0, cfg.arms[chain[0]].after)
    stages = []
    for name in chain:
        for i, _ in enumerate(cfg.arms[name].stage_list()):
            folder = layout.stage(detector, name, seed, i)
            summary = _read_json(folder / SUMMARY)
            if summary is not None:
                stages.append({"run": layout.relative(folder), "arm": name, **summary})
    return stages


def _scores_are_current(layout: Layout, cfg: ExperimentConfig, preset: str, arm: str, seed: int) -> bool:
    """False when the run's score files were written by a model that has been retrained since (and not
    rescored yet, e.g. killed in between); a folder without the record (older outputs) is trusted."""
    folder = layout.run(detector_name(preset), arm, seed) / "scores"
    if not (folder / SCORES_MODEL).is_file():
        return True
    return recorded_score_model(folder) == model_identity(final_model(cfg, layout, preset, arm, seed))


def collect_run(layout: Layout, cfg: ExperimentConfig, settings: MetricSettings, preset: str, arm: str,
                seed: int) -> dict | None:
    """Metrics of one arm run on every test set, or None while any of its score files is missing or stale."""
    detector = detector_name(preset)
    test_names = list(cfg.test_sets())
    paths = {name: layout.scores(detector, arm, seed, name) for name in test_names}
    if not all(p.is_file() for p in paths.values()) or not _scores_are_current(layout, cfg, preset, arm, seed):
        return None
    explain = {name: layout.explanations(detector, arm, seed, name) for name in test_names}
    if cfg.is_generation() and not all(p.is_file() for p in explain.values()):
        return None
    sets = {}
    for name, path in paths.items():
        metrics = score_file_metrics(path, settings)
        sets[name] = {**metrics, "scores": layout.relative(path)}
        if cfg.is_generation():
            sets[name]["explain"] = explain_file_metrics(explain[name])
            sets[name]["explanations"] = layout.relative(explain[name])
    ood = cfg.ood_names()
    ood_avg = {m: ood_average(sets, ood, m) for m in AGGREGATED} if ood else {}
    if ood and cfg.is_generation():
        per_set = {name: sets[name]["explain"] for name in ood}
        ood_avg["explain"] = {m: ood_average(per_set, ood, m) for m in EXPLAIN_METRICS}
    return {"seed": seed, "sets": sets, OOD_AVG: ood_avg,
            "training": training_summary(layout, cfg, detector, arm, seed)}


def collect_results(cfg: ExperimentConfig, layout: Layout, arms: list[str] | None = None) -> dict:
    """The content of results.json from whatever score files exist (missing runs are listed, not invented)."""
    from spoofrl import __version__
    settings = MetricSettings.from_config(cfg)
    test_names = list(cfg.test_sets())
    ood = cfg.ood_names()
    arms = list(cfg.arms) if arms is None else arms
    detectors: dict[str, dict] = {}
    missing: list[str] = []
    for preset in cfg.detectors:
        det = detector_name(preset)
        arm_results = {}
        for arm in arms:
            runs = []
            for seed in cfg.arm_seeds(arm):
                run = collect_run(layout, cfg, settings, preset, arm, seed)
                if run is None:
                    missing.append(f"{det}/{arm}/seed{seed}")
                else:
                    runs.append(run)
            arm_results[arm] = {"label": cfg.arm_label(arm), "init": cfg.arms[arm].init,
                                "trained": cfg.arms[arm].train, "seeds": [r["seed"] for r in runs],
                                "runs": runs, "summary": summarize_runs(runs, test_names, ood)}
        detectors[det] = {"preset": preset, "arms": arm_results}
    return {
        "spoofrl_version": __version__,
        "experiment": cfg.name,
        "in_domain": cfg.data.in_domain_name,
        "ood": ood,
        "test_sets": test_names,
        "metric_settings": {**asdict(settings), "recompute": settings.command(),
                            "units": "eer, min_dcf, act_dcf as fractions; cllr in bits; eer_ci, min_dcf_ci [lo, hi]",
                            "min_dcf_ci": "not printed by `spoofrl metrics`: the same bootstrap replicates "
                                          "(--n-boot, --seed) applied to the minDCF (spoofrl.metrics."
                                          "bootstrap_cis)",
                            "aggregation": "mean and sample std (n-1) over seeds; ood_avg = mean over the OOD sets "
                                           "of each run, then mean/std over seeds",
                            **({"explain": EXPLAIN_NOTE} if cfg.is_generation() else {})},
        "detectors": detectors,
        "missing_runs": missing,
    }


def write_results_json(results: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)
