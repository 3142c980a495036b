"""`spoofrl serve`: HTTP detection API + a web page to upload or record a clip."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_device_option

DESCRIPTION = """\
Serve a detector over HTTP (FastAPI + uvicorn):
  GET  /            web page: upload or record a clip, see the verdict, score, spectrogram and per-chunk timeline
  POST /api/detect  multipart upload (field 'file'; add ?spectrogram=true for a PNG) -> the JSON report of
                    `spoofrl detect --format json` for that file
  GET  /healthz     status, model information and limits
Higher score = more bona fide (log-odds, or an LLR when the model folder has calibration.json).
Errors are JSON {"error", "detail"}: 413 upload too large, 415 not audio, 422 audio that cannot be scored
(empty, silent, truncated, longer than --max-seconds, ...), 404/405 unknown path or method.

Without --model the bundled default model is served: it was trained on synthetic data only.
The default host 127.0.0.1 is reachable from this machine only; use --host 0.0.0.0 to expose it."""


def register(sub):
    p = sub.add_parser("serve", help="HTTP API + web page for detection (higher score = more bona fide)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", metavar="RUN_DIR", help="run or model folder; default: the bundled default model")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="larger uploads are refused with 413 (default 25)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longer audio is refused with 422 (default 600)")
    p.add_argument("--chunk-seconds", type=float, default=4.0, help="scored chunk length / timeline step, 0.5 to 600 (default 4)")
    p.add_argument("--threshold", type=float, default=0.0, help="verdict bonafide when score >= T (default 0)")
    add_device_option(p)
    p.set_defaults(func=run)


def _check(args) -> None:
    import math

    from spoofrl.detect import DetectOptions
    from spoofrl.errors import SpoofrlError
    if not 0 < args.port < 65536:
        raise SpoofrlError(f"--port must be 1-65535, got {args.port}")
    for name in ("max_upload_mb", "max_seconds"):
        value = getattr(args, name)
        if not (value > 0 and math.isfinite(value)):
            raise SpoofrlError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    DetectOptions(threshold=args.threshold, chunk_seconds=args.chunk_seconds).validate()


def run(args) -> int:
    import logging

    from spoofrl.errors import SpoofrlError
    _check(args)
    try:
        import uvicorn
    except ImportError:
        raise SpoofrlError("'spoofrl serve' needs the serve extras: pip install 'spoofrl[serve]'") from None
    from spoofrl.detect import load_detection_model
    from spoofrl.serve import ServeLimits, create_app
    loaded = load_detection_model(args.model, args.device)
    limits = ServeLimits(max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
                         chunk_seconds=args.chunk_seconds, threshold=args.threshold)
    app = create_app(loaded, limits)
    log = logging.getLogger(__name__)
    log.info("serving %s on http://%s:%d/ (trained on: %s)", loaded.name, args.host, args.port, loaded.trained_on)
    _check_port_free(args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _check_port_free(host: str, port: int) -> None:
    """uvicorn exits without a useful message when the port is taken; say it on one line instead."""
    import socket

    from spoofrl.errors import SpoofrlError
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise SpoofrlError(f"--host {host}: cannot resolve ({err})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            raise SpoofrlError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
