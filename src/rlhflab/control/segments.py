"""Segments of the policy's own rollouts, recorded while it trains, and the learned reward it trains on.

``LearnedRewardEnv`` wraps SB3's vectorised env. Every step it records what the loop needs from the
transition (observation, action, the environment's reward = gold, the reward the teacher perceives
through its view, and the simulator's state for rendering clips later), and hands the agent the
learned reward in place of the environment's. Completed episodes are cut into fixed-length
segments (the tail shorter than a segment is dropped) and kept in a ``SegmentBank``. No extra
environment steps are spent on feedback: the segments are the training rollouts themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper

from rlhflab.control.envs import NamedView, perceive


@dataclass
class SegmentBank:
    """Segments as stacked arrays: ``obs`` [N, H, obs_dim], ``acts`` [N, H, act_dim], ``gold`` and ``perceived``
    [N, H], ``states`` [N, H, state_dim] (qpos and qvel, empty for an env without them), ``round`` [N]."""

    obs: np.ndarray
    acts: np.ndarray
    gold: np.ndarray
    perceived: np.ndarray
    states: np.ndarray
    round: np.ndarray

    @classmethod
    def empty(cls, length: int, obs_dim: int, act_dim: int, state_dim: int) -> SegmentBank:
        z = np.zeros
        return cls(
            z((0, length, obs_dim), np.float32),
            z((0, length, act_dim), np.float32),
            z((0, length)),
            z((0, length)),
            z((0, length, state_dim)),
            z((0,), np.int64),
        )

    def __len__(self) -> int:
        return len(self.gold)

    def add(self, *others: SegmentBank) -> None:
        for name in ("obs", "acts", "gold", "perceived", "states", "round"):
            setattr(self, name, np.concatenate([getattr(self, name), *(getattr(o, name) for o in others)]))

    def features(self, index: np.ndarray | None = None) -> np.ndarray:
        """[n, H, obs_dim + act_dim]: what the reward model reads, per step."""
        obs, acts = (self.obs, self.acts) if index is None else (self.obs[index], self.acts[index])
        return np.concatenate([obs, acts], axis=-1)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("obs", "acts", "gold", "perceived", "states", "round")}


def sim_state(env) -> np.ndarray:
    """The simulator's state (MuJoCo qpos and qvel) to re-render a step later; empty for other envs."""
    data = getattr(getattr(env, "unwrapped", env), "data", None)
    if data is None or not hasattr(data, "qpos"):
        return np.zeros(0)
    return np.concatenate([np.asarray(data.qpos).ravel(), np.asarray(data.qvel).ravel()])


class LearnedRewardEnv(VecEnvWrapper):
    """The agent's env: records segments and replaces the environment's reward by ``reward_fn``'s.

    ``reward_fn(obs [n, obs_dim], acts [n, act_dim]) -> [n]`` (None: the environment's own reward, which
    is how PPO on the true reward runs through the same code). ``envs``: the underlying gymnasium envs
    (for their simulator states), one per vectorised env.
    """

    def __init__(self, venv, view: NamedView, segment_length: int, envs, reward_fn: Callable | None = None):
        super().__init__(venv)
        self.view, self.length, self.envs, self.reward_fn = view, segment_length, envs, reward_fn
        self.round = 0
        self.steps = 0
        self._obs = None
        self._acts = None
        self._states: list[np.ndarray] = []
        self._open = [self._new_episode() for _ in range(venv.num_envs)]
        self.pending: list[SegmentBank] = []
        self.episodes: list[dict[str, float]] = []
        """Finished episodes' returns: gold, perceived, proxy (learned) and the share of steps that looked done."""

    @staticmethod
    def _new_episode() -> dict[str, list]:
        return {k: [] for k in ("obs", "acts", "gold", "perceived", "states", "proxy", "looks", "is")}

    def reset(self):
        self._obs = self.venv.reset()
        self._open = [self._new_episode() for _ in range(self.num_envs)]
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        self._acts = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        self._states = [sim_state(e) for e in self.envs]  # the state each action is taken in: a clip's frame
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        before, acts = self._obs, self._acts
        proxy = rewards.astype(np.float32) if self.reward_fn is None else self.reward_fn(before, acts)
        for i in range(self.num_envs):
            after = infos[i]["terminal_observation"] if dones[i] and "terminal_observation" in infos[i] else obs[i]
            ep = self._open[i]
            ep["obs"].append(before[i])
            ep["acts"].append(acts[i])
            ep["gold"].append(float(rewards[i]))
            ep["perceived"].append(perceive(self.view, before[i], acts[i], after, infos[i], float(rewards[i])))
            ep["states"].append(self._states[i])
            ep["proxy"].append(float(proxy[i]))
            if self.view.looks_done is not None and self.view.is_done is not None:
                ep["looks"].append(bool(self.view.looks_done(after)))
                ep["is"].append(bool(self.view.is_done(after)))
            infos[i]["gold_reward"] = float(rewards[i])
            if dones[i]:
                self._close(ep)
                self._open[i] = self._new_episode()
        self._obs = obs
        self.steps += self.num_envs
        return obs, np.asarray(proxy, dtype=np.float32), dones, infos

    def _close(self, ep: dict[str, list]) -> None:
        looks = np.array(ep["looks"], dtype=bool)
        fooled = float(np.mean(looks & ~np.array(ep["is"], dtype=bool))) if len(looks) else float("nan")
        self.episodes.append(
            {"gold": sum(ep["gold"]), "perceived": sum(ep["perceived"]), "proxy": sum(ep["proxy"]), "fooled": fooled}
        )
        n = len(ep["gold"]) // self.length
        if n == 0:
            return
        cut = n * self.length

        def seg(name, dtype=np.float64):
            a = np.asarray(ep[name][:cut], dtype=dtype)
            return a.reshape(n, self.length, *a.shape[1:])

        self.pending.append(
            SegmentBank(seg("obs", np.float32), seg("acts", np.float32), seg("gold"), seg("perceived"), seg("states"),
                        np.full(n, self.round, np.int64))
        )  # fmt: skip

    def take_segments(self, bank: SegmentBank) -> int:
        """Move the segments recorded since the last call into ``bank``; returns how many."""
        n = sum(len(piece) for piece in self.pending)
        if self.pending:
            bank.add(*self.pending)  # one copy of the bank, not one per episode
        self.pending = []
        return n

    def take_episodes(self) -> list[dict[str, float]]:
        out, self.episodes = self.episodes, []
        return out
