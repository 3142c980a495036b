"""Sentences for the benchmark's speech sources, generated from built-in word lists and templates.

Two text styles: `read` (declarative sentences, like read-speech corpora) and `conversational`
(questions, replies, numbers and times, like calls and voice messages). The target domain uses the
conversational style, so it differs from post-training in content as well as in voices and attacks.
`TextPool` hands out sentences that are unique across the whole benchmark, so no text of one subset
occurs in another.
"""
from __future__ import annotations

import numpy as np

NOUNS = """apple garden river window teacher doctor engine letter market island village forest mountain
bottle candle blanket bridge castle camera ticket kitchen library station harbour meadow pencil pocket
rabbit school shadow silver stone summer sunset table thunder tower valley wagon winter yellow anchor
basket border branch button cabin carpet circle cloud coffee corner cotton desert dinner dragon feather
fence field flower fountain garage glass guitar hammer helmet holiday honey horse jacket journey ladder
lantern lemon lesson machine magnet marble mirror morning needle ocean orange painter palace parcel
pepper piano pillow planet puzzle rocket saddle sailor season signal singer spider spoon stable
statue sugar tiger tomato tunnel uncle violin wallet whistle wizard wool yard parrot falcon meadow
clock engineer farmer baker lawyer nurse pilot driver student captain neighbour visitor stranger
""".split()

ADJECTIVES = """bright quiet heavy gentle ancient narrow shiny rusty purple golden frozen sudden clever
careful hungry lonely noisy patient polite rapid silent simple sleepy smooth sturdy tiny wooden
colourful distant dusty elegant empty fragile friendly generous honest humble lively lucky modern
muddy nervous pleasant proud rough sharp shallow steady strange swift tender tidy warm wild windy
""".split()

VERBS_PAST = """carried painted opened closed watched followed noticed repaired cleaned borrowed moved
lifted pushed pulled visited packed wrapped filled counted measured collected delivered described
discovered finished guarded handled imagined joined kicked loaded mended ordered polished protected
rescued returned shared signed sorted studied touched traded washed weighed whispered
""".split()

PLACES = """the station|the harbour|the old bridge|the village square|the museum|the top floor|the
kitchen table|the garden gate|the river bank|the train|the back door|the market|the school yard|the
city hall|the bakery|the hospital|the post office|the parking lot|the museum steps|the lake""".replace("\n", " ").split("|")

NAMES = """Anna Boris Clara Daniel Elena Felix Grace Hugo Irene Jonas Karla Leo Maria Nora Oscar
Paula Quentin Rosa Simon Tara Ulrich Vera Walter Xenia Yusuf Zoe""".split()

TIME_WORDS = """Monday Tuesday Wednesday Thursday Friday Saturday Sunday tomorrow tonight""".split()
NUMBER_WORDS = """two three four five six seven eight nine ten eleven twelve fifteen twenty thirty""".split()

READ_TEMPLATES = [
    "The {adj} {noun} {verb} the {noun2}.",
    "{name} {verb} a {adj} {noun} near {place}.",
    "A {adj} {noun} was {verb} by the {noun2}.",
    "Every {noun} in {place} looked {adj}.",
    "The {noun} and the {noun2} were {adj}.",
    "{name} {verb} the {adj} {noun2} yesterday.",
    "Beyond {place}, a {noun} {verb} the {noun2}.",
    "Nobody {verb} the {adj} {noun} today.",
]

CONVERSATIONAL_TEMPLATES = [
    "Hi, it's {name}, call me about the {noun}.",
    "Did you see the {adj} {noun} at {place}?",
    "Meet me at {place} at {number} on {time}.",
    "Honestly, the {noun} was {adj}, right?",
    "Bring {number} {noun}s to {place} on {time}.",
    "Yes, I {verb} the {noun} already, don't worry.",
    "Sorry, I can't talk now, the {noun} is {adj}.",
    "Okay, so {name} {verb} the {noun2}?",
    "Wait, was it {number} or {number2} {noun}s?",
]

STYLES = {"read": READ_TEMPLATES, "conversational": CONVERSATIONAL_TEMPLATES}


def _pick(rng: np.random.Generator, words: list[str]) -> str:
    return words[int(rng.integers(len(words)))]


def make_sentence(rng: np.random.Generator, style: str = "read") -> str:
    """One sentence of `style` from the word lists."""
    template = _pick(rng, STYLES[style])
    fill = {
        "adj": _pick(rng, ADJECTIVES), "adj2": _pick(rng, ADJECTIVES),
        "noun": _pick(rng, NOUNS), "noun2": _pick(rng, NOUNS),
        "verb": _pick(rng, VERBS_PAST), "place": _pick(rng, PLACES).strip(),
        "name": _pick(rng, NAMES), "time": _pick(rng, TIME_WORDS),
        "number": _pick(rng, NUMBER_WORDS), "number2": _pick(rng, NUMBER_WORDS),
    }
    text = template.format(**fill)
    return text[0].upper() + text[1:]


class TextPool:
    """Hands out sentences never handed out before (across every subset of one benchmark)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.used: set[str] = set()

    def take(self, style: str) -> str:
        for _ in range(1000):
            text = make_sentence(self.rng, style)
            if text not in self.used:
                self.used.add(text)
                return text
        raise RuntimeError(f"text pool exhausted for style '{style}'")
