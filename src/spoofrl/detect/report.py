"""Report formats of `spoofrl detect`: a readable table, CSV (one row per file) and JSON (everything,
with the per-chunk timeline). The HTTP API returns the JSON form.

Counts per verdict (bonafide, spoof, no-speech, error): JSON `summary`, the table's last line. CSV has no
summary row (it would break one-row-per-file readers): count its `verdict` column."""
from __future__ import annotations

import csv
import io
import math
import re

from spoofrl.detect.engine import SPOOF, VERDICTS, DetectOptions, FileResult
from spoofrl.detect.model import LoadedModel
from spoofrl.detect.vad import DESCRIPTION as VAD_DESCRIPTION

AGGREGATION = "duration-weighted mean of chunk scores"
CSV_COLUMNS = ["path", "duration", "score", "score_type", "p_spoof", "speech_share", "verdict", "spoof_segments",
               "error", "note", "model"]


# What a terminal acts on or what reorders text: C0 controls (ESC starts the sequences that retitle a window or
# clear the screen; a newline splits a report's block), DEL, C1 controls (0x9b is a one-byte CSI), the Unicode
# bidi controls (U+202E shows a name backwards), line / paragraph separators, and lone surrogates (bytes of a file
# name that are not UTF-8, which stdout cannot encode).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                          "\ud800-\udfff]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` (a file name, an error, a model's words) safe to print in a text, table or CSV report: each character
    of _UNPRINTABLE written as a Python-style escape (\\x1b, \\n, \\u202e); the rest, accents and scripts
    included, as is. JSON reports need none of this: json.dumps escapes all of them."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def finite_or_none(value):
    """`value` with every NaN / infinite float replaced by None, in nested dicts and lists too (JSON has no NaN;
    a bare NaN breaks clients): the detect, explain and HTTP reports go through it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def spoof_segments(result: FileResult) -> list[tuple[float, float]]:
    """Consecutive chunks with verdict spoof merged into (start, end) spans, in seconds."""
    spans: list[tuple[float, float]] = []
    for chunk in result.chunks:
        if chunk["verdict"] != SPOOF:
            continue
        if spans and abs(spans[-1][1] - chunk["start"]) < 1e-6:
            spans[-1] = (spans[-1][0], chunk["end"])
        else:
            spans.append((chunk["start"], chunk["end"]))
    return spans


def _segments_text(result: FileResult, sep: str = ";") -> str:
    return sep.join(f"{a:.1f}-{b:.1f}" for a, b in spoof_segments(result))


def report_dict(loaded: LoadedModel, results: list[FileResult], opts: DetectOptions, public: bool = False) -> dict:
    """The JSON report: model info, settings, one object per file, counts.

    `public` (the HTTP service): the model is described by names only, never by paths of the server."""
    return {
        "model": loaded.info(public=public),
        "settings": {"threshold": opts.threshold, "chunk_seconds": opts.chunk_seconds, "aggregation": AGGREGATION,
                     "min_speech_share": opts.min_speech_share, "score_without_speech": opts.score_without_speech,
                     "vad": VAD_DESCRIPTION, "verdict_rule": verdict_rule(opts)},
        "files": [r.to_dict() for r in results],
        "summary": summary_counts(results),
    }


def summary_counts(results: list[FileResult]) -> dict:
    """Files in all and per verdict (every verdict present, zero or not)."""
    counts = {"files": len(results)}
    for verdict in VERDICTS:
        counts[verdict] = sum(r.verdict == verdict for r in results)
    return counts


def verdict_rule(opts: DetectOptions) -> str:
    rule = f"bonafide when score >= {opts.threshold:g}, else spoof"
    if opts.score_without_speech:
        return rule + " (files with little or no speech are scored too)"
    return f"no-speech (not scored) when the speech share is below {opts.min_speech_share:g}; else " + rule


def _model_header(loaded: LoadedModel, opts: DetectOptions) -> list[str]:
    info = loaded.info()
    lines = [f"model: {printable(info['name'])}  [{printable(info['path'])}]",
             f"trained on: {printable(info['trained_on'])}",
             f"score: {info['score_meaning']}; verdict spoof when score < {opts.threshold:g}"]
    if loaded.calibration is not None:
        lines[-1] += f"; p_spoof uses prior P(bona fide) = {loaded.calibration.prior:g}"
    lines.append("speech: share of the audio the voice activity detector hears as speech; " +
                 ("files with little speech are scored anyway" if opts.score_without_speech else
                  f"below {100 * opts.min_speech_share:g} % the verdict is no-speech (not scored)"))
    return lines


def _fmt(value, spec: str) -> str:
    """`value` formatted by `spec` (e.g. '9.2f'); a missing value is a '-' of the same width, keeping columns aligned."""
    if value is None:
        width = spec.split(".")[0]
        return format("-", f">{width}") if width.isdigit() else "-"
    return format(value, spec)


def format_table(loaded: LoadedModel, results: list[FileResult], opts: DetectOptions) -> str:
    """Aligned text table; below a row: where the spoofed chunks are, or why the file failed."""
    paths = [printable(r.path) for r in results]
    width = max([len("path")] + [len(path) for path in paths])
    rows = [f"{'path':<{width}}  {'duration':>9}  {'score':>8}  {'p_spoof':>7}  {'speech':>7}  verdict"]
    for r, path in zip(results, paths):
        speech = None if r.speech_share is None else f"{100 * r.speech_share:.1f}%"
        rows.append(f"{path:<{width}}  {_fmt(r.duration, '9.2f')}  {_fmt(r.score, '8.3f')}  "
                    f"{_fmt(r.p_spoof, '7.3f')}  {speech or '-':>7}  {r.verdict}")
        if r.error:
            rows.append(f"    error: {printable(r.error)}")
        if r.note:
            rows.append(f"    note: {printable(r.note)}")
        if not r.error and r.chunks and spoof_segments(r):
            spans = _segments_text(r, ", ")
            rows.append(f"    spoof-like chunks ({opts.chunk_seconds:g} s each): {spans} s")
    counts = summary_counts(results)
    summary = f"{counts['files']} file(s): " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    return "\n".join(_model_header(loaded, opts) + [""] + rows + ["", summary])


def format_csv(loaded: LoadedModel, results: list[FileResult], opts: DetectOptions) -> str:
    """One row per file; `spoof_segments` lists spoof-verdict chunk spans as start-end;... (seconds). Names and
    messages are escaped (printable) like the table's: a CSV is often looked at in a terminal."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow([printable(r.path), _csv_number(r.duration, ".3f"), _csv_number(r.score, ".6g"),
                         r.score_type, _csv_number(r.p_spoof, ".6g"), _csv_number(r.speech_share, ".4f"), r.verdict,
                         _segments_text(r), printable(r.error or ""), printable(r.note or ""),
                         printable(loaded.name)])
    return buf.getvalue()


def _csv_number(value, spec: str) -> str:
    return "" if value is None else format(value, spec)
