"""Reward-ranked fine-tuning (RAFT, Dong et al. 2023; expert iteration; filtered behaviour cloning).

Each round: sample k continuations of each prompt from the current policy, keep the best
``keep_fraction`` of each prompt's samples by reward, and fine-tune on them by maximum
likelihood. No value function, no KL term: the policy moves only as far as imitation of its
own best samples takes it, and the number of rounds and the fraction kept set how far that is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from rlhflab.core import metric_names as names
from rlhflab.core.config import (
    OptimizerConfig,
    RunConfig,
    SamplingConfig,
    check,
    optimizer_field,
    run_field,
    sampling_field,
)
from rlhflab.core.distributed import unwrap
from rlhflab.core.estimators import kl_estimators
from rlhflab.core.loop import Hooks, MethodResult, TrainLoop, make_optimizer
from rlhflab.core.scores import RewardFn
from rlhflab.core.task import GoldFn
from rlhflab.methods.registry import Method, on_prompts, register
from rlhflab.methods.sft import supervised_pass
from rlhflab.models.batching import generated_ids, prompt_stream
from rlhflab.models.loading import check_fits, disable_dropout
from rlhflab.models.precision import ModelConfig, default_reference, model_field
from rlhflab.models.sampling import sample, token_logprobs


@dataclass(frozen=True)
class RankedSFTConfig:
    rounds: int = 3
    """Rounds of sample, rank, fine-tune."""
    prompts_per_round: int = 256
    """Training prompts sampled each round, over all processes."""
    samples_per_prompt: int = 4
    """Continuations sampled per prompt (k)."""
    keep_fraction: float = 0.25
    """Share of each prompt's samples kept for fine-tuning, the best by reward (at least one)."""
    epochs: float = 1.0
    """Passes over each round's kept samples."""
    texts_per_step: int = 16
    """Samples per optimiser step, over all processes."""
    max_length: int = 256
    """Tokens of prompt + completion the fine-tuning reads (longer texts keep their end)."""
    sampling: SamplingConfig = sampling_field()
    """Sample length and temperature."""
    optimizer: OptimizerConfig = optimizer_field(lr=5e-5)
    """AdamW settings of each round's fine-tuning (warm-up and linear decay within the round)."""
    run: RunConfig = run_field(checkpoint_every=1, sample_every=1)
    """Seed; a checkpoint after every round (checkpoint_every counts rounds)."""
    model_options: ModelConfig = model_field()
    """Precision, gradient checkpointing and LoRA of the trained policy."""

    def __post_init__(self) -> None:
        check(self.rounds >= 1, "rounds", self.rounds, ">= 1")
        check(self.prompts_per_round >= 1, "prompts_per_round", self.prompts_per_round, ">= 1")
        check(self.samples_per_prompt >= 1, "samples_per_prompt", self.samples_per_prompt, ">= 1")
        check(0 < self.keep_fraction <= 1, "keep_fraction", self.keep_fraction, "in (0, 1]")
        check(self.epochs > 0, "epochs", self.epochs, "> 0")
        check(self.texts_per_step >= 1, "texts_per_step", self.texts_per_step, ">= 1")
        check(self.max_length >= 2, "max_length", self.max_length, ">= 2")


def top_per_prompt(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """[P, k] scores -> [P, keep] indices of each row's ``keep`` best (highest first)."""
    return scores.topk(keep, dim=1).indices


def train_ranked_sft(
    policy: nn.Module,
    tokenizer,
    reward: RewardFn,
    prompts: Sequence[str],
    config: RankedSFTConfig,
    *,
    reference: nn.Module | None = None,
    gold: GoldFn | None = None,
    hooks: Hooks | None = None,
) -> MethodResult:
    """Rounds of: sample k continuations per prompt, keep the best by ``reward``, fine-tune on them.
    ``reference`` (a frozen copy of ``policy`` when None) is only used to report the KL."""
    loop = TrainLoop("ranked_sft", hooks)
    check_fits(policy, tokenizer, list(prompts), config.sampling.max_new_tokens)
    reference = reference if reference is not None else default_reference(policy)
    for m in (policy, reference):
        disable_dropout(m)
    reference.to(loop.device).eval()
    optimizer = make_optimizer(policy.parameters(), config.optimizer)
    policy, optimizer = loop.accelerator.prepare(policy, optimizer)
    seed, temperature = config.run.seed, config.sampling.temperature
    g = torch.Generator().manual_seed(seed)
    k, per_rank = config.samples_per_prompt, math.ceil(config.prompts_per_round / loop.world)
    keep = max(1, round(k * config.keep_fraction))
    stream = prompt_stream(list(prompts), config.rounds * per_rank * loop.world, torch.Generator().manual_seed(seed))
    state = loop.restore(policy=policy, optimizer=optimizer)
    start = 0
    if state is not None:
        start = state["step"]
        g.set_state(state["generator"])

    for rnd in loop.steps(start, config.rounds, unit="round", desc="ranked sft"):
        # ------------------------------------------------------ sample and rank
        first = (rnd * loop.world + loop.rank) * per_rank
        batch = stream[first : first + per_rank]
        repeated = [p for p in batch for _ in range(k)]
        seed_now = int(torch.randint(0, 2**62, (loop.world,), generator=g)[loop.rank])
        r = sample(
            policy, tokenizer, repeated, max_new_tokens=config.sampling.max_new_tokens, seed=seed_now,
            temperature=temperature,
        )  # fmt: skip
        with torch.no_grad():
            logp, _ = token_logprobs(unwrap(policy), r.input_ids, r.attention_mask, r.prompt_length, temperature)
            logp_ref, _ = token_logprobs(reference, r.input_ids, r.attention_mask, r.prompt_length, temperature)
        kl = kl_estimators(logp, logp_ref, r.response_mask)["k1"]
        scores = torch.as_tensor(reward(repeated, r.responses), dtype=torch.float32).view(len(batch), k)
        best = top_per_prompt(scores, keep)
        rows = [i * k + int(j) for i in range(len(batch)) for j in best[i]]
        kept = generated_ids(r, [i for i in rows if r.responses[i].strip()], config.max_length)  # as sampled
        if loop.world > 1:
            # heavy library (accelerate): imported on first use, not with rlhflab
            from accelerate.utils import gather_object

            kept = gather_object(kept)

        # ------------------------------------------------------ fine-tune on the best
        encoded = kept
        losses = supervised_pass(
            loop, policy, optimizer, encoded, texts_per_step=config.texts_per_step, epochs=config.epochs,
            config=config.optimizer, seed=seed + rnd, pad_id=tokenizer.pad_token_id,
        )  # fmt: skip

        # ------------------------------------------------------ metrics
        gather = loop.accelerator.gather
        row = {
            names.STEP: rnd + 1,
            names.EPISODES: (rnd + 1) * per_rank * loop.world * k,
            names.SCORE: loop.mean(scores.to(loop.device)),
            names.KL: loop.mean(kl),
            "ranked/kept_score": loop.mean(scores.gather(1, best).to(loop.device)),
            "ranked/kept": len(kept),
            "sft/loss": losses[-1],
            "sft/steps": len(losses),
        }
        golds = torch.tensor(gold(repeated, r.responses), dtype=torch.float32) if gold is not None else None
        if golds is not None:
            row[names.GOLD] = float(gather(golds.to(loop.device)).mean())
        loop.log_rollout_samples(rnd + 1, config.run, batch, r.responses, scores.flatten(), golds, stride=k)
        loop.log(row, score=f"{row[names.SCORE]:.2f}", kl=f"{row[names.KL]:.2f}")
        loop.checkpoint(
            rnd + 1, config.rounds, config.run.checkpoint_every, {"step": rnd + 1, "generator": g.get_state()},
            policy=policy, optimizer=optimizer,
        )  # fmt: skip
    return loop.result(policy, tokenizer, {"rounds": config.rounds, "final": loop.history[-1] if loop.history else {}})


register(
    Method(
        name="ranked-sft", config=RankedSFTConfig, optimize=on_prompts(train_ranked_sft), data="reward", output="policy",
        doc="Reward-ranked fine-tuning: sample, keep the best, imitate -> RUN/policy.",
    )
)  # fmt: skip
