"""What every method shares: where its outputs go, what it returns, and the skeleton of its loop.

A method is a library function: it takes models (``nn.Module``s), data (prompts or preference
pairs), a reward function where it needs one, its config, and ``Hooks`` — three sinks, in the
manner of imitation's logger and callback:

- ``metrics(row)``: one dict per step (the keys of ``rlhflab.core.metric_names``);
- ``samples(row)``: a few training samples now and then (the report animates them);
- ``checkpoints``: an object that can ``save`` the loop's state and ``restore`` it (``--resume``).

It returns a ``MethodResult``: the trained policy (or, for best-of-n, a sampler description) and a
summary. A method never names a file: ``rlhflab.pipeline`` wires the sinks to the run
directory (``rlhflab.run``); from Python, the defaults keep the metric rows in the result and
write nothing.

``TrainLoop`` is the skeleton the trainers share (processes, progress bar, logging on the main
process, checkpoint cadence, finite-loss guard, the optimiser step), so a method file holds
only its algorithm.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from rlhflab.core import distributed
from rlhflab.core import metric_names as names
from rlhflab.core.config import OptimizerConfig, RunConfig
from rlhflab.core.distributed import unwrap
from rlhflab.core.errors import ConfigError, TrainingDiverged
from rlhflab.core.scores import exploitation_rate


class Checkpoints(Protocol):
    """Saves and restores a training loop's state (its models, optimisers and a small dict)."""

    def save(self, accelerator, step: int, objects: dict[str, Any], state: dict) -> None: ...

    def restore(self, accelerator, objects: dict[str, Any]) -> dict | None:
        """Load the latest checkpoint into ``objects`` and return its state dict, or None (start afresh)."""
        ...


@dataclass
class Hooks:
    """Where a method's outputs go. Every field is optional."""

    metrics: Callable[[dict], None] | None = None
    """Receives one row of metrics per step (main process only)."""
    samples: Callable[[dict], None] | None = None
    """Receives a few training samples now and then (main process only)."""
    checkpoints: Checkpoints | None = None
    """Saves the loop's state every ``run.checkpoint_every`` steps and restores it on resume."""
    progress: bool = True
    """Show a progress bar (main process only)."""


@dataclass
class MethodResult:
    """What a method returns."""

    summary: dict
    """Final metrics and counts (recorded in the run's manifest)."""
    policy: nn.Module | None = None
    """The trained policy (None for a sampler such as best-of-n)."""
    tokenizer: Any = None
    """The policy's tokenizer (changed when a method adds tokens)."""
    policy_files: dict[str, dict] = field(default_factory=dict)
    """JSON files to store beside the policy's weights (e.g. how to prompt it)."""
    sampler: dict | None = None
    """A sampler description (what sampler.json holds), for methods whose output is a way to sample rather than weights."""
    history: list[dict] = field(default_factory=list)
    """Every metric row this call logged."""


def _duration(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model``."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def make_optimizer(params, config: OptimizerConfig) -> torch.optim.Optimizer:
    """AdamW with the shared optimiser settings (weight decay 0 is Adam)."""
    return torch.optim.AdamW(params, lr=config.lr, eps=config.adam_eps, weight_decay=config.weight_decay)


class TrainLoop:
    """The loop skeleton every trainer shares.

    Holds the accelerator; checks that batch sizes split evenly among processes; restores the
    last checkpoint; counts steps with a progress bar; sends metric and sample rows to the hooks
    from the main process; saves checkpoints at the configured cadence; and takes optimiser steps
    with the gradient-norm clip, stopping with ``TrainingDiverged`` on a non-finite loss.
    """

    def __init__(self, name: str, hooks: Hooks | None = None):
        self.name, self.hooks = name, hooks or Hooks()
        self.accelerator = distributed.accelerator()
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.main = self.accelerator.is_main_process
        self.history: list[dict] = []
        self._bar = None
        self._warned: set[str] = set()

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def require_divisible(self, **sizes: int) -> None:
        """Each named global batch size must split evenly among the processes."""
        bad = {k: v for k, v in sizes.items() if v % self.world}
        if bad:
            names = " and ".join(f"--{k.replace('_', '-')} {v}" for k, v in bad.items())
            raise ConfigError(f"{names} must be divisible by the number of processes ({self.world})")

    def restore(self, **objects: Any) -> dict | None:
        """The state of the last checkpoint (``objects`` loaded in place), or None."""
        if self.hooks.checkpoints is None:
            return None
        return self.hooks.checkpoints.restore(self.accelerator, objects)

    def steps(self, start: int, total: int, unit: str = "step", desc: str | None = None) -> Iterator[int]:
        """``range(start, total)`` with a progress bar on the main process."""
        self._bar = tqdm(
            total=total,
            initial=start,
            desc=desc or self.name,
            unit=unit,
            disable=not (self.hooks.progress and self.main),
        )
        try:
            for step in range(start, total):
                t0 = time.perf_counter()
                yield step
                self._bar.update(1)
                if step == start and total - start > 1 and self.hooks.progress and self.main:
                    took = time.perf_counter() - t0  # the first step (warm-up included): an estimate, said once
                    rest = took * (total - start - 1)
                    tqdm.write(f"{self.name}: the first {unit} took {took:.1f} s; the other {total - start - 1} "
                               f"should take about {_duration(rest)}", file=sys.stderr)  # fmt: skip
        finally:
            self._bar.close()

    def warn(self, key: str, message: str) -> None:
        """Say ``message`` once a run (per ``key``), on the main process, above the progress bar."""
        if key not in self._warned and self.main:
            self._warned.add(key)
            tqdm.write(f"warning: {message}", file=sys.stderr)

    def log(self, row: dict, **postfix: str) -> None:
        """Send a metric row to the hooks (main process) and show ``postfix`` on the bar."""
        self.history.append(row)
        if self.main and self.hooks.metrics is not None:
            self.hooks.metrics(row)
        if self._bar is not None and postfix:
            self._bar.set_postfix(**postfix)

    def log_samples(self, rows: list[dict]) -> None:
        if self.main and self.hooks.samples is not None:
            for row in rows:
                self.hooks.samples(row)

    def log_rollout_samples(
        self, step: int, run: RunConfig, prompts: Sequence[str], responses: Sequence[str], scores, golds=None,
        stride: int = 1,
    ) -> None:  # fmt: skip
        """At the first step and every ``run.sample_every`` steps, send ``run.samples_logged`` rollouts to the
        samples hook: prompt i with response, score and gold number ``i * stride`` (the first of each prompt's
        group when a prompt was sampled ``stride`` times)."""
        if step != 1 and step % run.sample_every:
            return
        rows = []
        for i in range(min(run.samples_logged, len(prompts))):
            j = i * stride
            row = {"step": step, "prompt": prompts[i], "response": responses[j], "score": float(scores[j])}
            if golds is not None:
                row["gold"] = float(golds[j])
            rows.append(row)
        self.log_samples(rows)

    def checkpoint(self, step: int, total: int, every: int, state: dict, **objects: Any) -> None:
        """Save after ``step`` steps when the cadence says so (never after the last step)."""
        if step % every == 0 and step < total:
            self.save(step, state, **objects)

    def save(self, step: int, state: dict, **objects: Any) -> None:
        """Save a checkpoint now (when the hooks keep checkpoints)."""
        if self.hooks.checkpoints is not None:
            self.hooks.checkpoints.save(self.accelerator, step, objects, state)

    def check_finite(self, loss: torch.Tensor, step: int, quantity: str) -> None:
        """Stop every process at once when any process's loss is not finite."""
        if not torch.isfinite(self.accelerator.gather(loss.detach().reshape(1))).all():
            if torch.isfinite(loss.detach()):
                raise TrainingDiverged(self.name, step, f"{quantity} of another process", float("nan"))
            raise TrainingDiverged(self.name, step, quantity, float(loss.detach()))

    def optimizer_step(self, loss: torch.Tensor, optimizer, params, config: OptimizerConfig, lr: float | None = None):
        """backward, clip the gradient norm, step, zero the gradients; ``lr`` overrides the rate (times a
        parameter group's ``lr_scale``, when it has one)."""
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
        self.accelerator.backward(loss)
        self.accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def add_gold(self, row: dict, scores: torch.Tensor, golds: Sequence[float] | None) -> None:
        """Add the gold reward of the step's samples to ``row`` (``scores``: this process's rewards), and, when
        the reward and gold are both verdicts (every value 0 or 1: a rule against a verifier), the share of
        rewarded samples gold rejects (``objective/exploitation``: a loophole taken)."""
        if golds is None:
            return

        g = self.accelerator.gather(torch.as_tensor(golds, dtype=torch.float32, device=self.device).reshape(-1))
        s = self.accelerator.gather(scores.detach().float().reshape(-1).to(self.device))
        row[names.GOLD] = float(g.mean())
        if all(bool(((x == 0) | (x == 1)).all()) for x in (g, s)):
            rate = exploitation_rate(s.tolist(), g.tolist())
            if rate is not None:
                row[names.EXPLOITATION] = rate

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a per-process value (a scalar or a vector) over all processes."""
        return float(self.accelerator.gather(value.detach().reshape(-1).float()).mean())

    def result(self, policy: nn.Module | None, tokenizer, summary: dict, **kwargs: Any) -> MethodResult:
        self.accelerator.wait_for_everyone()
        return MethodResult(
            summary={**summary, "processes": self.world},
            policy=unwrap(policy) if policy is not None else None,
            tokenizer=tokenizer,
            history=self.history,
            **kwargs,
        )
