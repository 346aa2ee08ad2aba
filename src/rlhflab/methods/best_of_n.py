"""Best-of-n sampling: draw n continuations from the base policy, return the one the reward prefers.

No training: the "policy" is a sampler, written as ``sampler.json`` in the run directory.
Its KL to the base policy is at most log n - (n - 1) / n (exactly that for a continuous
reward; Stiennon et al. 2020, Beirami et al. 2024); ``rlhflab evaluate`` reports that bound
beside a sampled estimate. Its cost is paid at every generation: n samples and n reward calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhflab.core.config import check
from rlhflab.core.loop import Hooks, MethodResult
from rlhflab.methods.registry import Method, MethodInputs, register
from rlhflab.models.samplers import best_of_n_kl_bound, best_of_n_spec


@dataclass(frozen=True)
class BestOfNConfig:
    n: int = 4
    """Candidates drawn per prompt; 1 is the base policy itself."""

    def __post_init__(self) -> None:
        check(self.n >= 1, "n", self.n, ">= 1")


def make_best_of_n(base: str, reward: str, config: BestOfNConfig) -> MethodResult:
    """The sampler: base policy ``base`` (a model name), selecting by ``reward`` (a reward name: a
    reward-model folder, 'gold' or a rule), n candidates per prompt."""
    return MethodResult(
        summary={"n": config.n, "kl_bound": best_of_n_kl_bound(config.n)},
        sampler=best_of_n_spec(base, reward, config.n),
    )


def optimize_best_of_n(x: MethodInputs, config: BestOfNConfig, hooks: Hooks) -> MethodResult:
    return make_best_of_n(x.model, x.reward_name, config)


register(
    Method(
        name="best-of-n", config=BestOfNConfig, optimize=optimize_best_of_n, data="reward", output="sampler", logs_samples=False,
        doc="Best-of-n sampling against a reward, no training -> RUN/sampler.json.",
    )
)  # fmt: skip
