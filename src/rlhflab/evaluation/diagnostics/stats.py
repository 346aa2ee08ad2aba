"""Small statistics shared by evaluation, ``overopt`` and ``compare``: ranks, Spearman's rho, Student's t
(exact CDF for whole degrees of freedom, quantiles), means with t-intervals across seeds, and the paired
t-test."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``x``; tied values get the mean of their ranks."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    sorted_x = x[order]
    start = 0
    while start < len(x):
        end = start
        while end + 1 < len(x) and sorted_x[end + 1] == sorted_x[start]:
            end += 1
        r[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson on mid-ranks); NaN when either side is constant or
    fewer than 2 values."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs two sequences of the same length, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return math.nan
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else math.nan


def _t_central_mass(t: float, dof: int) -> float:
    """P(|T| <= t) for t >= 0 and Student's T with ``dof`` degrees of freedom: the exact finite series
    of Abramowitz & Stegun 26.7.3 (odd dof) and 26.7.4 (even dof), in theta = atan(t / sqrt(dof))."""
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(dof))
    cos2 = math.cos(theta) ** 2
    if dof % 2 == 1:
        term, total = math.cos(theta), 0.0
        for k in range(1, (dof - 1) // 2 + 1):  # cos + 2/3 cos^3 + (2*4)/(3*5) cos^5 + ...
            total += term
            term *= 2 * k / (2 * k + 1) * cos2
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term, total = 1.0, 0.0
    for k in range(1, dof // 2 + 1):  # 1 + 1/2 cos^2 + (1*3)/(2*4) cos^4 + ...
        total += term
        term *= (2 * k - 1) / (2 * k) * cos2
    return math.sin(theta) * total


def _check_dof(dof) -> None:
    if not (isinstance(dof, int) and dof >= 1):
        raise ValueError(f"degrees of freedom must be an integer >= 1, got {dof!r}")


def t_cdf(t: float, dof: int) -> float:
    """P(T <= t) for Student's T with ``dof`` (an integer >= 1) degrees of freedom."""
    _check_dof(dof)
    half = 0.5 * _t_central_mass(abs(t), dof)
    return 0.5 + half if t >= 0 else 0.5 - half


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's T with ``dof`` (an integer >= 1) degrees of freedom, e.g.
    ``t_quantile(0.975, 4)`` = 2.776: bisection on ``t_cdf`` to about 1e-12."""
    _check_dof(dof)
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if p < 0.5:
        return -t_quantile(1 - p, dof)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-12 * max(1.0, hi):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, dof) < p else (lo, mid)
    return (lo + hi) / 2


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """The mean of ``values`` and its ``level`` Student-t interval (n - 1 degrees of freedom);
    the interval is (None, None) for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval of no values")
    mean = sum(values) / n
    if n == 1:
        return mean, None, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t-test that ``a`` and ``b`` (one value per seed each) have the
    same mean: t = mean(a - b) / (sd(a - b) / sqrt(n)) with n - 1 degrees of freedom. None for fewer
    than two pairs; 1 when every difference is 0, and 0 when they are all the same other number."""
    if len(a) != len(b):
        raise ValueError(f"paired_t_test needs pairs, got {len(a)} and {len(b)} values")
    n = len(a)
    if n < 2:
        return None
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (n - 1))
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    return 1.0 - _t_central_mass(abs(mean) / (sd / math.sqrt(n)), n - 1)


def mean_ci95(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the finite ``values``: ``mean_interval`` at 95%, NaN where it has no number
    (no values; one value has no interval)."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if not v:
        return math.nan, math.nan, math.nan
    m, lo, hi = mean_interval(v)
    return m, math.nan if lo is None else lo, math.nan if hi is None else hi


def wilson_interval(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``rate`` observed over ``n`` trials (95% at z = 1.96)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def reward_at_chance(validation: dict) -> str | None:
    """A sentence saying that a reward model orders held-out pairs no better than chance (the 95% Wilson interval
    of its accuracy reaches 0.5), or None when it does better. Reads the gold order when the pairs had gold
    scores (``val_gold_accuracy`` over ``val_gold_pairs``), else the labels (``val_accuracy`` over ``val_pairs``)."""
    if validation.get("val_gold_accuracy") is not None and validation.get("val_gold_pairs"):
        rate, n, what = validation["val_gold_accuracy"], int(validation["val_gold_pairs"]), "as the gold reward does"
    elif validation.get("val_accuracy") is not None and validation.get("val_pairs"):
        rate, n, what = validation["val_accuracy"], int(validation["val_pairs"]), "as their labels do"
    else:
        return None
    low, high = wilson_interval(rate, n)
    if low > 0.5:
        return None
    return (f"the reward model orders {rate:.1%} of {n} held-out pairs {what} (95% interval {low:.0%}-{high:.0%}): "
            "no better than chance, so a policy optimised against it would chase noise")  # fmt: skip
