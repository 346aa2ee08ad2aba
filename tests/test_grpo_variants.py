"""GRPO's loss variants (Dr GRPO, DAPO, GSPO): hand-computed values, invariances, TRL's own arithmetic on the same
tensors, and a run of each on the micro model."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from conftest import good_minus_bad

from rlhflab.core.config import build
from rlhflab.core.errors import ConfigError
from rlhflab.core.estimators import dr_grpo_advantages, grpo_advantages, informative_groups, overlong_penalty
from rlhflab.core.losses import clipped_pg_loss, dapo_loss, dr_grpo_loss, gspo_loss

MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # outputs of 2 and 1 tokens


def test_dr_grpo_advantages_are_centred_not_scaled():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, 1.0, 1.0, 1.0]])
    assert torch.equal(dr_grpo_advantages(r), torch.tensor([[0.5, -0.5, -0.5, 0.5], [1.5, -0.5, -0.5, -0.5]]))
    assert torch.equal(dr_grpo_advantages(r * 10), dr_grpo_advantages(r) * 10)  # GRPO's would not move
    assert torch.allclose(grpo_advantages(r * 10), grpo_advantages(r), atol=1e-3)
    with pytest.raises(ValueError):
        dr_grpo_advantages(torch.ones(3, 1))


def test_dr_grpo_loss_divides_by_a_constant_not_by_lengths():
    logp = torch.log(torch.full((2, 3), 0.5))
    adv = torch.tensor([1.0, -1.0])
    loss, m = dr_grpo_loss(logp, logp, adv, MASK, 0.2, max_tokens=4)
    assert loss.item() == pytest.approx((-1 * 2 + 1 * 1) / (2 * 4))  # ratio 1: per-token loss is -A
    seq, _ = clipped_pg_loss(logp, logp, adv, MASK, 0.2, aggregation="sequence")
    tok, _ = clipped_pg_loss(logp, logp, adv, MASK, 0.2, aggregation="token")
    assert seq.item() == pytest.approx(0.0) and tok.item() == pytest.approx(-1 / 3)
    assert m["clipfrac"].item() == 0.0
    ref = logp - 0.1  # the k3 term: exp(-0.1) - 1 + 0.1 per counted token, same normaliser
    with_kl, _ = dr_grpo_loss(logp, logp, adv, MASK, 0.2, 4, logp_ref=ref, kl_coef=0.5)
    k3 = math.exp(-0.1) - 1 + 0.1
    assert with_kl.item() == pytest.approx(loss.item() + 0.5 * k3 * 3 / 8)
    with pytest.raises(ValueError):
        dr_grpo_loss(logp, logp, adv, MASK, 0.2, max_tokens=0)


def test_dapo_clip_higher_lets_a_positive_ratio_grow_further():
    old = torch.zeros(1, 2)
    new = torch.full((1, 2), math.log(1.25))  # ratio 1.25 on both tokens
    adv, mask = torch.tensor([1.0]), torch.ones(1, 2)
    loss, m = dapo_loss(new, old, adv, mask, clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx(-1.25) and m["clipfrac"].item() == 0.0
    symmetric, m2 = dapo_loss(new, old, adv, mask, clip_low=0.2, clip_high=0.2)
    assert symmetric.item() == pytest.approx(-1.2) and m2["clipfrac"].item() == 1.0
    low = torch.full((1, 2), math.log(0.7))  # a negative advantage clips at 1 - clip_low either way
    assert dapo_loss(low, old, -adv, mask)[0].item() == pytest.approx(0.8)
    tok, _ = clipped_pg_loss(new, old, adv, mask, 0.2)  # equal clips: DAPO is GRPO's token mean without a KL
    assert symmetric.item() == pytest.approx(tok.item())


def test_gspo_uses_one_ratio_a_sequence():
    old = torch.zeros(2, 3)
    new = torch.tensor([[0.1, -0.1, 5.0], [2e-3, 0.0, 0.0]])  # row 0: tokens' log-ratios average 0 (third masked)
    adv = torch.tensor([2.0, 1.0])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    new.requires_grad_(True)
    loss, m = gspo_loss(new, old, adv, mask, clip_low=3e-4, clip_high=4e-4)
    # row 0: s = exp(0) = 1 -> -2; row 1: s = exp(1e-3) > 1 + 4e-4, positive advantage: clipped at 1.0004 -> -1.0004
    assert loss.item() == pytest.approx((-2.0 - 1.0004) / 2)
    assert m["clipfrac"].item() == 0.5
    loss.backward()
    assert torch.all(new.grad[1] == 0) and torch.all(new.grad[0, 2] == 0)  # clipped row, masked token: no gradient
    assert new.grad[0, 0].item() == pytest.approx(new.grad[0, 1].item())  # one ratio: every token moves together


def test_dynamic_sampling_and_overlong_shaping_hand_values():
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    assert informative_groups(r).tolist() == [False, True, False]
    pen = overlong_penalty(torch.tensor([5, 6, 8, 10, 12]), max_tokens=10, buffer=4)
    assert pen.tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0, -1.0])
    with pytest.raises(ValueError):
        overlong_penalty(torch.tensor([1]), max_tokens=10, buffer=11)


# ---------------------------------------------------------------- TRL's arithmetic on the same tensors


def _trl_loss(loss_type: str, logp, old, adv, mask, *, low, high, level="token", max_tokens=None):
    trl = pytest.importorskip("trl")
    accelerator = SimpleNamespace(num_processes=1, gather=lambda x: x, reduce=lambda x, reduction: x)
    trainer = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level, beta=0.0,
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1), loss_type=loss_type,
        epsilon_low=low, epsilon_high=high, use_vllm=False, model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, max_completion_length=max_tokens, aux_loss_enabled=False,
        _entropy_bonus_enabled=False, accelerator=accelerator, _metrics=defaultdict(lambda: defaultdict(list)),
    )  # fmt: skip
    inputs = {
        "prompt_ids": torch.zeros(logp.shape[0], 2, dtype=torch.long), "prompt_mask": torch.ones(logp.shape[0], 2),
        "completion_ids": torch.zeros_like(logp, dtype=torch.long), "completion_mask": mask,
        "advantages": adv, "old_per_token_logps": old, "num_items_in_batch": mask.sum(),
    }  # fmt: skip
    return trl.GRPOTrainer._compute_loss(trainer, None, inputs)


def _tensors(seed):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(4, 5, generator=g, dtype=torch.float64) * 3
    logp = old + (torch.rand(4, 5, generator=g, dtype=torch.float64) - 0.5) * 0.8
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float64)
    adv = torch.randn(4, generator=g, dtype=torch.float64)
    return logp, old, adv, mask


@pytest.mark.parametrize("seed", [0, 1])
def test_variants_match_trl(seed):
    logp, old, adv, mask = _tensors(seed)
    ours = dr_grpo_loss(logp, old, adv, mask, 0.2, max_tokens=7)[0]
    assert ours.item() == pytest.approx(
        _trl_loss("dr_grpo", logp, old, adv, mask, low=0.2, high=0.2, max_tokens=7).item()
    )
    ours = dapo_loss(logp, old, adv, mask, 0.2, 0.28)[0]
    assert ours.item() == pytest.approx(_trl_loss("dapo", logp, old, adv, mask, low=0.2, high=0.28).item())
    ours = gspo_loss(logp, old, adv, mask, 0.05, 0.08)[0]  # clips wide enough that some rows clip and some do not
    trl = _trl_loss("grpo", logp, old, adv, mask, low=0.05, high=0.08, level="sequence")
    assert ours.item() == pytest.approx(trl.item())


# ---------------------------------------------------------------- GRPO with each variant


@pytest.mark.parametrize("loss_type", ["dr_grpo", "dapo", "gspo"])
def test_grpo_trains_with_each_variant(loss_type, micro_model, task):
    from rlhflab.core.loop import Hooks
    from rlhflab.methods.grpo import GRPOConfig, train_grpo
    from rlhflab.models.loading import load_policy

    policy, tokenizer = load_policy(micro_model)
    before = [p.detach().clone() for p in policy.parameters()]
    config = build(GRPOConfig, steps=2, prompts_per_step=4, samples_per_prompt=2, minibatch_size=8, max_new_tokens=6,
                   lr=1e-2, loss_type=loss_type, overlong_buffer=3 if loss_type == "dapo" else 0)  # fmt: skip
    rows = []
    train_grpo(policy, tokenizer, good_minus_bad, task.train_prompts, config,
               hooks=Hooks(metrics=rows.append, progress=False))  # fmt: skip
    assert len(rows) == 2 and all(math.isfinite(r["pg/loss"]) for r in rows)
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_dapo_learns_nothing_from_groups_of_equal_rewards(micro_model, task):
    from rlhflab.core.loop import Hooks
    from rlhflab.methods.grpo import GRPOConfig, train_grpo
    from rlhflab.models.loading import load_policy

    policy, tokenizer = load_policy(micro_model)
    before = [p.detach().clone() for p in policy.parameters()]
    config = build(GRPOConfig, steps=1, prompts_per_step=4, samples_per_prompt=2, minibatch_size=8,
                   max_new_tokens=6, lr=1e-2, loss_type="dapo")  # fmt: skip
    train_grpo(policy, tokenizer, lambda p, c: [1.0] * len(c), task.train_prompts, config, hooks=Hooks(progress=False))
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_variant_settings_are_checked():
    from rlhflab.methods.grpo import GRPOConfig

    with pytest.raises(ConfigError, match="loss_type"):
        build(GRPOConfig, loss_type="ppo")
    with pytest.raises(ConfigError, match="overlong-buffer"):
        build(GRPOConfig, loss_type="grpo", overlong_buffer=4)
    with pytest.raises(ConfigError, match="overlong-buffer"):
        build(GRPOConfig, loss_type="dapo", overlong_buffer=10_000)
