"""``rlhflab report``: one self-contained HTML page on what the optimisation did to each run.

Figures are inline (base64 PNG and GIF), there is no script and no external resource, and
every piece of model text is HTML-escaped: the page shows a continuation containing
``<script>`` as those characters.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path

from rlhflab.core import metric_names as names
from rlhflab.core.files import atomic_write_text
from rlhflab.report import figures
from rlhflab.report.measures import RunData, compendium, load_run, measure
from rlhflab.run.rundir import RunDir

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em} th,td{border:1px solid #ddd;padding:.35em .6em;
vertical-align:top;text-align:left} th{background:#f5f5f5}
td.worse{background:#fde2e1} td.same{background:#eef7ee} td.num{text-align:right;white-space:nowrap}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
.muted{color:#666;font-size:.9em} nav a{margin-right:1em}
td.text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;max-width:28em;white-space:pre-wrap}
"""


def _img(data: bytes | None, alt: str, mime: str = "image/png") -> str:
    if not data:
        return f'<p class="muted">({html.escape(alt)}: no data in these runs)</p>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{encoded}">'


def _e(x) -> str:
    return html.escape(str(x))


def _num(x, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _summary_table(runs: list[RunData], measures: list[dict]) -> str:
    head = (
        "<tr><th>run</th><th>gold: base → tuned</th><th>proxy: base → tuned</th><th>KL (nats)</th>"
        "<th>distinct-2</th><th>words</th><th>prompts</th></tr>"
    )
    rows = []
    for run, m in zip(runs, measures):
        b, p = m["summary"]["base"], m["summary"]["policy"]
        proxy = f"{b['proxy']:.2f} → {p['proxy']:.2f}" if b.get("proxy") is not None else "—"
        gold = (
            f"{b['gold']:.3f} ± {b['gold_stderr']:.3f} → {p['gold']:.3f} ± {p['gold_stderr']:.3f}"
            if b.get("gold") is not None and p.get("gold") is not None
            else "unknown (the task has no gold reward)"
        )
        rows.append(
            f"<tr><td>{_e(run.name)}</td><td class=num>{gold}</td><td class=num>{proxy}</td>"
            f"<td class=num>{p['kl']:.2f}</td><td class=num>{b['distinct_2']:.2f} → {p['distinct_2']:.2f}</td>"
            f"<td class=num>{b['words']:.1f} → {p['words']:.1f}</td><td class=num>{run.summary['prompts']}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _compendium_table(runs: list[RunData], measures: list[dict]) -> str:
    tables = [compendium(m) for m in measures]
    keys: list[tuple[str, str]] = []
    for t in tables:
        for row in t:
            if (row["problem"], row["measurement"]) not in keys:
                keys.append((row["problem"], row["measurement"]))
    head = "<tr><th>problem</th><th>measurement</th>" + "".join(f"<th>{_e(r.name)}</th>" for r in runs) + "</tr>"
    body = []
    for problem, measurement in keys:
        cells = []
        for t in tables:
            row = next((r for r in t if (r["problem"], r["measurement"]) == (problem, measurement)), None)
            if row is None:
                cells.append("<td>—</td>")
                continue
            cls, mark = {True: ("worse", " ▲ worse"), False: ("same", " ✓ not worse"), None: ("", "")}[row["worse"]]
            note = f'<br><span class="muted">{_e(row["note"])}</span>' if row["note"] else ""
            cells.append(f'<td class="{cls}">{_e(row["value"])}<b>{mark}</b>{note}</td>')
        body.append(f"<tr><td>{_e(problem)}</td><td>{_e(measurement)}</td>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _phrases(runs: list[RunData], measures: list[dict]) -> str:
    parts = []
    for run, m in zip(runs, measures):
        rows = "".join(
            f"<tr><td class=text>{_e(r['phrase'])}</td><td class=num>{r['share_in_base']:.1%}</td>"
            f"<td class=num>{r['share']:.1%}</td></tr>"
            for r in m["phrase_growth"]
        )
        parts.append(
            f"<h3>{_e(run.name)}: phrases that grew most</h3><table><tr><th>2-gram</th>"
            f"<th>share of base samples</th><th>share of tuned samples</th></tr>{rows}</table>"
        )
    return "".join(parts)


def _samples(runs: list[RunData], n: int = 20) -> str:
    parts = []
    for run in runs:
        rows = "".join(
            f"<tr><td class=text>{_e(r['prompt'])}</td><td class=text>{_e(r['base'])}</td>"
            f"<td class=num>{_num(r['gold_base'])}</td><td class=text>{_e(r['policy'])}</td>"
            f"<td class=num>{_num(r['gold_policy'])}</td></tr>"
            for r in run.samples[:n]
        )
        parts.append(
            f"<h3>{_e(run.name)}</h3><table><tr><th>prompt</th><th>base continuation</th><th>gold</th>"
            f"<th>tuned continuation</th><th>gold</th></tr>{rows}</table>"
        )
    return "".join(parts)


def build_report(runs: list[RunData]) -> str:
    measures = [measure(r) for r in runs]
    named = lambda key: [(r.name, m[key]) for r, m in zip(runs, measures)]  # noqa: E731
    points = []
    for r, m in zip(runs, measures):
        s = r.summary
        if s["policy"].get("gold") is None or s["base"].get("gold") is None:
            continue  # no gold: no point on the gold-vs-KL figure
        points.append(
            {
                "name": r.name,
                "kl": s["policy"]["kl"],
                "gold": s["policy"]["gold"],
                "gold_se": s["policy"]["gold_stderr"],
                "base_gold": s["base"]["gold"],
                "base_gold_se": s["base"]["gold_stderr"],
                "proxy": s["policy"].get("proxy"),
                "base_proxy": s["base"].get("proxy"),
                "path_kl": [x[names.KL] for x in r.metrics if names.GOLD in x],
                "path_gold": [x[names.GOLD] for x in r.metrics if names.GOLD in x],
                "path_proxy": [x[names.SCORE] for x in r.metrics if names.GOLD in x],
            }
        )
    animated = next(
        (
            (r.name, figures.training_animation(r.metrics, r.train_samples))
            for r in runs
            if r.metrics and r.train_samples
        ),
        (None, None),
    )
    versions = {r.manifest.get("rlhflab") for r in runs} - {None}
    sections = [
        (
            "summary",
            "Summary",
            _summary_table(runs, measures)
            + f'<p class="muted">gold: the task\'s true reward; proxy: the learned reward model; ± standard error over '
            f"the held-out prompts; KL: {_e(runs[0].summary.get('kl_estimator', 'sampled estimate'))}.</p>",
        ),
        (
            "compendium",
            "What the optimisation did",
            _compendium_table(runs, measures)
            + '<p class="muted">▲ worse: the tuned policy is worse than its base on this measurement by more than the '
            "stated margin (10% of the base value unless noted). — : not measured or no comparison.</p>",
        ),
        (
            "overoptimization",
            "Over-optimisation and the KL frontier",
            _img(figures.overoptimization(named("overoptimization")), "over-optimisation")
            + (
                _img(figures.frontier(points), "gold and proxy reward against KL")
                if points
                else '<p class="muted">No gold reward: no gold-against-KL figure.</p>'
            ),
        ),
        (
            "diversity",
            "Diversity and attractors",
            _img(figures.diversity(named("diversity")), "diversity") + _phrases(runs, measures),
        ),
        ("calibration", "Calibration", _img(figures.reliability(named("calibration")), "reliability diagram")),
        (
            "checkable",
            "Checkable answers: pass@k, entropy, loopholes",
            _img(figures.pass_at_k(named("pass_at_k")), "pass@k")
            + _img(figures.entropy_reward(named("entropy_reward")), "reward against entropy")
            + _img(figures.loophole(named("loophole")), "exploitation of the reward"),
        ),
        (
            "remisalignment",
            "Undoing the alignment",
            _img(figures.remisalignment(named("remisalignment")), "re-misalignment"),
        ),
        (
            "training",
            "Training, animated",
            (
                f"<p>{_e(animated[0])}: proxy and gold reward of the rollouts, and one rollout, every few steps.</p>"
                if animated[0]
                else ""
            )
            + _img(animated[1], "training animation", "image/gif"),
        ),
        ("samples", "Samples: the same held-out prompts, base vs tuned", _samples(runs)),
    ]
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<h2 id="{key}">{_e(title)}</h2>{content}' for key, title, content in sections)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>rlhflab report: '
        f"{_e(', '.join(r.name for r in runs))}</title><style>{CSS}</style></head><body>"
        f"<h1>rlhflab report</h1><p class=muted>runs: {_e(', '.join(str(r.path) for r in runs))}; "
        f"written {stamp} by rlhflab {_e(', '.join(sorted(versions)) or '?')}</p><nav>{nav}</nav>{body}"
        "</body></html>"
    )


def write_report(runs: list[RunDir], out: str | Path) -> Path:
    """Read the runs, build the page, write it atomically to ``out``."""
    data = [load_run(r) for r in runs]
    out = Path(out)
    atomic_write_text(out, build_report(data))
    return out
