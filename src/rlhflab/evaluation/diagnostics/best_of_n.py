"""Best-of-n from a pool of samples: unbiased estimates of its gold and proxy reward for every n.

Draw N >= n samples of a prompt from the base policy, scored by the proxy (what best-of-n selects
by) and by gold. Best-of-n draws n of them without replacement and keeps the one with the highest
proxy. Sort the pool by proxy, ascending: the sample of rank i (1-based) is the one kept exactly
when it is among the n drawn and the other n - 1 all have lower ranks, which happens with
probability C(i - 1, n - 1) / C(N, n). So

    E[gold of best-of-n] = sum_i C(i - 1, n - 1) / C(N, n) * gold_(i)

is an unbiased estimate of best-of-n's expected gold for that prompt (and likewise its proxy),
with far less variance than drawing n samples once (Nakano et al. 2021, WebGPT, appendix;
Gao et al. 2022, sec. 2.3; Coste et al. 2023). Ties in the proxy are broken by averaging over
the tied ranks' weights, so the estimate does not depend on the pool's order.

The KL of best-of-n to its base policy is log n - (n - 1) / n (continuous reward; an upper bound
with ties: Stiennon et al. 2020, Beirami et al. 2024).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def selection_weights(n: int, pool: int) -> np.ndarray:
    """[pool] probability that the sample of each proxy rank (ascending) is the one best-of-n keeps.

    w_i = C(i - 1, n - 1) / C(pool, n), i = 1..pool; the weights sum to 1.
    """
    if not 1 <= n <= pool:
        raise ValueError(f"n must be in [1, {pool}] for a pool of {pool} samples, got {n}")
    i = np.arange(1, pool + 1)
    # log C(i-1, n-1) - log C(pool, n), computed with lgamma; -inf where i - 1 < n - 1
    with np.errstate(divide="ignore"):
        log_w = np.array(
            [math.lgamma(k) - math.lgamma(n) - math.lgamma(k - n + 1) if k >= n else -math.inf for k in i]
        ) - (math.lgamma(pool + 1) - math.lgamma(n + 1) - math.lgamma(pool - n + 1))
    return np.exp(log_w)


def best_of_n_expectation(proxy: Sequence[float], values: Sequence[float], n: int) -> float:
    """Unbiased estimate of the expected ``values`` (gold, or the proxy itself) of the sample that
    best-of-n by ``proxy`` keeps, from one prompt's pool of samples.

    Args:
        proxy: [N] proxy scores of the pool (what best-of-n selects by).
        values: [N] the quantity to average (gold scores, or the proxy scores).
        n: candidates per selection, 1 <= n <= N.
    """
    proxy, values = np.asarray(proxy, dtype=float), np.asarray(values, dtype=float)
    if proxy.shape != values.shape or proxy.ndim != 1:
        raise ValueError("proxy and values must be 1-d and of the same length")
    order = np.argsort(proxy, kind="stable")
    weights = selection_weights(n, len(proxy))
    sorted_proxy = proxy[order]
    # ties: every member of a group of equal proxy scores gets the group's mean weight
    w = weights.copy()
    start = 0
    while start < len(w):
        end = start
        while end + 1 < len(w) and sorted_proxy[end + 1] == sorted_proxy[start]:
            end += 1
        w[start : end + 1] = weights[start : end + 1].mean()
        start = end + 1
    return float(np.dot(w, values[order]))


def best_of_n_curve(proxy: np.ndarray, gold: np.ndarray, ns: Sequence[int]) -> list[dict]:
    """For pools [P, N] of P prompts: per n, the mean over prompts of best-of-n's gold and proxy
    (unbiased estimates), their standard errors over prompts, and the analytic KL."""
    proxy, gold = np.asarray(proxy, dtype=float), np.asarray(gold, dtype=float)
    rows = []
    for n in ns:
        g = np.array([best_of_n_expectation(p, v, n) for p, v in zip(proxy, gold)])
        r = np.array([best_of_n_expectation(p, p, n) for p in proxy])
        se = lambda x: float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0
        rows.append(
            {
                "n": int(n),
                "kl": math.log(n) - (n - 1) / n,
                "gold": float(g.mean()),
                "gold_stderr": se(g),
                "proxy": float(r.mean()),
                "proxy_stderr": se(r),
            }
        )
    return rows
