"""The preference loop's cost, as ratios measured in one run on this machine.

1. Env steps per second of stable-baselines3 PPO on the raw environment's reward (the peer), of the same PPO through
   rlhflab's recording wrapper on the true reward, and of the whole preference loop (900 labels, reward refits
   included), at the same env steps and PPO settings, one torch thread each. The overhead is 1 - loop / peer.
2. Rendering cost per labelled pair: re-rendering two 25-step segments from their saved states and writing them
   side by side as one MP4, in seconds per pair and as env-step equivalents of the peer; and queueing a pair for
   people (two clips through one renderer, two MP4s and the segments into RUN/labels.sqlite), in seconds per pair.

    .venv/bin/python bench/bench_control.py [--steps 40960] [--labels 900] [--pairs 5] [--reward-epochs 60]
"""

from __future__ import annotations

import argparse
import json
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


def peer(env_id: str, steps: int, config: ControlConfig, seed: int) -> float:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", make_env(env_id), n_steps=config.n_steps, batch_size=config.batch_size,
                n_epochs=config.n_epochs, learning_rate=config.learning_rate, seed=seed, device="cpu", verbose=0)  # fmt: skip
    t = time.perf_counter()
    model.learn(steps)
    return model.num_timesteps / (time.perf_counter() - t)


def loop(env_id: str, config: ControlConfig, seed: int) -> tuple[float, dict]:
    t = time.perf_counter()
    result = preference_rl(lambda: make_env(env_id), resolve_view("true"), Teacher(), config, seed=seed, progress=False)
    return result.summary["env_steps"] / (time.perf_counter() - t), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Reacher-v5")
    parser.add_argument("--steps", type=int, default=40_960)
    parser.add_argument("--labels", type=int, default=900)
    parser.add_argument("--pairs", type=int, default=5, help="labelled pairs rendered for the rendering cost")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reward-epochs", type=int, default=RewardNetConfig().reward_epochs,
                        help="passes over the labels at each reward refit")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="also write the results here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = ControlConfig(total_steps=args.steps, rounds=max(2, args.steps // 16_384),
                         reward=RewardNetConfig(reward_epochs=args.reward_epochs))  # fmt: skip
    rates = {"sb3_ppo_true_reward": peer(args.env, args.steps, base, args.seed)}
    rates["rlhflab_wrapper_true_reward"], _ = loop(args.env, ControlConfig(**{**base.__dict__, "true_reward": True}),
                                                   args.seed)  # fmt: skip
    rates["rlhflab_preference_loop"], result = loop(args.env, ControlConfig(**{**base.__dict__, "labels": args.labels}),
                                                     args.seed)  # fmt: skip
    peer_rate = rates["sb3_ppo_true_reward"]
    out = {
        "env": args.env, "env_steps": args.steps, "labels": args.labels, "rounds": base.rounds,
        "reward_epochs": args.reward_epochs, "threads": 1,
        "env_steps_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_to_peer": {k: round(v / peer_rate, 3) for k, v in rates.items()},
        "loop_overhead": round(1 - rates["rlhflab_preference_loop"] / peer_rate, 3),
    }  # fmt: skip
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
