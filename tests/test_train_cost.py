"""What makes a GRPO step cost close to an SFT step, checked on real training runs (timings: BENCHMARKS.md).

- the reference and old policies run without gradient, on the front-end output shared with the current model;
- repeating inputs (no augmentation, crop at the file start) get their reference logits computed once per
  utterance for the whole run;
- no old-policy copy when it cannot differ from the current policy, no reference when beta = 0.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from spoofrl.models.detector import Detector
from spoofrl.training import Trainer, load_train_config
from spoofrl.training.forward import ParamSnapshot
from test_train_data import write_toy_corpus


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    # files of 0.5-1 s, crops of 1.5 s: every crop is a whole file, padded by repetition -> inputs repeat
    return write_toy_corpus(tmp_path_factory.mktemp("corpus"), n_train=8, n_dev=2)


def run_counting(manifest: Path, out: Path, monkeypatch, objective: dict, data: dict | None = None
                 ) -> tuple[Trainer, dict]:
    """Train 12 steps (3 epochs of 4 batches) and count the work of the snapshot and front-end forwards."""
    counts = {"snapshot_rows": 0, "snapshot_grad": 0, "encode_calls": 0}
    snapshot_logits, extract = ParamSnapshot.logits, Detector.extract_features

    def counting_logits(self, forward, batch, feats):
        out = snapshot_logits(self, forward, batch, feats)
        counts["snapshot_rows"] += len(batch)
        counts["snapshot_grad"] += int(out.requires_grad)
        return out

    def counting_extract(self, wave, lengths=None):
        counts["encode_calls"] += 1
        return extract(self, wave, lengths)

    monkeypatch.setattr(ParamSnapshot, "logits", counting_logits)
    monkeypatch.setattr(Detector, "extract_features", counting_extract)
    cfg = load_train_config({"data": {"manifest": str(manifest), "crop_seconds": 1.5, "batch_size": 4,
                                      "dev_subsets": [], **(data or {})},
                             "objective": {"name": "grpo", "num_generations": 8, **objective},
                             "optim": {"lr": 0.01}, "schedule": {"steps": 12, "log_every": 4}})
    trainer = Trainer(cfg, out)
    trainer.run()
    return trainer, counts


def test_reference_runs_once_per_repeating_utterance(manifest, tmp_path, monkeypatch):
    trainer, counts = run_counting(manifest, tmp_path / "run", monkeypatch, {"beta": 0.04, "epsilon": None})
    assert trainer.access.old is None and trainer.reference is not None
    assert counts["snapshot_rows"] == 16           # 16 training files, 48 items seen over 3 epochs
    assert counts["snapshot_grad"] == 0            # no graph is built for the reference
    assert counts["encode_calls"] == 12            # log-mel is frozen: computed once per step, shared


def test_augmented_inputs_are_not_cached(manifest, tmp_path, monkeypatch):
    _, counts = run_counting(manifest, tmp_path / "run", monkeypatch, {"beta": 0.04, "epsilon": None},
                             data={"augment": {"rawboost": {"algo": 2}}})
    assert counts["snapshot_rows"] == 48           # every item is new: the reference runs on all of them


def test_old_policy_and_reference_only_when_needed(manifest, tmp_path, monkeypatch):
    # clipping against an old policy refreshed every 3 steps, and the reference: both are evaluated
    trainer, counts = run_counting(manifest, tmp_path / "both", monkeypatch,
                                   {"beta": 0.04, "epsilon": 0.2, "old_policy_refresh_steps": 3})
    assert trainer.access.old is not None and counts["snapshot_rows"] == 48 + 16  # old: every item; ref: cached
    assert (tmp_path / "both/last/old_policy.safetensors").is_file()
    # refresh every step: the old policy is the current one (ratio 1), so none is kept; beta 0: no reference
    for name, options in {"refresh1": {"old_policy_refresh_steps": 1, "beta": 0.0},
                          "grpos": {"epsilon": None, "beta": 0.0}}.items():
        trainer, counts = run_counting(manifest, tmp_path / name, monkeypatch, options)
        assert trainer.access.old is None and trainer.reference is None and counts["snapshot_rows"] == 0, name
        assert not list((tmp_path / name / "last").glob("old_policy*")) and \
            not list((tmp_path / name / "last").glob("reference*")), name
