"""Report formats of `spoofrl detect`: a readable table, CSV (one row per file) and JSON (everything,
with the per-chunk timeline). The HTTP API returns the JSON form.

Counts per verdict (bonafide, spoof, no-speech, error): JSON `summary`, the table's last line. CSV has no
summary row (it would break one-row-per-file readers): count its `verdict` column."""
from __future__ import annotations

import csv
import io
import math

from spoofrl.detect.engine import SPOOF, VERDICTS, DetectOptions, FileResult
from spoofrl.detect.model import LoadedModel
from spoofrl.detect.vad import DESCRIPTION as VAD_DESCRIPTION

AGGREGATION = "duration-weighted mean of chunk scores"
CSV_COLUMNS = ["path", "duration", "score", "score_type", "p_spoof", "speech_share", "verdict", "spoof_segments",
               "error", "note", "model"]


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
    lines = [f"model: {info['name']}  [{info['path']}]", f"trained on: {info['trained_on']}",
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
    width = max([len("path")] + [len(r.path) for r in results])
    rows = [f"{'path':<{width}}  {'duration':>9}  {'score':>8}  {'p_spoof':>7}  {'speech':>7}  verdict"]
    for r in results:
        speech = None if r.speech_share is None else f"{100 * r.speech_share:.1f}%"
        rows.append(f"{r.path:<{width}}  {_fmt(r.duration, '9.2f')}  {_fmt(r.score, '8.3f')}  "
                    f"{_fmt(r.p_spoof, '7.3f')}  {speech or '-':>7}  {r.verdict}")
        if r.error:
            rows.append(f"    error: {r.error}")
        if r.note:
            rows.append(f"    note: {r.note}")
        if not r.error and r.chunks and spoof_segments(r):
            spans = _segments_text(r, ", ")
            rows.append(f"    spoof-like chunks ({opts.chunk_seconds:g} s each): {spans} s")
    counts = summary_counts(results)
    summary = f"{counts['files']} file(s): " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
    return "\n".join(_model_header(loaded, opts) + [""] + rows + ["", summary])


def format_csv(loaded: LoadedModel, results: list[FileResult], opts: DetectOptions) -> str:
    """One row per file; `spoof_segments` lists spoof-verdict chunk spans as start-end;... (seconds)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow([r.path, _csv_number(r.duration, ".3f"), _csv_number(r.score, ".6g"), r.score_type,
                         _csv_number(r.p_spoof, ".6g"), _csv_number(r.speech_share, ".4f"), r.verdict,
                         _segments_text(r), r.error or "", r.note or "", loaded.name])
    return buf.getvalue()


def _csv_number(value, spec: str) -> str:
    return "" if value is None else format(value, spec)
