"""The packaging of real recordings (how a clip was stored: codec, sample rate, bit rate), read from the
real-speech manifest, and the same packaging applied to a spoof.

Real clips come as Ogg Vorbis at 22.05 / 44.1 / 48 kHz, G.722 at 16 kHz, 16-bit PCM at 8 / 22.05 /
44.1 kHz. The benchmark is 16 kHz; a bona fide file is the decoded clip resampled to 16 kHz (and, see
`rate_roundtrip`, once more to the clip's rate and back). A spoof made
from (or for) that clip is given the *same* packaging before it is written: resampled to the clip's rate
(the same soxr resampler the clip was read with), encoded and decoded with the clip's codec at the
clip's bit rate, resampled back to 16 kHz. So codec artefacts and bandwidth are the same for both classes
and cannot tell them apart (`spoofrl.synth.probe` measures that).

`Packaging.parse(condition, sample_rate)` reads the manifest's `condition` (codec-rate, e.g. `vorbis-22k`)
and `sample_rate` columns; `package_many(signals, packagings)` applies them, batching the ffmpeg round
trips of one call into few processes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spoofrl.audio import resample
from spoofrl.codecs import CodecRequest, codec_roundtrip_many
from spoofrl.errors import SpoofrlError

SR = 16000
LOSSLESS = ("pcm16", "pcm24", "pcm32", "pcm8", "flac", "wav", "float")
# libvorbis accepts these mono bit rates (bit/s) at each sample rate (measured with ffmpeg's libvorbis)
VORBIS_RANGE = ((12000, (8000, 32000)), (20000, (16000, 96000)), (30000, (16000, 80000)), (10 ** 9, (32000, 240000)))
VORBIS_MAX_RATE = 48000            # libvorbis refuses higher rates; a clip tagged 128 kHz is re-coded at 48 kHz
DEFAULT_VORBIS_BITRATE = {22050: 40000, 44100: 96000, 48000: 96000}


@dataclass(frozen=True)
class Packaging:
    codec: str          # vorbis | g722 | pcm16 | ... (the manifest condition's codec part)
    rate: int           # the clip's sample rate (Hz)
    bitrate: int = 0    # per channel (bit/s) for lossy codecs with a bit rate; 0 otherwise

    @property
    def condition(self) -> str:
        """The manifest condition it came from (codec-rate in kHz, as `spoofrl data fetch` writes it)."""
        return f"{self.codec}-{self.rate // 1000}k"

    @property
    def band_hz(self) -> float:
        """Upper edge of the band it leaves (Nyquist of its rate; G.722 codes up to 7 kHz)."""
        return 7000.0 if self.codec == "g722" else self.rate / 2

    @staticmethod
    def parse(condition: str, sample_rate: int | str | None = None, bitrate: int = 0) -> "Packaging":
        codec, _, khz = condition.partition("-")
        if not codec or not khz.endswith("k"):
            raise SpoofrlError(f"unknown packaging '{condition}' (expected codec-rate such as vorbis-22k)")
        try:
            rate = int(sample_rate) if sample_rate not in (None, "", "-") else int(float(khz[:-1]) * 1000)
        except ValueError:
            raise SpoofrlError(f"unknown packaging '{condition}' with sample rate {sample_rate!r}") from None
        if rate in (11000, 22000, 44000):  # '22k' without the manifest's exact rate
            rate = {11000: 11025, 22000: 22050, 44000: 44100}[rate]
        return Packaging(codec, rate, int(bitrate))

    def to_dict(self) -> dict:
        return {"codec": self.codec, "rate": self.rate, "bitrate": self.bitrate}


def vorbis_bitrate(path: Path) -> int:
    """Nominal bit rate per channel of an Ogg Vorbis file, read from its identification header (0 when the
    file is not Vorbis or states none; then the file's average bit rate is used where its length is known)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return 0
    if head[:4] != b"OggS" or len(head) < 28:
        return 0
    nsegs = head[26]
    start = 27 + nsegs
    packet = head[start:start + 30]
    if len(packet) < 30 or packet[:7] != b"\x01vorbis":
        return 0
    channels = packet[11]
    rate, _max, nominal, _min = struct.unpack("<Iiii", packet[12:28])
    if nominal <= 0 or nominal > 10 ** 6:
        return 0
    return int(nominal // max(channels, 1))


def _vorbis_request(p: Packaging) -> tuple[int, int]:
    """(rate, bit rate) the spoof is coded at: the clip's, inside what libvorbis accepts."""
    rate = min(p.rate, VORBIS_MAX_RATE)
    bitrate = p.bitrate or DEFAULT_VORBIS_BITRATE.get(rate, 64000)
    for upto, (lo, hi) in VORBIS_RANGE:
        if rate <= upto:
            return rate, int(np.clip(bitrate, lo, hi))
    return rate, bitrate


def _quantise(x: np.ndarray, codec: str) -> np.ndarray:
    bits = {"pcm8": 8, "pcm16": 16, "pcm24": 24}.get(codec)
    if bits is None:
        return x
    scale = 2.0 ** (bits - 1)
    return np.clip(np.round(x * scale), -scale, scale - 1) / scale


def package_many(signals: list[np.ndarray], packagings: list[Packaging]) -> list[np.ndarray]:
    """Each 16 kHz signal given its packaging and brought back to 16 kHz (same length as the input).
    Unknown lossy codecs fail with a message naming them."""
    out: list[np.ndarray | None] = [None] * len(signals)
    # lossy round trips, all in one codec_roundtrip_many call: (index, signal at the coding rate, that rate,
    # request); Vorbis codes each clip at its own rate and bit rate and is resampled back to 16 kHz
    lossy: list[tuple[int, np.ndarray, int, CodecRequest]] = []
    for k, (x, p) in enumerate(zip(signals, packagings)):
        x = np.asarray(x, dtype=np.float64)
        if p.codec == "vorbis":
            rate, bitrate = _vorbis_request(p)
            lossy.append((k, resample(x, SR, rate).astype(np.float64), rate, CodecRequest("vorbis", bitrate)))
        elif p.codec == "g722":
            lossy.append((k, signals[k], SR, CodecRequest("g722")))
        elif p.codec in LOSSLESS:
            y = x if p.rate == SR else resample(x, SR, p.rate).astype(np.float64)
            y = _quantise(y, p.codec)
            out[k] = y if p.rate == SR else resample(y, p.rate, SR).astype(np.float64)
        elif p.codec in ("mp3", "opus"):
            lossy.append((k, signals[k], SR, CodecRequest(p.codec, p.bitrate or None)))
        else:
            raise SpoofrlError(f"packaging '{p.condition}': no way to apply codec '{p.codec}' to a spoof")
    decoded = codec_roundtrip_many([j[1] for j in lossy], [j[2] for j in lossy], [j[3] for j in lossy])
    for (k, _, rate, request), y in zip(lossy, decoded):
        out[k] = resample(y, rate, SR).astype(np.float64) if request.name == "vorbis" else y
    return [_fit(np.nan_to_num(np.asarray(y, dtype=np.float64)), len(x)) for y, x in zip(out, signals)]


def rate_roundtrip(x: np.ndarray, p: Packaging) -> np.ndarray:
    """The bona fide side of parity: a clip already carries its packaging, but a spoof made at 16 kHz is
    resampled to the clip's rate and back when it is packaged, which steepens the resampler's edge just
    below 8 kHz. The bona fide copy gets the same round trip (16 kHz -> the clip's rate -> 16 kHz, no codec:
    nothing in the band changes), so that edge is alike for both classes."""
    x = np.asarray(x, dtype=np.float64)
    rate = min(p.rate, VORBIS_MAX_RATE) if p.codec == "vorbis" else p.rate
    if p.codec == "g722" or rate == SR:
        return x
    y = resample(resample(x, SR, rate), rate, SR).astype(np.float64)
    return _fit(y, len(x))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
