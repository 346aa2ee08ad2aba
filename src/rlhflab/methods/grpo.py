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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhflab.core.config import check
from rlhflab.core.estimators import grpo_advantages
from rlhflab.core.loop import MethodResult
from rlhflab.methods.critic_free import GroupConfig, Objective, train_critic_free
from rlhflab.methods.registry import Method, on_prompts, register


@dataclass(frozen=True)
class GRPOConfig(GroupConfig):
    loss_kl_coef: float = 0.05
    """beta: weight of the per-token k3 estimate of KL(pi || pi_ref) added to the loss (Shao et al. eq. 3)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.loss_kl_coef >= 0, "loss_kl_coef", self.loss_kl_coef, ">= 0")


def objective(config: GRPOConfig) -> Objective:
    """Group-standardised rewards as advantages; the KL as a per-token term of the loss."""

    def advantages(scores: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:  # [P, k], [P, k] -> [P, k]
        return grpo_advantages(scores)

    return Objective(advantages=advantages, kl_coef=config.loss_kl_coef, kl_in_loss=True)


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
