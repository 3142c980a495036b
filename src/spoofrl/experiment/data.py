"""The experiment's data: test sets read from their manifests, and the training manifests assembled from the
configured splits (`OUT/data/posttrain.csv`, `OUT/data/target.csv`, with subsets `train` and `dev`), so that a
stage may train on one manifest and validate on another (the study validated on ASVspoof 2019 LA dev).
"""
from __future__ import annotations

import filecmp
import hashlib
import logging
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

from spoofrl.data.manifest import LABELS, Utterance, check_audio_exists, read_manifest, write_manifest
from spoofrl.errors import AudioError, ConfigError, ProtocolError
from spoofrl.experiment.config import ExperimentConfig, SplitConfig, split_manifest
from spoofrl.experiment.layout import Layout

LOG = logging.getLogger(__name__)

TRAIN, DEV = "train", "dev"
# What to do when a configured subset is absent (the manifest has no such `subset` value).
HINTS = {"posttrain_dev": " (a manifest without a post-training dev subset: set data.posttrain_dev.subsets: [] "
                          "to hold out posttrain.dev_fraction of the post-training data instead)"}


def read_split(cfg: ExperimentConfig, split: SplitConfig, what: str, check_audio: bool = True) -> list[Utterance]:
    """The utterances of one configured split (errors name the manifest and the split)."""
    manifest = split_manifest(cfg, split, what)
    try:
        rows = read_manifest(manifest, split.subsets or None)
    except ProtocolError as err:
        if "no utterances in subset" not in err.reason:
            raise  # a malformed line: the message already names file, line and text
        raise ProtocolError(err.path, f"data.{what}: {err.reason}{HINTS.get(what, '')}") from None
    if not rows:
        raise ProtocolError(manifest, f"data.{what}: no utterances")
    if check_audio:
        check_audio_exists(rows, manifest)
    return rows


def _hash(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8")).hexdigest()


def hold_out(rows: list[Utterance], fraction: float, what: str) -> tuple[list[Utterance], list[Utterance]]:
    """(train, dev): per label, the ceil(fraction * n) utterances first in the order of a hash of their path.

    Deterministic and independent of the seed, so every run validates on the same held-out set."""
    train: list[Utterance] = []
    dev: list[Utterance] = []
    for label in LABELS:
        group = sorted((r for r in rows if r.label == label), key=lambda r: _hash(r.path))
        if len(group) < 2:
            raise ConfigError(f"data.{what}: {len(group)} {label} utterance(s): too few to hold out a dev set "
                              f"(set data.posttrain_dev)")
        k = min(len(group) - 1, max(1, math.ceil(fraction * len(group))))
        dev += group[:k]
        train += group[k:]
    return train, dev


def _absolute(rows: list[Utterance], subset: str) -> list[Utterance]:
    return [replace(r, path=str(r.audio_path.resolve()), subset=subset, root=None) for r in rows]


def write_if_changed(rows: list[Utterance], path: Path) -> Path:
    """Write a manifest, leaving an identical existing file untouched (its mtime stays, for caches)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(path.name + ".new")
    write_manifest(rows, fresh)
    if path.is_file() and filecmp.cmp(fresh, path, shallow=False):
        fresh.unlink()
    else:
        fresh.replace(path)
    return path


def build_training_manifests(cfg: ExperimentConfig, layout: Layout) -> dict[str, Path]:
    """{'posttrain': path, 'target': path} training manifests (subsets train/dev); posttrain only when needed."""
    out: dict[str, Path] = {}
    if cfg.needs_posttraining() and not cfg.posttrain.from_model:
        rows = read_split(cfg, cfg.data.posttrain, "posttrain")
        if cfg.data.posttrain_dev.is_empty():
            if cfg.posttrain.dev_fraction <= 0:
                raise ConfigError("data.posttrain_dev is empty and posttrain.dev_fraction is 0: post-training "
                                  "needs a dev set")
            train, dev = hold_out(rows, cfg.posttrain.dev_fraction, "posttrain")
        else:
            train, dev = rows, read_split(cfg, cfg.data.posttrain_dev, "posttrain_dev")
        out["posttrain"] = write_if_changed(_absolute(train, TRAIN) + _absolute(dev, DEV),
                                            layout.data / "posttrain.csv")
    if any(a.train for a in cfg.arms.values()):
        train = read_split(cfg, cfg.data.target_train, "target_train")
        dev = read_split(cfg, cfg.data.target_dev, "target_dev")
        out["target"] = write_if_changed(_absolute(train, TRAIN) + _absolute(dev, DEV), layout.data / "target.csv")
    return out


def _check_trials(rows: list[Utterance], manifest: str, what: str) -> None:
    """A test set needs both classes, and each trial once (a score file holds one score per utterance)."""
    labels = {r.label for r in rows}
    if len(labels) < 2:
        raise ProtocolError(manifest, f"data.{what}: only {labels.pop()} utterances; a test set needs both classes")
    repeated = [path for path, n in Counter(r.path for r in rows).items() if n > 1]
    if repeated:
        shown = ", ".join(repeated[:3]) + (f" and {len(repeated) - 3} more" if len(repeated) > 3 else "")
        raise ProtocolError(manifest, f"data.{what}: {len(repeated)} utterance(s) listed more than once "
                                      f"({shown}); each test trial must appear once")


# Formats whose header soundfile reads at once; others (mp3 may need a scan, m4a/opus an ffprobe each) would
# make the check cost a fair share of scoring itself.
HEADER_CHECKED = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".au"}


def check_test_audio(rows: list[Utterance], manifest: str, what: str) -> None:
    """Read the header of every wav / flac / ogg test file: an empty, truncated or non-audio file fails now,
    listed with the others, instead of when the first run scores it (after post-training). Other formats, and
    problems only decoding shows (silence, NaN), are found when scored."""
    from spoofrl.audio import audio_info
    bad = []
    for row in rows:
        if row.audio_path.suffix.lower() in HEADER_CHECKED:
            try:
                audio_info(row.audio_path)
            except AudioError as err:
                bad.append(str(err))
    if bad:
        more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ProtocolError(manifest, f"data.{what}: {len(bad)} unusable audio file(s): {'; '.join(bad[:3])}{more}")


def read_test_sets(cfg: ExperimentConfig) -> dict[str, list[Utterance]]:
    """Every test set, in table order, checked for both classes, single trials and readable audio."""
    sets = {}
    for name, split in cfg.test_sets().items():
        what = "target_eval" if name == cfg.data.in_domain_name else f"ood.{name}"
        rows = read_split(cfg, split, what)
        manifest = split_manifest(cfg, split, what)
        _check_trials(rows, manifest, what)
        check_test_audio(rows, manifest, what)
        sets[name] = rows
    return sets


def warn_overlaps(training: dict[str, Path], test_sets: dict[str, list[Utterance]]) -> list[str]:
    """Warn when test utterances are also training data (same audio file): results would be optimistic."""
    seen: dict[str, set[str]] = {}
    for name, path in training.items():
        seen[name] = {r.path for r in read_manifest(path)}
    notes = []
    for test_name, rows in test_sets.items():
        paths = {str(r.audio_path.resolve()) for r in rows}
        for train_name, train_paths in seen.items():
            shared = len(paths & train_paths)
            if shared:
                notes.append(f"{shared} of {len(paths)} utterances of test set '{test_name}' are also in the "
                             f"{train_name} training/dev data")
    for note in notes:
        LOG.warning(note)
    return notes


# ------------------------------------------------------------------------------------------ generation studies

RATIONALES = "rationales.jsonl"       # in OUT/data: `spoofrl data rationales` of every clip of the splits
ANNOTATED = "annotate.csv"            # the clips it annotates: subsets train / dev / test.<name>


def test_subset(name: str) -> str:
    """The `subset` a test set's clips have in OUT/data/annotate.csv and rationales.jsonl."""
    return f"test.{name}"


def ensure_benchmark_manifest(cfg: ExperimentConfig, layout: Layout, *, make: bool = True) -> None:
    """data.benchmark.preset with no data.manifest: make the built-in benchmark in OUT/benchmark (reused when it
    is already there) and use its manifest.csv as data.manifest (set in `cfg`)."""
    bench = cfg.data.benchmark
    if not bench.preset or cfg.data.manifest:
        return
    folder = layout.root / "benchmark"
    if make:
        from spoofrl.experiment.benchmark import available_cores, ensure_benchmark
        ensure_benchmark(folder, bench.preset, bench.seed, available_cores(), bench.design)
    cfg.data.manifest = str((folder / "manifest.csv").resolve())


def rationales_path(layout: Layout) -> Path:
    return layout.data / RATIONALES


def prepare_rationales(cfg: ExperimentConfig, layout: Layout) -> Path | None:
    """data.rationales.annotate: every clip of the fine-tuning and test splits gets its evidence and rationale in
    OUT/data/rationales.jsonl (`annotate_manifest`, resumable: finished clips are kept), the reference profile
    fitted on the bona fide rows of the training split (OUT/data/rationales.reference.json). Clips are keyed as
    the generation task reads them: (absolute path, subset train / dev) for the training manifest's rows and
    (absolute path, 'test.<name>') for each test set's. Returns the rationales file (None when not asked for)."""
    opts = cfg.data.rationales
    if not opts.annotate:
        return None
    from spoofrl.explain.annotate import annotate_manifest
    from spoofrl.experiment.benchmark import available_cores
    rows = _absolute(read_split(cfg, cfg.data.target_train, "target_train"), TRAIN)
    rows += _absolute(read_split(cfg, cfg.data.target_dev, "target_dev"), DEV)
    for name, split in cfg.test_sets().items():
        what = "target_eval" if name == cfg.data.in_domain_name else f"ood.{name}"
        rows += _absolute(read_split(cfg, split, what, check_audio=False), test_subset(name))
    manifest = write_if_changed(rows, layout.data / ANNOTATED)
    out = rationales_path(layout)
    report = annotate_manifest(manifest, out, reference_subsets=[TRAIN], seed=opts.seed,
                               workers=opts.workers or available_cores(), max_claims=opts.max_claims)
    for line in report.summary():
        LOG.info("rationales: %s", line)
    return out


def read_rationale_evidence(path: Path, subset: str) -> dict[str, list]:
    """utt -> evidence item dicts of the records of one subset of a rationales file."""
    import json
    out: dict[str, list] = {}
    if not path.is_file():
        return out
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if f'"subset": "{subset}"' not in line:
                continue   # cheap pre-filter: most lines are other subsets'
            record = json.loads(line)
            if record.get("subset") == subset:
                out[str(record["utt"])] = record["evidence"]
    return out


