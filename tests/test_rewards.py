"""The reward API (spoofrl.rewards): built-in rewards, their combination, config validation, the registry."""
from __future__ import annotations

import math
import sys
import uuid
from dataclasses import dataclass

import pytest
import sacrebleu
import torch

from spoofrl.config import OptionError, from_dict, option
from spoofrl.errors import ConfigError
from spoofrl.rewards import (
    REWARDS,
    Reward,
    RewardContext,
    RewardOutputError,
    RewardSet,
    RewardSpec,
    WeightedReward,
    build_rewards,
    reward_from_function,
)
from spoofrl.rewards.answer import extract_answer
from spoofrl.rewards.format import FT_GRPO_PATTERN

FT_GOOD = ("<think>\n<Frequency Domain> Energy above 4 kHz is flat, typical of a vocoder.\n"
           "<Time Domain> Pauses are unnaturally regular.\n</think>\n<answer>spoof</answer>")


def score(specs, completions, columns=None, n=None, prompts=None, ids=None):
    """Build `specs` and score `completions` (all one item unless n is given)."""
    n = len(completions) if n is None else n
    ids = [[0]] * len(completions) if ids is None else ids
    return build_rewards(specs).score(completions, ids, prompts, columns or {}, RewardContext(num_generations=n))


def values(specs, completions, columns=None):
    """The per-sample values of a single reward, flattened, None where NaN."""
    scores = score(specs, completions, columns)
    (tensor,) = scores.per_reward.values()
    return [None if math.isnan(v) else round(v, 6) for v in tensor.flatten().tolist()]


def unique_name() -> str:
    return f"test_{uuid.uuid4().hex[:8]}"


# answer --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("completion, require_tag, expected", [
    ("<answer> Spoof </answer>", False, "Spoof"),
    ("<answer>bonafide</answer> then <answer>spoof</answer>", False, "spoof"),  # the last tag wins
    ("<answer>multi\nline</answer>", False, "multi\nline"),
    ("  spoof \n", False, "spoof"),                                            # no tag: the whole completion
    ("spoof", True, None),
    ("<answer>spoof", False, "<answer>spoof"),                                  # an unclosed tag is no tag
])
def test_extract_answer(completion, require_tag, expected):
    assert extract_answer(completion, require_tag) == expected


def test_answer_compares_case_insensitively_to_the_label():
    completions = ["<answer>SPOOF</answer>", "<think>maybe bonafide</think><answer>bonafide</answer>",
                   " Spoof ", "I think it is spoof"]
    labels = ["spoof", "spoof", "spoof", "spoof"]
    assert values([{"name": "answer"}], completions, {"label": labels}) == [1.0, 0.0, 1.0, 0.0]


def test_answer_serves_the_two_class_detector():
    # a classifier's completions are its label names and its ids the label indices; correct/wrong replace
    # the old reward_correct/reward_wrong
    completions = ["spoof", "bonafide", "bonafide", "spoof"]
    scores = score([{"name": "answer", "options": {"correct": 1.0, "wrong": -1.0}}], completions,
                   {"label": ["spoof", "spoof", "bonafide", "bonafide"]}, n=2, ids=[[0], [1], [1], [0]])
    assert scores.total.tolist() == [[1.0, -1.0], [1.0, -1.0]]
    assert scores.total.dtype == torch.float32


def test_answer_require_tag_and_choices_count_as_wrong():
    completions = ["spoof", "<answer>spoof</answer>", "<answer>fake</answer>"]
    columns = {"verdict": ["spoof"] * 3}
    tagged = {"name": "answer", "options": {"require_tag": True, "target_column": "verdict", "wrong": -0.5}}
    assert values([tagged], completions, columns) == [-0.5, 1.0, -0.5]
    # "fake" equals the target here, but is not among the choices
    chosen = {"name": "answer", "options": {"choices": ["Spoof", "bonafide"], "target_column": "verdict"}}
    assert values([chosen], ["fake", "SPOOF", "bonafide"], {"verdict": ["fake", "spoof", "spoof"]}) == [0, 1, 0]


def test_answer_target_none_is_not_applicable():
    scores = score([{"name": "answer"}, {"name": "format"}], ["spoof", "spoof"], {"label": ["spoof", None]})
    assert torch.isnan(scores.per_reward["answer"][0, 1])
    assert scores.stats["reward/answer/applicable"] == 0.5


def test_answer_missing_column_names_it_and_the_columns_present():
    with pytest.raises(ConfigError, match=r"reward 'answer'.*no column 'label'.*present: reference, transcript"):
        score([{"name": "answer"}], ["spoof"], {"reference": ["x"], "transcript": ["y"]})


# format --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("completion, expected", [
    (FT_GOOD, 1.0),
    ("  " + FT_GOOD.replace("\n", "") + "\n", 1.0),                                  # no whitespace needed
    ("<think>t</think><answer>spoof</answer>", 1.0),       # FT-GRPO's regex does not look inside <think>
    ("<think></think>\n\n<answer></answer>", 1.0),
    ("<think>t</think>", 0.0),                                                          # no answer
    ("<answer>spoof</answer>", 0.0),                                                    # no think
    ("<think>t</think><answer>spoof</answer> extra", 0.0),                              # text after the answer
    ("preamble <think>t</think><answer>spoof</answer>", 0.0),                           # text before <think>
    ("<think>t<answer>spoof</answer>", 0.0),                                            # <think> left open
    ("<answer>spoof</answer><think>t</think>", 0.0),                                    # order matters
    ("spoof", 0.0),
])
def test_format_default_is_the_ft_grpo_structure(completion, expected):
    assert values([{"name": "format"}], [completion]) == [expected]


def test_format_custom_pattern_and_values():
    spec = {"name": "format", "options": {"pattern": r"<answer>(spoof|bonafide)</answer>", "match": 2,
                                          "no_match": -1}}
    assert values([spec], ["<answer>spoof</answer>", "<answer>maybe</answer>"]) == [2.0, -1.0]
    assert FT_GRPO_PATTERN  # the default is importable, e.g. to extend it


def test_format_invalid_regex_is_a_config_error_at_build_time():
    with pytest.raises(OptionError, match=r"rewards\[0\]\.options\.pattern: not a valid regular") as err:
        build_rewards([{"name": "format", "options": {"pattern": "(unclosed"}}])
    assert err.value.key == "rewards[0].options.pattern"


# bleu / chrf ---------------------------------------------------------------------------------------------

REF = "the cat sat on a mat"
HYP = "the cat sat on the mat"


# Rewards come back as float32 [B, N]: one rounding of a value <= 1 (6e-8) against sacrebleu's float64, so
# abs=1e-6 (float32 eps x 8); one n-gram more or less moves BLEU or chrF of these short texts by > 1e-2.
def test_bleu_matches_sacrebleu_and_the_hand_computed_value():
    got = values([{"name": "bleu"}], [REF, "completely different words here", HYP, "cat"],
                 {"reference": [REF, REF, REF, REF]})
    assert got[0] == pytest.approx(1.0)
    assert got[1] == pytest.approx(0.0, abs=1e-6)
    # precisions 5/6, 3/5, 2/4, 1/3, equal lengths (no brevity penalty)
    assert got[2] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-6)
    for hyp, value in zip([HYP, "cat"], got[2:]):
        assert value == pytest.approx(sacrebleu.sentence_bleu(hyp, [REF]).score / 100, abs=1e-6)


def test_bleu_options_and_multiple_references():
    refs = ["the dog ran", "the cat sat on a mat"]
    got = values([{"name": "bleu", "options": {"lowercase": True, "tokenize": "intl"}}], ["THE CAT SAT ON THE MAT"],
                 {"reference": [refs]})
    expected = sacrebleu.metrics.BLEU(lowercase=True, tokenize="intl", effective_order=True)
    assert got == [pytest.approx(expected.sentence_score("THE CAT SAT ON THE MAT", refs).score / 100, abs=1e-6)]


def test_chrf_matches_sacrebleu_and_chrf_plus_plus():
    got = values([{"name": "chrf"}], [REF, "xyz", HYP], {"reference": [REF] * 3})
    assert got[0] == pytest.approx(1.0)
    assert got[1] == pytest.approx(0.0, abs=1e-6)
    assert got[2] == pytest.approx(sacrebleu.sentence_chrf(HYP, [REF]).score / 100, abs=1e-6)
    plus = values([{"name": "chrf", "options": {"word_order": 2}}], [HYP], {"reference": [REF]})
    expected = sacrebleu.metrics.CHRF(word_order=2).sentence_score(HYP, [REF]).score / 100
    assert plus == [pytest.approx(expected, abs=1e-6)]
    assert plus[0] != pytest.approx(got[2])


@pytest.mark.parametrize("reference", [None, "", "   ", [], ["", None]])
def test_text_similarity_without_reference_is_not_applicable(reference):
    scores = score([{"name": "bleu"}, {"name": "chrf"}, {"name": "format"}], [HYP, HYP],
                   {"reference": [REF, reference]})
    assert not torch.isnan(scores.per_reward["bleu"][0, 0])
    assert torch.isnan(scores.per_reward["bleu"][0, 1]) and torch.isnan(scores.per_reward["chrf"][0, 1])


def test_bleu_unknown_tokenizer_lists_sacrebleus():
    with pytest.raises(OptionError, match=r"rewards\[0\]\.options\.tokenize: unknown tokenizer 'words'.*13a"):
        build_rewards([{"name": "bleu", "options": {"tokenize": "words"}}])


def test_text_similarity_without_sacrebleu_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # makes `import sacrebleu...` fail
    monkeypatch.setitem(sys.modules, "sacrebleu.metrics", None)
    with pytest.raises(ConfigError, match=r"need sacrebleu: pip install 'spoofrl\[alm\]'"):
        build_rewards([{"name": "chrf"}])


# combination ---------------------------------------------------------------------------------------------


def constant(value_of):
    """A reward function giving value_of(i) to completion i."""
    return lambda completions, **_: [value_of(i) for i in range(len(completions))]


def rset(*rewards):
    return RewardSet([WeightedReward(name, reward_from_function(fn, name), weight) for name, fn, weight in rewards])


def test_weights_and_none_combine_like_trls_nansum():
    rewards = rset(("a", constant(lambda i: float(i)), 1.0),
                   ("b", constant(lambda i: 10.0 if i % 2 else None), 0.5))
    scores = rewards.score(["x"] * 4, [[0]] * 4, None, {}, RewardContext(num_generations=2), shape=(2, 2))
    assert scores.total.tolist() == [[0.0, 1.0 + 5.0], [2.0, 3.0 + 5.0]]
    assert torch.isnan(scores.per_reward["b"]).tolist() == [[True, False], [True, False]]
    stats = scores.stats
    assert stats["reward/a/mean"] == pytest.approx(1.5)
    assert stats["reward/a/std"] == pytest.approx(torch.tensor([0.0, 1, 2, 3]).std().item())
    assert stats["reward/b/mean"] == 10.0 and stats["reward/b/std"] == 0.0  # over its 2 applicable samples
    assert stats["reward/b/applicable"] == 0.5 and stats["reward/a/applicable"] == 1.0
    assert stats["reward/total/mean"] == pytest.approx(4.0)
    assert stats["reward/total/std"] == pytest.approx(torch.tensor([0.0, 6, 2, 8]).std().item())


def test_a_reward_applicable_nowhere_logs_no_mean():
    rewards = rset(("a", constant(lambda i: 1.0), 1.0), ("never", constant(lambda i: None), 1.0))
    stats = rewards.score(["x", "y"], [[0], [0]], None, {}, RewardContext(num_generations=2)).stats
    assert stats["reward/never/applicable"] == 0.0
    assert "reward/never/mean" not in stats and "reward/never/std" not in stats
    assert all(math.isfinite(v) for v in stats.values())


def test_a_sample_no_reward_applies_to_is_an_error_naming_it():
    rewards = rset(("bleu", constant(lambda i: None if i == 3 else 1.0), 1.0),
                   ("chrf", constant(lambda i: None if i in (0, 3) else 1.0), 1.0))
    with pytest.raises(ConfigError, match=r"no reward applies to item 1, sample 1: every reward \(bleu, chrf\)"):
        rewards.score(["x"] * 4, [[0]] * 4, None, {}, RewardContext(num_generations=2))


@pytest.mark.parametrize("output, message", [
    (lambda n: [1.0] * (n - 1), r"reward 'bad' returned 3 values for 4 completions"),
    (lambda n: [1.0, math.nan, 1.0, 1.0], r"reward 'bad' returned nan for completion 1"),
    (lambda n: [1.0, math.inf, 1.0, 1.0], r"reward 'bad' returned inf for completion 1"),
    (lambda n: [1.0, "1", 1.0, 1.0], r"reward 'bad' returned '1' for completion 1; expected a number"),
    (lambda n: [True] * n, r"reward 'bad' returned True"),
    (lambda n: 1.0, r"reward 'bad' returned float; expected a list"),
])
def test_bad_reward_output_is_an_error_naming_the_reward(output, message):
    rewards = rset(("good", constant(lambda i: 1.0), 1.0),
                   ("bad", lambda completions, **_: output(len(completions)), 1.0))
    with pytest.raises(RewardOutputError, match=message):
        rewards.score(["x"] * 4, [[0]] * 4, None, {}, RewardContext(num_generations=2))


def test_a_tensor_output_is_accepted():
    rewards = rset(("t", lambda completions, **_: torch.ones(len(completions)), 1.0))
    assert rewards.score(["x"] * 2, [[0]] * 2, None, {}, RewardContext(2)).total.tolist() == [[1.0, 1.0]]


def test_each_reward_is_called_once_with_every_argument():
    calls = []

    def record(completions, completion_ids, prompts, columns, context):
        calls.append((completions, completion_ids, prompts, columns, context))
        return [0.0] * len(completions)

    context = RewardContext(num_generations=2, step=7, extra={"evidence": "x"})
    rset(("r", record, 1.0)).score(["a", "b"], [[1, 2], [3]], ["p", "p"], {"label": ["spoof"] * 2}, context)
    assert calls == [(["a", "b"], [[1, 2], [3]], ["p", "p"], {"label": ["spoof", "spoof"]}, context)]


def test_inputs_of_the_wrong_length_or_shape_are_refused():
    rewards = rset(("r", constant(lambda i: 0.0), 1.0))
    with pytest.raises(ValueError, match=r"columns\['label'\] has length 1; expected a list of 4"):
        rewards.score(["x"] * 4, [[0]] * 4, None, {"label": ["spoof"]}, RewardContext(2))
    with pytest.raises(ValueError, match=r"not a multiple of num_generations=3"):
        rewards.score(["x"] * 4, [[0]] * 4, None, {}, RewardContext(3))
    with pytest.raises(ValueError, match=r"shape \(2, 2\) has N=2 but context.num_generations=4"):
        rewards.score(["x"] * 4, [[0]] * 4, None, {}, RewardContext(4), shape=(2, 2))
    with pytest.raises(ValueError, match="num_generations"):
        RewardContext(num_generations=0)


def test_reward_from_function_refuses_a_signature_it_cannot_call():
    with pytest.raises(ConfigError, match=r"reward 'r'.*cannot be called with the arguments completions"):
        reward_from_function(lambda completions: [], "r")
    assert reward_from_function(lambda completions, **kwargs: [], "r").name == "r"


# config --------------------------------------------------------------------------------------------------


def test_unknown_reward_lists_the_known_ones():
    with pytest.raises(OptionError, match=r"rewards\[1\]\.name: unknown reward 'acuracy'; known: answer, bleu, "
                                          r"chrf, format"):
        build_rewards([{"name": "answer"}, {"name": "acuracy"}])


@pytest.mark.parametrize("options, key, reason", [
    ({"corect": 1.0}, "rewards[0].options.corect", "unknown option 'corect'"),
    ({"correct": "yes"}, "rewards[0].options.correct", "expected a number, got 'yes'"),
    ({"require_tag": 1}, "rewards[0].options.require_tag", "expected true or false"),
    ({"choices": "spoof"}, "rewards[0].options.choices", "expected a list"),
    ({"wrong": float("nan")}, "rewards[0].options.wrong", "must be a finite number"),
])
def test_reward_options_are_validated_with_the_key_named(options, key, reason):
    with pytest.raises(OptionError) as err:
        build_rewards([{"name": "answer", "options": options}])
    assert err.value.key == key and reason in str(err.value)
    assert str(err.value).startswith(key)


def test_spec_fields_are_validated():
    with pytest.raises(OptionError, match=r"rewards\[0\]\.weight: must be a finite number"):
        build_rewards([{"name": "answer", "weight": float("inf")}])
    with pytest.raises(OptionError, match=r"rewards\[0\]\.weight: expected a number"):
        build_rewards([{"name": "answer", "weight": "heavy"}])
    with pytest.raises(OptionError, match=r"rewards\[0\]\.id: 'a/b' must be letters"):
        build_rewards([{"name": "answer", "id": "a/b"}])
    with pytest.raises(OptionError, match=r"rewards: give at least one reward"):
        build_rewards([])
    with pytest.raises(ConfigError, match=r"missing required option rewards\[0\]\.name"):
        build_rewards([{"weight": 1.0}])


def test_reward_specs_nest_in_a_config_section():
    @dataclass
    class Objective:
        rewards: list[RewardSpec] = option(doc="rewards", factory=lambda: [RewardSpec(name="answer")])

    objective = from_dict(Objective, {"rewards": [{"name": "answer"}, {"name": "format", "weight": 0.1}]})
    assert [r.name for r in objective.rewards] == ["answer", "format"]
    assert build_rewards(objective.rewards).names == ["answer", "format"]
    # options are checked when the config is read, keyed by their place in it
    with pytest.raises(OptionError) as err:
        from_dict(Objective, {"rewards": [{"name": "format", "options": {"pattern": "["}}]}, prefix="objective")
    assert err.value.key == "objective.rewards[0].options.pattern"
    with pytest.raises(OptionError, match=r"objective\.rewards\[0\]\.options\.x"):
        build_rewards([RewardSpec(name="answer", options={"x": 1})], prefix="objective.rewards")


def test_duplicate_names_need_a_distinct_id():
    with pytest.raises(OptionError, match=r"rewards\[1\]\.name: a second reward named 'bleu' \(the first is "
                                          r"rewards\[0\]\); give one of them a distinct `id`"):
        build_rewards([{"name": "bleu"}, {"name": "bleu", "options": {"reference_column": "transcript"}}])
    rewards = build_rewards([{"name": "bleu"},
                             {"name": "bleu", "id": "bleu_transcript", "options": {"reference_column": "transcript"}}])
    scores = rewards.score([REF], [[0]], None, {"reference": [REF], "transcript": ["something else entirely"]},
                           RewardContext(1))
    assert set(scores.per_reward) == {"bleu", "bleu_transcript"}
    assert "reward/bleu_transcript/mean" in scores.stats
    with pytest.raises(ConfigError, match="two rewards are named 'a'"):
        rset(("a", constant(lambda i: 0.0), 1.0), ("a", constant(lambda i: 0.0), 1.0))


# registry ------------------------------------------------------------------------------------------------


def test_register_a_class_with_options_by_decorator():
    name = unique_name()

    @dataclass
    class LengthOptions:
        per_char: float = option(0.1, "reward per character", ge=0)

    @REWARDS.register(name)
    class LengthReward(Reward):
        Options = LengthOptions

        def __call__(self, *, completions, completion_ids, prompts, columns, context):
            return [self.options.per_char * len(c) for c in completions]

    got = values([{"name": name, "options": {"per_char": 0.5}}], ["ab", "abcd"])
    assert got == [1.0, 2.0]
    with pytest.raises(OptionError, match=r"rewards\[0\]\.options\.per_char: must be >= 0"):
        build_rewards([{"name": name, "options": {"per_char": -1}}])
    assert name in REWARDS.names()


def test_register_a_plain_function_which_takes_no_options():
    name = unique_name()

    @REWARDS.register(name)
    def shortness(completions, **_):
        return [1.0 / (1 + len(c)) for c in completions]

    assert values([{"name": name}], ["", "abc"]) == [1.0, 0.25]
    with pytest.raises(OptionError, match=rf"rewards\[0\]\.options: reward '{name}' is a plain function and takes "
                                          r"no options; got scale"):
        build_rewards([{"name": name, "options": {"scale": 2}}])
    with pytest.raises(ConfigError, match="already registered"):
        REWARDS.register(name)(shortness)
