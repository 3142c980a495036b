"""Server-side spectrogram PNG for the web page (matplotlib, Agg canvas; no pyplot global state)."""
from __future__ import annotations

import io
import threading

import numpy as np

# matplotlib is not guaranteed thread-safe even with separate figures; rendering is cheap, so serialise it.
_RENDER_LOCK = threading.Lock()
MAX_FRAMES = 2000  # the image is ~800 px wide; more frames only cost time
N_FFT = 512


def log_spectrogram(wave: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """(dB magnitude [freq, frames], seconds per frame); the hop grows for long clips to cap the frame count."""
    hop = max(N_FFT // 4, int(np.ceil(len(wave) / MAX_FRAMES)))
    padded = np.pad(wave.astype(np.float32), (0, max(0, N_FFT - len(wave))))
    frames = 1 + (len(padded) - N_FFT) // hop
    index = np.arange(N_FFT)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(padded[index] * np.hanning(N_FFT)[None, :], axis=1)).T
    db = 20 * np.log10(np.maximum(spec, 1e-6))
    return np.maximum(db, db.max() - 80.0), hop / sr


def spectrogram_png(wave: np.ndarray, sr: int, title: str = "") -> bytes:
    return spectrogram_png_axes(wave, sr, title)[0]


def spectrogram_png_axes(wave: np.ndarray, sr: int, title: str = "") -> tuple[bytes, dict]:
    """(the PNG, where its plot lies): `axes` holds the plot area's left / right / top / bottom edges as
    fractions of the image's width and height (from its top-left corner) and the time (s) and frequency (Hz)
    ranges it spans, so a page can draw bands and time spans over the image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    db, step = log_spectrogram(wave, sr)
    with _RENDER_LOCK:
        fig = Figure(figsize=(8, 2.6), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                  extent=(0.0, db.shape[1] * step, 0.0, sr / 2000.0))
        ax.set_xlabel("time (s)")
        ax.set_ylabel("kHz")
        if title:
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
        box = ax.get_position()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    axes = {"left": float(box.x0), "right": float(box.x1), "top": float(1.0 - box.y1),
            "bottom": float(1.0 - box.y0), "seconds": [0.0, float(db.shape[1] * step)],
            "hz": [0.0, float(sr / 2.0)]}
    return buf.getvalue(), axes
