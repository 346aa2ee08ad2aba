"""RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024, "Back to
Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs").

For k samples y_1..y_k of a prompt x, with the KL-penalised sequence reward
R_i = r(x, y_i) - beta * KL_i (KL_i the sampled log-ratio to the reference), the advantage of
y_i is R_i minus the mean of the other k - 1 rewards. No value function: the other samples of
the same prompt are the baseline.
"""

from __future__ import annotations

import torch

from rlhflab.losses import rloo_advantages
from rlhflab.methods.api import MethodResult
from rlhflab.methods.critic_free import CriticFreeConfig, train_critic_free

RLOOConfig = CriticFreeConfig


def advantages(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """[P, k] leave-one-out advantages of the KL-penalised rewards."""
    return rloo_advantages(scores - kl_coef * kl)


def train_rloo(policy, tokenizer, reward, prompts, config: CriticFreeConfig, **kwargs) -> MethodResult:
    """RLOO on ``policy``; keyword arguments as ``train_critic_free`` (reference, gold, hooks)."""
    return train_critic_free(
        "rloo", policy, tokenizer, reward, prompts, config, advantages=advantages, kl_in_loss=False, **kwargs
    )
