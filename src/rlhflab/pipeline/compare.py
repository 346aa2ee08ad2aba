"""``rlhflab compare``: every method, over a sweep of its strength knob, on one task, one set of
preference pairs and one reward model, placed on the gold-reward-versus-KL frontier.

Layout of the comparison directory::

    shared/                  pairs.jsonl and reward_model/ that every method uses
    points/<method>-<knob>-<value>/   one run directory per point (manifest, policy or sampler, summary.json)
    frontier.csv             one row per (method, knob value), plus the base policy
    frontier_seeds.csv       the same rows for each seed, with a ``seed`` column
    frontier.png             gold reward (left) and proxy reward (right) against KL to the base
    budgets.csv              each method's best gold reward within KL budgets
    compare.json             the configuration and the rows

With several seeds (``--seeds K``) the whole comparison (pairs, reward model, every point, the base
evaluation) is run once per seed, in ``seed-<i>/shared/`` and ``seed-<i>/points/`` for i = 0..K-1;
``frontier.csv`` and ``budgets.csv`` then hold the means over the seeds with 95% Student-t
intervals, and ``budgets.csv`` says which methods are significantly below the best at each budget
(a paired t-test across seeds, which share their pairs and reward model). With one seed the
intervals are blank.

A point whose ``summary.json`` exists is not run again, so an interrupted comparison continues
where it stopped; the frontier files are written at the end, each at once.
"""

from __future__ import annotations

import csv
import functools
import io
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from rlhflab.config import build, check
from rlhflab.errors import ConfigError
from rlhflab.evaluation.diagnostics.stats import mean_interval, paired_t_test
from rlhflab.evaluation.evaluate import EvalConfig
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.files import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from rlhflab.methods.best_of_n import BestOfNConfig
from rlhflab.methods.conditional import ConditionalConfig
from rlhflab.methods.critic_free import CriticFreeConfig
from rlhflab.methods.dpo import DPOConfig
from rlhflab.methods.ppo import PPOConfig
from rlhflab.methods.ranked_sft import RankedSFTConfig
from rlhflab.methods.registry import METHODS
from rlhflab.pipeline import stages
from rlhflab.reward.train import RewardTrainConfig
from rlhflab.run.rundir import RunDir


@dataclass(frozen=True)
class Sweep:
    method: str
    """A method name of ``rlhflab optimize``."""
    knob: str
    """The config field swept."""
    values: tuple
    """Its values, one run each."""
    config: Any
    """The method's config; the knob is replaced by each value."""


@dataclass(frozen=True)
class ComparePreset:
    feedback: SimulateConfig
    reward: RewardTrainConfig
    evaluate: EvalConfig
    sweeps: tuple[Sweep, ...]
    rater: SimulatedRater = field(default_factory=SimulatedRater)
    seed: int = 0
    """The seed its stages were built with (recorded in frontier_seeds.csv)."""


MAX_SEEDS = 100
"""The most seeds ``--seeds`` takes: each one is a whole comparison."""


def presets(name: str, seed: int = 0, seeds: int = 1) -> list[ComparePreset]:
    """The preset ``name`` once per seed: with seeds ``seed``, ``seed + 1``, ..., ``seed + seeds - 1``."""
    check(isinstance(seeds, int) and 1 <= seeds <= MAX_SEEDS, "seeds", seeds, f"an integer from 1 to {MAX_SEEDS}")
    return [preset(name, seed + i) for i in range(seeds)]


def preset(name: str, seed: int = 0) -> ComparePreset:
    """``small``: every method on the embedded model in under 30 minutes on 2 CPU cores. ``quick``: a
    seconds-long version for tests (use it with a micro model)."""
    if name == "quick":
        small = dict(max_new_tokens=8, seed=seed)
        return ComparePreset(
            feedback=build(SimulateConfig, pairs=48, batch_size=16, **small),
            reward=build(RewardTrainConfig, epochs=1, batch_size=8, eval_every=5, checkpoint_every=1000, seed=seed),
            evaluate=build(EvalConfig, num_prompts=12, max_new_tokens=8, batch_size=16, seed=seed + 1),
            sweeps=(
                Sweep(
                    "ppo", "kl_coef", (0.5, 0.05), build(PPOConfig, steps=2, batch_size=8, minibatch_size=4, **small)
                ),
                Sweep("dpo", "beta", (0.1, 0.5), build(DPOConfig, epochs=1, batch_size=8, ties="drop", seed=seed)),
                Sweep("best-of-n", "n", (1, 4), BestOfNConfig()),
                Sweep("ranked-sft", "rounds", (1,), build(RankedSFTConfig, prompts_per_round=8, batch_size=8, **small)),
                Sweep(
                    "conditional",
                    "threshold_quantile",
                    (0.5,),
                    build(ConditionalConfig, num_prompts=16, epochs=1, batch_size=8, **small),
                ),
                Sweep(
                    "rloo",
                    "kl_coef",
                    (0.05,),
                    build(CriticFreeConfig, steps=2, prompts_per_step=4, minibatch_size=8, **small),
                ),  # fmt: skip
                Sweep(
                    "grpo",
                    "kl_coef",
                    (0.05,),
                    build(CriticFreeConfig, steps=2, prompts_per_step=4, minibatch_size=8, **small),
                ),  # fmt: skip
            ),
            seed=seed,
        )
    if name == "small":
        return ComparePreset(
            feedback=build(SimulateConfig, seed=seed),
            reward=build(RewardTrainConfig, seed=seed),
            evaluate=build(EvalConfig, num_prompts=200, seed=seed + 1),
            sweeps=(
                Sweep("ppo", "kl_coef", (1.0, 0.2, 0.05), build(PPOConfig, steps=40, seed=seed)),
                Sweep("dpo", "beta", (0.05, 0.2, 0.5), build(DPOConfig, ties="drop", seed=seed)),
                Sweep("best-of-n", "n", (1, 4, 16), BestOfNConfig()),
                Sweep("ranked-sft", "rounds", (1, 3), build(RankedSFTConfig, prompts_per_round=192, seed=seed)),
                Sweep(
                    "conditional",
                    "threshold_quantile",
                    (0.5, 0.8),
                    build(ConditionalConfig, num_prompts=600, seed=seed),
                ),
                Sweep("rloo", "kl_coef", (0.5, 0.05), build(CriticFreeConfig, steps=40, seed=seed)),
                Sweep("grpo", "kl_coef", (0.5, 0.05), build(CriticFreeConfig, steps=40, seed=seed)),
            ),
            seed=seed,
        )
    raise ConfigError(f"--preset must be 'small' or 'quick', got {name!r}")


def point_name(method: str, knob: str, value) -> str:
    return f"{method}-{knob.replace('_', '-')}-{value:g}" if isinstance(value, (int, float)) else f"{method}-{value}"


# ---------------------------------------------------------------- running the comparison


def run_compare(
    root: Path,
    model: str,
    task_name: str,
    specs: ComparePreset | Sequence[ComparePreset],
    methods: list[str] | None = None,
    budgets: tuple[float, ...] = (1.0, 3.0, 10.0),
    pad_token: str | None = None,
    progress: bool = True,
    say=print,
    prompts: str | Path | None = None,
) -> dict:
    """Run the comparison once per preset in ``specs`` (one preset, or one per seed as ``presets`` makes
    them), then write the frontier files in ``root``. Returns the rows (means over the seeds), the
    budget table and every seed's rows. ``prompts`` (a file) replaces the task's prompts, for training and
    evaluation alike."""
    from rlhflab.tasks import load_task

    specs = [specs] if isinstance(specs, ComparePreset) else list(specs)
    check(1 <= len(specs) <= MAX_SEEDS, "seeds", len(specs), f"an integer from 1 to {MAX_SEEDS}")
    check(all(b > 0 for b in budgets), "budgets", budgets, "positive numbers of nats")
    unknown = sorted(set(methods or []) - {s.method for s in specs[0].sweeps})
    if unknown:
        raise ConfigError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    _check_layout(root, len(specs))
    task = load_task(task_name, prompts)
    started = time.time()

    seed_rows = []
    for i, spec in enumerate(specs):
        folder, tag = seed_folder(root, i, len(specs)), "" if len(specs) == 1 else f"[seed-{i}] "
        say_seed = functools.partial(_say_tagged, say, tag)
        seed_rows.append(
            _compare_one_seed(folder, model, task, task_name, spec, methods, pad_token, progress, say_seed, prompts)
        )
    rows = aggregate_frontier(seed_rows)
    seed_tables = [budget_table(r, budgets) for r in seed_rows]
    table = aggregate_budgets(seed_tables, budgets)
    every_seed = [{"seed": spec.seed, **r} for spec, rs in zip(specs, seed_rows) for r in rs]
    meta = {
        "model": model,
        "task": task_name,
        "preset": asdict(specs[0]),
        "seeds": [spec.seed for spec in specs],
        "seconds": round(time.time() - started),
    }
    write_outputs(root, rows, table, budgets, meta, seed_rows=every_seed)
    say(format_frontier(rows))
    say(format_budgets(table, budgets))
    for warning in budget_warnings(table, budgets, seed_tables):
        say(warning)
    return {"rows": rows, "budgets": table, "seed_rows": every_seed}


def seed_folder(root: Path, index: int, seeds: int) -> Path:
    """Where the comparison of seed number ``index`` (0-based) of ``seeds`` goes: ``root`` itself
    with one seed (the layout of one-seed comparisons), else ``root/seed-<index>``."""
    return root if seeds == 1 else root / f"seed-{index}"


def _say_tagged(say, tag: str, message: str) -> None:
    say(tag + message)


def _check_layout(root: Path, seeds: int) -> None:
    """ConfigError if ``root`` holds a comparison with the other layout (one seed versus several)."""
    several = sorted(p.name for p in root.glob("seed-*") if p.is_dir())
    if seeds == 1 and several:
        raise ConfigError(
            f"--seeds: {root} holds a comparison over {len(several)} seeds ({', '.join(several)}); "
            f"pass --seeds {len(several)} to continue it, or another --run-dir"
        )
    if seeds > 1 and ((root / "shared").is_dir() or (root / "points").is_dir()):
        raise ConfigError(
            f"--seeds: {root} holds a one-seed comparison (shared/, points/); pass --seeds 1 to continue it, "
            f"or another --run-dir for {seeds} seeds"
        )


def _compare_one_seed(
    root: Path, model: str, task, task_name: str, spec: ComparePreset, methods, pad_token, progress, say, prompts=None
) -> list[dict]:
    """The comparison of one preset in ``root`` (``shared/``, ``points/``): its frontier rows, base first."""
    from rlhflab.evaluation.evaluate import evaluate_base
    from rlhflab.reward.sources import load_reward

    sweeps = [s for s in spec.sweeps if methods is None or s.method in methods]
    shared = RunDir(root / "shared")

    # ---------------------------------------------------------- the feedback and reward model every method shares
    reward = str(shared / RunDir.REWARD_MODEL)
    if not (shared / RunDir.REWARD_MODEL / "rlhflab_reward.json").is_file():
        say(f"[shared] {spec.feedback.pairs} preference pairs and a reward model")
        stages.feedback_simulate(shared, model, task_name, spec.feedback, spec.rater, pad_token, progress, prompts)
        stages.reward_train(shared, model, shared / RunDir.PAIRS, spec.reward, pad_token, progress=progress)
    from rlhflab.rollout import distributed

    proxy, _ = load_reward(reward, task, distributed.state().device)
    base = evaluate_base(model, task, spec.evaluate, proxy, pad_token, progress)

    rows = [{"method": "base", "knob": "", "value": "", "run": "", **_row_stats(base.stats)}]
    for sweep in sweeps:
        for value in sweep.values:
            run = RunDir(root / "points" / point_name(sweep.method, sweep.knob, value))
            if not (run / RunDir.SUMMARY).is_file():
                say(f"[{sweep.method}] {sweep.knob} = {value}")
                config = replace(sweep.config, **{sweep.knob: value})
                stages.optimize(
                    run, sweep.method, model, task_name, config, reward=reward, pairs=shared / RunDir.PAIRS,
                    pad_token=pad_token, progress=progress, prompts=prompts,
                )  # fmt: skip
                stages.evaluate_run(
                    run, str(run.output()), model, task_name, reward, spec.evaluate, pad_token, progress,
                    base_side=base, show=False, prompts=prompts,
                )  # fmt: skip
            summary = read_json(run / RunDir.SUMMARY)
            rows.append(
                {
                    "method": sweep.method,
                    "knob": sweep.knob,
                    "value": value,
                    "run": str(run.path),
                    **_row_stats(summary["policy"]),
                }  # fmt: skip
            )
    return rows


ROW_STATS = ("gold", "gold_stderr", "proxy", "kl", "kl_stderr", "kl_bound", "distinct_2", "entropy")
"""The numbers of a frontier row, from a run's evaluation summary."""


def _row_stats(stats: dict) -> dict:
    return {k: stats.get(k) for k in ROW_STATS}


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


def _seeds(rows: list[dict]) -> int:
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
    k = _seeds(rows)
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
    k = _seeds(table)
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


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    base = next(r for r in rows if r["method"] == "base")
    k = _seeds(rows)
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _kl(row: dict) -> float:
    """Where a point sits on the KL axis: best-of-n's analytic bound, else the sampled estimate (>= 0)."""
    return row["kl_bound"] if row.get("kl_bound") is not None else max(row["kl"], 0.0)


def write_outputs(
    root: Path,
    rows: list[dict],
    table: list[dict],
    budgets: tuple[float, ...],
    meta: dict,
    seed_rows: list[dict] | None = None,
) -> None:
    """frontier.csv, budgets.csv, frontier.png, compare.json and, given every seed's rows (each with a
    ``seed``), frontier_seeds.csv; each file written at once."""
    atomic_write_text(root / "frontier.csv", _csv(rows))
    if seed_rows:
        atomic_write_text(root / "frontier_seeds.csv", _csv(seed_rows))
    atomic_write_text(root / "budgets.csv", _csv(table))
    atomic_write_bytes(root / "frontier.png", frontier_figure(rows))
    atomic_write_json(
        root / "compare.json",
        {**meta, "budgets": list(budgets), "rows": rows, "best": table, "seed_rows": seed_rows or []},
    )
