"""`POST /api/explain`: the audio LLM explainer of `spoofrl explain`, for one uploaded clip.

The answer is the JSON report of `spoofrl explain --json` for that one file (model, settings, `files: [ {...} ]`
with verdict, score, rationale, claims with their verdict and cited evidence items (band_hz / span_s), the
clip's evidence, summary), built by the command's own functions (spoofrl.detect.explain_report: read_clip,
explain_clips, report_dict), plus the clip's spectrogram as a PNG data URL with `?spectrogram=true` (and the
frequency / time extent it covers, for drawing the cited bands and spans over it).

The upload goes through the detect endpoint's protocol (spoofrl.serve.app): the same limits, duration check
and JSON errors; a file that cannot be explained is an error status (415 not audio, 422 cannot_explain), never
a 200 with verdict `error`. No explainer (none bundled, or one that does not load): 503 `no_explainer`; one that
fails while generating: 503 `explainer_failed`. `spoofrl serve` loads the explainer at start (load_now), so a
bad --explainer folder stops it; `create_app` alone loads it on the first request. Generation is serialised by
a lock (one model, one forward pass at a time) and runs on one of the gate's analysis slots. Reports name the
explainer and its files by name, never by server path.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)

# How much of a clip is explained at most (as `spoofrl explain`'s default --max-seconds): longer uploads are
# explained on their first seconds (the report says so), within the server's own --max-seconds.
EXPLAIN_MAX_SECONDS = 30.0


class ExplainerFailed(Exception):
    """The explainer raised while generating (the cause is chained); the API answers 503."""


class ExplainerHolder:
    """The explainer, loaded on first use or by load_now (thread-safe); a load failure is remembered and
    reported each time."""

    def __init__(self, model_dir: str | Path | None = None, device: str = "auto", loader=None):
        self.model_dir, self.device = model_dir, device
        self._loader = loader
        self._lock = threading.Lock()       # loading
        self.run_lock = threading.Lock()    # generation: one at a time
        self._explainer = None
        self._problem: str | None = None    # why loading failed (one line, for the server's own messages)
        self._public: str | None = None     # the same for clients: no server paths, no exception text

    def get(self):
        """The loaded explainer, or raises LookupError with the reason none is available (no server paths)."""
        with self._lock:
            if self._explainer is None and self._problem is None:
                self._load()
            if self._explainer is None:
                raise LookupError(self._public)
            return self._explainer

    def _load(self, log_failure: bool = True) -> None:
        loader = self._loader
        if loader is None:
            from spoofrl.detect.explainer import load_explainer as loader
        try:
            self._explainer = loader(self.model_dir, self.device)
        except Exception as err:  # noqa: BLE001 - whatever breaks the folder, the answer is "no explainer"
            self._problem = _load_problem(err, self.model_dir)
            self._public = _public_problem(err, self._problem, self.model_dir)
            if log_failure:  # at start the error message itself says it
                log.warning("no explainer: %s", self._problem, exc_info=not _explained(err))

    def load_now(self) -> None:
        """Load at start (`spoofrl serve`): a SpoofrlError when the named folder, or a bundled explainer that
        is installed, does not load. An installation without a bundled explainer still serves detection."""
        from spoofrl.errors import SpoofrlError
        with self._lock:
            if self._explainer is None and self._problem is None:
                self._load(log_failure=False)
        if self._explainer is not None:
            return
        if self.model_dir is None and not _bundled_installed():
            log.warning("no bundled explainer: POST /api/explain answers 503 (start with --explainer RUN_DIR)")
            return
        raise SpoofrlError(_option_problem(self._problem, self.model_dir))

    def state(self) -> dict:
        """For /healthz: ready (with its name), not loaded yet, or unavailable (with the reason)."""
        if self._explainer is not None:
            return {"status": "ready", "name": self._explainer.info()["name"]}
        if self._public is not None:
            return {"status": "unavailable", "detail": self._public}
        return {"status": "not loaded"}


def _bundled_installed() -> bool:
    from spoofrl.detect.explainer import default_explainer_path
    return default_explainer_path().is_dir()


def _explained(err: Exception) -> bool:
    """A failure whose message says it all (a missing file, a bad config); others get a traceback in the log."""
    from spoofrl.errors import SpoofrlError
    return isinstance(err, (SpoofrlError, OSError))


def _load_problem(err: Exception, model_dir) -> str:
    """One line: why the explainer did not load, in the words of `spoofrl serve` (--explainer, not --model)."""
    if _explained(err):
        text = str(err)
    else:
        from spoofrl.detect.explainer import default_explainer_path
        where = model_dir if model_dir is not None else default_explainer_path()
        text = f"{where}: cannot load the explainer ({type(err).__name__}: {err})"
    text = text.replace("--model ", "--explainer ").replace("pass --model", "start the server with --explainer")
    return " ".join(text.split())


def _option_problem(problem: str, model_dir) -> str:
    """The load problem as `spoofrl serve` stops with it: led by the option (or the bundled explainer)."""
    if problem.startswith("--explainer"):
        return problem
    if model_dir is None:
        return f"the bundled explainer does not load: {problem}"
    if problem.startswith(str(model_dir)):
        return f"--explainer {problem}"
    return f"--explainer {model_dir}: {problem}"


def _public_problem(err: Exception, problem: str, model_dir) -> str:
    """The load problem as clients see it: folders by their name; an unforeseen error by its type only."""
    from spoofrl.detect.explainer import default_explainer_path
    if not _explained(err):
        return f"no explainer available: it cannot be loaded ({type(err).__name__}); the server's log has the details"
    folder = Path(model_dir) if model_dir is not None else default_explainer_path()
    return f"no explainer available: {problem.replace(str(folder), folder.name)}"


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


def _generate(explainer, run_lock, clip, max_length: int) -> None:
    """The model's explanation of one clip; any failure of the model is ExplainerFailed (a 503, not a 500)."""
    from spoofrl.detect.explain_report import explain_clips
    try:
        with run_lock:
            explain_clips(explainer, [clip], max_length)
    except Exception as err:  # noqa: BLE001 - out of memory, a broken weight, a CUDA error: the explainer failed
        raise ExplainerFailed(f"{type(err).__name__}") from err


def explain_path(explainer, run_lock, path: Path, name: str, server_max_seconds: float,
                 max_seconds: float = EXPLAIN_MAX_SECONDS) -> dict:
    """The `spoofrl explain --json` report of the one file at `path`, reported as `name`."""
    from spoofrl.detect.explain_report import Clip, read_clip, report_dict
    seconds = min(max_seconds, server_max_seconds)
    ref = explainer.reference
    limit = getattr(getattr(ref, "config", None), "max_seconds", None) if ref is not None else None
    if limit is not None:
        seconds = min(seconds, float(limit))     # the evidence measures clips of at most that
    max_length = explainer.max_completion_length
    got = read_clip(str(path), None, explainer, seconds)
    result = got.result if isinstance(got, Clip) else got
    if isinstance(got, Clip):
        _generate(explainer, run_lock, got, max_length)
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
