"""Audio input: any file soundfile reads (wav, flac, ogg, mp3 with recent libsndfile) and, through
ffmpeg when it is installed, anything ffmpeg decodes (m4a, opus, aac, webm, ...). Always returns mono
float32 at the requested rate. Every failure is an `AudioError` naming the file and the reason.

One decoding path serves both `load_audio` (whole file) and `iter_chunks` (streaming): blocks are read
from soundfile or an ffmpeg pipe, resampled as one continuous stream (no seams at block edges) and
checked as they come (NaN, truncation), so memory stays flat and a too-long file is refused early.

ffmpeg reads only local files and only plain audio containers (`FFMPEG_FORMATS`): a playlist, concat list
or manifest (which would make it read other files or URLs) is refused with one reason, whatever it names.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from spoofrl.errors import AudioError

DEFAULT_SR = 16000
# Files longer than this are refused by `load_audio`; use `iter_chunks` to stream them instead.
DEFAULT_MAX_SECONDS = 3 * 3600.0
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".webm", ".aiff", ".aif", ".au"}
# A file decoding to less than this share of the frames its header announces is truncated (compressed
# formats, e.g. mp3 with a Xing header, announce a length that may be off by a frame or two).
MIN_DECODED_SHARE = 0.99
# `load_audio` reads this many seconds at a time (bounds memory before the length limit is checked).
LOAD_BLOCK_SECONDS = 60.0
_SF_ERRORS = (sf.LibsndfileError, RuntimeError)
# libsndfile logs e.g. "data : 44100 (should be 22028)" when a WAV/AIFF header promises more than the file holds.
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Sizes that streaming writers (ffmpeg or sox into a pipe) put in a header they cannot seek back to fix.
_UNKNOWN_SIZE_MIN = 0x7FFFF000
# The ffmpeg demuxers a user file may be read with (`-format_whitelist`, with `-protocol_whitelist file`):
# plain audio (or audio/video) containers that hold their samples themselves. Refused is every demuxer that
# opens other inputs (playlists: hls, dash, webm_dash_manifest; lists: concat; image2, lavfi, sdp, rtp, rtsp,
# devices, ...): a playlist uploaded as `a.wav` would otherwise make ffmpeg read (and the server score) a
# server-side file or a URL. 'mov' matches "mov,mp4,m4a,3gp,3g2,mj2" (external tracks, drefs, stay off: its
# enable_drefs option defaults to false); 'matroska' matches "matroska,webm" (opus in ogg goes to 'ogg').
FFMPEG_FORMATS = ("wav", "w64", "flac", "ogg", "mp3", "mov", "matroska", "aac", "aiff", "au", "caf", "amr",
                  "ac3", "eac3", "dts", "wv", "ape", "tta", "asf", "mpc", "mpc8", "voc", "g722", "gsm", "mpegts")
# The one reason for a refused format: it never depends on what the file names (existing file, missing file, URL).
_REFUSED = ("not a plain audio file (ffmpeg format '{}' is refused: playlists, concat lists and network formats "
            "are not read)")
_REFUSED_OPEN = ("not a plain audio file (it would make ffmpeg open another file or address: playlists, concat "
                 "lists and network formats are not read)")
# ffmpeg logs "[hls @ 0x55d2...] Format not on whitelist 'wav,...'": the format is the context's name.
_NOT_WHITELISTED = re.compile(r"^\[([\w,.-]+) @ (?:0x)?[0-9a-fA-F]+\] Format not on whitelist", re.MULTILINE)


# --------------------------------------------------------------------------------------------- checks

def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def _soundfile_info(path: Path):
    """soundfile's header info, or None when the file goes to ffmpeg: a format libsndfile cannot read,
    or MP3 while ffmpeg is installed. Why MP3 goes to ffmpeg: libsndfile 1.2 decodes MP3 wrongly when it
    is read in blocks (the samples depend on the block size), and its libmpg123 prints notes on stderr
    for damaged files; the suffix is checked first so that ffmpeg-bound files never reach libmpg123.
    """
    has_ffmpeg = shutil.which("ffmpeg") is not None
    if path.suffix.lower() == ".mp3" and has_ffmpeg:
        return None
    try:
        info = sf.info(str(path))
    except _SF_ERRORS:
        return None
    return None if info.format == "MP3" and has_ffmpeg else info


def _check_header(path: Path, info) -> None:
    """Refuse what the header alone shows: no samples, or a WAV/AIFF cut short of its announced data."""
    if info.frames == 0:
        raise AudioError(path, "contains no samples (zero-length audio)")
    short = _SHORT_CHUNK.search(info.extra_info or "")
    if short:
        announced, present = int(short.group(1)), int(short.group(2))
        if 0 < announced < _UNKNOWN_SIZE_MIN and present < announced * MIN_DECODED_SHARE:
            raise AudioError(path, f"truncated: the header announces {announced} bytes of audio, the file holds "
                                   f"{present}")


def _check_finite(path: Path, x: np.ndarray, start_seconds: float) -> None:
    if not np.all(np.isfinite(x)):
        raise AudioError(path, f"contains NaN or infinite samples (at {start_seconds:.1f} s)")


def _to_mono(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.ndim == 2 else x


# --------------------------------------------------------------------------------------------- resampling

def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling (soxr, high quality)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    import soxr
    return soxr.resample(x.astype(np.float32, copy=False), sr_in, sr_out, quality="HQ").astype(np.float32)


def _resample_stream(blocks: Iterator[np.ndarray], sr_in: int, sr_out: int) -> Iterator[np.ndarray]:
    """Resample consecutive blocks as one signal (same output as resampling the whole file at once)."""
    if sr_in == sr_out:
        yield from blocks
        return
    import soxr
    stream = soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality="HQ")
    for block in blocks:
        out = stream.resample_chunk(block)
        if out.size:
            yield out
    tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
    if tail.size:
        yield tail


def _fixed_size(blocks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of blocks into pieces of exactly `size` samples (the last one may be shorter)."""
    pending: list[np.ndarray] = []
    held = 0
    for block in blocks:
        pending.append(block)
        held += block.size
        if held < size:
            continue
        joined = np.concatenate(pending)
        cut = held - held % size
        yield from (joined[i:i + size] for i in range(0, cut, size))
        pending, held = [joined[cut:]], held - cut
    if held:
        yield np.concatenate(pending)


# --------------------------------------------------------------------------------------------- decoders

def _soundfile_blocks(path: Path, info, block_seconds: float) -> Iterator[np.ndarray]:
    """Mono float32 blocks at the file's own rate. A read that ends early is a truncated file."""
    block = max(1, int(round(block_seconds * info.samplerate)))
    done = 0
    try:
        with sf.SoundFile(str(path)) as fh:
            while True:
                # Why not sf.blocks: it sizes blocks from the header and pads a short read with stale data.
                raw = fh.read(block, dtype="float32", always_2d=True)
                if len(raw):
                    yield _to_mono(raw)
                    done += len(raw)
                if len(raw) < block:
                    break
    except _SF_ERRORS as err:
        raise AudioError(path, f"corrupt or truncated audio after {done / info.samplerate:.1f} s ({err})") from None
    # An MP3 header's frame count is only an estimate (libsndfile issue #1001): no truncation check there.
    if info.format != "MP3" and done < info.frames * MIN_DECODED_SHARE:
        raise AudioError(path, f"truncated: the header announces {info.frames} frames, only {done} could be read")


def _ffmpeg_input(path: Path) -> str:
    """How ffmpeg/ffprobe are told the file: `file:` + absolute path, so that a name starting with `-` is not
    read as an option and one containing `:` not as a protocol."""
    return "file:" + os.path.abspath(path)


def _ffmpeg_input_args(path: Path) -> list[str]:
    """The input part of every ffmpeg/ffprobe command on a user file: only the local file protocol and only
    the plain audio demuxers of `FFMPEG_FORMATS`, then `-i` the file."""
    return ["-protocol_whitelist", "file", "-format_whitelist", ",".join(FFMPEG_FORMATS), "-i", _ffmpeg_input(path)]


def _ffmpeg_reason(path: Path, stderr: bytes) -> str:
    """ffmpeg's complaint as a short reason (its lines repeat the file name, which our message already has)."""
    lines = [line.replace(f"{_ffmpeg_input(path)}: ", "").strip()
             for line in stderr.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    text = "\n".join(lines)
    if "Format not on whitelist" in text:
        refused = _NOT_WHITELISTED.search(text)
        return _REFUSED.format(refused.group(1) if refused else "unknown")
    if re.search(r"Protocol '[^']*' not on whitelist", text):  # a second guard: the formats above open nothing
        return _REFUSED_OPEN
    if "does not contain any stream" in text or "Output file is empty" in text:
        return "no audio stream in the file (not an audio file)"
    codec = re.search(r"Decoder \(codec ([^)]*)\) not found", text)
    if codec:
        named = f" ({codec.group(1)})" if codec.group(1) != "none" else ""
        return f"unreadable codec{named}: ffmpeg has no decoder for it"
    return f"not a readable audio file ({lines[-1] if lines else 'ffmpeg failed'})"


def _ffmpeg_blocks(path: Path, sr: int, block_seconds: float) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `sr` decoded by ffmpeg into a pipe: memory stays flat for hour-long files."""
    if shutil.which("ffmpeg") is None:
        raise AudioError(path, "not readable by soundfile, and ffmpeg (needed for mp3/m4a/opus/...) is not installed")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", *_ffmpeg_input_args(path), "-f", "f32le", "-ac", "1", "-ar", str(sr),
           "-"]
    block_bytes = 4 * max(1, int(round(block_seconds * sr)))
    # stderr goes to a file, not a pipe: a chatty decoder could otherwise fill the pipe and block.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
        done = 0
        try:
            while data := proc.stdout.read(block_bytes):
                x = np.frombuffer(data[:len(data) // 4 * 4], dtype=np.float32).copy()
                yield x
                done += x.size
            if proc.wait() != 0:
                errors.seek(0)
                reason = _ffmpeg_reason(path, errors.read())
                if done:
                    raise AudioError(path, f"corrupt or truncated audio after {done / sr:.1f} s ({reason})")
                raise AudioError(path, reason)
        finally:  # also when the caller stops early (e.g. a length limit): do not leave ffmpeg running
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def _decoded_blocks(path: Path, info, sr: int, block_seconds: float) -> Iterator[np.ndarray]:
    """Mono float32 blocks at `sr` (variable sizes), from soundfile when it reads the file (`info`, from
    `_soundfile_info`), else ffmpeg (`info` None)."""
    if info is None:
        return _ffmpeg_blocks(path, sr, block_seconds)
    _check_header(path, info)
    if info.format == "MP3":  # no ffmpeg: one read of the whole file is the one libsndfile gets right
        block_seconds = info.frames / info.samplerate + 3600.0
    return _resample_stream(_soundfile_blocks(path, info, block_seconds), info.samplerate, sr)


def _ffprobe_info(path: Path) -> tuple[float, int, int] | None:
    """(duration, rate, channels) from ffprobe's reading of the container, None if it cannot tell."""
    if shutil.which("ffprobe") is None:
        return None
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels,duration:format=duration", "-of", "json", *_ffmpeg_input_args(path)]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise AudioError(path, _ffmpeg_reason(path, proc.stderr))
    probe = json.loads(proc.stdout or b"{}")
    streams = probe.get("streams") or []
    if not streams:
        raise AudioError(path, "no audio stream in the file (not an audio file)")
    duration = streams[0].get("duration") or (probe.get("format") or {}).get("duration")
    try:
        return float(duration), int(streams[0]["sample_rate"]), int(streams[0]["channels"])
    except (KeyError, TypeError, ValueError):
        return None  # e.g. a raw stream without a duration: count the samples instead


# --------------------------------------------------------------------------------------------- public API

def audio_info(path: str | Path) -> tuple[float, int, int]:
    """(duration in seconds, sample rate, channels) from the header, without decoding wav/flac/ogg/mp3.

    Formats only ffmpeg reads are probed with ffprobe (or decoded and counted, in flat memory, when it
    cannot tell). Zero-length, header-truncated and unreadable files raise `AudioError`.
    """
    path = Path(path)
    _check_path(path)
    info = _soundfile_info(path)
    if info is not None:
        _check_header(path, info)
        return info.frames / info.samplerate, info.samplerate, info.channels
    probed = _ffprobe_info(path)
    if probed is not None:
        return probed
    samples = sum(x.size for x in _ffmpeg_blocks(path, DEFAULT_SR, LOAD_BLOCK_SECONDS))
    if samples == 0:
        raise AudioError(path, "contains no samples (zero-length audio)")
    return samples / DEFAULT_SR, DEFAULT_SR, 1


def load_audio(path: str | Path, sr: int = DEFAULT_SR, *, allow_silent: bool = False,
               max_seconds: float | None = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Read `path` as mono float32 at `sr` Hz.

    Raises `AudioError` (naming the file) when it is missing, empty, not audio, in a codec nothing here
    decodes, truncated or corrupt, has no samples, NaN/infinite samples, only zeros (unless
    `allow_silent`), or is longer than `max_seconds` (None: no limit).
    """
    path = Path(path)
    _check_path(path)
    info = _soundfile_info(path)
    if info is not None and max_seconds is not None and info.frames / info.samplerate > max_seconds:
        raise AudioError(path, f"is {info.frames / info.samplerate / 3600:.2f} h long, over the limit of "
                               f"{max_seconds / 3600:.2f} h; score it in chunks (spoofrl detect streams long files)")
    limit = None if max_seconds is None else int(max_seconds * sr)
    pieces, n = [], 0
    for block in _decoded_blocks(path, info, sr, LOAD_BLOCK_SECONDS):
        _check_finite(path, block, n / sr)
        pieces.append(block)
        n += block.size
        if limit is not None and n > limit:  # stop decoding: the rest could be hours of audio
            raise AudioError(path, f"is longer than the limit of {max_seconds / 3600:.2f} h; score it in chunks "
                                   f"(spoofrl detect streams long files)")
    if n == 0:
        raise AudioError(path, "contains no samples (zero-length audio)")
    x = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    if not allow_silent and not np.any(x):
        raise AudioError(path, "all samples are zero (silent file)")
    return x.astype(np.float32, copy=False)


def iter_chunks(path: str | Path, chunk_seconds: float, sr: int = DEFAULT_SR) -> Iterator[tuple[float, np.ndarray]]:
    """Stream (start time in s, mono float32 chunk at `sr`) pieces of a file, keeping memory flat.

    Every chunk holds exactly `chunk_seconds` of audio but the last. Errors (missing, not audio, NaN,
    truncated, ...) are `AudioError`s, raised when the stream reaches them.
    """
    path = Path(path)
    _check_path(path)
    size = max(1, int(round(chunk_seconds * sr)))
    start = 0
    for piece in _fixed_size(_decoded_blocks(path, _soundfile_info(path), sr, chunk_seconds), size):
        _check_finite(path, piece, start / sr)
        yield start / sr, piece
        start += piece.size
    if start == 0:
        raise AudioError(path, "contains no samples (zero-length audio)")


# --------------------------------------------------------------------------------------------- helpers

def crop_or_pad(x: np.ndarray, length: int, *, random: np.random.Generator | None = None) -> np.ndarray:
    """Fixed-length view for batching: a random (training) or leading crop; short clips are repeat-padded."""
    n = len(x)
    if n == length:
        return x
    if n > length:
        start = int(random.integers(0, n - length + 1)) if random is not None else 0
        return x[start:start + length]
    reps = int(np.ceil(length / max(n, 1)))
    return np.tile(x, reps)[:length]


def chunk_signal(x: np.ndarray, chunk: int, hop: int | None = None,
                 min_last: int | None = None) -> list[tuple[int, np.ndarray]]:
    """Cut a signal into (start sample, piece) windows of `chunk` samples every `hop` (default `chunk`).

    The windows cover the whole signal: a tail shorter than `min_last` (default chunk / 4) is appended
    to the previous window rather than scored on its own, so no sample is dropped.
    """
    hop = hop or chunk
    min_last = chunk // 4 if min_last is None else min_last
    pieces: list[tuple[int, np.ndarray]] = []
    for start in range(0, max(len(x), 1), hop):
        if pieces and len(x) - start < min_last:
            first = pieces[-1][0]
            pieces[-1] = (first, x[first:])
            break
        pieces.append((start, x[start:start + chunk]))
        if start + chunk >= len(x):
            break
    return pieces


def write_audio(path: str | Path, x: np.ndarray, sr: int = DEFAULT_SR) -> None:
    """Write float audio (clipped to [-1, 1]); format from the suffix (FLAC for .flac)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1.0, 1.0).astype(np.float32), sr)
