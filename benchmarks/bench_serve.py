"""Peak memory of `spoofrl serve` under a burst of concurrent heavy uploads.

Starts `spoofrl serve` in a subprocess (bundled default model unless --model), waits for /healthz, fires N
concurrent uploads of one WAV file (a few MB) with ?spectrogram=true, and prints the status counts, the
wall time and the server's peak RSS (VmHWM of /proc/PID/status, the kernel's high-water mark for that
process: start-up and model load included). Extra arguments after `--` go to `spoofrl serve`.

    python benchmarks/bench_serve.py                              # N=16 uploads of 120 s (3.8 MB) each
    python benchmarks/bench_serve.py -n 45 --seconds 560 -- --max-concurrent 45 --queue 0   # ~unbounded
"""
from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_detect import default_model_or_fresh, write_long_wav  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int, key: str) -> float:
    """A /proc/PID/status memory field (VmHWM, VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def multipart(name: str, data: bytes, boundary: str = "spoofrlbenchboundary") -> tuple[bytes, str]:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(port: int, body: bytes, content_type: str, timeout: float) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/api/detect?spectrogram=true", body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.perf_counter() - start
    except OSError as err:
        print(f"upload failed: {err}", file=sys.stderr)
        return -1, time.perf_counter() - start
    finally:
        conn.close()


def wait_ready(port: int, proc: subprocess.Popen, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"spoofrl serve exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("spoofrl serve did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=16, help="concurrent uploads (default 16)")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the uploaded 16 kHz WAV (default 120)")
    parser.add_argument("--model", help="model folder (default: bundled default model, else a fresh logmel-linear)")
    parser.add_argument("--timeout", type=float, default=600.0, help="client timeout per upload, s")
    parser.add_argument("serve_args", nargs="*", help="after --: extra options of `spoofrl serve`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spoofrl-bench-serve-") as tmp:
        tmp = Path(tmp)
        model = args.model or default_model_or_fresh(tmp / "model")
        wav = tmp / "clip.wav"
        write_long_wav(wav, args.seconds)
        body, content_type = multipart("clip.wav", wav.read_bytes())
        port = free_port()
        cmd = [sys.executable, "-c", "import sys; from spoofrl.cli import main; sys.exit(main(sys.argv[1:]))",
               "serve", "--port", str(port), *(["--model", model] if model else []), *args.serve_args]
        proc = subprocess.Popen(cmd, env=dict(os.environ, SPOOFRL_NO_PROGRESS="1"))
        try:
            wait_ready(port, proc)
            idle_hwm = proc_status(proc.pid, "VmHWM")
            results: list[tuple[int, float]] = []
            lock = threading.Lock()
            go = threading.Barrier(args.n)

            def client():
                go.wait()
                r = upload(port, body, content_type, args.timeout)
                with lock:
                    results.append(r)

            threads = [threading.Thread(target=client) for _ in range(args.n)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
            peak = proc_status(proc.pid, "VmHWM")
            rss_after = proc_status(proc.pid, "VmRSS")
        finally:
            proc.terminate()
            proc.wait(30)
    counts = collections.Counter(status for status, _ in results)
    ok_times = sorted(t for status, t in results if status == 200)
    print(json.dumps({"uploads": args.n, "file_mb": round(len(body) / 1e6, 2), "audio_seconds": args.seconds,
                      "serve_args": args.serve_args, "status_counts": dict(sorted(counts.items())),
                      "wall_s": round(wall, 1),
                      "ok_latency_s": [round(ok_times[0], 1), round(ok_times[-1], 1)] if ok_times else None,
                      "peak_rss_mb_idle": round(idle_hwm), "peak_rss_mb": round(peak),
                      "rss_mb_after": round(rss_after)}, indent=1))


if __name__ == "__main__":
    main()
