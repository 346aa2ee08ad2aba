"""The figures of the sweeps, as PNG bytes: ``rlhflab compare``'s frontier (gold and proxy reward against KL, one
curve per method) and ``rlhflab overopt``'s over-optimisation curves (gold and proxy gain against sqrt(KL)), drawn
from the rows and curves that ``rlhflab.evaluation.frontier`` and ``rlhflab.evaluation.overopt_curves`` make.
"""

from __future__ import annotations

import numpy as np

from rlhflab.evaluation.diagnostics.overoptimization import GaoFit
from rlhflab.evaluation.frontier import seed_count
from rlhflab.evaluation.overopt_curves import curve_label
from rlhflab.report.figures import _plt, _png

# ---------------------------------------------------------------- rlhflab compare: the frontier


def _bars(rows: list[dict], key: str, centers: list[float]) -> list[list[float]] | None:
    """Error bars (below, above) from ``centers`` to the 95% interval of ``key``, clipped at 0 for KL
    (which is >= 0); None if no row has an interval."""
    if not any(r.get(f"{key}_lo") is not None for r in rows):
        return None
    below, above = [], []
    for r, c in zip(rows, centers):
        lo, hi = r.get(f"{key}_lo"), r.get(f"{key}_hi")
        if lo is None or hi is None:
            below.append(0.0)
            above.append(0.0)
            continue
        if key == "kl":
            lo, hi = max(lo, 0.0), max(hi, 0.0)
        below.append(max(c - lo, 0.0))
        above.append(max(hi - c, 0.0))
    return [below, above]


def frontier_figure(rows: list[dict]) -> bytes:
    """Gold (left) and proxy reward (right) against KL to the base, one curve per method; with several
    seeds each point has 95%-interval error bars on both axes (best-of-n's KL bar on its hollow
    sampled-estimate marker, since the bound it sits at is exact)."""
    plt = _plt()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    base = next(r for r in rows if r["method"] == "base")
    k = seed_count(rows)
    bar_style = dict(fmt="none", elinewidth=0.8, capsize=2, alpha=0.6, zorder=2)
    for ax, key, label in ((ax1, "gold", "mean gold reward"), (ax2, "proxy", "mean proxy reward")):
        ax.scatter([0], [base[key]], color="k", marker="*", s=120, zorder=3, label="base policy")
        if k > 1:
            ax.errorbar([0], [base[key]], yerr=_bars([base], key, [base[key]]), ecolor="k", **bar_style)
        for i, method in enumerate(dict.fromkeys(r["method"] for r in rows if r["method"] != "base")):
            pts = sorted((r for r in rows if r["method"] == method and r["kl"] is not None), key=_kl)
            color = plt.cm.tab10(i % 10)
            xs = [0] + [_kl(r) for r in pts]
            ys = [base[key]] + [r[key] for r in pts]
            ax.plot(xs, ys, "o-", color=color, label=method, ms=5, lw=1.4)
            bounded = [r for r in pts if r.get("kl_bound") is not None]
            if bounded:  # best-of-n: placed at its analytic KL bound; the sampled estimate as a hollow marker
                ax.scatter([max(r["kl"], 0) for r in bounded], [r[key] for r in bounded], s=30, zorder=3,
                           facecolors="none", edgecolors=color, label=f"{method}: sampled KL estimate")  # fmt: skip
            if k > 1:
                free = [r for r in pts if r.get("kl_bound") is None]
                for group, xs_of in ((free, _kl), (bounded, lambda r: max(r["kl"], 0.0))):
                    if group:
                        gx, gy = [xs_of(r) for r in group], [r[key] for r in group]
                        ax.errorbar(gx, gy, xerr=_bars(group, "kl", gx), yerr=_bars(group, key, gy), ecolor=color,
                                    **bar_style)  # fmt: skip
                if bounded:  # the gold bar also at the bound, where the curve passes
                    gy = [r[key] for r in bounded]
                    ax.errorbar([_kl(r) for r in bounded], gy, yerr=_bars(bounded, key, gy), ecolor=color, **bar_style)
            for r in pts:
                ax.annotate(
                    f"{r['value']:g}" if isinstance(r["value"], (int, float)) else str(r["value"]),
                    (_kl(r), r[key]),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=7,
                    color=color,
                )
        ax.set(xlabel="KL to the base policy (nats)", ylabel=label)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3)
    bars = f"; bars: 95% interval over {k} seeds" if k > 1 else ""
    ax1.set_title(f"gold reward vs KL (labels: the knob's value{bars})", fontsize=10)
    ax2.set_title("proxy (reward model) vs KL; best-of-n at its KL bound", fontsize=10)
    ax1.legend(fontsize=8, loc="best")
    return _png(fig, dpi=100)


def _kl(row: dict) -> float:
    """Where a point sits on the KL axis: best-of-n's analytic bound, else the sampled estimate (>= 0)."""
    return row["kl_bound"] if row.get("kl_bound") is not None else max(row["kl"], 0.0)


# ---------------------------------------------------------------- rlhflab overopt: over-optimisation curves


def overopt_figure(curves: dict[tuple, list[dict]], fits: list[dict]) -> bytes:
    """Gold (solid) and proxy (dashed) gain against sqrt(KL), best-of-n and RL, one colour per N;
    the levers in the third column, from ``aggregate``d curves and their fits. Shaded: 95% intervals over
    seeds; dotted: Gao et al.'s fit."""
    plt = _plt()

    fit_by = {(f["method"], f["labels"], f["objective"], f["noise"]): f for f in fits}
    methods = [m for m in ("best-of-n", "ppo", "rloo", "grpo") if any(k[0] == m for k in curves)]
    labels = sorted({k[1] for k in curves if k[2] == "single" and k[3] == 0})
    cmap = plt.get_cmap("viridis")
    colour = {n: cmap(0.15 + 0.7 * i / max(len(labels) - 1, 1)) for i, n in enumerate(labels)}
    fig, axes = plt.subplots(len(methods), 3, figsize=(15, 4.2 * len(methods)), squeeze=False)
    seeds = max((p["seeds"] for pts in curves.values() for p in pts), default=0)

    def draw(ax, key, points, color, label, proxy=True):
        d = np.array([p["d"] for p in points])
        for name, style in (("gold", "-"), ("proxy", "--")) if proxy else (("gold", "-"),):
            y = np.array([p[name] for p in points])
            lo, hi = np.array([p[f"{name}_lo"] for p in points]), np.array([p[f"{name}_hi"] for p in points])
            ax.plot(d, y, style, color=color, label=f"{label} ({name})" if proxy else label, lw=1.8)
            if np.isfinite(lo).any():
                ax.fill_between(d, lo, hi, color=color, alpha=0.15, lw=0)
        f = fit_by.get(key)
        if f and "fit_alpha" in f and len(d):
            fit = GaoFit(f["fit_form"], f["fit_alpha"], f["fit_beta"], f["fit_d_star"], f["fit_r_star"],
                         f["fit_r2"], f["fit_points"])  # fmt: skip
            xs = np.linspace(0, max(float(np.nanmax(d)), 1e-3), 60)
            ax.plot(xs, fit.predict(xs), ":", color=color, lw=1.2)

    for row, method in enumerate(methods):
        ax_gold, ax_both, ax_lever = axes[row]
        for n in labels:
            key = (method, n, "single", 0.0)
            if key in curves:
                draw(ax_gold, key, curves[key], colour[n], f"N={n}", proxy=False)
                draw(ax_both, key, curves[key], colour[n], f"N={n}")
        gold_key = (method, 0, "gold", 0.0)
        if gold_key in curves:  # RL against gold itself: its "proxy" is gold
            draw(ax_gold, gold_key, curves[gold_key], "black", "gold itself as the reward", proxy=False)
            draw(ax_both, gold_key, curves[gold_key], "black", "gold itself as the reward", proxy=False)
        levers = [k for k in curves if k[0] == method and k[2] != "gold" and (k[2] != "single" or k[3] != 0)]
        lever_n = levers[0][1] if levers else None
        if lever_n is not None:
            base_key = (method, lever_n, "single", 0.0)
            palette = iter(plt.get_cmap("tab10").colors)
            for key in [base_key] + sorted(levers):
                if key in curves:
                    draw(ax_lever, key, curves[key], next(palette), curve_label(key).split(", ", 1)[1], proxy=False)
        what = "best-of-n" if method == "best-of-n" else method.upper()
        ax_gold.set_title(f"{what}: gold gain", fontsize=10)
        ax_both.set_title(f"{what}: gold (solid) and proxy (dashed)", fontsize=10)
        ax_lever.set_title(
            f"{what}: levers at N={lever_n}, gold" if lever_n else f"{what}: levers not run", fontsize=10
        )
        for ax in (ax_gold, ax_both, ax_lever):
            ax.axhline(0, color="grey", lw=0.6)
            ax.set_xlabel("d = sqrt(KL to the base), sqrt(nats)")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        ax_gold.set_ylabel("gain over the base policy")
    fig.suptitle(
        f"Reward over-optimisation: proxies trained on N gold-labelled comparisons ({seeds} seed{'s' if seeds != 1 else ''}; shaded: 95% "
        "intervals; dotted: Gao et al.'s fit)",
        fontsize=11,
    )
    fig.tight_layout()
    return _png(fig, tight=False)
