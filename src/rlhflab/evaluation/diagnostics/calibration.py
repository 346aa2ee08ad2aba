"""Calibration of next-token predictions: negative log-likelihood and expected calibration error.

ECE (Naeini et al. 2015; Guo et al. 2017): split predictions into equal-width bins of
top-1 confidence; ECE = sum_b (n_b / N) |accuracy_b - confidence_b|.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 15) -> list[dict]:
    """Per equal-width confidence bin: lower and upper edge, count, mean confidence, accuracy.

    Confidence 1.0 falls in the last bin; empty bins have count 0 and NaN statistics.
    """
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=float)
    if conf.shape != corr.shape:
        raise ValueError("confidence and correct must have the same length")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    index = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = index == b
        n = int(sel.sum())
        bins.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "count": n,
                "confidence": float(conf[sel].mean()) if n else float("nan"),
                "accuracy": float(corr[sel].mean()) if n else float("nan"),
            }
        )
    return bins


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 15) -> float:
    """ECE over ``n_bins`` equal-width bins (0 = perfectly calibrated)."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        return float("nan")
    return sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
