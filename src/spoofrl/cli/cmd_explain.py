"""`spoofrl explain PATH...`: an audio LLM's verdict on each file, its rationale, and every claim checked."""
from __future__ import annotations

import argparse
import math
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from spoofrl.cli.common import add_device_option, check_output_file

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

_SCORE_LINES = SCORE_MEANING.replace("; ", ";\n             ")   # the help's score entry, on two lines
DESCRIPTION = f"""\
Explain why an audio LLM judges audio files bona fide or spoof. For each file the model writes, greedily,
its rationale (FT-GRPO's format: <think> a <Frequency Domain> and a <Time Domain> analysis </think>) and its
answer. Reported per file:

  verdict    the model's answer: bonafide or spoof ('unanswered' when it wrote no valid answer)
  score      {_SCORE_LINES}
             (0: both answers equally likely; not calibrated)
  rationale  the text of its <think> part
  claims     each claim of the rationale checked against evidence measured on the clip (spoofrl.evidence,
             z-scored against the bona fide reference profile the model was trained with, the model folder's
             evidence_reference.json): true, false or unverifiable, with the evidence items it cites (kind,
             band in Hz or time span in s, value with its unit, z-score). A model without that profile is
             explained, but its claims are not checked.

PATH may be files, folders (searched recursively for audio files) or quoted globs ('data/**/*.flac'), in
any format spoofrl reads, downmixed and resampled to the model's rate. Only the first --max-seconds of each
file are explained (the report says so for longer files). Files that cannot be explained get verdict
'error' with the reason; the others are still explained.

Without --model the default explainer bundled with spoofrl is used (when this installation has one).

Ctrl-C stops; the files finished so far are still reported (the others get verdict 'error').

Exit status: 0 every file explained ('unanswered' included); 1 some files failed (verdict 'error');
2 nothing could be run (bad option, bad model folder, no bundled explainer); 130 interrupted."""


def register(sub):
    p = sub.add_parser("explain", help="why a clip is judged fake: an audio LLM's verdict, score, rationale and "
                                       "its claims checked against measured evidence",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders (recursive) or quoted globs")
    p.add_argument("--model", metavar="RUN_DIR", help="a generation run folder or audio LLM folder (a spoofrl ALM "
                   "with alm.json, or a Hugging Face one with config.json or adapter_config.json; its config.yaml "
                   "gives the prompt, its evidence_reference.json what claims are checked against); default: the "
                   "bundled explainer")
    p.add_argument("--json", action="store_true", help="one JSON document (model, files with verdict, score, "
                   "rationale, checked claims and the clip's measured evidence, summary) instead of the text report")
    p.add_argument("--out", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--max-seconds", type=float, default=30.0, metavar="S",
                   help="explain at most the first S seconds of each file (default 30)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="files explained per forward pass "
                   "(default 8; lower it when memory is short)")
    p.add_argument("--max-completion-length", type=int, default=None, metavar="N",
                   help="most tokens of a rationale and answer (default: the run's objective.max_completion_length)")
    add_device_option(p)
    p.set_defaults(func=run)


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


def _finite_or_none(value):
    """Numbers that JSON can hold: NaN and infinities become None, in nested dicts and lists too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


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
    r.claims = _finite_or_none(explained.claims)
    r.evidence = None if clip.items is None else _finite_or_none([item.to_dict() for item in clip.items])
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
    return _finite_or_none({"model": model, "settings": {**settings, "score": SCORE_MEANING},
                            "files": [r.to_dict() for r in results], "summary": summary_counts(results)})


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _where(item: dict) -> str:
    """Where an evidence item lies, as the claims name it: a band for spectral kinds, a time span for events and
    the clip statistics measured on part of it (pauses, voiced frames)."""
    from spoofrl.explain.rationale import TIME_KINDS
    band, span = item.get("band_hz"), item.get("span_s")
    if item["kind"] in TIME_KINDS and span is not None:
        return f"{span[0]:.2f}-{span[1]:.2f} s"
    if band is not None:
        return f"{band[0]:g}-{band[1]:g} Hz"
    return "whole clip"


def evidence_line(item: dict) -> str:
    """One cited evidence item: kind, band or time span, value with unit, z."""
    value = _number(item.get("value"), ".4g")
    z = _number(item.get("z"), "+.1f")
    return f"{item['kind']:<22} {_where(item):<18} {value} {item.get('unit') or ''}".rstrip() + f"   z {z}"


def _wrapped(text: str, indent: str) -> list[str]:
    lines = []
    for paragraph in text.splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, 100, initial_indent=indent, subsequent_indent=indent + "  ")
                     or [indent])
    return lines


def _claims_table(r: FileExplanation) -> list[str]:
    lines = [f"  claims: {r.n_claims} ({r.n_true} true, {r.n_false} false, {r.n_unverifiable} unverifiable)"]
    if r.claims:
        lines.append(f"    {'#':>2}  {'verdict':<13} claim")
    for number, verdict in enumerate(r.claims, 1):
        first = f"    {number:>2}  {verdict['verdict']:<13} "
        claim = textwrap.wrap(f"\"{verdict['claim']['text']}\"", 100 - len(first)) or ['""']
        under = " " * len(first)      # the lines below a claim start where its text does
        lines.append(first + claim[0])
        lines.extend(under + more for more in claim[1:])
        lines.append(f"{under}why: {verdict['reason']}")
        lines.extend(f"{under}cites: {evidence_line(item)}" for item in verdict["evidence"])
    return lines


def _file_block(r: FileExplanation) -> list[str]:
    head = f"{r.path}\n  verdict: {r.verdict}   score: {_number(r.score, '.3f')}"
    if r.seconds is not None:
        head += f"   ({r.seconds:.2f} s explained)"
    lines = head.split("\n")
    if r.error:
        return lines + [f"  error: {r.error}"]
    lines += [f"  note: {note}" for note in r.notes]
    lines.append("  rationale:")
    lines += _wrapped(r.rationale or "(none)", "    ")
    if r.claims_checked:
        lines += _claims_table(r)
    return lines


def format_text(explainer, results: list[FileExplanation]) -> str:
    """The readable report: the model, then per file verdict, score, rationale and the claims table."""
    info = explainer.info()
    lines = [f"model: {info['name']}  [{info['path']}]  ({info['kind']}, {info['sample_rate']} Hz)", f"score: {SCORE_MEANING}"]
    ref = info["evidence_reference"]
    lines.append(f"claims: checked against {ref['path']} (a bona fide reference of {ref['n_clips']} clips)" if ref
                 else NO_REFERENCE)
    for r in results:
        lines += [""] + _file_block(r)
    counts = summary_counts(results)
    lines += ["", f"{counts['files']} file(s): " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the command

def _check_options(args) -> None:
    """Refuse unusable options before the model is loaded."""
    from spoofrl.errors import SpoofrlError
    if not 0 < args.max_seconds <= MAX_SECONDS_LIMIT:     # also refuses NaN
        raise SpoofrlError(f"--max-seconds must be above 0 and at most {MAX_SECONDS_LIMIT:g}, got {args.max_seconds:g}")
    if args.batch_size < 1:
        raise SpoofrlError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_completion_length is not None and args.max_completion_length < 1:
        raise SpoofrlError(f"--max-completion-length must be >= 1, got {args.max_completion_length}")
    if args.out is not None:
        check_output_file(args.out, "--out")


def _check_against_reference(explainer, max_seconds: float) -> None:
    """The evidence measures clips up to its config's max_seconds: a longer --max-seconds could not be checked."""
    from spoofrl.errors import SpoofrlError
    limit = explainer.reference.config.max_seconds if explainer.reference is not None else None
    if limit is not None and max_seconds > limit:
        raise SpoofrlError(f"--max-seconds {max_seconds:g}: the model's evidence reference measures clips of at most "
                           f"{limit:g} s; give at most that")


def _emit(text: str, out: str | None) -> None:
    """Write the report; when the file cannot be written after all, print it, so the explanations are not lost."""
    from spoofrl.errors import SpoofrlError
    if out is None:
        sys.stdout.write(text)
        return
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)       # never a half-written report
    except OSError as err:
        sys.stdout.write(text)
        raise SpoofrlError(f"--out {out}: could not write the report ({err.strerror or err}); it was printed to "
                           f"stdout instead") from None


def _render(explainer, results: list[FileExplanation], settings: dict, as_json: bool) -> str:
    import json
    if as_json:
        # allow_nan=False: bare NaN is not JSON (report_dict has turned every non-finite number into null)
        return json.dumps(report_dict(explainer, results, settings), indent=2, allow_nan=False) + "\n"
    return format_text(explainer, results)


def _tell(message: str) -> None:
    print(f"spoofrl explain: {message}", file=sys.stderr)


def run(args) -> int:
    from spoofrl.detect.inputs import expand_inputs
    from spoofrl.detect.explainer import load_explainer
    _check_options(args)
    inputs = expand_inputs(args.paths)
    explainer = load_explainer(args.model, args.device)
    _check_against_reference(explainer, args.max_seconds)
    if explainer.reference is None:
        _tell(NO_REFERENCE)
    max_length = args.max_completion_length or explainer.max_completion_length
    settings = {"max_seconds": args.max_seconds, "batch_size": args.batch_size, "max_completion_length": max_length,
                "device": str(explainer.model.device)}
    results, interrupted = explain_files(explainer, inputs, args.max_seconds, args.batch_size, max_length)
    _emit(_render(explainer, results, settings, args.json), args.out)
    clipped = sum(r.clipped for r in results)
    if clipped:
        _tell(f"{clipped} file(s) longer than --max-seconds {args.max_seconds:g}: only their first "
              f"{args.max_seconds:g} s were explained")
    failed = sum(r.verdict == ERROR for r in results)
    if interrupted:
        _tell(f"interrupted; the report holds the {len(results) - failed} file(s) explained before Ctrl-C")
        return 130
    if failed:
        _tell(f"{failed} of {len(results)} file(s) could not be explained (verdict 'error')")
        return 1
    return 0
