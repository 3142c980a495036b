"""Sentences for the benchmark's speech sources, generated from built-in word lists and templates.

Text styles: `read` (declarative sentences, like read-speech corpora), `conversational` (questions,
replies, numbers and times, like calls and voice messages) and `japanese` (for the Japanese voice). The target domain uses the
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

# Japanese, for pyopenjtalk's voice (the `japanese` style): everyday words in simple sentence patterns.
JA_NOUNS = """りんご 電車 図書館 先生 公園 手紙 時計 カメラ 自転車 傘 帽子 机 窓 花 猫 犬 鳥 魚 山 川 海 空 駅 病院
学校 会社 部屋 台所 お茶 パン 新聞 雑誌 鍵 財布 写真 音楽 映画 荷物 切符 地図 眼鏡 靴 鞄 椅子 料理""".split()
JA_ADJECTIVES = """新しい 古い 大きい 小さい 高い 安い 静かな きれいな 明るい 暗い 赤い 青い 白い 重い 軽い 速い
面白い 珍しい 便利な 有名な""".split()
JA_VERBS = """見ました 買いました 持ってきました 忘れました 探しました 直しました 送りました 借りました 洗いました
片付けました 運びました 届けました""".split()
JA_PLACES = """駅の前 公園の中 学校の隣 図書館の二階 川の近く 会社の入口 病院の裏 台所の棚 部屋の隅 海の見える丘""".split()
JA_NAMES = """田中さん 佐藤さん 鈴木さん 高橋さん 伊藤さん 渡辺さん 山本さん 中村さん 小林さん 加藤さん""".split()
JA_TIMES = """月曜日 火曜日 水曜日 木曜日 金曜日 土曜日 日曜日 明日 今夜 来週""".split()
JA_NUMBERS = """一 二 三 四 五 六 七 八 九 十""".split()

JAPANESE_TEMPLATES = [
    "{name}は{adj}{noun}を{verb}。",
    "{place}に{adj}{noun}があります。",
    "{time}、{name}と{place}で会いましょう。",
    "その{noun}はとても{adj_plain}です。",
    "{name}が{place}で{noun}を{verb}。",
    "{time}までに{number}つの{noun}を{verb}。",
    "すみません、{noun}はどこですか。",
    "{adj}{noun}と{noun2}を{verb}。",
]

STYLES = {"read": READ_TEMPLATES, "conversational": CONVERSATIONAL_TEMPLATES, "japanese": JAPANESE_TEMPLATES}


def _pick(rng: np.random.Generator, words: list[str]) -> str:
    return words[int(rng.integers(len(words)))]


def _japanese_sentence(rng: np.random.Generator) -> str:
    adjective = _pick(rng, JA_ADJECTIVES)
    fill = {
        "adj": adjective, "adj_plain": adjective.removesuffix("な"),   # 静かな (before a noun) -> 静か です
        "noun": _pick(rng, JA_NOUNS), "noun2": _pick(rng, JA_NOUNS), "verb": _pick(rng, JA_VERBS),
        "place": _pick(rng, JA_PLACES), "name": _pick(rng, JA_NAMES), "time": _pick(rng, JA_TIMES),
        "number": _pick(rng, JA_NUMBERS),
    }
    return _pick(rng, JAPANESE_TEMPLATES).format(**fill)


def make_sentence(rng: np.random.Generator, style: str = "read") -> str:
    """One sentence of `style` from the word lists."""
    if style == "japanese":
        return _japanese_sentence(rng)
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
