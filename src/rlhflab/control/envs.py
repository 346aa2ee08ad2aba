"""Environments for preference RL, and what a teacher sees of them.

``make_env`` takes a gymnasium id (``Reacher-v5``) or ``module:factory`` (a callable returning a
gymnasium env) and checks what the loop needs: a flat ``Box`` of observations and a ``Box`` of
actions. Episodes are of fixed length where the body could die early (Hopper, Walker2d, Ant,
Humanoid get ``terminate_when_unhealthy=False``): with early termination a learned reward that
is shifted by a constant would change the incentive to stay alive, which the true reward does
not have (Christiano et al. 2017 replaced termination by a penalty for the same reason).

A *view* is what a limited teacher judges: a function ``view(obs, action, next_obs, info) ->
float`` giving the reward the teacher perceives for a step. ``VIEWS`` names the built-in ones;
``module:function`` names yours.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlhflab.core.errors import ConfigError

FIXED_LENGTH = ("Hopper", "Walker2d", "Ant", "Humanoid", "HumanoidStandup")
"""Bodies that can fall: made without early termination (fixed-length episodes)."""


def _factory(spec: str) -> Callable[..., gym.Env]:
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"--env {spec!r}: cannot import {name!r} from {module!r} ({e})") from None


def make_env(spec: str, render: bool = False, **kwargs) -> gym.Env:
    """The environment ``spec`` names (a gymnasium id or ``module:factory``), checked for flat Box spaces.

    ``render``: make it able to render RGB frames (for clips)."""
    if render:
        kwargs.setdefault("render_mode", "rgb_array")
    if ":" in spec:
        env = _factory(spec)(**kwargs)
        if not isinstance(env, gym.Env):
            raise ConfigError(f"--env {spec!r} returned {type(env).__name__}, not a gymnasium.Env")
    else:
        if spec not in gym.registry:
            near = [k for k in gym.registry if k.split("-")[0].lower() == spec.split("-")[0].lower()]
            hint = f" (did you mean {', '.join(sorted(near))}?)" if near else ""
            raise ConfigError(f"--env {spec!r} is not a gymnasium environment id{hint}")
        if spec.split("-")[0] in FIXED_LENGTH:
            kwargs.setdefault("terminate_when_unhealthy", False)
        env = gym.make(spec, **kwargs)
    check_spaces(env, spec)
    return env


def check_spaces(env: gym.Env, spec: str) -> None:
    """One-line errors for spaces the loop cannot use."""
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1:
        raise ConfigError(
            f"--env {spec!r}: observations must be a flat Box (a vector), got {obs}; flatten them with "
            "gymnasium.wrappers.FlattenObservation in your factory"
        )
    if not isinstance(act, gym.spaces.Box) or len(act.shape) != 1:
        raise ConfigError(f"--env {spec!r}: actions must be a flat Box (continuous control), got {act}")


# ---------------------------------------------------------------- views


View = Callable[[np.ndarray, np.ndarray, np.ndarray, dict], float]


@dataclass(frozen=True)
class NamedView:
    """A built-in view: the perceived reward of a step, and (optionally) whether a state *looks* done to the
    teacher and whether it *is* done, for the report's 'looks done, is not' share."""

    reward: View
    looks_done: Callable[[np.ndarray], bool] | None = None
    is_done: Callable[[np.ndarray], bool] | None = None
    about: str = ""


def _env_reward(obs, action, next_obs, info) -> float:
    return float(info["_env_reward"])


REACHER_CLOSE = 0.02
"""Reacher's fingertip counts as at the target within 2 cm (the target's own radius is 0.009 m, the arm 0.21)."""

VIEWS: dict[str, NamedView] = {
    "true": NamedView(_env_reward, about="the environment's own reward (a teacher who sees everything)"),
    "reacher-side": NamedView(
        lambda obs, action, next_obs, info: -abs(float(next_obs[8])),
        looks_done=lambda o: abs(float(o[8])) < REACHER_CLOSE,
        is_done=lambda o: float(np.hypot(o[8], o[9])) < REACHER_CLOSE,
        about="Reacher seen from the side: only the fingertip's offset from the target along x, not along y "
        "and not the effort",
    ),
}


def resolve_view(name: str) -> NamedView:
    """A built-in view by name, or ``module:function`` returning the perceived reward of a step."""
    if name in VIEWS:
        return VIEWS[name]
    if ":" in name:
        return NamedView(_factory(name), about=name)
    raise ConfigError(f"--teacher-view {name!r}: not one of {', '.join(VIEWS)} and not module:function")


def perceive(view: NamedView, obs, action, next_obs, info: dict, env_reward: float) -> float:
    """The perceived reward of one step, checked: a view that returns no finite number is an error."""
    value = view.reward(obs, action, next_obs, {**info, "_env_reward": env_reward})
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"teacher view {view.about!r} returned {value!r}, not one number") from None
    if not np.isfinite(value):
        raise ConfigError(
            f"teacher view {view.about!r} returned {value} for a step; a view must return a finite number"
        )
    return value
