"""Streamed, chunked scoring of audio files.

Each file is read in chunks of `chunk_seconds` (spoofrl.audio.iter_chunks: memory stays flat however
long the file is); chunks from one or many files are batched through the model
(spoofrl.inference.score_waveforms). A short tail (under a quarter of a chunk) joins the chunk before
it, so no chunk is scored on a few frames only.

File score = duration-weighted mean of the chunk scores (raw log-odds). Why the mean and not the sum:
chunks of one file share speaker, channel and generator, so they are far from independent evidence; a
sum would grow with file length and be wildly over-confident, while the mean stays on the scale of one
chunk, the scale a calibration was fitted on. Calibration is affine, so calibrating the mean equals the
mean of calibrated chunk scores. A partly fake file can still average out as bona fide: the per-chunk
timeline shows where its spoofed parts are.

Speech gate: a voice activity detector (spoofrl.detect.vad, Silero VAD) runs on every chunk as it is read,
carrying its state from chunk to chunk, and counts the seconds of speech per chunk and per file. A file whose
speech share is below `min_speech_share` gets verdict `no-speech` and no score (a deepfake detector's score on
noise, music or hum says nothing about a voice), unless `score_without_speech` is set: then it is scored as
usual and a note says how little of it is speech. `no-speech` is an outcome, not an error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from spoofrl.audio import iter_chunks
from spoofrl.data.manifest import BONAFIDE, SPOOF
from spoofrl.detect.inputs import InputFile
from spoofrl.detect.model import LoadedModel
from spoofrl.detect.vad import SpeechCount, SpeechStream, get_vad
from spoofrl.errors import AudioError, SpoofrlError

# Verdicts: the two labels (one definition, spoofrl.data.manifest), no speech to score, or a per-file error.
ERROR = "error"
NO_SPEECH = "no-speech"
VERDICTS = (BONAFIDE, SPOOF, NO_SPEECH, ERROR)
# Files with a smaller share of speech (spoofrl.detect.vad) are not scored. Measured (docs/detect.md): espeak-ng
# sentences 0.75-0.92 (also at 1 % of the level, with noise at 6 dB SNR, or band-limited to 8 kHz), white / pink /
# brown noise, 50 Hz hum with silence, chords, a melody, beeps, the tests' buzz and hiss 0.000. Below 5 % a file's
# score (the mean over its chunks) is mostly the score of what is not speech; 8 s of speech in 40 s is 0.17.
DEFAULT_MIN_SPEECH_SHARE = 0.05
# Shorter files are refused: a few STFT frames say nothing about a generator (and some encoders need more).
MIN_SECONDS = 0.05
# A tail shorter than this fraction of a chunk is merged into the previous chunk.
MIN_TAIL_FRACTION = 0.25
# Chunk length bounds. Below half a second a chunk holds too few frames for a detector trained on
# seconds-long crops (scores become noise); above ten minutes one chunk stops being "streaming".
MIN_CHUNK_SECONDS, MAX_CHUNK_SECONDS = 0.5, 600.0
INTERRUPTED = "not scored: interrupted (Ctrl-C) before this file was finished"


@dataclass
class DetectOptions:
    threshold: float = 0.0  # bona fide when score >= threshold (0 = even odds; see docs/detect.md)
    chunk_seconds: float = 4.0  # length of the scored pieces and of the timeline's steps
    batch_size: int = 16  # chunks scored per forward pass
    max_seconds: float | None = None  # refuse longer files (the HTTP service sets this)
    show_progress: bool = True
    min_speech_share: float = DEFAULT_MIN_SPEECH_SHARE  # below it: verdict no-speech, not scored
    score_without_speech: bool = False  # score such files anyway (verdict from the score, with a note)

    def validate(self) -> "DetectOptions":
        """Refuse settings that would give meaningless scores (named as the CLI options are)."""
        if not math.isfinite(self.threshold):
            raise SpoofrlError(f"--threshold must be a finite number, got {self.threshold}")
        if not MIN_CHUNK_SECONDS <= self.chunk_seconds <= MAX_CHUNK_SECONDS:
            raise SpoofrlError(f"--chunk-seconds must be between {MIN_CHUNK_SECONDS:g} and "
                               f"{MAX_CHUNK_SECONDS:g}, got {self.chunk_seconds:g}")
        if self.batch_size < 1:
            raise SpoofrlError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.min_speech_share <= 1.0:  # also refuses NaN
            raise SpoofrlError(f"--min-speech-share must be between 0 and 1, got {self.min_speech_share:g}")
        return self


class DetectInterrupted(KeyboardInterrupt):
    """Ctrl-C during `detect_files`, carrying the results: scores of the files finished before it, the
    INTERRUPTED error for the others. Still a KeyboardInterrupt, so callers that do not care stop as usual."""

    def __init__(self, results: list["FileResult"]):
        super().__init__("interrupted")
        self.results = results


@dataclass
class FileResult:
    """Outcome for one input: scores (or no-speech, unscored), or an error and its one-line reason."""
    path: str
    duration: float | None = None
    score: float | None = None
    score_type: str = "log-odds"
    p_spoof: float | None = None
    speech_share: float | None = None  # share of the duration that is speech (0..1); None for errors
    verdict: str = ERROR
    error: str | None = None
    note: str | None = None  # why a file is no-speech, or that it was scored with little speech
    chunks: list[dict] = field(default_factory=list)  # timeline; empty when the file is one chunk

    @property
    def failed(self) -> bool:
        return self.verdict == ERROR

    @property
    def no_speech(self) -> bool:
        return self.verdict == NO_SPEECH

    def to_dict(self) -> dict:
        return {"path": self.path, "duration": self.duration, "score": self.score, "score_type": self.score_type,
                "p_spoof": self.p_spoof, "speech_share": self.speech_share, "verdict": self.verdict,
                "error": self.error, "note": self.note, "chunks": self.chunks}


@dataclass
class _FileState:
    """Running state of one file while its chunks are being scored."""
    item: InputFile
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    raw: list[float | None] = field(default_factory=list)
    heard_sound: bool = False
    peak: float = 0.0  # largest |sample| seen (named when the model's score is not finite)
    speech: SpeechStream | None = None  # the file's VAD, fed chunk by chunk
    chunk_speech: list[SpeechCount] = field(default_factory=list)  # speech found in each chunk
    error: str | None = None
    finished: bool = False  # every chunk read (and queued for scoring, unless the file failed)


def _round(x: float, digits: int = 6) -> float:
    return float(f"{float(x):.{digits}g}")


def _chunks_with_tail_merged(path: str, chunk_seconds: float, sr: int,
                             max_seconds: float | None) -> Iterator[tuple[float, np.ndarray]]:
    """iter_chunks, holding one chunk back so a short last piece can join it."""
    min_tail = int(MIN_TAIL_FRACTION * chunk_seconds * sr)
    held: tuple[float, np.ndarray] | None = None
    for start, wave in iter_chunks(path, chunk_seconds, sr):
        if max_seconds is not None and start + len(wave) / sr > max_seconds:
            raise AudioError(path, f"longer than the limit of {max_seconds:g} s")
        if held is not None and len(wave) < min_tail:
            held = (held[0], np.concatenate([held[1], wave]))
            continue
        if held is not None:
            yield held
        held = (start, wave)
    if held is not None:
        yield held


class _BatchScorer:
    """Queues chunks from any number of files and scores them batch_size at a time."""

    def __init__(self, loaded: LoadedModel, batch_size: int):
        self.loaded = loaded
        self.batch_size = max(1, batch_size)
        self.pending: list[tuple[_FileState, int, np.ndarray]] = []

    def add(self, state: _FileState, index: int, wave: np.ndarray) -> None:
        self.pending.append((state, index, wave))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def forget(self, state: _FileState) -> None:
        self.pending = [p for p in self.pending if p[0] is not state]

    def flush(self) -> None:
        if not self.pending:
            return
        from spoofrl.inference import score_waveforms
        waves = [wave for _, _, wave in self.pending]
        with self.loaded.lock:
            raw = score_waveforms(self.loaded.model, waves, device=self.loaded.device, batch_size=self.batch_size,
                                  exact_lengths=True)  # a file's score must not depend on its batch-mates
        for (state, index, _), value in zip(self.pending, raw):
            state.raw[index] = float(value)
        self.pending = []


def _next_chunk(chunks: Iterator[tuple[float, np.ndarray]], state: _FileState) -> tuple[float, np.ndarray] | None:
    """The next decoded chunk, or None at the end or on a decoding problem (then recorded as the file's error).

    Only decoding is guarded here: a failure of the model while scoring is not the file's fault and propagates.
    """
    try:
        return next(chunks)
    except StopIteration:
        return None
    except AudioError as err:
        state.error = err.reason
    except (OSError, ValueError, RuntimeError, MemoryError) as err:  # decoder failures we did not foresee
        state.error = f"could not decode ({type(err).__name__}: {err})".replace("\n", " ")
    return None


def _whole_file_problem(state: _FileState) -> str | None:
    """Problems only visible once every chunk has been read."""
    if not state.raw:
        return "contains no samples (zero-length audio)"
    if not state.heard_sound:
        return "all samples are zero (silent file): nothing to score"
    if state.ends[-1] < MIN_SECONDS:
        return f"too short to score ({state.ends[-1] * 1000:.0f} ms; need at least {MIN_SECONDS * 1000:.0f} ms)"
    return None


def _read_file(state: _FileState, scorer: _BatchScorer, opts: DetectOptions, sr: int) -> None:
    """Stream one file's chunks into the scorer; decoding problems become the file's error."""
    if state.item.problem is not None:
        state.error = state.item.problem
        return
    chunks = _chunks_with_tail_merged(state.item.path, opts.chunk_seconds, sr, opts.max_seconds)
    state.speech = SpeechStream(sr)
    while (chunk := _next_chunk(chunks, state)) is not None:
        start, wave = chunk
        state.starts.append(start)
        state.ends.append(start + len(wave) / sr)
        state.raw.append(None)
        state.heard_sound = state.heard_sound or bool(np.any(wave))
        state.peak = max(state.peak, float(np.max(np.abs(wave)))) if wave.size else state.peak
        state.chunk_speech.append(state.speech.feed(wave))
        scorer.add(state, len(state.raw) - 1, wave)
    if state.error is None:
        state.error = _whole_file_problem(state)
    if state.error is None:
        state.chunk_speech[-1] += state.speech.finish()  # the samples short of a whole VAD frame
        if state.speech.non_finite and not opts.score_without_speech:
            state.error = _vad_non_finite_problem(state)
        elif _is_no_speech(_speech_share(state), opts):
            scorer.forget(state)  # its chunks still waiting for a batch need no scoring (the share came last)
    if state.error is not None:
        scorer.forget(state)
    state.finished = True


def _vad_non_finite_problem(state: _FileState) -> str:
    """NaN speech probabilities: the speech share is unknown, so neither a verdict nor no-speech can be given."""
    hint = (f"the samples reach {state.peak:.3g} (audio should lie within [-1, 1])" if state.peak > 1e3
            else "the voice activity detector's model may be damaged")
    return (f"the voice activity detector gave non-finite speech probabilities for {state.speech.non_finite} "
            f"frame(s): not scored; {hint}")


def _speech_share(state: _FileState) -> float:
    """The file's speech share as reported (rounded, so the verdict agrees with the number shown)."""
    return round(state.speech.share or 0.0, 4)


def _is_no_speech(share: float, opts: DetectOptions) -> bool:
    return share < opts.min_speech_share and not opts.score_without_speech


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %"


def _non_finite_problem(state: _FileState, raw: np.ndarray) -> str | None:
    """A NaN or infinite chunk score is the file's error, never a verdict: NaN >= threshold is False, so it
    would silently read as 'spoof' (and bare NaN is not valid JSON). Causes: samples of absurd magnitude
    (float WAVs may hold values far outside [-1, 1] that overflow the features) or a damaged model."""
    bad = np.flatnonzero(~np.isfinite(raw))
    if not bad.size:
        return None
    at = state.starts[int(bad[0])]
    hint = (f"the samples reach {state.peak:.3g} (audio should lie within [-1, 1])" if state.peak > 1e3
            else "the model may be damaged (NaN/inf weights)")
    return (f"the model gave a non-finite score (NaN or infinite) for {bad.size} of {raw.size} chunk(s), first at "
            f"{at:.1f} s: not scored; {hint}")


def _verdict(score: float, threshold: float) -> str:
    return BONAFIDE if score >= threshold else SPOOF


def _finish(state: _FileState, loaded: LoadedModel, opts: DetectOptions) -> FileResult:
    result = FileResult(path=state.item.path, score_type=loaded.score_type)
    if state.error is not None:
        result.error = state.error
        # How much was read, except for an interrupted file, whose partial length would look like its duration.
        result.duration = _round(state.ends[-1], 6) if state.ends and state.error != INTERRUPTED else None
        return result
    share = _speech_share(state)
    chunk_shares = [round(c.share or 0.0, 4) for c in state.chunk_speech]
    if _is_no_speech(share, opts):
        result.duration, result.speech_share, result.verdict = _round(state.ends[-1]), share, NO_SPEECH
        result.note = (f"not scored: {_percent(share)} of it is speech, below the minimum of "
                       f"{_percent(opts.min_speech_share)} (the score-without-speech option scores it anyway)")
        if len(state.raw) > 1:
            result.chunks = [{"start": _round(s, 7), "end": _round(e, 7), "score": None, "p_spoof": None,
                              "speech_share": sh, "verdict": NO_SPEECH}
                             for s, e, sh in zip(state.starts, state.ends, chunk_shares)]
        return result
    weights = np.array(state.ends) - np.array(state.starts)
    raw = np.array(state.raw, dtype=np.float64)
    problem = _non_finite_problem(state, loaded.to_scores(raw))
    if problem is not None:
        result.error, result.duration = problem, _round(state.ends[-1])
        return result
    file_score = float(loaded.to_scores(np.average(raw, weights=weights)))
    result.duration = _round(state.ends[-1])
    result.score = _round(file_score)
    result.p_spoof = _round(float(loaded.p_spoof(file_score)))
    result.speech_share = share
    result.verdict = _verdict(file_score, opts.threshold)
    if share < opts.min_speech_share:  # scored because score_without_speech is set
        result.note = (f"scored although only {_percent(share)} of it is speech (below the minimum of "
                       f"{_percent(opts.min_speech_share)}): the score of audio without speech may mean little")
    if len(raw) > 1:
        scores = loaded.to_scores(raw)
        probs = loaded.p_spoof(scores)
        result.chunks = [{"start": _round(s, 7), "end": _round(e, 7), "score": _round(sc), "p_spoof": _round(p),
                          "speech_share": sh, "verdict": _verdict(sc, opts.threshold)}
                         for s, e, sc, p, sh in zip(state.starts, state.ends, scores, probs, chunk_shares)]
    return result


def _keep_finished_files(states: list[_FileState], scorer: _BatchScorer) -> None:
    """After Ctrl-C: files not yet read through get the INTERRUPTED error; the chunks of finished files
    still waiting in the batch are scored, so no finished work is thrown away."""
    for state in states:
        if not state.finished:
            state.error = INTERRUPTED
            scorer.forget(state)
    scorer.flush()


def detect_files(loaded: LoadedModel, inputs: Iterable[InputFile | str], opts: DetectOptions | None = None
                 ) -> list[FileResult]:
    """Score every input; failures are results with verdict 'error', never exceptions.

    Ctrl-C raises DetectInterrupted with the results so far, so a caller can still write a partial report."""
    from spoofrl.log import progress
    opts = opts or DetectOptions()
    items = [i if isinstance(i, InputFile) else InputFile(str(i)) for i in inputs]
    get_vad()  # load the VAD (once per process) before reading: a missing package fails here, not per file
    scorer = _BatchScorer(loaded, opts.batch_size)
    states = [_FileState(item) for item in items]
    try:
        for state in progress(states, desc="detect", unit="file", disable=None if opts.show_progress else True):
            _read_file(state, scorer, opts, loaded.sample_rate)
        scorer.flush()
    except KeyboardInterrupt:
        _keep_finished_files(states, scorer)
        raise DetectInterrupted([_finish(state, loaded, opts) for state in states]) from None
    return [_finish(state, loaded, opts) for state in states]


def detect_one(loaded: LoadedModel, path: str, opts: DetectOptions | None = None) -> FileResult:
    return detect_files(loaded, [InputFile(path)], opts)[0]
