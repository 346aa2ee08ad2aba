"""RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024, "Back to
Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs").

For k samples y_1..y_k of a prompt x, with the KL-penalised sequence reward

    R_i = r(x, y_i) - beta * KL_i        (KL_i: the sampled log-ratio to the reference, k1, summed over tokens)

the advantage of y_i is R_i minus the mean of the other k - 1 rewards. No value function: the other samples of
the same prompt are the baseline. The KL is paid in the reward, never in the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhflab.core.config import check
from rlhflab.core.estimators import rloo_advantages
from rlhflab.core.loop import MethodResult
from rlhflab.methods.critic_free import GroupConfig, Objective, train_critic_free
from rlhflab.methods.registry import Method, on_prompts, register


@dataclass(frozen=True)
class RLOOConfig(GroupConfig):
    reward_kl_coef: float = 0.05
    """beta: each sample's summed KL to the reference (k1) is subtracted from its reward, R = r - beta * KL,
    before the leave-one-out baseline."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.reward_kl_coef >= 0, "reward_kl_coef", self.reward_kl_coef, ">= 0")


def objective(config: RLOOConfig) -> Objective:
    """Leave-one-out advantages of the KL-penalised rewards; no KL term in the loss."""

    def advantages(scores: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:  # [P, k], [P, k] -> [P, k]
        return rloo_advantages(scores - config.reward_kl_coef * kl)

    return Objective(advantages=advantages, kl_coef=config.reward_kl_coef, kl_in_loss=False)


def train_rloo(policy, tokenizer, reward, prompts, config: RLOOConfig, **kwargs) -> MethodResult:
    """RLOO on ``policy``; keyword arguments as ``train_critic_free`` (reference, gold, hooks)."""
    return train_critic_free("rloo", policy, tokenizer, reward, prompts, config, objective=objective(config), **kwargs)


register(
    Method(
        name="rloo", config=RLOOConfig, optimize=on_prompts(train_rloo), data="reward", output="policy",
        kl_knob="reward_kl_coef",
        doc="RLOO: REINFORCE with a leave-one-out baseline -> RUN/policy.",
    )
)  # fmt: skip
