"""``rlhflab compare``: every method, over a sweep of its strength knob, on one task, one set of
preference pairs and one reward model, placed on the gold-reward-versus-KL frontier.

Layout of the comparison directory::

    shared/                  pairs.jsonl and reward_model/ that every method uses
    points/<method>-<knob>-<value>/   one run directory per point (manifest, policy or sampler, summary.json)
    frontier.csv             one row per (method, knob value), plus the base policy
    frontier.png             gold reward (left) and proxy reward (right) against KL to the base
    budgets.csv              each method's best gold reward within KL budgets
    compare.json             the configuration and the rows

A point whose ``summary.json`` exists is not run again, so an interrupted comparison continues
where it stopped; the frontier files are written at the end, each at once.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rlhflab.config import build, check
from rlhflab.errors import ConfigError
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


def preset(name: str, seed: int = 0) -> ComparePreset:
    """``small``: every method on the embedded model in under 30 minutes on 2 CPU cores. ``quick``: a
    seconds-long version for tests (use it with a micro model)."""
    if name == "quick":
        small = dict(max_new_tokens=8, seed=seed)
        return ComparePreset(
            feedback=build(SimulateConfig, pairs=48, batch_size=16, **small),
            reward=build(RewardTrainConfig, epochs=1, batch_size=8, eval_every=5, checkpoint_every=1000, seed=seed),
            evaluate=build(EvalConfig, prompts=12, max_new_tokens=8, batch_size=16, seed=seed + 1),
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
                    build(ConditionalConfig, prompts=16, epochs=1, batch_size=8, **small),
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
        )
    if name == "small":
        return ComparePreset(
            feedback=build(SimulateConfig, seed=seed),
            reward=build(RewardTrainConfig, seed=seed),
            evaluate=build(EvalConfig, prompts=200, seed=seed + 1),
            sweeps=(
                Sweep("ppo", "kl_coef", (1.0, 0.2, 0.05), build(PPOConfig, steps=40, seed=seed)),
                Sweep("dpo", "beta", (0.05, 0.2, 0.5), build(DPOConfig, ties="drop", seed=seed)),
                Sweep("best-of-n", "n", (1, 4, 16), BestOfNConfig()),
                Sweep("ranked-sft", "rounds", (1, 3), build(RankedSFTConfig, prompts_per_round=192, seed=seed)),
                Sweep(
                    "conditional", "threshold_quantile", (0.5, 0.8), build(ConditionalConfig, prompts=600, seed=seed)
                ),
                Sweep("rloo", "kl_coef", (0.5, 0.05), build(CriticFreeConfig, steps=40, seed=seed)),
                Sweep("grpo", "kl_coef", (0.5, 0.05), build(CriticFreeConfig, steps=40, seed=seed)),
            ),
        )
    raise ConfigError(f"--preset must be 'small' or 'quick', got {name!r}")


def point_name(method: str, knob: str, value) -> str:
    return f"{method}-{knob.replace('_', '-')}-{value:g}" if isinstance(value, (int, float)) else f"{method}-{value}"


# ---------------------------------------------------------------- running the comparison


def run_compare(
    root: Path,
    model: str,
    task_name: str,
    spec: ComparePreset,
    methods: list[str] | None = None,
    budgets: tuple[float, ...] = (1.0, 3.0, 10.0),
    pad_token: str | None = None,
    progress: bool = True,
    say=print,
) -> dict:
    from rlhflab.evaluation.evaluate import evaluate_base
    from rlhflab.reward.sources import load_reward
    from rlhflab.tasks import load_task

    check(all(b > 0 for b in budgets), "budgets", budgets, "positive numbers of nats")
    sweeps = [s for s in spec.sweeps if methods is None or s.method in methods]
    unknown = sorted(set(methods or []) - {s.method for s in spec.sweeps})
    if unknown:
        raise ConfigError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    task = load_task(task_name)
    shared = RunDir(root / "shared")
    started = time.time()

    # ---------------------------------------------------------- the feedback and reward model every method shares
    reward = str(shared / RunDir.REWARD_MODEL)
    if not (shared / RunDir.REWARD_MODEL / "rlhflab_reward.json").is_file():
        say(f"[shared] {spec.feedback.pairs} preference pairs and a reward model")
        stages.feedback_simulate(shared, model, task_name, spec.feedback, spec.rater, pad_token, progress)
        stages.reward_train(shared, model, shared / RunDir.PAIRS, spec.reward, pad_token, progress=progress)
    proxy, _ = load_reward(reward, task, "cpu")
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
                    pad_token=pad_token, progress=progress,
                )  # fmt: skip
                stages.evaluate_run(
                    run, str(run.output()), model, task_name, reward, spec.evaluate, pad_token, progress,
                    base_side=base, show=False,
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

    table = budget_table(rows, budgets)
    write_outputs(
        root,
        rows,
        table,
        budgets,
        {"model": model, "task": task_name, "preset": _jsonable(spec), "seconds": round(time.time() - started)},
    )
    say(format_frontier(rows))
    say(format_budgets(table, budgets))
    for warning in budget_warnings(table, budgets):
        say(warning)
    return {"rows": rows, "budgets": table}


def _row_stats(stats: dict) -> dict:
    keys = ("gold", "gold_stderr", "proxy", "kl", "kl_stderr", "kl_bound", "distinct_2", "entropy")
    return {k: stats.get(k) for k in keys}


def _jsonable(obj):
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _jsonable(v) for k, v in asdict(obj).items()}
    return obj


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


def budget_warnings(table: list[dict], budgets: tuple[float, ...]) -> list[str]:
    """A line for each budget that no method's run reached (only the base policy is within it)."""
    lines = []
    for b in budgets:
        reached = [e["method"] for e in table if e["method"] != "base" and e[f"best_gold_kl<={b:g}"] is not None]
        if not reached:
            lines.append(
                f"note: no run stayed within the KL budget of {b:g} nats; only the base policy is within it "
                "(sweep weaker settings to fill that column)"
            )
    return lines


def format_frontier(rows: list[dict]) -> str:
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
    head = f"{'best gold within KL':20}" + "".join(f"{'≤ ' + format(b, 'g') + ' nats':>14}" for b in budgets)
    lines = [head]
    for e in table:
        cells = []
        for b in budgets:
            gold = e[f"best_gold_kl<={b:g}"]
            cells.append(f"{'—':>14}" if gold is None else f"{gold:>14.3f}")
        lines.append(f"{e['method']:20}" + "".join(cells))
    return "\n".join(lines)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def frontier_figure(rows: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    base = next(r for r in rows if r["method"] == "base")
    for ax, key, label in ((ax1, "gold", "mean gold reward"), (ax2, "proxy", "mean proxy reward")):
        ax.scatter([0], [base[key]], color="k", marker="*", s=120, zorder=3, label="base policy")
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
    ax1.set_title("gold reward vs KL (labels: the knob's value)", fontsize=10)
    ax2.set_title("proxy (reward model) vs KL; best-of-n at its KL bound", fontsize=10)
    ax1.legend(fontsize=8, loc="best")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _kl(row: dict) -> float:
    """Where a point sits on the KL axis: best-of-n's analytic bound, else the sampled estimate (>= 0)."""
    return row["kl_bound"] if row.get("kl_bound") is not None else max(row["kl"], 0.0)


def write_outputs(root: Path, rows: list[dict], table: list[dict], budgets: tuple[float, ...], meta: dict) -> None:
    atomic_write_text(root / "frontier.csv", _csv(rows))
    atomic_write_text(root / "budgets.csv", _csv(table))
    atomic_write_bytes(root / "frontier.png", frontier_figure(rows))
    atomic_write_json(root / "compare.json", {**meta, "budgets": list(budgets), "rows": rows, "best": table})
