"""``rlhflab control train``: one preference-RL (or true-reward) run on a gymnasium env, written to a run directory.

Files: ``metrics.jsonl`` (one row per round: env steps, labels, gold / teacher / learned returns, the learned
reward's held-out accuracy and Spearman), ``policy.zip`` (stable-baselines3's own format: ``PPO.load``),
``reward_model.pt`` (the ensemble's state and shape), ``segments.npz`` (every recorded segment and the
comparisons, for clips and audits), ``summary.json`` (the final policy against doing nothing and acting at
random, evaluated on fresh episodes), and the stage in ``manifest.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import numpy as np
import torch
from stable_baselines3 import PPO

from rlhflab.control.envs import make_env, resolve_view
from rlhflab.control.loop import ControlConfig, ControlResult, RoundState, preference_rl
from rlhflab.control.measure import agent_policy, evaluate_policy, random_policy, zero_policy
from rlhflab.control.people import People
from rlhflab.control.reward_net import RewardEnsemble
from rlhflab.control.segments import SegmentBank
from rlhflab.control.teachers import Teacher
from rlhflab.core import threads
from rlhflab.core.config import from_dict
from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.core.files import atomic_write_json, jsonl_text, read_json
from rlhflab.pipeline.stages import stage
from rlhflab.report.control import measured, num
from rlhflab.run.rundir import RunDir

POLICY = "policy.zip"
REWARD = "reward_model.pt"
SEGMENTS = "segments.npz"
CHECKPOINTS = "control"
"""RUN/checkpoints/control/step-NNNNNNN: the loop after round NNNNNNN."""
EVAL_SEED = 10_000
"""Evaluation episodes are seeded ``seed + EVAL_SEED``: fresh targets, never the training episodes."""


def control_train(
    run: RunDir,
    env: str,
    view: str,
    teacher: Teacher | People,
    config: ControlConfig,
    seed: int = 0,
    progress: bool = True,
    also_view: str | None = None,
    resume: bool = False,
    refit_process: bool | None = None,
) -> dict:
    """Train, save and evaluate one run; returns its summary (also RUN/summary.json). ``also_view``: score the
    final policies through this view too (``limited_teacher`` in the summary), e.g. the true-reward policy as a
    limited teacher would. The loop's state is saved after every round (RUN/checkpoints/control); ``resume``
    continues an interrupted run from its last round. ``refit_process``: as ``preference_rl``'s (the same
    numbers either way)."""
    if _threads_chosen_by_default():  # SB3's small networks: one thread is fastest; two stalled PPO (measured)
        torch.set_num_threads(1)
    make_env(env)  # a bad id or space fails here, before the run directory records a stage
    named_view = resolve_view(view)
    people = isinstance(teacher, People)
    args = {"env": env, "view": view, "seed": seed, "teacher": asdict(Teacher() if people else teacher)}
    if people:  # people label in RUN/labels.sqlite ('rlhflab label serve --run RUN')
        args["people"] = {"wait_seconds": teacher.wait_seconds}
        teacher = replace(teacher, run_dir=run.path, env=env, progress=progress)
    run.path.mkdir(parents=True, exist_ok=True)
    metrics_path = run / RunDir.METRICS
    state = load_round(run) if resume else None
    if resume and state is None:
        raise RlhflabError(f"{run.path}: no round checkpoint to resume from (checkpoints/control/latest)")
    # a resumed run keeps the rows of the rounds it does not run again
    metrics_path.write_text(jsonl_text([finite(r) for r in state.history]) if state else "")
    with stage(run, "control", config, args) as results:

        def log(row: dict) -> None:
            with open(metrics_path, "a") as f:
                f.write(jsonl_text([finite(row)]))

        def env_fn():
            return make_env(env)

        result = preference_rl(env_fn, named_view, teacher, config, seed=seed, metrics=log, progress=progress,
                               checkpoint=lambda st: save_round(run, st), resume=state,
                               refit_process=refit_process)  # fmt: skip
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


def resume_control(run_dir, progress: bool = True) -> dict:
    """Continue the run in ``run_dir`` with the settings it was started with (its manifest's 'control' stage)."""
    run = RunDir(run_dir)
    entry = run.stage("control")
    args = entry.get("args") or {}
    if not isinstance(args.get("env"), str) or not isinstance(args.get("teacher"), dict):
        raise DataError(
            run.manifest_path, "the 'control' stage has no recorded env and teacher", field="stages.control"
        )
    config = from_dict(ControlConfig, entry.get("config") or {}, source=run.manifest_path)
    teacher = from_dict(Teacher, args["teacher"], source=run.manifest_path)
    if isinstance(args.get("people"), dict):
        teacher = People(run.path, args["env"], wait_seconds=float(args["people"].get("wait_seconds", 1800)))
    return control_train(run, args["env"], args.get("view", "true"), teacher, config, int(args.get("seed", 0)),
                         progress=progress, resume=True)  # fmt: skip


def save_round(run: RunDir, state: RoundState) -> None:
    """The loop after a round, atomically (the previous round's checkpoint stays until this one is complete)."""
    tmp, final = run.new_checkpoint_dir(CHECKPOINTS, state.round)
    state.model.save(tmp / "ppo.zip")
    torch.save({"ensemble": state.ensemble_state, "generator": state.generator_state}, tmp / "torch_state.pt")
    np.savez_compressed(tmp / "segments.npz", comparisons=state.comparisons, **state.bank.arrays())
    atomic_write_json(tmp / "state.json", finite({"round": state.round, "history": state.history,
                      "asked": state.asked, "skipped": state.skipped, "env_steps": state.env_steps,
                      "rng": state.rng_state, "teacher": state.teacher_state,
                      "refit_pending": state.refit_pending}))  # fmt: skip
    run.commit_checkpoint(CHECKPOINTS, tmp, final)


def load_round(run: RunDir) -> RoundState | None:
    folder = run.latest_checkpoint(CHECKPOINTS)
    if folder is None:
        return None
    meta = read_json(folder / "state.json", "control checkpoint")
    tensors = torch.load(folder / "torch_state.pt", weights_only=True)
    arrays = np.load(folder / "segments.npz")
    bank = SegmentBank(**{k: arrays[k] for k in ("obs", "acts", "gold", "perceived", "states", "round")})
    return RoundState(
        meta["round"], None, tensors["ensemble"], bank, arrays["comparisons"], meta["history"], meta["asked"],
        meta["skipped"], meta["env_steps"], meta["rng"], tensors["generator"], meta.get("teacher"),
        meta.get("refit_pending", False),
        model_loader=lambda env: PPO.load(folder / "ppo.zip", env=env, device="cpu"),
    )  # fmt: skip


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


def load_reward(run: RunDir) -> RewardEnsemble:
    """A finished run's learned reward (RUN/reward_model.pt)."""
    path = run / REWARD
    if not path.is_file():
        raise RlhflabError(f"{path}: no learned reward here (a run on the true reward has none)")
    saved = torch.load(path, weights_only=True)
    ensemble = RewardEnsemble(saved["in_dim"], saved["members"], saved["hidden"])
    ensemble.load_state_dict(saved["state"])
    return ensemble


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
    if measured(s.get("looks_done_not_done")):
        lines.append(f"steps that look done to the teacher but are not: {s['looks_done_not_done']:.1%}")
    return "\n".join(lines)
