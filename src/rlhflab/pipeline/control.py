"""``rlhflab control train``: one preference-RL (or true-reward) run on a gymnasium env, written to a run directory.

Files: ``metrics.jsonl`` (one row per round: env steps, labels, gold / teacher / learned returns, the learned
reward's held-out accuracy and Spearman), ``policy.zip`` (stable-baselines3's own format: ``PPO.load``),
``reward_model.pt`` (the ensemble's state and shape), ``segments.npz`` (every recorded segment and the
comparisons, for clips and audits), ``summary.json`` (the final policy against doing nothing and acting at
random, evaluated on fresh episodes), and the stage in ``manifest.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch

from rlhflab.control.envs import make_env, resolve_view
from rlhflab.control.loop import ControlConfig, ControlResult, preference_rl
from rlhflab.control.measure import agent_policy, evaluate_policy, random_policy, zero_policy
from rlhflab.control.teachers import Teacher
from rlhflab.core import threads
from rlhflab.core.files import atomic_write_json, jsonl_text
from rlhflab.pipeline.stages import stage
from rlhflab.run.rundir import RunDir

POLICY = "policy.zip"
REWARD = "reward_model.pt"
SEGMENTS = "segments.npz"
EVAL_SEED = 10_000
"""Evaluation episodes are seeded ``seed + EVAL_SEED``: fresh targets, never the training episodes."""


def control_train(
    run: RunDir,
    env: str,
    view: str,
    teacher: Teacher,
    config: ControlConfig,
    seed: int = 0,
    progress: bool = True,
    also_view: str | None = None,
) -> dict:
    """Train, save and evaluate one run; returns its summary (also RUN/summary.json). ``also_view``: score the
    final policies through this view too (``limited_teacher`` in the summary), e.g. the true-reward policy as a
    limited teacher would."""
    if _threads_chosen_by_default():  # SB3's small networks: one thread is fastest; two stalled PPO (measured)
        torch.set_num_threads(1)
    make_env(env)  # a bad id or space fails here, before the run directory records a stage
    named_view = resolve_view(view)
    args = {"env": env, "view": view, "seed": seed, "teacher": asdict(teacher)}
    run.path.mkdir(parents=True, exist_ok=True)
    metrics_path = run / RunDir.METRICS
    metrics_path.write_text("")
    with stage(run, "control", config, args) as results:

        def log(row: dict) -> None:
            with open(metrics_path, "a") as f:
                f.write(jsonl_text([finite(row)]))

        def env_fn():
            return make_env(env)

        result = preference_rl(env_fn, named_view, teacher, config, seed=seed, metrics=log, progress=progress)
        save(run, result)
        summary = evaluate_run(result, env_fn, named_view, config, seed)
        if also_view:
            for name, act in policies(result, env_fn, seed):
                summary[name]["limited_teacher"] = evaluate_policy(
                    act, env_fn, resolve_view(also_view), config.eval_episodes, seed + EVAL_SEED, config.segment_length
                )["perceived_return"]
            summary["limited_view"] = also_view
        summary = finite(summary)
        atomic_write_json(run / RunDir.SUMMARY, summary)
        results.update({k: summary["policy"][k] for k in ("gold_return", "gold_return_se", "perceived_return")})
        results.update(labels=result.summary["labels"], env_steps=result.summary["env_steps"])
    return summary


def finite(value):
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN: 'not measured' is null)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return finite(value.item())
    return value


def _threads_chosen_by_default() -> bool:
    return threads.record().get("chosen") != "given"


def save(run: RunDir, result: ControlResult) -> None:
    result.model.save(run / POLICY)
    if result.ensemble is not None:
        nets = result.ensemble.nets
        torch.save(
            {"state": result.ensemble.state_dict(), "in_dim": result.ensemble.in_mean.numel(), "members": len(nets),
             "hidden": nets[0][0].out_features},
            run / REWARD,
        )  # fmt: skip
    np.savez_compressed(run / SEGMENTS, comparisons=result.comparisons, **result.bank.arrays())


def evaluate_run(result: ControlResult, env_fn, view, config: ControlConfig, seed: int) -> dict:
    """The final policy (deterministic actions), doing nothing, and acting at random, on the same fresh episodes."""
    length, episodes = config.segment_length, config.eval_episodes
    out = {"train": result.summary, "history_rounds": len(result.history)}
    for name, act in policies(result, env_fn, seed):
        out[name] = evaluate_policy(act, env_fn, view, episodes, seed + EVAL_SEED, length, result.ensemble)
    return out


def policies(result: ControlResult, env_fn, seed: int) -> list[tuple[str, object]]:
    """The trained policy (deterministic actions) and the two baselines, as ``obs -> actions``."""
    space = env_fn().action_space
    return [
        ("policy", agent_policy(result.model)),
        ("nothing", zero_policy(space)),
        ("random", random_policy(space, seed)),
    ]


def format_summary(summary: dict) -> str:
    """The run's result in a few lines for the terminal."""

    def num(x: float, fmt: str = ".1f") -> str:
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    lines = [f"{'':10} {'gold':>16} {'teacher':>9} {'learned':>9}"]
    for name in ("policy", "nothing", "random"):
        s = summary[name]
        gold = f"{num(s['gold_return'])} ± {num(s['gold_return_se'])}"
        lines.append(f"{name:10} {gold:>16} {num(s['perceived_return']):>9} {num(s.get('proxy_return')):>9}")
    s = summary["policy"]
    if "spearman_gold" in s:
        lines.append(
            f"learned vs true return of the final policy's segments: Spearman {num(s['spearman_gold'], '.3f')}"
        )
    if s.get("looks_done_not_done") is not None and not math.isnan(s["looks_done_not_done"]):
        lines.append(f"steps that look done to the teacher but are not: {s['looks_done_not_done']:.1%}")
    return "\n".join(lines)
