"""Options of the acoustic evidence measures (`EvidenceConfig`) and the version of their definitions.

`EVIDENCE_VERSION` names the definitions of the measures: a reference profile saved under another version
measured other quantities (or the same ones differently) and is refused on load. Bump it whenever a
formula, a scalar's key or a default changes what a measure returns.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from spoofrl.config import invalid, option

EVIDENCE_VERSION = 1
DEFAULT_BAND_EDGES_HZ = (0.0, 250.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 8000.0)


@dataclass
class EvidenceConfig:
    """How a clip is analysed into evidence. The defaults suit 16 kHz speech."""
    sample_rate: int = option(16000, "rate (Hz) every clip is analysed at; other rates are resampled to it",
                              ge=4000, le=96000)
    frame_ms: float = option(25.0, "analysis frame length (ms) of the short-time spectrum (Hann window)",
                             ge=5.0, le=100.0)
    hop_ms: float = option(10.0, "frame step (ms); also the time resolution of discontinuity events",
                           ge=1.0, le=100.0)
    n_fft: int = option(512, "FFT size of the short-time spectrum (>= the frame length in samples)",
                        ge=64, le=16384)
    band_edges_hz: list[float] = option(
        factory=lambda: list(DEFAULT_BAND_EDGES_HZ),
        doc="edges (Hz) of the analysis bands, increasing, at most sample_rate / 2; bands are [edge_i, edge_i+1)",
        ge=0.0)
    speech_band_hz: list[float] = option(
        factory=lambda: [300.0, 3400.0],
        doc="[lo, hi] (Hz): the band whose median long-term level is the reference of the bandwidth measure",
        ge=0.0)
    bandwidth_drop_db: float = option(
        40.0, "X of the bandwidth measure: the highest frequency whose long-term level is within X dB of the "
              "speech band's median level", gt=0.0, le=120.0)
    smooth_hz: float = option(150.0, "width (Hz) of the moving average over the long-term spectrum (fills the "
                                     "gaps between harmonics)", ge=0.0, le=2000.0)
    cliff_db: float = option(20.0, "band limiting: the long-term level must fall by at least this many dB "
                                   "across the cut-off", gt=0.0)
    cliff_width_hz: float = option(500.0, "band limiting: width (Hz) of the regions compared just below and just "
                                          "above the cut-off", gt=0.0)
    band_limit_max_hz: float = option(
        7500.0, "band limiting: cut-offs above this are not flagged (a resampler's anti-alias filter near "
                "Nyquist, present in most bona fide 16 kHz audio, is not a codec)", gt=0.0)
    hnr_split_hz: float = option(4000.0, "HNR is also reported below and above this frequency (Hz)", gt=0.0)
    f0_min_hz: float = option(70.0, "lowest F0 (Hz) searched", gt=0.0)
    f0_max_hz: float = option(400.0, "highest F0 (Hz) searched", gt=0.0)
    pitch_window_ms: float = option(40.0, "window (ms) of the autocorrelation F0 / HNR analysis; needs at "
                                          "least two periods of f0_min_hz", ge=5.0, le=200.0)
    voicing_threshold: float = option(0.45, "a frame is voiced when its normalised autocorrelation peak is at "
                                            "least this (Praat's default)", gt=0.0, lt=1.0)
    octave_cost: float = option(0.1, "autocorrelation peaks at longer lags are penalised by this per octave, so "
                                     "F0 wins over its sub-harmonics frame by frame (Praat uses 0.01 plus a path "
                                     "search across frames; without that search 0.01 lets jitter flip frames "
                                     "an octave down)", ge=0.0, le=1.0)
    speech_range_db: float = option(40.0, "frames within this many dB of the loudest frame count as speech",
                                    gt=0.0, le=120.0)
    jump_db: float = option(10.0, "an energy discontinuity: frame energy changes by at least this many dB "
                                  "between adjacent non-overlapping frames inside speech", gt=0.0)
    pause_percentile: float = option(10.0, "frames at or below this percentile of frame energy are the pauses "
                                           "whose noise floor is measured", gt=0.0, lt=100.0)
    z_threshold: float = option(2.0, "|z| at or above this makes an item's direction 'high' or 'low'", gt=0.0)
    min_frames: int = option(10, "shortest clip analysed, in frames (shorter clips are refused)", ge=4)
    max_seconds: float = option(120.0, "longest clip analysed (s); evidence is per clip: cut longer recordings "
                                       "(spoofrl.audio.chunk_signal) and measure each piece", gt=0.0, le=3600.0)

    # -------------------------------------------------------------------------- derived sizes (samples)

    @property
    def frame_length(self) -> int:
        return round(self.frame_ms * self.sample_rate / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.hop_ms * self.sample_rate / 1000)

    @property
    def pitch_length(self) -> int:
        return round(self.pitch_window_ms * self.sample_rate / 1000)

    @property
    def nyquist(self) -> float:
        return self.sample_rate / 2

    @property
    def bands(self) -> list[tuple[float, float]]:
        edges = self.band_edges_hz
        return [(float(lo), float(hi)) for lo, hi in pairwise(edges)]

    def validate(self):
        edges = self.band_edges_hz
        if len(edges) < 2:
            raise invalid("band_edges_hz", "needs at least two edges (one band)")
        if any(b <= a for a, b in pairwise(edges)):
            raise invalid("band_edges_hz", f"must increase strictly, got {edges}")
        if edges[-1] > self.nyquist:
            raise invalid("band_edges_hz", f"last edge {edges[-1]:g} Hz is above Nyquist ({self.nyquist:g} Hz)")
        bin_hz = self.sample_rate / self.n_fft
        narrow = [f"{lo:g}-{hi:g}" for lo, hi in self.bands if hi - lo < 2 * bin_hz]
        if narrow:
            raise invalid("band_edges_hz", f"bands {', '.join(narrow)} Hz hold fewer than two FFT bins "
                                           f"({bin_hz:g} Hz each with n_fft {self.n_fft})")
        if self.n_fft < self.frame_length:
            raise invalid("n_fft", f"must be at least the frame length ({self.frame_length} samples), "
                                   f"got {self.n_fft}")
        if self.hop_length > self.frame_length:
            raise invalid("hop_ms", f"must not exceed frame_ms ({self.frame_ms:g}), got {self.hop_ms:g}")
        lo, hi = (self.speech_band_hz + [0.0, 0.0])[:2]
        if len(self.speech_band_hz) != 2 or not 0 <= lo < hi <= self.nyquist or hi - lo < 2 * bin_hz:
            raise invalid("speech_band_hz", f"must be [lo, hi] with 0 <= lo < hi <= {self.nyquist:g}, at least "
                                            f"two FFT bins ({2 * bin_hz:g} Hz) wide, got {self.speech_band_hz}")
        if not self.f0_min_hz < self.f0_max_hz < self.nyquist:
            raise invalid("f0_max_hz", f"need f0_min_hz < f0_max_hz < {self.nyquist:g}, got {self.f0_min_hz:g} "
                                       f"and {self.f0_max_hz:g}")
        if self.pitch_window_ms < 2000.0 / self.f0_min_hz:
            raise invalid("pitch_window_ms", f"must hold two periods of f0_min_hz ({2000.0 / self.f0_min_hz:.1f} "
                                             f"ms), got {self.pitch_window_ms:g}")
        if not 0 < self.hnr_split_hz < self.nyquist:
            raise invalid("hnr_split_hz", f"must be inside (0, {self.nyquist:g}), got {self.hnr_split_hz:g}")
