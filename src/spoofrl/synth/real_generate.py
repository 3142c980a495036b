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
from multiprocessing import get_context
from pathlib import Path

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
from spoofrl.synth.real_design import (DESIGN, MARGIN_S, MAX_S, MIN_S, REAL_PRESETS, VERSION, RealBase,
                                       RealItem, RealPreset, check_real_design, make_real_plan, plan_digest,
                                       read_real_manifest)
from spoofrl.synth.sources import SR, Prosody, check_voices, openjtalk, optional_voice_problems, synthesize, trim_silence
from spoofrl.synth.splits import rng_for

log = logging.getLogger(__name__)

BASES_PER_CHUNK = 10
ACTIVE_DB = -40.0          # speech = 10 ms frames within this many dB of the clip's loudest frame
RATE_RANGE = (0.5, 2.6)    # speaking-rate factors TTS may be driven to when matching a clip's length
FLOOR_RANGE_DB = (-90.0, -50.0)
MATCH_FFT = 512            # resolution of the long-term spectra matched (31 Hz bins)
MATCH_GAIN_DB = (-40.0, 30.0)

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


def tts_signals(jobs: list[tuple[RealItem, RealBase, np.ndarray]], seed: int, parity: bool = True) -> list[np.ndarray]:
    """The TTS speech of each (item, base, bona fide signal), timed to the clip (two passes, see above)."""
    if not jobs:
        return []
    first = synthesize([(item.tts_voice, base.text, Prosody(1.0, item.tts_pitch)) for item, base, _ in jobs])
    first = [trim_silence(y, SR) for y in first]
    rates = [round(_tts_rate(y, bona), 3) for y, (_, _, bona) in zip(first, jobs)]
    again = [k for k, r in enumerate(rates) if abs(r - 1.0) > 0.04]
    second = synthesize([(jobs[k][0].tts_voice, jobs[k][1].text, Prosody(rates[k], jobs[k][0].tts_pitch))
                         for k in again])
    speech = list(first)
    for k, y in zip(again, second):
        speech[k] = trim_silence(y, SR)
    return [place_tts(y, bona, rng_for(seed, item.item_id + "/floor"), parity)
            for y, (item, _, bona) in zip(speech, jobs)]


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


def render_bases(bases: list[RealBase], seed: int, skip: set[str] = frozenset(),
                 parity: bool = True) -> dict[str, np.ndarray]:
    """item id -> final audio for every item of `bases` not in `skip`. `parity=False` (an ablation, to show
    what the channel-parity probe detects): spoofs are not packaged like their clip, TTS keeps its own
    spectrum over a synthetic noise floor, the bona fide copy gets no rate round trip."""
    decoded: dict = {}
    bona = {b.base_id: load_base(b, decoded) for b in bases}
    jobs = [(it, b) for b in bases for it in b.items if it.item_id not in skip]
    if not jobs:
        return {}
    tts_jobs = [(it, b, bona[b.base_id]) for it, b in jobs if it.kind in ("tts", "tts+vocoder")]
    try:
        tts = dict(zip([it.item_id for it, _, _ in tts_jobs], tts_signals(tts_jobs, seed, parity)))
    except SpoofrlError as err:
        raise SpoofrlError(f"{tts_jobs[0][0].item_id}..{tts_jobs[-1][0].item_id}: {err}") from None
    items = [it for it, _ in jobs]
    rngs = [rng_for(seed, it.item_id) for it in items]
    sources = [tts[it.item_id] if it.item_id in tts else bona[b.base_id] for it, b in jobs]
    if parity:
        sources = [rate_roundtrip(x, b.packaging) if it.label == "bonafide" else x for x, (it, b) in zip(sources, jobs)]
    attacked = _attacked(sources, items, rngs)
    if not parity:
        return {it.item_id: dsp.set_level(y, SR, it.level_db) for it, y in zip(items, _channelled(attacked, items, rngs))}
    spoof_k = [k for k, it in enumerate(items) if it.label == "spoof"]
    for k, y in zip(spoof_k, package_many([attacked[k] for k in spoof_k], [jobs[k][1].packaging for k in spoof_k])):
        attacked[k] = y
    for k, (it, b) in enumerate(jobs):      # plain TTS: its final spectrum is the bona fide copy's, edges included
        if it.kind == "tts":
            attacked[k] = match_spectrum(attacked[k], rate_roundtrip(bona[b.base_id], b.packaging))
    final = _channelled(attacked, items, rngs)
    return {it.item_id: dsp.set_level(y, SR, it.level_db) for it, y in zip(items, final)}


# ------------------------------------------------------------------------------------------ work units


def _chunks(plan: list[RealBase]) -> list[list[RealBase]]:
    groups: dict[str, list[RealBase]] = {}
    for base in plan:
        groups.setdefault(base.subset, []).append(base)
    return [bases[i:i + BASES_PER_CHUNK] for bases in groups.values() for i in range(0, len(bases), BASES_PER_CHUNK)]


def run_chunk(bases: list[RealBase], seed: int, out_dir: str, parity: bool = True) -> tuple[int, int]:
    out = Path(out_dir)
    done = {it.item_id for b in bases for it in b.items if (out / it.rel_path).is_file()}
    todo = [b for b in bases if any(it.item_id not in done for it in b.items)]
    if not todo:
        return 0, len(done)
    audio = render_bases(todo, seed, done, parity)
    by_id = {it.item_id: it for b in todo for it in b.items}
    for item_id, y in audio.items():
        write_flac_atomic(out / by_id[item_id].rel_path, y)
    return len(audio), len(done)


def _run_chunk_star(args) -> tuple[int, int]:
    return run_chunk(*args)


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


def write_meta(plan: list[RealBase], path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w") as fh:
        for base in plan:
            c = base.clip
            for item in base.items:
                fh.write(json.dumps({
                    "path": item.rel_path, "label": item.label, "kind": item.kind, "subset": base.subset,
                    "base": base.base_id, "origin": c.clip_id, "source": c.source, "package": c.package,
                    "version": c.version, "license": c.license, "speaker": c.speaker, "language": c.language,
                    "gender": c.gender, "transcript": c.transcript, "text": base.text,
                    "segment": base.segment, "segments": base.segments, "packaging": base.packaging.to_dict(),
                    "attack": item.attack, "vocoder": item.vocoder, "vocoder_params": item.vocoder_params,
                    "tts_engine": item.tts_engine, "tts_voice": item.tts_voice.id if item.tts_voice else "-",
                    "tts_gender": item.tts_gender, "tts_pitch": item.tts_pitch,
                    "channel": item.channel, "channel_params": item.channel_params, "level_db": item.level_db,
                }, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _stamp(preset: str, seed: int, digest: str, manifest: Path, left_out: list[str], parity: bool = True) -> dict:
    from spoofrl import __version__
    stamp = {"design": DESIGN, "version": VERSION, "preset": preset, "seed": seed, "clips": digest,
             "real_manifest": str(manifest), "left_out": left_out, "spoofrl": __version__}
    if not parity:
        stamp["parity"] = False       # an ablation (see render_bases), never a benchmark to report on
    return stamp


def _check_stamp(out: Path, stamp: dict) -> None:
    """Refuse to mix two benchmarks in one folder (other design, preset, seed, clips or left-out engines)."""
    made = read_stamp(out, DESIGN, "rerun with --design v1 to finish it, or choose another --out")
    if made is not None:
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
    args = [(chunk, seed, str(out), parity) for chunk in chunks]
    pool = None
    if workers == 1:
        results = map(_run_chunk_star, args)
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"))
        results = pool.map(_run_chunk_star, args)
    try:
        def per_file():
            nonlocal written, skipped
            for w, s in results:
                written += w
                skipped += s
                yield from range(w + s)
        for _ in progress(per_file(), desc=f"synth real {name}", total=total, unit="file",
                          disable=None if show_progress else True):
            pass
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    durations = {it.rel_path: sf.info(str(out / it.rel_path)).duration for b in plan for it in b.items}
    write_meta(plan, out / "meta.jsonl")
    rows = manifest_rows(plan, durations)
    from spoofrl.synth.real_readme import write_real_readme
    write_real_readme(plan, rows, out / "README.md", name, seed, missing, manifest)
    write_manifest(rows, out / "manifest.csv")       # last: its presence means complete
    return SynthReport(out, total, written, skipped, time.time() - start, sum(durations.values()))
