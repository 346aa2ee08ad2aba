"""GRPO: group-relative policy optimisation (Shao et al. 2024, "DeepSeekMath").

For k samples of a prompt, the advantage of each is its reward standardised within the group,

    A_i = (r_i - mean(r)) / std(r)

and the loss is PPO's clipped surrogate with that advantage on every token, plus beta times the per-token k3
estimate of KL(pi || pi_ref) (eq. 3). The KL is paid in the loss, never in the reward. Rule-based rewards (a
verifier returning 0 or 1) fit it well: only the comparison within the group matters.

How the per-token terms are averaged is ``--loss-aggregation``: ``sequence`` is the paper's objective (the mean
over each output's tokens, then over the group), under which a long output's tokens each weigh less; ``token``
(the default) averages over every token of the minibatch, as DAPO (Yu et al. 2025, sec. 3.3) recommends so that
long outputs are not under-weighted.

``--loss-type`` picks a variant of the objective (each a pure function in ``core.losses``/``core.estimators``):
``grpo`` (the above), ``dr_grpo`` (Liu et al. 2025: advantages not divided by the group's std, the per-token
terms summed and divided by a constant), ``dapo`` (Yu et al. 2025: decoupled clip with ``clip_range_high``,
token mean, no KL, groups of equal rewards dropped from the update, and with ``overlong_buffer`` > 0 the soft
overlong penalty on the reward; dynamic sampling here drops those groups and does not sample more to refill
the batch, as the paper does) and ``gspo`` (Zheng et al. 2025: one clipped ratio a sequence; the paper clips it
to [1 - 3e-4, 1 + 4e-4]: ``--clip-range 3e-4 --clip-range-high 4e-4``). DAPO and GSPO have no KL term, so
``loss_kl_coef`` does not apply to them (the KL to the reference is still measured and logged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhflab.core import losses
from rlhflab.core.config import check
from rlhflab.core.estimators import dr_grpo_advantages, grpo_advantages, informative_groups, overlong_penalty
from rlhflab.core.loop import MethodResult
from rlhflab.methods.critic_free import GroupConfig, Objective, train_critic_free
from rlhflab.methods.registry import Method, on_prompts, register


@dataclass(frozen=True)
class GRPOConfig(GroupConfig):
    loss_kl_coef: float = 0.05
    """beta: weight of the per-token k3 estimate of KL(pi || pi_ref) added to the loss (Shao et al. eq. 3)."""
    loss_type: Literal["grpo", "dr_grpo", "dapo", "gspo"] = "grpo"
    """grpo; dr_grpo (centred advantages, a constant normaliser); dapo (clip-higher, token mean, no KL, groups of
    equal rewards dropped); gspo (one clipped ratio a sequence)."""
    clip_range_high: float | None = None
    """The upper clip's eps when it differs from clip_range (dapo; default there 0.28) or gspo's upper clip."""
    overlong_buffer: int = 0
    """dapo: the last tokens of the budget over which the soft overlong penalty falls to -1 (0: none)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.loss_kl_coef >= 0, "loss_kl_coef", self.loss_kl_coef, ">= 0")
        check(self.loss_type in ("grpo", "dr_grpo", "dapo", "gspo"), "loss_type", self.loss_type,
              "one of grpo, dr_grpo, dapo, gspo")  # fmt: skip
        check(self.clip_range_high is None or self.clip_range_high > 0, "clip_range_high", self.clip_range_high, "> 0")
        check(0 <= self.overlong_buffer <= self.sampling.max_new_tokens, "overlong_buffer", self.overlong_buffer,
              f"in [0, max_new_tokens={self.sampling.max_new_tokens}]")  # fmt: skip
        check(self.overlong_buffer == 0 or self.loss_type == "dapo", "overlong_buffer", self.overlong_buffer,
              "0 unless --loss-type is dapo")  # fmt: skip


def objective(config: GRPOConfig) -> Objective:
    """Group-standardised rewards as advantages; the KL as a per-token term of the loss (and the variants')."""
    beta, kind = config.loss_kl_coef, config.loss_type
    if kind == "dr_grpo":
        tokens = config.sampling.max_new_tokens
        return Objective(
            advantages=lambda scores, kl: dr_grpo_advantages(scores), kl_coef=beta, kl_in_loss=True,
            loss=lambda logp, old, adv, mask, ref: losses.dr_grpo_loss(
                logp, old, adv, mask, config.clip_range, tokens, logp_ref=ref, kl_coef=beta),
        )  # fmt: skip
    if kind == "dapo":
        high, tokens, buffer = config.clip_range_high or 0.28, config.sampling.max_new_tokens, config.overlong_buffer
        return Objective(
            advantages=lambda scores, kl: grpo_advantages(scores), kl_coef=0.0, kl_in_loss=True,
            loss=lambda logp, old, adv, mask, ref: losses.dapo_loss(logp, old, adv, mask, config.clip_range, high),
            shape_scores=(lambda s, n: s + overlong_penalty(n, tokens, buffer)) if buffer else None,
            keep_groups=informative_groups,
        )  # fmt: skip
    if kind == "gspo":
        low, high = config.clip_range, config.clip_range_high or config.clip_range
        return Objective(
            advantages=lambda scores, kl: grpo_advantages(scores), kl_coef=0.0, kl_in_loss=True,
            loss=lambda logp, old, adv, mask, ref: losses.gspo_loss(logp, old, adv, mask, low, high),
        )  # fmt: skip
    return Objective(advantages=lambda scores, kl: grpo_advantages(scores), kl_coef=beta, kl_in_loss=True)


def train_grpo(policy, tokenizer, reward, prompts, config: GRPOConfig, **kwargs) -> MethodResult:
    """GRPO on ``policy``; keyword arguments as ``train_critic_free`` (reference, gold, hooks)."""
    return train_critic_free("grpo", policy, tokenizer, reward, prompts, config, objective=objective(config), **kwargs)


register(
    Method(
        name="grpo", config=GRPOConfig, optimize=on_prompts(train_grpo), data="reward", output="policy",
        kl_knob="loss_kl_coef",
        doc="GRPO: group-standardised advantages, clipped, per-token KL in the loss -> RUN/policy.",
    )
)  # fmt: skip
