"""The backflip: Hopper taught a written backflip score (rlhflab.control.backflip) from at most 1,000 simulated
labels, beside PPO trained on that score itself, at the same env steps, seed and PPO settings.

(a) preference RL: a simulated rater compares 25-step clips by their summed backflip score (view "true": the env's
    reward *is* the score) and answers at random 10% of the time (``Teacher()``); PPO trains on the learned reward.
(b) PPO on the written score directly (``true_reward``), through the same code.

Both final policies (deterministic actions), doing nothing and acting at random are evaluated on the same fresh
episodes: the score's return (``evaluate_policy``), completed landed backflips per episode
(``backflip.count_flips`` over each episode's states) and, for (a), the Spearman correlation of the learned reward
against the score over the final policy's 25-step segments. Writes results.json and an MP4 clip of each trained
policy (one evaluation episode, every second step, 128 px) and of both side by side to ``--out``.

    .venv/bin/python bench/bench_backflip.py --out runs/backflip [--steps 409600] [--labels 900] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from rlhflab.control.backflip import count_flips
from rlhflab.control.clips import render_states, side_by_side, write_mp4
from rlhflab.control.envs import make_env, resolve_view
from rlhflab.control.loop import ControlConfig, preference_rl
from rlhflab.control.measure import agent_policy, evaluate_policy, random_policy, zero_policy
from rlhflab.control.segments import sim_state
from rlhflab.control.teachers import Teacher

ENV = "rlhflab.control.backflip:hopper_backflip"
EVAL_SEED = 10_000
"""Evaluation episodes are seeded seed + EVAL_SEED (as ``rlhflab control train`` does)."""


def episodes_states(act, episodes: int, seed: int) -> tuple[list[np.ndarray], list[float]]:
    """The states ([T, nq + nv], the state each action was taken in, then the last) and score returns of
    ``episodes`` episodes, seeded as ``evaluate_policy`` seeds them (the same episodes)."""
    env = make_env(ENV)
    venv = DummyVecEnv([lambda: Monitor(env)])
    venv.seed(seed)
    obs = venv.reset()
    states, returns, current, total = [], [], [sim_state(env)], 0.0
    while len(states) < episodes:
        obs, reward, done, info = venv.step(act(obs))
        total += float(reward[0])
        if done[0]:
            states.append(np.array(current))
            returns.append(total)
            current, total = [sim_state(env)], 0.0
        else:
            current.append(sim_state(env))
    venv.close()
    return states, returns


def measure(name: str, make_act, episodes: int, seed: int, ensemble=None) -> tuple[dict, np.ndarray]:
    """``make_act()``: a fresh ``obs -> actions`` (a random policy restarts its stream: both passes see the same)."""
    view = resolve_view("true")
    out = evaluate_policy(make_act(), lambda: make_env(ENV), view, episodes, seed + EVAL_SEED, 25, ensemble)
    states, returns = episodes_states(make_act(), episodes, seed + EVAL_SEED)
    flips = [count_flips(s) for s in states]
    out.update(
        flips_per_episode=float(np.mean(flips)),
        episodes_with_a_flip=int(sum(f > 0 for f in flips)),
        max_flips=int(max(flips)),
        same_episodes=bool(np.isclose(np.mean(returns), out["gold_return"])),
        final_backward_turns=float(np.mean([-s[-1][2] / (2 * np.pi) for s in states])),
        max_backward_turns=float(np.mean([np.max(-s[:, 2]) / (2 * np.pi) for s in states])),
        max_torso_height=float(np.mean([np.max(s[:, 1]) for s in states])),
    )
    print(f"  {name}: score {out['gold_return']:.1f}, flips/episode {out['flips_per_episode']:.2f}", flush=True)
    return out, states[0]


def clip(states: np.ndarray, path: Path, frames: int, size: int = 128) -> np.ndarray:
    picked = states[: 2 * frames : 2]  # every second step: 0.016 s of simulation per frame
    video = render_states(ENV, picked, size)
    write_mp4(video, path, fps=25)
    return video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=409_600, help="env steps of PPO, both arms")
    parser.add_argument("--labels", type=int, default=900)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per policy")
    parser.add_argument("--frames", type=int, default=150, help="frames per clip")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not 0 < args.labels <= 1000:
        parser.error("--labels: the benchmark is about at most 1,000 labels")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    # PPO settings for both arms: SB3's defaults but minibatches of 256 (faster per env step on one thread)
    base = ControlConfig(total_steps=args.steps, labels=args.labels, rounds=10, n_steps=2048, batch_size=256,
                         n_epochs=10, learning_rate=3e-4, eval_episodes=args.episodes)  # fmt: skip
    arms = {
        "preference": ControlConfig(**base.__dict__),
        "ppo_on_score": ControlConfig(**{**base.__dict__, "true_reward": True}),
    }
    out = {"env": ENV, "env_steps": args.steps, "labels": args.labels, "seed": args.seed, "threads": 1,
           "ppo": {"n_steps": 2048, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4}, "teacher": "Teacher()"}  # fmt: skip
    rows, first_states = {}, {}
    for name, config in arms.items():
        t = time.perf_counter()
        result = preference_rl(lambda: make_env(ENV), resolve_view("true"), Teacher(), config, seed=args.seed,
                               progress=False)  # fmt: skip
        train_s = time.perf_counter() - t
        print(f"{name}: trained {result.summary['env_steps']} env steps, {result.summary['labels']} labels in "
              f"{train_s:.0f} s", flush=True)  # fmt: skip
        rows[name], first_states[name] = measure(name, lambda: agent_policy(result.model), args.episodes, args.seed,
                                                 result.ensemble)  # fmt: skip
        rows[name].update(train_s=round(train_s, 1), labels=result.summary["labels"],
                          env_steps=result.summary["env_steps"], last_round=result.history[-1])  # fmt: skip
    space = make_env(ENV).action_space
    rows["nothing"], _ = measure("nothing", lambda: zero_policy(space), args.episodes, args.seed)
    rows["random"], _ = measure("random", lambda: random_policy(space, args.seed), args.episodes, args.seed)
    out["results"] = rows
    try:
        videos = [clip(first_states[n], args.out / f"backflip_{n}.mp4", args.frames) for n in arms]
        write_mp4(side_by_side(*videos), args.out / "backflip_side_by_side.mp4", fps=25)
        out["clips"] = sorted(p.name for p in args.out.glob("*.mp4"))
    except Exception as e:  # no offscreen GL here: the numbers still stand
        out["clip_error"] = str(e).splitlines()[0]
    (args.out / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n{args.steps:,} env steps, seed {args.seed}, {args.episodes} evaluation episodes each\n")
    print("| policy | labels | score return (± s.e.) | flips per episode | episodes with a flip | Spearman | train s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        rho = r.get("spearman_gold")
        print(f"| {name} | {r.get('labels', '-')} | {r['gold_return']:.1f} ± {r['gold_return_se']:.1f} | "
              f"{r['flips_per_episode']:.2f} | {r['episodes_with_a_flip']}/{r['episodes']} | "
              f"{'-' if rho is None else format(rho, '.2f')} | {r.get('train_s', '-')} |")  # fmt: skip
    print(f"\nwrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
