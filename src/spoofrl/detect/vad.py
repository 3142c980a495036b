"""Voice activity detection for `detect` and `serve`: how much of a clip is speech.

The detector is Silero VAD (PyPI package `silero-vad`, pinned to 6.2.3, MIT licence), whose weights ship inside
the package (`silero_vad/data/silero_vad.jit`, a TorchScript file): nothing is downloaded. It gives one speech
probability per frame of 512 samples at 16 kHz (32 ms), seeing the 64 samples before the frame as context and
carrying an LSTM state from frame to frame. Other rates are resampled to 16 kHz (spoofrl.audio.resample).

A frame is speech when its probability is >= `SPEECH_THRESHOLD` (0.5, Silero's own default) and it belongs to a
run of at least `MIN_RUN_FRAMES` such frames (8 frames = 256 ms, about Silero's own `min_speech_duration_ms`
of 250). The *speech share* of a stretch of audio is the duration of its speech frames over its duration (a
last partial frame is zero-padded and counts for the samples it holds). Why the run length: the model answers
"speech" for the first 100-160 ms of any sound that starts abruptly, such as a steady 150 Hz buzz, before its
state settles; on a 1 s buzz that alone is a share of 0.16, so short clips of non-speech would pass as speech.
No real speech was lost to it in the measurements (docs/detect.md): espeak-ng sentences lose 0-3 points of share.

How the packaged model is run. Only the TorchScript file is used: `import silero_vad` is avoided on purpose,
because its `model.py` calls `torch.set_num_threads(1)` at import (that would slow the detector itself down
for the whole process) and its audio helpers want torchaudio. The file's top module keeps its recurrent state
in attributes (not thread-safe, and it runs one 32 ms frame per call: 0.56 s per minute of audio on 2 cores,
7-9 times the batched run below).
Its inner `_model` is stateless: STFT -> convolutional encoder (each frame on its own) -> an LSTM cell across
frames -> a 1x1 convolution and a sigmoid. So the frames of a chunk go through the STFT and encoder as one
batch, the LSTM cell's weights run as a sequence LSTM over them (same gates, same numbers up to float
rounding: tests/test_vad.py compares with the package's own per-frame forward), and the head is batched
again; the state (LSTM h and c, the last 64 samples, samples short of a frame) lives in a `SpeechStream`
object per file, never in the shared model. One model per process, loaded on first use behind a lock; many
threads (the HTTP server's requests) may run it at once, since nothing in it is written to while scoring.

Streaming: `SpeechStream.feed(chunk)` runs the frames a chunk completes and carries the state into the next
chunk, so a file fed chunk by chunk gets the same frame probabilities as the whole file at once (up to float
rounding when chunks are resampled: each chunk is resampled on its own). Resetting at every chunk instead
would restart the LSTM cold every few seconds and cut speech runs at chunk edges: measured on a minute of
speech in 4 s chunks it flipped 39 of 1875 frame decisions and moved the share from 0.909 to 0.865.

Cost (2 CPU cores): about 0.06 s of VAD per minute of 16 kHz audio (0.1 s at 22.05 kHz, resampling included),
plus about 0.7 s to load the model once per process; in `detect` with the bundled model the VAD is about a
sixth of the time (docs/detect.md).
"""
from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from spoofrl.errors import SpoofrlError

SILERO_VERSION = "6.2.3"
VAD_SAMPLE_RATE = 16000
FRAME = 512  # samples per decision at 16 kHz (32 ms)
CONTEXT = 64  # samples before a frame that the model sees with it
SPEECH_THRESHOLD = 0.5  # a frame is speech when its probability is >= this (Silero's default)
MIN_RUN_FRAMES = 8  # ... and it lies in a run of at least this many such frames (256 ms)
# Frames per forward pass: bounds memory for long chunks (about 10 MB of activations); the LSTM state carries
# across passes, so the split does not change the result.
MAX_FRAMES_PER_PASS = 1024
INSTALL_HINT = f"pip install silero-vad=={SILERO_VERSION} --no-deps (it needs only torch and packaging)"
DESCRIPTION = (f"silero-vad {SILERO_VERSION} (packaged weights), {FRAME}-sample frames at {VAD_SAMPLE_RATE} Hz, "
               f"speech when p >= {SPEECH_THRESHOLD:g} in runs of at least {MIN_RUN_FRAMES} frames "
               f"({MIN_RUN_FRAMES * FRAME * 1000 // VAD_SAMPLE_RATE} ms)")


def weights_path() -> Path:
    """The TorchScript file inside the installed silero-vad package, found without importing the package."""
    spec = importlib.util.find_spec("silero_vad")  # a top-level name: locating it runs none of its code
    if spec is None or not spec.submodule_search_locations:
        raise SpoofrlError(f"the voice activity detector needs the silero-vad package: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.jit"
    if not path.is_file():
        raise SpoofrlError(f"{path}: silero-vad is installed without its model file; reinstall it: {INSTALL_HINT}")
    return path


class SileroVAD:
    """The packaged Silero model, run batched over frames; holds no per-stream state (safe to share)."""

    def __init__(self, path: Path):
        import warnings

        import torch
        with warnings.catch_warnings():  # torch 2.13 calls torch.jit.load deprecated; it still loads the file
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.load(str(path), map_location="cpu").eval()
        try:
            inner = scripted._model
            self._stft, self._encoder = inner.stft, inner.encoder
            cell, self._head = inner.decoder.rnn, inner.decoder.decoder
            hidden = int(cell.weight_hh.shape[1])
            lstm = torch.nn.LSTM(int(cell.weight_ih.shape[1]), hidden)
            with torch.no_grad():  # an LSTM cell unrolled is an LSTM: same gate order (i, f, g, o), same biases
                lstm.weight_ih_l0.copy_(cell.weight_ih)
                lstm.weight_hh_l0.copy_(cell.weight_hh)
                lstm.bias_ih_l0.copy_(cell.bias_ih)
                lstm.bias_hh_l0.copy_(cell.bias_hh)
        except (AttributeError, RuntimeError) as err:
            raise SpoofrlError(f"{path}: not the layout of silero-vad {SILERO_VERSION}'s model ({err}); "
                               f"install that version: {INSTALL_HINT}") from None
        self._lstm = lstm.eval()
        self.hidden = hidden
        self.path = path

    def initial_state(self):
        """LSTM state (h, c) before the first frame: zeros, as the packaged model starts."""
        import torch
        return torch.zeros(1, 1, self.hidden), torch.zeros(1, 1, self.hidden)

    def frame_probabilities(self, frames: np.ndarray, state) -> tuple[np.ndarray, tuple]:
        """Speech probability of each row of `frames` (N x (CONTEXT + FRAME) float32 at 16 kHz, in order),
        starting from `state`; returns the probabilities and the state after the last frame."""
        import torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), MAX_FRAMES_PER_PASS):
                x = torch.from_numpy(np.ascontiguousarray(frames[i:i + MAX_FRAMES_PER_PASS], dtype=np.float32))
                features = self._encoder(self._stft(x))  # (n, hidden, 1): each frame on its own
                h, state = self._lstm(features.squeeze(-1).unsqueeze(1), state)  # frames in sequence, batch of 1
                p = self._head(h.squeeze(1).unsqueeze(-1))  # (n, 1, 1)
                out.append(p.reshape(-1).numpy().astype(np.float64))
        return (np.concatenate(out) if out else np.zeros(0)), state


_model: SileroVAD | None = None
_model_lock = threading.Lock()


def get_vad() -> SileroVAD:
    """The process's one VAD model, loaded on first use (thread-safe)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                _model = SileroVAD(weights_path())
    return _model


@dataclass
class SpeechCount:
    """Speech found in a stretch of audio: seconds judged speech, out of seconds judged."""
    speech_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def share(self) -> float | None:
        """Speech share in [0, 1]; None when nothing was judged."""
        return min(1.0, self.speech_seconds / self.seconds) if self.seconds > 0 else None

    def __iadd__(self, other: SpeechCount) -> SpeechCount:
        self.speech_seconds += other.speech_seconds
        self.seconds += other.seconds
        return self


class SpeechStream:
    """VAD of one signal fed in consecutive pieces (e.g. the chunks `detect` reads): the LSTM state, the last
    CONTEXT samples, the samples short of a whole frame and a run of speech frames still open carry from one
    piece to the next.

    The SpeechCount that `feed` returns for a piece gets its speech seconds when the runs through it are known
    to be long enough, which may be during a later piece (a run that goes on) or at `finish`: read the counts
    after `finish`."""

    def __init__(self, sr: int, threshold: float = SPEECH_THRESHOLD, min_run_frames: int = MIN_RUN_FRAMES,
                 vad: SileroVAD | None = None):
        self.sr = int(sr)
        self.threshold = threshold
        self.min_run_frames = max(1, int(min_run_frames))
        self.vad = vad or get_vad()
        self._state = self.vad.initial_state()
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._open_run: list[tuple[SpeechCount, float]] = []  # (piece's count, seconds) of a run still going on
        self._open_frames = 0
        self.total = SpeechCount()
        self.non_finite = 0  # frames whose probability is NaN (samples of absurd magnitude); judged not speech
        self.probabilities: list[np.ndarray] | None = None  # set to [] to keep every frame's probability

    def _close_run(self) -> None:
        """The open run of speech frames ended: credit it where its frames were if it is long enough."""
        if self._open_frames >= self.min_run_frames:
            for count, seconds in self._open_run:
                count.speech_seconds += seconds
                self.total.speech_seconds += seconds
        self._open_run, self._open_frames = [], 0

    def _run(self, samples: np.ndarray, last_real: int = FRAME) -> SpeechCount:
        """Judge whole frames in `samples` (a multiple of FRAME long); the last one holds `last_real` real samples."""
        count = SpeechCount()
        n = len(samples) // FRAME
        if n == 0:
            return count
        body = samples.reshape(n, FRAME)
        before = np.concatenate([self._context[None, :], body[:-1, -CONTEXT:]], axis=0)
        p, self._state = self.vad.frame_probabilities(np.concatenate([before, body], axis=1), self._state)
        self._context = body[-1, -CONTEXT:].copy()
        if self.probabilities is not None:
            self.probabilities.append(p)
        seconds = np.full(n, FRAME / VAD_SAMPLE_RATE)
        seconds[-1] = last_real / VAD_SAMPLE_RATE
        count.seconds = float(seconds.sum())
        self.total.seconds += count.seconds
        self.non_finite += int(np.count_nonzero(~np.isfinite(p)))
        is_speech = p >= self.threshold
        # Runs of equal decisions in this piece: [start, end) with the same is_speech.
        edges = np.concatenate([[0], np.flatnonzero(np.diff(is_speech)) + 1, [n]])
        for start, end in pairwise(edges):
            if not is_speech[start]:
                self._close_run()
                continue
            self._open_run.append((count, float(seconds[start:end].sum())))
            self._open_frames += int(end - start)
        return count

    def feed(self, wave: np.ndarray) -> SpeechCount:
        """Add the next piece (mono, at `sr`); returns what the frames it completed hold."""
        from spoofrl.audio import resample
        x = resample(np.asarray(wave, dtype=np.float32), self.sr, VAD_SAMPLE_RATE) if self.sr != VAD_SAMPLE_RATE \
            else np.asarray(wave, dtype=np.float32)
        x = np.concatenate([self._pending, x]) if self._pending.size else x
        whole = len(x) - len(x) % FRAME
        self._pending = x[whole:].copy()
        return self._run(x[:whole])

    def finish(self) -> SpeechCount:
        """Judge the samples short of a frame at the end (zero-padded); returns what they hold."""
        rest, self._pending = self._pending, np.zeros(0, np.float32)
        count = (self._run(np.concatenate([rest, np.zeros(FRAME - rest.size, np.float32)]), last_real=rest.size)
                 if rest.size else SpeechCount())
        self._close_run()
        return count

    @property
    def share(self) -> float | None:
        return self.total.share


def speech_probabilities(wave: np.ndarray, sr: int) -> np.ndarray:
    """Speech probability of every 32 ms frame of `wave` (mono, at `sr`); the last partial frame zero-padded."""
    stream = SpeechStream(sr)
    stream.probabilities = []
    stream.feed(wave)
    stream.finish()
    return np.concatenate(stream.probabilities) if stream.probabilities else np.zeros(0)


def speech_share(wave: np.ndarray, sr: int, threshold: float = SPEECH_THRESHOLD,
                 min_run_frames: int = MIN_RUN_FRAMES) -> float:
    """Share (0..1) of `wave`'s duration in frames whose speech probability is >= `threshold`, in runs of at
    least `min_run_frames` such frames (1: every such frame counts)."""
    stream = SpeechStream(sr, threshold, min_run_frames)
    stream.feed(wave)
    stream.finish()
    return stream.share or 0.0
