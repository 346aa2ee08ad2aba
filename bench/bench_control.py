"""The preference loop's cost, as ratios measured in one run on this machine.

1. Env steps per second of stable-baselines3 PPO on the raw environment's reward (the peer), of the same PPO through
   rlhflab's recording wrapper on the true reward, and of the whole preference loop (900 labels, reward refits
   included), at the same env steps and PPO settings, one torch thread each. The overhead is 1 - loop / peer, in
   wall-clock time (what a user waits for). The loop refits its reward in a second process while PPO trains on
   (the default), so its CPU time, that process's included, is reported too (``cpu_s``), and, with ``--sync``,
   the loop that stops PPO for every refit (``rlhflab_preference_loop_sync``).
2. Rendering cost per labelled pair: re-rendering two 25-step segments from their saved states and writing them
   side by side as one MP4, in seconds per pair and as env-step equivalents of the peer; and queueing a pair for
   people (two clips through one renderer, two MP4s and the segments into RUN/labels.sqlite), in seconds per pair.

    .venv/bin/python bench/bench_control.py [--steps 40960] [--labels 900] [--pairs 5] [--reward-epochs 60] [--sync]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rlhflab.control.clips import render_states, side_by_side, write_mp4
from rlhflab.control.envs import make_env, resolve_view
from rlhflab.control.loop import ControlConfig, preference_rl
from rlhflab.control.people import People
from rlhflab.control.reward_net import RewardNetConfig
from rlhflab.control.teachers import Teacher


def cpu_seconds() -> float:
    """CPU time of this process and of its finished child processes (the loop's refit process)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def peer(env_id: str, steps: int, config: ControlConfig, seed: int) -> tuple[float, float]:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", make_env(env_id), n_steps=config.n_steps, batch_size=config.batch_size,
                n_epochs=config.n_epochs, learning_rate=config.learning_rate, seed=seed, device="cpu", verbose=0)  # fmt: skip
    t, cpu = time.perf_counter(), cpu_seconds()
    model.learn(steps)
    return model.num_timesteps / (time.perf_counter() - t), cpu_seconds() - cpu


def loop(env_id: str, config: ControlConfig, seed: int) -> tuple[float, float, dict]:
    t, cpu = time.perf_counter(), cpu_seconds()
    result = preference_rl(lambda: make_env(env_id), resolve_view("true"), Teacher(), config, seed=seed, progress=False)
    return result.summary["env_steps"] / (time.perf_counter() - t), cpu_seconds() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Reacher-v5")
    parser.add_argument("--steps", type=int, default=40_960)
    parser.add_argument("--labels", type=int, default=900)
    parser.add_argument("--pairs", type=int, default=5, help="labelled pairs rendered for the rendering cost")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reward-epochs", type=int, default=RewardNetConfig().reward_epochs,
                        help="passes over the labels at each reward refit")  # fmt: skip
    parser.add_argument("--sync", action="store_true", help="also time the loop that stops PPO for every refit")
    parser.add_argument("--out", type=Path, default=None, help="also write the results here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # as many refits as a run of that length has (the default: 10 rounds in 153,600 steps)
    rounds = max(2, round(ControlConfig().rounds * args.steps / ControlConfig().total_steps))
    base = ControlConfig(
        total_steps=args.steps, rounds=rounds, reward=RewardNetConfig(reward_epochs=args.reward_epochs)
    )
    rates, cpu = {}, {}
    rates["sb3_ppo_true_reward"], cpu["sb3_ppo_true_reward"] = peer(args.env, args.steps, base, args.seed)
    runs = {"rlhflab_wrapper_true_reward": {"true_reward": True}, "rlhflab_preference_loop": {"labels": args.labels}}
    if args.sync:
        runs["rlhflab_preference_loop_sync"] = {"labels": args.labels, "refit_lag": 0}
    results = {}
    for name, change in runs.items():
        rates[name], cpu[name], results[name] = loop(args.env, ControlConfig(**{**base.__dict__, **change}), args.seed)
    result = results["rlhflab_preference_loop"]
    peer_rate = rates["sb3_ppo_true_reward"]
    out = {
        "env": args.env, "env_steps": args.steps, "labels": args.labels, "rounds": base.rounds,
        "reward_epochs": args.reward_epochs, "threads": 1,
        "env_steps_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_to_peer": {k: round(v / peer_rate, 3) for k, v in rates.items()},
        "loop_overhead": round(1 - rates["rlhflab_preference_loop"] / peer_rate, 3),
        "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        "loop_cpu_overhead": round(cpu["rlhflab_preference_loop"] / cpu["sb3_ppo_true_reward"] - 1, 3),
        "final_gold_return_train": round(float(result.summary["gold_return"]), 2),
    }  # fmt: skip
    if args.sync:
        out["loop_overhead_sync"] = round(1 - rates["rlhflab_preference_loop_sync"] / peer_rate, 3)
    pairs = result.comparisons[: args.pairs, :2].astype(int)
    states = result.bank.states
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            for i, (a, b) in enumerate(pairs):
                clip = side_by_side(render_states(args.env, states[a]), render_states(args.env, states[b]))
                write_mp4(clip, Path(tmp) / f"pair{i}.mp4")
            per_pair = (time.perf_counter() - t) / max(len(pairs), 1)
            size = np.mean([p.stat().st_size for p in Path(tmp).glob("*.mp4")])
        out["render_s_per_pair"] = round(per_pair, 3)
        out["render_pair_in_peer_env_steps"] = round(per_pair * peer_rate)
        out["mp4_bytes_per_pair"] = int(size)
        with tempfile.TemporaryDirectory() as tmp:  # what --people does: two clips a pair, queued in the store
            people = People(Path(tmp), args.env, progress=False)
            t = time.perf_counter()
            people.put(result.bank, pairs, 0)
            out["people_queue_s_per_pair"] = round((time.perf_counter() - t) / max(len(pairs), 1), 3)
    except Exception as e:  # no offscreen GL here: the loop's numbers still stand
        out["render_error"] = str(e).splitlines()[0]
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
