"""The catalogue of real (bona fide) speech found in Debian packages: one `Source` per entry.

A source names its Debian packages (the one holding the clips first), the licence read from the package's
`usr/share/doc/PKG/copyright` (and a pattern that must be found there, so a repackaged version with another
licence is noticed), where the clips lie, and the parser (`spoofrl.data.real.parsers`) that finds each
clip's transcript, speaker, language and gender. A new source is one entry here plus, when its package
describes its clips in a new way, one small parser function.

These packages are the real recordings used for training and development. Other real speech corpora are
kept for independent evaluation only (see docs/data.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from spoofrl.errors import ConfigError

# Audio suffixes looked for under a source's clip folders (`spoofrl.audio.AUDIO_SUFFIXES` plus raw G.722).
CLIP_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".g722"})


@dataclass(frozen=True)
class Source:
    name: str                      # catalogue name: manifest `source` column, --sources value
    title: str                     # one line: what the recordings are
    packages: tuple[str, ...]      # Debian packages; the first holds the clips, the others metadata
    languages: tuple[str, ...]     # ISO 639-1 codes (ISO 639-3 where a language has none, e.g. nds)
    license: str                   # SPDX-style id as the copyright file states it, written to every clip
    license_pattern: str           # regex found in the first package's copyright file when `license` holds
    channel: str                   # expected codec-rate of most clips (the manifest gets each clip's own)
    clips: tuple[str, ...]         # globs, relative to the first package's root, of the clip files
    parser: str                    # name in spoofrl.data.real.parsers.PARSERS
    transcripts: str               # how transcripts are found (documentation)
    speakers: str                  # how speakers (and gender) are found (documentation)
    options: Mapping[str, Any] = field(default_factory=dict)  # parser settings

    def __post_init__(self):
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


# --------------------------------------------------------------------------------------------- fillets

def _fillets(lang: str, language_name: str, title: str) -> Source:
    return Source(
        name=f"fillets-{lang}",
        title=title,
        packages=(f"fillets-ng-data-{lang}", "fillets-ng-data"),
        languages=(lang,),
        license="GPL-2",
        license_pattern=r"GNU General Public License\s+as published by\s+the Free Software Foundation; "
                        r"version 2 dated June, 1991",
        channel="vorbis-22k",
        clips=(f"usr/share/games/fillets-ng/sound/**/{lang}/*.ogg",),
        parser="fillets",
        transcripts=f"the game's Lua dialogue scripts in fillets-ng-data (script/**/*dialogs_{lang}.lua): "
                    f"dialogId(ID, FONT, ENGLISH) then dialogStr({language_name} text); the clip "
                    f"sound/DIR/{lang}/ID.ogg is line ID of the scripts of DIR (script/share/X_ prefixes "
                    f"mapped by the game's dialogLoad calls); the English line is kept as `gloss`",
        speakers=f"the character, told by the subtitle font: font_small -> fillets-{lang}:small_fish, "
                 f"font_big -> fillets-{lang}:big_fish, named fonts (parrot, statue, viking1, ...) -> that "
                 f"name, colour fonts (white, yellow, ...) -> LEVEL-colour (a colour is a different "
                 f"character in each level); no font -> '-'; gender not stated -> '-'",
        options={"lang": lang},
    )


FILLETS_CS = _fillets("cs", "Czech", "Fish Fillets NG: acted game dialogue in Czech (the original voices: two "
                                     "main actors and minor characters)")
FILLETS_NL = _fillets("nl", "Dutch", "Fish Fillets NG: the game's dialogue acted in Dutch (other actors, the "
                                     "two fish only)")


# --------------------------------------------------------------------------------------------- asterisk

def _asterisk(lang: str, language_name: str, voice: str, license: str, files_glob: str) -> Source:
    return Source(
        name=f"asterisk-{lang}",
        title=f"Asterisk PBX core voice prompts in {language_name} ({voice}, professional voice talent)",
        packages=(f"asterisk-core-sounds-{lang}-g722", f"asterisk-core-sounds-{lang}"),
        languages=(lang,),
        license=license,
        # the copyright file (the same in every language) gives each voice its own `Files:` paragraph
        license_pattern=rf"Files: {files_glob}\n(?:[ \t].*\n|[A-Z][\w-]*:.*\n)*?License: {license}\b",
        channel="g722-16k",
        clips=("usr/share/asterisk/sounds/*/**/*",),
        parser="asterisk",
        transcripts=f"core-sounds-{lang}.txt.gz in asterisk-core-sounds-{lang}: lines `name: text`, name = the "
                    f"clip's path under the voice folder without suffix (e.g. digits/1); silence/, the tones "
                    f"(beep, ascending-2tone, ...), tt-monkeys and prompts whose text is only a [bracketed "
                    f"description] are not speech and left out (listed in problems.tsv)",
        speakers="the voice folder LL_CC_G_Name (e.g. en_US_f_Allison): speaker asterisk:Name, gender G; "
                 "the English and Spanish prompts are the same speaker (Allison Smith)",
        options={"lang": lang, "transcript_package": f"asterisk-core-sounds-{lang}",
                 # tones and effects of every language (some lists leave them undescribed)
                 "non_speech": {"beep": "a beep tone", "beeperr": "an error beep tone",
                                "ascending-2tone": "ascending tones", "descending-2tone": "descending tones",
                                "tt-monkeys": "monkeys screaming"}},
    )


ASTERISK_EN = _asterisk("en", "US English", "Allison Smith", "CC-BY-SA-3.0", r"\*")
ASTERISK_ES = _asterisk("es", "Mexican Spanish", "Allison Smith", "CC-BY-SA-3.0", r"\*")
ASTERISK_FR = _asterisk("fr", "Canadian French", "June Wallack", "CC-BY-SA-3.0", r"fr-\*")
ASTERISK_IT = _asterisk("it", "Italian", "Carlo Flora", "CC-BY-3.0", r"it-\*")
ASTERISK_RU = _asterisk("ru", "Russian", "IvrvoiceRU / Maxim Topal", "CC-BY-3.0", r"ru-\*")


# --------------------------------------------------------------------------------------------- KDE edu

# GCompris' Norwegian Nynorsk voice (Karl Ove Hufthammer, 2022): klettres' nn/sounds.xml credits it to the
# CereVoice text-to-speech service; ktuberling's nn clips carry the same authors in their tags. Synthetic
# speech is never bona fide here.
_NN_SYNTHETIC = ("text-to-speech (CereVoice), not a human recording: klettres nn/sounds.xml credits the "
                 "GCompris Nynorsk voice of Karl Ove Hufthammer to CereProc's CereVoice")

KLETTRES = Source(
    name="klettres",
    title="KLettres: letters and syllables read aloud for children learning to read, ~20 languages, about "
          "one voice each (some children)",
    packages=("klettres-data",),
    languages=("ar", "cs", "da", "de", "en", "es", "fr", "he", "hu", "it", "lt", "ml", "nb", "nds", "nl",
               "pt", "ru", "tn", "uk"),
    license="GPL-2+",
    license_pattern=r"Files: \*\n(?:[ \t].*\n|[A-Z][\w-]*:.*\n)*?License: GPL-2\+",
    channel="vorbis-44k",
    clips=("usr/share/klettres/*/alpha/*", "usr/share/klettres/*/syllab/*"),
    parser="klettres",
    transcripts="each language's sounds.xml: <sound name=LETTER-OR-SYLLABLE file=PATH/>; a file listed under "
                "several names gets them joined with ' / '; a file not listed has no transcript",
    speakers="one speaker per language folder (klettres:FOLDER, e.g. klettres:en_GB); a folder may hold more "
             "than one voice (pt_BR and id credit a father and his child); gender where sounds.xml tells it "
             "(ar: 'my little nephew's voice' -> m), else '-'",
    options={"gender": {"ar": "m"}, "synthetic": {"nn": _NN_SYNTHETIC}},
)

KTUBERLING = Source(
    name="ktuberling",
    title="KTuberling (potato game): single words naming the game's objects, ~25 languages",
    packages=("ktuberling-data",),
    languages=("ca", "da", "de", "el", "en", "es", "fi", "fr", "ga", "gl", "it", "lt", "nds", "nl", "pt", "ro",
               "ru", "sl", "sr", "sv", "uk", "wa"),
    license="GPL-2+",
    license_pattern=r"Files: \*\n(?:[ \t].*\n|[A-Z][\w-]*:.*\n)*?License: GPL-2\+",
    channel="vorbis-44k",
    clips=("usr/share/ktuberling/sounds/*/*",),
    parser="ktuberling",
    transcripts="sounds/LANG.soundtheme maps an English object id (eye, egypt_camel, ...) to the file; the "
                "spoken word is the file name (theme prefix such as egypte_ dropped, _ and - as spaces; ASCII, "
                "so diacritics are missing, e.g. sesir for šešir) where the file is named in the language; "
                "where the file only repeats the English id (de, el, gl, lt, ru, sl, uk) the transcript is "
                "empty; the English id is kept as `gloss`",
    speakers="one speaker per language folder (ktuberling:FOLDER); a folder may hold more than one voice (the "
             "ca tags name two artists, el 'clavisound.gr and patty'); gender not stated -> '-'",
    options={"synthetic": {"nn": _NN_SYNTHETIC}},
)


# --------------------------------------------------------------------------------------------- hedgewars

# What each Hedgewars voice event says in the English packs (the event is the file name; an actor may word
# it differently, e.g. in character). Events that are not words (grunts, laughs, coughs) have no entry.
HEDGEWARS_PHRASES = {
    "Amazing": "Amazing!", "Boring": "Boring!", "Brilliant": "Brilliant!", "Bugger": "Bugger!",
    "Byebye": "Bye-bye!", "Comeonthen": "Come on then!", "Coward": "Coward!", "Cutitout": "Cut it out!",
    "Drat": "Drat!", "Enemydown": "Enemy down!", "Excellent": "Excellent!", "Fire": "Fire!",
    "Firstblood": "First blood!", "Flawless": "Flawless!", "Flyaway": "Fly away!",
    "Gonnagetyou": "Gonna get you!", "Grenade": "Grenade!", "Hello": "Hello!", "Hurry": "Hurry!",
    "Illgetyou": "I'll get you!", "Incoming": "Incoming!", "Justyouwait": "Just you wait!",
    "Kamikaze": "Kamikaze!", "Leavemealone": "Leave me alone!", "Melon": "Melon!", "Missed": "Missed!",
    "Nooo": "Nooo!", "Nutter": "Nutter!", "Ohdear": "Oh dear!", "Oops": "Oops!", "Ouch": "Ouch!",
    "Reinforcements": "Reinforcements!", "Revenge": "Revenge!", "Runaway": "Run away!",
    "Sameteam": "Same team!", "Solong": "So long!", "Stupid": "Stupid!", "Takecover": "Take cover!",
    "Thisoneismine": "This one is mine!", "Traitor": "Traitor!", "Uh-oh": "Uh-oh!", "Victory": "Victory!",
    "Watchit": "Watch it!", "Watchthis": "Watch this!", "Whatthe": "What the...!", "Yessir": "Yes, sir!",
    "Youllregretthat": "You'll regret that!",
}

HEDGEWARS = Source(
    name="hedgewars",
    title="Hedgewars: acted voice packs (short in-game shouts), 15 packs, English plus es/pl/ru/uk versions",
    packages=("hedgewars-data",),
    languages=("en", "es", "pl", "ru", "uk"),
    license="GFDL-1.3",
    license_pattern=r"Files: share/hedgewars/Data/Sounds/\*\n(?:[ \t].*\n|[A-Z][\w-]*:.*\n)*?License: GFDL-1\.3",
    channel="vorbis-44k",
    clips=("usr/share/games/hedgewars/Data/Sounds/voices/*/*",),
    parser="hedgewars",
    transcripts="the file name is the game event the line was recorded for (Illgetyou, Takecover); in the "
                "English packs it gives the transcript (HEDGEWARS_PHRASES; the actor may word it otherwise); "
                "grunts, laughs and coughs (Ow1, Ooff2, Jump3, Laugh, Hmm, PoisonCough, Firepunch*) and the "
                "non-English packs have an empty transcript and the English phrase as `gloss`",
    speakers="the voice pack (hedgewars:PACK); PACK_ll is PACK in language ll (Default_pl: Polish), the others "
             "are English characters; the Robot pack is left out (an effect-processed robot voice); gender "
             "not stated -> '-'",
    options={"phrases": HEDGEWARS_PHRASES,
             "excluded_packs": {"Robot": "robot voice: speech processed by an effect, not plain human speech"}},
)


SOURCES: dict[str, Source] = {s.name: s for s in (
    FILLETS_CS, FILLETS_NL, KLETTRES, KTUBERLING,
    ASTERISK_EN, ASTERISK_ES, ASTERISK_FR, ASTERISK_IT, ASTERISK_RU,
    HEDGEWARS,
)}


def resolve_sources(spec: str | Source | list | tuple | None) -> list[Source]:
    """Sources from names: 'all' (or None), exact names, or a family prefix ('asterisk' = asterisk-*,
    'fillets' = fillets-*), comma-separated in a string or as a list; `Source` objects pass through
    (tests and private catalogues). Unknown names raise a `ConfigError` listing the catalogue."""
    if spec is None:
        spec = "all"
    items = [t.strip() for t in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[Source] = []
    for item in items:
        if isinstance(item, Source):
            chosen = [item]
        elif not item:
            continue
        elif item == "all":
            chosen = list(SOURCES.values())
        elif item in SOURCES:
            chosen = [SOURCES[item]]
        else:
            chosen = [s for n, s in SOURCES.items() if n.startswith(item + "-")]
            if not chosen:
                raise ConfigError(f"unknown real-speech source {item!r}; known: all, {', '.join(SOURCES)} "
                                  f"(or a family: asterisk, fillets)")
        out.extend(s for s in chosen if s.name not in {o.name for o in out})
    if not out:
        raise ConfigError("no real-speech source named; use --sources all or some of: " + ", ".join(SOURCES))
    return out
