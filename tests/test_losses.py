"""Losses and estimators against hand-computed values, gradients and invariances."""

import math

import pytest
import torch

from rlhflab.core.estimators import (
    explained_variance,
    gae,
    grpo_advantages,
    kl_estimators,
    kl_negative_beyond_noise,
    kl_penalized_rewards,
    masked_mean,
    rloo_advantages,
    whiten,
)
from rlhflab.core.losses import (
    bradley_terry_loss,
    categorical_entropy,
    clipped_pg_loss,
    clipped_surrogate,
    conservative_dpo_loss,
    dpo_loss,
    ipo_loss,
    ppo_policy_loss,
    ppo_value_loss,
)

LN2 = math.log(2)


def test_bradley_terry_hand_values():
    loss, m = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), label=torch.tensor([1.0, 0.5]))
    # pair 1: -log sigmoid(1) = log(1 + e^-1); pair 2 (tie): -(0.5 log .5 + 0.5 log .5) = log 2
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-1)) + LN2) / 2, abs=1e-7)
    assert m["accuracy"] == 1.0  # ties do not count towards accuracy
    assert m["margin"] == pytest.approx(0.5)


def test_bradley_terry_symmetry_and_default_label():
    rc, rr = torch.tensor([0.3, -1.2, 2.0]), torch.tensor([0.1, 0.4, -0.5])
    a, _ = bradley_terry_loss(rc, rr)
    b, _ = bradley_terry_loss(rr, rc, label=torch.zeros(3))  # swapped pair, label 0: same likelihood
    assert a.item() == pytest.approx(b.item(), abs=1e-7)
    _, m = bradley_terry_loss(rc, rr)
    assert m["accuracy"] == pytest.approx(2 / 3)
    # invariant to adding a constant to every reward
    c, _ = bradley_terry_loss(rc + 5.0, rr + 5.0)
    assert a.item() == pytest.approx(c.item(), abs=1e-6)


def test_bradley_terry_gradcheck():
    rc = torch.randn(4, dtype=torch.float64, requires_grad=True)
    rr = torch.randn(4, dtype=torch.float64, requires_grad=True)
    label = torch.tensor([1.0, 0.5, 1.0, 0.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: bradley_terry_loss(a, b, label=label)[0], (rc, rr))


def test_kl_estimators_hand_values():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    logp_ref = torch.log(torch.tensor([[0.25, 0.5]]))
    kl = kl_estimators(logp, logp_ref, torch.ones(1, 2))
    # token 1: log r = -ln2 -> k1 = ln2, k3 = -0.5 + ln2; token 2: log r = ln2 -> k1 = -ln2, k3 = 1 - ln2
    assert kl["k1"].item() == pytest.approx(0.0, abs=1e-7)
    assert kl["k2"].item() == pytest.approx(LN2**2, abs=1e-6)
    assert kl["k3"].item() == pytest.approx(0.5, abs=1e-6)


def test_kl_estimators_zero_when_policy_equals_reference_and_masking():
    logp = torch.log_softmax(torch.randn(3, 5), -1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float)
    for value in kl_estimators(logp, logp.clone(), mask).values():
        assert torch.equal(value, torch.zeros(3))
    # masked positions never count, whatever they hold
    other = logp - 1.0
    a = kl_estimators(logp, other, mask)
    b = kl_estimators(torch.where(mask.bool(), logp, torch.tensor(9.0)), torch.where(mask.bool(), other, -9.0), mask)
    for k in a:
        assert torch.allclose(a[k], b[k])


def test_kl_estimators_are_unbiased_on_a_discrete_distribution():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])
    exact = float((p * (p / q).log()).sum())
    g = torch.Generator().manual_seed(0)
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    est = kl_estimators(p.log()[x][:, None], q.log()[x][:, None], torch.ones(len(x), 1))
    assert est["k1"].mean().item() == pytest.approx(exact, abs=0.01)
    assert est["k3"].mean().item() == pytest.approx(exact, abs=0.01)
    assert (est["k3"] >= 0).all()


def test_kl_penalized_rewards_hand_values():
    rewards = kl_penalized_rewards(
        score=torch.tensor([2.0, -1.0]),
        logp=torch.tensor([[-1.0, -1.0, 0.0], [-0.5, -3.0, -3.0]]),
        logp_ref=torch.tensor([[-2.0, -1.0, 0.0], [-1.5, -3.0, -3.0]]),
        mask=torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
        kl_coef=0.5,
    )
    assert torch.allclose(rewards, torch.tensor([[-0.5, 2.0, 0.0], [-1.5, 0.0, 0.0]]))


def test_gae_hand_values():
    adv, ret = gae(
        torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.6, 0.7]]), torch.ones(1, 3), gamma=1.0, lam=0.5
    )
    assert torch.allclose(adv, torch.tensor([[0.225, 0.25, 0.3]]))
    assert torch.allclose(ret, torch.tensor([[0.725, 0.85, 1.0]]))
    # lambda = 1 with zero values: discounted reward-to-go
    adv, _ = gae(torch.tensor([[1.0, 0.0, 2.0]]), torch.zeros(1, 3), torch.ones(1, 3), gamma=0.9, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[1 + 0.9 * 1.8, 1.8, 2.0]]))


def test_gae_padding_equals_slicing():
    torch.manual_seed(0)
    r, v = torch.randn(1, 4), torch.randn(1, 4)
    short_adv, short_ret = gae(r, v, torch.ones(1, 4), gamma=0.97, lam=0.9)
    padded_r = torch.cat([r, torch.randn(1, 3)], 1)
    padded_v = torch.cat([v, torch.randn(1, 3)], 1)
    mask = torch.tensor([[1.0] * 4 + [0.0] * 3])
    adv, ret = gae(padded_r, padded_v, mask, gamma=0.97, lam=0.9)
    assert torch.allclose(adv[:, :4], short_adv) and torch.allclose(ret[:, :4], short_ret)
    assert torch.equal(adv[:, 4:], torch.zeros(1, 3)) and torch.equal(ret[:, 4:], torch.zeros(1, 3))


def test_whiten_hand_values_and_masking():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, mask)
    std = math.sqrt(5 / 3)  # unbiased variance of 1..4 is 5/3
    assert torch.allclose(w, torch.tensor([[-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std, 0.0]]), atol=1e-6)
    keep = whiten(x, mask, shift_mean=False)
    assert masked_mean(keep, mask).item() == pytest.approx(2.5, abs=1e-6)


def test_ppo_policy_loss_hand_values():
    logp_old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[1.5, 0.5]]))
    loss, m = ppo_policy_loss(logp, logp_old, torch.ones(1, 2), torch.ones(1, 2), 0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2, abs=1e-6)  # ratio 1.5 clipped to 1.2; 0.5 kept
    assert m["clipfrac"] == 0.5
    loss, m = ppo_policy_loss(logp, logp_old, -torch.ones(1, 2), torch.ones(1, 2), 0.2)
    assert loss.item() == pytest.approx((1.5 + 0.8) / 2, abs=1e-6)  # negative advantage: 0.5 clipped to 0.8
    assert m["clipfrac"] == 0.5


def test_ppo_policy_gradient_at_ratio_one_is_the_policy_gradient():
    adv = torch.tensor([[0.3, -1.0, 2.0]])
    logp = torch.zeros(1, 3, requires_grad=True)
    loss, m = ppo_policy_loss(logp, torch.zeros(1, 3), adv, torch.ones(1, 3), 0.2)
    loss.backward()
    assert torch.allclose(logp.grad, -adv / 3)
    assert m["clipfrac"] == 0.0 and m["approxkl"] == 0.0


def test_ppo_policy_loss_gradcheck():
    logp = (torch.randn(2, 3, dtype=torch.float64) * 0.05).requires_grad_()
    adv = torch.randn(2, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda lp: ppo_policy_loss(lp, torch.zeros_like(lp), adv, mask, 0.2)[0], (logp,))


def test_ppo_value_loss_hand_values():
    loss, m = ppo_value_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]]), torch.ones(1, 1), 0.2)
    assert loss.item() == pytest.approx(0.5 * (0.2 - 2.0) ** 2)  # the clipped error (1.8^2) is larger
    assert m["clipfrac"] == 1.0
    loss, m = ppo_value_loss(torch.tensor([[0.1]]), torch.tensor([[0.0]]), torch.tensor([[2.0]]), torch.ones(1, 1), 0.2)
    assert loss.item() == pytest.approx(0.5 * 1.9**2) and m["clipfrac"] == 0.0


def test_explained_variance_and_entropy():
    target = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 4)
    assert float(explained_variance(target, target, mask)) == pytest.approx(1.0)
    assert float(explained_variance(torch.full_like(target, 2.5), target, mask)) == pytest.approx(0.0, abs=1e-6)
    assert categorical_entropy(torch.log_softmax(torch.zeros(2, 4), -1)).allclose(torch.full((2,), math.log(4)))
    assert categorical_entropy(torch.log_softmax(torch.tensor([[0.0, -1e9]]), -1)).item() == pytest.approx(
        0.0, abs=1e-6
    )


# ---------------------------------------------------------------- DPO, IPO, critic-free


def test_dpo_hand_values():
    args = torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5])
    loss, m = dpo_loss(*args, beta=0.1)  # h = 0.5 - (-0.5) = 1
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.1)), abs=1e-7)
    assert m == {"accuracy": 1.0, "margin": pytest.approx(0.1)}
    same = torch.tensor([-3.0, -0.2])
    assert dpo_loss(same, same, same, same, beta=5.0)[0].item() == pytest.approx(LN2)  # policy = reference
    # swapping chosen and rejected with label 0 is the same likelihood
    c, r = torch.tensor([-1.0, -4.0]), torch.tensor([-2.0, -1.0])
    a, _ = dpo_loss(c, r, r, c, beta=0.3)
    b, _ = dpo_loss(r, c, c, r, beta=0.3, label=torch.zeros(2))
    assert a.item() == pytest.approx(b.item())


def test_conservative_dpo_hand_value():
    loss, _ = conservative_dpo_loss(
        torch.tensor([1.0]),
        torch.tensor([0.0]),
        torch.tensor([0.0]),
        torch.tensor([0.0]),
        beta=1.0,
        label_smoothing=0.1,
    )
    assert loss.item() == pytest.approx(0.9 * math.log(1 + math.exp(-1)) + 0.1 * math.log(1 + math.exp(1)), abs=1e-7)


def test_ipo_hand_values():
    h_one = torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0])
    assert ipo_loss(*h_one, beta=0.5)[0].item() == pytest.approx(0.0)  # target 1 / (2 * 0.5)
    assert ipo_loss(*h_one, beta=1.0)[0].item() == pytest.approx(0.25)
    assert ipo_loss(*h_one, beta=1.0, label=torch.tensor([0.5]))[0].item() == pytest.approx(1.0)  # a tie wants h = 0


def test_dpo_and_ipo_gradcheck():
    x = [torch.randn(3, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    assert torch.autograd.gradcheck(lambda a, b, c, d: dpo_loss(a, b, c, d, 0.3)[0], x)
    assert torch.autograd.gradcheck(lambda a, b, c, d: ipo_loss(a, b, c, d, 0.3)[0], x)


def test_rloo_and_grpo_advantages_hand_values():
    r = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    assert torch.allclose(rloo_advantages(r), torch.tensor([[-1.5, 0.0, 1.5], [0.0, 0.0, 0.0]]))
    assert torch.allclose(grpo_advantages(r, eps=0.0)[0], torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.equal(grpo_advantages(r)[1], torch.zeros(3))  # a group with one reward teaches nothing
    with pytest.raises(ValueError):
        rloo_advantages(torch.ones(4, 1))


def test_clipped_pg_loss_is_reinforce_at_ratio_one_and_adds_k3():
    adv = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    logp = torch.zeros(2, 2, requires_grad=True)
    loss, m = clipped_pg_loss(logp, torch.zeros(2, 2), adv, mask, 0.2)
    loss.backward()
    assert torch.allclose(logp.grad, -adv[:, None] * mask / 3)  # each counted token: -A / (counted tokens)
    ref = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    pol = torch.log(torch.tensor([[0.25, 0.5], [0.5, 0.9]]))
    loss_kl, m = clipped_pg_loss(pol, pol, torch.zeros(2), mask, 0.2, logp_ref=ref, kl_coef=1.0)
    k3_first = (2.0 - 1) - math.log(2.0)  # r = 0.5 / 0.25
    assert m["kl_k3"] == pytest.approx(k3_first / 3, abs=1e-6) and loss_kl.item() == pytest.approx(
        k3_first / 3, abs=1e-6
    )


def test_conservative_dpo_flips_the_given_label_not_a_hard_one():
    """The review's defect: a soft label 0.6 and a hard label 1.0 gave the same cDPO loss."""
    args = torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0])  # h = 1, beta = 1
    eps = 0.1

    def expected(p: float) -> float:
        target = (1 - eps) * p + eps * (1 - p)
        return target * math.log(1 + math.exp(-1)) + (1 - target) * math.log(1 + math.exp(1))

    for p in (1.0, 0.6, 0.5, 0.0):
        loss, _ = conservative_dpo_loss(*args, beta=1.0, label_smoothing=eps, label=torch.tensor([p]))
        assert loss.item() == pytest.approx(expected(p), abs=1e-7)
    soft = conservative_dpo_loss(*args, beta=1.0, label_smoothing=eps, label=torch.tensor([0.6]))[0]
    hard = conservative_dpo_loss(*args, beta=1.0, label_smoothing=eps, label=torch.tensor([1.0]))[0]
    assert soft.item() != pytest.approx(hard.item())
    # epsilon 0 is plain DPO with the same labels
    label = torch.tensor([0.6])
    assert conservative_dpo_loss(*args, 1.0, 0.0, label=label)[0].item() == pytest.approx(
        dpo_loss(*args, 1.0, label=label)[0].item()
    )


@pytest.mark.parametrize("loss_fn", [dpo_loss, ipo_loss])
def test_preference_accuracy_reads_the_label(loss_fn):
    """The review's defect: DPO and IPO 'accuracy' counted h > 0 whatever the label said."""
    c, r, ref = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]), torch.zeros(3)  # h = 1, 1, -1
    _, m = loss_fn(c, r, ref, ref, 0.5, label=torch.tensor([1.0, 0.0, 0.0]))
    assert m["accuracy"].item() == pytest.approx(2 / 3)  # right, wrong (label 0, h > 0), right (label 0, h < 0)
    _, m = loss_fn(c, r, ref, ref, 0.5, label=torch.tensor([1.0, 0.5, 0.5]))  # ties do not count
    assert m["accuracy"].item() == 1.0
    _, m = conservative_dpo_loss(c, r, ref, ref, 0.5, 0.1, label=torch.tensor([0.0, 0.0, 0.0]))
    assert m["accuracy"].item() == pytest.approx(1 / 3)


def test_clipped_pg_loss_token_and_sequence_aggregation_hand_values():
    """'token': one mean over every counted token; 'sequence' (DeepSeekMath eq. 3): mean per sequence, then
    over sequences. A 1-token sequence with advantage -1 and a 3-token one with advantage 2, at ratio 1:"""
    adv = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    zeros = torch.zeros(2, 3)
    token, _ = clipped_pg_loss(zeros, zeros, adv, mask, 0.2, aggregation="token")
    sequence, _ = clipped_pg_loss(zeros, zeros, adv, mask, 0.2, aggregation="sequence")
    assert token.item() == pytest.approx(-(2.0 * 3 - 1.0) / 4)  # -1.25
    assert sequence.item() == pytest.approx(-(2.0 + -1.0) / 2)  # -0.5
    # equal lengths: the two agree
    full = torch.ones(2, 3)
    a = clipped_pg_loss(zeros, zeros, adv, full, 0.2, aggregation="token")[0]
    b = clipped_pg_loss(zeros, zeros, adv, full, 0.2, aggregation="sequence")[0]
    assert a.item() == pytest.approx(b.item())
    with pytest.raises(ValueError, match="aggregation"):
        clipped_pg_loss(zeros, zeros, adv, mask, 0.2, aggregation="bogus")


def test_metrics_are_tensors_not_host_syncs():
    _, m = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]))
    _, p = ppo_policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), 0.2)
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in [*m.values(), *p.values()])


def test_estimators_return_tensors_not_python_numbers():
    """The contract: tensors out (a Python number would be a host sync on an accelerator)."""
    mask = torch.ones(1, 3)
    x = torch.tensor([[1.0, 2.0, 4.0]])
    assert isinstance(explained_variance(x, x, mask), torch.Tensor)
    flag = kl_negative_beyond_noise(torch.full((8,), -1.0))
    assert isinstance(flag, torch.Tensor) and flag.dtype == torch.bool and bool(flag)


def test_optional_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        gae(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), 0.9, 0.9)
    with pytest.raises(TypeError):
        clipped_pg_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2), 0.2, None, 0.1)


def test_ppo_and_critic_free_losses_share_the_clipped_surrogate():
    """With one advantage per sequence repeated on its tokens and no KL term, the critic-free loss is PPO's."""
    g = torch.Generator().manual_seed(0)
    logp, logp_old = torch.randn(3, 4, generator=g) * 0.3, torch.randn(3, 4, generator=g) * 0.3
    adv, mask = torch.randn(3, generator=g), torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    a, ma = ppo_policy_loss(logp, logp_old, adv[:, None].expand(3, 4), mask, 0.2)
    b, mb = clipped_pg_loss(logp, logp_old, adv, mask, 0.2)
    assert torch.equal(a, b) and torch.equal(ma["clipfrac"], mb["clipfrac"])
    per_token, clipped = clipped_surrogate(logp, logp_old, adv[:, None].expand(3, 4), 0.2)
    ratio = torch.exp(logp - logp_old)
    assert torch.allclose(per_token, -adv[:, None] * torch.where(clipped, ratio.clamp(0.8, 1.2), ratio))
