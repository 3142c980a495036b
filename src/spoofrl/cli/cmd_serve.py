"""`spoofrl serve`: HTTP detection and explanation API + a web page to upload or record a clip."""
from __future__ import annotations

import argparse

from spoofrl.cli.common import add_device_option

DESCRIPTION = """\
Serve a detector and its explainer over HTTP (FastAPI + uvicorn):
  GET  /            web page: upload or record a clip, see the verdict, score, spectrogram and per-chunk timeline
  POST /api/detect  multipart upload (field 'file'; add ?spectrogram=true for a PNG) -> the JSON report of
                    `spoofrl detect --format json` for that file (the model named by folder, not by path);
                    a clip with less than --min-speech-share of speech gets verdict 'no-speech' and no
                    score (200), unless ?score_without_speech=true (or --score-without-speech)
  POST /api/explain multipart upload (field 'file'; ?spectrogram=true as above) -> the JSON report of
                    `spoofrl explain --json` for that file: the explainer's verdict, score, rationale and
                    its claims checked against evidence measured on the clip (at most its first 30 s)
  GET  /healthz     status, model information, limits and the explainer's state
Higher score = more bona fide (log-odds, or an LLR when the model folder has calibration.json).

Errors of POST /api/detect and POST /api/explain (the same upload protocol: limits, duration check, errors)
are JSON {"error", "detail"}. One file per request: a file that cannot be analysed is an error status, never
a 200 answer with verdict 'error'.
  400 bad_host          the Host header names no host this server answers to (see Host names below)
  408 body_timeout      the upload sent no data for --body-timeout s (the connection is closed)
  413 upload_too_large  the upload is over --max-upload-mb
  415 not_audio         neither soundfile nor ffmpeg decodes it
  422 empty_upload      0 bytes
  422 audio_too_long    longer than --max-seconds (decoding stops there: a long file is never read whole)
  422 cannot_score      (detect) / cannot_explain (explain): silent, no samples, too short, truncated,
                        corrupt part-way, or a non-finite score
  422 bad_request       no 'file' field, or a malformed query parameter
  429 busy              --max-concurrent analyses running and --queue waiting (with Retry-After)
  500 internal_error    an unexpected server error (the traceback goes to the server's log only)
  503 no_explainer      (explain) no explainer available; explainer_failed: it failed while generating
  404 not_found, 405 method_not_allowed: an unknown path or method
Past --max-connections uvicorn itself answers 503 (plain text).

Host names (DNS-rebinding guard): only requests whose Host header names this server are answered:
localhost, 127.0.0.1, ::1, the --host value, and with --host 0.0.0.0 or :: this machine's hostname.
Clients that reach it by another name (a DNS name, a LAN address) need --allow-host NAME (repeatable;
ports in Host are ignored). --allow-host '*' accepts any Host: unsafe, it turns the guard off.

Slow clients: a connection must send a complete request head within --header-timeout s (else it is
closed), an upload that stalls for --body-timeout s gets 408, idle keep-alive connections close after
--keep-alive s, and at most --max-connections connections are served at once.

Memory: analyses (decode + score + spectrogram) run on at most --max-concurrent threads, --queue more
wait, others get 429. Scoring streams the audio in chunks and inference (about 250 MB for the default LCNN)
is serialised by the model's lock, so it counts once. The spectrogram decodes the whole clip: per running
analysis about 2 x max_seconds x rate x 4 bytes of float32 (77 MB at 600 s, 16 kHz) plus ~50 MB for the
STFT and image. Peak ~ base (~325 MB) + 250 MB + max_concurrent x that; uploads wait on disk, not in
memory. Measured: 45 concurrent 18 MB uploads with spectrograms peak at 935 MB with the defaults (2054 MB
with all 45 at once); see BENCHMARKS.md.

Temp files: uploads live in $TMPDIR/spoofrl-serve-<pid>-*/ while scored; each start removes such folders
left by servers that were killed (process gone), and legacy spoofrl-serve-* folders over an hour old.

Start: the detector (--model) and the explainer (--explainer) are loaded before the port is opened; a missing
or broken folder stops serve with a one-line error (exit status 2). Without --explainer the bundled explainer
is used; an installation without one serves detection only (POST /api/explain answers 503 no_explainer).
Without --model the bundled default model is served: a demonstration model (see its MODEL_CARD.md).
The default host 127.0.0.1 is reachable from this machine only; use --host 0.0.0.0 to expose it."""


def register(sub):
    p = sub.add_parser("serve", help="HTTP API + web page for detection and explanation (higher score = more "
                                     "bona fide)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", metavar="RUN_DIR", help="run or model folder; default: the bundled default model")
    p.add_argument("--explainer", metavar="RUN_DIR", help="the explainer of POST /api/explain and the page's Explain "
                   "button (a generation run folder, as `spoofrl explain --model`); default: the bundled explainer; "
                   "loaded on the first explain request")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="larger uploads are refused with 413 (default 25)")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longer audio is refused with 422 (default 600)")
    p.add_argument("--chunk-seconds", type=float, default=4.0, help="scored chunk length / timeline step, 0.5 to 600 (default 4)")
    p.add_argument("--threshold", type=float, default=0.0, help="verdict bonafide when score >= T (default 0)")
    p.add_argument("--min-speech-share", type=float, default=0.05, metavar="F",
                   help="clips with a smaller share of speech (0 to 1) get verdict no-speech and no score "
                        "(default 0.05, as `detect`)")
    p.add_argument("--score-without-speech", action="store_true",
                   help="score clips with little or no speech by default (a request's "
                        "?score_without_speech=false still gates them)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests with this Host name (repeatable; '*' = any Host, unsafe: no "
                        "DNS-rebinding guard); localhost, 127.0.0.1, ::1 and --host are always answered")
    p.add_argument("--max-concurrent", type=int, default=2,
                   help="analyses (decode + score + spectrogram) running at once; bounds memory (default 2)")
    p.add_argument("--queue", type=int, default=8,
                   help="analyses waiting for a slot; more get 429 busy with Retry-After (default 8)")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="close a connection whose request head is not complete within S s (default 10)")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="408 when an upload sends no data for S s (default 30)")
    p.add_argument("--keep-alive", type=float, default=5.0,
                   help="close idle keep-alive connections after S s (default 5)")
    p.add_argument("--max-connections", type=int, default=64,
                   help="open connections served at once; past it uvicorn answers 503 (default 64)")
    add_device_option(p)
    p.set_defaults(func=run)


def _check(args) -> None:
    import math

    from spoofrl.detect import DetectOptions
    from spoofrl.errors import SpoofrlError
    from spoofrl.serve.hosts import normalize_host
    if not 0 < args.port < 65536:
        raise SpoofrlError(f"--port must be 1-65535, got {args.port}")
    for name in ("max_upload_mb", "max_seconds", "header_timeout", "body_timeout", "keep_alive"):
        value = getattr(args, name)
        if not (value > 0 and math.isfinite(value)):
            raise SpoofrlError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    for name, least in (("max_concurrent", 1), ("queue", 0), ("max_connections", 1)):
        if getattr(args, name) < least:
            raise SpoofrlError(f"--{name.replace('_', '-')} must be >= {least}, got {getattr(args, name)}")
    for name in args.allow_host:
        if name != "*" and normalize_host(name) is None:
            raise SpoofrlError(f"--allow-host {name!r}: not a host name")
    DetectOptions(threshold=args.threshold, chunk_seconds=args.chunk_seconds,
                  min_speech_share=args.min_speech_share).validate()


def run(args) -> int:
    import logging

    from spoofrl.errors import SpoofrlError
    _check(args)
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise SpoofrlError("'spoofrl serve' needs the serve extras: pip install 'spoofrl[serve]'") from None
    from spoofrl.detect import load_detection_model
    from spoofrl.serve import ServeLimits, create_app
    from spoofrl.serve.hosts import ANY_HOST, allowed_host_names
    from spoofrl.serve.server import ServerOptions, build_server
    loaded = load_detection_model(args.model, args.device)
    limits = ServeLimits(max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds,
                         chunk_seconds=args.chunk_seconds, threshold=args.threshold,
                         min_speech_share=args.min_speech_share, score_without_speech=args.score_without_speech,
                         max_concurrent=args.max_concurrent, queue=args.queue, body_timeout=args.body_timeout)
    hosts = allowed_host_names(args.host, args.allow_host)
    app = create_app(loaded, limits, allowed_hosts=hosts, explainer_dir=args.explainer, explainer_device=args.device)
    app.state.explainer.load_now()  # a bad --explainer stops here, not with a 503 on every request
    log = logging.getLogger(__name__)
    log.info("serving %s on http://%s:%d/ (trained on: %s)", loaded.name, args.host, args.port, loaded.trained_on)
    if ANY_HOST in hosts:
        log.warning("--allow-host '*': any Host header is answered (no DNS-rebinding protection)")
    else:
        log.info("answering Host names: %s (add others with --allow-host)", ", ".join(dict.fromkeys(hosts)))
    _check_port_free(args.host, args.port)
    server = build_server(app, args.host, args.port, ServerOptions(
        header_timeout=args.header_timeout, keep_alive=args.keep_alive, max_connections=args.max_connections))
    server.run()
    if not server.started:
        raise SpoofrlError(f"the server did not start on {args.host}:{args.port} (see uvicorn's message above)")
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
