"""Best-of-n sampling: draw n continuations from the base policy, return the one the reward prefers.

No training: the "policy" is a sampler, written as ``sampler.json`` in the run directory.
Its KL to the base policy is at most log n - (n - 1) / n (exactly that for a continuous
reward; Stiennon et al. 2020, Beirami et al. 2024); ``rlhflab evaluate`` reports that bound
beside a sampled estimate. Its cost is paid at every generation: n samples and n reward calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhflab.config import check
from rlhflab.run.rundir import RunDir
from rlhflab.rollout.samplers import best_of_n_kl_bound, write_best_of_n


@dataclass(frozen=True)
class BestOfNConfig:
    n: int = 4
    """Candidates drawn per prompt; 1 is the base policy itself."""

    def __post_init__(self) -> None:
        check(self.n >= 1, "n", self.n, ">= 1")


def make_best_of_n(model_name: str, reward: str, run: RunDir, config: BestOfNConfig) -> dict:
    """Write the sampler: base policy ``model_name``, selecting by ``reward`` (a reward-model folder or 'gold')."""
    run.path.mkdir(parents=True, exist_ok=True)
    write_best_of_n(run.path, model_name, reward, config.n)
    return {"n": config.n, "kl_bound": best_of_n_kl_bound(config.n)}
