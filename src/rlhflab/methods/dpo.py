"""Direct preference optimisation: fit the policy to preference pairs by SGD, no reward model, no RL.

DPO (Rafailov et al. 2023, eq. 7) minimises, over pairs (x, y_w, y_l),

    -log sigmoid(beta * [log pi(y_w|x)/pi_ref(y_w|x) - log pi(y_l|x)/pi_ref(y_l|x)])

the Bradley-Terry likelihood of the labels under the implicit reward beta log pi/pi_ref.
Variants are separate loss functions in ``rlhflab.losses``: conservative DPO (label
smoothing, Mitchell 2023) and IPO (Azar et al. 2023), which regresses the log-ratio margin
to 1/(2 beta) and can learn from ties. The reference policy's log-probabilities are computed
once, before training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from rlhflab.rollout import distributed
from rlhflab.rollout.batching import ShardedEpochs, collate, encode, lr_at
from rlhflab.run.checkpoint import resume_or_start, save_checkpoint, save_policy
from rlhflab.config import check
from rlhflab.errors import DataError, RlhflabError, TrainingDiverged
from rlhflab.losses import conservative_dpo_loss, dpo_loss, ipo_loss
from rlhflab.rollout.models import completion_logprobs, disable_dropout, load_policy
from rlhflab.feedback.pairs import PreferencePair
from rlhflab.run.rundir import RunDir, append_jsonl


@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1
    """beta: strength of the implicit KL constraint (IPO's tau for --loss ipo)."""
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    """'sigmoid' is DPO; 'ipo' is IPO (per-token mean log-ratios, as its authors and TRL use)."""
    label_smoothing: float = 0.0
    """Conservative DPO: the probability that a label is flipped (0 for plain DPO)."""
    ties: Literal["error", "drop"] = "error"
    """Pairs labelled as ties (0.5): stop with an error, or leave them out ('ipo' uses them either way)."""
    epochs: float = 2.0
    """Passes over the pairs."""
    batch_size: int = 16
    """Pairs per optimiser step, over all processes."""
    lr: float = 5e-5
    """Peak learning rate (5% warm-up, then linear decay)."""
    max_length: int = 128
    """Tokens of prompt + completion (longer texts keep their end)."""
    checkpoint_every: int = 50
    """Save a checkpoint for --resume every this many steps."""
    seed: int = 0
    """Seed of the data order."""

    def __post_init__(self) -> None:
        check(self.beta > 0, "beta", self.beta, "> 0")
        check(self.loss in ("sigmoid", "ipo"), "loss", self.loss, "'sigmoid' or 'ipo'")
        check(0 <= self.label_smoothing < 0.5, "label_smoothing", self.label_smoothing, "in [0, 0.5)")
        check(self.ties in ("error", "drop"), "ties", self.ties, "'error' or 'drop'")
        check(self.epochs > 0, "epochs", self.epochs, "> 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(self.lr > 0, "lr", self.lr, "> 0")
        check(self.max_length >= 2, "max_length", self.max_length, ">= 2")
        check(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, ">= 1")


def usable_pairs(pairs: list[PreferencePair], config: DPOConfig, source: str = "pairs") -> list[PreferencePair]:
    """The pairs DPO can learn from; a clear error for pairs it cannot."""
    same = [i for i, p in enumerate(pairs, 1) if p.chosen == p.rejected]
    if same:
        raise DataError(
            source,
            f"{len(same)} pairs have chosen equal to rejected (first: pair {same[0]}); "
            "they carry no preference, remove them",
        )
    empty = [i for i, p in enumerate(pairs, 1) if not p.chosen.strip() or not p.rejected.strip()]
    if empty:
        raise DataError(source, f"{len(empty)} pairs have an empty completion (first: pair {empty[0]})")
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


def _loss(config: DPOConfig, sums, means, ref_sums, ref_means, labels):
    """The configured preference loss on [2B] completion log-probabilities (chosen first)."""
    (pc, pr), (rc, rr) = sums.chunk(2), ref_sums.chunk(2)
    if config.loss == "ipo":
        (mc, mr), (mrc, mrr) = means.chunk(2), ref_means.chunk(2)
        return ipo_loss(mc, mr, mrc, mrr, config.beta, labels)
    if config.label_smoothing > 0:
        return conservative_dpo_loss(pc, pr, rc, rr, config.beta, config.label_smoothing)
    return dpo_loss(pc, pr, rc, rr, config.beta, labels)


def _logps(model, encoded, pad_id, device):
    """Summed and per-token-mean completion log-probabilities of ``encoded`` texts."""
    ids, attn, comp = collate(encoded, pad_id, device)
    per_token = completion_logprobs(model, ids, attn, comp)
    counts = comp[:, 1:].sum(1).clamp(min=1)
    return per_token.sum(1), per_token.sum(1) / counts


def train_dpo(
    model_name: str,
    pairs: list[PreferencePair],
    run: RunDir,
    config: DPOConfig,
    pad_token: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Fine-tune ``model_name`` on ``pairs`` with the configured preference loss; write ``run/policy``."""
    accelerator = distributed.accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    run.path.mkdir(parents=True, exist_ok=True)
    pairs = usable_pairs(pairs, config, str(run / "pairs.jsonl"))
    if len(pairs) < config.batch_size:
        raise DataError(run / "pairs.jsonl", f"{len(pairs)} usable pairs, fewer than --batch-size {config.batch_size}")
    if config.batch_size % world:
        raise RlhflabError(f"--batch-size {config.batch_size} must be divisible by the number of processes ({world})")

    # ---------------------------------------------------------- data and reference log-probabilities
    policy, tokenizer = load_policy(model_name, pad_token)
    reference, _ = load_policy(model_name, pad_token)
    for m in (policy, reference):
        disable_dropout(m)
    reference.to(accelerator.device).eval()
    prompts = [p.prompt for p in pairs]
    chosen = encode(tokenizer, prompts, [p.chosen for p in pairs], config.max_length)
    rejected = encode(tokenizer, prompts, [p.rejected for p in pairs], config.max_length)
    labels = torch.tensor([p.label for p in pairs])
    ref_sums, ref_means = torch.zeros(2, len(pairs)), torch.zeros(2, len(pairs))
    with torch.no_grad():
        for s in tqdm(
            range(0, len(pairs), 32),
            desc="dpo: reference log-probs",
            unit="batch",
            disable=not (progress and accelerator.is_main_process),
        ):
            sums, means = _logps(
                reference, chosen[s : s + 32] + rejected[s : s + 32], tokenizer.pad_token_id, accelerator.device
            )
            n = len(chosen[s : s + 32])
            ref_sums[:, s : s + n], ref_means[:, s : s + n] = sums.view(2, n).cpu(), means.view(2, n).cpu()
    del reference

    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    policy, optimizer = accelerator.prepare(policy, optimizer)
    batches = ShardedEpochs(len(pairs), config.batch_size, world, rank, config.seed)
    total = max(1, int(config.epochs * batches.steps_per_epoch))
    metrics_path = run / "metrics.jsonl"
    step = 0
    state = resume_or_start(accelerator, run, "dpo", resume, (metrics_path,))
    if state is not None:
        step = state["step"]
        batches.load_state_dict(state["batches"])

    # ---------------------------------------------------------- update
    policy.train()
    bar = tqdm(
        total=total, initial=step, desc="dpo", unit="step", disable=not (progress and accelerator.is_main_process)
    )
    last: dict = {}
    while step < total:
        t0 = time.perf_counter()
        idx = batches.local_batch(step)
        sums, means = _logps(
            policy, [chosen[i] for i in idx] + [rejected[i] for i in idx], tokenizer.pad_token_id, accelerator.device
        )
        ref = (
            torch.cat([ref_sums[0, idx], ref_sums[1, idx]]).to(sums.device),
            torch.cat([ref_means[0, idx], ref_means[1, idx]]).to(sums.device),
        )
        loss, m = _loss(config, sums, means, ref[0], ref[1], labels[idx].to(sums.device))
        if not torch.isfinite(accelerator.gather(loss.detach()[None])).all():
            raise TrainingDiverged("dpo", step, "the preference loss", float(loss.detach()))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, config.lr)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t_step = time.perf_counter() - t0
        step += 1
        last = {
            "step": step,
            "loss": float(accelerator.gather(loss.detach()[None]).mean()),
            "dpo/accuracy": m["accuracy"],
            "dpo/margin": m["margin"],
            "lr": lr_at(step - 1, total, config.lr),
            "time/step": t_step,
        }
        if accelerator.is_main_process:
            append_jsonl(metrics_path, last)
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.3f}", acc=f"{m['accuracy']:.2f}")
        if step % config.checkpoint_every == 0 and step < total:
            save_checkpoint(
                accelerator, run, "dpo", step, {"step": step, "batches": batches.state_dict()}, metrics_path
            )
    bar.close()

    save_policy(accelerator, run, policy, tokenizer)
    return {"steps": total, "pairs": len(pairs), "final": last, "processes": world}
