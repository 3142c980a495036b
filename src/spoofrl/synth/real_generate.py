"""`spoofrl data synth --design real`: the plan of `spoofrl.synth.real_design` made into FLAC files,
manifest.csv, meta.jsonl, README.md and synth.json.

Per base clip (one worker call handles up to `BASES_PER_CHUNK` of one subset):

1. the real clip decoded at 16 kHz mono (the reader of `spoofrl.audio`), cut to its segment, leading and
   trailing silence trimmed to `MARGIN_S` (never below `MIN_S`), brought to -26 dBFS active level;
2. TTS spoofs: the engine speaks the clip's text once, the speaking rate is set from the length it took
   against the clip's speech, and it speaks again at that rate; the speech is given the long-term
   spectrum of the clip (its recording chain) and placed after the clip's own leading silence, over the
   clip's own background;
3. copy-synthesis (of the clip) or the vocoder of a TTS chain (of the TTS speech);
4. every spoof given the clip's packaging (`spoofrl.synth.packaging`); the bona fide copy keeps the one
   it has (plus the resampling round trip to its rate that packaging implies, `rate_roundtrip`); plain
   TTS spoofs are then matched once more to the bona fide copy's spectrum, so the fine band edges of
   codec and resampler come out alike (a TTS chain keeps what its vocoder did to the spectrum);
5. the planned transmission channel (same distribution for both classes) and the planned level.

Deterministic (every draw from seed + names) and resumable exactly like the v1 generator.
"""
from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

from spoofrl.audio import load_audio
from spoofrl.codecs import CodecRequest, codec_roundtrip_many
from spoofrl.data.manifest import Utterance, write_manifest
from spoofrl.errors import ConfigError, SpoofrlError
from spoofrl.synth import dsp
from spoofrl.synth.attacks import ATTACKS, Attack
from spoofrl.synth.channels import CHANNELS, Channel, _coloured_noise
from spoofrl.synth.generate import SOURCE_LEVEL_DB, SynthReport, read_stamp, write_flac_atomic, write_stamp
from spoofrl.synth.packaging import package_many, rate_roundtrip
from spoofrl.synth.real_design import (DESIGN, MARGIN_S, MAX_S, MIN_S, REAL_PRESETS, REVISION, VERSION, RealBase,
                                       RealItem, RealPreset, TtsChoice, check_real_design, make_real_plan,
                                       plan_digest, read_real_manifest, tts_fallbacks)
from spoofrl.synth.sources import (SR, Prosody, Voice, check_voices, openjtalk, optional_voice_problems,
                                   synthesize_each, trim_silence)
from spoofrl.synth.splits import rng_for
from spoofrl.workers import pool_initializer  # workers die with the build (kill -9 leaves no orphans)


log = logging.getLogger(__name__)

BASES_PER_CHUNK = 10
ACTIVE_DB = -40.0          # speech = 10 ms frames within this many dB of the clip's loudest frame
RATE_RANGE = (0.5, 2.6)    # speaking-rate factors TTS may be driven to when matching a clip's length
FLOOR_RANGE_DB = (-90.0, -50.0)
MATCH_FFT = 512            # resolution of the long-term spectra matched (31 Hz bins)
MATCH_GAIN_DB = (-40.0, 30.0)
OUTCOMES = "outcomes"      # per-file fallback and per-clip left-out records (see run_chunk)

# ------------------------------------------------------------------------------------------ signals


def _frame_db(x: np.ndarray, frame: int) -> np.ndarray:
    n = len(x) // frame
    if n == 0:
        return np.array([10 * np.log10(np.mean(x ** 2) + 1e-12)])
    return 10 * np.log10(np.mean(x[:n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)


def speech_bounds(x: np.ndarray, sr: int = SR) -> tuple[int, int]:
    """(start, end) samples of the speech: first and last 10 ms frame within ACTIVE_DB of the loudest."""
    frame = int(0.01 * sr)
    e = _frame_db(x, frame)
    active = np.nonzero(e > e.max() + ACTIVE_DB)[0]
    if len(active) == 0:
        return 0, len(x)
    return int(active[0] * frame), int(min((active[-1] + 1) * frame, len(x)))


def _cut_points(x: np.ndarray, n: int, sr: int = SR) -> list[int]:
    """n-1 cut points near equal spacing, each at the quietest 20 ms frame within 1 s of its mark."""
    frame = int(0.02 * sr)
    e = _frame_db(x, frame)
    cuts = [0]
    for j in range(1, n):
        mark = j * len(x) // n // frame
        lo, hi = max(mark - sr // frame, cuts[-1] // frame + 1), min(mark + sr // frame, len(e) - 1)
        k = lo + int(np.argmin(e[lo:hi + 1])) if hi >= lo else mark
        cuts.append(int(k * frame + frame // 2))
    return cuts + [len(x)]


def trim(x: np.ndarray, sr: int = SR) -> np.ndarray:
    """Leading and trailing silence cut to MARGIN_S; the result is never shorter than MIN_S (the margins
    grow, as far as the input allows) nor longer than MAX_S (the end is cut, with a 20 ms fade)."""
    start, end = speech_bounds(x, sr)
    margin = int(MARGIN_S * sr)
    a, b = max(start - margin, 0), min(end + margin, len(x))
    short = int(MIN_S * sr) - (b - a)
    if short > 0:
        a = max(a - short // 2, 0)
        b = min(a + int(MIN_S * sr), len(x))
        a = max(b - int(MIN_S * sr), 0)
    y = x[a:b]
    if len(y) > int(MAX_S * sr):
        y = _fade_out(y[:int(MAX_S * sr)], sr)
    return y


def _fade_out(y: np.ndarray, sr: int) -> np.ndarray:
    n = min(int(0.02 * sr), len(y))
    y = y.copy()
    y[len(y) - n:] *= np.linspace(1.0, 0.0, n)
    return y


def load_base(base: RealBase, decoded: dict | None = None) -> np.ndarray:
    """The bona fide signal of a base: its clip (or segment) at 16 kHz, trimmed, at the source level."""
    cache = decoded if decoded is not None else {}
    key = str(base.clip.path)
    if key not in cache:
        try:
            cache[key] = load_audio(base.clip.path, SR, max_seconds=None).astype(np.float64)
        except SpoofrlError as err:
            raise SpoofrlError(f"{base.base_id} ({base.clip.clip_id}): {err}") from None
    x = cache[key]
    if base.segments > 1:
        cuts = _cut_points(x, base.segments)
        x = x[cuts[base.segment]:cuts[base.segment + 1]]
    return dsp.set_level(trim(x), SR, SOURCE_LEVEL_DB)


def floor_db(x: np.ndarray) -> float:
    """Level (dBFS) of a clip's quietest 10 % of 20 ms frames: its recording's noise floor."""
    return float(np.clip(np.percentile(_frame_db(x, int(0.02 * SR)), 10), *FLOOR_RANGE_DB))


def _speech_ltas(x: np.ndarray) -> np.ndarray:
    """Mean power spectrum (MATCH_FFT bins) of the frames within 30 dB of the loudest."""
    power = np.abs(dsp.stft(x, MATCH_FFT, MATCH_FFT // 4)) ** 2
    energy = power.sum(axis=1)
    speech = energy > energy.max() * 1e-3
    return power[speech].mean(axis=0) if speech.any() else power.mean(axis=0)


def _octave_smooth(p: np.ndarray, fraction: float = 1 / 3, max_hz: float = 250.0) -> np.ndarray:
    """Each bin averaged over the band +-fraction/2 octave around it, at most `max_hz` wide (band edges of
    codecs and resamplers at high frequencies are sharp) and at least +-1 bin."""
    freqs = np.fft.rfftfreq(MATCH_FFT, 1.0 / SR)
    cum = np.concatenate([[0.0], np.cumsum(p)])
    half = 2.0 ** (fraction / 2)
    idx = np.arange(len(p))
    lo_hz = np.maximum(freqs / half, freqs - max_hz / 2)
    hi_hz = np.minimum(freqs * half, freqs + max_hz / 2)
    lo = np.minimum(np.searchsorted(freqs, lo_hz, side="left"), idx - 1).clip(0)
    hi = np.maximum(np.searchsorted(freqs, hi_hz, side="right"), idx + 2).clip(max=len(p))
    return (cum[hi] - cum[lo]) / (hi - lo)


def match_spectrum(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """`y` filtered (zero phase, smooth 1/3-octave gain) so that the long-term spectrum of its speech equals
    that of `ref`: a TTS voice given the frequency response of the recording chain of the clip it imitates
    (microphone, production EQ, band limits) - which would otherwise tell real clips from TTS by source."""
    freqs = np.fft.rfftfreq(MATCH_FFT, 1.0 / SR)
    ratio = _octave_smooth(_speech_ltas(ref)) / (_octave_smooth(_speech_ltas(y)) + 1e-20)
    gain_db = 10 * np.log10(ratio + 1e-20)
    gain_db -= np.median(gain_db[(freqs >= 300) & (freqs <= 3400)])
    gain = 10 ** (np.clip(gain_db, *MATCH_GAIN_DB) / 20)
    spec = dsp.stft(y, MATCH_FFT, MATCH_FFT // 4)
    return dsp.istft(spec * gain[None, :], MATCH_FFT, MATCH_FFT // 4, len(y))


def background(bona: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of the clip's own background: random 40 ms pieces of its quiet stretches (10 ms frames
    at its floor: within 3 dB of the quietest fifth, 30 dB below the loudest), overlap-added with a sine
    window at 50 % (constant power). Pink noise at the clip's floor level when it has under 40 ms of quiet."""
    frame, seg = int(0.01 * SR), int(0.04 * SR)
    e = _frame_db(bona, frame)
    quiet = e <= min(np.percentile(e, 20) + 3.0, e.max() - 30.0)
    ok = np.convolve(quiet.astype(float), np.ones(seg // frame), mode="valid") >= seg // frame - 1e-9
    starts = np.nonzero(ok)[0] * frame
    if len(starts) == 0:
        return _coloured_noise(n, rng, -3.0, SR) * 10 ** (floor_db(bona) / 20)
    hop = seg // 2
    window = np.sin(np.pi * (np.arange(seg) + 0.5) / seg)
    out = np.zeros(n + 2 * seg)
    for pos in range(0, n + hop, hop):
        start = int(starts[int(rng.integers(len(starts)))])
        piece = bona[start:start + seg]
        out[pos:pos + len(piece)] += window[:len(piece)] * piece
    return out[hop:hop + n]


def place_tts(speech: np.ndarray, bona: np.ndarray, rng: np.random.Generator, parity: bool = True) -> np.ndarray:
    """TTS speech laid out like the clip: given the clip's spectrum (`match_spectrum`), after the clip's
    leading silence, padded to the clip's length (longer only when the speech does not fit, at most MAX_S),
    over the clip's own background (`background`)."""
    start, end = speech_bounds(bona)
    trail = len(bona) - end
    speech = dsp.set_level(match_spectrum(speech, bona) if parity else speech, SR, SOURCE_LEVEL_DB)
    n = max(len(bona), start + len(speech) + min(trail, int(0.1 * SR)))
    n = min(n, int(MAX_S * SR))
    out = np.zeros(n)
    piece = speech[:max(n - start, 0)]
    if len(piece) < len(speech):
        piece = _fade_out(piece, SR)
    out[start:start + len(piece)] = piece
    if not parity:
        return out + _coloured_noise(n, rng, -3.0, SR) * 10 ** (floor_db(bona) / 20)
    return out + background(bona, n, rng)


def _tts_rate(first: np.ndarray, bona: np.ndarray) -> float:
    start, end = speech_bounds(bona)
    target = max(end - start, int(0.2 * SR))
    return float(np.clip(len(first) / target, *RATE_RANGE))


def _speak_timed(jobs: list[tuple[TtsChoice, str, np.ndarray]]) -> list[np.ndarray | SpoofrlError]:
    """Each (voice, text, bona fide signal) spoken and timed to its clip: once at rate 1, then again at the rate
    that matches the clip's speech length (when that differs by more than 4 %). A job that fails in either
    pass gives its error."""
    first = synthesize_each([(c.voice, text, Prosody(1.0, c.pitch)) for c, text, _ in jobs])
    speech = [y if isinstance(y, SpoofrlError) else trim_silence(y, SR) for y in first]
    rates = {k: round(_tts_rate(y, jobs[k][2]), 3) for k, y in enumerate(speech) if not isinstance(y, SpoofrlError)}
    again = [k for k, r in rates.items() if abs(r - 1.0) > 0.04]
    second = synthesize_each([(jobs[k][0].voice, jobs[k][1], Prosody(rates[k], jobs[k][0].pitch)) for k in again])
    for k, y in zip(again, second):
        speech[k] = y if isinstance(y, SpoofrlError) else trim_silence(y, SR)
    return speech


def planned_choice(item: RealItem) -> TtsChoice:
    return TtsChoice(item.tts_engine, item.tts_voice, item.tts_gender, item.tts_pitch)


def with_voice(item: RealItem, choice: TtsChoice) -> RealItem:
    """The TTS spoof `item` made with another voice (its vocoder, channel and level stay)."""
    attack = choice.engine if item.kind == "tts" else f"{choice.engine}+{item.vocoder}"
    return replace(item, attack=attack, tts_engine=choice.engine, tts_voice=choice.voice, tts_gender=choice.gender,
                   tts_pitch=choice.pitch)


@dataclass
class Spoken:
    speech: dict[str, np.ndarray] = field(default_factory=dict)          # item id -> TTS speech (not yet placed)
    used: dict[str, TtsChoice] = field(default_factory=dict)             # item id -> the fallback voice that spoke
    failed: dict[str, list[tuple[str, str]]] = field(default_factory=dict)   # item id -> [(voice id, why)]
    left_out: dict[str, str] = field(default_factory=dict)              # base id -> why nothing could speak


def speak_all(jobs: list[tuple[RealItem, RealBase, np.ndarray]], seed: int, missing: Iterable[str] = ()) -> Spoken:
    """The TTS speech of each (item, base, bona fide signal). A voice that fails (an engine that cannot say a
    text gives silence, or errs) is replaced by the next of `tts_fallbacks`, the same every time for a seed;
    a base whose spoof no voice can speak is left out."""
    queues = {it.item_id: [planned_choice(it)] + tts_fallbacks(b, it, seed, missing) for it, b, _ in jobs}
    done = Spoken()
    pending = list(jobs)
    while pending:      # each round: every spoof not yet spoken, with the next voice of its queue
        choices = [queues[it.item_id][len(done.failed.get(it.item_id, []))] for it, _, _ in pending]
        results = _speak_timed([(c, base.text, bona) for c, (_, base, bona) in zip(choices, pending)])
        for (item, base, _), choice, y in zip(pending, choices, results):
            if not isinstance(y, SpoofrlError):
                done.speech[item.item_id] = y
                if choice != queues[item.item_id][0]:
                    done.used[item.item_id] = choice
                continue
            failed = done.failed.setdefault(item.item_id, [])
            failed.append((choice.voice.id, str(y)))
            if len(failed) == len(queues[item.item_id]):
                done.left_out.setdefault(base.base_id, _no_voice_reason(item, base, failed))
        pending = [job for job in pending if job[0].item_id not in done.speech and job[1].base_id not in done.left_out]
    return done


def _no_voice_reason(item: RealItem, base: RealBase, failed: list[tuple[str, str]]) -> str:
    shown = "; ".join(why for _, why in failed[:3]) + (f"; and {len(failed) - 3} more" if len(failed) > 3 else "")
    return f"TTS spoof {item.item_id}: no voice could speak {base.text!r} ({len(failed)} tried: {shown})"


def _attacked(signals: list[np.ndarray], items: list[RealItem], rngs: list[np.random.Generator]) -> list[np.ndarray]:
    """Each signal through its item's vocoder ('-': unchanged); codec attacks batched in few ffmpeg runs."""
    out: list[np.ndarray | None] = [None] * len(signals)
    batch: list[tuple[int, CodecRequest]] = []
    for k, (x, item) in enumerate(zip(signals, items)):
        if item.vocoder == "-":
            out[k] = x
            continue
        attack = ATTACKS[item.vocoder]
        if attack.codec is not None:
            batch.append((k, attack.codec(item.vocoder_params)))
        else:
            out[k] = attack(x, SR, rngs[k], **item.vocoder_params)
    for (k, _), y in zip(batch, codec_roundtrip_many([signals[k] for k, _ in batch], SR, [r for _, r in batch])):
        out[k] = Attack.finish(signals[k], y, SR)
    return out  # type: ignore[return-value]


def _channelled(signals: list[np.ndarray], items: list[RealItem], rngs: list[np.random.Generator]) -> list[np.ndarray]:
    out: list[np.ndarray | None] = [None] * len(signals)
    batch: list[tuple[int, CodecRequest]] = []
    for k, (x, item) in enumerate(zip(signals, items)):
        channel = CHANNELS[item.channel]
        if channel.codec is not None:
            batch.append((k, channel.codec(item.channel_params)))
        else:
            out[k] = channel(x, SR, rngs[k], **item.channel_params)
    for (k, _), y in zip(batch, codec_roundtrip_many([signals[k] for k, _ in batch], SR, [r for _, r in batch])):
        out[k] = Channel.finish(signals[k], y)
    return out  # type: ignore[return-value]


@dataclass
class Rendered:
    audio: dict[str, np.ndarray] = field(default_factory=dict)     # item id -> final audio
    fallbacks: dict[str, dict] = field(default_factory=dict)       # item id -> its fallback record
    left_out: dict[str, str] = field(default_factory=dict)         # base id -> why it was left out

    def add(self, other: "Rendered") -> None:
        self.audio.update(other.audio)
        self.fallbacks.update(other.fallbacks)
        self.left_out.update(other.left_out)


def render_bases(bases: list[RealBase], seed: int, skip: set[str] = frozenset(), parity: bool = True,
                 missing: Iterable[str] = ()) -> Rendered:
    """The final audio of every item of `bases` not in `skip`, with the fallback voices used and the bases left
    out (see `speak_all`). `parity=False` (an ablation, to show what the channel-parity probe detects): spoofs
    are not packaged like their clip, TTS keeps its own spectrum over a synthetic noise floor, the bona fide
    copy gets no rate round trip."""
    decoded: dict = {}
    bona = {b.base_id: load_base(b, decoded) for b in bases}
    jobs = [(it, b) for b in bases for it in b.items if it.item_id not in skip]
    if not jobs:
        return Rendered()
    spoken = speak_all([(it, b, bona[b.base_id]) for it, b in jobs if it.kind in ("tts", "tts+vocoder")], seed, missing)
    jobs = [(with_voice(it, spoken.used[it.item_id]) if it.item_id in spoken.used else it, b)
            for it, b in jobs if b.base_id not in spoken.left_out]
    if not jobs:
        return Rendered(left_out=spoken.left_out)
    fallbacks = {it.item_id: fallback_record(it, b, spoken.failed[it.item_id]) for it, b in jobs if it.item_id in spoken.used}
    tts = {it.item_id: place_tts(spoken.speech[it.item_id], bona[b.base_id], rng_for(seed, it.item_id + "/floor"), parity)
           for it, b in jobs if it.item_id in spoken.speech}
    items = [it for it, _ in jobs]
    rngs = [rng_for(seed, it.item_id) for it in items]
    sources = [tts[it.item_id] if it.item_id in tts else bona[b.base_id] for it, b in jobs]
    if parity:
        sources = [rate_roundtrip(x, b.packaging) if it.label == "bonafide" else x for x, (it, b) in zip(sources, jobs)]
    attacked = _attacked(sources, items, rngs)
    if not parity:
        final = _channelled(attacked, items, rngs)
        return Rendered({it.item_id: dsp.set_level(y, SR, it.level_db) for it, y in zip(items, final)}, fallbacks,
                        spoken.left_out)
    spoof_k = [k for k, it in enumerate(items) if it.label == "spoof"]
    for k, y in zip(spoof_k, package_many([attacked[k] for k in spoof_k], [jobs[k][1].packaging for k in spoof_k])):
        attacked[k] = y
    for k, (it, b) in enumerate(jobs):      # plain TTS: its final spectrum is the bona fide copy's, edges included
        if it.kind == "tts":
            attacked[k] = match_spectrum(attacked[k], rate_roundtrip(bona[b.base_id], b.packaging))
    final = _channelled(attacked, items, rngs)
    return Rendered({it.item_id: dsp.set_level(y, SR, it.level_db) for it, y in zip(items, final)}, fallbacks,
                    spoken.left_out)


def render_isolated(bases: list[RealBase], seed: int, skip: set[str] = frozenset(), parity: bool = True,
                    missing: Iterable[str] = ()) -> Rendered:
    """`render_bases` of a whole chunk; when that fails, of each base alone, and a base that fails alone is left
    out with its error (a clip that cannot be read, a vocoder that cannot process it). Every base gives the
    same audio alone as in its chunk, so this changes nothing else."""
    try:
        return render_bases(bases, seed, skip, parity, missing)
    except SpoofrlError as err:
        if len(bases) == 1:
            return Rendered(left_out={bases[0].base_id: str(err)})
    out = Rendered()
    for base in bases:
        out.add(render_isolated([base], seed, skip, parity, missing))
    return out


# ------------------------------------------------------------------------------------------ work units


def _chunks(plan: list[RealBase]) -> list[list[RealBase]]:
    groups: dict[str, list[RealBase]] = {}
    for base in plan:
        groups.setdefault(base.subset, []).append(base)
    return [bases[i:i + BASES_PER_CHUNK] for bases in groups.values() for i in range(0, len(bases), BASES_PER_CHUNK)]


def run_chunk(bases: list[RealBase], seed: int, out_dir: str, parity: bool = True,
              missing: tuple[str, ...] = ()) -> tuple[int, int, int]:
    """(files written, files already there, files of bases left out) for one chunk. A base left out gets a
    record in outcomes/ and loses any file it had; a spoof made with a fallback voice gets its record before
    its file, so a resumed run finds both."""
    out = Path(out_dir)
    gone = [b for b in bases if record_path(out, b.base_id).is_file()]
    bases = [b for b in bases if b not in gone]
    dropped = sum(len(b.items) for b in gone)
    done = {it.item_id for b in bases for it in b.items if (out / it.rel_path).is_file()}
    todo = [b for b in bases if any(it.item_id not in done for it in b.items)]
    if not todo:
        return 0, len(done), dropped
    rendered = render_isolated(todo, seed, done, parity, missing)
    for base in todo:
        if base.base_id in rendered.left_out:
            log.warning("left out %s (%s): %s", base.base_id, base.clip.clip_id, rendered.left_out[base.base_id])
            write_record(out, base.base_id, left_out_record(base, rendered.left_out[base.base_id]))
            for it in base.items:
                (out / it.rel_path).unlink(missing_ok=True)
            done -= {it.item_id for it in base.items}
            dropped += len(base.items)
    by_id = {it.item_id: it for b in todo for it in b.items}
    for item_id, record in rendered.fallbacks.items():
        log.warning("%s: made with %s (%s failed)", item_id, record["used"]["tts_voice"], record["planned"]["tts_voice"])
        write_record(out, item_id, record)
    for item_id, y in rendered.audio.items():
        write_flac_atomic(out / by_id[item_id].rel_path, y)
    return len(rendered.audio), len(done), dropped


def _run_chunk_star(args) -> tuple[int, int, int]:
    return run_chunk(*args)


# ------------------------------------------------------------------------------------------ outcomes


def record_path(out: Path, name: str) -> Path:
    return out / OUTCOMES / f"{name}.json"


def write_record(out: Path, name: str, record: dict) -> None:
    path = record_path(out, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _voice_dict(voice) -> dict:
    return {"engine": voice.engine, "name": voice.name, "speaker": voice.speaker}


def fallback_record(item: RealItem, base: RealBase, failed: list[tuple[str, str]]) -> dict:
    """What a spoof made with a fallback voice was planned as, what made it, and why each voice before failed."""
    planned = next(it for it in base.items if it.item_id == item.item_id)
    return {"type": "fallback", "item": item.item_id, "base": base.base_id, "subset": base.subset,
            "origin": base.clip.clip_id, "text": base.text,
            "planned": {"attack": planned.attack, "tts_engine": planned.tts_engine, "tts_voice": planned.tts_voice.id,
                        "tts_pitch": planned.tts_pitch},
            "used": {"attack": item.attack, "tts_engine": item.tts_engine, "tts_voice": item.tts_voice.id,
                     "voice": _voice_dict(item.tts_voice), "tts_gender": item.tts_gender, "tts_pitch": item.tts_pitch},
            "failed": [list(f) for f in failed]}


def left_out_record(base: RealBase, reason: str) -> dict:
    return {"type": "left_out", "base": base.base_id, "subset": base.subset, "origin": base.clip.clip_id,
            "files": [it.rel_path for it in base.items], "reason": reason}


@dataclass
class Outcomes:
    fallbacks: dict[str, dict] = field(default_factory=dict)   # item id -> fallback record
    left_out: dict[str, dict] = field(default_factory=dict)    # base id -> left-out record


def read_outcomes(plan: list[RealBase], out: Path) -> Outcomes:
    """The records of this plan's items and bases in `out`/outcomes/."""
    found = Outcomes()
    for base in plan:
        if record_path(out, base.base_id).is_file():
            found.left_out[base.base_id] = json.loads(record_path(out, base.base_id).read_text())
            continue
        for it in base.items:
            if record_path(out, it.item_id).is_file():
                found.fallbacks[it.item_id] = json.loads(record_path(out, it.item_id).read_text())
    return found


def apply_outcomes(plan: list[RealBase], outcomes: Outcomes) -> list[RealBase]:
    """The plan as it was made: bases left out dropped, spoofs made with a fallback voice given that voice."""
    def made(item: RealItem) -> RealItem:
        record = outcomes.fallbacks.get(item.item_id)
        if record is None:
            return item
        used = record["used"]
        return with_voice(item, TtsChoice(used["tts_engine"], Voice(**used["voice"]), used["tts_gender"], used["tts_pitch"]))
    return [replace(b, items=[made(it) for it in b.items]) for b in plan if b.base_id not in outcomes.left_out]


# ------------------------------------------------------------------------------------------ outputs


def condition_of(base: RealBase, item: RealItem) -> str:
    """Manifest condition: the packaging, plus the transmission channel when there is one."""
    return base.clip.condition if item.channel == "clean" else f"{base.clip.condition}+{item.channel}"


def manifest_rows(plan: list[RealBase], durations: dict[str, float]) -> list[Utterance]:
    rows = []
    for base in plan:
        c = base.clip
        for item in base.items:
            rows.append(Utterance(
                path=item.rel_path, label=item.label, attack=item.attack, source=c.source,
                condition=condition_of(base, item), subset=base.subset,
                extra={"base": base.base_id, "speaker": c.speaker, "language": c.language, "gender": c.gender,
                       "text": base.text, "packaging": c.condition, "channel": item.channel, "kind": item.kind,
                       "tts_engine": item.tts_engine, "tts_voice": item.tts_voice.id if item.tts_voice else "-",
                       "vocoder": item.vocoder, "license": c.license, "origin": c.clip_id,
                       "segment": f"{base.segment + 1}/{base.segments}",
                       "duration": f"{durations.get(item.rel_path, 0.0):.3f}"}))
    return rows


def write_meta(plan: list[RealBase], path: Path, fallbacks: dict[str, dict] | None = None) -> None:
    """One JSON line per file with every parameter; a spoof made with a fallback voice also has `fallback`
    (what was planned and why each voice before failed)."""
    fallbacks = fallbacks or {}
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as fh:
        for base in plan:
            c = base.clip
            for item in base.items:
                line = {
                    "path": item.rel_path, "label": item.label, "kind": item.kind, "subset": base.subset,
                    "base": base.base_id, "origin": c.clip_id, "source": c.source, "package": c.package,
                    "version": c.version, "license": c.license, "speaker": c.speaker, "language": c.language,
                    "gender": c.gender, "transcript": c.transcript, "text": base.text,
                    "segment": base.segment, "segments": base.segments, "packaging": base.packaging.to_dict(),
                    "attack": item.attack, "vocoder": item.vocoder, "vocoder_params": item.vocoder_params,
                    "tts_engine": item.tts_engine, "tts_voice": item.tts_voice.id if item.tts_voice else "-",
                    "tts_gender": item.tts_gender, "tts_pitch": item.tts_pitch,
                    "channel": item.channel, "channel_params": item.channel_params, "level_db": item.level_db,
                }
                if item.item_id in fallbacks:
                    line["fallback"] = {k: fallbacks[item.item_id][k] for k in ("planned", "failed")}
                fh.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _stamp(preset: str, seed: int, digest: str, manifest: Path, left_out: list[str], parity: bool = True) -> dict:
    from spoofrl import __version__
    stamp = {"design": DESIGN, "version": VERSION, "revision": REVISION, "preset": preset, "seed": seed, "clips": digest,
             "real_manifest": str(manifest), "left_out": left_out, "spoofrl": __version__}
    if not parity:
        stamp["parity"] = False       # an ablation (see render_bases), never a benchmark to report on
    return stamp


def _check_stamp(out: Path, stamp: dict) -> None:
    """Refuse to mix two benchmarks in one folder (other design, preset, seed, clips or left-out engines)."""
    made = read_stamp(out, DESIGN, "rerun with --design v1 to finish it, or choose another --out")
    if made is not None:
        if made.get("revision", 1) != stamp["revision"]:
            raise ConfigError(f"{out} was made by revision {made.get('revision', 1)} of design {DESIGN} (this is "
                              f"revision {stamp['revision']}); its files would differ: choose another --out")
        for key, what in (("preset", "--preset"), ("seed", "--seed")):
            if made.get(key) != stamp[key]:
                raise ConfigError(f"{out} holds a benchmark made with {what} {made.get(key)}; rerun with it to "
                                  f"finish it, or choose another --out")
        if made.get("clips") != stamp["clips"]:
            raise ConfigError(f"{out} was made from other real clips (another --real-manifest or a changed "
                              f"fetch); the files would differ: choose another --out")
        if made.get("parity", True) != stamp.get("parity", True):
            raise ConfigError(f"{out} was made with channel parity {'off' if stamp.get('parity', True) else 'on'}; "
                              f"choose another --out")
        if sorted(made.get("left_out", [])) != stamp["left_out"]:
            raise ConfigError(f"{out} was made with TTS engines left out: {', '.join(made.get('left_out', [])) or 'none'}"
                              f"; now left out: {', '.join(stamp['left_out']) or 'none'}; choose another --out")
    write_stamp(out, stamp)


def unavailable_tts_engines() -> dict[str, str]:
    """Optional TTS engines that cannot run here (attack id -> why), each logged as a warning."""
    problems = optional_voice_problems([openjtalk("mei_normal")])
    out = {"tts-openjtalk": why for why in problems.values()}
    for engine, why in out.items():
        log.warning("optional TTS engine %s left out: %s", engine, why)
    return out


def default_real_manifest() -> Path:
    from spoofrl.data.real import default_cache
    return default_cache() / "manifest.csv"


def generate_real(out_dir: str | Path, preset: str | RealPreset = "demo", seed: int = 0, workers: int = 1,
                  real_manifest: str | Path | None = None, show_progress: bool = True,
                  parity: bool = True) -> SynthReport:
    """Make (or finish making) the `real` benchmark `preset` with `seed` in `out_dir` from the clips of
    `real_manifest` (default: the `spoofrl data fetch` cache)."""
    name = preset.name if isinstance(preset, RealPreset) else preset
    if isinstance(preset, str) and preset not in REAL_PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; known: {', '.join(REAL_PRESETS)}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    start = time.time()
    manifest = Path(real_manifest) if real_manifest else default_real_manifest()
    clips = read_real_manifest(manifest)
    check_real_design()
    missing = unavailable_tts_engines()
    plan = make_real_plan(clips, preset, seed, missing)
    if not plan:
        raise ConfigError(f"{manifest}: no usable clips for preset '{name}' (clips must be at least 1 s long)")
    voices = sorted({it.tts_voice for b in plan for it in b.items if it.tts_voice is not None}, key=lambda v: v.id)
    check_voices(voices)
    out = Path(out_dir)
    _check_stamp(out, _stamp(name, seed, plan_digest(plan), manifest.resolve(), sorted(missing), parity))
    chunks = _chunks(plan)
    total = sum(len(b.items) for b in plan)
    log.info("benchmark '%s' (design %s v%d, seed %d): %d files from %d real clips into %s, %d worker%s", name,
             DESIGN, VERSION, seed, total, len(plan), out, workers, "s" * (workers > 1))
    written = skipped = 0
    from spoofrl.log import progress
    args = [(chunk, seed, str(out), parity, tuple(sorted(missing))) for chunk in chunks]
    pool = None
    if workers == 1:
        results = map(_run_chunk_star, args)
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"), **pool_initializer())
        results = pool.map(_run_chunk_star, args)
    try:
        def per_file():
            nonlocal written, skipped
            for w, s, dropped in results:
                written += w
                skipped += s
                yield from range(w + s + dropped)
        for _ in progress(per_file(), desc=f"synth real {name}", total=total, unit="file",
                          disable=None if show_progress else True):
            pass
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    outcomes = read_outcomes(plan, out)
    made = apply_outcomes(plan, outcomes)
    _log_outcomes(outcomes)
    durations = {it.rel_path: sf.info(str(out / it.rel_path)).duration for b in made for it in b.items}
    write_meta(made, out / "meta.jsonl", outcomes.fallbacks)
    rows = manifest_rows(made, durations)
    from spoofrl.synth.real_readme import write_real_readme
    write_real_readme(made, rows, out / "README.md", name, seed, missing, manifest, outcomes)
    write_manifest(rows, out / "manifest.csv")       # last: its presence means complete
    return SynthReport(out, len(rows), written, skipped, time.time() - start, sum(durations.values()),
                       fallbacks=len(outcomes.fallbacks), left_out_clips=len(outcomes.left_out))


def _log_outcomes(outcomes: Outcomes) -> None:
    if outcomes.fallbacks or outcomes.left_out:
        log.warning("%d spoof%s made with a fallback voice, %d clip%s left out (listed in README.md, records in %s/)",
                    len(outcomes.fallbacks), "s" * (len(outcomes.fallbacks) != 1), len(outcomes.left_out),
                    "s" * (len(outcomes.left_out) != 1), OUTCOMES)
