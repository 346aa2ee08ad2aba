"""Reward over-optimisation: gold and proxy reward against d = sqrt(KL to the base policy).

Gao, Schulman & Hilton (2022), "Scaling Laws for Reward Model Overoptimization", fit the
gold reward gained over the initial policy, R(d), with

    best-of-n:  R(d) = d (alpha - beta d)
    RL:         R(d) = d (alpha - beta ln d)

Both are linear in (alpha, beta), so least squares without intercept is exact. The fitted
gold reward peaks at d* = alpha / (2 beta) (best-of-n) or d* = exp(alpha / beta - 1) (RL).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import numpy as np

Form = Literal["bon", "rl"]


@dataclass(frozen=True)
class GaoFit:
    form: str
    alpha: float
    beta: float
    d_star: float
    """d at the fitted peak (inf when the fit does not turn down)."""
    r_star: float
    """Fitted gold gain at the peak."""
    r2: float
    """Coefficient of determination of the fit."""
    points: int

    def predict(self, d: Sequence[float] | np.ndarray) -> np.ndarray:
        return _features(np.asarray(d, dtype=float), self.form) @ np.array([self.alpha, self.beta])

    def as_dict(self) -> dict:
        return asdict(self)


def _features(d: np.ndarray, form: str) -> np.ndarray:
    if form == "bon":
        return np.stack([d, -(d**2)], axis=1)
    if form == "rl":
        with np.errstate(divide="ignore", invalid="ignore"):
            dlogd = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
        return np.stack([d, -dlogd], axis=1)
    raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")


def gao_fit(d: Sequence[float], gain: Sequence[float], form: Form) -> GaoFit:
    """Least-squares fit of Gao et al.'s functional form to (d, gold gain over the base).

    Args:
        d: [N] square roots of the KL to the base policy, >= 0.
        gain: [N] gold reward minus the base policy's gold reward.
        form: "bon" for best-of-n, "rl" for RL.
    """
    d_arr, r = np.asarray(d, dtype=float), np.asarray(gain, dtype=float)
    if d_arr.shape != r.shape or d_arr.ndim != 1 or len(d_arr) < 2:
        raise ValueError("gao_fit needs two equal-length sequences of at least 2 points")
    if (d_arr < 0).any():
        raise ValueError("d = sqrt(KL) must be >= 0")
    x = _features(d_arr, form)
    (alpha, beta), *_ = np.linalg.lstsq(x, r, rcond=None)
    residual = r - x @ np.array([alpha, beta])
    total = ((r - r.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else math.nan
    if beta > 1e-9 * (abs(alpha) + 1):  # a fit that turns down
        d_star = alpha / (2 * beta) if form == "bon" else math.exp(min(alpha / beta - 1, 700.0))
    else:
        d_star = math.inf
    r_star = (
        float((_features(np.array([d_star]), form) @ np.array([alpha, beta]))[0]) if math.isfinite(d_star) else math.inf
    )
    return GaoFit(form, float(alpha), float(beta), float(d_star), r_star, float(r2), len(d_arr))


def moving_average(x: Sequence[float], window: int) -> np.ndarray:
    """Centred moving average; the window shrinks at the ends."""
    x = np.asarray(x, dtype=float)
    half = max(window, 1) // 2
    return np.array([x[max(0, i - half) : i + half + 1].mean() for i in range(len(x))])


def gold_peak(gold: Sequence[float], proxy: Sequence[float], d: Sequence[float], window: int = 5) -> dict:
    """Where the (smoothed) gold reward peaks along a trajectory, and what the proxy did after.

    Returns the index and d of the gold peak, the gold lost from the peak to the end, the
    proxy gained from the peak to the end, and ``goodhart``: True when after the gold peak
    the proxy kept rising while the gold fell (both by more than 10% of the gold's range).
    """
    g, p = moving_average(gold, window), moving_average(proxy, window)
    i = int(np.argmax(g))
    gold_drop = float(g[i] - g[-1])
    proxy_rise = float(p[-1] - p[i])
    scale = float(g.max() - g.min()) or 1.0
    return {
        "index": i,
        "d": float(np.asarray(d, dtype=float)[i]),
        "gold_at_peak": float(g[i]),
        "gold_at_end": float(g[-1]),
        "gold_drop": gold_drop,
        "proxy_rise_after_peak": proxy_rise,
        "goodhart": bool(gold_drop > 0.1 * scale and proxy_rise > 0.1 * scale),
    }
