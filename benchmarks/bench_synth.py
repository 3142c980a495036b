"""Benchmark of the built-in benchmark generator (`spoofrl data synth`) and its attacks.

Prints:
  0. cost of each speech source (CPU per second of speech);
  1. generation of a preset: wall time, CPU time (this process and its children: workers, ffmpeg,
     synthesizers), files, minutes of audio, disk size;
  2. cost of each attack and channel on one 2.5 s utterance (ms of CPU per second of audio);
  3. with --probe: a sanity check that the benchmark separates classes and has real domain shifts -
     a linear probe on log-mel statistics trained on `posttrain`, then fine-tuned on `target_train`,
     with EER per subset before and after fine-tuning (not a result of spoofrl's detectors);
  4. with --figures DIR: the spectrogram pictures of docs/attacks/.

Usage:
  python benchmarks/bench_synth.py --preset demo --workers 2 --out /tmp/bench_demo [--probe]
  python benchmarks/bench_synth.py --costs-only
  python benchmarks/bench_synth.py --figures docs/attacks --costs-only
"""
from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_generation(preset: str, workers: int, out: Path, seed: int) -> None:
    from spoofrl.synth.generate import generate
    if out.exists():
        shutil.rmtree(out)
    cpu0, t0 = cpu_seconds(), time.time()
    report = generate(out, preset=preset, seed=seed, workers=workers, show_progress=False)
    wall, cpu = time.time() - t0, cpu_seconds() - cpu0
    size = subprocess.run(["du", "-sm", str(out)], capture_output=True, text=True).stdout.split()[0]
    print(f"generation  preset={preset} workers={workers} seed={seed}")
    print(f"  files {report.files}, audio {report.audio_seconds / 60:.1f} min "
          f"(mean {report.audio_seconds / report.files:.2f} s/file), disk {size} MB")
    print(f"  wall {wall:.1f} s, CPU {cpu:.1f} s ({cpu / report.files * 1000:.0f} ms CPU per file)")
    t1 = time.time()
    again = generate(out, preset=preset, seed=seed, workers=workers, show_progress=False)
    print(f"  rerun on the finished folder (resume check): {time.time() - t1:.1f} s, {again.written} files redone")


def bench_costs() -> None:
    from spoofrl.synth.attacks import ATTACKS
    from spoofrl.synth.channels import CHANNELS
    from spoofrl.synth.sources import Prosody, flite, synthesize
    x = synthesize([(flite("kal16"), "The bright lantern was carried by the sailor today.", Prosody())])[0]
    seconds = len(x) / 16000
    print(f"cost per second of audio (one {seconds:.2f} s utterance, 3 runs, CPU incl. ffmpeg)")
    for kind, table in (("attack", ATTACKS), ("channel", CHANNELS)):
        for name, fn in table.items():
            rng = np.random.default_rng(0)
            params = fn.sample_params(rng)
            cpu0 = cpu_seconds()
            for _ in range(3):
                fn(x, 16000, rng, **params)
            ms = (cpu_seconds() - cpu0) / 3 / seconds * 1000
            print(f"  {kind:7s} {name:18s} {ms:7.1f} ms/s")


def bench_sources() -> None:
    """CPU per second of speech of each speech source (one sentence, 3 runs; includes process start-up)."""
    from spoofrl.synth.sources import (Prosody, arctic, espeak, festival, flite, openjtalk, optional_voice_problems,
                                       synthesize)
    text = "The bright lantern was carried by the sailor today."
    voices = [espeak("en-us+m3"), flite("kal16"), flite("awb"), festival("kal_diphone"),
              festival("cmu_us_slt_arctic_hts"), openjtalk(), arctic("slt_a0009")]
    missing = optional_voice_problems(voices)
    print("speech sources: CPU ms per second of speech (one sentence, 3 runs, incl. start-up)")
    for voice in voices:
        if voice in missing:
            print(f"  {voice.id:34s} not installed: {missing[voice]}")
            continue
        words = "明日、田中さんと駅の前で会いましょう。" if voice.engine == "openjtalk" else text
        synthesize([(voice, words, Prosody())])               # warm-up (imports, dictionaries)
        cpu0 = cpu_seconds()
        seconds = sum(len(x) for x in synthesize([(voice, words, Prosody())] * 3)) / 16000
        print(f"  {voice.id:34s} {(cpu_seconds() - cpu0) / seconds * 1000:7.1f} ms/s")


def _features(paths: list[Path]) -> np.ndarray:
    """Mean and standard deviation over time of 40 log-mel bands and their deltas (160 numbers per file)."""
    import soundfile as sf

    from spoofrl.synth import dsp
    fb = dsp.mel_filterbank(16000, 512, 40)
    rows = []
    for p in paths:
        x, _ = sf.read(str(p))
        mel = np.log(np.abs(dsp.stft(x, 512, 160)) ** 2 @ fb.T + 1e-8)
        delta = np.diff(mel, axis=0)
        rows.append(np.concatenate([mel.mean(0), mel.std(0), delta.mean(0), delta.std(0)]))
    return np.array(rows)


def _fit(w: np.ndarray, x: np.ndarray, y: np.ndarray, steps: int, lr: float) -> np.ndarray:
    """Logistic regression by gradient descent from weights `w` (class-balanced, light L2)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    weight = np.where(y == 1, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-xb @ w))
        w = w - lr * (xb.T @ ((p - y) * weight) / len(y) + 1e-4 * w)
    return w


def bench_probe(out: Path) -> None:
    from spoofrl.data.manifest import read_manifest
    from spoofrl.metrics import compute_eer
    rows = read_manifest(out / "manifest.csv")
    feats = _features([r.audio_path for r in rows])
    subsets = np.array([r.subset for r in rows])
    labels = np.array([1.0 if r.label == "bonafide" else 0.0 for r in rows])
    train = subsets == "posttrain"
    mu, sd = feats[train].mean(0), feats[train].std(0) + 1e-6
    z = (feats - mu) / sd
    w0 = _fit(np.zeros(z.shape[1] + 1), z[train], labels[train], 3000, 0.5)
    tuned = subsets == "target_train"
    w1 = _fit(w0.copy(), z[tuned], labels[tuned], 3000, 0.5)

    def eer(w, s):
        m = subsets == s
        score = np.hstack([z[m], np.ones((m.sum(), 1))]) @ w
        return 100 * compute_eer(score[labels[m] == 1], score[labels[m] == 0])[0]
    names = ["posttrain_dev", "target_eval", "ood_attack", "ood_source", "ood_channel", "ood_mix"]
    print("linear probe on log-mel statistics (sanity check of the benchmark, EER %)")
    print("  " + " ".join(f"{n:>13s}" for n in ["model"] + names))
    print("  " + " ".join([f"{'posttrain':>13s}"] + [f"{eer(w0, n):13.1f}" for n in names]))
    print("  " + " ".join([f"{'+target FT':>13s}"] + [f"{eer(w1, n):13.1f}" for n in names]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/spoofrl_bench_synth"))
    ap.add_argument("--costs-only", action="store_true", help="skip generation (and the probe)")
    ap.add_argument("--probe", action="store_true", help="train the linear probe on the generated set")
    ap.add_argument("--figures", type=Path, help="write the attack spectrogram pictures here")
    args = ap.parse_args()
    if args.figures:
        from spoofrl.synth.figures import attack_figures
        print("figures:", ", ".join(str(p) for p in attack_figures(args.figures)))
    bench_sources()
    bench_costs()
    if not args.costs_only:
        bench_generation(args.preset, args.workers, args.out, args.seed)
        if args.probe:
            bench_probe(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
