"""Conditional training with control tokens (Korbak et al. 2023, "Pretraining Language Models
with Human Preferences"; Keskar et al. 2019).

Samples of the base policy are scored by the reward and tagged: those above the
``threshold_quantile`` of the scores get a "good" control token before the prompt, the rest a
"bad" one. The model is fine-tuned on the tagged texts by plain maximum likelihood, so it stays
a model of all of them; at generation the "good" token is put before every prompt. The same
weights prompted without a control token are the unconditioned model.

The tagged texts go to the samples hook (``train_samples.jsonl`` in a run) and into a
checkpoint: ``--resume`` reuses them (the costly part) and runs the fine-tuning again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from rlhflab.core.config import (
    OptimizerConfig,
    RunConfig,
    SamplingConfig,
    check,
    optimizer_field,
    run_field,
    sampling_field,
)
from rlhflab.core.errors import ConfigError
from rlhflab.core.loop import Hooks, MethodResult, TrainLoop, make_optimizer
from rlhflab.core.scores import RewardFn
from rlhflab.methods.registry import Method, MethodInputs, policy_and_reference, register
from rlhflab.methods.sft import supervised_pass
from rlhflab.models.batching import encode, prompt_stream
from rlhflab.models.loading import check_fits, disable_dropout
from rlhflab.models.precision import ModelConfig, model_field
from rlhflab.models.samplers import SAMPLING_FILE
from rlhflab.models.sampling import sample


@dataclass(frozen=True)
class ConditionalConfig:
    num_prompts: int = 1000
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
    texts_per_step: int = 16
    """Texts per optimiser step, over all processes."""
    sample_batch_size: int = 64
    """Prompts sampled at once (per process) when the texts are collected."""
    max_length: int = 256
    """Tokens of control token + prompt + completion the fine-tuning reads (longer texts keep their end)."""
    sampling: SamplingConfig = sampling_field()
    """Sample length and temperature."""
    optimizer: OptimizerConfig = optimizer_field(lr=1e-4)
    """AdamW settings of the fine-tuning (warm-up and linear decay)."""
    run: RunConfig = run_field()
    """Seed of prompt order, sampling and data order."""
    model_options: ModelConfig = model_field()
    """Precision, gradient checkpointing and LoRA of the trained policy."""

    def __post_init__(self) -> None:
        if self.model_options.lora:
            raise ConfigError(
                "--lora-r: conditional training adds control tokens whose embeddings must train, and LoRA freezes "
                "the embeddings; fine-tune every weight (--lora-r 0), with --dtype and --gradient-checkpointing"
            )
        check(self.num_prompts >= 0, "num_prompts", self.num_prompts, ">= 0")
        check(self.samples_per_prompt >= 1, "samples_per_prompt", self.samples_per_prompt, ">= 1")
        check(0 < self.threshold_quantile < 1, "threshold_quantile", self.threshold_quantile, "in (0, 1)")
        check(
            bool(self.good_token) and bool(self.bad_token) and self.good_token != self.bad_token,
            "good_token",
            self.good_token,
            "a non-empty token different from --bad-token",
        )
        check(self.epochs > 0, "epochs", self.epochs, "> 0")
        check(self.texts_per_step >= 1, "texts_per_step", self.texts_per_step, ">= 1")
        check(self.sample_batch_size >= 1, "sample_batch_size", self.sample_batch_size, ">= 1")
        check(self.max_length >= 2, "max_length", self.max_length, ">= 2")


def tag(scores: list[float], threshold_quantile: float, good: str, bad: str) -> tuple[list[str], float]:
    """The control token of each score, and the threshold (the quantile of the scores); ties at the
    threshold count as bad."""
    threshold = float(torch.quantile(torch.tensor(scores, dtype=torch.float64), threshold_quantile))
    return [good if s > threshold else bad for s in scores], threshold


def add_control_tokens(model, tokenizer, tokens: list[str], seed: int = 0) -> int:
    """Add ``tokens`` as special tokens, new embeddings at the mean of the old; returns the old vocabulary size.

    ``mean_resizing`` draws the new rows from a narrow normal around the mean with the global RNG:
    ``seed`` fixes that draw, so a resumed run (which skips the sampling) gets the same rows."""
    vocab = tokenizer.get_vocab()
    present = [t for t in tokens if t in vocab]
    if present:
        raise ConfigError(
            f"control token {present[0]!r} is already in the vocabulary; pick another with "
            "--good-token/--bad-token, so its old meaning does not leak into the condition"
        )
    old = len(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": tokens})
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return old


def train_conditional(
    policy: nn.Module,
    tokenizer,
    reward: RewardFn,
    prompts: Sequence[str],
    config: ConditionalConfig,
    *,
    hooks: Hooks | None = None,
) -> MethodResult:
    """Tag ``policy``'s own samples good/bad by ``reward``, add the control tokens, fine-tune on the
    tagged texts. The returned policy is sampled after the good token (``policy_files``)."""
    loop = TrainLoop("conditional", hooks)
    check_fits(policy, tokenizer, list(prompts), config.sampling.max_new_tokens + 1)
    seed = config.run.seed

    # ---------------------------------------------------------- sample (each process its share), score, tag
    state = loop.restore()
    if state is not None and "rows" in state:
        rows = state["rows"]
    else:
        n = config.num_prompts or len(prompts)
        chosen = prompt_stream(list(prompts), n, torch.Generator().manual_seed(seed))
        repeated = [p for p in chosen for _ in range(config.samples_per_prompt)]
        mine = repeated[loop.rank :: loop.world]
        texts: list[str] = []
        ended: list[bool] = []
        g = torch.Generator().manual_seed(seed + loop.rank)
        size = config.sample_batch_size
        for s in loop.steps(0, (len(mine) + size - 1) // size, unit="batch", desc="conditional: sample"):
            r = sample(
                policy, tokenizer, mine[s * size : (s + 1) * size], max_new_tokens=config.sampling.max_new_tokens,
                seed=int(torch.randint(0, 2**62, (1,), generator=g)), temperature=config.sampling.temperature,
            )  # fmt: skip
            texts += r.responses
            ended += r.ended or [False] * len(r.responses)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        mine, texts, ended = [mine[i] for i in keep], [texts[i] for i in keep], [ended[i] for i in keep]
        scored = list(zip(mine, texts, ended, [float(x) for x in reward(mine, texts)]))
        if loop.world > 1:
            # heavy library (accelerate): imported on first use, not with rlhflab
            from accelerate.utils import gather_object

            scored = gather_object(scored)
        tags, threshold = tag([s for *_, s in scored], config.threshold_quantile, config.good_token, config.bad_token)
        rows = [
            {"tag": t, "prompt": p, "completion": c, "ended": e, "score": s, "threshold": threshold}
            for t, (p, c, e, s) in zip(tags, scored)
        ]
        loop.log_samples(rows)
        loop.save(0, {"step": 0, "rows": rows})
    good_share = sum(r["tag"] == config.good_token for r in rows) / len(rows)

    # ---------------------------------------------------------- fine-tune on the tagged texts
    base_vocab = add_control_tokens(policy, tokenizer, [config.good_token, config.bad_token], seed)
    disable_dropout(policy)
    encoded = encode(
        tokenizer,
        [r["tag"] + r["prompt"] for r in rows],
        [r["completion"] for r in rows],
        config.max_length,
        [r["ended"] for r in rows],
        as_generated=True,
    )
    optimizer = make_optimizer(policy.parameters(), config.optimizer)
    policy, optimizer = loop.accelerator.prepare(policy, optimizer)

    def log(step: int, loss: float) -> None:
        loop.log({"step": step + 1, "sft/loss": loss})

    losses = supervised_pass(
        loop, policy, optimizer, encoded, texts_per_step=config.texts_per_step, epochs=config.epochs,
        config=config.optimizer, seed=seed, pad_id=tokenizer.pad_token_id, on_step=log,
    )  # fmt: skip
    sampling = {
        "prefix": config.good_token,
        "vocab_size": base_vocab,
        "unconditioned": "prompt without a control token",
    }
    return loop.result(
        policy,
        tokenizer,
        {"texts": len(rows), "good_share": good_share, "steps": len(losses), "final_loss": losses[-1]},
        policy_files={SAMPLING_FILE: sampling},
    )


def optimize_conditional(x: MethodInputs, config: ConditionalConfig, hooks: Hooks) -> MethodResult:
    policy, tokenizer, _ = policy_and_reference(x, config, reference=False)
    return train_conditional(policy, tokenizer, x.reward, x.prompts, config, hooks=hooks)


register(
    Method(
        name="conditional", config=ConditionalConfig, optimize=optimize_conditional, data="reward", output="policy",
        doc="Conditional training with good/bad control tokens -> RUN/policy.",
    )
)  # fmt: skip
