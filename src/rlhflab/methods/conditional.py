"""Conditional training with control tokens (Korbak et al. 2023, "Pretraining Language Models
with Human Preferences"; Keskar et al. 2019).

Samples of the base policy are scored by the reward and tagged: those above the
``threshold_quantile`` of the scores get a "good" control token before the prompt, the rest a
"bad" one. The model is fine-tuned on the tagged texts by plain maximum likelihood, so it stays
a model of all of them; at generation the "good" token is put before every prompt. The same
weights prompted without a control token are the unconditioned model.

``--resume`` reuses the tagged texts (``conditional_data.jsonl``, the costly part) and runs the
fine-tuning again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rlhflab.rollout import distributed
from rlhflab.rollout.batching import encode
from rlhflab.run.checkpoint import save_policy
from rlhflab.config import check
from rlhflab.errors import ConfigError
from rlhflab.feedback.simulated import prompt_stream
from rlhflab.methods.sft import supervised_pass
from rlhflab.rollout.models import check_fits, disable_dropout, load_policy, sample
from rlhflab.run.rundir import RunDir, append_jsonl, atomic_write_text, read_jsonl
from rlhflab.rollout.samplers import SAMPLING_FILE


@dataclass(frozen=True)
class ConditionalConfig:
    prompts: int = 1000
    """Training prompts whose base-policy continuations are tagged (0 = all)."""
    samples_per_prompt: int = 2
    """Continuations sampled per prompt."""
    threshold_quantile: float = 0.5
    """Texts scoring above this quantile of the rewards are tagged good, the others bad."""
    good_token: str = "<|good|>"
    """Control token for texts above the threshold (added to the vocabulary)."""
    bad_token: str = "<|bad|>"
    """Control token for the others (added to the vocabulary)."""
    epochs: float = 2.0
    """Passes over the tagged texts."""
    batch_size: int = 16
    """Texts per optimiser step, over all processes."""
    lr: float = 1e-4
    """Peak learning rate."""
    max_new_tokens: int = 24
    """Length limit of the sampled continuations."""
    temperature: float = 0.7
    """Sampling temperature."""
    seed: int = 0
    """Seed of prompt order, sampling and data order."""

    def __post_init__(self) -> None:
        check(self.prompts >= 0, "prompts", self.prompts, ">= 0")
        check(self.samples_per_prompt >= 1, "samples_per_prompt", self.samples_per_prompt, ">= 1")
        check(0 < self.threshold_quantile < 1, "threshold_quantile", self.threshold_quantile, "in (0, 1)")
        check(
            bool(self.good_token) and bool(self.bad_token) and self.good_token != self.bad_token,
            "good_token",
            self.good_token,
            "a non-empty token different from --bad-token",
        )
        check(self.epochs > 0, "epochs", self.epochs, "> 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(self.lr > 0, "lr", self.lr, "> 0")
        check(self.temperature > 0, "temperature", self.temperature, "> 0")


def tag(scores: list[float], threshold_quantile: float, good: str, bad: str) -> tuple[list[str], float]:
    """The control token of each score, and the threshold (the quantile of the scores); ties at the
    threshold count as bad."""
    threshold = float(torch.quantile(torch.tensor(scores, dtype=torch.float64), threshold_quantile))
    return [good if s > threshold else bad for s in scores], threshold


def add_control_tokens(model, tokenizer, tokens: list[str]) -> int:
    """Add ``tokens`` as special tokens, new embeddings at the mean of the old; returns the old vocabulary size."""
    vocab = tokenizer.get_vocab()
    present = [t for t in tokens if t in vocab]
    if present:
        raise ConfigError(
            f"control token {present[0]!r} is already in the vocabulary; pick another with "
            "--good-token/--bad-token, so its old meaning does not leak into the condition"
        )
    old = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": tokens})
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return old


def train_conditional(
    model_name,
    reward,
    prompts,
    run: RunDir,
    config: ConditionalConfig,
    gold=None,
    pad_token=None,
    resume=False,
    progress=True,
) -> dict:
    accelerator = distributed.accelerator()
    main = accelerator.is_main_process
    run.path.mkdir(parents=True, exist_ok=True)
    policy, tokenizer = load_policy(model_name, pad_token)
    check_fits(policy, tokenizer, list(prompts), config.max_new_tokens + 1)
    data_path = run / "conditional_data.jsonl"

    # ---------------------------------------------------------- sample, score and tag (once; kept for --resume)
    if not (resume and data_path.is_file()):
        n = config.prompts or len(prompts)
        chosen = prompt_stream(list(prompts), n, torch.Generator().manual_seed(config.seed))
        repeated = [p for p in chosen for _ in range(config.samples_per_prompt)]
        texts: list[str] = []
        ended: list[bool] = []
        g = torch.Generator().manual_seed(config.seed)
        for s in tqdm(range(0, len(repeated), 64), desc="conditional: sample", unit="batch", disable=not progress):
            r = sample(
                policy,
                tokenizer,
                repeated[s : s + 64],
                max_new_tokens=config.max_new_tokens,
                seed=int(torch.randint(0, 2**62, (1,), generator=g)),
                temperature=config.temperature,
            )
            texts += r.responses
            ended += r.ended
        keep = [i for i, t in enumerate(texts) if t.strip()]
        repeated, texts, ended = [repeated[i] for i in keep], [texts[i] for i in keep], [ended[i] for i in keep]
        scores = [float(x) for x in reward(repeated, texts)]
        tags, threshold = tag(scores, config.threshold_quantile, config.good_token, config.bad_token)
        if main:
            atomic_write_text(
                data_path,
                "".join(
                    json.dumps({"tag": t, "prompt": p, "completion": c, "ended": e, "score": s, "threshold": threshold})
                    + "\n"
                    for t, p, c, e, s in zip(tags, repeated, texts, ended, scores)
                ),
            )
        accelerator.wait_for_everyone()
    rows = read_jsonl(data_path)
    good_share = sum(r["tag"] == config.good_token for r in rows) / len(rows)

    # ---------------------------------------------------------- fine-tune on the tagged texts
    base_vocab = add_control_tokens(policy, tokenizer, [config.good_token, config.bad_token])
    disable_dropout(policy)
    encoded = encode(
        tokenizer,
        [r["tag"] + r["prompt"] for r in rows],
        [r["completion"] for r in rows],
        256,
        [r["ended"] for r in rows],
    )
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    policy, optimizer = accelerator.prepare(policy, optimizer)
    metrics_path = run / "metrics.jsonl"
    if main:  # --resume keeps the sampled, scored and tagged texts; the (short) fine-tuning starts again
        metrics_path.unlink(missing_ok=True)

    def log(step, loss):
        if main:
            append_jsonl(metrics_path, {"step": step + 1, "sft/loss": loss})

    losses = supervised_pass(
        accelerator,
        policy,
        optimizer,
        encoded,
        batch_size=config.batch_size,
        epochs=config.epochs,
        lr=config.lr,
        seed=config.seed,
        pad_id=tokenizer.pad_token_id,
        stage="conditional",
        on_step=log,
    )
    save_policy(
        accelerator,
        run,
        policy,
        tokenizer,
        {
            SAMPLING_FILE: {
                "prefix": config.good_token,
                "vocab_size": base_vocab,
                "unconditioned": "prompt without a control token",
            }
        },
    )
    return {
        "texts": len(rows),
        "good_share": good_share,
        "steps": len(losses),
        "final_loss": losses[-1],
        "processes": accelerator.num_processes,
    }
