"""Peak memory and speed of `spoofrl detect` on long files: memory must stay flat with file length.

Writes 16 kHz mono WAV files of the given lengths into a temp folder (a 1-hour file is ~115 MB; written
block by block), runs `spoofrl detect` on each in a fresh subprocess and reports the child's peak RSS
(getrusage ru_maxrss), wall time, real-time factor and the number of timeline chunks.

    python benchmarks/bench_detect.py                      # 10 s, 10 min, 60 min; bundled default model
    python benchmarks/bench_detect.py --minutes 1 60 --model runs/my_run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def write_long_wav(path: Path, seconds: float, block_seconds: float = 60.0, seed: int = 0) -> None:
    """Speech-like test signal (harmonic tone with a moving pitch plus noise), written in blocks."""
    rng = np.random.default_rng(seed)
    block = int(block_seconds * SR)
    total = int(seconds * SR)
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
        for start in range(0, total, block):
            n = min(block, total - start)
            t = (start + np.arange(n)) / SR
            f0 = 120 + 30 * np.sin(2 * np.pi * 0.2 * t)
            phase = 2 * np.pi * np.cumsum(f0) / SR
            x = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.15 + 0.01 * rng.standard_normal(n)
            out.write(x.astype(np.float32))


def encode(wav: Path, codec: str) -> Path:
    """Re-encode with ffmpeg (the WAV is removed) so the decoder path of that format is measured."""
    out = wav.with_suffix(f".{codec}")
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(wav), "-b:a", "64k", str(out)], check=True)
    wav.unlink()
    return out


def default_model_or_fresh(folder: Path) -> str | None:
    """None (use the bundled default) when it is installed, else a fresh logmel-linear model in `folder`."""
    from spoofrl.errors import SpoofrlError
    try:
        from spoofrl.detect import default_model_dir
        default_model_dir()
        return None
    except SpoofrlError:
        from spoofrl.models import build_model, load_model_preset, save_model
        save_model(build_model(load_model_preset("logmel-linear")), folder)
        return str(folder)


def run_detect(path: Path, model: str | None, chunk_seconds: float, files: int = 1) -> dict:
    """Run `spoofrl detect` in a child process; its peak RSS comes from RUSAGE_CHILDREN after it exits."""
    code = ("import sys; from spoofrl.cli import main; sys.exit(main(sys.argv[1:]))")
    cmd = [sys.executable, "-c", code, "detect", str(path), "--format", "json", "--chunk-seconds", str(chunk_seconds)]
    if model:
        cmd += ["--model", model]
    env = dict(os.environ, SPOOFRL_NO_PROGRESS="1")
    # A fresh grandchild per run keeps ru_maxrss per measurement (RUSAGE_CHILDREN is a running maximum).
    wrapper = ("import resource, subprocess, sys, time, json\n"
               "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "print(json.dumps({'rc': p.returncode, 'seconds': time.perf_counter() - t, "
               "'peak_rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'out': p.stdout, "
               "'err': p.stderr[-2000:]}))")
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env, check=True)
    result = json.loads(proc.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"detect failed on {path}: {result['err']}")
    report = json.loads(result["out"])
    if len(report["files"]) != files or report["summary"]["error"]:
        raise SystemExit(f"detect on {path}: expected {files} scored file(s), got {report['summary']}")
    f = report["files"][0]
    return {"seconds": result["seconds"], "peak_rss_mb": result["peak_rss_kb"] / 1024, "chunks": len(f["chunks"]),
            "duration": f["duration"], "model": report["model"]["name"]}


def bench_many_short(tmp: Path, model: str | None, count: int, seconds: float, chunk_seconds: float,
                     spread: float = 0.0) -> None:
    """Throughput on a folder of many short clips (the common `detect folder/` case): files per second.

    With `spread` > 0 the clip lengths are drawn uniformly from seconds +- spread, so (nearly) every clip has
    its own length: `detect` batches only equal lengths, and this measures what that costs."""
    folder = tmp / f"short_spread{spread:g}"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lengths = seconds + spread * rng.uniform(-1.0, 1.0, count)
    for i, length in enumerate(lengths):
        write_long_wav(folder / f"clip{i:04d}.wav", float(length), seed=i)
    r = run_detect(folder, model, chunk_seconds, files=count)
    what = f"{seconds:g} s" if spread == 0 else f"{seconds - spread:g}-{seconds + spread:g} s (all different)"
    print(f"{count} files of {what}: {r['seconds']:.1f} s wall, {count / r['seconds']:.1f} files/s, "
          f"{lengths.sum() / r['seconds']:.0f}x real-time, peak RSS {r['peak_rss_mb']:.0f} MB (whole command, "
          f"including Python start-up and model load)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10 / 60, 10, 60], help="file lengths")
    parser.add_argument("--model", help="model folder (default: bundled default model, else a fresh logmel-linear)")
    parser.add_argument("--chunk-seconds", type=float, default=4.0)
    parser.add_argument("--codec", choices=["wav", "m4a", "opus", "mp3"], default="wav",
                        help="format of the long files: wav (read by soundfile) or a compressed one (m4a/opus are "
                             "decoded through an ffmpeg pipe; encoded with ffmpeg first)")
    parser.add_argument("--short-files", type=int, default=200, help="also time a folder of this many clips (0 = skip)")
    parser.add_argument("--short-seconds", type=float, default=3.0, help="length of each of those clips")
    parser.add_argument("--short-spread", type=float, default=1.0,
                        help="also time clips of random lengths in short-seconds +- this (0 = skip)")
    parser.add_argument("--workdir", help="where to write the test files (default: a temp folder, removed after)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spoofrl-bench-detect-", dir=args.workdir) as tmp:
        tmp = Path(tmp)
        model = args.model or default_model_or_fresh(tmp / "model")
        print(f"format {args.codec}")
        print(f"{'length':>10} {'file MB':>8} {'chunks':>7} {'wall s':>8} {'x real-time':>12} {'peak RSS MB':>12}")
        for minutes in args.minutes:
            path = tmp / f"long_{minutes:g}min.wav"
            write_long_wav(path, minutes * 60)
            if args.codec != "wav":
                path = encode(path, args.codec)
            r = run_detect(path, model, args.chunk_seconds)
            print(f"{minutes * 60:>9.0f}s {path.stat().st_size / 1e6:8.1f} {r['chunks']:7d} {r['seconds']:8.1f} "
                  f"{r['duration'] / r['seconds']:12.0f} {r['peak_rss_mb']:12.0f}", flush=True)
            path.unlink()
        if args.short_files > 0:
            bench_many_short(tmp, model, args.short_files, args.short_seconds, args.chunk_seconds)
            if args.short_spread > 0:
                bench_many_short(tmp, model, args.short_files, args.short_seconds, args.chunk_seconds,
                                 args.short_spread)
        print(f"model: {r['model']}; chunk {args.chunk_seconds:g} s; torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")


if __name__ == "__main__":
    main()
