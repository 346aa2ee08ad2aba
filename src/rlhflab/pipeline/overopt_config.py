"""What ``rlhflab overopt`` runs (``OveroptPreset``): the numbers of labels, the seeds, how comparisons are sampled
and proxies trained, the RL method, the best-of-n pool and the levers, checked when built. The named presets are
``rlhflab.pipeline.overopt.preset``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhflab.core.config import check
from rlhflab.feedback.simulated import SimulateConfig
from rlhflab.methods.grpo import GRPOConfig
from rlhflab.methods.ppo import PPOConfig
from rlhflab.methods.rloo import RLOOConfig
from rlhflab.reward.train import RewardTrainConfig


@dataclass(frozen=True)
class OveroptPreset:
    labels: tuple[int, ...]
    """Numbers of gold-labelled comparisons each proxy is trained on (nested: the first N of one set)."""
    seeds: int
    """Independent repetitions: each draws its own comparisons, proxies, pool and RL runs."""
    feedback: SimulateConfig
    """How comparisons are sampled (``pairs`` is set to the largest N)."""
    reward: RewardTrainConfig
    """How every proxy is trained."""
    rl_method: str
    """'ppo', 'rloo' or 'grpo'."""
    rl: PPOConfig | RLOOConfig | GRPOConfig
    """The RL method's config: a small KL coefficient and enough steps to go far along KL."""
    pool: int
    """Base samples per evaluation prompt for the best-of-n estimate (>= the largest n)."""
    pool_prompts: int
    """Evaluation prompts in the best-of-n pool."""
    ns: tuple[int, ...]
    """Best-of-n sizes on the curve."""
    noise: tuple[float, ...] = (0.25,)
    """Random-answer rates of the label-noise lever (the main curves use the noiseless rater)."""
    ensemble: int = 3
    """Members of the conservative-ensemble lever (0 or 1: no ensemble lever)."""
    std_coef: float = 1.0
    """lambda of mean - lambda * std."""
    lever_labels: int = 0
    """N at which the levers run (0: the smallest of ``labels``)."""
    rl_levers: bool = True
    """Run RL against the lever proxies too (best-of-n always runs)."""
    window: int = 4
    """RL steps averaged into one point of the CSV."""
    pool_batch: int = 256
    """Continuations sampled (and scored) at once for the pool."""
    gold_rl: bool = False
    """Also run the RL method against the gold reward itself (on a task with checkable answers: the rule), the
    curve a learned proxy is compared with (``labels`` 0, objective ``gold`` in the CSV)."""

    def __post_init__(self) -> None:
        check(len(self.labels) >= 1 and all(n >= 2 for n in self.labels), "labels", self.labels, "numbers >= 2")
        check(1 <= self.seeds <= 100, "seeds", self.seeds, "in [1, 100]")
        check(self.rl_method in ("ppo", "rloo", "grpo"), "rl_method", self.rl_method, "'ppo', 'rloo' or 'grpo'")
        check(self.pool >= 2, "pool", self.pool, ">= 2")
        check(self.pool_prompts >= 1, "pool_prompts", self.pool_prompts, ">= 1")
        check(
            len(self.ns) >= 1 and all(1 <= n <= self.pool for n in self.ns),
            "ns",
            self.ns,
            f"best-of-n sizes in [1, pool = {self.pool}]",
        )
        check(all(0 <= r <= 1 for r in self.noise), "noise", self.noise, "random-answer rates in [0, 1]")
        check(self.ensemble >= 0, "ensemble", self.ensemble, ">= 0")
        check(self.std_coef >= 0, "std_coef", self.std_coef, ">= 0")
        check(
            self.lever_labels == 0 or self.lever_labels in self.labels,
            "lever_labels",
            self.lever_labels,
            f"0 or one of --labels {','.join(map(str, self.labels))}",
        )
        check(self.window >= 1, "window", self.window, ">= 1")
        check(self.pool_batch >= 1, "pool_batch", self.pool_batch, ">= 1")
