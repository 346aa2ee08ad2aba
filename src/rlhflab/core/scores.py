"""A reward function's contract: (prompts, completions) -> one finite score per completion."""

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
