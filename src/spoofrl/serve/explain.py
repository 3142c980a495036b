"""`POST /api/explain`: the audio LLM explainer of `spoofrl explain`, for one uploaded clip.

The answer is the JSON report of `spoofrl explain --json` for that one file (model, settings, `files: [ {...} ]`
with verdict, score, rationale, claims with their verdict and cited evidence items (band_hz / span_s), the
clip's evidence, summary), built by the command's own functions (spoofrl.detect.explain_report: read_clip,
explain_clips, report_dict), plus the clip's spectrogram as a PNG data URL with `?spectrogram=true` (and the
frequency / time extent it covers, for drawing the cited bands and spans over it).

Request-level problems are the detect endpoint's JSON errors (413, 408, 422 empty upload, 429 busy, 500); a
file that cannot be explained (not audio, silent, too short) is, as in `spoofrl explain --json`, a 200 report
whose file has verdict `error` and the reason. No explainer (no bundled one, a bad --explainer folder): 503
`{"error": "no_explainer", "detail": ...}`. The explainer is loaded once, on the first request; generation is
serialised by a lock (one model, one forward pass at a time) and runs on one of the gate's analysis slots.
Reports name the explainer and its files by name, never by server path.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# How much of a clip is explained at most (as `spoofrl explain`'s default --max-seconds): longer uploads are
# explained on their first seconds (the report says so), within the server's own --max-seconds.
EXPLAIN_MAX_SECONDS = 30.0


class ExplainerHolder:
    """The explainer, loaded on first use (thread-safe); a load failure is remembered and reported each time."""

    def __init__(self, model_dir: str | Path | None = None, device: str = "auto", loader=None):
        self.model_dir, self.device = model_dir, device
        self._loader = loader
        self._lock = threading.Lock()       # loading
        self.run_lock = threading.Lock()    # generation: one at a time
        self._explainer = None
        self._problem: str | None = None

    def get(self):
        """The loaded explainer, or raises LookupError with the reason none is available."""
        with self._lock:
            if self._explainer is None and self._problem is None:
                from spoofrl.errors import SpoofrlError
                loader = self._loader
                if loader is None:
                    from spoofrl.detect.explainer import load_explainer as loader
                try:
                    self._explainer = loader(self.model_dir, self.device)
                except (SpoofrlError, OSError, ValueError) as err:
                    self._problem = _public_reason(str(err), self.model_dir)
                    log.warning("no explainer: %s", err)
            if self._explainer is None:
                raise LookupError(self._problem)
            return self._explainer


def _public_reason(text: str, model_dir) -> str:
    text = text.replace("--model ", "--explainer ").replace("pass --model", "start the server with --explainer")
    if model_dir is not None:
        text = text.replace(str(model_dir), Path(model_dir).name)
    return f"no explainer available: {text}"


def _public_model(model: dict) -> dict:
    """The explainer's info without server paths (names only)."""
    model = dict(model)
    model["path"] = None
    if model.get("config"):
        model["config"] = Path(model["config"]).name
    ref = model.get("evidence_reference")
    if isinstance(ref, dict) and ref.get("path"):
        model["evidence_reference"] = {**ref, "path": Path(ref["path"]).name}
    return model


def explain_path(explainer, run_lock, path: Path, name: str, server_max_seconds: float,
                 max_seconds: float = EXPLAIN_MAX_SECONDS) -> dict:
    """The `spoofrl explain --json` report of the one file at `path`, reported as `name`."""
    from spoofrl.detect.explain_report import Clip, explain_clips, read_clip, report_dict
    seconds = min(max_seconds, server_max_seconds)
    ref = explainer.reference
    limit = getattr(getattr(ref, "config", None), "max_seconds", None) if ref is not None else None
    if limit is not None:
        seconds = min(seconds, float(limit))     # the evidence measures clips of at most that
    max_length = explainer.max_completion_length
    got = read_clip(str(path), None, explainer, seconds)
    result = got.result if isinstance(got, Clip) else got
    if isinstance(got, Clip):
        with run_lock:
            explain_clips(explainer, [got], max_length)
    result.path = name
    if result.error:
        result.error = result.error.replace(str(path), name)
    result.notes = [n.replace(str(path), name) for n in result.notes]
    settings = {"max_seconds": seconds, "batch_size": 1, "max_completion_length": max_length,
                "device": str(getattr(explainer.model, "device", "cpu"))}
    report = report_dict(explainer, [result], settings)
    report["model"] = _public_model(report["model"])
    # For the page: which evidence kinds are placed by their time span (the others by their band), as the
    # text report of `spoofrl explain` places them (cmd_explain._where).
    from spoofrl.explain.rationale import TIME_KINDS
    report["time_kinds"] = list(TIME_KINDS)
    return report
