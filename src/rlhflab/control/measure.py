"""Measure a control policy: episodes under gold, the teacher's view and the learned reward, side by side.

``evaluate_policy`` runs ``episodes`` fresh episodes of any policy (a trained agent, doing nothing,
acting at random) through the same recording wrapper the loop trains in, so every number is
computed the same way: the mean episode return under gold (the environment's reward) with its
standard error, under the teacher's view and under the learned reward; the share of steps that
*look* done to the teacher but are not (views that define it); and, given a reward ensemble,
the Spearman correlation of learned against true returns over the policy's own segments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from rlhflab.control.envs import NamedView
from rlhflab.control.reward_net import RewardEnsemble
from rlhflab.control.segments import LearnedRewardEnv, SegmentBank, sim_state
from rlhflab.evaluation.diagnostics.stats import spearman


def agent_policy(model, deterministic: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """An SB3 model as ``obs -> actions``."""
    return lambda obs: model.predict(obs, deterministic=deterministic)[0]


def zero_policy(action_space) -> Callable[[np.ndarray], np.ndarray]:
    """Doing nothing: the zero action (clipped into the action space)."""
    zero = np.clip(np.zeros(action_space.shape, np.float32), action_space.low, action_space.high)
    return lambda obs: np.repeat(zero[None], len(obs), axis=0)


def random_policy(action_space, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Uniformly random actions, seeded."""
    rng = np.random.default_rng(seed)
    low, high = action_space.low, action_space.high
    return lambda obs: rng.uniform(low, high, size=(len(obs), *low.shape)).astype(np.float32)


def evaluate_policy(
    act: Callable[[np.ndarray], np.ndarray],
    env_fn: Callable[[], object],
    view: NamedView,
    episodes: int,
    seed: int,
    segment_length: int,
    ensemble: RewardEnsemble | None = None,
    max_steps: int = 1_000_000,
) -> dict[str, float]:
    """Mean returns of ``episodes`` episodes (seeded ``seed``) of the policy ``act`` (see the module docstring)."""
    found, bank = record(act, env_fn, view, episodes, seed, segment_length, ensemble, max_steps)
    gold = np.array([e["gold"] for e in found])
    out = {
        "episodes": len(found),
        "gold_return": float(gold.mean()) if len(gold) else math.nan,
        "gold_return_se": float(gold.std(ddof=1) / math.sqrt(len(gold))) if len(gold) > 1 else math.nan,
        "perceived_return": float(np.mean([e["perceived"] for e in found])) if found else math.nan,
        "looks_done_not_done": float(np.nanmean([e["fooled"] for e in found]))
        if found and view.looks_done
        else math.nan,
    }
    if ensemble is not None:
        out["proxy_return"] = float(np.mean([e["proxy"] for e in found])) if found else math.nan
        out.update(learned_vs_true(ensemble, bank, np.arange(len(bank))))
    return out


def record(
    act: Callable[[np.ndarray], np.ndarray],
    env_fn: Callable[[], object],
    view: NamedView,
    episodes: int,
    seed: int,
    segment_length: int,
    ensemble: RewardEnsemble | None = None,
    max_steps: int = 1_000_000,
) -> tuple[list[dict], SegmentBank]:
    """``episodes`` episodes (seeded ``seed``) of the policy ``act`` through the loop's recording wrapper: each
    episode's returns (gold, perceived, proxy: ``LearnedRewardEnv.episodes``) and their segments."""
    env = env_fn()
    venv = DummyVecEnv([lambda: Monitor(env)])
    venv.seed(seed)
    wrapper = LearnedRewardEnv(venv, view, segment_length, [env], None if ensemble is None else ensemble.reward)
    obs = wrapper.reset()
    steps = 0
    while len(wrapper.episodes) < episodes and steps < max_steps:
        obs, *_ = wrapper.step(act(obs))
        steps += 1
    found = wrapper.take_episodes()[:episodes]
    bank = SegmentBank.empty(segment_length, *_dims(venv), len(sim_state(env)))
    wrapper.take_segments(bank)
    venv.close()
    return found, bank


def learned_vs_true(ensemble: RewardEnsemble, bank: SegmentBank, index: np.ndarray) -> dict[str, float]:
    """Spearman of the ensemble's mean predicted return against gold's and the teacher's, over the segments
    ``index`` of ``bank`` (nothing for fewer than two)."""
    if len(index) < 2:
        return {}
    learned = ensemble.segment_returns(bank.features(index)).mean(0).tolist()
    return {
        "spearman_gold": spearman(learned, bank.gold[index].sum(-1).tolist()),
        "spearman_teacher": spearman(learned, bank.perceived[index].sum(-1).tolist()),
    }


def _dims(venv) -> tuple[int, int]:
    return venv.observation_space.shape[0], venv.action_space.shape[0]
