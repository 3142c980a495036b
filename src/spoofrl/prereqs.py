"""The system programs spoofrl's commands run, the Debian package of each, and the one check every command
makes before any long work: `require(...)` names everything missing at once, with the packages to install.

What each command needs (the programs its code runs; chromium and chromium-driver, also installed by
scripts/install_system.sh, serve only the browser test; no command runs sox):
  spoofrl data fetch   ffmpeg, for sources whose clips are G.722 (asterisk-*): libsndfile cannot read them
  spoofrl data synth   ffmpeg (codec attacks, channels, packaging), espeak-ng, flite, festival and the
                       festival voices kal_diphone, ked_diphone, cmu_us_slt_arctic_hts (the TTS spoofs)
  spoofrl demo         what fetch and synth need, when it has to build its benchmark (`BENCHMARK`)
scripts/install_system.sh installs every package named here (a test keeps the two lists together).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterable, Sequence

from spoofrl.errors import SpoofrlError

INSTALL_SCRIPT = "bash scripts/install_system.sh"
_FESTIVAL_TIMEOUT_S = 60
# Codecs of catalogue sources (`Source.channel`, CODEC-RATE) that only ffmpeg decodes.
FFMPEG_ONLY_CODECS = frozenset({"g722"})


class MissingPrerequisites(SpoofrlError):
    """System programs a command needs are not installed (the message lists the Debian packages)."""


@dataclass(frozen=True)
class Prerequisite:
    package: str                       # the Debian package that installs it
    purpose: str                       # what it is needed for (messages)
    program: str | None = None         # a program looked up on PATH
    festival_voice: str | None = None  # a voice festival must list

    def label(self) -> str:
        return self.program or f"festival voice {self.festival_voice}"


FFMPEG = Prerequisite("ffmpeg", "decodes the G.722 telephone prompts and runs the codec round trips", "ffmpeg")
ESPEAK_NG = Prerequisite("espeak-ng", "text-to-speech spoofs in ~30 languages", "espeak-ng")
FLITE = Prerequisite("flite", "English text-to-speech spoofs", "flite")
FESTIVAL = Prerequisite("festival", "English text-to-speech spoofs", "festival")
FESTIVAL_VOICES = (
    Prerequisite("festvox-kallpc16k", "a festival diphone voice", festival_voice="kal_diphone"),
    Prerequisite("festvox-kdlpc16k", "a festival diphone voice", festival_voice="ked_diphone"),
    Prerequisite("festvox-us-slt-hts", "a festival HTS voice", festival_voice="cmu_us_slt_arctic_hts"),
)

SYNTH = (FFMPEG, ESPEAK_NG, FLITE, FESTIVAL, *FESTIVAL_VOICES)   # `spoofrl data synth`, both designs
BENCHMARK = SYNTH                  # building the demo's benchmark: fetch (ffmpeg) + synth
PACKAGES = tuple(dict.fromkeys(p.package for p in SYNTH))


def for_sources(sources: Iterable) -> tuple[Prerequisite, ...]:
    """What fetching these catalogue sources needs: ffmpeg when one ships clips only ffmpeg decodes."""
    codecs = {source.channel.split("-")[0] for source in sources}
    return (FFMPEG,) if codecs & FFMPEG_ONLY_CODECS else ()


def festival_voice_list(festival: str) -> set[str]:
    """The voices the festival program at this path lists (OSError / TimeoutExpired when it cannot run)."""
    proc = subprocess.run([festival, "--pipe"], input="(print (voice.list))\n", capture_output=True,
                          text=True, timeout=_FESTIVAL_TIMEOUT_S)
    return set(proc.stdout.replace("(", " ").replace(")", " ").split())


def _festival_voices(festival: str) -> set[str]:
    """The voices this festival lists; none when it cannot run (then every voice is reported missing)."""
    try:
        return festival_voice_list(festival)
    except (OSError, subprocess.TimeoutExpired):
        return set()


def missing(needed: Sequence[Prerequisite]) -> list[Prerequisite]:
    """The prerequisites of NEEDED not installed here, in order."""
    absent = [p for p in needed if p.program is not None and shutil.which(p.program) is None]
    voices = [p for p in needed if p.festival_voice is not None]
    if voices:
        festival = shutil.which("festival")
        have = _festival_voices(festival) if festival else set()
        absent += [p for p in voices if p.festival_voice not in have]
    return absent


def install_hint(packages: Sequence[str]) -> str:
    """How to install these Debian packages (for messages)."""
    return (f"run `{INSTALL_SCRIPT}` in the spoofrl checkout (`make demo` runs it, then the demo), or "
            f"`sudo apt-get install {' '.join(packages)}`")


def require(needed: Sequence[Prerequisite]) -> None:
    """Raise MissingPrerequisites naming every missing program and its package; called before a command
    writes or downloads anything, so that nothing is half done."""
    absent = missing(needed)
    if not absent:
        return
    what = ", ".join(f"{p.label()} ({p.purpose}; Debian package {p.package})" for p in absent)
    packages = list(dict.fromkeys(p.package for p in absent))
    raise MissingPrerequisites(f"system packages missing: {what}; {install_hint(packages)}; nothing was done")
