"""Fitting scorers to comparisons by Bradley-Terry, whatever is compared.

Nothing here reads text: comparisons arrive encoded (``Encoded``: the two sides as items a scorer reads, the
labels, the gold difference where a simulated rater knew it) with a ``score(model, items, device) -> [N]``
function. Text reward models (``reward.train``) encode prompt + completion tokens and score them with a
scalar-head language model; another domain (trajectory segments) brings its own items and scorer and reuses
the loop: ensembles, sharded epochs, held-out accuracy and gold-order accuracy, normalisation, checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from rlhflab.core.distributed import unwrap
from rlhflab.core.loop import TrainLoop, make_optimizer
from rlhflab.core.losses import bradley_terry_loss
from rlhflab.models.batching import ShardedEpochs, lr_at
from rlhflab.models.loading import disable_dropout

SEPARATED = 0.5
"""Gold-score difference above which a pair counts as clearly ordered (``val/gold_accuracy_separated``)."""

Scorer = Callable[[nn.Module, Sequence[Any], Any], torch.Tensor]
"""(model, items, device) -> [N] one score per item (with gradients when the model trains)."""


@dataclass(frozen=True)
class Encoded:
    """Comparisons as a scorer reads them."""

    chosen: list
    """One item per comparison: the side preferred (or, for a tie, the first shown)."""
    rejected: list
    """The other side."""
    labels: torch.Tensor
    """[N] probability that ``chosen`` is preferred (1, or 0.5 for a tie)."""
    gold_diff: torch.Tensor
    """[N] gold score of chosen minus rejected; NaN where unknown."""

    def __len__(self) -> int:
        return len(self.chosen)


def split(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """(train, held out): a seeded shuffle, ``val_fraction`` of it (at least one when any) held out."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(items), generator=g).tolist()
    n_val = max(1, round(len(items) * val_fraction)) if val_fraction > 0 and len(items) > 1 else 0
    return [items[i] for i in order[n_val:]], [items[i] for i in order[:n_val]]


@torch.no_grad()
def batched_scores(score: Scorer, model: nn.Module, items: Sequence[Any], device, batch_size: int) -> torch.Tensor:
    """[N] scores of ``items``, ``batch_size`` at a time, on the CPU."""
    return torch.cat([score(model, items[s : s + batch_size], device).cpu() for s in range(0, len(items), batch_size)])


def gold_order_accuracy(margin: torch.Tensor, gold_diff: torch.Tensor) -> dict[str, float]:
    """How often the proxy orders pairs as the gold reward does (simulated feedback).

    Args:
        margin: [B] proxy score of chosen minus rejected.
        gold_diff: [B] gold score of chosen minus rejected; NaN where unknown.
    Returns:
        ``val/gold_accuracy`` over pairs whose gold differs (``val/gold_pairs`` of them) and
        ``val/gold_accuracy_separated`` over those at least ``SEPARATED`` apart; a key is absent when it has no pair.
    """
    known = ~torch.isnan(gold_diff) & (gold_diff != 0)
    out = {}
    for key, mask in (
        ("val/gold_accuracy", known),
        ("val/gold_accuracy_separated", known & (gold_diff.abs() >= SEPARATED)),
    ):
        if mask.any():
            out[key] = float(((margin[mask] > 0) == (gold_diff[mask] > 0)).float().mean())
    if known.any():
        out["val/gold_pairs"] = int(known.sum())
    return out


def evaluate(score: Scorer, model: nn.Module, data: Encoded, device, batch_size: int) -> dict[str, float]:
    """Held-out Bradley-Terry loss, accuracy against the labels and against the gold order."""
    if not len(data):
        return {}
    margin = batched_scores(score, model, data.chosen, device, batch_size) - batched_scores(
        score, model, data.rejected, device, batch_size
    )
    loss, m = bradley_terry_loss(margin, torch.zeros_like(margin), label=data.labels)
    out = {"val/loss": float(loss), "val/accuracy": float(m["accuracy"])}
    return {**out, **gold_order_accuracy(margin, data.gold_diff)}


def fit(
    loop: TrainLoop,
    fresh: Callable[[], nn.Module],
    score: Scorer,
    train: Encoded,
    val: Encoded,
    config,
) -> tuple[list[nn.Module], list[tuple[float, float]], dict]:
    """Train ``config.ensemble`` members, each from a fresh ``fresh()`` (seeded by member), by Bradley-Terry on
    ``train``, ``config.pairs_per_step`` comparisons a step for ``config.epochs`` passes; evaluate on ``val``.

    ``config`` has the fields of ``reward.train.RewardTrainConfig`` this loop reads (ensemble, epochs,
    pairs_per_step, eval_every, eval_batch_size, head_lr_scale, optimizer, run). A model with
    ``parameter_groups(head_lr_scale)`` (a scalar-head model) trains its head at a scaled learning rate.
    Returns (members, each member's (mean, std) of its training scores, summary).
    """
    total = max(1, int(config.epochs * (len(train) // config.pairs_per_step)))
    eval_bs = config.eval_batch_size
    summary: dict = {"train_pairs": len(train), "val_pairs": len(val), "steps_per_member": total, "members": []}
    finished: list[nn.Module] = []
    norms: list[tuple[float, float]] = []

    def member_model(member: int) -> nn.Module:
        torch.manual_seed(config.run.seed + 1000 * member)  # the new head's initialisation
        model = fresh()
        disable_dropout(model)
        return model

    # a checkpoint holds the members finished so far, the current one and its optimiser
    state = loop.restore()
    start_member = state["member"] if state is not None else 0
    for member in range(start_member):
        finished.append(member_model(member))
    if state is not None and start_member:
        loop.restore(**{f"member-{i}": m for i, m in enumerate(finished)})
        norms = [tuple(n) for n in state["norms"]]
        summary["members"] = list(state["summaries"])

    for member in range(start_member, config.ensemble):
        model = member_model(member)
        groups = model.parameter_groups(config.head_lr_scale) if hasattr(model, "parameter_groups") else None
        optimizer = make_optimizer(groups or list(model.parameters()), config.optimizer)
        model, optimizer = loop.accelerator.prepare(model, optimizer)
        batches = ShardedEpochs(
            len(train), config.pairs_per_step, loop.world, loop.rank, config.run.seed + 1000 * member
        )
        start = 0
        if state is not None and member == start_member and state["step"] > 0:
            loop.restore(model=model, optimizer=optimizer)
            batches.load_state_dict(state["batches"])
            start = state["step"]
        model.train()
        for step in loop.steps(start, total, desc=f"reward model {member + 1}/{config.ensemble}"):
            idx = batches.local_batch(step)
            both = score(model, [train.chosen[i] for i in idx] + [train.rejected[i] for i in idx], loop.device)
            rc, rr = torch.split(both, len(idx))
            labels = train.labels[idx].to(rc.device)
            loss, _ = bradley_terry_loss(rc, rr, label=labels)
            # the logged loss and accuracy are those of the global batch, whatever the number of processes
            all_rc, all_rr, all_labels = (loop.accelerator.gather(t.detach()) for t in (rc, rr, labels))
            global_loss, m = bradley_terry_loss(all_rc, all_rr, label=all_labels)
            loop.check_finite(global_loss, step, "the Bradley-Terry loss")
            lr = lr_at(step, total, config.optimizer.lr)
            loop.optimizer_step(loss, optimizer, model.parameters(), config.optimizer, lr=lr)
            row = {"member": member, "step": step + 1, "loss": float(global_loss), "accuracy": float(m["accuracy"]),
                   "margin": float(m["margin"]), "lr": lr}  # fmt: skip
            if (step + 1) % config.eval_every == 0 or step + 1 == total:
                row.update(evaluate(score, model, val, loop.device, eval_bs))
            loop.log(row, **({"val_acc": f"{row['val/accuracy']:.3f}"} if "val/accuracy" in row else {}))
            if (step + 1) % config.run.checkpoint_every == 0 and step + 1 < total:
                # numbered member * 1e6 + step, after the checkpoints of earlier members (whose last is
                # member * 1e6): checkpoints are kept and pruned in the order of their numbers
                loop.save(
                    member * 1_000_000 + step + 1,
                    {"member": member, "step": step + 1, "batches": batches.state_dict(), "norms": norms,
                     "summaries": summary["members"]},
                    model=model, optimizer=optimizer, **{f"member-{i}": m for i, m in enumerate(finished)},
                )  # fmt: skip
        final = evaluate(score, model, val, loop.device, eval_bs)
        train_scores = batched_scores(score, model, list(train.chosen) + list(train.rejected), loop.device, eval_bs)
        norms.append((float(train_scores.mean()), float(train_scores.std().clamp(min=1e-6))))
        summary["members"].append({"member": member, **final})
        finished.append(unwrap(model))
        loop.save(
            (member + 1) * 1_000_000,
            {"member": member + 1, "step": 0, "norms": norms, "summaries": summary["members"]},
            **{f"member-{i}": m for i, m in enumerate(finished)},
        )
        state = None
        loop.accelerator.free_memory()

    for key, name in (
        ("val/accuracy", "val_accuracy"),
        ("val/gold_accuracy", "val_gold_accuracy"),
        ("val/gold_accuracy_separated", "val_gold_accuracy_separated"),
        ("val/gold_pairs", "val_gold_pairs"),
    ):
        values = [m[key] for m in summary["members"] if key in m]
        summary[name] = sum(values) / len(values) if values else None
    return finished, norms, summary
