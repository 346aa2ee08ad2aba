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


# ---------------------------------------------------------------- a 3-D reach, seen by an overhead camera

REACH3D = "rlhflab/Reach3D-v0"
"""Gymnasium's Pusher (a 7-joint arm over a table) rewarded for reaching the object, not pushing it: gold per step is
-|fingertip - object| (3-D, metres) - 0.1 |action|^2; 100-step episodes; observation 14:17 the fingertip, 17:20 the
object (a cylinder of radius and half-height 0.05 m standing on the table)."""
if REACH3D not in gym.registry:
    gym.register(REACH3D, entry_point="gymnasium.envs.mujoco.pusher_v5:PusherEnv", max_episode_steps=100,
                 kwargs={"reward_near_weight": 1.0, "reward_dist_weight": 0.0, "reward_control_weight": 0.1})  # fmt: skip

REACH3D_TOUCH = 0.08
"""The fingertip touches the object within 8 cm of its centre (radius 0.05 m, the tip's 0.01 m, 2 cm of slack)."""


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at ``position`` looking at ``look_at`` (the world's z up)."""

    position: tuple[float, float, float]
    look_at: tuple[float, float, float]
    about: str = "a camera"

    def offset(self, tip: np.ndarray, target: np.ndarray) -> float:
        """How far ``tip`` appears from ``target`` in the image, in metres at the target's depth: any point on the
        camera's ray through the target appears on it."""
        c = np.asarray(self.position, np.float64)
        forward = np.asarray(self.look_at, np.float64) - c
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        if np.linalg.norm(right) < 1e-9:  # looking straight down: the image's up is the world's y
            right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        frame = np.stack([right, up, forward])
        p, q = frame @ (np.asarray(tip, np.float64) - c), frame @ (np.asarray(target, np.float64) - c)
        seen = p[:2] / max(p[2], 1e-6)  # behind the camera: far off in the image
        return float(np.linalg.norm(seen - q[:2] / q[2]) * q[2])


CAMERAS = {
    "overhead-camera": Camera((0.45, -0.05, 1.2), (0.45, -0.05, -0.3), "a camera 1.5 m over the table"),
    "shoulder-camera": Camera((-0.4, -0.6, 0.4), (0.45, -0.25, -0.3), "a camera over the arm's shoulder"),
}
"""Over the table's centre 1.5 m up, looking straight down; and over the arm's shoulder, looking at the objects."""


def camera_offset(obs: np.ndarray, camera: Camera) -> float:
    """How far the fingertip (observation 14:17) appears from the object (17:20) in ``camera``'s image."""
    return camera.offset(obs[14:17], obs[17:20])


def reach3d_distance(obs: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(obs[14:17], np.float64) - np.asarray(obs[17:20], np.float64)))


def _camera_view(name: str) -> NamedView:
    camera = CAMERAS[name]
    return NamedView(
        lambda obs, action, next_obs, info: -camera_offset(next_obs, camera),
        looks_done=lambda o: camera_offset(o, camera) < 0.05,
        is_done=lambda o: reach3d_distance(o) < REACH3D_TOUCH,
        about=f"{REACH3D} seen by {camera.about}: how far the fingertip appears from the object in the "
        "image, not its depth and not the effort",
    )


VIEWS.update({name: _camera_view(name) for name in CAMERAS})


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
