"""Where the preference loop's wall-clock time goes: one run at full length with the loop's parts timed.

Wraps (in this process only) PPO's ``learn`` and ``predict``, the wait for each reward refit's result, the
submission of refit jobs, query choice, the ensemble's segment returns and the per-round measures, then runs
``preference_rl`` with the defaults on Reacher-v5 and prints the seconds spent in each, and each wait for a refit
(the first comes before any training). PPO's own time is ``learn`` less the waits inside it.

    .venv/bin/python bench/control_time_split.py [--steps 153600] [--labels 900]
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import torch
from stable_baselines3 import PPO

import rlhflab.control.loop as loop
from rlhflab.control import refit
from rlhflab.control.envs import make_env, resolve_view
from rlhflab.control.reward_net import RewardEnsemble
from rlhflab.control.teachers import Teacher

SECONDS: dict[str, float] = collections.defaultdict(float)
WAITS: list[float] = []


def timed(name: str, f):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            dt = time.perf_counter() - t
            SECONDS[name] += dt
            if name == "refit result (waiting)":
                WAITS.append(round(dt, 2))

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=153_600)
    parser.add_argument("--labels", type=int, default=900)
    args = parser.parse_args()
    torch.set_num_threads(1)
    refit.Refits.result = timed("refit result (waiting)", refit.Refits.result)
    refit.Refits.submit = timed("refit submit", refit.Refits.submit)
    loop.choose_queries = timed("choose queries", loop.choose_queries)
    loop.learned_vs_true = timed("per-round Spearman", loop.learned_vs_true)
    RewardEnsemble.segment_returns = timed("ensemble segment returns", RewardEnsemble.segment_returns)
    PPO.learn = timed("PPO learn (waits inside included)", PPO.learn)
    PPO.predict = timed("PPO predict (the untrained policy's steps)", PPO.predict)
    config = loop.ControlConfig(total_steps=args.steps, labels=args.labels)
    t = time.perf_counter()
    result = loop.preference_rl(lambda: make_env("Reacher-v5"), resolve_view("true"), Teacher(), config, seed=0,
                                progress=False)  # fmt: skip
    out = {"total_s": round(time.perf_counter() - t, 2), "env_steps": result.summary["env_steps"]}
    out.update({k: round(v, 2) for k, v in sorted(SECONDS.items(), key=lambda kv: -kv[1])})
    out["refit_waits_s"] = WAITS
    out["ppo_s_without_waits"] = round(SECONDS["PPO learn (waits inside included)"] - sum(WAITS[1:]), 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
