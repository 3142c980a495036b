"""The HTTP service: `POST /api/detect`, `GET /healthz`, `GET /` (the web page).

One upload per request (multipart field `file`). The answer is the JSON report of `spoofrl detect
--format json` for that one file (model info, settings, `files: [ {...} ]`, summary), plus the file's
spectrogram as a PNG data URL when `?spectrogram=true`. Errors are JSON `{"error": code, "detail": reason}`:
413 upload too large, 415 not audio (neither soundfile nor ffmpeg decodes it), 422 audio that cannot be
scored (empty, silent, too long, too short, truncated, corrupt part-way) or a malformed request, 404/405 an
unknown path or method.

Requests run in FastAPI's thread pool: decoding happens in parallel, inference is serialised by the model's
lock, and every request keeps its own state (temp folder, result), so concurrent requests cannot mix.
"""
import base64
import re
from http import HTTPStatus
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from spoofrl.detect import DetectOptions, LoadedModel, detect_one, report_dict
from spoofrl.errors import AudioError

COPY_BLOCK = 1 << 16
# The duration probe of ffmpeg-only uploads decodes pieces of this length at a low rate (cheap; only counted).
PROBE_PIECE_SECONDS = 30.0
PROBE_RATE = 8000


@dataclass
class ServeLimits:
    max_upload_mb: float = 25.0  # larger uploads get 413
    max_seconds: float = 600.0  # longer audio gets 422
    chunk_seconds: float = 4.0  # scored chunk length (timeline step)
    threshold: float = 0.0  # bonafide when score >= threshold

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)


class _RequestProblem(Exception):
    """Ends a request with a JSON error response."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


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
    """Duration of the upload; 415 when it is not audio, 422 when it is too long."""
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


def score_upload(loaded: LoadedModel, upload, limits: ServeLimits, with_spectrogram: bool) -> dict:
    """Save, check, score one upload; returns the JSON report or raises _RequestProblem."""
    name = Path(upload.filename or "upload").name
    opts = DetectOptions(threshold=limits.threshold, chunk_seconds=limits.chunk_seconds,
                         max_seconds=limits.max_seconds, show_progress=False)
    folder = Path(tempfile.mkdtemp(prefix="spoofrl-serve-"))
    try:
        path = _save_upload(upload, folder, limits.max_upload_bytes)
        _probe(path, name, limits)
        result = detect_one(loaded, str(path), opts)
        result.path = name
        if result.failed:
            raise _RequestProblem(422, "cannot_score", _reason(result.error, path, name))
        report = report_dict(loaded, [result], opts)
        if with_spectrogram:
            report["files"][0]["spectrogram_png"] = _spectrogram_data_url(path, loaded.sample_rate, limits)
        return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _page_html() -> str:
    from importlib.resources import files
    return files("spoofrl").joinpath("assets", "web", "index.html").read_text(encoding="utf-8")


def create_app(loaded: LoadedModel, limits: ServeLimits | None = None):
    """A FastAPI app serving `loaded`; wrap it in uvicorn (or use TestClient)."""
    from fastapi import FastAPI, File, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from spoofrl import __version__
    from spoofrl.serve.limits import BodySizeLimit
    limits = limits or ServeLimits()
    app = FastAPI(title="spoofrl detector", version=__version__,
                  description="Audio deepfake detection. Higher score = more bona fide.")
    page = _page_html()

    @app.exception_handler(_RequestProblem)
    async def _problem(_: Request, exc: _RequestProblem):
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        # 404 / 405 and friends in the same {"error", "detail"} shape as every other error of the API.
        code = re.sub(r"\W+", "_", HTTPStatus(exc.status_code).phrase.lower()).strip("_")
        return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        errors = exc.errors()
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in errors)
        if any(e.get("loc", ("",))[0] == "body" for e in errors):
            detail += " (send the audio as multipart field 'file')"
        return JSONResponse({"error": "bad_request", "detail": detail}, status_code=422)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "version": __version__, "model": loaded.info(),
                "limits": {"max_upload_mb": limits.max_upload_mb, "max_seconds": limits.max_seconds,
                           "chunk_seconds": limits.chunk_seconds, "threshold": limits.threshold}}

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.post("/api/detect")
    def api_detect(file: UploadFile = File(..., description="audio clip (wav, flac, ogg, mp3, webm, m4a, ...)"),
                   spectrogram: bool = False):
        return score_upload(loaded, file, limits, spectrogram)

    app.add_middleware(BodySizeLimit, limit_bytes=limits.max_upload_bytes)
    return app
