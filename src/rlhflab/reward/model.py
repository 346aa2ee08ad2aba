"""Reward models: a backbone with a scalar head, fit to preferences with the Bradley-Terry loss.

An ensemble is k members trained from the same pairs with different seeds (head
initialisation and data order); its reward is the members' mean, their minimum, or
mean - lambda * std for conservative optimisation (Coste et al. 2023). Each member's output
is normalised to mean 0 and standard deviation 1 on the texts it was trained on, which are
samples of the base policy when the feedback came from it (as in Ziegler et al. 2019), so
that a KL coefficient means the same thing across reward models.

On disk, a single reward model is a Hugging Face ``AutoModelForSequenceClassification``
folder (``num_labels=1``) plus ``rlhflab_reward.json``; an ensemble keeps its members in
``member-<i>/`` subfolders.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from tqdm.auto import tqdm

from rlhflab.rollout import distributed
from rlhflab.rollout.batching import ShardedEpochs, collate, encode, lr_at
from rlhflab.run.checkpoint import load_checkpoint, read_trainer_state, save_checkpoint
from rlhflab.config import check
from rlhflab.errors import DataError, RlhflabError, TrainingDiverged
from rlhflab.losses import bradley_terry_loss, masked_mean
from rlhflab.rollout.models import (
    ScalarHeadModel,
    disable_dropout,
    last_token_values,
    load_scalar_model,
    load_tokenizer,
    position_ids,
    unwrap,
)
from rlhflab.feedback.pairs import PreferencePair
from rlhflab.run.rundir import RunDir, append_jsonl, atomic_write_json, replace_dir, truncate_jsonl

META = "rlhflab_reward.json"
Aggregate = Literal["mean", "min", "mean_minus_std"]
Pooling = Literal["last", "mean"]


@dataclass(frozen=True)
class RewardTrainConfig:
    epochs: float = 3.0
    """Passes over the training pairs."""
    batch_size: int = 16
    """Pairs per optimiser step, over all processes (must divide evenly among them)."""
    lr: float = 1e-4
    """Peak learning rate (linear warm-up over the first 5% of steps, then linear decay to 0)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    val_fraction: float = 0.1
    """Share of pairs held out to measure pair accuracy (at least one pair)."""
    ensemble: int = 1
    """Number of members k; 1 trains a single reward model."""
    aggregate: Aggregate = "mean"
    """How an ensemble combines its members' normalised scores."""
    std_coef: float = 1.0
    """lambda in mean - lambda * std (aggregate mean_minus_std)."""
    max_length: int = 128
    """Tokens of prompt + completion the model reads (longer texts keep their end)."""
    pooling: Pooling = "mean"
    """How a text's score is read from the per-token head: 'last' token (Ziegler et al. 2019; what
    AutoModelForSequenceClassification computes) or 'mean' over the completion's tokens (learns far faster
    from few labels on small models)."""
    eval_every: int = 50
    """Measure held-out accuracy every this many steps."""
    checkpoint_every: int = 50
    """Save a checkpoint for --resume every this many steps."""
    seed: int = 0
    """Seed of the train/validation split, data order and head initialisation."""

    def __post_init__(self) -> None:
        check(self.epochs > 0, "epochs", self.epochs, "> 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(self.lr > 0, "lr", self.lr, "> 0")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        check(0 <= self.val_fraction < 1, "val_fraction", self.val_fraction, "in [0, 1)")
        check(self.ensemble >= 1, "ensemble", self.ensemble, ">= 1")
        check(self.std_coef >= 0, "std_coef", self.std_coef, ">= 0")
        check(self.max_length >= 2, "max_length", self.max_length, ">= 2")
        check(self.eval_every >= 1, "eval_every", self.eval_every, ">= 1")
        check(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, ">= 1")


# ---------------------------------------------------------------- inference


class RewardModel:
    """Scores (prompt, completion) texts with a normalised single model or ensemble."""

    def __init__(
        self,
        members: list[ScalarHeadModel],
        tokenizer,
        norms: list[tuple[float, float]],
        aggregate: Aggregate = "mean",
        std_coef: float = 1.0,
        max_length: int = 128,
        pooling: Pooling = "last",
    ):
        self.members, self.tokenizer, self.norms = members, tokenizer, norms
        self.aggregate, self.std_coef, self.max_length, self.pooling = aggregate, std_coef, max_length, pooling

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "RewardModel":
        path = Path(path)
        meta_path = path / META
        if not meta_path.is_file():
            raise RlhflabError(
                f"{path}: not an rlhflab reward model (no {META}); train one with 'rlhflab reward train'"
            )
        meta = json.loads(meta_path.read_text())
        tokenizer = load_tokenizer(path / meta["members"][0]["path"])
        members = [
            load_scalar_model(path / m["path"], tokenizer.pad_token_id).to(device).eval() for m in meta["members"]
        ]
        norms = [(m["mean"], m["std"]) for m in meta["members"]]
        return cls(
            members,
            tokenizer,
            norms,
            meta["aggregate"],
            meta["std_coef"],
            meta["max_length"],
            meta.get("pooling", "last"),
        )

    @torch.no_grad()
    def member_scores(
        self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 64, normalize: bool = True
    ) -> torch.Tensor:
        """[k, B] scores of each member."""
        device = next(self.members[0].parameters()).device
        encoded = encode(self.tokenizer, prompts, completions, self.max_length)
        out = torch.zeros(len(self.members), len(encoded))
        for start in range(0, len(encoded), batch_size):
            batch = collate(encoded[start : start + batch_size], self.tokenizer.pad_token_id, device)
            for i, member in enumerate(self.members):
                out[i, start : start + len(batch[0])] = sequence_scores(member, *batch, self.pooling).cpu()
        if normalize:
            mean = torch.tensor([m for m, _ in self.norms])[:, None]
            std = torch.tensor([s for _, s in self.norms])[:, None]
            out = (out - mean) / std
        return out

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """[B] the proxy reward: the members' normalised scores, aggregated."""
        return aggregate_scores(self.member_scores(prompts, completions), self.aggregate, self.std_coef)


def sequence_scores(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor, pooling: Pooling
) -> torch.Tensor:
    """[B] scores: the head's output at the last token, or its mean over the completion's tokens."""
    values = model(input_ids, attention_mask, position_ids(attention_mask))
    if pooling == "last":
        return last_token_values(values, attention_mask)
    return masked_mean(values, completion_mask, dim=1)


def aggregate_scores(scores: torch.Tensor, how: Aggregate, std_coef: float = 1.0) -> torch.Tensor:
    """[k, B] member scores -> [B]: mean, min, or mean - std_coef * std (std 0 for one member)."""
    if how == "mean":
        return scores.mean(0)
    if how == "min":
        return scores.min(0).values
    if how == "mean_minus_std":
        std = scores.std(0, unbiased=False)
        return scores.mean(0) - std_coef * std
    raise ValueError(f"unknown aggregate {how!r}")


# ---------------------------------------------------------------- training


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


def _pair_rewards(model, chosen, rejected, pad_id, device, pooling: Pooling):
    r = sequence_scores(model, *collate(list(chosen) + list(rejected), pad_id, device), pooling)
    return r[: len(chosen)], r[len(chosen) :]


@torch.no_grad()
def _evaluate(model, data, pad_id, device, pooling: Pooling, batch_size=64) -> dict[str, float]:
    chosen, rejected, labels, gold_diff = data
    if not chosen:
        return {}
    rc, rr = [], []
    for s in range(0, len(chosen), batch_size):
        a, b = _pair_rewards(model, chosen[s : s + batch_size], rejected[s : s + batch_size], pad_id, device, pooling)
        rc.append(a.cpu())
        rr.append(b.cpu())
    margin = torch.cat(rc) - torch.cat(rr)
    loss, m = bradley_terry_loss(margin, torch.zeros_like(margin), labels)
    out = {"val/loss": float(loss), "val/accuracy": m["accuracy"]}
    known = ~torch.isnan(gold_diff) & (gold_diff != 0)
    if known.any():  # simulated feedback: does the model order the pair as the gold reward does?
        out["val/gold_accuracy"] = float(((margin[known] > 0) == (gold_diff[known] > 0)).float().mean())
    return out


def train_reward_model(
    model_name: str,
    pairs: list[PreferencePair],
    run: RunDir,
    config: RewardTrainConfig,
    pad_token: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train ``config.ensemble`` reward models on ``pairs``; write ``run/reward_model``. Returns a summary."""
    accelerator = distributed.accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    run.path.mkdir(parents=True, exist_ok=True)
    if config.batch_size % world:
        raise RlhflabError(f"--batch-size {config.batch_size} must be divisible by the number of processes ({world})")
    tokenizer = load_tokenizer(model_name, pad_token)
    train, val = split_pairs(pairs, config.val_fraction, config.seed)
    if len(train) < config.batch_size:
        raise DataError(
            run / "pairs.jsonl",
            f"{len(train)} training pairs after holding out {len(val)}, fewer than --batch-size {config.batch_size}",
        )
    train_data, val_data = _encode(train, tokenizer, config.max_length), _encode(val, tokenizer, config.max_length)
    steps_per_epoch = len(train) // config.batch_size
    total = max(1, int(config.epochs * steps_per_epoch))
    pad_id = tokenizer.pad_token_id
    metrics_path = run / "reward_metrics.jsonl"
    members_dir = run.checkpoint_root("reward") / "members"
    summary: dict = {
        "train_pairs": len(train),
        "val_pairs": len(val),
        "steps_per_member": total,
        "processes": world,
        "members": [],
    }

    start_member, start_step, state = 0, 0, None
    checkpoint = run.latest_checkpoint("reward") if resume else None
    if checkpoint is not None:
        state = read_trainer_state(checkpoint, rank)  # the models are restored when their member starts
        start_member, start_step = state["member"], state["step"]
        if accelerator.is_main_process:
            truncate_jsonl(metrics_path, state["metrics_rows"])
    elif accelerator.is_main_process:
        metrics_path.unlink(missing_ok=True)
        shutil.rmtree(run.checkpoint_root("reward"), ignore_errors=True)
    accelerator.wait_for_everyone()

    for member in range(config.ensemble):
        if member < start_member:
            continue
        seed = config.seed + 1000 * member
        torch.manual_seed(seed)  # the new scalar head's initialisation
        model = load_scalar_model(model_name, pad_id)
        disable_dropout(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        model, optimizer = accelerator.prepare(model, optimizer)
        batches = ShardedEpochs(len(train), config.batch_size, world, rank, seed)
        step = 0
        if state is not None and member == start_member and start_step > 0:
            load_checkpoint(accelerator, checkpoint)
            batches.load_state_dict(state["batches"])
            step = start_step
        model.train()
        bar = tqdm(
            total=total,
            initial=step,
            desc=f"reward model {member + 1}/{config.ensemble}",
            unit="step",
            disable=not (progress and accelerator.is_main_process),
        )
        while step < total:
            idx = batches.local_batch(step)
            chosen = [train_data[0][i] for i in idx]
            rejected = [train_data[1][i] for i in idx]
            rc, rr = _pair_rewards(model, chosen, rejected, pad_id, accelerator.device, config.pooling)
            labels = train_data[2][idx].to(rc.device)
            loss, _ = bradley_terry_loss(rc, rr, labels)
            # the logged loss and accuracy are those of the global batch, whatever the number of processes
            global_loss, m = bradley_terry_loss(*(accelerator.gather(t.detach()) for t in (rc, rr, labels)))
            if not torch.isfinite(global_loss):
                raise TrainingDiverged("reward-model training", step, "the Bradley-Terry loss", float(global_loss))
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, config.lr)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            row = {
                "member": member,
                "step": step,
                "loss": float(global_loss),
                "accuracy": m["accuracy"],
                "margin": m["margin"],
                "lr": lr_at(step - 1, total, config.lr),
            }
            if step % config.eval_every == 0 or step == total:
                row.update(_evaluate(model, val_data, pad_id, accelerator.device, config.pooling))
                bar.set_postfix(val_acc=f"{row.get('val/accuracy', float('nan')):.3f}")
            if accelerator.is_main_process:
                append_jsonl(metrics_path, row)
            bar.update(1)
            if step % config.checkpoint_every == 0 and step < total:
                save_checkpoint(
                    accelerator,
                    run,
                    "reward",
                    member * 1_000_000 + step,
                    {"member": member, "step": step, "batches": batches.state_dict()},
                    metrics_path,
                )
        bar.close()
        final = _evaluate(model, val_data, pad_id, accelerator.device, config.pooling)
        train_scores = _scores(model, train_data, pad_id, accelerator.device, config.pooling)
        mean, std = float(train_scores.mean()), float(train_scores.std().clamp(min=1e-6))
        if accelerator.is_main_process:
            out = members_dir / f"member-{member}"
            tmp = members_dir / f".tmp-member-{member}"
            shutil.rmtree(tmp, ignore_errors=True)
            unwrap(model).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / "member.json", {"mean": mean, "std": std, **final})
            replace_dir(tmp, out)
        summary["members"].append({"member": member, **final})
        save_checkpoint(
            accelerator,
            run,
            "reward",
            (member + 1) * 1_000_000,
            {"member": member + 1, "step": 0},
            metrics_path,
            models=False,
        )
        accelerator.free_memory()
        state = None

    if accelerator.is_main_process:
        _assemble(run, members_dir, config, tokenizer)
    accelerator.wait_for_everyone()
    for key, name in (("val/accuracy", "val_accuracy"), ("val/gold_accuracy", "val_gold_accuracy")):
        values = [m[key] for m in summary["members"] if key in m]
        summary[name] = sum(values) / len(values) if values else None
    return summary


@torch.no_grad()
def _scores(model, data, pad_id, device, pooling: Pooling, batch_size=64) -> torch.Tensor:
    """Scores of every chosen and rejected text of ``data`` (for the normalisation)."""
    encoded = list(data[0]) + list(data[1])
    return torch.cat(
        [
            sequence_scores(model, *collate(encoded[s : s + batch_size], pad_id, device), pooling).cpu()
            for s in range(0, len(encoded), batch_size)
        ]
    )


def _assemble(run: RunDir, members_dir: Path, config: RewardTrainConfig, tokenizer) -> None:
    """Move the trained members into ``run/reward_model`` with the normalisation metadata."""
    out = run / "reward_model"
    tmp = run.path / ".tmp-reward_model"
    shutil.rmtree(tmp, ignore_errors=True)
    members = []
    for i in range(config.ensemble):
        src = members_dir / f"member-{i}"
        info = json.loads((src / "member.json").read_text())
        rel = "." if config.ensemble == 1 else f"member-{i}"
        shutil.copytree(src, tmp / rel, dirs_exist_ok=True)
        (tmp / rel / "member.json").unlink()
        members.append(
            {"path": rel, "mean": info["mean"], "std": info["std"], "val_accuracy": info.get("val/accuracy")}
        )
    atomic_write_json(
        tmp / META,
        {
            "members": members,
            "aggregate": config.aggregate,
            "std_coef": config.std_coef,
            "max_length": config.max_length,
            "pooling": config.pooling,
            "config": asdict(config),
        },
    )
    replace_dir(tmp, out)
