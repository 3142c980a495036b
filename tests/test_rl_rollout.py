"""Rollout separate from loss (spoofrl.rl.rollout): GRPO for generative policies as TRL's GRPOTrainer runs it.

One rollout generates, scores and records old / reference log-probs once; the loss over it is micro-batched
with the gradient of the whole batch; num_iterations optimizer passes reuse it. Checked on the toy
autoregressive policy of test_rl_sequence (through the text rewards of spoofrl.rewards) and on a tiny SmallAlm.
"""
from __future__ import annotations

import contextlib
import copy
import math

import pytest
import torch
from test_rl_sequence import (
    B_TOKEN,
    EOS,
    MODEL,
    OLD,
    REF,
    REWARD,
    TARGETS,
    A,
    SequencePolicy,
    T,
    X,
    accuracy_reward,
    valid_mask,
)

from conftest import chain_ops, float_tol
from spoofrl.rewards import (
    RewardSet,
    WeightedReward,
    build_rewards,
    reward_from_function,
)
from spoofrl.rl import (
    GRPOSettings,
    Policy,
    grpo_loss,
    make_rollout,
    policy_loss,
    rollout_loss,
    train_on_rollout,
)
from spoofrl.rl.loss import LOSS_TYPES

# Rounding of the toy policy (test_rl_sequence: 4 -> 8 -> 3 linear layers, a cumsum over T = 3 tokens, a 3-way
# log-softmax: ~20 float32 roundings) on |log-probs| < 5: its log-probs along two paths (other batch shapes)
# agree to TOY_LOGP_TOL. Losses and gradients sum <= 4 items x 8 generations x 3 tokens = 96 such terms
# (+ their backward: ~40 roundings), with advantages of both signs (they sum to 0 in a group), so an entry is
# ~sqrt(96) = 10 times smaller than the sum of its terms' sizes: GRAD_RTOL relative to the largest entry and
# LOSS_TOL on losses and statistics, on |A| < 3. A micro-batching bug (a normaliser per micro-batch, a token
# counted twice) moves them by 10% or more.
TOY_LOGP_TOL = float_tol(torch.float32, 20, 5)                       # 1.2e-5
GRAD_RTOL = float_tol(torch.float32, chain_ops(96) + 40, math.sqrt(96))  # 5.8e-5
LOSS_TOL = float_tol(torch.float32, chain_ops(96) + 40, 3)           # 1.8e-5
LETTER = {A: "a", B_TOKEN: "b"}
TOKEN = {v: k for k, v in LETTER.items()}
LABELS = [LETTER[int(t)] for t in TARGETS]               # "a" = spoof, "b" = bona fide
TRUTH_TEXTS = [label * 2 for label in LABELS]           # the right rationale + verdict: "aa" / "bb"


class TextPolicy(SequencePolicy):
    """The toy sequence policy with what a rollout asks of a text policy: texts, an EOS id, reference ids."""

    eos_token_id = EOS

    def decode(self, actions):
        keep = valid_mask(actions) & (actions != EOS)
        return [["".join(LETTER[int(t)] for t in seq[m]) for seq, m in zip(group, kept)]
                for group, kept in zip(actions, keep)]

    def reference_actions(self, texts, length=None):
        length = length or T
        ids = [([TOKEN[c] for c in text] + [EOS] * length)[:length] for text in texts]
        return torch.tensor(ids).unsqueeze(1)


def verdict_reward(completions, columns, **_):
    return [float(bool(c) and c[-1] == label) for c, label in zip(completions, columns["label"])]


def rationale_reward(completions, **_):
    return [float(len(c) >= 2) for c in completions]


def toy_rewards() -> RewardSet:
    """test_rl_sequence.REWARD (verdict accuracy + 0.1 x a rationale before it), scored on texts."""
    return RewardSet([WeightedReward("verdict", reward_from_function(verdict_reward, "verdict")),
                      WeightedReward("format", reward_from_function(rationale_reward, "format"), 0.1)])


def toy_rollout(settings, *, items=4, seed=0, old=True, num_iterations=1, mask_truncated=False, policy=None):
    policy = policy or TextPolicy(copy.deepcopy(MODEL))
    rollout = make_rollout(policy, X[:items], toy_rewards(), settings,
                           old_policy=TextPolicy(OLD, grad=False) if old else None,
                           ref_policy=TextPolicy(REF, grad=False), reference_texts=TRUTH_TEXTS[:items],
                           columns={"label": LABELS[:items]}, generator=torch.Generator().manual_seed(seed),
                           num_iterations=num_iterations, mask_truncated_completions=mask_truncated)
    return policy, rollout


def flat_grad(model) -> torch.Tensor:
    return torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.flatten() for p in model.parameters()])


def relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


class Counting(Policy):
    """Counts generations and log_prob calls with and without gradient; the rest goes to the wrapped policy."""

    def __init__(self, inner):
        self.inner, self.samples, self.with_grad, self.without_grad = inner, 0, 0, 0

    def sample(self, inputs, num, generator=None):
        self.samples += 1
        return self.inner.sample(inputs, num, generator)

    def log_prob(self, inputs, actions):
        if torch.is_grad_enabled():
            self.with_grad += 1
        else:
            self.without_grad += 1
        return self.inner.log_prob(inputs, actions)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_rollout_generates_scores_and_records_log_probs_once():
    calls = {"verdict": 0}

    def counted(**kw):
        calls["verdict"] += 1
        return verdict_reward(**kw)

    rewards = RewardSet([WeightedReward("verdict", reward_from_function(counted, "verdict"))])
    policy, ref = Counting(TextPolicy(copy.deepcopy(MODEL))), Counting(TextPolicy(REF, grad=False))
    settings = GRPOSettings(num_generations=4, beta=0.04, epsilon=0.2)
    rollout = make_rollout(policy, X, rewards, settings, ref_policy=ref, columns={"label": LABELS},
                           generator=torch.Generator().manual_seed(0), num_iterations=3)
    # one generation, one no-grad scoring by the policy (mask and old log-probs), one by the reference
    assert (policy.samples, policy.with_grad, policy.without_grad) == (1, 0, 1)
    assert (ref.with_grad, ref.without_grad, calls["verdict"]) == (0, 1, 1)
    assert rollout.actions.shape == (4, 4, T) and rollout.old_logp.shape == rollout.actions.shape
    current = policy.inner.log_prob(X, rollout.actions)
    torch.testing.assert_close(rollout.old_logp, current.logp.detach(), rtol=0, atol=TOY_LOGP_TOL)
    assert torch.equal(rollout.mask, current.mask)
    assert rollout.texts == policy.inner.decode(rollout.actions)
    assert torch.equal(rollout.rewards, accuracy_reward(rollout.actions, TARGETS))

    optimizer = torch.optim.SGD(policy.inner.model.parameters(), lr=0.1)
    history = train_on_rollout(policy, rollout, settings, optimizer, num_iterations=3, micro_batch_size=3)
    # the loss alone runs forwards with gradient: 3 passes x 2 micro-batches (3 + 1 items); nothing else reruns
    assert (policy.samples, policy.with_grad, policy.without_grad) == (1, 6, 1)
    assert (ref.with_grad, ref.without_grad, calls["verdict"]) == (0, 1, 1)
    assert len(history) == 3 and all(set(h) >= {"loss", "clip_frac", "kl", "ratio_mean", "grad_norm"}
                                     for h in history)

    sub = rollout.select([2, 0])
    assert torch.equal(sub.inputs, X[[2, 0]]) and torch.equal(sub.actions, rollout.actions[[2, 0]])
    assert torch.equal(sub.old_logp, rollout.old_logp[[2, 0]]) and sub.texts == [rollout.texts[2], rollout.texts[0]]


VARIANTS = {
    "plain": ({"beta": 0.0}, {}),
    "kl": ({"beta": 0.04}, {}),
    "mixed-kl": ({"beta": 0.04, "mixed_policy": True, "epsilon_high": 0.28}, {}),
    "weighted-masked-k1": ({"beta": 0.04, "kl_estimator": "k1"}, {"mask_truncated": True,
                                                                  "sample_weights": torch.tensor([1.0, 2.0, 0.5])}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_micro_batched_gradient_equals_the_full_batch_one(loss_type, variant):
    options, extra = VARIANTS[variant]
    sample_weights = extra.get("sample_weights")
    settings = GRPOSettings(num_generations=6, epsilon=0.05, scale_rewards="group", loss_type=loss_type, **options)
    policy, rollout = toy_rollout(settings, items=3, mask_truncated=extra.get("mask_truncated", False))
    assert rollout.old_logp is not None and (rollout.mask.sum(-1) > 0).any()

    # reference: policy_loss of loss.py over the whole rollout in one forward, with its own normaliser
    lp = policy.log_prob(rollout.inputs, rollout.actions)
    direct = policy_loss(lp.logp, rollout.advantages, mask=rollout.mask, old_logp=rollout.old_logp,
                         ref_logp=rollout.ref_logp, off_policy=rollout.off_policy, sample_weights=sample_weights,
                         epsilon=settings.epsilon, epsilon_high=settings.epsilon_high, beta=settings.beta,
                         kl_estimator=settings.kl_estimator, loss_type=loss_type)
    policy.model.zero_grad(set_to_none=True)
    direct.loss.backward()
    expected = flat_grad(policy.model)
    assert expected.abs().max() > 0 and direct.stats["clip_frac"] > 0   # clipping is part of what is checked

    for micro in (None, 2, 1):   # 3 items: one batch, [2 + 1] (uneven), [1 + 1 + 1]
        policy.model.zero_grad(set_to_none=True)
        out = rollout_loss(policy, rollout, settings, micro_batch_size=micro, sample_weights=sample_weights)
        gap = relative_gap(flat_grad(policy.model), expected)
        assert gap < GRAD_RTOL, (micro, gap)
        assert float(out.loss) == pytest.approx(float(direct.loss.detach()), rel=0, abs=LOSS_TOL)
        assert not out.loss.requires_grad
        for key, value in direct.stats.items():
            assert float(out.stats[key]) == pytest.approx(float(value), rel=0, abs=LOSS_TOL), key


class Fixed(TextPolicy):
    """Returns given completions instead of sampling (the first `num` of each item's)."""

    def __init__(self, model, actions, grad=True):
        super().__init__(model, grad)
        self.actions = actions

    def sample(self, x, num, generator=None):
        return self.actions[:, :num]


@pytest.mark.parametrize("options", [{}, {"loss_type": "dapo"}, {"mixed_policy": True, "scale_rewards": "group"}],
                         ids=["grpo", "dapo", "mixed-policy"])
def test_one_iteration_is_the_one_shot_grpo_loss(options):
    # the bridge between grpo_loss (one call: sample, score, loss) and make_rollout + rollout_loss
    settings = GRPOSettings(num_generations=8, beta=0.04, epsilon=0.2, **options)
    actions = TextPolicy(MODEL).sample(X, 8, torch.Generator().manual_seed(3))
    truth = TextPolicy(MODEL).reference_actions(TRUTH_TEXTS)

    one_shot = copy.deepcopy(MODEL)
    out = grpo_loss(Fixed(one_shot, actions), X, TARGETS, REWARD, settings, ref_policy=TextPolicy(REF, False),
                    offpolicy_actions=truth)
    out.loss.backward()

    split = copy.deepcopy(MODEL)
    policy = Fixed(split, actions)
    rollout = make_rollout(policy, X, toy_rewards(), settings, ref_policy=TextPolicy(REF, False),
                           reference_texts=TRUTH_TEXTS, columns={"label": LABELS}, num_iterations=1)
    assert rollout.old_logp is None                     # as TRL: not computed, the ratio is 1
    assert torch.equal(rollout.actions, out.actions)
    # the same float32 rewards and formulas: allclose's 1e-5 relative is far above their rounding
    assert torch.allclose(rollout.rewards, out.rewards) and torch.allclose(rollout.advantages, out.advantages)
    loss = rollout_loss(policy, rollout, settings, micro_batch_size=3)
    assert float(loss.loss) == pytest.approx(float(out.loss.detach()), rel=0, abs=LOSS_TOL)
    assert relative_gap(flat_grad(split), flat_grad(one_shot)) < GRAD_RTOL


def test_later_iterations_see_the_old_policy_and_clip():
    settings = GRPOSettings(num_generations=8, beta=0.0, epsilon=0.02, scale_rewards="group")
    policy, rollout = toy_rollout(settings, old=False, num_iterations=3)
    optimizer = torch.optim.Adam(policy.model.parameters(), lr=0.1)
    history = train_on_rollout(policy, rollout, settings, optimizer, num_iterations=3, micro_batch_size=2,
                               max_grad_norm=1.0)
    first, later = history[0], history[1:]
    # pass 1: the ratio is exp of the log-probs' rounding between the two forwards; later passes move it by 0.25
    assert first["ratio_mean"] == pytest.approx(1.0, abs=TOY_LOGP_TOL) and first["clip_frac"] == 0.0
    # measured: ratio_mean 0.75 / 0.73, clip_frac 0.76 / 0.76 in passes 2 and 3
    for h in later:
        assert abs(h["ratio_mean"] - 1.0) > 1e-2 and h["clip_frac"] > 0.2, history
    with pytest.raises(ValueError, match="old log-probs"):
        _, one = toy_rollout(settings, old=False, num_iterations=1)
        train_on_rollout(policy, one, settings, optimizer, num_iterations=2, micro_batch_size=None)


class Capturing(TextPolicy):
    """Keeps the per-token log-probs of the last call with gradient, with their .grad after backward."""

    def log_prob(self, x, actions):
        lp = super().log_prob(x, actions)
        if lp.logp.requires_grad:
            lp.logp.retain_grad()
            self.captured = lp.logp
        return lp


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_mask_truncated_completions_removes_them_from_the_loss_only(loss_type):
    settings = GRPOSettings(num_generations=8, beta=0.04, epsilon=0.2, loss_type=loss_type)
    _, plain = toy_rollout(settings, seed=1)
    policy, masked = toy_rollout(settings, seed=1, mask_truncated=True, policy=Capturing(copy.deepcopy(MODEL)))
    truncated = masked.truncated
    assert torch.equal(truncated, ~(masked.actions == EOS).any(-1)) and 0 < int(truncated.sum()) < truncated.numel()
    # rewards, advantages and their statistics are those without the option
    assert torch.equal(masked.actions, plain.actions) and torch.equal(masked.rewards, plain.rewards)
    assert torch.equal(masked.advantages, plain.advantages) and masked.stats == plain.stats
    assert plain.mask[truncated].any() and not masked.mask[truncated].any()
    assert torch.equal(masked.mask[~truncated], plain.mask[~truncated])

    rollout_loss(policy, masked, settings)
    grad = policy.captured.grad
    assert float(grad[truncated].abs().max()) == 0.0
    assert float(grad[~truncated].abs().max()) > 0.0
    assert masked.stats["truncated_share"] == pytest.approx(float(truncated.float().mean()))


def test_reward_statistics_name_each_reward():
    rewards = build_rewards([{"name": "answer"}, {"name": "format", "weight": 0.1,
                                                  "options": {"pattern": "[ab]{2,}"}}])
    settings = GRPOSettings(num_generations=6, beta=0.0)
    policy = TextPolicy(copy.deepcopy(MODEL))
    rollout = make_rollout(policy, X, rewards, settings, columns={"label": LABELS},
                           generator=torch.Generator().manual_seed(2))
    texts = rollout.texts
    answer = torch.tensor([[float(t == LABELS[i]) for t in group] for i, group in enumerate(texts)])
    form = torch.tensor([[float(len(t) >= 2) for t in group] for group in texts])
    assert torch.equal(rollout.rewards, answer + 0.1 * form)
    assert set(rollout.per_reward) == {"answer", "format"}
    stats = rollout.stats
    # float32 means and stds of 24 values <= 3, maybe summed in another order: 24 eps relative
    rel = float_tol(torch.float32, 24)
    for name, values in (("answer", answer), ("format", form)):
        assert stats[f"reward/{name}/mean"] == pytest.approx(float(values.mean()), rel=rel)
        assert stats[f"reward/{name}/std"] == pytest.approx(float(values.std()), rel=rel)
    lengths = rollout.mask.sum(-1).float()
    assert stats["completion_length/mean"] == pytest.approx(float(lengths.mean()), rel=rel)
    assert stats["reward/total/mean"] == pytest.approx(float(rollout.rewards.mean()), rel=rel)
    assert stats["truncated_share"] == pytest.approx(float(rollout.truncated.float().mean()), rel=rel)
    assert {"reward_mean", "reward_std", "advantage_abs", "completion_length/max"} <= set(stats)


class FakeDistributed:
    """torch.distributed as two processes holding the same rollout would see it: all_reduce doubles."""

    def __init__(self):
        self.all_reduces = 0

    def is_available(self):
        return True

    def is_initialized(self):
        return True

    def get_world_size(self):
        return 2

    def all_reduce(self, tensor):
        self.all_reduces += 1
        tensor.mul_(2)


class Synced(TextPolicy):
    """A policy whose model is under DDP: counts the forwards run inside no_sync (DDP reads it at forward
    time) and the micro-batches backpropagated inside it."""

    def __init__(self, model):
        super().__init__(model)
        self.inside, self.unsynced_forwards, self.unsynced = False, 0, 0

    @contextlib.contextmanager
    def no_sync(self):
        self.inside, self.unsynced = True, self.unsynced + 1
        try:
            yield
        finally:
            self.inside = False

    def log_prob(self, x, actions):
        self.unsynced_forwards += self.inside
        return super().log_prob(x, actions)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_one_collective_per_rollout_whatever_the_micro_batches(loss_type, monkeypatch):
    import spoofrl.rl.loss as loss_module
    import spoofrl.rl.rollout as rollout_module

    settings = GRPOSettings(num_generations=4, beta=0.04, loss_type=loss_type)
    policy, rollout = toy_rollout(settings, items=3)
    alone = rollout_loss(policy, rollout, settings, micro_batch_size=1, backward=False)
    fake = FakeDistributed()
    monkeypatch.setattr(rollout_module, "dist", fake)
    monkeypatch.setattr(loss_module, "dist", fake)   # a collective inside policy_loss would be counted too
    synced = Synced(policy.model)
    out = rollout_loss(synced, rollout, settings, micro_batch_size=1)
    assert fake.all_reduces == (1 if loss_type == "dapo" else 0)
    # 3 micro-batches: only the last one syncs gradients
    assert synced.unsynced == 2 and synced.unsynced_forwards == 2
    # the other process's identical tokens double the count; DDP's mean over 2 processes is folded in
    # doubled counts and a mean over 2 processes: powers of two, exact up to a reordered float32 sum
    assert float(out.loss) == pytest.approx(float(alone.loss.detach()), rel=0, abs=LOSS_TOL)


# --- a tiny audio LLM ----------------------------------------------------------------------------------------
def tiny_alm(words, seed=0):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from spoofrl.alm import AlmConfig, build_alm, train_tokenizer
    from spoofrl.alm.toy import TOY_PROMPT

    cfg = AlmConfig(frontend={"name": "logmel", "n_mels": 32}, conv_channels=32, encoder_layers=0, lm_layers=1,
                    lm_width=32, lm_heads=2, lm_kv_heads=1, lm_ffn=64)
    return build_alm(cfg, train_tokenizer([TOY_PROMPT, *words], vocab_size=300), seed=seed)


def test_alm_rollout_with_reference_texts_and_micro_batches():
    from spoofrl.alm import SamplingConfig
    from spoofrl.alm.policy import AlmPolicy
    from spoofrl.alm.toy import TOY_ANSWERS, toy_batch

    model = tiny_alm(list(TOY_ANSWERS.values()))
    model.logit_bias[model.eos_token_id] = 8.0     # short samples: the reference is longer than all of them
    reference = copy.deepcopy(model).requires_grad_(False)
    policy = AlmPolicy(model, SamplingConfig(max_completion_length=8))
    batch = toy_batch(3, seed=5)
    settings = GRPOSettings(num_generations=4, beta=0.04, mixed_policy=True, loss_type="dapo", epsilon=0.1)
    # the reward: writing the reference answer (only the reference member does, so advantages are not 0)
    rewards = build_rewards([{"name": "answer", "options": {"target_column": "answer"}}])
    rollout = make_rollout(policy, batch, rewards, settings, ref_policy=AlmPolicy(reference, policy.sampling,
                           grad=False), columns={"answer": batch.references}, generator=torch.Generator().manual_seed(0),
                           num_iterations=2, micro_batch_size=2)
    sampled = policy.last
    assert sampled.ids.shape[-1] < rollout.actions.shape[-1] <= 8   # the samples were padded to the reference
    assert [group[-1] for group in rollout.texts] == batch.references
    assert [group[:-1] for group in rollout.texts] == sampled.text   # padding after EOS changed no text
    assert rollout.off_policy[:, -1].all() and not rollout.off_policy[:, :-1].any()
    assert not rollout.truncated[:, -1].any() and torch.equal(rollout.rewards[:, -1], torch.ones(3))
    sub = rollout.select([2, 0])
    assert torch.equal(sub.inputs.lengths, batch.lengths[[2, 0]]) and sub.inputs.references == \
        [batch.references[2], batch.references[0]] and torch.equal(sub.actions, rollout.actions[[2, 0]])

    model.zero_grad(set_to_none=True)
    full = rollout_loss(policy, rollout, settings, micro_batch_size=None)
    expected = flat_grad(model)
    model.zero_grad(set_to_none=True)
    micro = rollout_loss(policy, rollout, settings, micro_batch_size=2)
    # an item's log-probs do not depend on its batch mates (test_alm), so micro-batches change nothing but
    # rounding: this ALM's chain of reductions forward and back (512-point STFT, 257-bin mels, 32-channel convs,
    # a 32-wide LM layer, a 300-way softmax: ~300 roundings), on gradients summed over 3 x 4 x 8 tokens with
    # advantages of both signs (x sqrt(96)): 3.5e-4 relative; a per-micro-batch normaliser would be off by 10%+
    alm_ops = 2 * chain_ops(512, 257, 32, 96, 96, 32, 32, *(32,) * 7, 40, 64, 300)
    assert relative_gap(flat_grad(model), expected) < float_tol(torch.float32, alm_ops, math.sqrt(96))
    assert float(micro.loss) == pytest.approx(float(full.loss), rel=0, abs=float_tol(torch.float32, alm_ops, 3))
    assert float(model.encoder.convs[0].weight.grad.abs().sum()) > 0     # through the audio encoder


def test_grpo_on_rollouts_teaches_a_tiny_alm_to_answer():
    """15 rollouts (4 toy clips x 8 completions, 2 passes each, micro-batches of 2 clips) with the `answer`
    reward, the vocabulary restricted to "low", "high" and EOS so that a random model sometimes answers.
    Measured (seed 0): mean answer reward on 16 held-out clips x 8 samples 0.07 -> 0.78 (seeds 0-7: 0.06-0.11
    before, 0.33-0.78 after; about 1.2 s)."""
    from spoofrl.alm import SamplingConfig
    from spoofrl.alm.policy import AlmPolicy
    from spoofrl.alm.toy import toy_batch

    model = tiny_alm(["low", "high"])
    words = [model.tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("low", "high")]
    assert all(len(w) == 1 for w in words)
    allowed = torch.full_like(model.logit_bias, float("-inf"))
    allowed[[words[0][0], words[1][0], model.eos_token_id]] = 0.0
    model.logit_bias.copy_(allowed)
    policy = AlmPolicy(model, SamplingConfig(max_completion_length=3))
    rewards = build_rewards([{"name": "answer"}])
    settings = GRPOSettings(num_generations=8, beta=0.0, scale_rewards="group")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    held_out = toy_batch(16, seed=999)

    def answer_reward() -> float:
        rollout = make_rollout(policy, held_out, rewards, settings, generator=torch.Generator().manual_seed(0))
        return rollout.stats["reward/answer/mean"]

    before = answer_reward()
    generator = torch.Generator().manual_seed(0)
    for step in range(15):
        rollout = make_rollout(policy, toy_batch(4, seed=100 + step), rewards, settings, generator=generator,
                               num_iterations=2, step=step)
        history = train_on_rollout(policy, rollout, settings, optimizer, num_iterations=2, micro_batch_size=2)
        assert history[0]["clip_frac"] == 0.0
    after = answer_reward()
    print(f"tiny ALM, GRPO on rollouts: answer reward {before:.3f} -> {after:.3f}")
    assert before < 0.2 and after > before + 0.2, (before, after)
