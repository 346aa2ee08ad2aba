"""The control study's report: gold, the teacher's score and the learned reward along training, the label-budget
curve, the fooled teacher side by side with gold, and clips of the policies before and after. One HTML file,
figures inline (PNG), clips inline (MP4), nothing external."""

from __future__ import annotations

import base64
import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from rlhflab.core.files import atomic_write_text
from rlhflab.report import CSS
from rlhflab.report.figures import _plt, _png


def measured(x) -> bool:
    """Whether ``x`` is a measured number (not None, not NaN: 'not measured' in the run's files and rows)."""
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def num(x, fmt: str = ".1f") -> str:
    """A measured number for a table, or 'n/a' where it was not measured."""
    return format(x, fmt) if measured(x) else "n/a"


def training_figure(curves: dict[str, list[dict]]) -> bytes | None:
    """Gold return (and, where it differs, the teacher's score) of the training episodes against env steps."""
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, (name, rows) in enumerate(sorted(curves.items())):
        rows = [r for r in rows if measured(r.get("gold_return")) and measured(r.get("perceived_return"))]
        steps = [r["env_steps"] for r in rows]
        color = f"C{i % 10}"
        ax.plot(steps, [r["gold_return"] for r in rows], "-o", ms=3, color=color, label=f"{name}: gold")
        if any(abs(r["perceived_return"] - r["gold_return"]) > 1e-9 for r in rows):
            ax.plot(steps, [r["perceived_return"] for r in rows], "--", color=color, label=f"{name}: teacher's view")
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean episode return (training episodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def budget_figure(rows: list[dict]) -> bytes | None:
    """Final gold return against the label budget (mean ± s.e. over seeds), with PPO on the true reward, doing
    nothing and acting at random as horizontal lines."""
    by_labels: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if not r["true_reward"] and r["view"] == "true":
            by_labels[r["labels"]].append(r["gold"])
    if not by_labels:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    xs = sorted(by_labels)
    means = [float(np.mean(by_labels[x])) for x in xs]
    ses = [
        float(np.std(by_labels[x], ddof=1) / math.sqrt(len(by_labels[x]))) if len(by_labels[x]) > 1 else 0 for x in xs
    ]
    ax.errorbar(xs, means, yerr=ses, fmt="-o", capsize=3, label="preferences (mean ± s.e. over seeds)")
    lines = [("PPO on the true reward", [r["gold"] for r in rows if r["true_reward"]], "C2"),
             ("doing nothing", [r["nothing"] for r in rows], "C7"), ("random actions", [r["random"] for r in rows], "C3")]  # fmt: skip
    for label, values, color in lines:
        if values:
            ax.axhline(float(np.mean(values)), color=color, ls="--", label=label)
    ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("labels (simulated comparisons)")
    ax.set_ylabel("gold return of the final policy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def fooled_figure(rows: list[dict]) -> bytes | None:
    """Gold and the limited teacher's score of the policy trained on the true reward and of the one the limited
    teacher taught (means over seeds), side by side."""
    fooled = [r for r in rows if r["view"] != "true"]
    honest = [r for r in rows if r["true_reward"] and measured(r.get("limited_teacher"))]
    if not fooled or not honest:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    width = 0.38
    for i, rs in enumerate((honest, fooled)):
        ax.bar(i - width / 2, float(np.mean([r["gold"] for r in rs])), width, color="C0", label=None if i else "gold")
        score = float(np.mean([r["limited_teacher"] for r in rs]))
        ax.bar(
            i + width / 2, score, width, color="C1", label=None if i else f"the teacher's score ({fooled[0]['view']})"
        )
    ax.set_xticks([0, 1], ["PPO on the true reward", "taught by the limited teacher"])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("episode return (final policy)")
    ax.legend(fontsize=8)
    return _png(fig)


def _figure(data: bytes | None, alt: str) -> str:
    if not data:
        return f'<p class="muted">({html.escape(alt)}: no data)</p>'
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _video(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><video controls loop muted playsinline width="520" src="data:video/mp4;base64,{data}"></video>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip


def write_control_report(
    out: Path, rows: list[dict], curves: dict[str, list[dict]], table_md: str, clips: list[tuple[Path, str]], title: str
) -> Path:
    """RUN/report.html of a control study."""
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in table_md.splitlines()[0].strip("|").split("|"))
    body_rows = []
    for line in table_md.splitlines()[2:]:
        if line.startswith("|"):
            cells = "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip("|").split("|"))
            body_rows.append(f"<tr>{cells}</tr>")
    notes = [html.escape(line) for line in table_md.splitlines() if line and not line.startswith("|")]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>",
        "<p>Each policy evaluated on the same fresh episodes with deterministic actions; gold is the environment's "
        "own reward, the teacher's score what the teacher perceives through its view.</p>",
        f"<table><tr>{head}</tr>{''.join(body_rows)}</table>",
        "".join(f"<p>{n}</p>" for n in notes),
        "<h2>Along training</h2>", _figure(training_figure(curves), "returns along training"),
        "<h2>Labels against gold</h2>", _figure(budget_figure(rows), "label budget"),
        "<h2>The teacher that can be fooled</h2>", _figure(fooled_figure(rows), "fooled teacher"),
    ]  # fmt: skip
    if clips:
        parts.append("<h2>Clips: untrained (left) and trained (right)</h2>")
        parts += [_video(p, c) for p, c in clips]
    parts.append("</body></html>")
    path = out / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path
