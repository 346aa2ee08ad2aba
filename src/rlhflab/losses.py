"""Losses and estimators of RLHF as pure functions of tensors.

Each function takes tensors and returns ``(value, metrics)`` or a tensor; none touches a
model, a config or a logger. Shapes: ``B`` batch, ``T`` response tokens. ``mask`` is 1 on
response tokens that count (up to and including the end-of-sequence token) and 0 on padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Metrics = dict[str, float]


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (over all of them, or along ``dim``)."""
    if dim is None:
        return masked_sum(x, mask) / mask.sum().clamp(min=1)
    return masked_sum(x, mask, dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
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


# ---------------------------------------------------------------- reward model


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, label: torch.Tensor | None = None
) -> tuple[torch.Tensor, Metrics]:
    """Negative log-likelihood of the preferences under the Bradley-Terry model.

    P(chosen preferred) = sigmoid(r_chosen - r_rejected). A label of 1 means the chosen
    completion was preferred, 0.5 a tie (a soft target), as in Christiano et al. (2017).

    Args:
        r_chosen: [B] scalar rewards of the chosen completions.
        r_rejected: [B] scalar rewards of the rejected completions.
        label: [B] probability that chosen is preferred; all ones if None.
    Returns:
        The mean loss, and metrics ``accuracy`` (share of strict preferences the rewards
        order correctly) and ``margin`` (mean r_chosen - r_rejected).
    References:
        Bradley & Terry (1952); Christiano et al. 2017, eq. 1; Ouyang et al. 2022, eq. 1.
    """
    margin = r_chosen - r_rejected
    if label is None:
        label = torch.ones_like(margin)
    loss = -(label * F.logsigmoid(margin) + (1 - label) * F.logsigmoid(-margin)).mean()
    strict = label != 0.5
    correct = ((margin > 0) == (label > 0.5)) & strict
    accuracy = correct.sum() / strict.sum().clamp(min=1)
    return loss, {"accuracy": float(accuracy), "margin": float(margin.detach().mean())}


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
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
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


# ---------------------------------------------------------------- PPO


def ppo_policy_loss(
    logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, Metrics]:
    """Clipped surrogate objective of PPO (Schulman et al. 2017, eq. 7), negated for descent.

    L = -mean_t min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t), rho_t = pi(a_t) / pi_old(a_t).

    Args:
        logp: [B, T] log-probabilities under the policy being updated.
        logp_old: [B, T] log-probabilities under the policy that sampled.
        advantages: [B, T].
        mask: [B, T].
        clip_range: eps > 0.
    Returns:
        loss, and metrics ``clipfrac`` (share of tokens where the clip is active) and
        ``approxkl`` (mean (log rho)^2 / 2).
    """
    log_ratio = logp - logp_old
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    approxkl = masked_mean(0.5 * log_ratio.detach() ** 2, mask)
    return loss, {"clipfrac": float(clipfrac), "approxkl": float(approxkl)}


def ppo_value_loss(
    values: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip_range_value: float
) -> tuple[torch.Tensor, Metrics]:
    """Clipped value loss: 0.5 * mean max((V - R)^2, (V_old + clip(V - V_old, +-eps) - R)^2).

    Args:
        values: [B, T] predictions of the value function being updated.
        values_old: [B, T] its predictions at rollout time.
        returns: [B, T] targets.
        mask: [B, T].
        clip_range_value: eps > 0.
    Returns:
        loss, and metric ``clipfrac``.
    """
    clipped_values = values_old + torch.clamp(values - values_old, -clip_range_value, clip_range_value)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    clipfrac = masked_mean((loss_clipped > loss_unclipped).float(), mask)
    return loss, {"clipfrac": float(clipfrac)}


def explained_variance(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var[target - predicted] / Var[target] over the masked entries (1 is perfect, <= 0 useless)."""
    var_target = masked_var(target, mask)
    return float(1 - masked_var(target - predicted, mask) / var_target.clamp(min=1e-8))


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position: [..., V] -> [...]."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)
