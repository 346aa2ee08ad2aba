"""pass@k: the chance that at least one of k samples of a problem is correct, estimated without bias from
n >= k samples of which c are correct (Chen et al. 2021, "Evaluating Large Language Models Trained on
Code", eq. 1):

    pass@k = E_problems[ 1 - C(n - c, k) / C(n, k) ]

C(n - c, k) / C(n, k) is the probability that k samples drawn without replacement from the n are all
wrong. Computed as a running product, prod_{i = n - c + 1}^{n} (1 - k / i), so it neither overflows nor
loses precision for n in the hundreds.

Comparing base and tuned policies across k (Yue et al. 2025, "Does Reinforcement Learning Really
Incentivize Reasoning Capacity in LLMs Beyond the Base Model?"): RL typically wins at small k and the base
model at large k; ``crossing`` finds where the curves cross, ``newly_solved`` the problems the tuned policy
solves that the base never solved in its n samples.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from ``n`` samples of which ``c`` are correct."""
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError("n, c and k must be integers")
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 samples and 0 <= c <= n correct ones, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(
            f"k must be in [1, n] = [1, {n}] (k larger than the samples drawn cannot be estimated), got {k}"
        )
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_curve(correct: Sequence[Sequence[bool]], ks: Sequence[int]) -> dict[int, float]:
    """Mean pass@k over problems for every k in ``ks``; ``correct[p]`` holds problem p's n per-sample
    verdicts (every problem the same n)."""
    if not correct:
        raise ValueError("no problems")
    ns = {len(row) for row in correct}
    if len(ns) != 1:
        raise ValueError(f"every problem needs the same number of samples, got {sorted(ns)}")
    n = ns.pop()
    counts = [int(sum(bool(x) for x in row)) for row in correct]
    return {int(k): float(np.mean([pass_at_k(n, c, int(k)) for c in counts])) for k in ks}


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n (and n itself)."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def crossing(base: Mapping[int, float], tuned: Mapping[int, float]) -> float | None:
    """The k at which the tuned curve falls to the base's, interpolated in log k between the last k where
    tuned > base and the first where tuned <= base after it; None if the curves do not cross that way."""
    ks = sorted(set(base) & set(tuned))
    for lo, hi in zip(ks, ks[1:]):
        d_lo, d_hi = tuned[lo] - base[lo], tuned[hi] - base[hi]
        if d_lo > 0 >= d_hi:
            t = d_lo / (d_lo - d_hi)
            return float(np.exp(np.log(lo) + t * (np.log(hi) - np.log(lo))))
    return None


def newly_solved(base_correct: Sequence[Sequence[bool]], tuned_correct: Sequence[Sequence[bool]]) -> float:
    """Share of the problems the tuned policy solves at least once that the base never solved in its samples
    (the same problems, in the same order)."""
    if len(base_correct) != len(tuned_correct):
        raise ValueError("base and tuned verdicts must cover the same problems")
    solved = [any(t) for t in tuned_correct]
    new = [any(t) and not any(b) for b, t in zip(base_correct, tuned_correct)]
    return float(sum(new) / sum(solved)) if any(solved) else 0.0
