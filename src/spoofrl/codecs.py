"""Round trips through real speech/audio codecs with ffmpeg (encode to bytes, decode back).

Used both by codec-resynthesis *attacks* (codec2, G.723.1: low-bit-rate vocoders) and by transmission
*channels* (mp3, opus, aac, gsm, g722). Encoders add a start-up delay; the decoded signal is aligned back
onto the input by cross-correlation so that delay cannot tell one class or condition from another.
Also used by training-time codec augmentation (spoofrl.data.augment), which is why it lives below both
spoofrl.data and spoofrl.synth: neither package imports the other's internals through it.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal as sps

from spoofrl.errors import SpoofrlError


@dataclass(frozen=True)
class Codec:
    """How to drive one ffmpeg codec: encoder arguments, container for the pipe, the rate it codes at."""
    encoder: str
    muxer: str           # ffmpeg -f for the encoded byte stream
    demuxer: str         # ffmpeg -f to read that stream back
    rate: int | None     # sample rate the codec runs at (None: the input's)
    bitrate_flag: str | None = "-b:a"
    raw_needs_rate: bool = False  # headerless streams need the rate given to the demuxer
    # libcodec2 keeps state shared between the encoder/decoder instances of one process: two codec2 streams
    # in one ffmpeg run change each other's output. Such codecs get one stream per ffmpeg run.
    one_per_process: bool = False


CODECS: dict[str, Codec] = {
    "mp3": Codec("libmp3lame", "mp3", "mp3", None),
    "opus": Codec("libopus", "ogg", "ogg", None),
    "aac": Codec("aac", "adts", "aac", None),
    "gsm": Codec("libgsm", "gsm", "gsm", 8000, None),
    "g722": Codec("g722", "g722", "g722", 16000, None),
    "codec2": Codec("libcodec2", "codec2", "codec2", 8000, None, one_per_process=True),
    "g723_1": Codec("g723_1", "g723_1", "g723_1", 8000),
    "speex": Codec("libspeex", "ogg", "ogg", 8000, None),
    "vorbis": Codec("libvorbis", "ogg", "ogg", None),
}


class CodecUnavailable(SpoofrlError):
    """ffmpeg is missing or lacks an encoder the benchmark needs."""


@functools.lru_cache(maxsize=None)
def ffmpeg_encoders() -> frozenset[str]:
    """Names of the encoders this ffmpeg build offers (empty when ffmpeg is not installed)."""
    if shutil.which("ffmpeg") is None:
        return frozenset()
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    names = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "A":
            names.add(parts[1])
    return frozenset(names)


def require_codec(name: str) -> Codec:
    codec = CODECS[name]
    if shutil.which("ffmpeg") is None:
        raise CodecUnavailable(f"codec '{name}' needs ffmpeg, which is not installed (run scripts/install_system.sh)")
    if codec.encoder not in ffmpeg_encoders():
        raise CodecUnavailable(f"codec '{name}' needs ffmpeg's '{codec.encoder}' encoder, which this ffmpeg build lacks")
    return codec


def _run_ffmpeg(args: list[str], data: bytes, what: str) -> bytes:
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", *args], input=data, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise SpoofrlError(f"ffmpeg failed to {what}: {msg[-1] if msg else 'no output'}")
    return proc.stdout


def _best_lag(y: np.ndarray, x: np.ndarray, max_lag: int) -> tuple[int, float]:
    """(lag, normalised peak correlation) with y[t + lag] ~ x[t], searched within +-max_lag."""
    seg = min(len(x), len(y))
    corr = sps.correlate(y[:seg], x[:seg], mode="full", method="fft")
    mid = seg - 1
    lo, hi = max(mid - max_lag, 0), min(mid + max_lag + 1, len(corr))
    best = int(np.argmax(corr[lo:hi]) + lo)
    norm = np.sqrt(np.sum(x[:seg] ** 2) * np.sum(y[:seg] ** 2)) + 1e-12
    return best - mid, float(corr[best] / norm)


def _envelope(x: np.ndarray, sr: int) -> np.ndarray:
    """Smoothed magnitude envelope (about 2 ms), zero-mean: alignment for codecs that do not keep phase."""
    win = max(int(0.002 * sr), 1)
    env = np.convolve(np.abs(x), np.ones(win) / win, mode="same")
    return env - env.mean()


def align_to(y: np.ndarray, x: np.ndarray, sr: int, max_lag_s: float = 0.1) -> np.ndarray:
    """Shift `y` so that it best lines up with `x`; same length as x.

    Waveform cross-correlation where the codec keeps the waveform; magnitude-envelope correlation where it
    does not (parametric codecs such as codec2 resynthesise the phase).
    """
    n = len(x)
    if min(n, len(y)) == 0:
        return np.zeros(n)
    max_lag = int(max_lag_s * sr)
    lag, peak = _best_lag(y, x, max_lag)
    if peak < 0.5:
        lag, _ = _best_lag(_envelope(y, sr), _envelope(x, sr), max_lag)
    if lag > 0:
        y = y[lag:]
    elif lag < 0:
        y = np.concatenate([np.zeros(-lag), y])
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


@dataclass(frozen=True)
class CodecRequest:
    """One round trip to make: codec name, bit rate (or None for the codec's own), extra encoder options."""
    name: str
    bitrate: int | None = None
    extra_args: tuple[str, ...] = ()


def _encode_options(codec: Codec, request: CodecRequest) -> list[str]:
    args = []
    if codec.rate is not None:
        args += ["-ar", str(codec.rate)]
    args += ["-c:a", codec.encoder]
    if request.bitrate is not None and codec.bitrate_flag:
        args += [codec.bitrate_flag, str(int(request.bitrate))]
    return args + list(request.extra_args) + ["-f", codec.muxer]


def _process_groups(codecs: list[Codec]) -> list[list[int]]:
    """Indices of the streams each ffmpeg run codes: everything together, except that a codec marked
    `one_per_process` appears at most once per run (so its result equals a round trip of that signal alone)."""
    groups: list[list[int]] = [[]]
    exclusive_in: list[bool] = [False]
    for i, codec in enumerate(codecs):
        if not codec.one_per_process:
            groups[0].append(i)
            continue
        slot = next((g for g, taken in enumerate(exclusive_in) if not taken), None)
        if slot is None:
            groups.append([])
            exclusive_in.append(False)
            slot = len(groups) - 1
        groups[slot].append(i)
        exclusive_in[slot] = True
    return [g for g in groups if g]


def codec_roundtrip_many(signals: list[np.ndarray], sr: int | list[int],
                         requests: list[CodecRequest]) -> list[np.ndarray]:
    """Round trips of many signals in few ffmpeg processes (one encoding many streams, one decoding them):
    ffmpeg's start-up costs more than coding a few seconds of speech. Streams are coded independently,
    so each result equals what a round trip of that signal alone gives. Results are aligned to the inputs.
    `sr`: the signals' rate, or each signal's (a codec without a fixed rate codes each at its own)."""
    if not signals:
        return []
    rates = list(sr) if isinstance(sr, (list, tuple)) else [sr] * len(signals)
    codecs = [require_codec(r.name) for r in requests]
    outputs: list[np.ndarray] = [np.zeros(0)] * len(signals)
    for group in _process_groups(codecs):
        results = _roundtrip_in_one_process([signals[i] for i in group], [rates[i] for i in group],
                                            [requests[i] for i in group], [codecs[i] for i in group])
        for i, y in zip(group, results):
            outputs[i] = y
    return outputs


def _roundtrip_in_one_process(signals: list[np.ndarray], rates: list[int], requests: list[CodecRequest],
                              codecs: list[Codec]) -> list[np.ndarray]:
    what = ", ".join(sorted({r.name for r in requests}))
    with tempfile.TemporaryDirectory(prefix="spoofrl-codec-") as tmpdir:
        tmp = Path(tmpdir)
        enc_args: list[str] = []
        for i, (x, sr) in enumerate(zip(signals, rates)):
            (tmp / f"in{i}.f32").write_bytes(np.clip(x, -1.0, 1.0).astype(np.float32).tobytes())
            enc_args += ["-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", str(tmp / f"in{i}.f32")]
        for i, (codec, request) in enumerate(zip(codecs, requests)):
            enc_args += ["-map", f"{i}:a", *_encode_options(codec, request), str(tmp / f"enc{i}")]
        _run_ffmpeg(["-y", *enc_args], b"", f"encode with {what}")
        dec_args: list[str] = []
        for i, codec in enumerate(codecs):
            dec_args += ["-f", codec.demuxer, "-i", str(tmp / f"enc{i}")]
        for i, sr in enumerate(rates):
            dec_args += ["-map", f"{i}:a", "-f", "f32le", "-ar", str(sr), "-ac", "1", str(tmp / f"dec{i}.f32")]
        _run_ffmpeg(["-y", *dec_args], b"", f"decode {what}")
        outputs = []
        for i, (x, sr) in enumerate(zip(signals, rates)):
            y = np.fromfile(tmp / f"dec{i}.f32", dtype=np.float32).astype(np.float64)
            outputs.append(align_to(y, x, sr))
    return outputs


def codec_roundtrip(x: np.ndarray, sr: int, name: str, bitrate: int | None = None,
                    extra_args: tuple[str, ...] = ()) -> np.ndarray:
    """Encode `x` (float, mono, `sr` Hz) with codec `name` and decode it back to `sr`, aligned to `x`."""
    return codec_roundtrip_many([x], sr, [CodecRequest(name, bitrate, tuple(extra_args))])[0]
