"""Where an experiment keeps everything inside its output folder.

```
OUT/
  experiment.yaml                    the resolved config of the latest invocation
  experiment.log                     progress log
  data/                              training manifests assembled from the configured splits
  <detector>/posttrain/[seed<k>/]    the post-training run (shared, or one per seed)
  <detector>/arms/<arm>/seed<k>/
      stage<i>/                      training runs (run folders of `spoofrl train`)
      scores/<test set>.tsv          score files (utt, score, label, attack, condition)
      scores/<test set>.metrics.json cached metrics of that score file
      scores/<test set>.explain.jsonl  generation runs: each clip's completion, answer, score and checked claims
      scores/model.json              identity of the model the score files come from
  results.json results.md det.png scores_hist.png training_curves.png report.html
```
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "experiment.yaml"

    @property
    def log(self) -> Path:
        return self.root / "experiment.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def posttrain(self, detector: str, seed: int | None) -> Path:
        base = self.root / detector / "posttrain"
        return base if seed is None else base / f"seed{seed}"

    def run(self, detector: str, arm: str, seed: int) -> Path:
        return self.root / detector / "arms" / arm / f"seed{seed}"

    def stage(self, detector: str, arm: str, seed: int, index: int) -> Path:
        return self.run(detector, arm, seed) / f"stage{index + 1}"

    def scores(self, detector: str, arm: str, seed: int, test_set: str) -> Path:
        return self.run(detector, arm, seed) / "scores" / f"{test_set}.tsv"

    def explanations(self, detector: str, arm: str, seed: int, test_set: str) -> Path:
        """Per-clip explanations of a generation run (JSON lines beside its score file)."""
        return self.run(detector, arm, seed) / "scores" / f"{test_set}.explain.jsonl"

    def relative(self, path: Path) -> str:
        """A path inside the output folder as written in results.json / report.html (portable)."""
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    # report files
    @property
    def results_json(self) -> Path:
        return self.root / "results.json"

    @property
    def results_md(self) -> Path:
        return self.root / "results.md"

    @property
    def det_png(self) -> Path:
        return self.root / "det.png"

    @property
    def hist_png(self) -> Path:
        return self.root / "scores_hist.png"

    @property
    def curves_png(self) -> Path:
        return self.root / "training_curves.png"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"
