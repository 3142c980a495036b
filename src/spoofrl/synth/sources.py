"""Speech sources for the "bona fide" side of the built-in benchmark: the offline synthesizers installed by
scripts/install_system.sh (espeak-ng, flite, festival). All of them are rule-based or classic
(formant, diphone-concatenation, statistical-parametric) synthesizers - see docs/benchmark.md for what
that means for the benchmark's claims.

A `Voice` names an engine and a voice of it, plus the *speaker* it embodies: flite's kal, kal16 and
festival's kal_diphone are one speaker (Kal), flite's slt and festival's HTS slt voice another; split
disjointness is checked on speakers, not on engine voice names.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from spoofrl.audio import resample
from spoofrl.errors import SpoofrlError

SR = 16000


class SourceUnavailable(SpoofrlError):
    """A speech synthesizer or one of its voices is not installed."""


@dataclass(frozen=True)
class Voice:
    engine: str      # "espeak-ng" | "flite" | "festival"
    name: str        # engine's voice name, e.g. "en-us+m3", "slt", "kal_diphone"
    speaker: str     # identity used for disjointness between subsets

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Prosody:
    """Speaking-rate factor (>1 faster) and pitch factor (x the voice's default mean F0)."""
    rate: float = 1.0
    pitch: float = 1.0


def espeak(name: str) -> Voice:
    """An espeak-ng voice 'language+variant'; each language/variant pair is its own speaker."""
    return Voice("espeak-ng", name, f"espeak-ng:{name}")


FLITE_SPEAKERS = {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}
# default mean F0 (Hz) of flite voices; slt ignores int_f0_target_mean, so its pitch stays as it is
FLITE_F0 = {"kal": 105.0, "kal16": 105.0, "awb": 110.0, "rms": 100.0}
FESTIVAL_SPEAKERS = {"kal_diphone": "kal", "ked_diphone": "ked", "cmu_us_slt_arctic_hts": "slt"}


def flite(name: str) -> Voice:
    return Voice("flite", name, FLITE_SPEAKERS.get(name, f"flite:{name}"))


def festival(name: str) -> Voice:
    return Voice("festival", name, FESTIVAL_SPEAKERS.get(name, f"festival:{name}"))


# ------------------------------------------------------------------------------------------ availability

def _which(engine: str) -> str:
    binary = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival"}[engine]
    path = shutil.which(binary)
    if path is None:
        raise SourceUnavailable(f"speech source '{engine}' is not installed (run scripts/install_system.sh)")
    return path


def _festival_voices() -> set[str]:
    proc = subprocess.run([_which("festival"), "--pipe"], input="(print (voice.list))\n",
                          capture_output=True, text=True, timeout=60)
    text = proc.stdout.replace("(", " ").replace(")", " ")
    return set(text.split())


def _flite_voices() -> set[str]:
    proc = subprocess.run([_which("flite"), "-lv"], capture_output=True, text=True, timeout=60)
    return set(proc.stdout.replace("Voices available:", " ").split())


def _espeak_names() -> tuple[set[str], set[str]]:
    """(languages, variant names) this espeak-ng knows. Needed because espeak-ng silently falls back to
    its default voice for an unknown variant instead of failing."""
    exe = _which("espeak-ng")
    langs = subprocess.run([exe, "--voices"], capture_output=True, text=True, timeout=60).stdout.splitlines()[1:]
    variants = subprocess.run([exe, "--voices=variant"], capture_output=True, text=True, timeout=60).stdout.splitlines()[1:]
    languages = set()
    for line in langs:  # "Pty Language Age/Gender VoiceName File (alias prio)..."; -v accepts each form
        cells = line.replace("(", " ").replace(")", " ").split()
        if len(cells) > 4:
            languages.update({cells[1], cells[4].split("/")[-1].lower()})
            languages.update(c for c in cells[5:] if not c.isdigit())
    names = {line.split()[-1].split("/")[-1] for line in variants if "!v/" in line}
    return languages, names


def check_voices(voices: list[Voice]) -> None:
    """Fail early, naming every missing voice, before hours of generation start."""
    engines = {v.engine for v in voices}
    missing = []
    for engine in sorted(engines):
        _which(engine)
    if "espeak-ng" in engines:
        languages, variants = _espeak_names()
        for v in voices:
            if v.engine == "espeak-ng":
                language, _, variant = v.name.partition("+")
                if language not in languages or (variant and variant not in variants):
                    missing.append(v.id)
    if "festival" in engines:
        have = _festival_voices()
        missing += [v.id for v in voices if v.engine == "festival" and v.name not in have]
    if "flite" in engines:
        have = _flite_voices()
        missing += [v.id for v in voices if v.engine == "flite" and v.name not in have]
    if missing:
        raise SourceUnavailable(f"voice{'s' if len(missing) > 1 else ''} not installed: {', '.join(sorted(set(missing)))} "
                                f"(scripts/install_system.sh installs espeak-ng, flite, festival and the voices festvox-kallpc16k, "
                                f"festvox-kdlpc16k, festvox-us-slt-hts)")


# ------------------------------------------------------------------------------------------ synthesis

def _read_wav_bytes(data: bytes, what: str) -> np.ndarray:
    try:
        x, sr = sf.read(io.BytesIO(data), dtype="float64", always_2d=False)
    except Exception as err:  # soundfile raises several types for malformed data
        raise SpoofrlError(f"{what}: produced no readable audio ({err})") from None
    if x.ndim == 2:
        x = x.mean(axis=1)
    if len(x) == 0 or not np.any(x):
        raise SpoofrlError(f"{what}: produced empty or silent audio")
    return resample(x.astype(np.float32), sr, SR).astype(np.float64)


def _espeak(voice: Voice, text: str, prosody: Prosody) -> np.ndarray:
    speed = int(round(165 * prosody.rate))                  # words per minute; espeak's default is 175
    pitch = int(np.clip(round(50 * prosody.pitch ** 3), 0, 99))  # 0-99 scale, ~ +-15% F0 around 50
    cmd = [_which("espeak-ng"), "--stdout", "-v", voice.name, "-s", str(speed), "-p", str(pitch), "--stdin"]
    proc = subprocess.run(cmd, input=text.encode(), capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise SourceUnavailable(f"espeak-ng voice '{voice.name}' failed: {proc.stderr.decode(errors='replace').strip()}")
    return _read_wav_bytes(proc.stdout, f"espeak-ng voice '{voice.name}'")


def _flite(voice: Voice, text: str, prosody: Prosody, tmp: Path) -> np.ndarray:
    out = tmp / "flite.wav"
    cmd = [_which("flite"), "-voice", voice.name, "-t", text, "-o", str(out),
           "--setf", f"duration_stretch={1.0 / prosody.rate:.4f}"]
    if voice.name in FLITE_F0:
        cmd += ["--setf", f"int_f0_target_mean={FLITE_F0[voice.name] * prosody.pitch:.1f}"]
    proc = subprocess.run(cmd, capture_output=True, timeout=120)
    if proc.returncode != 0 or not out.is_file():
        raise SourceUnavailable(f"flite voice '{voice.name}' failed: {proc.stderr.decode(errors='replace').strip()}")
    return _read_wav_bytes(out.read_bytes(), f"flite voice '{voice.name}'")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_batch(voice: Voice, jobs: list[tuple[str, Prosody]], tmp: Path) -> list[np.ndarray]:
    """All of one festival voice's utterances in one process (its start-up costs more than synthesis)."""
    lines = [f"(voice_{voice.name})"]
    outs = []
    for i, (text, prosody) in enumerate(jobs):
        out = tmp / f"fest_{i}.wav"
        outs.append(out)
        lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / prosody.rate:.4f})")
        lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) {_scheme_string(str(out))} 'riff)")
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([_which("festival"), "-b", str(script)], capture_output=True, timeout=600)
    missing = [o for o in outs if not o.is_file()]
    if proc.returncode != 0 or missing:
        raise SourceUnavailable(f"festival voice '{voice.name}' failed: "
                                f"{proc.stderr.decode(errors='replace').strip()[-300:] or 'no output'}")
    return [_read_wav_bytes(o.read_bytes(), f"festival voice '{voice.name}'") for o in outs]


def synthesize(jobs: list[tuple[Voice, str, Prosody]]) -> list[np.ndarray]:
    """Speak every (voice, text, prosody); returns float64 mono audio at 16 kHz in the same order.
    Festival jobs are batched per voice."""
    results: list[np.ndarray | None] = [None] * len(jobs)
    with tempfile.TemporaryDirectory(prefix="spoofrl-src-") as tmpdir:
        tmp = Path(tmpdir)
        by_festival_voice: dict[Voice, list[int]] = {}
        for i, (voice, text, prosody) in enumerate(jobs):
            if voice.engine == "espeak-ng":
                results[i] = _espeak(voice, text, prosody)
            elif voice.engine == "flite":
                results[i] = _flite(voice, text, prosody, tmp)
            elif voice.engine == "festival":
                by_festival_voice.setdefault(voice, []).append(i)
            else:
                raise SourceUnavailable(f"unknown speech engine '{voice.engine}'")
        for voice, idx in by_festival_voice.items():
            sub = tmp / voice.name
            sub.mkdir()
            audio = _festival_batch(voice, [(jobs[i][1], jobs[i][2]) for i in idx], sub)
            for i, x in zip(idx, audio):
                results[i] = x
    return results  # type: ignore[return-value]


def trim_silence(x: np.ndarray, sr: int = SR, threshold_db: float = -50.0) -> np.ndarray:
    """Cut leading/trailing stretches below `threshold_db` relative to the peak (engines pad differently;
    the benchmark then adds its own random leading silence to every class alike)."""
    if len(x) == 0:
        return x
    frame = int(0.01 * sr)
    n = len(x) // frame
    if n == 0:
        return x
    energy = np.sqrt(np.mean(x[:n * frame].reshape(n, frame) ** 2, axis=1))
    active = np.nonzero(20 * np.log10(energy + 1e-12) > 20 * np.log10(np.max(np.abs(x)) + 1e-12) + threshold_db)[0]
    if len(active) == 0:
        return x
    start = max(active[0] - 2, 0) * frame
    end = min((active[-1] + 3) * frame, len(x))
    return x[start:end]
