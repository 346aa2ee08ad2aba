"""A reward function's contract: (prompts, completions) -> one finite score per completion; and how often a
reward accepts what a verifier rejects."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from rlhflab.core.errors import RlhflabError

RewardFn = Callable[[Sequence[str], Sequence[str]], "torch.Tensor | Sequence[float]"]
"""(prompts, completions) -> one score per completion."""


def checked_scores(values, n: int, what: str) -> torch.Tensor:
    """``values`` as a float tensor of ``n`` finite scores; a one-line error naming ``what`` otherwise."""
    try:
        scores = torch.as_tensor([float(x) for x in values], dtype=torch.float32)
    except (TypeError, ValueError, OverflowError) as e:
        raise RlhflabError(f"{what} returned something that is not one number per completion ({e})") from None
    if scores.numel() != n:
        raise RlhflabError(f"{what} returned {scores.numel()} scores for {n} completions")
    if not all(math.isfinite(x) for x in scores.tolist()):
        raise RlhflabError(f"{what} returned a score that is not finite (NaN or infinity)")
    return scores


def same_length(**columns: Sequence) -> int:
    """The common length of the named columns; ValueError when they differ or are empty."""
    sizes = {name: len(values) for name, values in columns.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"expected as many values in each of {', '.join(sizes)}; got {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError(f"{', '.join(sizes)} are empty")
    return n


def exploitation_rate(reward: Sequence[float], verified: Sequence[float], threshold: float = 0.5) -> float | None:
    """Of the outputs ``reward`` accepted (score > ``threshold``), the share the strict verifier rejects
    (``verified`` <= ``threshold``); None when the reward accepted none."""
    same_length(reward=reward, verified=verified)
    accepted = [v for r, v in zip(reward, verified) if r > threshold]
    if not accepted:
        return None
    return sum(v <= threshold for v in accepted) / len(accepted)
