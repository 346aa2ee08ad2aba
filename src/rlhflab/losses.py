"""Losses and estimators of RLHF as pure functions of tensors.

Each function takes tensors and returns ``(value, metrics)`` or a tensor; none touches a
model, a config or a logger. Metrics are detached 0-d tensors, not Python floats (a float is a
host sync on an accelerator); callers reduce and log them. Shapes: ``B`` batch, ``T`` response tokens. ``mask`` is 1 on
response tokens that count (up to and including the end-of-sequence token) and 0 on padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Metrics = dict[str, torch.Tensor]


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
    return loss, {"accuracy": preference_accuracy(margin, label), "margin": margin.detach().mean()}


def preference_accuracy(margin: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Share of strict preferences (label != 0.5) whose margin has the label's sign.

    Args:
        margin: [B] score of chosen minus score of rejected (any implicit or explicit reward).
        label: [B] probability that chosen is preferred.
    Returns:
        0-d tensor; 0 when no label is strict.
    """
    margin, label = margin.detach(), label.to(margin.dtype)
    strict = label != 0.5
    correct = ((margin > 0) == (label > 0.5)) & strict
    return correct.sum() / strict.sum().clamp(min=1)


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
    clipfrac = masked_mean((clipped > unclipped).float(), mask).detach()
    approxkl = masked_mean(0.5 * log_ratio.detach() ** 2, mask)
    return loss, {"clipfrac": clipfrac, "approxkl": approxkl}


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
    clipfrac = masked_mean((loss_clipped > loss_unclipped).float(), mask).detach()
    return loss, {"clipfrac": clipfrac}


def categorical_entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position, from its log-probabilities: [..., V] -> [...]."""
    return -(logp.exp() * logp).sum(-1)


def explained_variance(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var[target - predicted] / Var[target] over the masked entries (1 is perfect, <= 0 useless)."""
    var_target = masked_var(target, mask)
    return float(1 - masked_var(target - predicted, mask) / var_target.clamp(min=1e-8))


# ---------------------------------------------------------------- direct preference optimisation


def _log_ratio_margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected):
    return (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)


def dpo_loss(
    pi_chosen: torch.Tensor,
    pi_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    label: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """DPO (Rafailov et al. 2023, eq. 7): -log sigmoid(beta * h), with the implicit reward margin
    h = log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l).

    Args:
        pi_chosen, pi_rejected: [B] summed log-probabilities of the completions under the policy.
        ref_chosen, ref_rejected: [B] the same under the reference policy.
        beta: the KL strength beta > 0.
        label: [B] probability that chosen is preferred (a soft Bradley-Terry target); ones if None.
    Returns:
        loss, and metrics ``accuracy`` (share of strict labels whose h has the label's sign) and
        ``margin`` (mean beta * h).
    """
    h = _log_ratio_margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected)
    if label is None:
        label = torch.ones_like(h)
    loss = -(label * F.logsigmoid(beta * h) + (1 - label) * F.logsigmoid(-beta * h)).mean()
    return loss, {"accuracy": preference_accuracy(h, label), "margin": beta * h.detach().mean()}


def conservative_dpo_loss(
    pi_chosen: torch.Tensor,
    pi_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float,
    label: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """Conservative DPO (Mitchell 2023): each label is flipped with probability epsilon, so a label p
    becomes the target (1 - eps) p + eps (1 - p): a hard label 1 becomes 1 - eps, a tie stays 0.5,
    a soft label 0.6 becomes 0.6 - 0.2 eps. Shapes as ``dpo_loss``; ``label`` ones if None."""
    if label is None:
        label = torch.ones_like(pi_chosen)
    target = (1 - label_smoothing) * label + label_smoothing * (1 - label)
    loss, metrics = dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta, target)
    h = _log_ratio_margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected)
    return loss, {**metrics, "accuracy": preference_accuracy(h, label)}


def ipo_loss(
    pi_chosen: torch.Tensor,
    pi_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    label: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """IPO (Azar et al. 2023, eq. 17): (h - (2p - 1) / (2 beta))^2, which for p = 1 is (h - 1/(2 beta))^2
    and for a tie (p = 0.5) pulls h to 0.

    The inputs are per-token means of the completions' log-probabilities (IPO's authors normalise
    by length, as TRL does), shapes [B]. ``beta`` is IPO's tau. ``accuracy`` counts strict labels only.
    """
    h = _log_ratio_margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected)
    if label is None:
        label = torch.ones_like(h)
    loss = ((h - (2 * label - 1) / (2 * beta)) ** 2).mean()
    return loss, {"accuracy": preference_accuracy(h, label), "margin": h.detach().mean()}


# ---------------------------------------------------------------- critic-free policy gradients


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


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al. 2024): rewards standardised within each prompt's group, (r - mean) / (std + eps).

    Args:
        rewards: [P, k], k >= 2.
    """
    if rewards.shape[1] < 2:
        raise ValueError("GRPO needs at least 2 samples per prompt")
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + eps)


def clipped_pg_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
    logp_ref: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    aggregation: str = "token",
) -> tuple[torch.Tensor, Metrics]:
    """Critic-free policy-gradient loss: the PPO clipped surrogate with one advantage per sequence,
    plus GRPO's per-token KL penalty kl_coef * k3(pi, pi_ref) when ``logp_ref`` is given.

    ``aggregation`` says how the per-token terms become one number:
    - ``"sequence"``: mean over each sequence's tokens, then over sequences — DeepSeekMath's GRPO
      objective (Shao et al. 2024, eq. 3, the 1/|o_i| sum inside the 1/G sum): every sequence
      weighs the same, so each token of a long one weighs less;
    - ``"token"``: mean over all tokens of the minibatch — every token weighs the same (what DAPO,
      Yu et al. 2025, sec. 3.3, argue for, and what TRL calls ``loss_type="bnpo"``-like token means).

    With one update per rollout (logp = logp_old numerically) it is REINFORCE with the given baseline.

    Args:
        logp, logp_old: [B, T] log-probabilities of the sampled tokens now and at sampling time.
        advantages: [B] one advantage per sequence (RLOO or GRPO).
        mask: [B, T].
        logp_ref: [B, T] under the reference policy, or None for no KL term.
        aggregation: "token" or "sequence".
    """
    if aggregation not in ("token", "sequence"):
        raise ValueError(f"aggregation must be 'token' or 'sequence', got {aggregation!r}")
    log_ratio = logp - logp_old
    ratio = torch.exp(log_ratio)
    adv = advantages[:, None].expand_as(logp)
    per_token = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range))
    if logp_ref is not None and kl_coef > 0:
        ref_ratio = logp_ref - logp
        per_token = per_token + kl_coef * (torch.expm1(ref_ratio) - ref_ratio)

    def reduce(x: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask) if aggregation == "token" else masked_mean(x, mask, dim=1).mean()

    clipped = (-adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)) > (-adv * ratio)
    metrics = {"clipfrac": masked_mean(clipped.float(), mask).detach(),
               "approxkl": masked_mean(0.5 * log_ratio.detach() ** 2, mask)}  # fmt: skip
    if logp_ref is not None and kl_coef > 0:
        ref_ratio = (logp_ref - logp).detach()
        metrics["kl_k3"] = reduce(torch.expm1(ref_ratio) - ref_ratio)
    return reduce(per_token), metrics


def kl_negative_beyond_noise(kl_per_sequence: torch.Tensor, z: float = 4.0, tol: float = 1e-3) -> bool:
    """True when the k1 estimate (unbiased, its true value >= 0) is below 0 by more than z standard errors.

    That happens when the sampled tokens do not come from the policy whose log-probabilities
    are used (e.g. a generation setting that truncates the distribution), not by chance.

    Args:
        kl_per_sequence: [B] per-sequence k1 estimates.
    """
    n = kl_per_sequence.numel()
    mean = kl_per_sequence.mean()
    stderr = kl_per_sequence.std() / n**0.5 if n > 1 else torch.tensor(0.0)
    return bool(mean < -(z * stderr + tol))
