"""Audio input: any file soundfile reads (wav, flac, ogg, mp3 with recent libsndfile) and, through
ffmpeg when it is installed, anything ffmpeg decodes (m4a, opus, aac, ...). Always returns mono
float32 at the requested rate. Every failure is an `AudioError` naming the file and the reason.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from spoofrl.errors import AudioError

DEFAULT_SR = 16000
# Files longer than this are refused by `load_audio`; use `iter_chunks` to stream them instead.
DEFAULT_MAX_SECONDS = 3 * 3600.0
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".webm", ".aiff", ".aif", ".au"}


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def _to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    import soxr
    return soxr.resample(x.astype(np.float32, copy=False), sr_in, sr_out, quality="HQ").astype(np.float32)


def _decode_ffmpeg(path: Path, sr: int) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise AudioError(path, "not readable by soundfile and ffmpeg is not installed to decode it")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(sr), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = msg[-1] if msg else "ffmpeg failed"
        raise AudioError(path, f"not a readable audio file ({reason})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def _stream_ffmpeg(path: Path, sr: int, chunk: int) -> Iterator[tuple[float, np.ndarray]]:
    """(start s, chunk) pieces decoded by ffmpeg into a pipe: memory stays flat for hour-long m4a/opus/webm."""
    import tempfile
    if shutil.which("ffmpeg") is None:
        raise AudioError(path, "not readable by soundfile and ffmpeg is not installed to decode it")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(sr), "-"]
    # stderr goes to a file, not a pipe: a chatty decoder could otherwise fill the pipe and block.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
        start = 0
        try:
            while block := proc.stdout.read(4 * chunk):
                x = np.frombuffer(block[:len(block) // 4 * 4], dtype=np.float32).copy()
                if not np.all(np.isfinite(x)):
                    raise AudioError(path, f"contains NaN or infinite samples (at {start / sr:.1f} s)")
                yield start / sr, x
                start += len(x)
            if proc.wait() != 0:
                errors.seek(0)
                lines = errors.read().decode(errors="replace").strip().splitlines()
                reason = lines[-1] if lines else "ffmpeg failed"
                if start == 0:
                    raise AudioError(path, f"not a readable audio file ({reason})")
                raise AudioError(path, f"corrupt or truncated audio after {start / sr:.1f} s ({reason})")
            if start == 0:
                raise AudioError(path, "contains no samples (zero-length audio)")
        finally:  # also when the caller stops early (e.g. a length limit): do not leave ffmpeg running
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def _validate_samples(path: Path, x: np.ndarray, allow_silent: bool) -> np.ndarray:
    if x.size == 0:
        raise AudioError(path, "contains no samples (zero-length audio)")
    if not np.all(np.isfinite(x)):
        raise AudioError(path, "contains NaN or infinite samples")
    if not allow_silent and not np.any(x):
        raise AudioError(path, "all samples are zero (silent file)")
    return x


def audio_info(path: str | Path) -> tuple[float, int, int]:
    """(duration in seconds, sample rate, channels) without decoding the whole file."""
    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate, info.samplerate, info.channels
    except (sf.LibsndfileError, RuntimeError):
        x = _decode_ffmpeg(path, DEFAULT_SR)
        return len(x) / DEFAULT_SR, DEFAULT_SR, 1


def load_audio(path: str | Path, sr: int = DEFAULT_SR, *, allow_silent: bool = False,
               max_seconds: float | None = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Read `path` as mono float32 at `sr` Hz."""
    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        info = None
    if info is not None:
        if info.frames == 0:
            raise AudioError(path, "contains no samples (zero-length audio)")
        if max_seconds is not None and info.frames / info.samplerate > max_seconds:
            raise AudioError(path, f"is {info.frames / info.samplerate / 3600:.1f} h long, over the limit of "
                                   f"{max_seconds / 3600:.1f} h; score it in chunks (spoofrl detect streams long files)")
        try:
            x, file_sr = sf.read(str(path), dtype="float32", always_2d=False)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(path, f"corrupt or truncated audio ({err})") from None
        if len(x) < info.frames * 0.99:
            raise AudioError(path, f"truncated: header says {info.frames} frames, only {len(x)} could be read")
        x = resample(_to_mono(x), file_sr, sr)
    else:
        x = _decode_ffmpeg(path, sr)
        if max_seconds is not None and len(x) / sr > max_seconds:
            raise AudioError(path, f"is longer than the limit of {max_seconds / 3600:.1f} h")
    return _validate_samples(path, x, allow_silent)


def iter_chunks(path: str | Path, chunk_seconds: float, sr: int = DEFAULT_SR) -> Iterator[tuple[float, np.ndarray]]:
    """Stream (start time in s, mono float32 chunk at `sr`) pieces of a file, keeping memory flat.

    Files soundfile cannot read are streamed through an ffmpeg pipe, chunk by chunk.
    """
    path = Path(path)
    _check_path(path)
    chunk = int(round(chunk_seconds * sr))
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        info = None
    if info is None:
        yield from _stream_ffmpeg(path, sr, chunk)
        return
    if info.frames == 0:
        raise AudioError(path, "contains no samples (zero-length audio)")
    block = int(round(chunk_seconds * info.samplerate))
    start = 0
    try:
        for raw in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            x = resample(_to_mono(raw), info.samplerate, sr)
            if not np.all(np.isfinite(x)):
                raise AudioError(path, f"contains NaN or infinite samples (at {start / sr:.1f} s)")
            yield start / sr, x
            start += len(x)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(path, f"corrupt or truncated audio after {start / sr:.1f} s ({err})") from None


def crop_or_pad(x: np.ndarray, length: int, *, random: np.random.Generator | None = None) -> np.ndarray:
    """Fixed-length view for batching: random (training) or centre-free leading crop, repeat-padding short clips."""
    n = len(x)
    if n == length:
        return x
    if n > length:
        start = int(random.integers(0, n - length + 1)) if random is not None else 0
        return x[start:start + length]
    reps = int(np.ceil(length / max(n, 1)))
    return np.tile(x, reps)[:length]


def chunk_signal(x: np.ndarray, chunk: int, hop: int | None = None, min_last: int | None = None) -> list[tuple[int, np.ndarray]]:
    """Cut a signal into (start sample, piece) windows; a short tail shorter than `min_last` joins the previous piece."""
    hop = hop or chunk
    min_last = chunk // 4 if min_last is None else min_last
    pieces = []
    for start in range(0, max(len(x), 1), hop):
        piece = x[start:start + chunk]
        if pieces and len(piece) < min_last:
            break
        pieces.append((start, piece))
        if start + chunk >= len(x):
            break
    return pieces


def write_audio(path: str | Path, x: np.ndarray, sr: int = DEFAULT_SR) -> None:
    """Write float audio (clipped to [-1, 1]); format from the suffix (FLAC for .flac)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1.0, 1.0).astype(np.float32), sr)
