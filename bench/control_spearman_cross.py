"""Is a low learned-vs-true Spearman on the final policy's segments the reward's fault or the segments'?

A control study reports, per run, the Spearman correlation of its learned reward against the true return over
its own final policy's segments. A better policy has segments more alike (an arm resting near its target), which
are harder to rank, so a better reward can score lower there. This script crosses them: every learned reward of
the chosen runs ranks every chosen policy's segments (20 fresh episodes each, deterministic actions, the
evaluation's seeds), per seed, with the spread (standard deviation) of those segments' true returns and a 95%
bootstrap interval of each correlation (the segments resampled; 40 segments make a wide one).

    .venv/bin/python bench/control_spearman_cross.py --study runs/reacher_async [--seeds 0,1,2]
        [--rewards labels300,labels900] [--policies labels300,labels900,true_reward]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO

from rlhflab.control.envs import make_env, resolve_view
from rlhflab.control.measure import agent_policy, record
from rlhflab.evaluation.diagnostics.stats import spearman
from rlhflab.pipeline.control import EVAL_SEED, load_reward
from rlhflab.run.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", type=Path, required=True, help="a control study's folder")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rewards", default="labels300,labels900", help="runs whose learned rewards rank")
    parser.add_argument("--policies", default="labels300,labels900,true_reward", help="runs whose segments are ranked")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the intervals")
    args = parser.parse_args()
    torch.set_num_threads(1)
    jobs = {j["name"]: j for j in json.loads((args.study / "study.json").read_text())["jobs"]}
    rewards, policies = args.rewards.split(","), args.policies.split(",")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        job = jobs[f"{policies[0]}_s{seed}"]
        env_id, length = job["env"], job["config"]["segment_length"]
        ensembles = {r: load_reward(RunDir(args.study / f"{r}_s{seed}")) for r in rewards}
        for p in policies:
            model = PPO.load(args.study / f"{p}_s{seed}" / "policy.zip", device="cpu")
            _, bank = record(agent_policy(model), lambda: make_env(env_id), resolve_view("true"), args.episodes,
                             seed + EVAL_SEED, length)  # fmt: skip
            row = {"seed": seed, "segments_of": p, "segments": len(bank),
                   "true_return_std": float(bank.gold.sum(-1).std(ddof=1))}  # fmt: skip
            true = bank.gold.sum(-1)
            rng = np.random.default_rng(seed)
            resamples = rng.integers(0, len(bank), size=(args.bootstrap, len(bank)))
            for r, ensemble in ensembles.items():
                learned = ensemble.segment_returns(bank.features()).mean(0)
                row[f"spearman_{r}_reward"] = spearman(learned.tolist(), true.tolist())
                boot = [spearman(learned[i].tolist(), true[i].tolist()) for i in resamples]
                row[f"spearman_{r}_reward_95"] = [
                    float(np.nanpercentile(boot, 2.5)),
                    float(np.nanpercentile(boot, 97.5)),
                ]
            rows.append(row)
            print(json.dumps(row), flush=True)
    head = ["seed", "segments of", "true return s.d."] + [f"{r} reward" for r in rewards]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in rows:
        cells = [str(row["seed"]), row["segments_of"], f"{row['true_return_std']:.2f}"]
        cells += [
            f"{row[f'spearman_{r}_reward']:.3f} [{row[f'spearman_{r}_reward_95'][0]:.2f}, "
            f"{row[f'spearman_{r}_reward_95'][1]:.2f}]"
            for r in rewards
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
