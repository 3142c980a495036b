"""The semantic-cue probe of SDD-APALLM (arXiv 2601.23066): does the model judge by the words or by the sound?

A real audio LLM hears what is said. Here the prompt carries a "transcript" (column `cue`), and the
training rows plant a correlation between its topic and the label: bona fide clips get sentences of topic A,
spoofs of topic B (each row with probability `strength`, else the other topic). The `semantic_flip` copy of
the test rows reverses it (bona fide -> B, spoof -> A). A model that learned the words falls far below its
normal accuracy on the flipped set; one that listens to the acoustic evidence keeps it. Run it for each
`alm.inputs` option (audio / spectrogram / both): benchmarks/probe_semantic_flip.py.

Two manifests are written (the same audio file cannot be listed twice in one manifest): `semantic.csv`, every
row of the chosen subsets with its planted cue, and `semantic_flip.csv`, the test rows with the reversed cue.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from spoofrl.data.manifest import BONAFIDE, read_manifest
from spoofrl.errors import ConfigError

TOPIC_A = ("the garden is full of flowers this spring", "we walked along the river after lunch",
           "my sister bakes bread every sunday", "the children played in the park until dark",
           "a warm breeze came through the open window", "the old cat sleeps by the fire")
TOPIC_B = ("the invoice number is four two seven nine", "your flight departs from gate eleven",
           "the meeting moved to half past three", "please enter your account code now",
           "the train to the airport leaves every ten minutes", "press one to confirm the payment")
PROMPT = ("<audio>\nTranscript: {cue}\nIs this recording bona fide human speech or spoof? Answer with "
          "<answer>bonafide</answer> or <answer>spoof</answer>.")


def _cue(label: str, rng: np.random.Generator, strength: float, flip: bool) -> str:
    bonafide_topic = (label == BONAFIDE) != flip
    planted = rng.random() < strength
    pool = TOPIC_A if bonafide_topic == planted else TOPIC_B
    return pool[int(rng.integers(len(pool)))]


def semantic_flip_manifests(manifest: str | Path, out: str | Path, *, train_subsets: Sequence[str],
                            test_subsets: Sequence[str], strength: float = 0.95, seed: int = 0
                            ) -> tuple[Path, Path]:
    """(semantic.csv, semantic_flip.csv) in folder `out` (see the module doc); paths are written absolute."""
    if not 0.5 <= strength <= 1.0:
        raise ConfigError(f"strength must be in [0.5, 1], got {strength}")
    overlap = set(train_subsets) & set(test_subsets)
    if overlap:
        raise ConfigError(f"subsets {sorted(overlap)} are both training and test subsets")
    rows = read_manifest(manifest, list(train_subsets) + list(test_subsets))
    if not rows:
        raise ConfigError(f"{manifest}: no rows in subsets {', '.join([*train_subsets, *test_subsets])}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    header = ["path", "label", "attack", "source", "condition", "subset", "cue"]
    planted, flipped = [], []
    for u in rows:
        base = [str(u.audio_path.resolve()), u.label, u.attack, u.source, u.condition, u.subset]
        planted.append(base + [_cue(u.label, rng, strength, flip=False)])
        if u.subset in test_subsets:
            flipped.append(base[:5] + [f"{u.subset}_flip", _cue(u.label, rng, 1.0, flip=True)])
    paths = out / "semantic.csv", out / "semantic_flip.csv"
    for path, table in zip(paths, (planted, flipped)):
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(table)
    return paths
