"""The curves of ``rlhflab overopt``, analysed: the rows of overopt.csv (one per best-of-n size or RL window,
per proxy and seed) grouped into curves, averaged over seeds with 95% intervals, and Gao et al.'s forms fitted to
each curve's gold gain against d = sqrt(KL to the base); the fits as a text table.
"""

from __future__ import annotations

import math

import numpy as np

from rlhflab.evaluation.diagnostics.overoptimization import gao_fit
from rlhflab.evaluation.diagnostics.stats import mean_ci95


def curve_key(row: dict) -> tuple:
    return (row["method"], int(row["labels"]), row["objective"], float(row["noise"]))


def curve_label(key: tuple) -> str:
    method, labels, objective, noise = key
    if objective == "gold":
        return f"{method}, the gold reward itself"
    parts = [method, f"N={labels}"]
    if objective != "single":
        parts.append(objective)
    if noise:
        parts.append(f"noise {noise:g}")
    return ", ".join(parts)


def aggregate(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Per curve, per point (best-of-n's n, or the RL step): the mean over seeds of KL, gold gain and
    proxy gain with 95% intervals. Gains are over the curve's first point, per seed: n = 1 for
    best-of-n, the first step for RL (both samples of the base policy)."""
    by_curve: dict[tuple, dict] = {}
    for r in rows:
        by_curve.setdefault(curve_key(r), {}).setdefault(int(r["seed"]), []).append(r)
    out = {}
    for key, seeds in by_curve.items():
        x = "n" if key[0] == "best-of-n" else "step"
        per_point: dict = {}
        for seed_rows in seeds.values():
            seed_rows = sorted(seed_rows, key=lambda r: int(r[x]))
            g0, p0 = seed_rows[0]["gold"], seed_rows[0]["proxy"]
            for r in seed_rows:
                per_point.setdefault(int(r[x]), []).append((r["kl"], r["gold"] - g0, r["proxy"] - p0))
        points = []
        for at in sorted(per_point):
            kl, gold, proxy = zip(*per_point[at])
            d = [math.sqrt(max(k, 0.0)) for k in kl]
            row = {x: at, "seeds": len(kl)}
            for name, values in (("kl", kl), ("d", d), ("gold", gold), ("proxy", proxy)):
                row[name], row[f"{name}_lo"], row[f"{name}_hi"] = mean_ci95(values)
            points.append(row)
        out[key] = points
    return out


def fit_curves(curves: dict[tuple, list[dict]]) -> list[dict]:
    """Gao et al.'s form (best-of-n: d(alpha - beta d); RL: d(alpha - beta ln d)) fitted to each of the
    ``aggregate``d curves' mean gold gain against its mean d; the observed peak next to the fitted one."""
    fits = []
    for key, points in sorted(curves.items()):
        d = np.array([p["d"] for p in points])
        gain = np.array([p["gold"] for p in points])
        ok = np.isfinite(d) & np.isfinite(gain)
        entry = {"curve": curve_label(key), "method": key[0], "labels": key[1], "objective": key[2], "noise": key[3]}
        i = int(np.nanargmax(gain)) if ok.any() else 0
        entry.update(
            {
                "observed_peak_gold": float(gain[i]) if ok.any() else math.nan,
                "observed_peak_d": float(d[i]) if ok.any() else math.nan,
                "final_gold": float(gain[ok][-1]) if ok.any() else math.nan,
                "final_d": float(d[ok][-1]) if ok.any() else math.nan,
                "final_proxy": float(points[-1]["proxy"]),
            }
        )
        if ok.sum() >= 3:
            fit = gao_fit(np.clip(d[ok], 0, None), gain[ok], "bon" if key[0] == "best-of-n" else "rl")
            entry.update({f"fit_{k}": v for k, v in fit.as_dict().items() if k != "form"})
            entry["fit_form"] = fit.form
        fits.append(entry)
    return fits


def format_fits(fits: list[dict]) -> str:
    lines = [
        f"{'curve':44s} {'peak gold':>9s} {'at d':>6s} {'final gold':>10s} {'at d':>6s} {'fit d*':>8s} {'fit R2':>6s}"
    ]
    for f in fits:
        d_star = f.get("fit_d_star", math.nan)
        lines.append(
            f"{f['curve']:44s} {f['observed_peak_gold']:9.3f} {f['observed_peak_d']:6.2f} {f['final_gold']:10.3f} "
            f"{f['final_d']:6.2f} {d_star:8.2f} {f.get('fit_r2', math.nan):6.2f}"
        )
    return "\n".join(lines)
