"""Supervised fine-tuning on (prompt, completion) texts: the maximum-likelihood step shared by
reward-ranked fine-tuning, conditional training and the re-misalignment diagnostic.

The loss is the mean negative log-likelihood of the completion tokens given the prompt.
"""

from __future__ import annotations

from typing import Callable, Sequence

from rlhflab.core.config import OptimizerConfig
from rlhflab.models.batching import ShardedEpochs, lr_at
from rlhflab.models.sampling import completion_nll


def supervised_pass(
    loop,
    policy,
    optimizer,
    encoded: Sequence[tuple[list[int], int]],
    *,
    texts_per_step: int,
    epochs: float,
    config: OptimizerConfig,
    seed: int,
    pad_id: int,
    step_offset: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """``epochs`` passes of optimiser steps over ``encoded`` in global batches; returns the losses.

    ``loop`` is the caller's ``TrainLoop``; ``on_step(step, loss)`` is called after each step.
    """
    world = loop.world
    per_step = min(texts_per_step, len(encoded))
    per_step -= per_step % world  # a small set is one batch, split evenly among processes
    batches = ShardedEpochs(len(encoded), per_step, world, loop.rank, seed)
    total = max(1, int(epochs * batches.steps_per_epoch))
    losses = []
    policy.train()
    for step in range(total):
        loss = completion_nll(policy, [encoded[i] for i in batches.local_batch(step)], pad_id, loop.device)
        loop.check_finite(loss, step_offset + step, "the fine-tuning loss")
        loop.optimizer_step(loss, optimizer, policy.parameters(), config, lr=lr_at(step, total, config.lr))
        losses.append(loop.mean(loss))
        if on_step is not None:
            on_step(step, losses[-1])
    return losses
