"""The frontier of ``rlhflab compare``, analysed: its rows averaged over seeds with 95% intervals, the best gold
reward of each method within KL budgets (with a paired test across seeds against the best method), and both as
text tables. Pure functions over the rows that ``rlhflab.pipeline.compare`` builds, one per (method, knob value).
"""

from __future__ import annotations

from typing import Sequence

from rlhflab.evaluation.diagnostics.stats import mean_interval, paired_t_test

ROW_STATS = ("gold", "gold_stderr", "proxy", "kl", "kl_stderr", "kl_bound", "distinct_2", "entropy")
"""The numbers of a frontier row, from a run's evaluation summary."""


# ---------------------------------------------------------------- statistics across seeds


INTERVAL_STATS = ("gold", "proxy", "kl")
"""The frontier numbers given a 95% interval across seeds (columns ``<name>_lo``, ``<name>_hi``)."""
LEVEL = 0.95
"""Confidence level of the intervals."""
ALPHA = 0.05
"""Significance level of the paired test against the best method at a budget."""


def aggregate_frontier(seed_rows: Sequence[list[dict]]) -> list[dict]:
    """One frontier row per (method, knob, value) from each seed's rows (``seed_rows[i]`` is seed i's):
    every number is the mean over the seeds that have the point (None where none has it),
    ``<name>_lo`` and ``<name>_hi`` the 95% t-interval of gold, proxy and KL (None with one seed),
    ``run`` the seeds' run directories joined by ';', and ``seeds`` how many seeds have the point."""
    groups: dict[tuple, list[dict]] = {}
    for rows in seed_rows:
        for r in rows:
            groups.setdefault((r["method"], r["knob"], r["value"]), []).append(r)
    out = []
    for (method, knob, value), group in groups.items():
        row = {"method": method, "knob": knob, "value": value, "run": ";".join(r["run"] for r in group if r["run"])}
        intervals = {}
        for key in ROW_STATS:
            values = [r[key] for r in group if r.get(key) is not None]
            row[key], lo, hi = mean_interval(values, LEVEL) if values else (None, None, None)
            if key in INTERVAL_STATS:
                intervals.update({f"{key}_lo": lo, f"{key}_hi": hi})
        out.append({**row, **intervals, "seeds": len(group)})
    return out


def aggregate_budgets(seed_tables: Sequence[list[dict]], budgets: tuple[float, ...]) -> list[dict]:
    """One budget-table row per method from each seed's ``budget_table``: per budget, the mean of the
    method's best gold over the seeds with its 95% t-interval (``..._lo``, ``..._hi``), the knob values
    chosen (one value, or each seed's joined by ';'), and the paired t-test of its per-seed best gold
    against the method with the highest mean at that budget (``p_vs_best_kl<=B``, and
    ``significant_kl<=B`` when p < 0.05). A method without a point within the budget on some seed
    gets None in every column of that budget; so does the test with one seed, and for the best method.
    """
    by_seed = [{e["method"]: e for e in table} for table in seed_tables]
    methods = list(dict.fromkeys(e["method"] for table in seed_tables for e in table))
    cells: dict[tuple[str, float], list | None] = {}  # (method, budget) -> per-seed best gold, None if incomplete
    for m in methods:
        for b in budgets:
            values = [seed.get(m, {}).get(f"best_gold_kl<={b:g}") for seed in by_seed]
            cells[m, b] = values if all(v is not None for v in values) else None
    out = []
    for m in methods:
        head, tail = {"method": m}, {}
        for b in budgets:
            key, values = f"best_gold_kl<={b:g}", cells[m, b]
            mean, lo, hi = mean_interval(values, LEVEL) if values else (None, None, None)
            complete = [n for n in methods if cells[n, b]]
            best = max(complete, key=lambda n: sum(cells[n, b]) / len(cells[n, b]), default=None)
            p = paired_t_test(values, cells[best, b]) if values and m != best else None
            head[key] = mean
            head[f"at_kl<={b:g}"] = _chosen([seed[m][f"at_kl<={b:g}"] for seed in by_seed]) if values else None
            tail.update({f"{key}_lo": lo, f"{key}_hi": hi, f"p_vs_best_kl<={b:g}": p})
            tail[f"significant_kl<={b:g}"] = None if p is None else p < ALPHA
        out.append({**head, **tail, "seeds": sum(m in seed for seed in by_seed)})
    return out


def _chosen(values: list):
    """The knob value each seed's best point had: the value if all agree, else all joined by ';'."""
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else ";".join(str(v) for v in values)


# ---------------------------------------------------------------- the frontier and the budgets


def budget_table(rows: list[dict], budgets: tuple[float, ...]) -> list[dict]:
    """Per method: the best gold reward among its points whose KL is within each budget.

    A point's KL is its sampled estimate, or for best-of-n the analytic bound log n - (n-1)/n
    (which the true KL does not exceed). The base policy (KL 0) is a row of its own.
    """
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        points = [r for r in rows if r["method"] == method and r["kl"] is not None]
        entry = {"method": method}
        for b in budgets:
            within = [r for r in points if (r["kl_bound"] if r.get("kl_bound") is not None else r["kl"]) <= b]
            best = max(within, key=lambda r: r["gold"], default=None)
            entry[f"best_gold_kl<={b:g}"] = best["gold"] if best else None
            entry[f"at_kl<={b:g}"] = best["value"] if best else None
        out.append(entry)
    return out


def budget_warnings(
    table: list[dict], budgets: tuple[float, ...], seed_tables: Sequence[list[dict]] | None = None
) -> list[str]:
    """A line for each budget that no method's run reached (only the base policy is within it), and,
    given each seed's ``budget_table``, one for each method that reached a budget on some seeds only."""
    seed_tables = list(seed_tables) if seed_tables is not None else [table]
    lines = []
    for b in budgets:
        key = f"best_gold_kl<={b:g}"
        reached = {e["method"] for t in seed_tables for e in t if e["method"] != "base" and e[key] is not None}
        if not reached:
            lines.append(
                f"note: no run stayed within the KL budget of {b:g} nats; only the base policy is within it "
                "(sweep weaker settings to fill that column)"
            )
        for method in dict.fromkeys(e["method"] for e in table):
            count = sum(e[key] is not None for t in seed_tables for e in t if e["method"] == method)
            if 0 < count < len(seed_tables):
                lines.append(
                    f"note: {method} stayed within the KL budget of {b:g} nats on {count} of {len(seed_tables)} "
                    "seeds only; its cell is left blank (—) and out of the significance test"
                )
    return lines


def seed_count(rows: list[dict]) -> int:
    return max((r.get("seeds") or 1 for r in rows), default=1)


def _interval_note(k: int) -> str:
    dof = f"{k - 1} degree{'s' if k != 2 else ''} of freedom"
    return f"mean over {k} seeds ± half-width of its {LEVEL:.0%} interval (Student t, {dof})"


def _pm(row: dict, key: str, digits: int) -> str:
    """``mean ±half-width`` of the 95% interval of ``key``; ``—`` for a missing mean or interval."""
    mean, hi = row.get(key), row.get(f"{key}_hi")
    if mean is None:
        return "—"
    return f"{mean:.{digits}f} ±" + ("—" if hi is None else f"{hi - mean:.{digits}f}")


def format_frontier(rows: list[dict]) -> str:
    """The frontier as a table: gold ± its standard error with one seed; with several, gold, proxy and
    KL as mean ± the half-width of their 95% interval over the seeds, and a footnote saying so."""
    k = seed_count(rows)
    if k > 1:
        lines = [f"{'method':12} {'knob':>20} {'gold':>14} {'proxy':>12} {'KL (nats)':>22} {'dist-2':>7}"]
        for r in rows:
            knob = f"{r['knob']}={r['value']}" if r["knob"] else ""
            kl = _pm(r, "kl", 2) + (f" (≤{r['kl_bound']:.2f})" if r.get("kl_bound") else "")
            lines.append(
                f"{r['method']:12} {knob:>20} {_pm(r, 'gold', 3):>14} {_pm(r, 'proxy', 2):>12} {kl:>22} "
                f"{r['distinct_2']:>7.2f}"
            )
        lines.append(_interval_note(k))
        return "\n".join(lines)
    lines = [f"{'method':12} {'knob':>20} {'gold':>14} {'proxy':>7} {'KL (nats)':>16} {'dist-2':>7}"]
    for r in rows:
        knob = f"{r['knob']}={r['value']}" if r["knob"] else ""
        kl = "—" if r["kl"] is None else f"{r['kl']:.2f}" + (f" (≤{r['kl_bound']:.2f})" if r.get("kl_bound") else "")
        proxy = "—" if r["proxy"] is None else f"{r['proxy']:.2f}"
        lines.append(
            f"{r['method']:12} {knob:>20} {r['gold']:>7.3f} ±{r['gold_stderr']:.3f} {proxy:>7} {kl:>16} "
            f"{r['distinct_2']:>7.2f}"
        )
    return "\n".join(lines)


def format_budgets(table: list[dict], budgets: tuple[float, ...]) -> str:
    """The budget table: each method's best gold within each budget; with several seeds, mean ± the
    half-width of its 95% interval, ``*`` after a value significantly below the best at that budget,
    and footnotes saying so."""
    k = seed_count(table)
    width = 14 if k == 1 else 18
    head = f"{'best gold within KL':20}" + "".join(f"{'≤ ' + format(b, 'g') + ' nats':>{width}}" for b in budgets)
    lines = [head]
    for e in table:
        cells = []
        for b in budgets:
            gold = e[f"best_gold_kl<={b:g}"]
            if gold is None:
                cells.append(f"{'—':>{width}}")
            elif k == 1:
                cells.append(f"{gold:>{width}.3f}")
            else:
                mark = "*" if e.get(f"significant_kl<={b:g}") else " "
                cells.append(f"{_pm(e, f'best_gold_kl<={b:g}', 3) + mark:>{width}}")
        lines.append(f"{e['method']:20}" + "".join(cells))
    if k > 1:
        lines.append(_interval_note(k))
        lines.append(
            f"* significantly below the best method within that budget: paired t-test across the {k} seeds "
            f"(each seed's methods share its pairs and reward model), two-sided, p < {ALPHA:g}"
        )
    return "\n".join(lines)
