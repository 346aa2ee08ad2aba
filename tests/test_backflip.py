"""The written backflip score: its arithmetic on constructed states, its sign convention and kinematics against
MuJoCo, the flip counter on synthetic episodes, and the factory through make_env. No rendering, no training."""

import math

import numpy as np
import pytest

from rlhflab.control import backflip as bf
from rlhflab.control.envs import make_env

SPEC = "rlhflab.control.backflip:hopper_backflip"
TURN = 2 * math.pi


def qpos(z=1.25, angle=0.0, hip=0.0, knee=0.0, foot=0.0):
    return np.array([0.0, z, angle, hip, knee, foot])


def qvel(rate=0.0):
    return np.array([0.0, 0.0, rate, 0.0, 0.0, 0.0])


def test_terms_by_hand_rotating_in_the_air():
    # torso 0.2 m above standing, turning backward at 4 rad/s (qvel[2] = -4), action (1, 0, 0)
    terms = bf.backflip_terms(qpos(z=1.45, angle=-0.3), qvel(-4.0), np.array([1.0, 0.0, 0.0]))
    assert terms["rotation"] == pytest.approx(0.5 * 4)
    assert terms["height"] == pytest.approx(2.0 * 0.2 * 4)
    assert terms["landing"] == 0.0
    assert terms["control"] == pytest.approx(-0.01)
    assert bf.backflip_reward(qpos(z=1.45, angle=-0.3), qvel(-4.0), np.array([1.0, 0.0, 0.0])) == pytest.approx(3.59)


def test_terms_by_hand_forward_rotation_and_caps():
    # forward rotation costs, and earns no height bonus; rates are clipped at 10 rad/s
    terms = bf.backflip_terms(qpos(z=1.6, angle=0.5), qvel(30.0), np.zeros(3))
    assert terms["rotation"] == pytest.approx(-0.5 * 10)
    assert terms["height"] == 0.0
    fast = bf.backflip_terms(qpos(z=1.35), qvel(-30.0), np.zeros(3))
    assert fast["rotation"] == pytest.approx(5.0) and fast["height"] == pytest.approx(2.0 * 0.1 * 10)


def test_landing_term_by_hand():
    a = np.full(3, 0.5)
    one = bf.backflip_terms(qpos(angle=-TURN), qvel(), a)  # upright after one backward turn, standing
    assert one["landing"] == 5.0 and one["rotation"] == 0.0 and one["control"] == pytest.approx(-0.0075)
    assert bf.backflip_reward(qpos(angle=-2 * TURN + 0.3), qvel(), np.zeros(3)) == pytest.approx(10.0)
    assert bf.landed_flips(qpos(angle=0.0)) == 0  # standing without a turn
    assert bf.landed_flips(qpos(angle=TURN)) == 0  # a forward turn
    assert bf.landed_flips(qpos(angle=-TURN + 0.8)) == 0  # not upright enough
    assert bf.landed_flips(qpos(z=2.0, angle=-TURN)) == 0  # upright in the air: foot not down
    assert bf.landed_flips(qpos(z=0.6, angle=-TURN)) == 0  # torso too low
    # a bent knee lifts the ankle: z 1.25, knee bent 2 rad -> ankle at 1.25 - 0.2 - 0.45 - 0.5 cos 2 > 0.25
    assert bf.ankle_height(qpos(knee=-2.0)) == pytest.approx(0.6 - 0.5 * math.cos(2.0))
    assert bf.landed_flips(qpos(angle=-TURN, knee=-2.0)) == 0


def test_sign_convention_and_ankle_against_mujoco():
    env = bf.hopper_backflip()
    env.reset(seed=0)
    sim = env.unwrapped
    sim.set_state(qpos(angle=0.5), np.zeros(6))
    torso, thigh = sim.data.body("torso").xpos, sim.data.body("thigh").xpos
    assert thigh[0] < torso[0], "positive qpos[2] tips the top forward (+x), the hip backward"
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = qpos(z=rng.uniform(0.5, 2), angle=rng.uniform(-7, 7), hip=rng.uniform(-2, 0), knee=rng.uniform(-2, 0))
        sim.set_state(q, np.zeros(6))
        ankle = sim.data.xanchor[sim.model.joint("foot_joint").id][2]
        assert bf.ankle_height(q) == pytest.approx(ankle, abs=1e-9)
    env.close()


def test_wrapper_pays_the_score_of_the_state_after_the_step():
    env = bf.hopper_backflip()
    env.reset(seed=0)
    env.unwrapped.set_state(qpos(z=1.6, angle=-1.0), qvel(-6.0))  # thrown backward, high
    action = np.array([0.2, -0.4, 1.0])
    _, reward, terminated, _, info = env.step(action)
    data = env.unwrapped.data
    assert reward == pytest.approx(bf.backflip_reward(data.qpos, data.qvel, action))
    assert reward == pytest.approx(sum(info["backflip"].values()))
    assert info["backflip"]["rotation"] > 2 and info["backflip"]["height"] > 1
    assert "hopper_reward" in info and not terminated
    env.close()


def spin(start, end, steps=100, z=1.25):
    """Synthetic states: the torso angle from start to end (linearly), at height z, straight leg."""
    return np.array([qpos(z=z, angle=a) for a in np.linspace(start, end, steps)])


def still(angle, steps=20, z=1.25):
    return np.array([qpos(z=z, angle=angle)] * steps)


def test_count_flips_on_synthetic_episodes():
    assert bf.count_flips(np.concatenate([still(0.0), spin(0, -TURN, z=1.8), still(-TURN)])) == 1
    assert bf.count_flips(np.concatenate([still(0.0), spin(0, TURN, z=1.8), still(TURN)])) == 0  # forward
    assert bf.count_flips(np.concatenate([spin(0, -TURN, z=0.3), still(-TURN, z=0.3)])) == 0  # rolled, lying
    rolled_and_stood = np.concatenate([still(0.0), spin(0, -TURN, z=0.3), still(-TURN)])  # over on the floor, up
    assert bf.landed_flips(rolled_and_stood[-1]) == 1 and bf.count_flips(rolled_and_stood) == 0
    assert bf.count_flips(np.concatenate([spin(0, -TURN, z=1.8), still(-TURN + 1.5)])) == 0  # not upright
    touch = still(-TURN, steps=bf.HOLD - 1)  # a touch shorter than HOLD steps, then lying on the floor
    assert bf.count_flips(np.concatenate([spin(0, -TURN, z=1.8), touch, still(-TURN, z=0.3)])) == 0
    assert bf.count_flips(np.concatenate([spin(0, -TURN, z=1.8), touch, still(-TURN)])) == 1
    two = np.concatenate([spin(0, -TURN, z=1.8), still(-TURN), spin(-TURN, -2 * TURN, z=1.8), still(-2 * TURN)])
    assert bf.count_flips(two) == 2
    assert bf.count_flips(np.concatenate([still(0.0), spin(0, -2 * TURN, z=1.8), still(-2 * TURN)])) == 2  # double
    assert bf.count_flips(still(0.0, steps=1000)) == 0
    full = np.concatenate([spin(0, -TURN, z=1.8), still(-TURN)])
    assert bf.count_flips(np.concatenate([full, np.zeros((len(full), 6))], axis=1)) == 1  # qpos + qvel rows
    with pytest.raises(ValueError):
        bf.count_flips(np.zeros((10, 3)))


def test_factory_through_make_env():
    env = make_env(SPEC)
    assert env.observation_space.shape == (11,) and env.action_space.shape == (3,)
    assert env.unwrapped.spec.id == "Hopper-v5"
    env.reset(seed=0)
    steps, done = 0, False
    while not done:  # fixed-length episodes: falling over does not end one
        _, reward, terminated, truncated, info = env.step(np.zeros(3))
        steps, done = steps + 1, terminated or truncated
        assert np.isfinite(reward) and reward == pytest.approx(sum(info["backflip"].values()))
    assert steps == 1000 and not terminated
    env.close()
