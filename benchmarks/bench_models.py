"""Speed and memory of every model preset on this machine.

Per preset: parameters (total / trainable), training throughput (samples/s: forward + backward + AdamW step
on a batch of `--batch` random `--seconds`-second waveforms), inference throughput (seconds of audio scored
per second of wall time, no autograd, eval mode) and peak resident memory of the process (RSS) after
inference and after training; for presets with a frozen SSL encoder also the training throughput once its
hidden states come from the feature cache (spoofrl.features.cache). Each preset runs in its own subprocess
so peaks do not mix; torch uses `--threads` threads.

SSL presets need a checkpoint folder; here they are built with a randomly initialised base-size encoder
(transformers' Wav2Vec2Config defaults = wav2vec 2.0 Base: 12 layers, 768 dims, 95 M parameters), which
has the cost of a real one. Real XLS-R 300M (24 layers, 1024 dims) costs roughly 3x as much.

    python benchmarks/bench_models.py                       # all presets, batch 32 x 4 s, 2 threads
    python benchmarks/bench_models.py --presets lcnn-lfcc --batch 8
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

PRESETS = ["logmel-linear", "lcnn-lfcc", "resnet-logmel", "aasist-sinc", "ssl-linear", "ssl-ffn-fusion"]
# A random encoder of wav2vec 2.0 Base size: the presets' own options (frozen, layers, fusion) still apply.
BASE_SSL = ["frontend.config={num_hidden_layers: 12, hidden_size: 768, mask_time_prob: 0.0}"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed_runs(step, min_seconds: float, max_runs: int) -> float:
    """Seconds per call of `step`, averaged over calls made until `min_seconds` have passed (>= 1 call)."""
    runs, start = 0, time.perf_counter()
    while True:
        step()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or runs >= max_runs:
            return elapsed / runs


def bench_one(name: str, batch: int, seconds: float, threads: int, min_seconds: float) -> dict:
    import torch

    from spoofrl.models import build_model, count_parameters, load_model_preset
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    overrides = BASE_SSL if name.startswith("ssl-") and "tiny" not in name else None
    model = build_model(load_model_preset(name, overrides))
    samples = int(seconds * model.cfg.sample_rate)
    wave = torch.randn(batch, samples) * 0.1
    lengths = torch.full((batch,), samples)
    labels = torch.arange(batch) % 2
    result = {"preset": name, "params": count_parameters(model),
              "trainable": count_parameters(model, trainable_only=True), "batch": batch, "seconds": seconds,
              "random_base_ssl": overrides is not None}

    model.eval()
    with torch.no_grad():
        model(wave[:2], lengths[:2])  # warm-up (allocations, lazy initialisation)

        def infer():
            model(wave, lengths)
        per_batch = timed_runs(infer, min_seconds, 5)
    result["infer_audio_s_per_s"] = batch * seconds / per_batch
    result["rss_infer_mb"] = peak_rss_mb()

    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def train_step():
        loss = torch.nn.functional.cross_entropy(model(wave, lengths), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.nn.functional.cross_entropy(model(wave[:2], lengths[:2]), labels[:2]).backward()  # warm-up
    opt.zero_grad(set_to_none=True)
    per_step = timed_runs(train_step, min_seconds, 5)
    result["train_samples_per_s"] = batch / per_step
    result["rss_train_mb"] = peak_rss_mb()
    if model.frontend_cache_recommended:
        result["cached_train_samples_per_s"] = batch / cached_train_step_seconds(model, opt, wave, lengths, labels,
                                                                               min_seconds)
    return result


def cached_train_step_seconds(model, opt, wave, lengths, labels, min_seconds: float) -> float:
    """Seconds per training step when the frozen encoder's output comes from the feature cache (every epoch
    after the first): the step runs only the trainable head and back-end. Reading the cached tensors from
    disk is left out (a few MB per batch)."""
    import torch
    raw, frame_lengths = model.extract_features(wave, lengths)

    def step():
        loss = torch.nn.functional.cross_entropy(model.forward_features(raw, frame_lengths), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return timed_runs(step, min_seconds, 20)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=PRESETS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0, help="utterance length (s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=8.0,
                        help="time each measurement for at least this long (at least one batch)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run a single preset in this process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(bench_one(args.one, args.batch, args.seconds, args.threads, args.min_seconds)))
        return 0
    print(f"batch {args.batch} x {args.seconds:g} s at 16 kHz, torch threads {args.threads}; "
          f"SSL presets use a random wav2vec 2.0 Base-size encoder")
    header = (f"{'preset':<20} {'params':>12} {'trainable':>12} {'train samples/s':>16} "
              f"{'infer audio s/s':>16} {'peak RSS infer MB':>18} {'peak RSS train MB':>18} "
              f"{'train samples/s, cached features':>33}")
    print(header)
    for name in args.presets:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--batch", str(args.batch),
               "--seconds", str(args.seconds), "--threads", str(args.threads), "--min-seconds",
               str(args.min_seconds)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name:<20} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        cached = f"{r['cached_train_samples_per_s']:.1f}" if "cached_train_samples_per_s" in r else "-"
        print(f"{name:<20} {r['params']:>12,} {r['trainable']:>12,} {r['train_samples_per_s']:>16.2f} "
              f"{r['infer_audio_s_per_s']:>16.1f} {r['rss_infer_mb']:>18.0f} {r['rss_train_mb']:>18.0f} "
              f"{cached:>33}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
