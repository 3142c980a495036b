"""The HTTP service: `POST /api/detect`, `POST /api/explain`, `GET /healthz`, `GET /` (the web page).

Both POST endpoints take one upload per request (multipart field `file`) through the same protocol: the upload
limit, the duration check (`_probe`: the header's length, or a decode stopped just past max_seconds; a long
file is never decoded whole to measure it), the temp folder, the concurrency gate, and the same JSON errors.
`/api/detect` answers the JSON report of `spoofrl detect --format json` for that one file (model info,
settings, `files: [ {...} ]`, summary), plus the file's spectrogram as a PNG data URL when `?spectrogram=true`.
`/api/explain` (spoofrl.serve.explain) answers the `spoofrl explain --json` report of the upload. A clip with
too little speech (voice activity detection, see spoofrl.detect.vad) is a normal 200 detect answer with verdict
`no-speech`, `speech_share` and no score; `?score_without_speech=true` scores it anyway (`false` gates it even
where the server scores every clip).

A request that cannot be processed gets an error status: there is one file per request, so a 200 answer never
holds a file with verdict `error`. Errors are JSON `{"error": code, "detail": reason}`, listed (statuses and
codes) by `spoofrl serve --help` and docs/detect.md, which tests/test_probe_serve.py holds to what is answered.
Unexpected errors are 500 (the traceback goes to the log, never to the client); an explainer that does not
load or fails is 503.

Requests run in FastAPI's thread pool; every request keeps its own state (temp folder, result), so
concurrent requests cannot mix. At most `max_concurrent` analyses (decode + score + spectrogram) run at once,
`queue` more wait, and inference is serialised by the model's lock. Reports describe the model by names, never
by server paths. JSON answers never hold NaN or infinities (a non-finite score is a 422).
"""
import base64
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from spoofrl.detect import DetectOptions, LoadedModel, detect_one, report_dict
from spoofrl.detect.engine import DEFAULT_MIN_SPEECH_SHARE
from spoofrl.detect.report import finite_or_none
from spoofrl.errors import AudioError
from spoofrl.serve.limits import AnalysisGate, Busy
from spoofrl.serve.tempdirs import ServeTempRoot, remove_stale_temp_dirs

log = logging.getLogger(__name__)

COPY_BLOCK = 1 << 16
# The duration probe of ffmpeg-only uploads decodes pieces of this length at a low rate (cheap; only counted).
PROBE_PIECE_SECONDS = 30.0
PROBE_RATE = 8000
RETRY_AFTER_SECONDS = 5  # told to clients refused with 429


@dataclass
class ServeLimits:
    max_upload_mb: float = 25.0  # larger uploads get 413
    max_seconds: float = 600.0  # longer audio gets 422
    chunk_seconds: float = 4.0  # scored chunk length (timeline step)
    threshold: float = 0.0  # bonafide when score >= threshold
    min_speech_share: float = DEFAULT_MIN_SPEECH_SHARE  # clips with less speech get verdict no-speech
    score_without_speech: bool = False  # the server's default for ?score_without_speech
    max_concurrent: int = 2  # analyses (decode + score + spectrogram) running at once
    queue: int = 8  # analyses waiting for a slot; past that 429
    body_timeout: float | None = 30.0  # s without body bytes before 408 (None: no timeout)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)


class _RequestProblem(Exception):
    """Ends a request with a JSON error response."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def _safe_suffix(filename: str | None) -> str:
    """Keep a short alphanumeric suffix (decoders sniff content anyway, but it helps ffmpeg with raw formats)."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"


def _save_upload(upload, folder: Path, limit_bytes: int) -> Path:
    """Copy the upload to `folder`, counting bytes (the middleware is the first guard, this the second)."""
    path = folder / f"upload{_safe_suffix(upload.filename)}"
    size = 0
    with path.open("wb") as out:
        while block := upload.file.read(COPY_BLOCK):
            size += len(block)
            if size > limit_bytes:
                raise _RequestProblem(413, "upload_too_large", f"upload is larger than the limit of {limit_bytes / 1e6:g} MB")
            out.write(block)
    if size == 0:
        raise _RequestProblem(422, "empty_upload", "the uploaded file is empty (0 bytes)")
    return path


def _reason(err: AudioError | str, path: Path, name: str) -> str:
    """The one-line reason with the server's temp path replaced by the uploaded file's name."""
    text = err.reason if isinstance(err, AudioError) else err
    return f"{name}: {text.replace(str(path), name)}"


def _streamed_duration(path: Path, limit_seconds: float) -> float:
    """Duration of a file only ffmpeg decodes, read in pieces and stopped just past the limit.

    Why not audio_info: it decodes such files whole, and 25 MB of low-bitrate opus is hours of audio
    (gigabytes as float32), a cheap way to exhaust the server's memory."""
    from spoofrl.audio import iter_chunks
    seconds = 0.0
    for _, piece in iter_chunks(path, PROBE_PIECE_SECONDS, PROBE_RATE):
        seconds += len(piece) / PROBE_RATE
        if seconds > limit_seconds:
            break  # the rest is not decoded: the report says "more than"
    return seconds


def _probe(path: Path, name: str, limits: ServeLimits) -> float:
    """Duration of the upload; 415 when it is not audio, 422 when it is too long. Both endpoints run it first."""
    import soundfile as sf
    try:
        try:
            info = sf.info(str(path))
            duration = info.frames / info.samplerate
        except (sf.LibsndfileError, RuntimeError):
            duration = _streamed_duration(path, limits.max_seconds)
    except AudioError as err:
        raise _RequestProblem(415, "not_audio", _reason(err, path, name)) from None
    if duration > limits.max_seconds:
        raise _RequestProblem(422, "audio_too_long", f"{name}: audio is more than {limits.max_seconds:g} s long "
                                                     f"(read {duration:.1f} s), over the limit of "
                                                     f"{limits.max_seconds:g} s")
    return duration


def _spectrogram_data_url(path: Path, sr: int, limits: ServeLimits) -> str | None:
    from spoofrl.audio import load_audio
    from spoofrl.serve.spectrogram import spectrogram_png
    try:
        wave = load_audio(path, sr, allow_silent=True, max_seconds=limits.max_seconds)
    except AudioError:
        return None
    return "data:image/png;base64," + base64.b64encode(spectrogram_png(wave, sr)).decode()


def _non_finite_score(result) -> bool:
    numbers = [result.score, result.p_spoof] + [c.get(k) for c in result.chunks for k in ("score", "p_spoof")]
    return any(isinstance(x, float) and not math.isfinite(x) for x in numbers)


def score_upload(loaded: LoadedModel, upload, limits: ServeLimits, with_spectrogram: bool,
                 gate: AnalysisGate | None = None, temp: ServeTempRoot | None = None,
                 score_without_speech: bool | None = None) -> dict:
    """Save, check, score one upload; returns the JSON report or raises _RequestProblem.

    `score_without_speech`: the request's choice; None takes the server's (limits.score_without_speech)."""
    name = Path(upload.filename or "upload").name
    anyway = limits.score_without_speech if score_without_speech is None else score_without_speech
    opts = DetectOptions(threshold=limits.threshold, chunk_seconds=limits.chunk_seconds,
                         max_seconds=limits.max_seconds, show_progress=False,
                         min_speech_share=limits.min_speech_share, score_without_speech=anyway)
    own_gate, own_temp = gate is None, temp is None
    gate = gate or AnalysisGate(limits.max_concurrent, limits.queue)
    temp = temp or ServeTempRoot()
    try:
        return _run_saved(upload, limits, gate, temp,
                          lambda path: _analyse(loaded, path, name, opts, limits, with_spectrogram))
    finally:
        if own_gate:
            gate.close()
        if own_temp:
            temp.close()


def _run_saved(upload, limits: ServeLimits, gate: AnalysisGate, temp: ServeTempRoot, work) -> dict:
    """The upload saved into a request folder (size limit checked), then work(path), the memory-heavy part, on
    one of the gate's max_concurrent slots (waiting for one); every slot and queue place taken: the 429."""
    try:
        with gate.admit(), temp.request_dir() as folder:
            path = _save_upload(upload, folder, limits.max_upload_bytes)
            return gate.run(work, path)
    except Busy:
        raise _busy(gate) from None


def _busy(gate: AnalysisGate) -> _RequestProblem:
    """The 429 answer when every analysis slot and queue place is taken."""
    return _RequestProblem(429, "busy", f"the server is busy: {gate.max_concurrent} analyses running and "
                                        f"{gate.queue} waiting; retry in {RETRY_AFTER_SECONDS} s",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _analyse(loaded: LoadedModel, path: Path, name: str, opts: DetectOptions, limits: ServeLimits,
             with_spectrogram: bool) -> dict:
    _probe(path, name, limits)
    result = detect_one(loaded, str(path), opts)
    result.path = name
    if result.failed:
        raise _RequestProblem(422, "cannot_score", _reason(result.error or "could not be scored", path, name))
    if _non_finite_score(result):
        raise _RequestProblem(422, "cannot_score", f"{name}: the model gave a non-finite score (NaN or infinite)")
    report = report_dict(loaded, [result], opts, public=True)
    if with_spectrogram:
        report["files"][0]["spectrogram_png"] = _spectrogram_data_url(path, loaded.sample_rate, limits)
    return finite_or_none(report)


def explain_upload(holder, upload, limits: ServeLimits, with_spectrogram: bool,
                   gate: AnalysisGate, temp: ServeTempRoot) -> dict:
    """Save and explain one upload (spoofrl.serve.explain); returns the JSON report or raises _RequestProblem.

    Same upload limit, temp folder, concurrency gate, duration check and errors as score_upload."""
    name = Path(upload.filename or "upload").name
    try:
        explainer = holder.get()
    except LookupError as err:
        raise _RequestProblem(503, "no_explainer", str(err)) from None
    return _run_saved(upload, limits, gate, temp,
                      lambda path: _explain(holder, explainer, path, name, limits, with_spectrogram))


def _explain(holder, explainer, path: Path, name: str, limits: ServeLimits, with_spectrogram: bool) -> dict:
    from spoofrl.serve.explain import ExplainerFailed, explain_path
    _probe(path, name, limits)  # before anything decodes it: a long file must not be read to its end
    try:
        report = explain_path(explainer, holder.run_lock, path, name, limits.max_seconds)
    except ExplainerFailed as err:
        log.error("the explainer failed on an upload", exc_info=err.__cause__)
        raise _RequestProblem(503, "explainer_failed", f"{name}: the explainer failed while generating ({err}); "
                                                       f"the server's log has the details") from None
    entry = report["files"][0]
    if entry.get("error") is not None:
        raise _RequestProblem(422, "cannot_explain", f"{name}: {entry['error']}")
    if with_spectrogram:
        entry["spectrogram_png"], entry["spectrogram_axes"] = _spectrogram_with_axes(path, explainer.sample_rate,
                                                                                       entry.get("seconds"))
    return finite_or_none(report)


def _spectrogram_with_axes(path: Path, sr: int, seconds: float | None):
    """The spectrogram of the explained part of the clip (its first `seconds`), and where its plot lies."""
    from spoofrl.audio import iter_chunks
    from spoofrl.serve.spectrogram import spectrogram_png_axes
    if not seconds:
        return None, None
    pieces = iter_chunks(path, seconds, sr)
    try:
        _, wave = next(pieces)
    except (AudioError, StopIteration, OSError, ValueError, RuntimeError):
        return None, None
    finally:
        pieces.close()
    png, axes = spectrogram_png_axes(wave, sr)
    return "data:image/png;base64," + base64.b64encode(png).decode(), axes


def _page_html() -> str:
    from importlib.resources import files
    return files("spoofrl").joinpath("assets", "web", "index.html").read_text(encoding="utf-8")


def create_app(loaded: LoadedModel, limits: ServeLimits | None = None,
               allowed_hosts: Iterable[str] = (), explainer_dir: str | Path | None = None,
               explainer_device: str = "auto", explainer_loader=None):
    """A FastAPI app serving `loaded`; wrap it in uvicorn (spoofrl.serve.server.build_server) or TestClient.

    Host headers answered: the loopback names (localhost, 127.0.0.1, ::1) and `allowed_hosts` (names, or '*'
    for any: unsafe). `spoofrl serve` passes its --host and --allow-host names; a TestClient test passes
    "testserver", the Host TestClient sends. Starting removes temp folders left by killed servers.

    `explainer_dir`: the explainer of `POST /api/explain` (a generation run folder; None: the bundled one),
    loaded on `explainer_device` on its first request, or at once by `app.state.explainer.load_now()` (as
    `spoofrl serve` does, to stop on a bad folder) (`explainer_loader(dir, device)` replaces
    spoofrl.detect.explainer.load_explainer, for tests)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from spoofrl import __version__
    from spoofrl.detect.vad import get_vad
    from spoofrl.serve.explain import ExplainerHolder
    from spoofrl.serve.hosts import LOCAL_HOSTS, HostCheck
    from spoofrl.serve.limits import BodyGuard
    limits = limits or ServeLimits()
    get_vad()  # load the voice activity detector now: the first request is not slowed, a missing package fails here
    gate = AnalysisGate(limits.max_concurrent, limits.queue)
    remove_stale_temp_dirs()
    temp = ServeTempRoot()

    @asynccontextmanager
    async def lifespan(_):
        yield
        gate.close()
        temp.close()

    app = FastAPI(title="spoofrl detector", version=__version__, lifespan=lifespan,
                  description="Audio deepfake detection. Higher score = more bona fide.")
    app.state.gate, app.state.temp = gate, temp  # for tests and tools
    holder = ExplainerHolder(explainer_dir, explainer_device, explainer_loader)
    app.state.explainer = holder
    page = _page_html()

    def error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(_RequestProblem)
    async def _problem(_: Request, exc: _RequestProblem):
        return error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        # 404 / 405 and friends in the same {"error", "detail"} shape as every other error of the API.
        code = re.sub(r"\W+", "_", HTTPStatus(exc.status_code).phrase.lower()).strip("_")
        return error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        errors = exc.errors()
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in errors)
        if any(e.get("loc", ("",))[0] == "body" for e in errors):
            detail += " (send the audio as multipart field 'file')"
        return error(422, "bad_request", detail)

    def internal_error(exc: BaseException) -> JSONResponse:
        # The traceback goes to the server's log only: it names server paths and code.
        log.error("unexpected error while serving a request", exc_info=exc)
        return error(500, "internal_error", f"unexpected server error ({type(exc).__name__}); "
                                            f"the server's log has the details")

    # Last resort for errors outside api_detect (which catches its own): Starlette sends this response,
    # then re-raises the exception to the server, which logs it.
    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        return internal_error(exc)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "version": __version__, "model": loaded.info(public=True),
                "limits": {"max_upload_mb": limits.max_upload_mb, "max_seconds": limits.max_seconds,
                           "chunk_seconds": limits.chunk_seconds, "threshold": limits.threshold,
                           "min_speech_share": limits.min_speech_share,
                           "score_without_speech": limits.score_without_speech,
                           "max_concurrent": limits.max_concurrent, "queue": limits.queue},
                "explainer": holder.state()}

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.post("/api/detect")
    def api_detect(file: UploadFile = File(..., description="audio clip (wav, flac, ogg, mp3, webm, m4a, ...)"),
                   spectrogram: bool = False, score_without_speech: bool | None = None):
        try:
            return score_upload(loaded, file, limits, spectrogram, gate, temp, score_without_speech)
        except _RequestProblem:
            raise
        except Exception as exc:  # noqa: BLE001 - a JSON 500, never a traceback page
            return internal_error(exc)

    @app.post("/api/explain")
    def api_explain(file: UploadFile = File(..., description="audio clip (wav, flac, ogg, mp3, webm, m4a, ...)"),
                    spectrogram: bool = False):
        try:
            return explain_upload(holder, file, limits, spectrogram, gate, temp)
        except _RequestProblem:
            raise
        except Exception as exc:  # noqa: BLE001 - a JSON 500, never a traceback page
            return internal_error(exc)

    app.add_middleware(BodyGuard, limit_bytes=limits.max_upload_bytes, body_timeout=limits.body_timeout)
    app.add_middleware(HostCheck, allowed=[*LOCAL_HOSTS, *allowed_hosts])  # outermost: before any body is read
    return app
