"""Statistics of collected labels (pure): counts per labeller, time per label, inter-labeller
agreement on shared pairs, agreement with the gold scorer; and their plain-text table."""

from __future__ import annotations

import statistics
from collections import defaultdict
from itertools import combinations

CHOICES = ("a", "b", "tie", "skip")
"""What a labeller can answer."""


def label_stats(answers: list[dict], queued: int, labellers: int) -> dict:
    """Counts, time per label, inter-labeller agreement on queries answered by several labellers,
    and agreement with the gold scorer where queries carry gold scores."""
    per: dict[str, dict] = defaultdict(lambda: {c: 0 for c in CHOICES} | {"seconds": []})
    for r in answers:
        per[r["labeller"]][r["choice"]] += 1
        if r["seconds"] is not None:
            per[r["labeller"]]["seconds"].append(r["seconds"])
    by_labeller = {
        name: {
            **{c: d[c] for c in CHOICES},
            "answers": sum(d[c] for c in CHOICES),
            "median_seconds": statistics.median(d["seconds"]) if d["seconds"] else None,
        }
        for name, d in sorted(per.items())
    }
    # inter-labeller agreement: every pair of labellers on every query both answered (skips left out)
    by_query: dict[int, list[str]] = defaultdict(list)
    for r in answers:
        if r["choice"] != "skip":
            by_query[r["query_id"]].append(r["choice"])
    compared = agreed = 0
    for choices in by_query.values():
        for x, y in combinations(choices, 2):
            compared += 1
            agreed += x == y
    # gold: a strict choice on a query whose gold scores differ
    gold_n = gold_ok = 0
    for r in answers:
        if r["choice"] in ("a", "b") and r["gold_a"] is not None and r["gold_b"] is not None:
            if r["gold_a"] != r["gold_b"]:
                gold_n += 1
                gold_ok += (r["choice"] == "a") == (r["gold_a"] > r["gold_b"])
    all_seconds = [r["seconds"] for r in answers if r["seconds"] is not None]
    return {
        "queued": queued,
        "labellers": labellers,
        "answers": len(answers),
        "queries_answered": len({r["query_id"] for r in answers}),
        "median_seconds": statistics.median(all_seconds) if all_seconds else None,
        "by_labeller": by_labeller,
        "agreement": agreed / compared if compared else None,
        "agreement_pairs": compared,
        "gold_agreement": gold_ok / gold_n if gold_n else None,
        "gold_answers": gold_n,
    }


def format_stats(s: dict) -> str:
    def num(x, fmt):
        return "—" if x is None else format(x, fmt)

    lines = [
        f"{s['answers']} answers from {s['labellers']} labellers on {s['queries_answered']} of "
        f"{s['queued']} queued pairs; median {num(s['median_seconds'], '.1f')} s per label",
        f"{'labeller':16} {'answers':>8} {'A':>6} {'B':>6} {'tie':>6} {'skip':>6} {'s/label':>8}",
    ]
    for name, d in s["by_labeller"].items():
        lines.append(
            f"{name:16} {d['answers']:>8} {d['a']:>6} {d['b']:>6} {d['tie']:>6} {d['skip']:>6} "
            f"{num(d['median_seconds'], '.1f'):>8}"
        )
    lines.append(
        f"inter-labeller agreement: {num(s['agreement'], '.1%')} over {s['agreement_pairs']} pairs of answers "
        "to the same query (skips left out)"
    )
    lines.append(
        f"agreement with the gold scorer: {num(s['gold_agreement'], '.1%')} over {s['gold_answers']} "
        "A/B answers whose gold scores differ"
    )
    return "\n".join(lines)
