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
where it stopped; the frontier files are written at the end, each at once. The statistics and tables are
``rlhflab.evaluation.frontier``'s, the figure ``rlhflab.report.figures_sweeps``'.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from rlhflab.core.config import build, check
from rlhflab.core.errors import ConfigError
from rlhflab.core.files import atomic_write_bytes, atomic_write_json, atomic_write_text, csv_text, read_json
from rlhflab.evaluation.evaluate import EvalConfig, evaluate_base
from rlhflab.evaluation.frontier import (
    ROW_STATS,
    aggregate_budgets,
    aggregate_frontier,
    budget_table,
    budget_warnings,
    format_budgets,
    format_frontier,
)
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.methods import registry
from rlhflab.methods.best_of_n import BestOfNConfig
from rlhflab.methods.conditional import ConditionalConfig
from rlhflab.methods.dpo import DPOConfig
from rlhflab.methods.grpo import GRPOConfig
from rlhflab.methods.ppo import PPOConfig
from rlhflab.methods.ranked_sft import RankedSFTConfig
from rlhflab.methods.registry import METHODS
from rlhflab.methods.rloo import RLOOConfig
from rlhflab.pipeline import stages
from rlhflab.pipeline.rewards import load_reward
from rlhflab.pipeline.setup import Setup
from rlhflab.report.figures_sweeps import frontier_figure
from rlhflab.reward.train import RewardTrainConfig
from rlhflab.run.rundir import RunDir
from rlhflab.tasks import load_task


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
            reward=build(RewardTrainConfig, epochs=1, pairs_per_step=8, eval_every=5, checkpoint_every=1000, seed=seed),
            evaluate=build(EvalConfig, num_prompts=12, max_new_tokens=8, batch_size=16, seed=seed + 1),
            sweeps=(
                Sweep(
                    "ppo",
                    "kl_coef",
                    (0.5, 0.05),
                    build(PPOConfig, steps=2, prompts_per_step=8, minibatch_size=4, **small),
                ),
                Sweep("dpo", "beta", (0.1, 0.5), build(DPOConfig, epochs=1, pairs_per_step=8, ties="drop", seed=seed)),
                Sweep("best-of-n", "n", (1, 4), BestOfNConfig()),
                Sweep(
                    "ranked-sft", "rounds", (1,), build(RankedSFTConfig, prompts_per_round=8, texts_per_step=8, **small)
                ),
                Sweep(
                    "conditional",
                    "threshold_quantile",
                    (0.5,),
                    build(ConditionalConfig, num_prompts=16, epochs=1, texts_per_step=8, **small),
                ),
                Sweep(
                    "rloo",
                    "reward_kl_coef",
                    (0.05,),
                    build(RLOOConfig, steps=2, prompts_per_step=4, minibatch_size=8, **small),
                ),  # fmt: skip
                Sweep(
                    "grpo",
                    "loss_kl_coef",
                    (0.05,),
                    build(GRPOConfig, steps=2, prompts_per_step=4, minibatch_size=8, **small),
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
                Sweep("rloo", "reward_kl_coef", (0.5, 0.05), build(RLOOConfig, steps=40, seed=seed)),
                Sweep("grpo", "loss_kl_coef", (0.5, 0.05), build(GRPOConfig, steps=40, seed=seed)),
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
    per_seed: ComparePreset | Sequence[ComparePreset],
    methods: list[str] | None = None,
    budgets: tuple[float, ...] = (1.0, 3.0, 10.0),
    pad_token: str | None = None,
    progress: bool = True,
    say=print,
    prompts: str | Path | None = None,
) -> dict:
    """Run the comparison once per preset in ``per_seed`` (one preset, or one per seed as ``presets`` makes
    them), then write the frontier files in ``root``. Returns the rows (means over the seeds), the
    budget table and every seed's rows. ``prompts`` (a file) replaces the task's prompts, for training and
    evaluation alike."""
    per_seed = [per_seed] if isinstance(per_seed, ComparePreset) else list(per_seed)
    check(1 <= len(per_seed) <= MAX_SEEDS, "seeds", len(per_seed), f"an integer from 1 to {MAX_SEEDS}")
    check(all(b > 0 for b in budgets), "budgets", budgets, "positive numbers of nats")
    unknown = sorted(set(methods or []) - {s.method for s in per_seed[0].sweeps})
    if unknown:
        raise ConfigError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    _check_layout(root, len(per_seed))
    load_task(task_name, prompts)  # a bad task or prompts file fails before any work
    started = time.time()

    seed_rows = []
    for i, preset in enumerate(per_seed):
        folder, tag = seed_folder(root, i, len(per_seed)), "" if len(per_seed) == 1 else f"[seed-{i}] "
        say_seed = functools.partial(_say_tagged, say, tag)
        seed_rows.append(
            _compare_one_seed(folder, model, task_name, preset, methods, pad_token, progress, say_seed, prompts)
        )
    rows = aggregate_frontier(seed_rows)
    seed_tables = [budget_table(r, budgets) for r in seed_rows]
    table = aggregate_budgets(seed_tables, budgets)
    every_seed = [{"seed": preset.seed, **r} for preset, rs in zip(per_seed, seed_rows) for r in rs]
    meta = {
        "model": model,
        "task": task_name,
        "preset": asdict(per_seed[0]),
        "seeds": [preset.seed for preset in per_seed],
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
    root: Path, model: str, task_name: str, preset: ComparePreset, methods, pad_token, progress, say, prompts=None
) -> list[dict]:
    """The comparison of one preset in ``root`` (``shared/``, ``points/``): its frontier rows, base first."""
    sweeps = [s for s in preset.sweeps if methods is None or s.method in methods]
    shared = RunDir(root / "shared")

    def setup(run: RunDir, read_prompts: bool = True) -> Setup:  # each stage reads what the run recorded so far
        return Setup.resolve(run, model, task_name, prompts=prompts, pad_token=pad_token, read_prompts=read_prompts)

    # ---------------------------------------------------------- the feedback and reward model every method shares
    reward = str(shared / RunDir.REWARD_MODEL)
    if not (shared / RunDir.REWARD_MODEL / "rlhflab_reward.json").is_file():
        say(f"[shared] {preset.feedback.pairs} preference pairs and a reward model")
        stages.feedback_simulate(shared, setup(shared), preset.feedback, preset.rater, progress)
        stages.reward_train(shared, model, shared / RunDir.PAIRS, preset.reward, pad_token, progress=progress)

    # the base is evaluated once, as saved (the points' policies in their methods' dtype)
    common = setup(shared)
    loader = replace(common.loader, dtype=None)
    proxy, _ = load_reward(reward, common.task, common.device, loader)
    base = evaluate_base(model, common.task, preset.evaluate, proxy, loader, progress)

    rows = [{"method": "base", "knob": "", "value": "", "run": "", **_row_stats(base.stats)}]
    for sweep in sweeps:
        for value in sweep.values:
            run = RunDir(root / "points" / point_name(sweep.method, sweep.knob, value))
            if not (run / RunDir.SUMMARY).is_file():
                say(f"[{sweep.method}] {sweep.knob} = {value}")
                config = replace(sweep.config, **{sweep.knob: value})
                pairs_method = registry.get(sweep.method).data == "pairs"
                stages.optimize(run, sweep.method, setup(run, not pairs_method), config, reward=reward,
                                pairs=shared / RunDir.PAIRS, progress=progress)  # fmt: skip
                stages.evaluate_run(run, str(run.output()), setup(run), reward, preset.evaluate, progress,
                                    base_side=base, show=False)  # fmt: skip
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


def _row_stats(stats: dict) -> dict:
    return {k: stats.get(k) for k in ROW_STATS}


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
    atomic_write_text(root / "frontier.csv", csv_text(rows))
    if seed_rows:
        atomic_write_text(root / "frontier_seeds.csv", csv_text(seed_rows))
    atomic_write_text(root / "budgets.csv", csv_text(table))
    atomic_write_bytes(root / "frontier.png", frontier_figure(rows))
    atomic_write_json(
        root / "compare.json",
        {**meta, "budgets": list(budgets), "rows": rows, "best": table, "seed_rows": seed_rows or []},
    )
