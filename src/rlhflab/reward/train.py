"""Training reward models: Bradley-Terry on preference pairs, one member or an ensemble.

``train_reward_model`` is a library function like the methods: it takes a loader of the
backbone (called once per member, after the member's seed is set, so each new scalar head is
reproducible), its tokenizer, the pairs, a config and ``Hooks``, and returns the trained
``RewardModel`` (members, normalisation) and a summary; the pipeline writes it to the run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from rlhflab.core.comparison import PreferencePair, check_distinct
from rlhflab.core.config import OptimizerConfig, RunConfig, check, optimizer_field, run_field
from rlhflab.core.distributed import unwrap
from rlhflab.core.errors import DataError
from rlhflab.core.loop import Hooks, TrainLoop, make_optimizer
from rlhflab.core.losses import bradley_terry_loss
from rlhflab.models.batching import ShardedEpochs, collate, encode, lr_at
from rlhflab.models.loading import EMBEDDED, MINILM, ScalarHeadModel, disable_dropout, resolve_model
from rlhflab.models.precision import PrecisionConfig, model_field
from rlhflab.reward.model import Aggregate, Pooling, RewardModel, sequence_scores


@dataclass(frozen=True)
class RewardTrainConfig:
    epochs: float = 1.0
    """Passes over the training pairs (one: the held-out loss is lowest after about one pass; more overfit the
    rater's noise)."""
    batch_size: int = 16
    """Pairs per optimiser step, over all processes (must divide evenly among them)."""
    val_fraction: float = 0.1
    """Share of pairs held out to measure pair accuracy (at least one pair)."""
    ensemble: int = 1
    """Number of members k; 1 trains a single reward model."""
    aggregate: Aggregate = "mean"
    """How an ensemble combines its members' normalised scores."""
    std_coef: float = 1.0
    """lambda in mean - lambda * std (aggregate mean_minus_std)."""
    backbone: str = "auto"
    """What the reward model is built on: 'model' (the policy, --model: the usual RLHF recipe), 'minilm' (the
    sentence encoder all-MiniLM-L6-v2), or a Hugging Face folder; 'auto' is 'minilm' when --model is the
    embedded policy (whose 5M-parameter backbone learns sentiment from labels far more slowly: see docs/demo.md's
    label curve) and 'model' otherwise."""
    max_length: int = 128
    """Tokens of prompt + completion the model reads (longer texts keep their end)."""
    pooling: Pooling = "mean"
    """How a text's score is read from the per-token head: 'last' token (Ziegler et al. 2019; what
    AutoModelForSequenceClassification computes) or 'mean' over the completion's tokens (learns far faster
    from few labels on small models)."""
    head_lr_scale: float = 10.0
    """The new scalar head learns at this multiple of the learning rate (the backbone at the rate itself):
    a pretrained backbone wants small steps, a head that starts from random weights larger ones."""
    eval_every: int = 50
    """Measure held-out accuracy every this many steps."""
    eval_batch_size: int = 64
    """Pairs per forward pass when measuring held-out accuracy and the normalisation."""
    optimizer: OptimizerConfig = optimizer_field(lr=5e-5)
    """AdamW settings (linear warm-up over the first 5% of steps, then linear decay to 0)."""
    run: RunConfig = run_field(checkpoint_every=50)
    """Seed of the train/validation split, data order and head initialisation; checkpoint cadence."""
    model_options: PrecisionConfig = model_field(PrecisionConfig)
    """Precision and gradient checkpointing of the reward model (every weight trains, float32 under autocast)."""

    def __post_init__(self) -> None:
        check(self.epochs > 0, "epochs", self.epochs, "> 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction, "in [0, 1)")
        check(self.ensemble >= 1, "ensemble", self.ensemble, ">= 1")
        check(self.std_coef >= 0, "std_coef", self.std_coef, ">= 0")
        check(bool(self.backbone.strip()), "backbone", self.backbone, "'auto', 'model', 'minilm' or a folder")
        check(self.max_length >= 2, "max_length", self.max_length, ">= 2")
        check(self.head_lr_scale > 0, "head_lr_scale", self.head_lr_scale, "> 0")
        check(self.eval_every >= 1, "eval_every", self.eval_every, ">= 1")
        check(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size, ">= 1")


SEPARATED = 0.5
"""|gold difference| at or above which a pair counts as clearly separated (``val/gold_accuracy_separated``)."""


def backbone_of(config: RewardTrainConfig, model: str) -> str:
    """The model a reward model is built on, from ``config.backbone`` and the policy ``model``."""
    if config.backbone == "auto":
        return MINILM if resolve_model(model) == resolve_model(EMBEDDED) else model
    return model if config.backbone == "model" else config.backbone


def split_pairs(pairs: list[PreferencePair], val_fraction: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pairs), generator=g).tolist()
    n_val = max(1, round(len(pairs) * val_fraction)) if val_fraction > 0 and len(pairs) > 1 else 0
    return [pairs[i] for i in order[n_val:]], [pairs[i] for i in order[:n_val]]


def _encode(pairs: list[PreferencePair], tokenizer, max_length: int):
    """(chosen encodings, rejected encodings, labels, gold_chosen - gold_rejected or NaN) of ``pairs``."""
    prompts = [p.prompt for p in pairs]
    chosen = encode(tokenizer, prompts, [p.chosen for p in pairs], max_length)
    rejected = encode(tokenizer, prompts, [p.rejected for p in pairs], max_length)
    gold = torch.tensor(
        [p.scores.get("gold_chosen", math.nan) - p.scores.get("gold_rejected", math.nan) for p in pairs]
    )
    return chosen, rejected, torch.tensor([p.label for p in pairs]), gold


@torch.no_grad()
def _scores(model, encoded, pad_id, device, pooling: Pooling, batch_size: int) -> torch.Tensor:
    """[N] scores of encoded texts, in batches."""
    return torch.cat(
        [
            sequence_scores(model, *collate(encoded[s : s + batch_size], pad_id, device), pooling).cpu()
            for s in range(0, len(encoded), batch_size)
        ]
    )


def _evaluate(model, data, pad_id, device, pooling: Pooling, batch_size: int) -> dict[str, float]:
    chosen, rejected, labels, gold_diff = data
    if not chosen:
        return {}
    margin = _scores(model, chosen, pad_id, device, pooling, batch_size) - _scores(
        model, rejected, pad_id, device, pooling, batch_size
    )
    loss, m = bradley_terry_loss(margin, torch.zeros_like(margin), label=labels)
    out = {"val/loss": float(loss), "val/accuracy": float(m["accuracy"])}
    return {**out, **gold_order_accuracy(margin, gold_diff)}


def gold_order_accuracy(margin: torch.Tensor, gold_diff: torch.Tensor) -> dict[str, float]:
    """How often the proxy orders pairs as the gold reward does (simulated feedback).

    Args:
        margin: [B] proxy score of chosen minus rejected.
        gold_diff: [B] gold score of chosen minus rejected; NaN where unknown.
    Returns:
        ``val/gold_accuracy`` over pairs whose gold differs and ``val/gold_accuracy_separated`` over those at
        least ``SEPARATED`` apart; a key is absent when it has no pair.
    """
    known = ~torch.isnan(gold_diff) & (gold_diff != 0)
    out = {}
    for key, mask in (
        ("val/gold_accuracy", known),
        ("val/gold_accuracy_separated", known & (gold_diff.abs() >= SEPARATED)),
    ):
        if mask.any():
            out[key] = float(((margin[mask] > 0) == (gold_diff[mask] > 0)).float().mean())
    return out


def train_reward_model(
    backbone: Callable[[], ScalarHeadModel],
    tokenizer,
    pairs: list[PreferencePair],
    config: RewardTrainConfig,
    *,
    hooks: Hooks | None = None,
    source: str = "pairs",
) -> tuple[RewardModel, dict]:
    """Train ``config.ensemble`` members, each from a fresh ``backbone()``, on ``pairs``.

    Returns the reward model (members normalised to mean 0, std 1 on their training texts) and a
    summary. ``source`` names the pairs in error messages.
    """
    loop = TrainLoop("reward-model training", hooks)
    loop.require_divisible(batch_size=config.batch_size)
    check_distinct(pairs, source)
    train, val = split_pairs(pairs, config.val_fraction, config.run.seed)
    if len(train) < config.batch_size:
        raise DataError(
            source,
            f"{len(train)} training pairs after holding out {len(val)}, fewer than --batch-size {config.batch_size}",
        )
    train_data, val_data = _encode(train, tokenizer, config.max_length), _encode(val, tokenizer, config.max_length)
    total = max(1, int(config.epochs * (len(train) // config.batch_size)))
    pad_id, eval_bs = tokenizer.pad_token_id, config.eval_batch_size
    summary: dict = {"train_pairs": len(train), "val_pairs": len(val), "steps_per_member": total, "members": []}
    finished: list[ScalarHeadModel] = []
    norms: list[tuple[float, float]] = []

    def fresh(member: int) -> ScalarHeadModel:
        torch.manual_seed(config.run.seed + 1000 * member)  # the new scalar head's initialisation
        model = backbone()
        disable_dropout(model)
        return model

    # a checkpoint holds the members finished so far, the current one and its optimiser
    state = loop.restore()
    start_member = state["member"] if state is not None else 0
    for member in range(start_member):
        finished.append(fresh(member))
    if state is not None and start_member:
        loop.restore(**{f"member-{i}": m for i, m in enumerate(finished)})
        norms = [tuple(n) for n in state["norms"]]
        summary["members"] = list(state["summaries"])

    for member in range(start_member, config.ensemble):
        model = fresh(member)
        optimizer = make_optimizer(model.parameter_groups(config.head_lr_scale), config.optimizer)
        model, optimizer = loop.accelerator.prepare(model, optimizer)
        batches = ShardedEpochs(len(train), config.batch_size, loop.world, loop.rank, config.run.seed + 1000 * member)
        start = 0
        if state is not None and member == start_member and state["step"] > 0:
            loop.restore(model=model, optimizer=optimizer)
            batches.load_state_dict(state["batches"])
            start = state["step"]
        model.train()
        for step in loop.steps(start, total, desc=f"reward model {member + 1}/{config.ensemble}"):
            idx = batches.local_batch(step)
            rc, rr = torch.split(
                sequence_scores(
                    model,
                    *collate([train_data[0][i] for i in idx] + [train_data[1][i] for i in idx], pad_id, loop.device),
                    config.pooling,
                ),
                len(idx),
            )
            labels = train_data[2][idx].to(rc.device)
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
                row.update(_evaluate(model, val_data, pad_id, loop.device, config.pooling, eval_bs))
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
        final = _evaluate(model, val_data, pad_id, loop.device, config.pooling, eval_bs)
        train_scores = _scores(model, list(train_data[0]) + list(train_data[1]), pad_id, loop.device, config.pooling,
                               eval_bs)  # fmt: skip
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
    ):
        values = [m[key] for m in summary["members"] if key in m]
        summary[name] = sum(values) / len(values) if values else None
    reward = RewardModel(
        [m.eval() for m in finished], tokenizer, norms, config.aggregate, config.std_coef, config.max_length,
        config.pooling,
    )  # fmt: skip
    loop.accelerator.wait_for_everyone()
    return reward, {**summary, "processes": loop.world, "config": asdict(config)}
