"""Figures of an experiment: DET curves (probit axes), score histograms, training curves.

All are drawn from the saved score files and the runs' metrics.csv, never from numbers held in memory.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

from spoofrl.experiment.layout import Layout
from spoofrl.runfiles import METRICS

LOG = logging.getLogger(__name__)

CURVE_COLUMNS = [("loss", "training loss"), ("reward_mean", "mean reward"), ("kl", "KL to reference"),
                 ("dev_eer", "dev EER (%)")]
DET_TICKS = [0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8]
DET_LIMITS = (0.0005, 0.9)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    return plt


def _arm_colors(arms: list[str]) -> dict[str, tuple]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {arm: cmap(i % 10) for i, arm in enumerate(arms)}


def chosen_run(info: dict, det_seed: int) -> dict | None:
    """The run drawn for an arm: the configured seed if it has one, else its first run."""
    if not info["runs"]:
        return None
    for run in info["runs"]:
        if run["seed"] == det_seed:
            return run
    return info["runs"][0]


def _load(layout: Layout, relative: str):
    from spoofrl.metrics.scorefile import read_scores
    return read_scores(layout.root / relative)


# ------------------------------------------------------------------------------------------ DET

def _probit(values: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri  # the normal quantile function; lighter to import than scipy.stats
    return ndtri(np.clip(values, 1e-6, 1 - 1e-6))


def _det_axes(ax) -> None:
    ticks = _probit(np.array(DET_TICKS))
    labels = [f"{t * 100:g}" for t in DET_TICKS]
    lo, hi = _probit(np.array(DET_LIMITS))
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.plot([lo, hi], [lo, hi], color="0.85", lw=0.8, zorder=0)  # the EER line
    ax.grid(True, color="0.92", lw=0.5)
    ax.set_xlabel("false acceptance rate (%)", fontsize=8)
    ax.set_ylabel("miss rate (%)", fontsize=8)


def plot_det(results: dict, layout: Layout, path: Path, det_seed: int = -1) -> Path:
    """DET curves: one panel per (detector, test set), one curve per arm."""
    from spoofrl.metrics import det_curve
    plt = _pyplot()
    detectors = list(results["detectors"])
    sets = results["test_sets"]
    fig, axes = plt.subplots(len(detectors), len(sets), figsize=(3.3 * len(sets), 3.3 * len(detectors)),
                             squeeze=False)
    for r, detector in enumerate(detectors):
        arms = results["detectors"][detector]["arms"]
        colors = _arm_colors(list(arms))
        for c, name in enumerate(sets):
            ax = axes[r][c]
            _det_axes(ax)
            title = name + (" (in-domain)" if name == results["in_domain"] else "")
            ax.set_title(f"{detector}: {title}" if len(detectors) > 1 else title, fontsize=9)
            for arm, info in arms.items():
                run = chosen_run(info, det_seed)
                if run is None:
                    continue
                table = _load(layout, run["sets"][name]["scores"])
                frr, far = det_curve(table.bonafide_scores(), table.spoof_scores())
                eer = run["sets"][name]["eer"] * 100
                ax.plot(_probit(far), _probit(frr), color=colors[arm], lw=1.2,
                        label=f"{info['label']} (s{run['seed']}) {eer:.1f}%")
            ax.legend(fontsize=6, loc="upper right")
    fig.suptitle("DET curves (legend: arm, seed, EER)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ histograms

def _pooled_scores(layout: Layout, run: dict, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    bona, spoof = [], []
    for name in names:
        table = _load(layout, run["sets"][name]["scores"])
        bona.append(table.bonafide_scores())
        spoof.append(table.spoof_scores())
    return np.concatenate(bona), np.concatenate(spoof)


def plot_histograms(results: dict, layout: Layout, path: Path, det_seed: int = -1) -> Path:
    """Score histograms (bona fide vs spoof): one row per (detector, arm); in-domain and OOD pooled."""
    plt = _pyplot()
    columns = [(results["in_domain"], [results["in_domain"]], "in-domain")]
    if results["ood"]:
        columns.append(("ood", results["ood"], "OOD sets pooled"))
    rows = [(d, arm, info) for d, det in results["detectors"].items() for arm, info in det["arms"].items()
            if info["runs"]]
    fig, axes = plt.subplots(max(1, len(rows)), len(columns), figsize=(4.2 * len(columns), 2.2 * max(1, len(rows))),
                             squeeze=False)
    for r, (detector, arm, info) in enumerate(rows):
        run = chosen_run(info, det_seed)
        for c, (_, names, title) in enumerate(columns):
            ax = axes[r][c]
            bona, spoof = _pooled_scores(layout, run, names)
            both = np.concatenate([bona, spoof])
            bins = np.linspace(both.min(), both.max() + 1e-9, 41)
            ax.hist(spoof, bins=bins, alpha=0.55, color="tab:red", label="spoof", density=True)
            ax.hist(bona, bins=bins, alpha=0.55, color="tab:green", label="bona fide", density=True)
            who = f"{detector} / " if len(results["detectors"]) > 1 else ""
            ax.set_title(f"{who}{info['label']} (seed {run['seed']}): {title}", fontsize=8)
            ax.tick_params(labelsize=7)
            if r == len(rows) - 1:
                ax.set_xlabel("score (log-odds of bona fide; higher = more bona fide)", fontsize=7)
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    if not rows:
        axes[0][0].text(0.5, 0.5, "no finished runs", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ training curves

def read_metrics_csv(path: Path) -> dict[str, list[tuple[float, float]]]:
    """column -> [(step, value)] for the non-empty cells of a run's metrics.csv."""
    series: dict[str, list[tuple[float, float]]] = {}
    if not path.is_file():
        return series
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                step = float(row.get("step") or "nan")
            except ValueError:
                continue
            if math.isnan(step):
                continue
            for key, _ in CURVE_COLUMNS:
                cell = (row.get(key) or "").strip()
                if not cell:
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    continue
                if math.isfinite(value):
                    series.setdefault(key, []).append((step, value))
    return series


def run_curves(layout: Layout, run: dict) -> dict[str, list[tuple[float, float]]]:
    """Curves of a run's stages chained end to end (stage 2's steps continue after stage 1's last step)."""
    chained: dict[str, list[tuple[float, float]]] = {}
    offset = 0.0
    for stage in run["training"]:
        series = read_metrics_csv(layout.root / stage["run"] / METRICS)
        last = 0.0
        for key, points in series.items():
            chained.setdefault(key, []).extend((offset + s, v) for s, v in points)
            last = max(last, max(s for s, _ in points))
        offset += max(last, float(stage.get("steps") or 0))
    return chained


def plot_training_curves(results: dict, layout: Layout, path: Path) -> Path:
    """Loss, reward, KL and dev EER per step of every trained arm (every seed; the first one labelled)."""
    plt = _pyplot()
    detectors = list(results["detectors"])
    fig, axes = plt.subplots(len(detectors), len(CURVE_COLUMNS), figsize=(3.6 * len(CURVE_COLUMNS),
                                                                          2.8 * len(detectors)), squeeze=False)
    for r, detector in enumerate(detectors):
        arms = results["detectors"][detector]["arms"]
        colors = _arm_colors(list(arms))
        drawn = {key: False for key, _ in CURVE_COLUMNS}
        for arm, info in arms.items():
            for i, run in enumerate(info["runs"]):
                curves = run_curves(layout, run)
                for c, (key, _) in enumerate(CURVE_COLUMNS):
                    points = curves.get(key)
                    if not points:
                        continue
                    steps, values = zip(*points)
                    if key == "dev_eer":
                        values = [v * 100 for v in values]
                    axes[r][c].plot(steps, values, color=colors[arm], lw=1.0, alpha=1.0 if i == 0 else 0.45,
                                    label=info["label"] if i == 0 else None, marker="." if key == "dev_eer" else None)
                    drawn[key] = True
        for c, (key, title) in enumerate(CURVE_COLUMNS):
            ax = axes[r][c]
            ax.set_title(f"{detector}: {title}" if len(detectors) > 1 else title, fontsize=9)
            ax.set_xlabel("step (stages chained)", fontsize=7)
            ax.tick_params(labelsize=7)
            if drawn[key]:
                ax.legend(fontsize=6)
            else:
                ax.text(0.5, 0.5, "not logged by these runs", ha="center", va="center", fontsize=8,
                        transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
