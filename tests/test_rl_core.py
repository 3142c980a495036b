"""GRPO core: estimators, advantages, analytic gradients, loss normalisations, clipping, KL, rewards.

Statistical tests use fixed seeds; each tolerance is justified where it is set.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import chain_ops, float_tol
from mc_stats import convergence_slope

from spoofrl.rl import CategoricalPolicy, GRPOSettings, compute_advantages, grpo_loss, kl_estimate, policy_loss

B = 8
BASE = torch.randn(B, 2, generator=torch.Generator().manual_seed(0)) * 1.5
REF = BASE + 0.3 * torch.randn(B, 2, generator=torch.Generator().manual_seed(99))
TARGETS = torch.tensor([0, 1] * (B // 2))
# The analytic checks below compare float32 autograd through a 2-way softmax, advantages over the 2 outcomes
# and a mean over B = 8 with the closed form: < 100 roundings, so 1.2e-5 relative (RTOL) and one rounding of
# the entries' size (< 1) near zero (ATOL); a wrong formula (p(1 - p) for sqrt(p(1 - p)), a lost 1/B) is off by
# a factor, O(1) relative.
RTOL, ATOL = float_tol(torch.float32, 100), float_tol(torch.float32, 1)


def label_reward(actions, targets, **_):
    """The study's reward: 1 for the true label, 0 for the other (the trainer's `answer` reward, tested equal
    in test_grpo_rewards.py)."""
    return (actions == targets.view(-1, 1)).float()


def logit_gradient(estimator: str, g: int, seed: int = 0, **options) -> torch.Tensor:
    """d loss / d logits of the GRPO loss on the fixed batch."""
    logits = BASE.clone().requires_grad_(True)
    policy = CategoricalPolicy(lambda _: logits)
    ref = CategoricalPolicy(lambda _: REF, grad=False)
    settings = GRPOSettings(**{"num_generations": g, "estimator": estimator, "epsilon": None, "beta": 0.04,
                               **options})
    out = grpo_loss(policy, None, TARGETS, label_reward, settings, ref_policy=ref,
                    generator=torch.Generator().manual_seed(seed))
    (grad,) = torch.autograd.grad(out.loss, logits)
    return grad


def true_label_logodds_gradient(grad: torch.Tensor) -> torch.Tensor:
    """d loss / d z, z = log-odds of each utterance's true label. The loss depends on logits only through
    their difference, so d/dz = (d/dl_true - d/dl_other) / 2."""
    sign = torch.where(TARGETS == 1, 1.0, -1.0)
    return (grad[:, 1] - grad[:, 0]) / 2 * sign


# ------------------------------------------------------------------------------------------ (a) sampled -> exact

@pytest.mark.parametrize("scale", ["group", "batch"])
def test_sampled_gradient_converges_to_exact_as_one_over_sqrt_g(scale):
    exact = logit_gradient("exact", 1, scale_rewards=scale)
    slope, rms = convergence_slope(lambda g, s: logit_gradient("sampled", g, seed=s, scale_rewards=scale), exact,
                                   [16, 64, 256, 1024, 4096], seeds=16)
    # Monte-Carlo error ~ G^-1/2; the group-std and ratio estimates add O(1/G) bias that steepens the small-G
    # end a little (measured slopes -0.49 .. -0.56). Each RMS is over 16 seeds (relative sd ~ 1/sqrt(2*16*16)
    # ~ 4% with 16 gradient entries), so [-0.7, -0.35] is a safe band that a non-converging (slope 0) or
    # biased estimator (error flattening out) fails.
    assert -0.7 < slope < -0.35, (slope, rms)
    assert rms[-1] < 0.1 * float(exact.norm()), (rms[-1], float(exact.norm()))


def test_sampled_gradient_is_unbiased_without_normalisation():
    # negative=false: no group statistics, so the sampled gradient is an unbiased estimate of the exact one.
    exact = logit_gradient("exact", 1, center=False, scale_rewards="none")
    samples = torch.stack([logit_gradient("sampled", 32, seed=s, center=False, scale_rewards="none")
                           for s in range(200)])
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
    # 16 entries each within 4.5 standard errors of the exact value: a false failure has probability < 1e-4
    assert torch.all((mean - exact).abs() <= 4.5 * se + 1e-7), ((mean - exact) / se)


# ------------------------------------------------------------------------------------------ (b) no negative reward

def test_negative_false_leaves_advantages_as_raw_rewards():
    rewards = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    for scale in ("group", "batch", "none"):
        assert torch.equal(compute_advantages(rewards, scale_rewards=scale, center=False), rewards)
    from spoofrl.training.config import ObjectiveConfig
    from spoofrl.training.objectives.grpo import grpo_settings
    settings = grpo_settings(ObjectiveConfig(name="grpo", negative=False, scale_rewards="batch", epsilon=None,
                                             beta=0.0, num_generations=16))
    logits = BASE.clone().requires_grad_(True)
    out = grpo_loss(CategoricalPolicy(lambda _: logits), None, TARGETS, label_reward, settings,
                    generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.advantages, out.rewards) and out.advantages.min() >= 0


def test_negative_false_logs_the_references_loss_with_the_same_gradient():
    """'w/o negative' logs -mean(r log p) + beta KL (the AntiDeepfake code's quantity, not -mean(r) + beta KL);
    the gradient is the ratio form's."""
    from spoofrl.training.config import ObjectiveConfig
    from spoofrl.training.objectives.grpo import grpo_settings
    settings = grpo_settings(ObjectiveConfig(name="grpo", negative=False, scale_rewards="none", epsilon=None,
                                             beta=0.04, num_generations=16))
    assert settings.surrogate == "logp"
    results = {}
    for surrogate in ("logp", "ratio"):
        logits = BASE.clone().requires_grad_(True)
        out = grpo_loss(CategoricalPolicy(lambda _: logits), None, TARGETS, label_reward,
                        GRPOSettings(**{**settings.__dict__, "surrogate": surrogate}),
                        ref_policy=CategoricalPolicy(lambda _: REF, grad=False),
                        generator=torch.Generator().manual_seed(0))
        (grad,) = torch.autograd.grad(out.loss, logits)
        results[surrogate] = (out, grad)
    out, grad = results["logp"]
    logp = F.log_softmax(BASE, -1).gather(1, out.actions)
    ref_logp = F.log_softmax(REF, -1).gather(1, out.actions)
    kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    expected = (-(out.rewards * logp) + 0.04 * kl).mean()
    # float32 means over B x G = 128 terms of |r log p + beta kl| < 5: chain_ops(128) x 5 eps = 7e-6
    tol = float_tol(torch.float32, chain_ops(128), 5)
    torch.testing.assert_close(out.loss, expected, rtol=0, atol=tol)
    assert not torch.allclose(results["ratio"][0].loss, expected, atol=1e-3)  # the old logged value differs
    torch.testing.assert_close(grad, results["ratio"][1], rtol=RTOL, atol=ATOL)  # ratio 1: the same gradient
    with pytest.raises(ValueError, match="unclipped"):
        policy_loss(logp, out.rewards, epsilon=0.2, surrogate="logp")


def test_centred_advantages_have_zero_mean_and_unit_std():
    rewards = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    group = compute_advantages(rewards, scale_rewards="group")
    # float32 sums of <= 8 advantages |A| < 2: 8 x 2 eps = 2e-6; the std is 1 - 1e-5 / std(rewards) (the std
    # epsilon; std >= 0.35 here), 3e-5 under 1: 1e-4; unnormalised advantages would have std 0.35 to 0.5
    mean_tol = float_tol(torch.float32, 8, 2)
    assert torch.allclose(group.mean(1), torch.zeros(2), atol=mean_tol)
    assert torch.allclose(group.std(1), torch.ones(2), atol=1e-4)     # Bessel-corrected, as torch.std
    batch = compute_advantages(rewards, scale_rewards="batch")
    assert abs(float(batch.mean())) < mean_tol and abs(float(batch.std()) - 1) < 1e-4
    none = compute_advantages(rewards, scale_rewards="none")
    assert torch.equal(none, rewards - rewards.mean(1, keepdim=True))     # the same float32 formula
    flat = compute_advantages(torch.ones(1, 4))                        # all equal: zero advantage, no NaN
    assert torch.equal(flat, torch.zeros(1, 4))


# ------------------------------------------------------------------------------------------ (c) analytic gradients

def _p_true(logits: torch.Tensor) -> torch.Tensor:
    return F.softmax(logits, -1).gather(1, TARGETS.view(-1, 1)).squeeze(1)


def test_group_normalised_gradient_is_sqrt_p_one_minus_p():
    p = _p_true(BASE)
    dz = true_label_logodds_gradient(logit_gradient("exact", 1, scale_rewards="group", beta=0.0))
    # advantages (1-p)/sigma (right) and -p/sigma (wrong), sigma = sqrt(p(1-p)): the push on z is
    # p(1-p) (A_right - A_wrong) = sqrt(p(1-p)) (1e-5 = the std epsilon); the loss is a mean over B utterances
    expected = p * (1 - p) / (torch.sqrt(p * (1 - p)) + 1e-5) / B
    assert torch.allclose(-dz, expected, rtol=RTOL, atol=ATOL)


def test_batch_normalised_gradient_is_p_one_minus_p_over_sigma():
    p = _p_true(BASE)
    m = p.mean()
    sigma = torch.sqrt(m * (1 - m))  # std of the 0/1 reward over the batch under the policy
    dz = true_label_logodds_gradient(logit_gradient("exact", 1, scale_rewards="batch", beta=0.0))
    assert torch.allclose(-dz, p * (1 - p) / (sigma + 1e-5) / B, rtol=RTOL, atol=ATOL)


def test_no_negative_reward_gradient_is_p_one_minus_p_and_ce_is_one_minus_p():
    p = _p_true(BASE)
    dz = true_label_logodds_gradient(logit_gradient("exact", 1, center=False, beta=0.0))
    assert torch.allclose(-dz, p * (1 - p) / B, rtol=RTOL, atol=ATOL)
    logits = BASE.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, TARGETS), logits)
    assert torch.allclose(-true_label_logodds_gradient(grad), (1 - p) / B, rtol=RTOL, atol=ATOL)


FEATS = torch.randn(B, 5, generator=torch.Generator().manual_seed(3))
W0 = 0.5 * torch.randn(5, 2, generator=torch.Generator().manual_seed(4))


def _sgd_update(estimator: str, g: int, lr: float = 0.1, **options) -> torch.Tensor:
    """Parameter change of one SGD step on the GRPO loss (beta 0, no clipping) of a linear policy."""
    w = W0.clone().requires_grad_(True)
    settings = GRPOSettings(**{"num_generations": g, "estimator": estimator, "epsilon": None, "beta": 0.0,
                               **options})
    out = grpo_loss(CategoricalPolicy(lambda x: x @ w), FEATS, TARGETS, label_reward, settings,
                    generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD([w], lr=lr)
    out.loss.backward()
    optimizer.step()
    return (w.detach() - W0) / lr


@pytest.mark.parametrize("options", [{"center": False}, {"scale_rewards": "none"}, {"scale_rewards": "batch"}],
                         ids=["no-centring", "group-baseline", "batch-scaled"])
def test_update_follows_the_analytic_policy_gradient(options):
    # (c) with beta = 0 and no clipping, an SGD step moves the parameters along grad J, J(w) = mean_b p(y_b | x_b)
    # = the expected 0/1 reward, computed here by plain autograd. A per-utterance baseline does not change the
    # expectation; batch scaling divides it by the batch reward std sqrt(m(1 - m)), m = mean p.
    w = W0.clone().requires_grad_(True)
    p_true = F.softmax(FEATS @ w, -1).gather(1, TARGETS.view(-1, 1))
    (grad_j,) = torch.autograd.grad(p_true.mean(), w)
    m = float(p_true.detach().mean())
    scale = 1.0 / (math.sqrt(m * (1 - m)) + 1e-5) if options.get("scale_rewards") == "batch" else 1.0
    exact = _sgd_update("exact", 1, **options)
    assert torch.allclose(exact, scale * grad_j, rtol=RTOL, atol=ATOL)   # + a 5-wide matmul: still < 100
    sampled = _sgd_update("sampled", 4096, **options)
    cosine = float(F.cosine_similarity(sampled.flatten(), grad_j.flatten(), dim=0))
    # G = 4096 labels per utterance: measured cosine >= 0.9999; 0.99 leaves room for any seed
    assert cosine > 0.99, cosine


def test_clipping_is_inactive_when_the_old_policy_is_the_current_one():
    # epsilon set but no old policy (refresh every step): the ratio is 1, the gradient is GRPO_s's
    unclipped = logit_gradient("exact", 1, beta=0.0)
    clipped = logit_gradient("exact", 1, beta=0.0, epsilon=0.2)
    assert torch.allclose(unclipped, clipped, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------------ clipping, KL, off-policy

def test_clipping_stops_the_gradient_outside_the_trust_region():
    logp = torch.log(torch.tensor([[0.9, 0.5]])).requires_grad_(True)
    old = torch.log(torch.tensor([[0.5, 0.5]]))                    # first ratio 1.8 > 1.2
    adv = torch.tensor([[1.0, 1.0]])
    out = policy_loss(logp, adv, old_logp=old, epsilon=0.2)
    (grad,) = torch.autograd.grad(out.loss, logp)
    assert grad[0, 0] == 0 and grad[0, 1] < 0
    assert float(out.stats["clip_frac"]) == pytest.approx(0.5)
    high = policy_loss(logp, adv, old_logp=old, epsilon=0.2, epsilon_high=1.0)   # DAPO clip-higher: 1.8 < 2.0
    (grad_high,) = torch.autograd.grad(high.loss, logp)
    assert grad_high[0, 0] < 0 and float(high.stats["clip_frac"]) == 0


def test_off_policy_samples_use_probability_as_ratio_and_are_not_clipped():
    p = torch.tensor([[0.3, 0.95]])
    logp = torch.log(p).requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0]])
    off = torch.tensor([[False, True]])
    out = policy_loss(logp, adv, old_logp=logp.detach(), off_policy=off, epsilon=0.2)
    (grad,) = torch.autograd.grad(out.loss, logp)
    # off-policy term -(pi * A)/2: d/dlogp = -pi/2, even though pi / 1 is far outside [0.8, 1.2]
    # a few float32 roundings (exp of log 0.95, products, a mean of 2): 1e-6 relative
    assert grad[0, 1] == pytest.approx(-0.95 / 2, rel=float_tol(torch.float32, 8))
    assert float(out.loss.detach()) == pytest.approx(-(1.0 + 0.95) / 2, rel=float_tol(torch.float32, 8))


def test_mixed_policy_adds_the_truth_to_each_group():
    logits = BASE.clone().requires_grad_(True)
    settings = GRPOSettings(num_generations=8, mixed_policy=True, beta=0.0, epsilon=None)
    out = grpo_loss(CategoricalPolicy(lambda _: logits), None, TARGETS, label_reward, settings,
                    generator=torch.Generator().manual_seed(0))
    assert out.actions.shape == (B, 8) and torch.equal(out.actions[:, -1], TARGETS)
    assert torch.all(out.rewards[:, -1] == 1)
    exact = grpo_loss(CategoricalPolicy(lambda _: logits), None, TARGETS, label_reward,
                      GRPOSettings(num_generations=8, mixed_policy=True, estimator="exact", beta=0.0,
                                   epsilon=None))
    # float32 weights of 8 members, summed: 8 eps (allclose's rtol 1e-5 is above it, 1 / 8 of a member below)
    assert torch.allclose(exact.weights.sum(1), torch.ones(B)) and torch.allclose(exact.weights[:, -1],
                                                                                    torch.full((B,), 1 / 8))


def test_sample_weights_scale_each_inputs_share_of_the_loss():
    # class-balanced GRPO (data.balance: loss): an input's terms are multiplied by its weight
    logp = torch.log(torch.tensor([[0.3, 0.6], [0.5, 0.2]])).requires_grad_(True)
    adv = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    plain = torch.autograd.grad(policy_loss(logp, adv).loss, logp)[0]
    weighted = torch.autograd.grad(policy_loss(logp, adv, sample_weights=torch.tensor([2.0, 0.0])).loss, logp)[0]
    assert torch.allclose(weighted[0], 2 * plain[0], rtol=RTOL, atol=ATOL) and torch.all(weighted[1] == 0)


def test_kl_estimators():
    logp = torch.log(torch.tensor([0.2, 0.5, 0.9]))
    ref = torch.log(torch.tensor([0.4, 0.5, 0.6]))
    k3 = kl_estimate(logp, ref, "k3")
    assert torch.all(k3 >= 0) and k3[1] == 0
    ratio = torch.exp(ref - logp)
    # the same float32 formulas, maybe rearranged: a few roundings of values < 2
    assert torch.allclose(k3, ratio - torch.log(ratio) - 1, rtol=0, atol=float_tol(torch.float32, 8, 2))
    assert torch.allclose(kl_estimate(logp, ref, "k1"), logp - ref, rtol=0, atol=float_tol(torch.float32, 2, 2))
    # exact expectation of k3 under pi equals KL(pi || ref) for a full distribution
    pi, rho = torch.tensor([0.7, 0.3]), torch.tensor([0.4, 0.6])
    expected_k3 = (pi * kl_estimate(pi.log(), rho.log(), "k3")).sum()
    # float32, 2 terms of a few roundings each on values < 1, on a KL of 0.18: 1e-6 relative
    assert float(expected_k3) == pytest.approx(float((pi * (pi / rho).log()).sum()), rel=float_tol(torch.float32, 8))


# ------------------------------------------------------------------------------------------ token sequences

def _sequence_batch():
    torch.manual_seed(0)
    logp = -torch.rand(2, 3, 5)                                   # [B, G, T]
    mask = torch.zeros(2, 3, 5, dtype=torch.bool)
    lengths = torch.tensor([[5, 2, 3], [1, 4, 5]])
    for b in range(2):
        for g in range(3):
            mask[b, g, :lengths[b, g]] = True
    adv = torch.tensor([[1.0, -2.0, 0.5], [3.0, -1.0, 2.0]])
    return logp, mask, lengths.float(), adv


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_token_level_normalisations(loss_type):
    logp, mask, lengths, adv = _sequence_batch()
    logp = logp.clone().requires_grad_(True)
    out = policy_loss(logp, adv, mask=mask, epsilon=0.2, loss_type=loss_type)
    (grad,) = torch.autograd.grad(out.loss, logp)
    # ratio 1: every valid token's loss is -A of its sequence; the normaliser decides each token's weight
    if loss_type == "grpo":
        weight = 1.0 / (lengths * 6)                               # token mean per sequence, mean of 6 sequences
    elif loss_type in ("bnpo", "dapo"):
        weight = torch.full_like(lengths, 1.0 / float(lengths.sum()))   # one process: local = global tokens
    else:
        weight = torch.full_like(lengths, 1.0 / (6 * 5))          # constant: sequences x max tokens
    expected_loss = -(adv * lengths * weight).sum()
    # float32 sums over <= 30 tokens whose weights sum to 1, of |A| <= 3: 30 x 3 eps = 1e-5; the weights of
    # another normalisation differ by factors of 2 to 5
    assert float(out.loss.detach()) == pytest.approx(float(expected_loss), rel=0, abs=float_tol(torch.float32, 30, 3))
    expected_grad = (-adv * weight).unsqueeze(-1) * mask
    assert torch.allclose(grad, expected_grad, rtol=RTOL, atol=ATOL)


def test_one_step_actions_give_the_same_loss_for_every_normalisation():
    logp = torch.log(torch.rand(4, 6, generator=torch.Generator().manual_seed(1)))
    adv = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    values = {t: float(policy_loss(logp, adv, loss_type=t).loss) for t in ("grpo", "bnpo", "dapo", "dr_grpo")}
    # one float32 mean of 24 terms |A| < 3, in other orders: chain_ops(24) x 3 eps = 2e-6
    assert max(values.values()) - min(values.values()) < float_tol(torch.float32, chain_ops(24), 3)

