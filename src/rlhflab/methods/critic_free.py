"""The loop shared by the critic-free policy gradients (RLOO in ``rloo.py``, GRPO in ``grpo.py``): no value function.

Each step samples k continuations for each of a few prompts, scores them with any reward
(a reward model, the gold scorer, a rule), turns each prompt's k scores into advantages
relative to each other, and takes ``epochs`` passes of clipped policy-gradient minibatches over
them (with one pass the clip is inactive: REINFORCE with a baseline). What differs between the
methods is their ``Objective``: the advantage estimator, and where the KL to the reference goes
(in the reward, RLOO; as a per-token term of the loss, GRPO).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

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
from rlhflab.core.errors import TrainingDiverged
from rlhflab.core.estimators import NEGATIVE_KL, kl_estimators, kl_negative_beyond_noise, masked_mean
from rlhflab.core.loop import Hooks, MethodResult, TrainLoop, make_optimizer
from rlhflab.core.losses import clipped_pg_loss
from rlhflab.core.scores import RewardFn
from rlhflab.core.task import GoldFn
from rlhflab.models.batching import prompt_stream
from rlhflab.models.loading import check_fits, disable_dropout
from rlhflab.models.precision import ModelConfig, default_reference, model_field
from rlhflab.models.sampling import policy_logprobs, sample, sampler_is_exact, token_logprobs


@dataclass(frozen=True)
class Objective:
    """A critic-free method's objective: its advantage estimator and where the KL to the reference goes."""

    advantages: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """(scores [P, k], per-sequence k1 KL to the reference [P, k]) -> advantages [P, k]."""
    kl_coef: float
    """beta, logged as ``objective/kl_coef``."""
    kl_in_loss: bool
    """True: beta times the per-token k3 KL estimate is added to the loss (GRPO); False: the KL is paid in the
    reward, inside ``advantages`` (RLOO)."""
    loss: Callable[..., tuple[torch.Tensor, dict]] | None = None
    """(logp, logp_old, advantages, mask, logp_ref) -> (loss, metrics with "clipfrac"), or None for
    ``losses.clipped_pg_loss`` with the config's clip range and aggregation (GRPO's variants set one)."""
    shape_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    """(scores [B], generated lengths [B]) -> the scores advantages are computed from (DAPO's overlong shaping),
    or None."""
    keep_groups: Callable[[torch.Tensor], torch.Tensor] | None = None
    """(scores [P, k]) -> [P] booleans: the groups the update learns from (DAPO's dynamic sampling), or None for
    all."""


@dataclass(frozen=True)
class GroupConfig:
    steps: int = 60
    """Policy-gradient steps, each one rollout and its update passes."""
    prompts_per_step: int = 8
    """Prompts per rollout, over all processes."""
    samples_per_prompt: int = 4
    """Continuations per prompt (k >= 2): each is compared with the others of its prompt."""
    epochs: int = 1
    """Passes over each rollout (1 = REINFORCE with a baseline; more use the PPO clip)."""
    minibatch_size: int = 16
    """Sequences (a prompt and one continuation) per gradient step, over all processes."""
    clip_range: float = 0.2
    """Ratio clip when epochs > 1."""
    loss_aggregation: Literal["token", "sequence"] = "token"
    """How per-token losses are averaged: 'token' (over all tokens of a minibatch; DAPO, Yu et al. 2025) or
    'sequence' (per sequence, then over sequences: DeepSeekMath's GRPO, Shao et al. 2024, eq. 3)."""
    sampling: SamplingConfig = sampling_field()
    """Rollout length and temperature."""
    optimizer: OptimizerConfig = optimizer_field(lr=1e-4, adam_eps=1e-5)
    """AdamW settings."""
    run: RunConfig = run_field(checkpoint_every=20, sample_every=3)
    """Seed, checkpoint and sample cadence."""
    model_options: ModelConfig = model_field()
    """Precision, gradient checkpointing and LoRA of the trained policy."""

    def __post_init__(self) -> None:
        check(self.steps >= 1, "steps", self.steps, ">= 1")
        check(self.prompts_per_step >= 1, "prompts_per_step", self.prompts_per_step, ">= 1")
        check(self.samples_per_prompt >= 2, "samples_per_prompt", self.samples_per_prompt, ">= 2")
        check(self.epochs >= 1, "epochs", self.epochs, ">= 1")
        rollout = self.prompts_per_step * self.samples_per_prompt
        check(
            1 <= self.minibatch_size <= rollout and rollout % self.minibatch_size == 0,
            "minibatch_size",
            self.minibatch_size,
            f"a divisor of the rollout size {rollout} (prompts x samples)",
        )
        check(self.clip_range > 0, "clip_range", self.clip_range, "> 0")
        check(
            self.loss_aggregation in ("token", "sequence"),
            "loss_aggregation",
            self.loss_aggregation,
            "'token' or 'sequence'",
        )


def train_critic_free(
    name: str,
    policy: nn.Module,
    tokenizer,
    reward: RewardFn,
    prompts: Sequence[str],
    config: GroupConfig,
    *,
    objective: Objective,
    reference: nn.Module | None = None,
    gold: GoldFn | None = None,
    hooks: Hooks | None = None,
) -> MethodResult:
    loop = TrainLoop(name, hooks)
    loop.require_divisible(prompts_per_step=config.prompts_per_step, minibatch_size=config.minibatch_size)
    k, temperature = config.samples_per_prompt, config.sampling.temperature
    local_prompts, local_mb = config.prompts_per_step // loop.world, config.minibatch_size // loop.world

    # ---------------------------------------------------------- models and state
    check_fits(policy, tokenizer, list(prompts), config.sampling.max_new_tokens)
    reference = reference if reference is not None else default_reference(policy)
    for m in (policy, reference):
        disable_dropout(m)
    reference.to(loop.device).eval().requires_grad_(False)
    optimizer = make_optimizer(policy.parameters(), config.optimizer)
    policy, optimizer = loop.accelerator.prepare(policy, optimizer)
    # one epoch in one minibatch, the KL in the loss (GRPO's usual setting) and a policy whose sampler log-probabilities
    # cannot stand for its own (bfloat16): the update's forward pass is the only teacher-forced pass of the policy
    one_pass = (objective.kl_in_loss and config.epochs == 1 and local_mb >= local_prompts * k
                and not sampler_is_exact(policy))  # fmt: skip
    seed = config.run.seed
    g = torch.Generator().manual_seed(seed)
    stream = prompt_stream(list(prompts), config.steps * config.prompts_per_step, torch.Generator().manual_seed(seed))
    state = loop.restore(policy=policy, optimizer=optimizer)
    start = 0
    if state is not None:
        start = state["step"]
        g.set_state(state["generator"])

    for step in loop.steps(start, config.steps):
        # ------------------------------------------------------ rollout: k samples of each prompt
        t0 = time.perf_counter()
        first = step * config.prompts_per_step + loop.rank * local_prompts
        batch = stream[first : first + local_prompts]
        repeated = [p for p in batch for _ in range(k)]
        seed_now = int(torch.randint(0, 2**62, (loop.world,), generator=g)[loop.rank])
        r = sample(
            policy, tokenizer, batch, max_new_tokens=config.sampling.max_new_tokens, seed=seed_now,
            temperature=temperature, samples_per_prompt=k, with_entropy=True,
        )  # fmt: skip
        t_generate = time.perf_counter() - t0
        ids, attn, mask, P = r.input_ids, r.attention_mask, r.response_mask, r.prompt_length
        score = torch.as_tensor(reward(repeated, r.responses), dtype=torch.float32).to(loop.device)
        learn = score if objective.shape_scores is None else objective.shape_scores(score, mask.sum(1))
        loss_mask = mask
        if objective.keep_groups is not None:  # the groups that teach nothing leave the loss (not the measures)
            kept = objective.keep_groups(learn.view(-1, k)).repeat_interleave(k)
            loss_mask = mask * kept[:, None].to(mask.dtype)
        with torch.no_grad():
            logp_ref, _ = token_logprobs(reference, ids, attn, P, temperature)
        all_scores = loop.accelerator.gather(score)
        if not torch.isfinite(all_scores).all():
            raise TrainingDiverged(name, step, "the reward", float(all_scores[~torch.isfinite(all_scores)][0]))

        def kl_of(logp_old):  # per-sequence k1 KL to the reference, over all processes checked
            kl_seq = kl_estimators(logp_old, logp_ref, mask)["k1"]
            all_kl = loop.accelerator.gather(kl_seq)
            if kl_negative_beyond_noise(all_kl):
                raise TrainingDiverged(name, step, "the KL estimate to the reference (k1, nats)", float(all_kl.mean()))
            if kl_negative_beyond_noise(all_kl, z=2.0):
                loop.warn("negative-kl", NEGATIVE_KL.format(step=step + 1, kl=float(all_kl.mean())))
            return kl_seq, all_kl

        if one_pass:  # the update's single forward pass reads the policy's log-probabilities (before its step)
            adv = objective.advantages(learn.view(-1, k), torch.zeros_like(score).view(-1, k)).flatten()
        else:
            logp_old, entropy = policy_logprobs(policy, r, temperature)  # in float32: the sampler's, no pass
            kl_seq, all_kl = kl_of(logp_old)
            adv = objective.advantages(learn.view(-1, k), kl_seq.view(-1, k)).flatten()
        t_rollout = time.perf_counter() - t0

        # ------------------------------------------------------ update
        t1 = time.perf_counter()
        losses, clipfracs = [], []
        for _ in range(config.epochs):
            order = torch.randperm(len(repeated), generator=g)
            for s in range(0, len(repeated), local_mb):
                i = order[s : s + local_mb]
                logp, h = token_logprobs(policy, ids[i], attn[i], P, temperature, with_entropy=one_pass)
                if one_pass:  # the rollout's order back; the policy has not moved yet, so these are the old ones
                    back = torch.argsort(i)
                    logp_old, entropy = logp.detach()[back], h.detach()[back]
                    kl_seq, all_kl = kl_of(logp_old)
                if objective.loss is not None:
                    loss, m = objective.loss(logp, logp_old[i], adv[i], loss_mask[i], logp_ref[i])
                else:
                    loss, m = clipped_pg_loss(
                        logp, logp_old[i], adv[i], loss_mask[i], config.clip_range,
                        logp_ref=logp_ref[i] if objective.kl_in_loss else None, kl_coef=objective.kl_coef,
                        aggregation=config.loss_aggregation,
                    )  # fmt: skip
                loop.check_finite(loss, step, "the policy-gradient loss")
                loop.optimizer_step(loss, optimizer, policy.parameters(), config.optimizer)
                losses.append(loss.detach())
                clipfracs.append(m["clipfrac"])
        t_update = time.perf_counter() - t1

        # ------------------------------------------------------ metrics
        row = {
            names.STEP: step + 1,
            names.EPISODES: (step + 1) * config.prompts_per_step * k,
            names.SCORE: float(all_scores.mean()),
            names.KL: float(all_kl.mean()),
            names.KL_COEF: objective.kl_coef,
            names.ENTROPY: loop.mean(masked_mean(entropy, mask, dim=1)),
            "pg/loss": loop.mean(torch.stack(losses)),
            "pg/clipfrac": loop.mean(torch.stack(clipfracs)),
            "pg/advantage_std": float(loop.accelerator.gather(adv).std()),
            names.TIME_ROLLOUT: t_rollout,
            names.TIME_GENERATE: t_generate,
            names.TIME_UPDATE: t_update,
            names.TOKENS: int(loop.accelerator.gather(mask.sum(1)).sum()),
        }
        golds = gold(repeated, r.responses) if gold is not None else None
        loop.add_gold(row, score, golds)
        loop.log_rollout_samples(step + 1, config.run, batch, r.responses, score, golds, stride=k)
        loop.log(row, score=f"{row[names.SCORE]:.2f}", kl=f"{row[names.KL]:.2f}")
        loop.checkpoint(
            step + 1, config.steps, config.run.checkpoint_every, {"step": step + 1, "generator": g.get_state()},
            policy=policy, optimizer=optimizer,
        )  # fmt: skip
    return loop.result(policy, tokenizer, {"steps": config.steps, "final": loop.history[-1] if loop.history else {}})
