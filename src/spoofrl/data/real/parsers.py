"""How each catalogue source describes its clips: one parser per package family.

A parser gets the source, its clip files (every audio file under the source's clip globs, sorted) and the
extracted root of each of its packages, and returns one `Clip` per file (transcript, speaker, language,
gender, or why the file is left out) plus `Note`s on the package's own metadata (a listed clip that is not
shipped, a listed clip that is missing). A file the parser does not describe still gets a row with empty
metadata (the caller adds it), so nothing is dropped silently.
"""
from __future__ import annotations

import gzip
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

from spoofrl.data.real.catalogue import Source

UNKNOWN = "-"


@dataclass
class Clip:
    path: Path                 # absolute path of the audio file
    package: str               # the package the file comes from
    speaker: str = UNKNOWN
    language: str = UNKNOWN
    gender: str = UNKNOWN      # m / f as the package tells it, else '-'
    transcript: str = ""
    text_source: str = ""      # where the transcript comes from: dialogue-script, prompt-list, sounds-xml,
    #                            file-name, event-name ('' = no transcript)
    gloss: str = ""            # English meaning where the package gives it (fillets' English line, ...)
    excluded: str = ""         # why the clip is not bona fide speech (kept out of the manifest), '' = kept


@dataclass
class Note:
    package: str
    path: str                  # the file (relative to the package root) or metadata entry concerned
    kind: str                  # 'not-shipped', 'unlisted', ...
    reason: str


@dataclass
class Parsed:
    clips: list[Clip]
    notes: list[Note]


def iso639_1(code: str) -> str:
    """'en_GB' -> 'en', 'pt_BR' -> 'pt', 'sr@latin' -> 'sr'; codes without a 2-letter form stay (nds)."""
    return re.split(r"[_@.-]", code, maxsplit=1)[0].lower()


def clean_text(text: str) -> str:
    """One line, single spaces, NFC (transcripts go into a CSV cell)."""
    return unicodedata.normalize("NFC", " ".join(text.split()))


# --------------------------------------------------------------------------------------------- Lua (fillets)

_LUA_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<longcomment>--\[(?P<lc_eq>=*)\[.*?\](?P=lc_eq)\])
  | (?P<comment>--[^\n]*)
  | (?P<dq>"(?:[^"\\\n]|\\.|\\\n)*")
  | (?P<sq>'(?:[^'\\\n]|\\.|\\\n)*')
  | (?P<long>\[(?P<ls_eq>=*)\[.*?\](?P=ls_eq)\])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<other>\.\.|.)
""", re.S | re.X)
_LUA_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\n": "\n"}


def _lua_string(token: str) -> str:
    if token.startswith("["):
        eq = len(re.match(r"\[(=*)\[", token).group(1))
        body = token[eq + 2:-(eq + 2)]
        return body[1:] if body.startswith("\n") else body

    def unescape(m: re.Match) -> str:
        esc = m.group(1)
        if esc.isdigit():
            return chr(int(esc))
        return _LUA_ESCAPES.get(esc, esc)
    return re.sub(r"\\(\d{1,3}|.|\n)", unescape, token[1:-1], flags=re.S)


def lua_calls(text: str, functions: set[str]) -> list[tuple[str, list[str]]]:
    """The calls `f("a", "b" .. "c", ...)` of the given functions whose arguments are all string literals
    (concatenations joined), in file order. Calls with other arguments (variables, loops) are skipped."""
    tokens: list[tuple[str, str]] = []
    for m in _LUA_TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in ("space", "comment", "longcomment"):
            continue
        if kind in ("dq", "sq", "long"):   # (lastgroup is the outer group of a long string / comment)
            tokens.append(("str", _lua_string(m.group())))
        else:
            tokens.append((kind, m.group()))
    calls = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "name" and value in functions and i + 1 < len(tokens) and tokens[i + 1] == ("other", "("):
            j, args, current, ok = i + 2, [], [], True
            while j < len(tokens) and tokens[j] != ("other", ")"):
                k, v = tokens[j]
                if k == "str":
                    current.append(v)
                elif (k, v) == ("other", ","):
                    args.append("".join(current))
                    current = []
                elif (k, v) != ("other", ".."):
                    ok = False
                j += 1
            args.append("".join(current))
            if ok:
                calls.append((value, args))
            i = j
        i += 1
    return calls


# A colour font is a different character in each level; a named font is one character across levels.
_FILLETS_COLOURS = {"white", "yellow", "lightgrey", "darkgrey", "cyan", "green", "brown", "magenta", "pink",
                    "orange", "red", "blue", "black", "purple", "grey"}
_FILLETS_MAIN = {"small": "small_fish", "big": "big_fish", "both": "both_fish"}
_DIALOG_LOAD = re.compile(r'dialogLoad\(\s*"script/([^"]+)"\s*,\s*"sound/([^"]+?)/?"\s*\)')


def _fillets_speaker(lang: str, font: str, level: str) -> str:
    name = font[5:] if font.startswith("font_") else font
    if not name:
        return UNKNOWN
    if name in _FILLETS_MAIN:
        name = _FILLETS_MAIN[name]
    elif name in _FILLETS_COLOURS:
        name = f"{level.replace('/', '-')}-{name}"
    return f"fillets-{lang}:{name}"


def parse_fillets(source: Source, files: list[Path], roots: Mapping[str, Path]) -> Parsed:
    lang = source.options["lang"]
    audio_pkg, script_pkg = source.packages[0], source.packages[1]
    game = PurePosixPath("usr/share/games/fillets-ng")
    scripts = roots[script_pkg] / game / "script"
    sounds = roots[audio_pkg] / game / "sound"
    # script prefix -> sound folder, from the game's own dialogLoad calls (script/share/bore_ -> share/borejokes);
    # a level's scripts script/LEVEL/*dialogs_LANG.lua are voiced from sound/LEVEL/
    prefix_dirs: dict[str, str] = {}
    for lua in sorted(scripts.rglob("*.lua")):
        for script_prefix, sound_dir in _DIALOG_LOAD.findall(lua.read_text(encoding="utf-8", errors="replace")):
            prefix_dirs.setdefault(script_prefix, sound_dir)
    lines: dict[tuple[str, str], tuple[str, str, str]] = {}   # (sound dir, id) -> (font, english, text)
    for dialogs in sorted(scripts.rglob(f"*dialogs_{lang}.lua")):
        rel = dialogs.relative_to(scripts).as_posix()
        prefix = rel[:-len(f"dialogs_{lang}.lua")]
        sound_dir = prefix_dirs.get(prefix) or rel.split("/")[0]
        current = None
        for func, args in lua_calls(dialogs.read_text(encoding="utf-8", errors="replace"), {"dialogId", "dialogStr"}):
            if func == "dialogId":
                args += [""] * (3 - len(args))
                current = (sound_dir, args[0], args[1], args[2])
            elif current is not None:
                key = (current[0], current[1])
                if key not in lines or (not lines[key][2] and args[0]):   # a voiced line's text wins
                    lines[key] = (current[2], current[3], args[0])
                current = None
    clips, notes = [], []
    for path in files:
        rel = path.relative_to(sounds)
        sound_dir = rel.parent.parent.as_posix()     # sound/DIR/LANG/ID.ogg
        found = lines.get((sound_dir, path.stem))
        clip = Clip(path, audio_pkg, language=lang)
        if found is None:
            notes.append(Note(audio_pkg, path.relative_to(roots[audio_pkg]).as_posix(), "unlisted",
                              f"no dialogue line {path.stem!r} in script/{sound_dir}/*dialogs_{lang}.lua: "
                              f"no transcript or speaker"))
        else:
            font, english, text = found
            clip.speaker = _fillets_speaker(lang, font, sound_dir)
            clip.transcript = clean_text(text)
            clip.text_source = "dialogue-script" if clip.transcript else ""
            clip.gloss = clean_text(english)
        clips.append(clip)
    return Parsed(clips, notes)


# --------------------------------------------------------------------------------------------- asterisk

_ASTERISK_VOICE = re.compile(r"^(?P<lang>[a-z]{2})_(?P<region>[A-Z]{2})_(?P<gender>[mf])_(?P<name>.+)$")
_BRACKETED_ONLY = re.compile(r"^\[[^\]]*\]\.?$")


def read_prompt_list(path: Path) -> dict[str, str]:
    """`name: text` lines of Asterisk's core-sounds-LL.txt(.gz); `;` comments and blank lines skipped."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    else:
        raw = path.read_bytes()
    prompts: dict[str, str] = {}
    for line in raw.decode("utf-8-sig", errors="replace").splitlines():
        line = line.strip().lstrip("\ufeff")
        if not line or line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        prompts.setdefault(name.strip(), clean_text(text))
    return prompts


def parse_asterisk(source: Source, files: list[Path], roots: Mapping[str, Path]) -> Parsed:
    lang = source.options["lang"]
    audio_pkg, text_pkg = source.packages[0], source.options["transcript_package"]
    doc = roots[text_pkg] / "usr/share/doc" / text_pkg
    candidates = [doc / f"core-sounds-{lang}.txt.gz", doc / f"core-sounds-{lang}.txt"]
    listing = next((p for p in candidates if p.is_file()), None)
    notes = []
    if listing is None:
        notes.append(Note(text_pkg, f"usr/share/doc/{text_pkg}/core-sounds-{lang}.txt.gz", "not-shipped",
                          "the prompt list is missing: no transcripts"))
    prompts = read_prompt_list(listing) if listing else {}
    sounds = roots[audio_pkg] / "usr/share/asterisk/sounds"
    non_speech = source.options.get("non_speech", {})
    clips = []
    for path in files:
        rel = path.relative_to(sounds)
        voice = rel.parts[0]
        m = _ASTERISK_VOICE.match(voice)
        clip = Clip(path, audio_pkg, speaker=f"asterisk:{m.group('name')}" if m else f"asterisk:{voice}",
                    language=m.group("lang") if m else lang, gender=m.group("gender") if m else UNKNOWN)
        key = PurePosixPath(*rel.parts[1:]).with_suffix("").as_posix()
        text = prompts.get(key, "")
        if rel.parts[1] == "silence":
            clip.excluded = "silence (asterisk silence/ prompt), not speech"
        elif _BRACKETED_ONLY.match(text):
            clip.excluded = f"not speech: the prompt list describes it as {text}"
        elif key in non_speech:
            clip.excluded = f"not speech: {non_speech[key]}"
        clip.transcript, clip.text_source = text, ("prompt-list" if text else "")
        clips.append(clip)
    return Parsed(clips, notes)


# --------------------------------------------------------------------------------------------- KDE edu

def _xml_sounds(path: Path) -> list[tuple[str, str, str]]:
    """(language code, name, file) of every <sound name=... file=.../> in a sounds.xml / .soundtheme file;
    a file that is not well-formed XML is read with a regular expression."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        root = ET.fromstring(text)
        languages = [root] if root.tag == "language" else root.iter("language")
        return [(lang.get("code", ""), s.get("name", ""), s.get("file", ""))
                for lang in languages for s in lang.iter("sound")]
    except ET.ParseError:
        code = re.search(r'<language\s+code="([^"]*)"', text)
        return [(code.group(1) if code else "", n, f)
                for n, f in re.findall(r'<sound\s+name="([^"]*)"\s+file="([^"]*)"', text)]


def _listed(root: Path, pattern: str) -> dict[str, list[tuple[str, str]]]:
    """file (relative to root, normalised) -> [(language code, name), ...] over every listing file."""
    out: dict[str, list[tuple[str, str]]] = {}
    for listing in sorted(root.glob(pattern)):
        for code, name, file in _xml_sounds(listing):
            key = PurePosixPath(file).as_posix().lstrip("./")
            entry = (code, name)
            if entry not in out.setdefault(key, []):
                out[key].append(entry)
    return out


def _kde_clips(source: Source, files: list[Path], roots: Mapping[str, Path], base: str, listing: str,
               listing_name: str, describe: Callable[[Clip, str, list[tuple[str, str]], Path], None]) -> Parsed:
    package = source.packages[0]
    data = roots[package] / base
    listed = _listed(data, listing)
    synthetic = source.options.get("synthetic", {})
    genders = source.options.get("gender", {})
    clips, notes, seen = [], [], set()
    for path in files:
        rel = path.relative_to(data).as_posix()
        seen.add(rel)
        folder = rel.split("/")[0]
        clip = Clip(path, package, speaker=f"{source.name}:{folder}", language=iso639_1(folder),
                    gender=genders.get(folder, UNKNOWN))
        entries = listed.get(rel, [])
        if entries:
            clip.language = iso639_1(entries[0][0] or folder)
        else:
            notes.append(Note(package, f"{base}/{rel}", "unlisted", f"not listed in {listing_name}: no transcript"))
        describe(clip, folder, entries, path)
        if folder in synthetic:
            clip.excluded = synthetic[folder]
        clips.append(clip)
    missing = Counter(rel.split("/")[0] for rel in listed if rel not in seen)
    for folder, n in sorted(missing.items()):
        notes.append(Note(package, f"{base}/{folder}", "not-shipped",
                          f"{listing_name} of {folder!r} lists {n} clip{'s' if n > 1 else ''} the package does not "
                          f"ship"))
    return Parsed(clips, notes)


def parse_klettres(source: Source, files: list[Path], roots: Mapping[str, Path]) -> Parsed:
    def describe(clip: Clip, folder: str, entries: list[tuple[str, str]], path: Path) -> None:
        names = list(dict.fromkeys(clean_text(n) for _, n in entries if n.strip()))
        clip.transcript = " / ".join(names)
        clip.text_source = "sounds-xml" if names else ""
    return _kde_clips(source, files, roots, "usr/share/klettres", "*/sounds.xml", "sounds.xml", describe)


def _theme_prefixes(stems: list[str]) -> set[str]:
    """Leading `word_` shared by at least 5 file names of a folder: a theme prefix (egypte_, patate_, tv_)."""
    counts = Counter(s.split("_", 1)[0] for s in stems if "_" in s)
    return {p for p, n in counts.items() if n >= 5}


def _word(stem: str, prefixes: set[str]) -> str:
    head, _, rest = stem.partition("_")
    if rest and head in prefixes:
        stem = rest
    return clean_text(re.sub(r"[_-]+", " ", stem))


def parse_ktuberling(source: Source, files: list[Path], roots: Mapping[str, Path]) -> Parsed:
    sounds = roots[source.packages[0]] / "usr/share/ktuberling/sounds"
    by_folder: dict[str, list[str]] = {}
    for path in files:
        by_folder.setdefault(path.parent.name, []).append(path.stem)
    prefixes = {folder: _theme_prefixes(stems) for folder, stems in by_folder.items()}
    names = [n for entries in _listed(sounds, "*.soundtheme").values() for _, n in entries if n]
    english_prefixes = _theme_prefixes(names)

    def forms(text: str) -> set[str]:
        """A name as compared: whole, without its first word (egypt camel -> camel), without a plural s."""
        text = text.lower()
        out = {text, text.partition(" ")[2]} - {""}
        return out | {t[:-1] for t in out if t.endswith("s")}       # shoes -> shoe

    # every English object name of the game (ids of all soundthemes, the English recordings' file names)
    english = set().union(*map(forms, [_word(n, english_prefixes) for n in names] + [_word(n, set()) for n in names]
                               + [_word(s, prefixes.get("en", set())) for s in by_folder.get("en", [])]))

    def describe(clip: Clip, folder: str, entries: list[tuple[str, str]], path: Path) -> None:
        ids = list(dict.fromkeys(n for _, n in entries if n))
        clip.gloss = " / ".join(_word(n, english_prefixes) for n in ids)
        word = _word(path.stem, prefixes.get(folder, set()))
        # a file named with an English id (uk/egypt_woman.ogg, ca/apple.ogg) does not tell the spoken word
        english_named = path.stem in ids or bool(forms(word) & english)
        if entries and (clip.language == "en" or not english_named):
            clip.transcript, clip.text_source = word, "file-name"
    return _kde_clips(source, files, roots, "usr/share/ktuberling/sounds", "*.soundtheme", "the soundtheme",
                      describe)


# --------------------------------------------------------------------------------------------- hedgewars

def parse_hedgewars(source: Source, files: list[Path], roots: Mapping[str, Path]) -> Parsed:
    package = source.packages[0]
    voices = roots[package] / "usr/share/games/hedgewars/Data/Sounds/voices"
    phrases = source.options.get("phrases", {})
    excluded = source.options.get("excluded_packs", {})
    clips = []
    for path in files:
        pack = path.relative_to(voices).parts[0]
        m = re.match(r"^(.+)_([a-z]{2})$", pack)
        language = m.group(2) if m else "en"
        event = re.sub(r"\d+$", "", path.stem)
        phrase = phrases.get(event, "")
        clip = Clip(path, package, speaker=f"hedgewars:{pack}", language=language, gloss=phrase)
        if language == "en" and phrase:
            clip.transcript, clip.text_source = phrase, "event-name"
        if pack in excluded:
            clip.excluded = excluded[pack]
        clips.append(clip)
    return Parsed(clips, [])


PARSERS: dict[str, Callable[[Source, list[Path], Mapping[str, Path]], Parsed]] = {
    "fillets": parse_fillets,
    "asterisk": parse_asterisk,
    "klettres": parse_klettres,
    "ktuberling": parse_ktuberling,
    "hedgewars": parse_hedgewars,
}
