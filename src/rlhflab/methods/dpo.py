"""Direct preference optimisation: fit the policy to preference pairs by SGD, no reward model, no RL.

DPO (Rafailov et al. 2023, eq. 7) minimises, over pairs (x, y_w, y_l),

    -log sigmoid(beta * [log pi(y_w|x)/pi_ref(y_w|x) - log pi(y_l|x)/pi_ref(y_l|x)])

the Bradley-Terry likelihood of the labels under the implicit reward beta log pi/pi_ref.
Variants are separate loss functions in ``rlhflab.core.losses``: conservative DPO (label
smoothing, Mitchell 2023) and IPO (Azar et al. 2023), which regresses the log-ratio margin
to 1/(2 beta) and can learn from ties. The reference policy's log-probabilities are computed
once, before training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from rlhflab.core import metric_names as names
from rlhflab.core.comparison import PreferencePair, check_distinct
from rlhflab.core.config import OptimizerConfig, RunConfig, check, optimizer_field, run_field
from rlhflab.core.errors import DataError
from rlhflab.core.loop import Hooks, MethodResult, TrainLoop, make_optimizer
from rlhflab.core.losses import conservative_dpo_loss, dpo_loss, ipo_loss
from rlhflab.methods.registry import Method, MethodInputs, policy_and_reference, register
from rlhflab.models.batching import ShardedEpochs, encode, lr_at
from rlhflab.models.loading import disable_dropout
from rlhflab.models.precision import ModelConfig, default_reference, model_field
from rlhflab.models.sampling import sequence_logprobs


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1
    """beta: strength of the implicit KL constraint (IPO's tau for --loss ipo)."""
    loss: Literal["dpo", "cdpo", "ipo"] = "dpo"
    """The variant: 'dpo' (Rafailov et al. 2023), 'cdpo' (conservative DPO: labels flipped with probability
    --label-smoothing) or 'ipo' (per-token mean log-ratios, as its authors and TRL use)."""
    label_smoothing: float = 0.0
    """cdpo only: the probability that a label is flipped, in (0, 0.5)."""
    ties: Literal["error", "drop"] = "error"
    """Pairs labelled as ties (0.5): stop with an error, or leave them out ('ipo' uses them either way)."""
    epochs: float = 2.0
    """Passes over the pairs."""
    pairs_per_step: int = 16
    """Pairs per optimiser step, over all processes."""
    max_length: int = 128
    """Tokens of prompt + completion (longer texts keep their end)."""
    reference_batch_size: int = 32
    """Pairs per forward pass when the reference log-probabilities are computed (once, before training)."""
    optimizer: OptimizerConfig = optimizer_field(lr=5e-5)
    """AdamW settings; the rate warms up over 5% of the steps, then decays linearly."""
    run: RunConfig = run_field(checkpoint_every=50)
    """Seed of the data order, checkpoint cadence."""
    model_options: ModelConfig = model_field()
    """Precision, gradient checkpointing and LoRA of the trained policy."""

    def __post_init__(self) -> None:
        check(self.beta > 0, "beta", self.beta, "> 0")
        check(self.loss in ("dpo", "cdpo", "ipo"), "loss", self.loss, "'dpo', 'cdpo' or 'ipo'")
        if self.loss == "cdpo":
            check(
                0 < self.label_smoothing < 0.5, "label_smoothing", self.label_smoothing, "in (0, 0.5) for --loss cdpo"
            )
        else:
            check(self.label_smoothing == 0, "label_smoothing", self.label_smoothing, f"0 for --loss {self.loss} "
                  "(it is the flip probability of --loss cdpo)")  # fmt: skip
        check(self.ties in ("error", "drop"), "ties", self.ties, "'error' or 'drop'")
        check(self.epochs > 0, "epochs", self.epochs, "> 0")
        check(self.pairs_per_step >= 1, "pairs_per_step", self.pairs_per_step, ">= 1")
        check(self.max_length >= 2, "max_length", self.max_length, ">= 2")
        check(self.reference_batch_size >= 1, "reference_batch_size", self.reference_batch_size, ">= 1")


def usable_pairs(pairs: list[PreferencePair], config: DPOConfig, source: str = "pairs") -> list[PreferencePair]:
    """The pairs DPO can learn from; a clear error (naming ``source``) for pairs it cannot."""
    check_distinct(pairs, source)
    ties = [p for p in pairs if p.label == 0.5]
    if ties and config.loss != "ipo":
        if config.ties == "error":
            raise DataError(
                source,
                f"{len(ties)} pairs are ties (label 0.5), which DPO's loss cannot use: pass "
                "--ties drop to leave them out, or --loss ipo, which pulls tied log-ratios together",
            )
        pairs = [p for p in pairs if p.label != 0.5]
    if not pairs:
        raise DataError(source, "no usable pairs left")
    return pairs


def preference_loss(config: DPOConfig, sums, counts, ref_sums, ref_counts, labels):
    """The configured preference loss on [2B] completion log-probabilities (chosen first) and token counts."""
    (pc, pr), (rc, rr) = sums.chunk(2), ref_sums.chunk(2)
    if config.loss == "ipo":
        (nc, nr), (mc, mr) = counts.chunk(2), ref_counts.chunk(2)
        return ipo_loss(pc / nc, pr / nr, rc / mc, rr / mr, config.beta, label=labels)
    if config.loss == "cdpo":
        return conservative_dpo_loss(pc, pr, rc, rr, config.beta, config.label_smoothing, label=labels)
    return dpo_loss(pc, pr, rc, rr, config.beta, label=labels)


def train_dpo(
    policy: nn.Module,
    tokenizer,
    pairs: list[PreferencePair],
    config: DPOConfig,
    *,
    reference: nn.Module | None = None,
    hooks: Hooks | None = None,
    source: str = "pairs",
) -> MethodResult:
    """Fine-tune ``policy`` on ``pairs`` with the configured preference loss against ``reference``
    (a frozen copy of ``policy`` when None). ``source`` names the pairs in error messages."""
    loop = TrainLoop("dpo", hooks)
    pairs = usable_pairs(pairs, config, source)
    if len(pairs) < config.pairs_per_step:
        raise DataError(source, f"{len(pairs)} usable pairs, fewer than --pairs-per-step {config.pairs_per_step}")
    loop.require_divisible(pairs_per_step=config.pairs_per_step)

    # ---------------------------------------------------------- data and reference log-probabilities
    reference = reference if reference is not None else default_reference(policy)
    for m in (policy, reference):
        disable_dropout(m)
    reference.to(loop.device).eval()
    prompts = [p.prompt for p in pairs]
    chosen = encode(tokenizer, prompts, [p.chosen for p in pairs], config.max_length, as_generated=True)
    rejected = encode(tokenizer, prompts, [p.rejected for p in pairs], config.max_length, as_generated=True)
    labels = torch.tensor([p.label for p in pairs])
    ref_sums, ref_counts = torch.zeros(2, len(pairs)), torch.zeros(2, len(pairs))
    rb = config.reference_batch_size
    with torch.no_grad():
        for s in loop.steps(0, (len(pairs) + rb - 1) // rb, unit="batch", desc="dpo: reference log-probs"):
            lo = s * rb
            n = len(chosen[lo : lo + rb])
            sums, counts = sequence_logprobs(
                reference, chosen[lo : lo + rb] + rejected[lo : lo + rb], tokenizer.pad_token_id, loop.device
            )
            ref_sums[:, lo : lo + n], ref_counts[:, lo : lo + n] = sums.view(2, n).cpu(), counts.view(2, n).cpu()
    del reference

    optimizer = make_optimizer(policy.parameters(), config.optimizer)
    policy, optimizer = loop.accelerator.prepare(policy, optimizer)
    batches = ShardedEpochs(len(pairs), config.pairs_per_step, loop.world, loop.rank, config.run.seed)
    total = max(1, int(config.epochs * batches.steps_per_epoch))
    state = loop.restore(policy=policy, optimizer=optimizer)
    start = 0
    if state is not None:
        start = state["step"]
        batches.load_state_dict(state["batches"])

    # ---------------------------------------------------------- update
    policy.train()
    for step in loop.steps(start, total):
        t0 = time.perf_counter()
        idx = batches.local_batch(step)
        sums, counts = sequence_logprobs(
            policy, [chosen[i] for i in idx] + [rejected[i] for i in idx], tokenizer.pad_token_id, loop.device
        )
        ref = [torch.cat([x[0, idx], x[1, idx]]).to(sums.device) for x in (ref_sums, ref_counts)]
        loss, m = preference_loss(config, sums, counts, ref[0], ref[1], labels[idx].to(sums.device))
        loop.check_finite(loss, step, "the preference loss")
        lr = lr_at(step, total, config.optimizer.lr)
        loop.optimizer_step(loss, optimizer, policy.parameters(), config.optimizer, lr=lr)
        row = {
            names.STEP: step + 1,
            names.LOSS: loop.mean(loss),
            "dpo/accuracy": loop.mean(m["accuracy"]),
            "dpo/margin": loop.mean(m["margin"]),
            names.LR: lr,
            names.TIME_STEP: time.perf_counter() - t0,
        }
        loop.log(row, loss=f"{row[names.LOSS]:.3f}", acc=f"{row['dpo/accuracy']:.2f}")
        loop.checkpoint(
            step + 1, total, config.run.checkpoint_every, {"step": step + 1, "batches": batches.state_dict()},
            policy=policy, optimizer=optimizer,
        )  # fmt: skip
    return loop.result(
        policy, tokenizer, {"steps": total, "pairs": len(pairs), "final": loop.history[-1] if loop.history else {}}
    )


def optimize_dpo(x: MethodInputs, config: DPOConfig, hooks: Hooks) -> MethodResult:
    usable_pairs(x.pairs, config, x.pairs_source)  # fail before loading any model
    policy, tokenizer, reference = policy_and_reference(x, config)
    return train_dpo(policy, tokenizer, x.pairs, config, reference=reference, hooks=hooks, source=x.pairs_source)


register(
    Method(
        name="dpo", config=DPOConfig, optimize=optimize_dpo, data="pairs", output="policy", kl_knob="beta", logs_samples=False,
        doc="DPO (or IPO, conservative DPO) on preference pairs, no reward model -> RUN/policy.",
    )
)  # fmt: skip
