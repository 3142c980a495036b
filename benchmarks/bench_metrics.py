"""Speed of the official metrics and score-file I/O at ASVspoof 5 eval scale (~681k trials).

Run: python benchmarks/bench_metrics.py [N_TRIALS]
Prints seconds for: compute_eer on 1M scores, evaluate() on N, write/read of an N-row score file,
the whole `spoofrl metrics --by attack --json` command, the same with labels from an N-row manifest
(`--key`), and 100 bootstrap replicates.
"""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spoofrl.cli import main
from spoofrl.data.manifest import Utterance, write_manifest
from spoofrl.metrics import bootstrap_eers, compute_eer, evaluate
from spoofrl.metrics.scorefile import read_scores, write_scores


def timed(label: str, fn):
    start = time.perf_counter()
    result = fn()
    print(f"{label:<45} {time.perf_counter() - start:8.3f} s")
    return result


def main_bench(n: int) -> None:
    rng = np.random.default_rng(0)
    big_b, big_s = rng.normal(2, 1, 100_000), rng.normal(0, 1, 900_000)
    timed("compute_eer, 1,000,000 scores", lambda: compute_eer(big_b, big_s))
    n_bona = n // 10
    bona, spoof = rng.normal(2, 1, n_bona), rng.normal(0, 1, n - n_bona)
    timed(f"evaluate (all metrics), {n:,} scores", lambda: evaluate(bona, spoof))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scores.tsv"
        utts = [f"flac_E_eval/E_{i:010d}.flac" for i in range(n)]
        labels = ["bonafide"] * n_bona + ["spoof"] * (n - n_bona)
        attacks = ["-"] * n_bona + [f"A{17 + i % 16}" for i in range(n - n_bona)]
        scores = np.concatenate([bona, spoof])
        timed(f"write_scores, {n:,} rows", lambda: write_scores(path, utts, scores, labels, attacks))
        timed(f"read_scores, {n:,} rows", lambda: read_scores(path))
        def cli(*extra):
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["metrics", *extra, "--by", "attack", "--json"]) == 0
        timed("spoofrl metrics --by attack --json (16 attacks)", lambda: cli(str(path)))
        manifest = Path(tmp) / "key.csv"
        write_manifest([Utterance(u, lab, att, "asvspoof5", "-", "eval") for u, lab, att in zip(utts, labels, attacks)],
                       manifest)
        unlabelled = write_scores(Path(tmp) / "unlabelled.tsv", utts, scores)
        timed("spoofrl metrics --key MANIFEST --by attack --json",
              lambda: cli(str(unlabelled), "--key", str(manifest)))
    timed(f"bootstrap_eers, 100 replicates of {n:,}", lambda: bootstrap_eers(bona, spoof, n=100))


if __name__ == "__main__":
    main_bench(int(sys.argv[1]) if len(sys.argv) > 1 else 681_000)
