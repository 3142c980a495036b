"""Training data: toy corpus helper (used by the other test_train_* files), dataset, batching, augmentation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spoofrl.data.augment import (RAWBOOST_ALGOS, AugmentConfig, Augmenter, NoiseConfig, RawBoostConfig,
                                  scale_to_snr)
from spoofrl.data.dataset import BatchPlanner, TrainDataset, collate, inverse_frequency_weights
from spoofrl.data.manifest import Utterance, read_manifest, write_manifest
from spoofrl.errors import ConfigError

SR = 16000


def toy_wave(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Bona fide: a clean harmonic tone; spoof: the same with broadband noise (separable by log-mel)."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 300)
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.2 + 0.01 * rng.standard_normal(len(t))
    if label == "spoof":
        x = x + 0.08 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def write_toy_corpus(root: Path, n_train: int = 12, n_dev: int = 6, seed: int = 0,
                     seconds: tuple[float, float] = (0.5, 1.0)) -> Path:
    """FLAC files + manifest with subsets train / dev (n per class each); returns the manifest path."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for subset, n in (("train", n_train), ("dev", n_dev)):
        for i in range(n):
            for label in ("bonafide", "spoof"):
                path = root / f"{subset}_{label}_{i}.flac"
                sf.write(path, toy_wave(label, rng.uniform(*seconds), rng), SR)
                rows.append(Utterance(path.name, label, "-" if label == "bonafide" else "A1", "toy", "clean", subset))
    write_manifest(rows, root / "manifest.csv")
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("toy"), n_train=6, n_dev=2)


def test_crop_and_pad_are_deterministic_per_epoch(corpus):
    utts = read_manifest(corpus, ["train"])
    ds = TrainDataset(utts, SR, crop_samples=int(0.4 * SR), crop="random", pad="repeat", seed=3)
    a, b, c = ds[(0, 0)], ds[(0, 0)], ds[(0, 1)]
    assert len(a["wave"]) == int(0.4 * SR)
    np.testing.assert_array_equal(a["wave"], b["wave"])          # same (seed, epoch, index) -> same crop
    assert a["start"] != c["start"] or not np.array_equal(a["wave"], c["wave"])  # new epoch, new crop
    long = TrainDataset(utts, SR, crop_samples=3 * SR, pad="repeat", seed=3)[(0, 0)]
    assert len(long["wave"]) == 3 * SR and long["start"] == 0     # short file repeated up to the crop
    zero = TrainDataset(utts, SR, crop_samples=3 * SR, pad="zero", seed=3)[(0, 0)]
    assert len(zero["wave"]) < 3 * SR                             # left short; collate zero-pads, lengths kept
    batch = collate([zero, long])
    assert batch.wave.shape == (2, 3 * SR) and batch.lengths.tolist() == [len(zero["wave"]), 3 * SR]


def test_planner_shards_batches_between_processes():
    targets = np.array([0, 1] * 20)
    plans = [BatchPlanner(targets, batching="fixed", batch_size=4, batch_samples=0, effective_lengths=None,
                          balance="none", seed=1, rank=r, world=2) for r in range(2)]
    b0, b1 = plans[0].batches(0), plans[1].batches(0)
    assert len(b0) == len(b1) == 5                                # 10 full batches split evenly
    flat0, flat1 = {i for b in b0 for i in b}, {i for b in b1 for i in b}
    assert not flat0 & flat1                                      # disjoint shares of the epoch
    assert plans[0].batches(0) == b0 and plans[0].batches(1) != b0  # reproducible, reshuffled per epoch
    assert plans[0].locate(7) == (1, 2)


def test_dynamic_batches_respect_the_duration_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(SR // 2, 4 * SR, size=50)
    plan = BatchPlanner(np.zeros(50, dtype=int), batching="dynamic", batch_size=1, batch_samples=8 * SR,
                        effective_lengths=lengths, balance="none", seed=0)
    batches = plan.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(50))  # every utterance exactly once
    for b in batches:
        assert len(b) == 1 or max(lengths[b]) * len(b) <= 8 * SR


def test_balanced_sampler_draws_classes_equally():
    targets = np.array([0] * 90 + [1] * 10)
    plan = BatchPlanner(targets, batching="fixed", batch_size=10, batch_samples=0, effective_lengths=None,
                        balance="sampler", seed=0)
    drawn = targets[[i for e in range(5) for b in plan.batches(e) for i in b]]
    # 500 draws at p = 0.5: the share of class 1 is 0.5 +- 0.022 (1 sd); 0.1 away is > 4 sd
    assert abs(drawn.mean() - 0.5) < 0.1
    np.testing.assert_allclose(inverse_frequency_weights(targets), [100 / 180, 100 / 20])


@pytest.mark.parametrize("algo", sorted(RAWBOOST_ALGOS))
def test_rawboost_algorithms_distort_reproducibly(algo):
    x = np.sin(np.arange(SR) / SR * 2 * np.pi * 220).astype(np.float32) * 0.3
    aug = Augmenter(AugmentConfig(rawboost=RawBoostConfig(algo=algo)), SR)
    y1, applied = aug(x, np.random.default_rng(5))
    y2, _ = aug(x, np.random.default_rng(5))
    assert applied and y1.shape == x.shape and y1.dtype == np.float32 and np.all(np.isfinite(y1))
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, x)


def test_noise_is_added_at_the_requested_snr(tmp_path):
    x = np.random.default_rng(0).standard_normal(SR)
    noise = scale_to_snr(x, np.random.default_rng(1).standard_normal(SR) * 7, 10.0)
    # float64 means of 16000 squares and a log: ~1e-13 dB; 1e-6 dB is still far below any gain error
    assert 10 * np.log10(np.mean(x ** 2) / np.mean(noise ** 2)) == pytest.approx(10.0, abs=1e-6)
    sf.write(tmp_path / "n.wav", np.random.default_rng(2).standard_normal(4000).astype(np.float32) * 0.1, SR)
    aug = Augmenter(AugmentConfig(noise=NoiseConfig(prob=1.0, min_snr_db=20, max_snr_db=20,
                                                    folder=str(tmp_path))), SR)
    y, applied = aug(x.astype(np.float32), np.random.default_rng(0))
    assert applied
    snr = 10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(20.0, abs=0.01)                   # a 0.25 s recording tiled to 1 s


def test_codec_round_trip_degrades_reproducibly():
    import shutil
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/install_system.sh)")
    from spoofrl.data.augment import CodecConfig
    x = (0.3 * np.sin(np.arange(SR // 2) / SR * 2 * np.pi * 220)).astype(np.float32)
    aug = Augmenter(AugmentConfig(codec=CodecConfig(prob=1.0, codecs=["mp3"], min_kbps=16, max_kbps=16)), SR)
    y1, applied = aug(x, np.random.default_rng(1))
    y2, _ = aug(x, np.random.default_rng(1))
    assert applied and y1.shape == x.shape and y1.dtype == np.float32
    np.testing.assert_array_equal(y1, y2)
    # 16 kbit/s mp3 keeps the tone (aligned, correlated) but not bit-exactly
    assert np.corrcoef(x, y1)[0, 1] > 0.9 and not np.allclose(y1, x, atol=1e-3)
    with pytest.raises(ConfigError, match="unknown codec 'nope'"):
        Augmenter(AugmentConfig(codec=CodecConfig(prob=1.0, codecs=["nope"])), SR)


def test_class_balanced_loss_weights_follow_the_training_set(tmp_path):
    from spoofrl.training import Trainer, load_train_config
    manifest = write_toy_corpus(tmp_path / "c", n_train=6, n_dev=2)
    rows = [r for r in read_manifest(manifest) if not (r.subset == "train" and r.label == "spoof"
                                                        and r.path.endswith(("3.flac", "4.flac", "5.flac")))]
    write_manifest(rows, manifest)                                  # train: 6 bona fide, 3 spoof
    for objective in ("sft", "grpo"):
        cfg = load_train_config({"data": {"manifest": str(manifest), "crop_seconds": 0.5, "batch_size": 3,
                                          "balance": "loss"},
                                 "objective": {"name": objective, "num_generations": 4},
                                 "schedule": {"steps": 1}})
        trainer = Trainer(cfg, tmp_path / objective)
        trainer.run()
        # N / (K n_c): spoof 9 / (2 * 3) = 1.5, bona fide 9 / (2 * 6) = 0.75
        assert trainer.task.class_weights.tolist() == [1.5, 0.75]
        if objective == "sft":
            assert trainer.objective.class_weights.tolist() == [1.5, 0.75]   # cross-entropy weights
        else:  # per-utterance GRPO loss weights: each utterance gets its class's weight
            _, _, _, batch = next(trainer.task.batches(0, 1))
            batch, weights = trainer.task.step_inputs(batch, trainer.access, trainer.objective)
            assert weights.tolist() == [[1.5, 0.75][t] for t in batch.targets.tolist()]


def test_augmentation_config_errors_name_the_option(tmp_path):
    with pytest.raises(ConfigError, match="noise.folder"):
        Augmenter(AugmentConfig(noise=NoiseConfig(prob=1.0, folder=str(tmp_path / "missing"))), SR)
    from spoofrl.training import load_train_config
    with pytest.raises(ConfigError, match="rawboost.algo"):
        load_train_config({"data": {"manifest": "m.csv", "augment": {"rawboost": {"algo": 9}}}})
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        load_train_config({"data": {"manifest": "m.csv", "augment": {"noise": {"colour": 1}}}})
