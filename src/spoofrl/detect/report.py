"""Report formats of `spoofrl detect`: a readable table, CSV (one row per file) and JSON (everything,
with the per-chunk timeline). The HTTP API returns the JSON form."""
from __future__ import annotations

import csv
import io

from spoofrl.detect.engine import SPOOF, DetectOptions, FileResult
from spoofrl.detect.model import LoadedModel

AGGREGATION = "duration-weighted mean of chunk scores"
CSV_COLUMNS = ["path", "duration", "score", "score_type", "p_spoof", "verdict", "spoof_segments", "error", "model"]


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
    counts = {"files": len(results)}
    for verdict in ("bonafide", "spoof", "error"):
        counts[verdict] = sum(r.verdict == verdict for r in results)
    return {
        "model": loaded.info(public=public),
        "settings": {"threshold": opts.threshold, "chunk_seconds": opts.chunk_seconds, "aggregation": AGGREGATION,
                     "verdict_rule": f"bonafide when score >= {opts.threshold:g}, else spoof"},
        "files": [r.to_dict() for r in results],
        "summary": counts,
    }


def _model_header(loaded: LoadedModel, opts: DetectOptions) -> list[str]:
    info = loaded.info()
    lines = [f"model: {info['name']}  [{info['path']}]", f"trained on: {info['trained_on']}",
             f"score: {info['score_meaning']}; verdict spoof when score < {opts.threshold:g}"]
    if loaded.calibration is not None:
        lines[-1] += f"; p_spoof uses prior P(bona fide) = {loaded.calibration.prior:g}"
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
    rows = [f"{'path':<{width}}  {'duration':>9}  {'score':>8}  {'p_spoof':>7}  verdict"]
    for r in results:
        rows.append(f"{r.path:<{width}}  {_fmt(r.duration, '9.2f')}  {_fmt(r.score, '8.3f')}  "
                    f"{_fmt(r.p_spoof, '7.3f')}  {r.verdict}")
        if r.error:
            rows.append(f"    error: {r.error}")
        elif r.chunks and spoof_segments(r):
            spans = _segments_text(r, ", ")
            rows.append(f"    spoof-like chunks ({opts.chunk_seconds:g} s each): {spans} s")
    return "\n".join(_model_header(loaded, opts) + [""] + rows)


def format_csv(loaded: LoadedModel, results: list[FileResult], opts: DetectOptions) -> str:
    """One row per file; `spoof_segments` lists spoof-verdict chunk spans as start-end;... (seconds)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow([r.path, _csv_number(r.duration, ".3f"), _csv_number(r.score, ".6g"), r.score_type,
                         _csv_number(r.p_spoof, ".6g"), r.verdict, _segments_text(r), r.error or "", loaded.name])
    return buf.getvalue()


def _csv_number(value, spec: str) -> str:
    return "" if value is None else format(value, spec)
