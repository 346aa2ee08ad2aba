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

import math
from pathlib import Path
from typing import Literal, Sequence

import torch

from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.core.estimators import masked_mean
from rlhflab.core.files import atomic_dir, atomic_write_json, read_json
from rlhflab.models.batching import collate, encode
from rlhflab.models.loading import (
    ScalarHeadModel,
    last_token_values,
    load_scalar_model,
    load_tokenizer,
    position_ids,
)
from rlhflab.models.precision import merged_value

META = "rlhflab_reward.json"
MAX_LENGTH = 2**31 - 1
"""The most tokens a reward model may be told to read (what tokenizers take as a length)."""
Aggregate = Literal["mean", "min", "mean_minus_std"]
Pooling = Literal["last", "mean"]


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
    def load(
        cls, path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
    ) -> "RewardModel":
        """The reward model saved in ``path``, its members' weights in ``dtype`` (None: as saved), on ``device``."""
        path = Path(path)
        members, settings = cls.describe(path)
        tokenizer = load_tokenizer(path / members[0][0])
        models = [
            load_scalar_model(path / rel, tokenizer.pad_token_id, dtype).to(device).eval() for rel, _, _ in members
        ]
        return cls(models, tokenizer, [(m, s) for _, m, s in members], *settings)

    @staticmethod
    def member_folder(path: str | Path, member: int = 0) -> Path:
        """The Hugging Face folder of one member (the reward model's own folder when it has one member)."""
        return Path(path) / RewardModel.describe(Path(path))[0][member][0]

    @staticmethod
    def describe(path: Path) -> tuple[list[tuple[str, float, float]], tuple]:
        """The checked description in ``path``: members (folder, mean, std) and (aggregate, std_coef,
        max_length, pooling)."""
        meta_path = path / META
        if not meta_path.is_file():
            raise RlhflabError(
                f"{path}: not an rlhflab reward model (no {META}); train one with 'rlhflab reward train'"
            )
        meta = read_json(meta_path)
        try:
            members = [(m["path"], float(m["mean"]), float(m["std"])) for m in meta["members"]]
            settings = (
                meta["aggregate"],
                float(meta["std_coef"]),
                int(meta["max_length"]),
                meta.get("pooling", "last"),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise DataError(meta_path, f"not an rlhflab reward-model description ({type(e).__name__}: {e})") from None
        if not members or settings[0] not in ("mean", "min", "mean_minus_std") or settings[3] not in ("last", "mean"):
            raise DataError(meta_path, "not an rlhflab reward-model description (members, aggregate or pooling)")
        inside = path.resolve()
        if not all(isinstance(rel, str) and (path / rel).resolve().is_relative_to(inside) for rel, _, _ in members):
            raise DataError(meta_path, "every member's 'path' must be a folder name inside the reward model's folder")
        if not all(math.isfinite(m) and math.isfinite(s) and s > 0 for _, m, s in members):
            raise DataError(meta_path, "every member needs a finite 'mean' and a finite 'std' > 0")
        if not (math.isfinite(settings[1]) and settings[1] >= 0 and 2 <= settings[2] <= MAX_LENGTH):
            raise DataError(meta_path, f"'std_coef' must be a finite number >= 0, 'max_length' in [2, {MAX_LENGTH}]")
        return members, settings

    def save(self, path: str | Path, config: dict | None = None, validation: dict | None = None) -> None:
        """Write the model (one member) or ensemble (``member-<i>/``) with its normalisation, at once; a member
        trained with LoRA is written merged (``merged_value``: the adapter folded in, a plain model).
        ``validation``: its held-out accuracies, kept beside it (what ``optimize`` checks before using it)."""
        with atomic_dir(path) as tmp:
            members = []
            for i, (member, (mean, std)) in enumerate(zip(self.members, self.norms)):
                member = merged_value(member)
                rel = "." if len(self.members) == 1 else f"member-{i}"
                member.save_pretrained(tmp / rel)
                self.tokenizer.save_pretrained(tmp / rel)
                members.append({"path": rel, "mean": mean, "std": std})
            atomic_write_json(
                tmp / META,
                {"members": members, "aggregate": self.aggregate, "std_coef": self.std_coef,
                 "max_length": self.max_length, "pooling": self.pooling, "config": config or {},
                 "validation": validation or {}},
            )  # fmt: skip

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
