"""KL controllers (Ziegler et al. 2019, eq. 2.2)."""

import pytest

from rlhflab.methods.kl_control import AdaptiveKLController, FixedKLController


def test_fixed_controller_keeps_beta():
    ctl = FixedKLController(0.1)
    ctl.update(100.0, 64)
    assert ctl.value == 0.1


def test_adaptive_controller_hand_values():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=1000)
    ctl.update(9.0, 100)  # error 0.5 clipped to 0.2 -> beta * (1 + 0.2 * 100 / 1000)
    assert ctl.value == pytest.approx(0.1 * 1.02)
    ctl.update(4.5, 100)  # error -0.25 clipped to -0.2
    assert ctl.value == pytest.approx(0.1 * 1.02 * 0.98)
    ctl.update(6.6, 500)  # error 0.1 -> * 1.05
    assert ctl.value == pytest.approx(0.1 * 1.02 * 0.98 * 1.05)


def test_adaptive_controller_moves_kl_towards_target_and_round_trips():
    ctl = AdaptiveKLController(1.0, target=6.0, horizon=100)
    for _ in range(50):
        ctl.update(2.0, 10)  # KL below target: beta falls
    assert ctl.value < 1.0
    clone = AdaptiveKLController(0.0, 1.0, 1)
    clone.load_state_dict(ctl.state_dict())
    assert clone == ctl
