"""Which model folder each experiment run starts and ends with, and what identifies a trained model.

Below both the runner (which trains and scores) and the results (which check that score files come from
the current model), so neither imports the other.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from spoofrl.experiment.config import ExperimentConfig, detector_name
from spoofrl.experiment.layout import Layout

from spoofrl.runfiles import SCORES_MODEL, SUMMARY, WEIGHTS


def posttrained_model(cfg: ExperimentConfig, layout: Layout, preset: str, seed: int) -> Path:
    if cfg.posttrain.from_model:
        return Path(cfg.posttrain.from_model.replace("{detector}", detector_name(preset)))
    return layout.posttrain(detector_name(preset), seed if cfg.posttrain.per_seed else None)


def final_model(cfg: ExperimentConfig, layout: Layout, preset: str, arm: str, seed: int) -> Path:
    """The model folder an arm's run ends with: its last stage, or its starting model when it trains nothing."""
    stages = cfg.arms[arm].stage_list()
    if stages:
        return layout.stage(detector_name(preset), arm, seed, len(stages) - 1)
    return start_model(cfg, layout, preset, arm, seed)


def start_model(cfg: ExperimentConfig, layout: Layout, preset: str, arm: str, seed: int) -> Path | None:
    """The model folder an arm's run starts from: another arm's final model (`after`), the post-trained model,
    or None (fresh initialisation)."""
    spec = cfg.arms[arm]
    if spec.after:
        return final_model(cfg, layout, preset, spec.after, seed)
    return posttrained_model(cfg, layout, preset, seed) if spec.init == "posttrained" else None


_WHOLE_FILE_HASHES: dict[tuple, str] = {}


def _file_sha1(path: Path) -> str:
    """SHA-1 of a file, memoised per (path, size, mtime) in this process (large weights are read once)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _WHOLE_FILE_HASHES:
        digest = hashlib.sha1()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                digest.update(block)
        _WHOLE_FILE_HASHES[key] = digest.hexdigest()
    return _WHOLE_FILE_HASHES[key]


def model_identity(folder: Path | None) -> str | None:
    """What tells one trained model from another (None: no model there yet).

    A training run's model is identified by its summary.json, written once when training ends (it holds the
    run's timing, so a retrained model differs) - cheap, and unchanged when the output folder is copied. A
    model folder without one (posttrain.from_model) is identified by the hash of its weights."""
    if folder is None or not (folder / WEIGHTS).is_file():
        return None
    summary = folder / SUMMARY
    if summary.is_file():
        return hashlib.sha1(summary.read_bytes()).hexdigest()
    return _file_sha1(folder / WEIGHTS)


def recorded_score_model(scores_folder: Path) -> str | None:
    """The identity of the model a run's score files come from (None: not recorded, or unreadable)."""
    try:
        return json.loads((scores_folder / SCORES_MODEL).read_text()).get("identity")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
