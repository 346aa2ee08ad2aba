"""The report's figures, as PNG or GIF bytes (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import io
import math
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from rlhflab.core import metric_names as names

COLORS = {"base": "#7f7f7f", "policy": "#d62728", "gold": "#1f77b4", "proxy": "#ff7f0e"}


def _plt():
    # heavy library (matplotlib): imported on first use, not with rlhflab
    import matplotlib

    matplotlib.use("Agg")
    # heavy library (matplotlib): imported on first use, not with rlhflab
    import matplotlib.pyplot as plt

    return plt


def _png(fig, dpi: int = 90, tight: bool = True) -> bytes:
    """The figure as PNG bytes, cropped to what is drawn (``tight``) or at its full size; the figure closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    _plt().close(fig)
    return buf.getvalue()


def overoptimization(runs: list[tuple[str, dict]]) -> bytes | None:
    """Gold gain and proxy against d = sqrt(KL) along training, with the fitted RL curve, one panel per run."""
    runs = [(name, oo) for name, oo in runs if oo]
    if not runs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.6), squeeze=False)
    for ax, (name, oo) in zip(axes[0], runs):
        d = np.array(oo["d"])
        ax.scatter(d, oo["gold_gain"], s=10, color=COLORS["gold"], label="gold gain (rollouts)")
        grid = np.linspace(0, d.max() * 1.05, 100)
        fit = oo["fit"]
        with np.errstate(divide="ignore", invalid="ignore"):
            curve = grid * (fit["alpha"] - fit["beta"] * np.where(grid > 0, np.log(np.where(grid > 0, grid, 1)), 0))
        ax.plot(
            grid,
            curve,
            color=COLORS["gold"],
            lw=1.5,
            label=f"fit d(α − β ln d): α={fit['alpha']:.2f}, β={fit['beta']:.2f}",
        )
        ax2 = ax.twinx()
        ax2.plot(d, oo["proxy"], color=COLORS["proxy"], lw=1, alpha=0.8, label="proxy (reward model)")
        ax2.set_ylabel("proxy reward", color=COLORS["proxy"])
        peak = oo["peak"]
        ax.axvline(peak["d"], color="k", ls=":", lw=1)
        ax.annotate(
            "gold peak" + (" (Goodhart)" if peak["goodhart"] else ""),
            (peak["d"], peak["gold_at_peak"]),
            xytext=(5, -12),
            textcoords="offset points",
            fontsize=8,
        )
        ax.set_xlabel("d = sqrt(KL to base), nats^½")
        ax.set_ylabel("gold reward − base", color=COLORS["gold"])
        ax.set_title(name, fontsize=10)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="lower right")
    fig.suptitle("Over-optimisation: gold and proxy reward along training", fontsize=11)
    return _png(fig)


def frontier(points: list[dict]) -> bytes:
    """Gold reward against KL to the base policy: each run's evaluation point and its training path."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, p in enumerate(points):
        color = plt.cm.tab10(i % 10)
        if p["path_kl"]:
            ax1.plot(p["path_kl"], p["path_gold"], color=color, alpha=0.35, lw=1)
            ax2.plot(p["path_kl"], p["path_proxy"], color=color, alpha=0.35, lw=1)
        ax1.errorbar(
            [0, p["kl"]],
            [p["base_gold"], p["gold"]],
            yerr=[p["base_gold_se"], p["gold_se"]],
            fmt="o-",
            color=color,
            label=p["name"],
            ms=5,
            lw=1.5,
        )
        if p["proxy"] is not None:
            ax2.plot([0, p["kl"]], [p["base_proxy"], p["proxy"]], "o-", color=color, label=p["name"], ms=5)
    ax1.set(xlabel="KL to base (nats)", ylabel="mean gold reward", title="gold reward vs KL")
    ax2.set(xlabel="KL to base (nats)", ylabel="mean proxy reward", title="proxy reward vs KL")
    for ax in (ax1, ax2):
        if ax.get_legend_handles_labels()[0]:  # no proxy (a rule or gold was the reward): nothing on the right
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.text(
        0.5,
        -0.04,
        "points: held-out evaluation (base at KL 0); faint lines: the training rollouts",
        ha="center",
        fontsize=8,
    )
    return _png(fig)


def diversity(runs: list[tuple[str, dict]]) -> bytes:
    """Base vs tuned for each diversity measure, one panel per measure."""
    keys = [
        ("distinct_1", "distinct-1"),
        ("distinct_2", "distinct-2"),
        ("distinct_3", "distinct-3"),
        ("self_bleu", "self-BLEU (higher = less diverse)"),
        ("entropy", "per-token entropy (nats)"),
        ("embedding_spread", "embedding spread"),
    ]
    keys = [(k, t) for k, t in keys if any(d["base"].get(k) is not None for _, d in runs)]
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(2.3 * len(keys), 2.9), squeeze=False)
    x = np.arange(len(runs))
    for ax, (key, title) in zip(axes[0], keys):
        base = [d["base"].get(key) or 0 for _, d in runs]
        pol = [d["policy"].get(key) or 0 for _, d in runs]
        ax.bar(x - 0.2, base, 0.4, color=COLORS["base"], label="base")
        ax.bar(x + 0.2, pol, 0.4, color=COLORS["policy"], label="tuned")
        ax.set_xticks(x, [name for name, _ in runs], rotation=30, fontsize=7, ha="right")
        ax.set_title(title, fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Diversity of samples: base vs tuned", fontsize=10)
    return _png(fig)


def reliability(runs: list[tuple[str, dict]]) -> bytes | None:
    """Reliability diagram of next-token predictions on held-out text, base vs tuned."""
    runs = [(n, c) for n, c in runs if c and "base" in c]
    if not runs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(3.8 * len(runs), 3.6), squeeze=False)
    for ax, (name, cal) in zip(axes[0], runs):
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="perfect calibration")
        for side, label in (("base", "base"), ("policy", "tuned")):
            bins = [b for b in cal[side]["bins"] if b["count"]]
            ax.plot(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                "o-",
                ms=3,
                color=COLORS[side],
                label=f"{label}: ECE {cal[side]['ece']:.3f}, NLL {cal[side]['nll']:.2f}",
            )
        ax.set(xlabel="top-1 confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=name)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Calibration on held-out text", fontsize=10)
    return _png(fig)


def remisalignment(runs: list[tuple[str, dict]]) -> bytes | None:
    runs = [(n, r) for n, r in runs if r and "curve" in r]
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, (name, r) in enumerate(runs):
        color = plt.cm.tab10(i % 10)
        ax.plot([c["step"] for c in r["curve"]], [c["gold"] for c in r["curve"]], "o-", ms=3, color=color, label=name)
        ax.axhline(r["base_gold"], color=color, ls=":", lw=1)
    low = min([r["base_gold"] for _, r in runs] + [c["gold"] for _, r in runs for c in r["curve"]])
    high = max(c["gold"] for _, r in runs for c in r["curve"])
    ax.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
    ax.set(
        xlabel="fine-tuning steps on the rejected completions",
        ylabel="gold reward",
        title="Undoing the alignment (dotted: base policy)",
    )
    ax.legend(fontsize=7)
    return _png(fig)


def training_animation(metrics: list[dict], samples: list[dict], max_frames: int = 24) -> bytes | None:
    """GIF: proxy and gold reward over PPO steps, with a rollout of that step written beside the curves."""
    if not metrics or not samples:
        return None
    # heavy library (matplotlib): imported on first use, not with rlhflab
    from matplotlib.animation import FuncAnimation, PillowWriter

    plt = _plt()
    steps = [r["step"] for r in metrics]
    gold = [r.get(names.GOLD, math.nan) for r in metrics]
    proxy = [r[names.SCORE] for r in metrics]
    logged = sorted({s["step"] for s in samples})
    if len(logged) > max_frames:
        logged = [logged[round(i * (len(logged) - 1) / (max_frames - 1))] for i in range(max_frames)]
    first = {}
    for s in samples:
        first.setdefault(s["step"], s)
    fig, (ax, tx) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1.1]})
    ax.set_xlim(0, max(steps) + 1)
    finite = [g for g in gold if not math.isnan(g)] + proxy
    ax.set_ylim(min(finite) - 0.1, max(finite) + 0.1)
    ax.set(xlabel="PPO step", ylabel="reward")
    (lg,) = ax.plot([], [], color=COLORS["gold"], label="gold")
    (lp,) = ax.plot([], [], color=COLORS["proxy"], label="proxy")
    ax.legend(fontsize=8, loc="upper left")
    tx.axis("off")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.95)
    text = tx.text(0, 1, "", va="top", ha="left", fontsize=10, family="monospace")

    def frame(i):
        step = logged[i]
        k = sum(1 for s in steps if s <= step)
        lg.set_data(steps[:k], gold[:k])
        lp.set_data(steps[:k], proxy[:k])
        s = first[step]
        body = textwrap.fill(s["prompt"] + " ▸" + s["response"], 52)
        gold_txt = f", gold {s['gold']:.2f}" if "gold" in s else ""
        text.set_text(f"step {step}: proxy {s['score']:.2f}{gold_txt}\n\n{body}")
        return lg, lp, text

    anim = FuncAnimation(fig, frame, frames=len(logged), blit=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "training.gif"
        anim.save(path, writer=PillowWriter(fps=2), dpi=72)
        plt.close(fig)
        return path.read_bytes()


def _panels(n: int):
    """A figure of ``n`` small panels side by side: (figure, list of axes)."""
    fig, axes = _plt().subplots(1, n, figsize=(4.6 * n, 3.4), squeeze=False)
    return fig, list(axes[0])


def pass_at_k(runs: list[tuple[str, dict]]) -> bytes | None:
    """pass@k of base and tuned policy against k (log scale), one panel per run, the crossing marked."""
    runs = [(name, pk) for name, pk in runs if pk]
    if not runs:
        return None
    fig, axes = _panels(len(runs))
    for ax, (name, pk) in zip(axes, runs):
        for side in ("base", "policy"):
            curve = sorted((int(k), v) for k, v in pk[side].items())  # JSON keys are strings
            ax.plot([k for k, _ in curve], [v for _, v in curve], "o-", ms=3, color=COLORS[side],
                    label="base" if side == "base" else "tuned")  # fmt: skip
        if pk.get("crossing_k") is not None:
            ax.axvline(pk["crossing_k"], color="k", ls=":", lw=1)
            ax.annotate(f"cross at k≈{pk['crossing_k']:.0f}", (pk["crossing_k"], 0.05), fontsize=8, xytext=(4, 0),
                        textcoords="offset points")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, 1)
        ax.set_xlabel("k (samples per problem)")
        ax.set_ylabel("pass@k")
        ax.set_title(f"{name}: newly solved {pk.get('newly_solved', float('nan')):.1%}", fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"pass@k ({runs[0][1].get('problems', '?')} problems, {runs[0][1].get('samples', '?')} samples each)",
                 fontsize=11)  # fmt: skip
    return _png(fig)


def entropy_reward(runs: list[tuple[str, dict]]) -> bytes | None:
    """Reward against policy entropy per training step, with the fit R = -a exp(H) + b."""
    runs = [(name, er) for name, er in runs if er]
    if not runs:
        return None
    fig, axes = _panels(len(runs))
    for ax, (name, er) in zip(axes, runs):
        h = np.array(er["entropy"])
        sc = ax.scatter(h, er["reward"], c=np.arange(len(h)), cmap="viridis", s=10)
        fit = er["fit"]
        if fit:
            grid = np.linspace(0, h.max() * 1.05, 100)
            ax.plot(grid, -fit["a"] * np.exp(grid) + fit["b"], color="k", lw=1,
                    label=f"R = −{fit['a']:.3f}·exp(H) + {fit['b']:.3f}  (R² {fit['r2']:.2f})")  # fmt: skip
            ax.legend(fontsize=7, loc="best")
        ax.set_xlabel("policy entropy per token, nats")
        ax.set_ylabel(er["reward_name"].split("/")[-1] + " reward")
        ax.set_title(name, fontsize=9)
        fig.colorbar(sc, ax=ax, label="step")
    fig.suptitle("Reward bought with entropy (Cui et al. 2025)", fontsize=11)
    return _png(fig)


def loophole(runs: list[tuple[str, dict]]) -> bytes | None:
    """The reward, the verifier and the exploitation rate over training."""
    runs = [(name, lo) for name, lo in runs if lo]
    if not runs:
        return None
    fig, axes = _panels(len(runs))
    for ax, (name, lo) in zip(axes, runs):
        ax.plot(lo["steps"], lo["score"], color=COLORS["proxy"], label="reward optimised")
        ax.plot(lo["steps"], lo["gold"], color=COLORS["gold"], label="strict verifier")
        ax.plot(lo["steps"], lo["rate"], color=COLORS["policy"], ls="--", label="rewarded but wrong (share)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Reward hacking: what the reward accepted that the verifier rejects", fontsize=11)
    return _png(fig)
