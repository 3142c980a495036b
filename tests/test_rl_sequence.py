"""The GRPO core with a token-sequence policy: the detector's label softmax is its first policy, not its only one.

A tiny autoregressive toy policy writes up to T tokens from {a, b, EOS} for each input (think: a generative
detector writing a short rationale and ending with its verdict, a = spoof, b = bona fide). It goes through the
same `grpo_loss` as the classifier - sampling, per-token log-probs with a mask, enumeration for the exact
estimator, old / reference policies, clipping, KL, mixed-policy ground truth, composed rewards - and the
tests check the same properties as for labels: sampled -> exact convergence, masking, and learning.
"""
from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from mc_stats import convergence_slope
from torch import nn

from spoofrl.rl import GRPOSettings, LogProbs, Policy, grpo_loss

A, B_TOKEN, EOS, BOS = 0, 1, 2, 3
VOCAB, T, IN_DIM = 3, 3, 4


class TinyAutoregressive(nn.Module):
    """p(token_t | x, tokens_<t): a running sum of token embeddings, plus the input and the position."""

    def __init__(self, seed: int = 0, dim: int = 8):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(IN_DIM, dim)
        self.tok = nn.Embedding(BOS + 1, dim)
        self.pos = nn.Parameter(0.5 * torch.randn(T, dim))
        self.out = nn.Linear(dim, VOCAB)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [M, T, VOCAB] of `tokens` [M, T] given inputs x [M, IN_DIM]."""
        prev = torch.cat([torch.full_like(tokens[:, :1], BOS), tokens[:, :-1]], dim=1)
        state = self.inp(x).unsqueeze(1) + torch.cumsum(self.tok(prev), dim=1)
        return self.out(torch.tanh(state + self.pos))


def valid_mask(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens up to and including the first EOS are generated; later positions are padding."""
    eos_before = torch.cumsum((tokens == EOS).long(), dim=-1) - (tokens == EOS).long()
    return eos_before == 0


def all_sequences() -> torch.Tensor:
    """Every sequence the policy can write, padded with EOS: [K, T] (15 for T = 3)."""
    seqs = {tuple(s) for s in itertools.product(range(VOCAB), repeat=T)}
    canonical = set()
    for s in seqs:
        t = torch.tensor(s)
        canonical.add(tuple(torch.where(valid_mask(t), t, torch.tensor(EOS)).tolist()))
    return torch.tensor(sorted(canonical))


class SequencePolicy(Policy):
    """The Policy interface over token sequences: actions [B, N, T], log-probs [B, N, T] with a mask."""

    def __init__(self, model: TinyAutoregressive, grad: bool = True):
        self.model, self.grad = model, grad

    def _token_logp(self, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        b, n, t = actions.shape
        with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            logits = self.model(x.repeat_interleave(n, 0), actions.reshape(b * n, t))
            logp = torch.log_softmax(logits, -1).gather(-1, actions.reshape(b * n, t, 1)).squeeze(-1)
        return logp.view(b, n, t)

    def sample(self, x, num, generator=None):
        tokens = torch.full((x.shape[0] * num, T), EOS)
        xs = x.repeat_interleave(num, 0)
        with torch.no_grad():
            for t in range(T):  # one token at a time, each conditioned on the ones drawn before
                probs = torch.softmax(self.model(xs, tokens)[:, t], -1)
                tokens[:, t] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        tokens = torch.where(valid_mask(tokens), tokens, torch.tensor(EOS))
        return tokens.view(x.shape[0], num, T)

    def log_prob(self, x, actions):
        return LogProbs(self._token_logp(x, actions), valid_mask(actions))

    def enumerate_actions(self, x):
        return all_sequences().unsqueeze(0).expand(x.shape[0], -1, -1)


def verdict(actions: torch.Tensor) -> torch.Tensor:
    """The last generated token before EOS (the verdict), -1 when the sequence is empty."""
    mask = valid_mask(actions) & (actions != EOS)
    last = mask.long().sum(-1) - 1
    return torch.where(last >= 0, actions.gather(-1, last.clamp_min(0).unsqueeze(-1)).squeeze(-1), -1)


def accuracy_reward(actions, targets, **_):
    return (verdict(actions) == targets.view(-1, 1)).float()


def format_reward(actions, targets, **_):
    """A rationale before the verdict: at least two generated tokens."""
    return ((valid_mask(actions) & (actions != EOS)).sum(-1) >= 2).float()


def REWARD(actions, targets, **_):
    """FT-GRPO-style composition (accuracy 1 : format 0.1, arXiv 2601.02983)."""
    return accuracy_reward(actions, targets) + 0.1 * format_reward(actions, targets)
X = torch.randn(4, IN_DIM, generator=torch.Generator().manual_seed(1))
TARGETS = torch.tensor([A, B_TOKEN, A, B_TOKEN])


def expected_reward(model: TinyAutoregressive) -> float:
    """Exact mean reward over the batch: every sequence weighted by its probability."""
    policy = SequencePolicy(model, grad=False)
    seqs = policy.enumerate_actions(X)
    lp = policy.log_prob(X, seqs)
    prob = (lp.logp * lp.mask).sum(-1).exp()
    return float((prob * REWARD(seqs, TARGETS)).sum(1).mean())


def perturbed(model: TinyAutoregressive, scale: float, seed: int) -> TinyAutoregressive:
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return other


MODEL = TinyAutoregressive()
OLD, REF = perturbed(MODEL, 0.1, 7), perturbed(MODEL, 0.3, 8)


def sequence_gradient(estimator: str, g: int, seed: int = 0, **options) -> torch.Tensor:
    """Gradient of the GRPO loss over the toy policy's parameters (old policy, clipping and KL all on)."""
    model = copy.deepcopy(MODEL)
    settings = GRPOSettings(**{"num_generations": g, "estimator": estimator, "epsilon": 0.2, "beta": 0.04,
                               "scale_rewards": "group", **options})
    out = grpo_loss(SequencePolicy(model), X, TARGETS, REWARD, settings, old_policy=SequencePolicy(OLD, False),
                    ref_policy=SequencePolicy(REF, False), generator=torch.Generator().manual_seed(seed))
    grads = torch.autograd.grad(out.loss, list(model.parameters()), allow_unused=True)
    return torch.cat([torch.zeros(p.numel()) if gr is None else gr.flatten()
                      for p, gr in zip(model.parameters(), grads)])


def test_toy_policy_is_a_distribution_over_sequences():
    seqs = all_sequences()
    assert seqs.shape == (15, T)  # EOS; a/b EOS; two tokens EOS; three tokens
    policy = SequencePolicy(MODEL, grad=False)
    lp = policy.log_prob(X, policy.enumerate_actions(X))
    # float32: a 3-way log-softmax on |logits| < 5, 3 log-probs summed and exponentiated (~60 eps relative per
    # sequence), 15 sequences summed: < 80 eps = 1e-5; a sequence missing or counted twice costs >= 1e-3
    assert torch.allclose((lp.logp * lp.mask).sum(-1).exp().sum(1), torch.ones(len(X)), atol=1e-5)
    drawn = policy.sample(X, 8, torch.Generator().manual_seed(0))
    assert drawn.shape == (len(X), 8, T)
    assert all(tuple(s) in {tuple(q) for q in seqs.tolist()} for s in drawn.view(-1, T).tolist())


def test_padding_after_eos_does_not_change_the_loss():
    settings = GRPOSettings(num_generations=4, estimator="exact", epsilon=0.2, beta=0.04)
    seqs = all_sequences()
    garbage = seqs.clone()
    garbage[:, 1:] = torch.where(valid_mask(seqs)[:, 1:], seqs[:, 1:], torch.tensor(A))  # change only padding

    class Fixed(SequencePolicy):
        def __init__(self, model, actions, grad=True):
            super().__init__(model, grad)
            self.actions = actions

        def enumerate_actions(self, x):
            return self.actions.unsqueeze(0).expand(x.shape[0], -1, -1)

    def loss_of(actions):
        model = copy.deepcopy(MODEL)
        out = grpo_loss(Fixed(model, actions), X, TARGETS, lambda a, t, **_: REWARD(seqs.expand_as(a), t),
                        settings, old_policy=Fixed(OLD, actions, False), ref_policy=Fixed(REF, actions, False))
        return float(out.loss.detach())

    assert loss_of(garbage) == loss_of(seqs)    # padding only changes terms the mask multiplies by 0: bit for bit


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
def test_sampled_sequence_gradient_converges_to_the_exact_one(loss_type):
    # the same check as for labels (test_rl_core (a)): the Monte-Carlo error of G drawn sequences falls like
    # G^-1/2 towards the gradient of the enumerated expectation - through old policy, clipping and k3 KL
    exact = sequence_gradient("exact", 1, loss_type=loss_type)
    slope, rms = convergence_slope(lambda g, s: sequence_gradient("sampled", g, seed=s, loss_type=loss_type),
                                   exact, [16, 64, 256, 1024], seeds=12)
    # measured slopes -0.51 and -0.53; each RMS pools 12 seeds over 123 gradient entries, so the band
    # [-0.75, -0.35] holds with margin while a biased or non-converging estimator (slope ~ 0) fails
    assert -0.75 < slope < -0.35, (slope, rms)
    assert rms[-1] < 0.15 * float(exact.norm()), (rms[-1], float(exact.norm()))


def test_unnormalised_sampled_sequence_gradient_is_unbiased():
    # no group statistics (negative: false) and no clipping: each sampled gradient is an unbiased estimate
    opts = {"center": False, "epsilon": None, "beta": 0.0}
    exact = sequence_gradient("exact", 1, **opts)
    samples = torch.stack([sequence_gradient("sampled", 16, seed=s, **opts) for s in range(300)])
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
    z = ((mean - exact) / (se + 1e-12))[se > 0]
    # 123 entries: max |z| under 4.5 fails falsely with probability < 1e-3 (Bonferroni)
    assert float(z.abs().max()) < 4.5, z


@pytest.mark.parametrize("options", [
    {},                                                  # GRPO: old policy + clipping, KL to the reference
    {"epsilon": None, "scale_rewards": "batch"},         # GRPO_s with the study's batch scaling
    {"mixed_policy": True},                              # ground-truth sequence as an off-policy member
    {"loss_type": "dapo", "epsilon_high": 0.28},         # token-level loss, clip-higher
], ids=["grpo", "grpos-batch", "mixed-policy", "dapo"])
def test_grpo_teaches_the_toy_sequence_policy(options):
    model = TinyAutoregressive(seed=3)
    reference = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    settings = GRPOSettings(**{"num_generations": 16, "beta": 0.04, **options})
    # the correct rationale + verdict for mixed_policy: "a a EOS" for spoof, "b b EOS" for bona fide
    truth = torch.stack([TARGETS, TARGETS, torch.full_like(TARGETS, EOS)], dim=1).unsqueeze(1)
    before = expected_reward(model)
    old = copy.deepcopy(model)
    for step in range(25):
        if step % 3 == 0:
            old = copy.deepcopy(model)  # old policy refreshed every 3 steps
        out = grpo_loss(SequencePolicy(model), X, TARGETS, REWARD, settings, old_policy=SequencePolicy(old, False),
                        ref_policy=SequencePolicy(reference, False), offpolicy_actions=truth,
                        generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        assert out.actions.shape == (len(X), 16, T) and torch.isfinite(out.loss)
        if options.get("mixed_policy"):
            assert torch.equal(out.actions[:, -1], truth[:, 0])
    after = expected_reward(model)
    # exact expected reward (max 1.1): the toy starts at 0.39; measured 0.93 - 1.0 after 25 steps
    assert before < 0.5 and after > 0.8, (before, after)
