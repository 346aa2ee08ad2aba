"""GRPO: group-relative policy optimisation (Shao et al. 2024, "DeepSeekMath").

For k samples of a prompt, the advantage of each is its reward standardised within the group,
(r_i - mean(r)) / std(r); the loss is PPO's clipped surrogate with that advantage on every
token, plus beta times the per-token k3 estimate of KL(pi || pi_ref). Rule-based rewards
(a verifier returning 0 or 1) fit it well: only the comparison within the group matters.

How the per-token terms are averaged is ``--loss-aggregation``: ``sequence`` is the paper's
objective (eq. 3: the mean over each output's tokens, then over the group), under which a long
output's tokens each weigh less; ``token`` (the default, kept from earlier versions of rlhflab)
averages over every token of the minibatch, as DAPO (Yu et al. 2025, sec. 3.3) recommends so
that long outputs are not under-weighted.
"""

from __future__ import annotations

import torch

from rlhflab.losses import grpo_advantages
from rlhflab.methods.api import MethodResult
from rlhflab.methods.critic_free import CriticFreeConfig, train_critic_free

GRPOConfig = CriticFreeConfig


def advantages(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """[P, k] group-standardised rewards (the KL is paid in the loss, not here)."""
    return grpo_advantages(scores)


def train_grpo(policy, tokenizer, reward, prompts, config: CriticFreeConfig, **kwargs) -> MethodResult:
    """GRPO on ``policy``; keyword arguments as ``train_critic_free`` (reference, gold, hooks)."""
    return train_critic_free(
        "grpo", policy, tokenizer, reward, prompts, config, advantages=advantages, kl_in_loss=True, **kwargs
    )
