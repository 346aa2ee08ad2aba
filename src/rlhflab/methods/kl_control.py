"""KL coefficient controllers (Ziegler et al. 2019, section 2.2).

The fixed controller keeps beta; the adaptive one moves beta so the measured KL tracks a
target: e_t = clip(KL_t / KL_target - 1, -0.2, 0.2), beta_{t+1} = beta_t (1 + K_beta e_t),
with K_beta = (episodes in the batch) / horizon.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FixedKLController:
    value: float

    def update(self, current_kl: float, n_episodes: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


@dataclass
class AdaptiveKLController:
    value: float
    target: float
    horizon: int

    def update(self, current_kl: float, n_episodes: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_episodes / self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.target, self.horizon = state["value"], state["target"], state["horizon"]
