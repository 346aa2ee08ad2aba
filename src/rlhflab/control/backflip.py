"""The backflip, written down: a per-step score for Hopper-v5 that pays backward rotation, height while rotating
and landing upright after a completed rotation (Christiano et al. 2017 taught Hopper a backflip from ~900 human
comparisons; here a simulated rater judges clips by this written score instead).

Sign convention (checked in MuJoCo): Hopper faces +x and its torso angle ``qpos[2]`` grows when the torso's top
tips forward (+x). A backflip turns the top backward and over, so the score reads the *backward* angle
``phi = -qpos[2]`` and its rate ``omega = -qvel[2]``. The hinge is unlimited, so ``phi`` counts whole turns:
``phi ~ 2 pi k`` is upright after ``k`` backward rotations (and the agent observes it: Hopper's observation
holds ``qpos[1:]``).

The reward of a step (the state after it, the action taken; Hopper's control step is ``DT = 0.008`` s):

- rotation: ``W_ROT * clip(omega, -RATE_CAP, RATE_CAP)``. Signed, so rocking back and forth earns nothing net:
  over an episode it sums to about ``W_ROT / DT = 62.5`` points per radian of net backward rotation (a full
  turn about 393, falling onto the back once about 98, falling forward about -98);
- height while rotating: ``W_HEIGHT * max(z - Z_STAND, 0) * clip(omega, 0, RATE_CAP)``: backward rotation
  with the torso above its standing height (``z = qpos[1]``; 1.25 m standing) earns more, so a flip in the
  air beats rolling on the floor;
- landing: ``W_LAND * k`` on every step that is *landed after k >= 1 completed backward rotations*: the
  torso within ``UPRIGHT`` rad of ``2 pi k`` (upright), the ankle (computed from the joint angles) within
  ``FOOT_DOWN`` m of the floor and the torso above ``Z_LOW`` (standing on the leg, not lying on it);
- minus control cost ``W_CTRL * sum(action^2)``.

Falling over earns (or loses) the rotation of the fall and nothing after it: Hopper given the zero action
falls onto its back, about 2.2 rad of backward rotation (about +139, seed 0). A landed backflip followed by
standing for 500 steps scores about 393 + 500 * 5 = 2,893, plus the height bonus.

``count_flips(states)`` is the report's measure, a pure function of an episode's recorded states ([T, >= 6]
rows of qpos, then optionally qvel): the number of completed backward rotations landed *that turned in the air*.
A landing counts when the landed condition holds for ``HOLD`` consecutive steps with more rotations than landed
so far; each newly landed rotation counts as a flip only if the body passed upside down (within ``INVERTED`` rad
of ``2 pi k - pi``) with the torso above ``AIR_Z`` m at least once on its way (upside down on the floor the
torso's centre is about 0.25 m up). The per-step score cannot check this (it sees one state): its landing term
also pays a body that rolls over on the floor and stands up again, a hole of the written score that the counter
does not share.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

DT = 0.008
"""Hopper-v5's control step in seconds (timestep 0.002 x frame_skip 4)."""
W_ROT = 0.5
"""Points per step per rad/s of backward rotation (signed)."""
RATE_CAP = 10.0
"""rad/s: the rotation rate counted is clipped to +-RATE_CAP."""
W_HEIGHT = 2.0
"""Points per step per metre above standing height per rad/s of backward rotation."""
Z_STAND = 1.25
"""The torso's height standing (m): the height bonus counts what is above it."""
W_LAND = 5.0
"""Points per step per completed backward rotation while landed."""
UPRIGHT = 0.6
"""rad: upright means the torso within this of a whole number of turns."""
FOOT_DOWN = 0.25
"""m: the ankle within this of the floor (0.1 standing) is a foot down."""
Z_LOW = 0.7
"""m: the torso above this is standing on the leg (Hopper-v5's own healthy floor)."""
W_CTRL = 0.01
"""Control cost per squared action unit."""
HOLD = 5
"""Consecutive landed steps that make a landing count in ``count_flips``."""
INVERTED = 0.8
"""rad: upside down means the torso within this of ``2 pi k - pi``."""
AIR_Z = 0.6
"""m: upside down with the torso's centre above this is in the air (``count_flips``)."""

THIGH, LEG, SHIN = 0.2, 0.45, 0.5
"""Torso centre to hip, hip to knee, knee to ankle (m), along Hopper-v5's body when straight."""


def ankle_height(qpos: np.ndarray) -> float:
    """The ankle's height (m) from the root height, torso angle and the thigh and leg joints (planar kinematics;
    the hip and knee hinges turn about -y, the root about +y)."""
    z, a, hip, knee = float(qpos[1]), float(qpos[2]), float(qpos[3]), float(qpos[4])
    a1 = a - hip
    a2 = a1 - knee
    return z - THIGH * math.cos(a) - LEG * math.cos(a1) - SHIN * math.cos(a2)


def turns(qpos: np.ndarray) -> int:
    """Whole backward turns of the torso: ``round(phi / 2 pi)`` (negative for forward turns)."""
    return round(-float(qpos[2]) / (2 * math.pi))


def landed_flips(qpos: np.ndarray) -> int:
    """``k >= 1`` when the body is landed (upright, foot down, torso up) after ``k`` completed backward rotations,
    else 0."""
    k = turns(qpos)
    if k < 1:
        return 0
    upright = abs(-float(qpos[2]) - 2 * math.pi * k) < UPRIGHT
    standing = ankle_height(qpos) < FOOT_DOWN and float(qpos[1]) > Z_LOW
    return k if upright and standing else 0


def backflip_terms(qpos: np.ndarray, qvel: np.ndarray, action: np.ndarray) -> dict[str, float]:
    """The score's parts for one step: the state after it (``qpos``, ``qvel``) and the action taken."""
    omega = -float(qvel[2])
    z = float(qpos[1])
    return {
        "rotation": W_ROT * min(max(omega, -RATE_CAP), RATE_CAP),
        "height": W_HEIGHT * max(z - Z_STAND, 0.0) * min(max(omega, 0.0), RATE_CAP),
        "landing": W_LAND * landed_flips(qpos),
        "control": -W_CTRL * float(np.sum(np.square(action))),
    }


def backflip_reward(qpos: np.ndarray, qvel: np.ndarray, action: np.ndarray) -> float:
    """The written backflip score of one step (the sum of ``backflip_terms``)."""
    return float(sum(backflip_terms(qpos, qvel, action).values()))


def count_flips(states: np.ndarray) -> int:
    """Completed, landed backflips that turned in the air, in one episode's states ([T, >= 6]: qpos first); see
    the module docstring."""
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 2 or states.shape[1] < 6:
        raise ValueError(f"count_flips needs [T, >= 6] states (qpos first), got shape {list(states.shape)}")
    aired: set[int] = set()  # turns k whose upside-down moment (phi = 2 pi k - pi) was in the air
    landed = flips = run = 0
    for q in states:
        phi = -float(q[2])
        k_inv = round((phi + math.pi) / (2 * math.pi))
        if abs(phi - (2 * math.pi * k_inv - math.pi)) < INVERTED and float(q[1]) > AIR_Z:
            aired.add(k_inv)
        k = landed_flips(q)
        if k > landed:
            run += 1
            if run >= HOLD:
                flips += sum(1 for j in range(landed + 1, k + 1) if j in aired)
                landed, run = k, 0
        else:
            run = 0
    return flips


class BackflipReward(gym.Wrapper):
    """Hopper with the written backflip score as its reward; Hopper's own reward and the score's parts are in
    ``info`` (``hopper_reward``, ``backflip``)."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        data = self.env.unwrapped.data
        terms = backflip_terms(np.asarray(data.qpos), np.asarray(data.qvel), np.asarray(action))
        info = {**info, "hopper_reward": float(reward), "backflip": terms}
        return obs, float(sum(terms.values())), terminated, truncated, info


def hopper_backflip(**kwargs) -> gym.Env:
    """Hopper-v5 (fixed-length episodes: no early termination) scored by the written backflip score; ``kwargs``
    go to ``gym.make`` (``render_mode``, ``width``, ``height`` for clips). Use as
    ``--env rlhflab.control.backflip:hopper_backflip``."""
    kwargs.setdefault("terminate_when_unhealthy", False)
    return BackflipReward(gym.make("Hopper-v5", **kwargs))
