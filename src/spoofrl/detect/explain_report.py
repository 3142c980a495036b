"""The report of explaining audio files with an audio LLM: reading each file (clipped, checked), its evidence,
the explanation (spoofrl.detect.explanations), and the per-file records and JSON document that `spoofrl
explain` prints and `POST /api/explain` answers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from spoofrl.detect.report import finite_or_none

SCORE_MEANING = ("log p(bonafide answer) - log p(spoof answer) after the model's own rationale; "
                 "higher = more bona fide")
ERROR, UNANSWERED = "error", "unanswered"
VERDICTS = ("bonafide", "spoof", UNANSWERED, ERROR)
NO_REFERENCE = "claims not checked: the model has no evidence reference"
INTERRUPTED = "not explained: interrupted (Ctrl-C) before this file was finished"
# As `spoofrl detect`: a few STFT frames say nothing about how a clip was made.
MIN_SECONDS = 0.05
MAX_SECONDS_LIMIT = 3600.0       # --max-seconds: an hour of audio is already far beyond any audio LLM's context
# Samples beyond this magnitude are not audio in [-1, 1]; named when the model's score comes out non-finite.
HUGE_SAMPLE = 1e3
# Formats whose length libsndfile reads from the header; others need ffprobe (or a full decode) to tell.
HEADER_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au"}


# ------------------------------------------------------------------------------------------------ one file

@dataclass
class FileExplanation:
    """The outcome for one input: the model's verdict, score, rationale and checked claims, or an error."""

    path: str
    verdict: str = ERROR
    error: str | None = None
    seconds: float | None = None          # how much of the file was explained
    clipped: bool = False                 # the file is longer than --max-seconds: only its start was explained
    file_seconds: float | None = None     # a clipped file's whole length (None when its header does not say)
    score: float | None = None
    answer: str | None = None
    rationale: str | None = None
    completion: str | None = None
    well_formed: bool | None = None
    tokens: int | None = None
    truncated: bool | None = None
    claims_checked: bool = False
    n_claims: int = 0
    n_true: int = 0
    n_false: int = 0
    n_unverifiable: int = 0
    claims: list[dict] = field(default_factory=list)
    evidence: list[dict] | None = None    # every item measured on the clip (what the claims were checked against)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"path": self.path, "verdict": self.verdict, "error": self.error, "seconds": self.seconds,
                "clipped": self.clipped, "file_seconds": self.file_seconds, "score": self.score,
                "answer": self.answer, "well_formed": self.well_formed, "tokens": self.tokens,
                "truncated": self.truncated, "rationale": self.rationale, "completion": self.completion,
                "claims_checked": self.claims_checked, "n_claims": self.n_claims, "n_true": self.n_true,
                "n_false": self.n_false, "n_unverifiable": self.n_unverifiable, "claims": self.claims,
                "evidence": self.evidence, "notes": self.notes}


@dataclass
class Clip:
    """A file read and measured, waiting for its batch."""

    result: FileExplanation
    wave: object                          # mono float32 at the model's rate
    items: list | None                    # its evidence items; None: its claims are not checked
    peak: float


def _first_seconds(path: str, max_seconds: float, sr: int):
    """(the first max_seconds of the file at sr, whether the file is longer).

    Streamed (spoofrl.audio.iter_chunks, the decoder of load_audio) so that an hour-long file is not decoded
    whole; reading one piece further tells whether the file goes on, and checks that it is readable there."""
    from spoofrl.audio import iter_chunks
    pieces = iter_chunks(path, max_seconds, sr)
    try:
        _, wave = next(pieces)
        following = next(pieces, None)
    finally:
        pieces.close()      # stops the decoder (an ffmpeg process) of a long file
    return wave, following is not None


def _file_length(path: str) -> float | None:
    """A clipped file's whole length, from its header (None when it cannot tell without decoding it all)."""
    import shutil

    from spoofrl.audio import audio_info
    from spoofrl.errors import AudioError
    if Path(path).suffix.lower() not in HEADER_SUFFIXES and shutil.which("ffprobe") is None:
        return None         # audio_info would decode the whole file to count its samples
    try:
        return audio_info(path)[0]
    except (AudioError, OSError, ValueError, RuntimeError):
        return None


def _clip_problem(wave, sr: int, clipped: bool, max_seconds: float) -> str | None:
    """Why a decoded clip cannot be explained (None when it can)."""
    import numpy as np
    if not np.any(wave):
        return (f"the first {max_seconds:g} s are all zero (silent): nothing to explain" if clipped
                else "all samples are zero (silent file)")
    if len(wave) / sr < MIN_SECONDS:
        return f"too short to explain ({len(wave) / sr * 1000:.0f} ms; need at least {MIN_SECONDS * 1000:.0f} ms)"
    return None


def _read_error(err: Exception) -> str:
    """One line for a decoding failure: the decoder's reason, or the unforeseen exception's name and text."""
    from spoofrl.errors import AudioError
    text = err.reason if isinstance(err, AudioError) else f"could not decode ({type(err).__name__}: {err})"
    return " ".join(str(text).split())


def _measure(clip_wave, sr: int, reference, result: FileExplanation):
    """The clip's evidence items against the model's reference, or None (with a note) when it cannot be measured."""
    from spoofrl.evidence import EvidenceError, evidence
    try:
        return evidence(clip_wave, sr, reference)
    except EvidenceError as err:
        result.notes.append(f"claims not checked: the evidence cannot be measured on this clip ({err})")
        return None


def read_clip(path: str, problem: str | None, explainer, max_seconds: float) -> Clip | FileExplanation:
    """The file decoded, clipped and measured, or its FileExplanation with the error."""
    import numpy as np

    from spoofrl.errors import AudioError
    result = FileExplanation(path)
    if problem is not None:
        result.error = problem
        return result
    sr = explainer.sample_rate
    try:
        wave, result.clipped = _first_seconds(path, max_seconds, sr)
    except (AudioError, OSError, ValueError, RuntimeError, MemoryError) as err:
        result.error = _read_error(err)
        return result
    result.error = _clip_problem(wave, sr, result.clipped, max_seconds)
    if result.error is not None:
        return result
    result.seconds = round(len(wave) / sr, 3)
    if result.clipped:
        length = _file_length(path)
        result.file_seconds = None if length is None else round(length, 3)
        of = "a longer file" if length is None else f"{length:.1f} s"
        result.notes.append(f"only the first {max_seconds:g} s of {of} were explained (--max-seconds)")
    items = None if explainer.reference is None else _measure(wave, sr, explainer.reference, result)
    return Clip(result, wave, items, float(np.max(np.abs(wave))))


# ------------------------------------------------------------------------------------------------ the model

def rationale_text(completion: str) -> str:
    """The <think> part of a completion (up to </think>, or to <answer> when left open); without <think>, the
    text before the last <answer>."""
    start = completion.find("<think>")
    if start < 0:
        end = completion.rfind("<answer>")
        return completion[:end if end >= 0 else len(completion)].strip()
    body = completion[start + len("<think>"):]
    ends = [at for at in (body.find("</think>"), body.find("<answer>")) if at >= 0]
    return body[:min(ends)].strip() if ends else body.strip()


def _fill(clip: Clip, explained) -> None:
    """Copy the engine's record of one clip into its FileExplanation."""
    from spoofrl.detect.explanations import VERDICTS as ANSWERS
    r = clip.result
    if not math.isfinite(explained.score):
        # The rationale and verdict of a model whose numbers overflowed are noise: the file fails, as in detect.
        hint = (f"the samples reach {clip.peak:.3g} (audio should lie within [-1, 1])" if clip.peak > HUGE_SAMPLE
                else "the model may be damaged (NaN/inf weights)")
        r.error = f"the model gave a non-finite score (NaN or infinite): not explained; {hint}"
        return
    r.completion, r.answer, r.well_formed = explained.completion, explained.answer, explained.well_formed
    r.tokens, r.truncated = explained.tokens, explained.truncated
    r.rationale = rationale_text(explained.completion)
    r.claims_checked = explained.checked
    r.n_claims, r.n_true, r.n_false = explained.n_claims, explained.n_true, explained.n_false
    r.n_unverifiable = explained.n_unverifiable
    r.claims = finite_or_none(explained.claims)
    r.evidence = None if clip.items is None else finite_or_none([item.to_dict() for item in clip.items])
    r.score = round(float(explained.score), 6)
    r.verdict = explained.answer if explained.answer in ANSWERS else UNANSWERED


def explain_clips(explainer, clips: list[Clip], max_completion_length: int) -> None:
    """Run the model on one batch of clips and fill in their results."""
    from spoofrl.detect.explanations import explain_waves
    if not clips:
        return
    # None for a clip whose evidence could not be measured: the engine checks the claims of the others only.
    evidence = [c.items for c in clips] if explainer.reference is not None else None
    explained = explain_waves(explainer.model, [c.wave for c in clips], explainer.prompt,
                              max_completion_length=max_completion_length, evidence=evidence,
                              batch_size=len(clips), system=explainer.system)
    for clip, record in zip(clips, explained):
        _fill(clip, record)


def explain_files(explainer, inputs, max_seconds: float, batch_size: int, max_completion_length: int
                  ) -> tuple[list[FileExplanation], bool]:
    """Every input explained (errors are results, never exceptions); True when Ctrl-C stopped it, in which case
    the files not finished get the INTERRUPTED error."""
    from spoofrl.log import progress
    results: list[FileExplanation] = []
    waiting: list[Clip] = []
    try:
        for item in progress(inputs, desc="explain", unit="file"):
            got = read_clip(item.path, item.problem, explainer, max_seconds)
            results.append(got.result if isinstance(got, Clip) else got)
            if isinstance(got, Clip):
                waiting.append(got)
            if len(waiting) >= batch_size:
                explain_clips(explainer, waiting, max_completion_length)
                waiting = []
        explain_clips(explainer, waiting, max_completion_length)
    except KeyboardInterrupt:
        return _mark_interrupted(results, waiting, inputs), True
    return results, False


def _mark_interrupted(results: list[FileExplanation], waiting: list[Clip], inputs) -> list[FileExplanation]:
    """After Ctrl-C: the clips waiting for the model and the files never read get the INTERRUPTED error."""
    for clip in waiting:
        clip.result.error, clip.result.verdict = INTERRUPTED, ERROR
    unread = [FileExplanation(item.path, error=INTERRUPTED) for item in inputs[len(results):]]
    return results + unread


# ------------------------------------------------------------------------------------------------ reports

def summary_counts(results: list[FileExplanation]) -> dict:
    counts = {"files": len(results)}
    counts.update({v: sum(r.verdict == v for r in results) for v in VERDICTS})
    return counts


def report_dict(explainer, results: list[FileExplanation], settings: dict) -> dict:
    model = {**explainer.info(), "note": None if explainer.reference is not None else NO_REFERENCE}
    return finite_or_none({"model": model, "settings": {**settings, "score": SCORE_MEANING},
                            "files": [r.to_dict() for r in results], "summary": summary_counts(results)})
