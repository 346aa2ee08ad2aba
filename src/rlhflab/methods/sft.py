"""Supervised fine-tuning on (prompt, completion) texts: the maximum-likelihood step shared by
reward-ranked fine-tuning and conditional training.

The loss is the mean negative log-likelihood of the completion tokens given the prompt.
"""

from __future__ import annotations

from typing import Sequence

import torch

from rlhflab.rollout.batching import ShardedEpochs, collate, lr_at
from rlhflab.errors import TrainingDiverged
from rlhflab.rollout.models import completion_logprobs


def completion_nll(policy, encoded: Sequence[tuple[list[int], int]], pad_id: int, device) -> torch.Tensor:
    """Mean negative log-likelihood per completion token of a batch of encoded texts."""
    ids, attn, comp = collate(encoded, pad_id, device)
    per_token = completion_logprobs(policy, ids, attn, comp)
    return -per_token.sum() / comp[:, 1:].sum().clamp(min=1)


def supervised_pass(
    accelerator,
    policy,
    optimizer,
    encoded: Sequence[tuple[list[int], int]],
    *,
    batch_size: int,
    epochs: float,
    lr: float,
    seed: int,
    pad_id: int,
    stage: str,
    on_step=None,
) -> list[float]:
    """``epochs`` passes of Adam steps over ``encoded`` in global batches; returns the losses.

    ``on_step(step, loss)`` is called after each step (logging, checkpoints).
    """
    world = accelerator.num_processes
    batch_size = min(batch_size, len(encoded))
    batch_size -= batch_size % world  # a small set is one batch, split evenly among processes
    batches = ShardedEpochs(len(encoded), batch_size, accelerator.num_processes, accelerator.process_index, seed)
    total = max(1, int(epochs * batches.steps_per_epoch))
    losses = []
    policy.train()
    for step in range(total):
        loss = completion_nll(policy, [encoded[i] for i in batches.local_batch(step)], pad_id, accelerator.device)
        if not torch.isfinite(accelerator.gather(loss.detach()[None])).all():
            raise TrainingDiverged(stage, step, "the fine-tuning loss", float(loss.detach()))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, lr)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(accelerator.gather(loss.detach()[None]).mean()))
        if on_step is not None:
            on_step(step, losses[-1])
    return losses
