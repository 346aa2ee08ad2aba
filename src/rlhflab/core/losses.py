"""Losses of RLHF as pure functions of tensors (their estimators: ``rlhflab.core.estimators``).

Each function takes tensors and returns ``(value, metrics)`` or a tensor; none touches a
model, a config or a logger. Metrics are detached 0-d tensors, not Python floats (a float is a
host sync on an accelerator); callers reduce and log them. Shapes: ``B`` batch, ``T`` response tokens. ``mask`` is 1 on
response tokens that count (up to and including the end-of-sequence token) and 0 on padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhflab.core.estimators import masked_mean

Metrics = dict[str, torch.Tensor]


# ---------------------------------------------------------------- reward models


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, *, label: torch.Tensor | None = None
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


# ---------------------------------------------------------------- policy gradients


def clipped_surrogate(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
    clip_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate per token (Schulman et al. 2017, eq. 7), negated for descent, before any mean.

    l_t = max(-rho_t A_t, -clip(rho_t, 1 - eps, 1 + eps) A_t), rho_t = pi(a_t) / pi_old(a_t).

    Args:
        logp: [B, T] log-probabilities under the policy being updated.
        logp_old: [B, T] log-probabilities under the policy that sampled.
        advantages: [B, T] (a sequence's advantage repeated on its tokens for the critic-free methods).
        clip_range: eps > 0.
        clip_high: the upper clip's eps when it differs from the lower (DAPO's "clip-higher"), else None.
    Returns:
        the per-token loss [B, T], and [B, T] booleans: where the clip is active.
    """
    ratio = torch.exp(logp - logp_old)
    unclipped = -advantages * ratio
    high = clip_range if clip_high is None else clip_high
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + high)
    return torch.maximum(unclipped, clipped), clipped > unclipped


def ppo_policy_loss(
    logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, Metrics]:
    """PPO's policy loss: the clipped surrogate (``clipped_surrogate``) averaged over the masked tokens.

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
    per_token, clipped = clipped_surrogate(logp, logp_old, advantages, clip_range)
    loss = masked_mean(per_token, mask)
    clipfrac = masked_mean(clipped.float(), mask).detach()
    approxkl = masked_mean(0.5 * (logp - logp_old).detach() ** 2, mask)
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


# ---------------------------------------------------------------- direct preference optimisation


def _log_ratio_margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected):
    return (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)


def dpo_loss(
    pi_chosen: torch.Tensor,
    pi_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    *,
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
    *,
    label: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """Conservative DPO (Mitchell 2023): each label is flipped with probability epsilon, so a label p
    becomes the target (1 - eps) p + eps (1 - p): a hard label 1 becomes 1 - eps, a tie stays 0.5,
    a soft label 0.6 becomes 0.6 - 0.2 eps. Shapes as ``dpo_loss``; ``label`` ones if None."""
    if label is None:
        label = torch.ones_like(pi_chosen)
    target = (1 - label_smoothing) * label + label_smoothing * (1 - label)
    loss, metrics = dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta, label=target)
    h = _log_ratio_margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected)
    return loss, {**metrics, "accuracy": preference_accuracy(h, label)}


def ipo_loss(
    pi_chosen: torch.Tensor,
    pi_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    *,
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


def clipped_pg_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
    *,
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
    per_token, clipped = clipped_surrogate(logp, logp_old, advantages[:, None].expand_as(logp), clip_range)
    if logp_ref is not None and kl_coef > 0:
        ref_ratio = logp_ref - logp
        per_token = per_token + kl_coef * (torch.expm1(ref_ratio) - ref_ratio)

    def reduce(x: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask) if aggregation == "token" else masked_mean(x, mask, dim=1).mean()

    metrics = {"clipfrac": masked_mean(clipped.float(), mask).detach(),
               "approxkl": masked_mean(0.5 * (logp - logp_old).detach() ** 2, mask)}  # fmt: skip
    if logp_ref is not None and kl_coef > 0:
        ref_ratio = (logp_ref - logp).detach()
        metrics["kl_k3"] = reduce(torch.expm1(ref_ratio) - ref_ratio)
    return reduce(per_token), metrics


# ---------------------------------------------------------------- GRPO's variants


def dr_grpo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
    max_tokens: int,
    *,
    logp_ref: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, Metrics]:
    """Dr GRPO (Liu et al. 2025, "Understanding R1-Zero-like training", eq. 2): GRPO's clipped surrogate summed
    over every token and divided by a constant, ``B * max_tokens``, instead of by each output's length, so a
    wrong long answer is not penalised less per token than a wrong short one. Its advantages are not divided by
    the group's standard deviation either (``estimators.dr_grpo_advantages``). Shapes as ``clipped_pg_loss``;
    ``max_tokens``: the generation budget (max new tokens)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    per_token, clipped = clipped_surrogate(logp, logp_old, advantages[:, None].expand_as(logp), clip_range)
    if logp_ref is not None and kl_coef > 0:
        ref_ratio = logp_ref - logp
        per_token = per_token + kl_coef * (torch.expm1(ref_ratio) - ref_ratio)
    loss = (per_token * mask).sum() / (logp.shape[0] * max_tokens)
    return loss, {"clipfrac": masked_mean(clipped.float(), mask).detach()}


def dapo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
) -> tuple[torch.Tensor, Metrics]:
    """DAPO's policy loss (Yu et al. 2025, eq. 8): the clipped surrogate with a decoupled, higher upper clip
    (``clip_high`` > ``clip_low`` leaves room for unlikely tokens to grow: "clip-higher", sec. 3.1), averaged over
    every token of the batch (sec. 3.3), and no KL term. Dynamic sampling and overlong shaping act on the
    rollout, not here (``estimators.informative_groups``, ``estimators.overlong_penalty``)."""
    per_token, clipped = clipped_surrogate(logp, logp_old, advantages[:, None].expand_as(logp), clip_low, clip_high)
    return masked_mean(per_token, mask), {"clipfrac": masked_mean(clipped.float(), mask).detach()}


def gspo_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
) -> tuple[torch.Tensor, Metrics]:
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", eq. 5-7): one importance ratio a sequence,
    the geometric mean of its tokens' ratios, s_i = exp(mean_t log(pi / pi_old)), clipped to [1 - clip_low,
    1 + clip_high] (far narrower than a token ratio's range: the paper's 3e-4 and 4e-4), the surrogate
    max(-s_i A_i, -clip(s_i) A_i) averaged over sequences. Shapes: ``logp``, ``logp_old``, ``mask`` [B, T];
    ``advantages`` [B]."""
    s = torch.exp(masked_mean(logp - logp_old, mask, dim=1))
    unclipped = -advantages * s
    clipped = -advantages * torch.clamp(s, 1.0 - clip_low, 1.0 + clip_high)
    return torch.maximum(unclipped, clipped).mean(), {"clipfrac": (clipped > unclipped).float().mean().detach()}
