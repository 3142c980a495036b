"""spoofrl.explain: rationales written from evidence, the claim parser and checker, the FT rewards, the CLI job.

Clips are synthesised: steady harmonic tone complexes with a little noise stand for bona fide speech;
low-passed (a codec's band limit), noise-excited (a vocoder without harmonics) and spliced (a level jump at
1.2 s) versions stand for spoofs.
"""
from __future__ import annotations

import json
from pathlib import Path
import math

import numpy as np
import pytest
from scipy import signal as sps

from conftest import float_tol
from spoofrl.audio import write_audio
from spoofrl.cli import main
from spoofrl.data.manifest import Utterance, write_manifest
from spoofrl.evidence import EvidenceItem, evidence, fit_reference
from spoofrl.explain import (
    FREQUENCY_TAG,
    TIME_TAG,
    check_claims,
    parse_claims,
    parse_rationale,
    write_rationale,
)
from spoofrl.explain.templates import TEMPLATES, render
from spoofrl.rewards import RewardContext, build_rewards

SR = 16000
SECONDS = 2.5
SPLICE_S = 1.2


# ------------------------------------------------------------------------------------------ signals

def tone_complex(seed: int, seconds: float = SECONDS, f0: float | None = None) -> np.ndarray:
    """A harmonic complex with a slowly moving F0 (vibrato and a random walk), a gentle amplitude
    modulation and white noise 40 dB down: steady, voiced, full-band."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    base = f0 or rng.uniform(110, 180)
    walk = np.cumsum(rng.standard_normal(n)) / np.sqrt(n) * 0.02
    contour = base * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)) + walk)
    phase = 2 * np.pi * np.cumsum(contour) / SR
    ks = np.arange(1, int(7800 / contour.max()) + 1)
    x = np.sin(np.outer(phase, ks)) @ (1.0 / ks ** rng.uniform(0.7, 0.9))
    x *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(2, 4) * t)
    x = 0.2 * x / np.std(x)
    return x + 0.2 * 10 ** (-40 / 20) * rng.standard_normal(n)


def lowpassed(x: np.ndarray, cutoff_hz: float = 4000.0) -> np.ndarray:
    return sps.sosfiltfilt(sps.ellip(10, 0.1, 90, cutoff_hz, fs=SR, output="sos"), x)


def noise_excited(seed: int) -> np.ndarray:
    """Noise through a speech-like tilt: no harmonics at all."""
    rng = np.random.default_rng(seed)
    x = sps.sosfilt(sps.butter(1, 800, fs=SR, output="sos"), rng.standard_normal(int(SECONDS * SR)))
    return 0.2 * x / np.std(x)


def spliced(seed: int) -> np.ndarray:
    """Two tone complexes joined at SPLICE_S, the second 18 dB quieter."""
    a, b = tone_complex(seed, f0=140.0), tone_complex(seed + 1, f0=150.0)
    cut = int(SPLICE_S * SR)
    return np.concatenate([a[:cut], b[cut:] * 10 ** (-18 / 20)])


@pytest.fixture(scope="module")
def reference():
    return fit_reference([tone_complex(seed) for seed in range(8)])


@pytest.fixture(scope="module")
def clips(reference):
    """label -> evidence items of a few clips."""
    return {
        "bonafide": evidence(tone_complex(100), SR, reference),
        "lowpassed": evidence(lowpassed(tone_complex(101)), SR, reference),
        "noise": evidence(noise_excited(102), SR, reference),
        "spliced": evidence(spliced(103), SR, reference),
    }


LABEL_OF = {"bonafide": "bonafide", "lowpassed": "spoof", "noise": "spoof", "spliced": "spoof"}


def claims_of(completion: str):
    parsed = parse_rationale(completion)
    return parse_claims(parsed.frequency) + parse_claims(parsed.time)


# ------------------------------------------------------------------------------------------ the writer

def test_every_written_claim_passes_the_checker(clips):
    for name, items in clips.items():
        for seed in range(12):
            rationale = write_rationale(items, LABEL_OF[name], np.random.default_rng(seed))
            completion = rationale.completion
            parsed = parse_rationale(completion)
            assert parsed.well_formed and parsed.answer == LABEL_OF[name], completion
            check = check_claims(claims_of(completion), items)
            assert check.n_claims == len(rationale.claims) and check.all_true, (completion, check)
            for claim in rationale.claims:
                assert rationale.text[claim.span[0]:claim.span[1]] == claim.text
                assert completion[claim.span[0]:claim.span[1]] == claim.text
                assert claim.direction in ("high", "low", "normal", "present")
                assert claim.band_hz is not None or claim.time_s is not None or claim.kind in (
                    "noise_floor", "f0_jitter", "f0_smoothness", "energy_discontinuity")
                if claim.direction != "normal" or claim.kind != "energy_discontinuity":
                    assert claim.evidence and all(EvidenceItem.from_dict(e) for e in claim.evidence)
            sections = {c.section for c in rationale.claims}
            assert sections == {"frequency", "time"}  # both sections always say something


def test_claims_follow_the_evidence(clips):
    kinds = {name: {(c.kind, c.direction) for seed in range(12)
                    for c in write_rationale(items, LABEL_OF[name], np.random.default_rng(seed)).claims}
             for name, items in clips.items()}
    assert ("band_limit", "present") in kinds["lowpassed"] or ("band_energy", "low") in kinds["lowpassed"]
    assert ("energy_discontinuity", "present") in kinds["spliced"]
    assert any(kind in ("flatness", "hnr", "phase_irregularity") for kind, _ in kinds["noise"])
    frequency_kinds = {"band_limit", "bandwidth", "band_energy", "flatness", "hnr", "phase_irregularity"}
    for seed in range(6):
        rationale = write_rationale(clips["spliced"], "spoof", np.random.default_rng(seed))
        for claim in rationale.claims:
            assert (claim.section == "frequency") == (claim.kind in frequency_kinds)
        jump = next(c for c in rationale.claims if c.kind == "energy_discontinuity")
        assert abs(jump.time_s - SPLICE_S) < 0.05 and "1.2" in jump.text


def test_phrasing_varies_across_seeds(clips):
    for name, items in clips.items():
        texts = {write_rationale(items, LABEL_OF[name], np.random.default_rng(seed)).text for seed in range(6)}
        assert len(texts) >= 2, name
    # deterministic for a seed
    again = [write_rationale(clips["noise"], "spoof", np.random.default_rng(3)).text for _ in range(2)]
    assert again[0] == again[1]


def _all_normal(items):
    """The same clip with every item normal (z 0) and no events: a bona fide clip with nothing to flag."""
    return [EvidenceItem(i.kind, i.value, i.unit, 0.0, i.band_hz, i.span_s, "normal", i.extra)
            for i in items if i.z is not None]


def test_a_bona_fide_clip_with_nothing_deviating_says_what_is_normal(clips):
    items = _all_normal(clips["bonafide"])
    texts = set()
    for seed in range(10):
        rationale = write_rationale(items, "bonafide", np.random.default_rng(seed))
        assert rationale.claims and all(c.direction == "normal" for c in rationale.claims)
        assert check_claims(claims_of(rationale.completion), items).all_true
        texts.add(rationale.text)
    joined = " ".join(texts)
    assert "within the range of bona fide" in joined or "typical of bona fide" in joined
    assert len(texts) >= 2


@pytest.mark.parametrize("kind", ["bandwidth", "flatness", "hnr", "phase_irregularity", "noise_floor", "f0_jitter",
                                  "f0_smoothness", "band_energy"])
@pytest.mark.parametrize("z", [5.0, -5.0])
def test_each_kind_is_stated_both_ways(clips, kind, z):
    """One deviating item among normal ones: the writer states it (all its templates get drawn)."""
    items = _all_normal(clips["bonafide"])
    target = next(i for i in items if i.kind == kind and (kind != "hnr" or i.band_hz[0] > 0))
    value, band = target.value, target.band_hz
    if kind == "bandwidth" and z < 0:
        value, band = 5000.0, (5000.0, 8000.0)
    deviating = EvidenceItem(kind, value, target.unit, z, band, target.span_s, "high" if z > 0 else "low")
    items = [deviating if i is target else i for i in items]
    stated = set()
    for seed in range(8):
        rationale = write_rationale(items, "spoof", np.random.default_rng(seed))
        (claim,) = [c for c in rationale.claims if c.direction != "normal"]
        assert (claim.kind, claim.direction) == (kind, "high" if z > 0 else "low")
        assert claim.evidence == [deviating.to_dict()]
        stated.add(claim.text)
    assert len(stated) >= 2


def test_max_claims_and_refusals(clips):
    rationale = write_rationale(clips["lowpassed"], "spoof", np.random.default_rng(0), max_claims=1)
    deviating = [c for c in rationale.claims if c.direction != "normal"]
    assert len(deviating) == 1
    with pytest.raises(ValueError, match="no z-scores"):
        write_rationale([EvidenceItem("bandwidth", 4000.0, "Hz", None, (4000, 8000), (0, 1), None)], "spoof",
                        np.random.default_rng(0))
    with pytest.raises(ValueError, match="label"):
        write_rationale(clips["bonafide"], "fake", np.random.default_rng(0))


SAMPLE_FIELDS = {"band": "above 4 kHz", "time": "near 1.20 s", "cutoff": "4 kHz", "value": "-60", "z": "-5.0",
                 "size": "+15", "drop": "60", "level": "50"}


@pytest.mark.parametrize("key", sorted(TEMPLATES))
def test_every_template_reads_back_as_its_claim(key):
    kind, direction = key
    assert len(TEMPLATES[key]) >= (3 if direction != "normal" and kind != "band_limit" else 2)
    for template in TEMPLATES[key]:
        fields = dict(SAMPLE_FIELDS)
        if direction == "normal" and kind in ("band_energy", "flatness", "phase_irregularity"):
            fields["band"] = "across the bands"
        parsed = parse_claims(render(template, fields))
        assert [(p.kind, p.direction) for p in parsed] == [key], render(template, fields)


# ------------------------------------------------------------------------------------------ the parser

@pytest.mark.parametrize("sentence, kind, direction, band, time", [
    ("The high-frequency region looks almost empty of energy.", "band_energy", "low", (4000, None), None),
    ("Between 2 and 3 kHz there is a clear excess of spectral energy.", "band_energy", "high", (2000, 3000), None),
    ("There's hardly any power in the 4-5 kHz band.", "band_energy", "low", (4000, 5000), None),
    ("Low frequencies are boosted.", "band_energy", "high", (0, 1000), None),
    ("The spectrum looks low-passed at around 3.4 kHz.", "band_limit", "present", (3400, 3400), None),
    ("The harmonic structure above 5 kHz is smeared into noise.", "flatness", "high", (5000, None), None),
    ("Upper bands sound noise-like.", "flatness", "high", (4000, None), None),
    ("Voicing is breathy above 4 kHz.", "hnr", "low", (4000, None), None),
    ("Phase coherence above 6 kHz is lost.", "phase_irregularity", "high", (6000, None), None),
    ("Jitter is suspiciously low, as if the periods were machine-like.", "f0_jitter", "low", None, None),
    ("Intonation sounds robotic and monotonous.", "f0_smoothness", "low", None, None),
    ("The F0 contour is jagged.", "f0_smoothness", "high", None, None),
    ("There is a sudden drop in loudness around 0.8 seconds.", "energy_discontinuity", "present", None, (0.8, 0.8)),
    ("A click appears between 0.5 and 0.9 s.", "energy_discontinuity", "present", None, (0.5, 0.9)),
    ("The energy changes abruptly at 1200 ms.", "energy_discontinuity", "present", None, (1.2, 1.2)),
    ("I hear no splices anywhere.", "energy_discontinuity", "normal", None, None),
    ("The silent segments are digitally silent.", "noise_floor", "low", None, None),
    ("Background noise in the pauses is not unusual.", "noise_floor", "normal", None, None),
    ("The bandwidth is narrower than usual, ending near 5.5 kHz.", "bandwidth", "low", (5500, 5500), None),
    ("Energy across all bands is typical of real speech.", "band_energy", "normal", (0, None), None),
])
def test_the_parser_reads_free_text(sentence, kind, direction, band, time):
    (claim,) = parse_claims(sentence)
    assert (claim.kind, claim.direction) == (kind, direction)
    assert claim.band_hz == (None if band is None else (float(band[0]), None if band[1] is None else float(band[1])))
    assert claim.time_s == time


def test_the_parser_splits_clauses_and_coordinated_subjects():
    claims = parse_claims("Energy above 4 kHz is low, while the phase between 1 and 2 kHz is irregular; "
                          "low energy below 250 Hz and jumpy intonation.")
    assert [(c.kind, c.direction) for c in claims] == [("band_energy", "low"), ("phase_irregularity", "high"),
                                                       ("band_energy", "low"), ("f0_smoothness", "high")]
    shared = parse_claims("Energy and flatness above 4 kHz are both high.")
    assert [(c.kind, c.direction, c.band_hz) for c in shared] == [("band_energy", "high", (4000.0, None)),
                                                                  ("flatness", "high", (4000.0, None))]
    # what is no claim: no property, band, time or direction
    assert parse_claims("These traces point to synthetic or processed speech.") == []
    text = "Energy above 4 kHz is low. Jitter is high."
    for claim in parse_claims(text):
        assert text[claim.span[0]:claim.span[1]] == claim.text


# ------------------------------------------------------------------------------------------ the checker

def verdicts(text, items):
    return [v.verdict for v in check_claims(parse_claims(text), items).per_claim]


def test_the_checker_on_a_low_passed_clip(clips):
    items = clips["lowpassed"]
    assert verdicts("Energy above 4 kHz is unusually low.", items) == ["true"]
    assert verdicts("Energy above 4 kHz is unusually high.", items) == ["false"]
    assert verdicts("Energy above 4 kHz is within the bona fide range.", items) == ["false"]
    assert verdicts("The spectrum is cut off above 4 kHz.", items) == ["true"]
    assert verdicts("The spectrum is cut off above 7 kHz.", items) == ["false"]
    assert verdicts("The bandwidth is narrow.", items) == ["true"]
    # the same claims on the bona fide clip
    assert verdicts("Energy above 4 kHz is unusually low.", clips["bonafide"]) == ["false"]
    assert verdicts("The spectrum is cut off above 4 kHz.", clips["bonafide"]) == ["false"]


def test_the_checker_on_a_spliced_clip(clips):
    claim = "An abrupt energy jump occurs near {:.1f} s."
    assert verdicts(claim.format(SPLICE_S), clips["spliced"]) == ["true"]
    assert verdicts(claim.format(0.3), clips["spliced"]) == ["false"]
    assert verdicts(claim.format(SPLICE_S), clips["bonafide"]) == ["false"]
    assert verdicts("The energy envelope evolves without abrupt jumps.", clips["spliced"]) == ["false"]
    assert verdicts("The energy envelope evolves without abrupt jumps.", clips["bonafide"]) == ["true"]


def test_the_checker_on_a_noise_excited_clip(clips):
    items = clips["noise"]
    assert verdicts("The spectrum between 1 and 2 kHz is noise-like.", items) == ["true"]
    assert verdicts("The harmonics between 1 and 2 kHz are strong and clean.", items) == ["false"]


def test_gibberish_and_vague_claims_are_unverifiable(clips):
    items = clips["lowpassed"]
    assert verdicts("The zorblax above 3 kHz is strongly flibbered.", items) == ["unverifiable"]
    assert verdicts("The phase is interesting.", items) == ["unverifiable"]     # a property, no direction
    assert verdicts("Energy above 12 kHz is low.", items) == ["unverifiable"]  # above the Nyquist frequency
    assert check_claims(parse_claims("qwerty asdf"), items).n_claims == 0
    check = check_claims(parse_claims("Energy above 4 kHz is low. The zorblax is weird. Jitter is high."), items)
    assert (check.n_claims, check.n_true, check.n_unverifiable) == (3, 1, 1)
    assert check.per_claim[0].evidence and "measured" in check.per_claim[0].reason


# ------------------------------------------------------------------------------------------ format and rewards

def completion(frequency, time, answer="spoof"):
    return f"<think>\n{FREQUENCY_TAG} {frequency}\n{TIME_TAG} {time}\n</think>\n<answer>{answer}</answer>"


def test_parse_rationale():
    good = parse_rationale(completion("Energy above 4 kHz is low.", "No jumps."))
    assert (good.frequency, good.time, good.answer, good.well_formed) == ("Energy above 4 kHz is low.",
                                                                          "No jumps.", "spoof", True)
    swapped = parse_rationale(f"<think>{TIME_TAG} t {FREQUENCY_TAG} f</think><answer>spoof</answer>")
    assert not swapped.well_formed
    assert not parse_rationale("<think><Frequency Domain> f</think><answer>spoof</answer>").well_formed
    assert not parse_rationale(completion("f", "t") + " trailing").well_formed
    assert not parse_rationale(completion("f", "", "spoof")).well_formed
    open_think = parse_rationale("<think><Frequency Domain> f <Time Domain> t <answer>bonafide</answer>")
    assert (open_think.frequency, open_think.time, open_think.answer) == ("f", "t", "bonafide")
    assert not open_think.well_formed
    assert parse_rationale("just text") == parse_rationale("just text")
    assert parse_rationale("just text").answer is None


def score(specs, completions, columns, n=None):
    n = len(completions) if n is None else n
    return build_rewards(specs).score(completions, [[0]] * len(completions), None, columns,
                                      RewardContext(num_generations=n))


def values(spec, completions, columns=None):
    (tensor,) = score([spec], completions, columns or {}).per_reward.values()
    return [None if math.isnan(v) else round(v, 6) for v in tensor.flatten().tolist()]


def test_ft_presence_is_the_papers_ft_reward():
    both = completion("f", "t")
    one = "<think>\n<Frequency Domain> f\n</think>\n<answer>spoof</answer>"
    none = "<think>\nplain reasoning\n</think>\n<answer>spoof</answer>"
    outside = f"{FREQUENCY_TAG} {TIME_TAG}<think>x</think><answer>spoof</answer>"
    assert values({"name": "ft_presence"}, [both, one, none, outside, "spoof"]) == [1.0, 0.5, 0.0, 0.0, 0.0]


def test_ft_grounded_ranks_true_above_hallucinated(clips):
    items = [i.to_dict() for i in clips["lowpassed"]]
    true = completion("Energy above 4 kHz is unusually low. The bandwidth is narrow.",
                      "The noise floor in the pauses is within the range of bona fide recordings.")
    partly = completion("Energy above 4 kHz is unusually low. The bandwidth is narrow.",
                        "An abrupt energy jump occurs near 0.3 s.")
    hallucinated = completion("Energy above 4 kHz is unusually high.", "An abrupt energy jump occurs near 0.3 s.")
    nothing = completion("I looked at it.", "It is what it is.")
    got = values({"name": "ft_grounded"}, [true, partly, nothing, hallucinated], {"evidence": [items] * 4})
    assert got[0] == 1.0 and got[1] == pytest.approx(1 / 3) and got[2] == 0.0 and got[3] == -1.0
    assert got[0] > got[1] > got[2] > got[3]
    # the penalty weighs false claims; min_claims withholds credit from short rationales
    lenient = {"name": "ft_grounded", "options": {"penalty": 0.5, "min_claims": 4}}
    assert values(lenient, [partly, true], {"evidence": [items] * 2}) == [0.0, 0.0]
    assert values({"name": "ft_grounded", "options": {"penalty": 0.5}}, [partly],
                  {"evidence": [items]}) == [pytest.approx(0.5)]


def test_ft_grounded_without_evidence_is_not_applicable(clips):
    items = [i.to_dict() for i in clips["spliced"]]
    text = completion("Energy is normal across the bands.", "An abrupt energy jump occurs near 1.2 s.")
    scores = score([{"name": "ft_grounded", "options": {"evidence_column": "ev"}}, {"name": "format"}],
                   [text, text, text], {"ev": [items, None, []]})
    grounded = scores.per_reward["ft_grounded"].flatten().tolist()
    assert grounded[0] == 0.0 and math.isnan(grounded[1]) and math.isnan(grounded[2])
    as_json = values({"name": "ft_grounded"}, [text], {"evidence": [json.dumps(items)]})
    assert as_json == [grounded[0]]
    with pytest.raises(Exception, match="no column 'evidence'"):
        values({"name": "ft_grounded"}, [text], {"label": ["spoof"]})


def test_the_ft_recipe_builds_and_scores(clips):
    """The paper's weights, answer : format : ft = 1 : 0.1 : 0.1, with ft_grounded beside ft_presence."""
    items = [i.to_dict() for i in clips["lowpassed"]]
    recipe = [{"name": "answer", "weight": 1.0}, {"name": "format", "weight": 0.1},
              {"name": "ft_presence", "weight": 0.1}, {"name": "ft_grounded", "weight": 0.1}]
    written = write_rationale(clips["lowpassed"], "spoof", np.random.default_rng(0)).completion
    lying = completion("Energy above 4 kHz is unusually high.", "An abrupt energy jump occurs near 0.3 s.")
    scores = score(recipe, [written, lying, "spoof"], {"label": ["spoof"] * 3, "evidence": [items] * 3})
    assert scores.per_reward["answer"].tolist() == [[1.0, 1.0, 1.0]]
    assert scores.per_reward["format"].tolist() == [[1.0, 1.0, 0.0]]
    assert scores.per_reward["ft_presence"].tolist() == [[1.0, 1.0, 0.0]]
    # a float32 weighted sum of 4 terms <= 1 (eps 1.2e-7 x 4 relative); one reward missing would cost 0.1
    assert scores.total[0, 0] == pytest.approx(1.0 + 0.1 + 0.1 + 0.1, rel=float_tol(np.float32, 4))
    assert scores.total[0, 0] > scores.total[0, 1] > scores.total[0, 2] - 0.2


def test_the_format_reward_accepts_written_completions_and_refuses_malformed_ones(clips):
    written = [write_rationale(items, LABEL_OF[name], np.random.default_rng(1)).completion
               for name, items in clips.items()]
    assert values({"name": "format"}, written) == [1.0] * len(written)
    malformed = [written[0] + "\nmore text", written[0].replace("</think>", ""),
                 written[0].replace("<answer>", "").replace("</answer>", ""), "<answer>spoof</answer>",
                 "<think>\n<Frequency Domain> f\n<Time Domain> t\n</think>"]
    assert values({"name": "format"}, malformed) == [0.0] * len(malformed)


# ------------------------------------------------------------------------------------------ the CLI job

@pytest.fixture()
def corpus(tmp_path):
    """A tiny manifest: 4 bona fide tones (reference subset), 2 bona fide + 3 spoofs to annotate, 1 corrupt."""
    audio = tmp_path / "audio"
    audio.mkdir()
    rows = []
    for i in range(4):
        write_audio(audio / f"ref{i}.wav", tone_complex(200 + i).astype(np.float32), SR)
        rows.append(Utterance(f"audio/ref{i}.wav", "bonafide", subset="posttrain"))
    clips = {"bona0": tone_complex(300), "bona1": tone_complex(301), "lp": lowpassed(tone_complex(302)),
             "noise": noise_excited(303), "splice": spliced(304)}
    for name, x in clips.items():
        write_audio(audio / f"{name}.wav", x.astype(np.float32), SR)
        label = "bonafide" if name.startswith("bona") else "spoof"
        rows.append(Utterance(f"audio/{name}.wav", label, attack="-" if label == "bonafide" else name,
                              subset="dev"))
    (audio / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    rows.insert(6, Utterance("audio/broken.wav", "spoof", attack="x", subset="dev"))
    write_manifest(rows, tmp_path / "manifest.csv")
    return tmp_path


def run_cli(corpus, *extra):
    return main(["data", "rationales", "--manifest", str(corpus / "manifest.csv"), "--subsets", "dev",
                 "--reference-subsets", "posttrain", "--out", str(corpus / "R.jsonl"), *extra])


def test_the_cli_writes_names_bad_files_and_resumes(corpus, capsys):
    assert run_cli(corpus) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in (corpus / "R.jsonl").read_text().splitlines()]
    assert [r["utt"] for r in records] == ["audio/bona0.wav", "audio/bona1.wav", "audio/lp.wav",
                                           "audio/noise.wav", "audio/splice.wav"]
    for r in records:
        assert set(r) >= {"utt", "path", "label", "subset", "rationale", "completion", "claims", "evidence"}
        assert r["completion"] == f"{r['rationale']}\n<answer>{r['label']}</answer>"
        assert parse_rationale(r["completion"]).well_formed
        items = [EvidenceItem.from_dict(e) for e in r["evidence"]]
        assert check_claims(claims_of(r["completion"]), items).all_true
        assert all({"kind", "direction", "evidence", "text", "span"} <= set(c) for c in r["claims"])
    # the corrupt file: one line naming it and its manifest line, no traceback; listed in errors.tsv
    bad = [line for line in captured.err.splitlines() if "broken.wav" in line]
    assert len(bad) == 1 and "manifest line 8" in bad[0] and "Traceback" not in captured.err
    errors = (corpus / "R.errors.tsv").read_text().splitlines()
    assert errors[0].split("\t")[:4] == ["utt", "subset", "path", "manifest_line"]
    assert len(errors) == 2 and "broken.wav" in errors[1] and "\t8\t" in errors[1]
    assert "5 clips written" in captured.out and "claims per clip" in captured.out
    assert (corpus / "R.reference.json").is_file()

    # resume: finished lines are kept as they are, the missing one is redone identically
    lines = (corpus / "R.jsonl").read_text().splitlines()
    (corpus / "R.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])  # an interrupted run
    assert run_cli(corpus) == 0
    out = capsys.readouterr().out
    assert "2 clips written" in out and "3 already there" in out
    assert (corpus / "R.jsonl").read_text().splitlines() == lines
    assert run_cli(corpus, "--seed", "1") == 2   # a resume with another seed is refused
    assert "seed" in capsys.readouterr().err


def test_rationales_do_not_depend_on_where_the_files_are(corpus, tmp_path_factory):
    """An experiment's manifests hold absolute paths: the same clips in another folder (another --out) must get
    the same rationales, or every model trained on them would depend on where the run was put."""
    import shutil
    from spoofrl.data.manifest import read_manifest
    texts = []
    for name in ("here", "elsewhere"):
        root = tmp_path_factory.mktemp(name) / "deeper" / name
        shutil.copytree(corpus / "audio", root / "audio")
        rows = [Utterance(str(root / "audio" / Path(u.path).name), u.label, attack=u.attack, subset=u.subset)
                for u in read_manifest(corpus / "manifest.csv") if "broken" not in u.path]
        write_manifest(rows, root / "manifest.csv")
        assert main(["data", "rationales", "--manifest", str(root / "manifest.csv"), "--subsets", "dev",
                     "--reference-subsets", "posttrain", "--out", str(root / "R.jsonl")]) == 0
        records = [json.loads(line) for line in (root / "R.jsonl").read_text().splitlines()]
        assert all(r["utt"].startswith(str(root)) for r in records)
        texts.append([r["completion"] for r in records])
    assert texts[0] == texts[1] and len(set(texts[0])) == len(texts[0])
