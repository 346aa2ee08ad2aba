"""Training reward models: Bradley-Terry on preference pairs, one member or an ensemble.

``train_reward_model`` is a library function like the methods: it takes a loader of the
backbone (called once per member, after the member's seed is set, so each new scalar head is
reproducible), its tokenizer, the pairs, a config and ``Hooks``, and returns the trained
``RewardModel`` (members, normalisation) and a summary; the pipeline writes it to the run.
What is text here is the encoding and the scorer; the Bradley-Terry loop itself is ``reward.bradley_terry``'s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from rlhflab.core.comparison import PreferencePair, check_distinct
from rlhflab.core.config import OptimizerConfig, RunConfig, check, optimizer_field, run_field
from rlhflab.core.errors import DataError
from rlhflab.core.loop import Hooks, TrainLoop
from rlhflab.models.batching import collate, encode
from rlhflab.models.loading import EMBEDDED, MINILM, ScalarHeadModel, resolve_model
from rlhflab.models.precision import ModelConfig, model_field
from rlhflab.reward.bradley_terry import Encoded, fit, split
from rlhflab.reward.model import Aggregate, Pooling, RewardModel, sequence_scores


@dataclass(frozen=True)
class RewardTrainConfig:
    epochs: float = 1.0
    """Passes over the training pairs (one: the held-out loss is lowest after about one pass; more overfit the
    rater's noise)."""
    pairs_per_step: int = 16
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
    model_options: ModelConfig = model_field(ModelConfig)
    """Precision, gradient checkpointing and LoRA of each member: every weight trains (float32 under autocast),
    or with ``--lora-r`` a frozen backbone in ``--dtype`` with an adapter and the head train; the saved reward
    model is a plain one (the adapter folded into the weights)."""

    def __post_init__(self) -> None:
        check(self.epochs > 0, "epochs", self.epochs, "> 0")
        check(self.pairs_per_step >= 1, "pairs_per_step", self.pairs_per_step, ">= 1")
        check(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction, "in [0, 1)")
        check(self.ensemble >= 1, "ensemble", self.ensemble, ">= 1")
        check(
            not self.model_options.save_adapter,
            "save_adapter",
            True,
            "not used for a reward model (it is saved merged)",
        )
        check(self.std_coef >= 0, "std_coef", self.std_coef, ">= 0")
        check(bool(self.backbone.strip()), "backbone", self.backbone, "'auto', 'model', 'minilm' or a folder")
        check(self.max_length >= 2, "max_length", self.max_length, ">= 2")
        check(self.head_lr_scale > 0, "head_lr_scale", self.head_lr_scale, "> 0")
        check(self.eval_every >= 1, "eval_every", self.eval_every, ">= 1")
        check(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size, ">= 1")


def backbone_of(config: RewardTrainConfig, model: str) -> str:
    """The model a reward model is built on, from ``config.backbone`` and the policy ``model``."""
    if config.backbone == "auto":
        return MINILM if resolve_model(model) == resolve_model(EMBEDDED) else model
    return model if config.backbone == "model" else config.backbone


def _encode(pairs: list[PreferencePair], tokenizer, max_length: int) -> Encoded:
    """``pairs`` as token ids of prompt + chosen and prompt + rejected, with labels and gold differences."""
    prompts = [p.prompt for p in pairs]
    chosen = encode(tokenizer, prompts, [p.chosen for p in pairs], max_length)
    rejected = encode(tokenizer, prompts, [p.rejected for p in pairs], max_length)
    gold = torch.tensor(
        [p.scores.get("gold_chosen", math.nan) - p.scores.get("gold_rejected", math.nan) for p in pairs]
    )
    return Encoded(chosen, rejected, torch.tensor([p.label for p in pairs]), gold)


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
    loop.require_divisible(pairs_per_step=config.pairs_per_step)
    check_distinct(pairs, source)
    train, val = split(pairs, config.val_fraction, config.run.seed)
    if len(train) < config.pairs_per_step:
        raise DataError(
            source,
            f"{len(train)} training pairs after holding out {len(val)}, fewer than --pairs-per-step {config.pairs_per_step}",
        )
    pad_id, pooling = tokenizer.pad_token_id, config.pooling

    def score(model, items, device):  # prompt + completion tokens -> one score each
        return sequence_scores(model, *collate(items, pad_id, device), pooling)

    members, norms, summary = fit(
        loop, backbone, score, _encode(train, tokenizer, config.max_length), _encode(val, tokenizer, config.max_length),
        config,
    )  # fmt: skip
    reward = RewardModel(
        [m.eval() for m in members], tokenizer, norms, config.aggregate, config.std_coef, config.max_length,
        config.pooling,
    )  # fmt: skip
    loop.accelerator.wait_for_everyone()
    return reward, {**summary, "processes": loop.world, "config": asdict(config)}
