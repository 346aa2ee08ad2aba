"""Off-the-shelf reward models: a Hugging Face sequence-classification folder with one output and no
``rlhflab_reward.json`` (for example a reward model from the hub, saved to disk).

Such a model is scored exactly as its own ``forward`` scores it (``logits[:, 0]`` of prompt + completion
as one text), so each architecture keeps its own pooling: the last non-pad token for decoder classes,
the pooled first token for encoder classes such as DeBERTa. Its scale is arbitrary, so, like rlhflab's
own reward models (normalised on the base-policy texts they were trained on), it is normalised to mean 0
and standard deviation 1 on samples of the base policy before it is used (``calibrate``); the stages
record the normalisation in the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from rlhflab.core.errors import RlhflabError
from rlhflab.models.loading import (
    Loader,
    _load_error,
    _load_errors,
    _quiet_transformers,
    context_length,
    forward_inputs,
    load_tokenizer,
)
from rlhflab.models.sampling import sample
from rlhflab.reward.model import META

CALIBRATION_SAMPLES = 256
"""Base-policy continuations (one per training prompt, the first this many) an off-the-shelf reward model
is normalised on."""


def is_classifier_folder(path: str | Path) -> bool:
    """A Hugging Face folder whose config names a ``*ForSequenceClassification`` class, without rlhflab's
    reward-model description."""
    path = Path(path)
    config = path / "config.json"
    if (path / META).exists() or not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False
    return any(isinstance(a, str) and a.endswith("ForSequenceClassification") for a in architectures)


class ClassifierReward:
    """(prompts, completions) -> [B] normalised scores of an off-the-shelf sequence-classification model."""

    def __init__(self, model, tokenizer, folder: str, max_length: int = 512):
        self.model, self.tokenizer, self.folder, self.max_length = model, tokenizer, folder, max_length
        self.normalisation: dict | None = None
        """mean and std of the raw scores of base samples, their count and what they were (for the manifest)."""
        self.members = [model]  # one member, as RewardModel's callers expect

    @classmethod
    def load(cls, folder: str | Path, device="cpu", dtype: torch.dtype | None = None) -> "ClassifierReward":
        """The classifier in ``folder``, weights in ``dtype`` (None: as saved), on ``device``."""
        # heavy library (transformers): imported on first use, not with rlhflab
        from transformers import AutoModelForSequenceClassification

        tokenizer = load_tokenizer(folder)
        try:
            with _quiet_transformers():
                model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=dtype)
        except _load_errors() as e:
            raise _load_error(str(folder), e) from None
        if model.config.num_labels != 1:
            raise RlhflabError(
                f"--reward {folder}: a sequence-classification model with {model.config.num_labels} outputs; a "
                "reward model has one (num_labels=1)"
            )
        model.config.pad_token_id = tokenizer.pad_token_id
        limit = context_length(model)
        return cls(model.to(device).eval(), tokenizer, str(folder), min(limit or 512, 512))

    @torch.no_grad()
    def raw_scores(self, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """[B] the model's own output for each prompt + completion (left-padded in batches, with positions
        counted from each text's first token, so a text scores the same alone or in a batch)."""
        device = next(self.model.parameters()).device
        texts = [p + c for p, c in zip(prompts, completions)]
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(
                texts[start : start + batch_size], return_tensors="pt", padding=True, truncation=True,
                max_length=self.max_length,
            ).to(device)  # fmt: skip
            logits = self.model(**forward_inputs(self.model, enc["input_ids"], enc["attention_mask"])).logits
            out.append(logits[:, 0].float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def set_norm(self, scores: torch.Tensor) -> dict:
        """Normalise by the mean and standard deviation of ``scores`` (raw scores of base samples); returns
        ``normalisation``."""
        mean, std = float(scores.mean()), float(scores.std(unbiased=False))
        if not std > 0:
            raise RlhflabError(
                f"--reward {self.folder}: every base-policy sample got the same score ({mean:.4g}); the model "
                "cannot be normalised (is its head trained?)"
            )
        self.normalisation = {"mean": mean, "std": std, "samples": int(scores.numel()), "on": "base-policy samples"}
        return self.normalisation

    def member_scores(self, prompts: Sequence[str], completions: Sequence[str], **_) -> torch.Tensor:
        return self(prompts, completions)[None]

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        if self.normalisation is None:
            raise RuntimeError("calibrate the reward model on base samples first (rlhflab.reward.foreign.calibrate)")
        norm = self.normalisation
        return (self.raw_scores(prompts, completions) - norm["mean"]) / norm["std"]


def calibrate(
    reward: ClassifierReward,
    model: str,
    prompts: Sequence[str],
    loader: Loader,
    max_new_tokens: int,
    temperature: float,
    seed: int = 0,
) -> dict:
    """Normalise ``reward`` on one continuation from the base policy ``model`` for each of the first
    ``CALIBRATION_SAMPLES`` prompts (``loader`` loads it); returns the normalisation (for the manifest)."""
    policy, tokenizer = loader.policy(model)  # on the accelerator when there is one
    policy.eval()
    chosen = list(prompts[:CALIBRATION_SAMPLES])
    texts: list[str] = []
    for start in range(0, len(chosen), 64):
        batch = chosen[start : start + 64]
        out = sample(
            policy, tokenizer, batch, max_new_tokens=max_new_tokens, seed=seed + start, temperature=temperature
        )
        texts.extend(out.responses)
    del policy
    return reward.set_norm(reward.raw_scores(chosen, texts))
