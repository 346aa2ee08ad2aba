"""Estimators of RLHF as pure functions of tensors: masked statistics, KL estimates, advantages.

Each function takes tensors and returns a tensor (or a dict of tensors); none touches a model, a config or a
logger, and none returns a Python number (that would be a host sync on an accelerator); callers reduce and log.
Shapes: ``B`` batch, ``T`` response tokens, ``P`` prompts, ``k`` samples per prompt. ``mask`` is 1 on response
tokens that count (up to and including the end-of-sequence token) and 0 on padding.
"""

from __future__ import annotations

import torch

# ---------------------------------------------------------------- masked statistics


def masked_sum(x: torch.Tensor, mask: torch.Tensor, *, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, *, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (over all of them, or along ``dim``)."""
    if dim is None:
        return masked_sum(x, mask) / mask.sum().clamp(min=1)
    return masked_sum(x, mask, dim=dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, *, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit variance over the masked entries, and shift it to zero mean.

    Args:
        x: [B, T] values, e.g. advantages.
        mask: [B, T] 1 where the entry counts.
        shift_mean: subtract the mean (advantages) or keep it (rewards).
    Returns:
        [B, T] whitened values, 0 where ``mask`` is 0.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


# ---------------------------------------------------------------- KL


def kl_estimators(logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sequence sampled estimates of KL(policy || reference) from the policy's own samples.

    With r = p_ref / p at each sampled token (Schulman, "Approximating KL divergence", 2020):
    ``k1 = -log r`` (unbiased, can be negative for one sample), ``k2 = (log r)^2 / 2``
    (biased, low variance), ``k3 = (r - 1) - log r`` (unbiased and never negative).

    Args:
        logp: [B, T] log-probabilities of the sampled tokens under the policy.
        logp_ref: [B, T] the same tokens under the reference policy.
        mask: [B, T].
    Returns:
        {"k1", "k2", "k3"}: each [B], summed over the sequence's tokens.
    """
    log_ratio = logp_ref - logp
    return {
        "k1": masked_sum(-log_ratio, mask, dim=1),
        "k2": masked_sum(0.5 * log_ratio**2, mask, dim=1),
        "k3": masked_sum(torch.expm1(log_ratio) - log_ratio, mask, dim=1),
    }


def kl_penalized_rewards(
    score: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Per-token reward of Ziegler et al. (2019): R(x, y) = r(x, y) - beta * log(pi(y|x) / rho(y|x)).

    The KL penalty is paid at every token; the score of the whole sequence is added at its
    last counted token.

    Args:
        score: [B] reward-model (or gold, or rule) score of each whole response.
        logp, logp_ref: [B, T] log-probabilities of the sampled tokens.
        mask: [B, T], each row with at least one 1.
        kl_coef: beta >= 0.
    Returns:
        [B, T] rewards, 0 on padding.
    """
    rewards = -kl_coef * (logp - logp_ref) * mask
    last = mask.cumsum(1).argmax(1)  # index of the last counted token
    rewards[torch.arange(len(score)), last] += score
    return rewards


# ---------------------------------------------------------------- advantages


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over response tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V = 0
    after the last counted token.

    Args:
        rewards: [B, T] per-token rewards (0 on padding).
        values: [B, T] value estimates V_t.
        mask: [B, T] 1 on counted tokens; padding only after them.
    Returns:
        advantages [B, T] and returns = advantages + values [B, T], both 0 on padding.
    """
    values = values * mask
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]
        next_value = values[:, t]
        advantages[:, t] = next_adv
    return advantages, (advantages + values) * mask


def explained_variance(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var[target - predicted] / Var[target] over the masked entries (1 is perfect, <= 0 useless)."""
    var_target = masked_var(target, mask)
    return 1 - masked_var(target - predicted, mask) / var_target.clamp(min=1e-8)


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024): each sample's reward minus
    the mean reward of the other samples of the same prompt.

    Args:
        rewards: [P, k] rewards of k >= 2 samples for each of P prompts.
    Returns:
        [P, k] advantages r_i - mean_{j != i} r_j = k / (k - 1) (r_i - mean_j r_j).
    """
    k = rewards.shape[1]
    if k < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt")
    return (rewards - rewards.mean(1, keepdim=True)) * k / (k - 1)


def grpo_advantages(rewards: torch.Tensor, *, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al. 2024): rewards standardised within each prompt's group, (r - mean) / (std + eps).

    Args:
        rewards: [P, k], k >= 2.
    """
    if rewards.shape[1] < 2:
        raise ValueError("GRPO needs at least 2 samples per prompt")
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + eps)


def dr_grpo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Dr GRPO (Liu et al. 2025): rewards minus their group's mean, not divided by its standard deviation (which
    weighs groups that are nearly all right or all wrong most). ``rewards``: [P, k], k >= 2."""
    if rewards.shape[1] < 2:
        raise ValueError("Dr GRPO needs at least 2 samples per prompt")
    return rewards - rewards.mean(1, keepdim=True)


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """DAPO's dynamic sampling (Yu et al. 2025, sec. 3.2): [P] booleans, True for the groups whose rewards are
    not all equal; a group of equal rewards has zero advantage everywhere and teaches nothing. ``rewards``:
    [P, k]."""
    return (rewards != rewards[:, :1]).any(1)


def overlong_penalty(lengths: torch.Tensor, max_tokens: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), added to the reward: 0 up to ``max_tokens -
    buffer`` tokens, then falling linearly to -1 at ``max_tokens`` (and -1 beyond). ``lengths``: [B] tokens
    generated."""
    if not 0 < buffer <= max_tokens:
        raise ValueError(f"buffer must be in [1, max_tokens={max_tokens}], got {buffer}")
    free = max_tokens - buffer
    return ((free - lengths.float()) / buffer).clamp(min=-1.0, max=0.0)


NEGATIVE_KL = (
    "the KL estimate to the reference is {kl:.3f} nats at step {step}, below zero by more than 2 standard errors "
    "(its true value is never negative): the sampled tokens may not come from the distribution whose "
    "log-probabilities are used (bfloat16 log-probabilities, a truncating generation setting), or the batch is small; "
    "at 4 standard errors the run stops"
)
"""What a critic-based or critic-free method says (once a run) when ``kl_negative_beyond_noise(kl, z=2)``."""


def kl_negative_beyond_noise(kl_per_sequence: torch.Tensor, *, z: float = 4.0, tol: float = 1e-3) -> torch.Tensor:
    """A 0-d boolean tensor, True when the k1 estimate (unbiased, its true value >= 0) is below 0 by more than
    z standard errors.

    That happens when the sampled tokens do not come from the policy whose log-probabilities
    are used (e.g. a generation setting that truncates the distribution), not by chance.

    Args:
        kl_per_sequence: [B] per-sequence k1 estimates.
    """
    n = kl_per_sequence.numel()
    mean = kl_per_sequence.mean()
    stderr = kl_per_sequence.std() / n**0.5 if n > 1 else torch.tensor(0.0)
    return mean < -(z * stderr + tol)
