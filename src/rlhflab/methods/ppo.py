"""PPO with a KL penalty to the reference policy (Ziegler et al. 2019; Stiennon et al. 2020).

Objective, per sampled continuation y of prompt x (eq. 2 of Ziegler et al.):

    R(x, y) = r(x, y) - beta * log(pi(y | x) / rho(y | x))

paid per token: every token costs beta * (log pi - log rho), and the reward r (a learned
reward model, an ensemble, the gold scorer or a rule) arrives at the last token. Advantages
come from GAE over the response tokens with a value function initialised from the reward
model; the policy and value take a few epochs of clipped PPO minibatch updates on each
rollout. beta is fixed or adapted to a KL target (``rlhflab.methods.kl_control``).

One step = rollout -> rewards and advantages -> update. Everything runs under
``accelerate launch`` / ``torchrun`` (each process samples its share of the prompts); with
checkpoint hooks, ``--resume`` continues exactly where the run stopped.
"""

from __future__ import annotations

import time
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
from rlhflab.core.errors import TrainingDiverged
from rlhflab.core.estimators import (
    NEGATIVE_KL,
    explained_variance,
    gae,
    kl_estimators,
    kl_negative_beyond_noise,
    kl_penalized_rewards,
    masked_mean,
    whiten,
)
from rlhflab.core.loop import Hooks, MethodResult, TrainLoop, make_optimizer
from rlhflab.core.losses import ppo_policy_loss, ppo_value_loss
from rlhflab.core.scores import RewardFn
from rlhflab.core.task import GoldFn
from rlhflab.methods.kl_control import AdaptiveKLController, FixedKLController
from rlhflab.methods.registry import Method, MethodInputs, policy_and_reference, register
from rlhflab.models.batching import prompt_stream
from rlhflab.models.loading import ScalarHeadModel, check_fits, disable_dropout, forward_inputs
from rlhflab.models.precision import ModelConfig, default_reference, model_field, trainable_value
from rlhflab.models.sampling import policy_logprobs, sample, token_logprobs


@dataclass(frozen=True)
class PPOConfig:
    steps: int = 60
    """PPO iterations, each one rollout and its update epochs."""
    prompts_per_step: int = 32
    """Prompts per rollout, over all processes."""
    minibatch_size: int = 16
    """Sequences (a prompt and one continuation) per gradient step, over all processes."""
    epochs: int = 2
    """Passes over each rollout batch."""
    kl_coef: float = 0.05
    """beta: the KL penalty per nat (the starting value when adaptive)."""
    adaptive_kl: bool = False
    """Adapt beta towards --kl-target (Ziegler et al. 2019) instead of keeping it fixed."""
    kl_target: float = 6.0
    """Target KL to the reference, in nats per continuation, for the adaptive controller."""
    kl_horizon: int = 10000
    """Horizon (in episodes) of the adaptive controller."""
    gamma: float = 1.0
    """Discount over response tokens."""
    lam: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO ratio clip epsilon."""
    clip_range_value: float = 0.2
    """Value-function clip."""
    vf_coef: float = 0.1
    """Weight of the value loss in the joint loss."""
    value_init: str = "reward"
    """Initialise the value function from the reward model ('reward', when it is one and reads the policy's
    vocabulary; the policy otherwise) or the policy ('policy')."""
    sampling: SamplingConfig = sampling_field()
    """Rollout length and temperature."""
    optimizer: OptimizerConfig = optimizer_field(lr=1e-4, adam_eps=1e-5)
    """One AdamW over policy and value function."""
    run: RunConfig = run_field(checkpoint_every=20, sample_every=3)
    """Seed, checkpoint and sample cadence."""
    model_options: ModelConfig = model_field()
    """Precision, gradient checkpointing and LoRA of the trained policy."""

    def __post_init__(self) -> None:
        check(self.steps >= 1, "steps", self.steps, ">= 1")
        check(self.prompts_per_step >= 1, "prompts_per_step", self.prompts_per_step, ">= 1")
        check(
            1 <= self.minibatch_size <= self.prompts_per_step and self.prompts_per_step % self.minibatch_size == 0,
            "minibatch_size",
            self.minibatch_size,
            f"a divisor of --prompts-per-step {self.prompts_per_step}",
        )
        check(self.epochs >= 1, "epochs", self.epochs, ">= 1")
        check(self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
        check(self.kl_target > 0, "kl_target", self.kl_target, "> 0")
        check(self.kl_horizon >= 1, "kl_horizon", self.kl_horizon, ">= 1")
        check(0 < self.gamma <= 1, "gamma", self.gamma, "in (0, 1]")
        check(0 <= self.lam <= 1, "lam", self.lam, "in [0, 1]")
        check(self.clip_range > 0, "clip_range", self.clip_range, "> 0")
        check(self.clip_range_value > 0, "clip_range_value", self.clip_range_value, "> 0")
        check(self.vf_coef >= 0, "vf_coef", self.vf_coef, ">= 0")
        check(self.value_init in ("reward", "policy"), "value_init", self.value_init, "'reward' or 'policy'")


def train_ppo(
    policy: nn.Module,
    tokenizer,
    reward: RewardFn,
    prompts: Sequence[str],
    config: PPOConfig,
    *,
    reference: nn.Module | None = None,
    value: ScalarHeadModel | None = None,
    gold: GoldFn | None = None,
    hooks: Hooks | None = None,
) -> MethodResult:
    """Optimise ``policy`` against ``reward`` on ``prompts`` under a KL penalty to ``reference``.

    ``reference`` defaults to a frozen copy of ``policy``; ``value`` (a scalar-head model, e.g.
    loaded from the reward model's folder) defaults to the policy's backbone with a new head.
    ``gold``, when given, is logged next to the reward at every step.
    """
    loop = TrainLoop("ppo", hooks)
    loop.require_divisible(prompts_per_step=config.prompts_per_step, minibatch_size=config.minibatch_size)
    local_batch, local_mb = config.prompts_per_step // loop.world, config.minibatch_size // loop.world
    temperature, seed = config.sampling.temperature, config.run.seed

    # ---------------------------------------------------------- models
    check_fits(policy, tokenizer, list(prompts), config.sampling.max_new_tokens)
    reference = reference if reference is not None else default_reference(policy)
    if value is None:
        value = ScalarHeadModel.from_causal_lm(policy, seed)
    for m in (policy, reference, value):
        disable_dropout(m)
    reference.to(loop.device).eval().requires_grad_(False)
    params = list(policy.parameters()) + list(value.parameters())
    optimizer = make_optimizer(params, config.optimizer)
    policy, value, optimizer = loop.accelerator.prepare(policy, value, optimizer)
    kl_ctl = (
        AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
        if config.adaptive_kl
        else FixedKLController(config.kl_coef)
    )

    # ---------------------------------------------------------- data and state
    g = torch.Generator().manual_seed(seed)
    stream = prompt_stream(list(prompts), config.steps * config.prompts_per_step, torch.Generator().manual_seed(seed))
    start = 0
    state = loop.restore(policy=policy, value=value, optimizer=optimizer)
    if state is not None:
        start = state["step"]
        g.set_state(state["generator"])
        kl_ctl.load_state_dict(state["kl_ctl"])

    for step in loop.steps(start, config.steps):
        # ------------------------------------------------------ rollout
        t0 = time.perf_counter()
        global_batch = stream[step * config.prompts_per_step : (step + 1) * config.prompts_per_step]
        batch = global_batch[loop.rank * local_batch : (loop.rank + 1) * local_batch]
        seeds = torch.randint(0, 2**62, (loop.world,), generator=g).tolist()
        rollout = sample(
            policy,
            tokenizer,
            batch,
            max_new_tokens=config.sampling.max_new_tokens,
            seed=seeds[loop.rank],
            temperature=temperature,
            with_entropy=True,
        )
        t_generate = time.perf_counter() - t0
        score = torch.as_tensor(reward(batch, rollout.responses), dtype=torch.float32).to(loop.device)
        ids, attn, mask, P = rollout.input_ids, rollout.attention_mask, rollout.response_mask, rollout.prompt_length
        logp_old, entropy = policy_logprobs(policy, rollout, temperature)  # in float32: the sampler's, no pass
        with torch.no_grad():
            logp_ref, _ = token_logprobs(reference, ids, attn, P, temperature)
            values_old = value(**forward_inputs(value, ids, attn))[:, P - 1 : -1] * mask
        t_rollout = time.perf_counter() - t0

        # ------------------------------------------------------ advantages
        kl = kl_estimators(logp_old, logp_ref, mask)
        kl_seq, kl_k3, all_scores = (loop.accelerator.gather(t) for t in (kl["k1"], kl["k3"], score))
        if not torch.isfinite(all_scores).all():
            raise TrainingDiverged("ppo", step, "the reward", float(all_scores[~torch.isfinite(all_scores)][0]))
        if kl_negative_beyond_noise(kl_seq):
            raise TrainingDiverged("ppo", step, "the KL estimate to the reference (k1, nats)", float(kl_seq.mean()))
        if kl_negative_beyond_noise(kl_seq, z=2.0):
            loop.warn("negative-kl", NEGATIVE_KL.format(step=step + 1, kl=float(kl_seq.mean())))
        rewards = kl_penalized_rewards(score, logp_old, logp_ref, mask, kl_ctl.value)
        advantages, returns = gae(rewards, values_old, mask, gamma=config.gamma, lam=config.lam)
        advantages = whiten(advantages, mask)

        # ------------------------------------------------------ update
        t1 = time.perf_counter()
        stats: dict[str, list[torch.Tensor]] = {k: [] for k in ("pg", "vf", "clipfrac", "approxkl", "vf_clipfrac")}
        for _ in range(config.epochs):
            order = torch.randperm(local_batch, generator=g)
            for s in range(0, local_batch, local_mb):
                i = order[s : s + local_mb]
                logp, _ = token_logprobs(policy, ids[i], attn[i], P, temperature)
                v = value(**forward_inputs(value, ids[i], attn[i]))[:, P - 1 : -1]
                pg_loss, pg = ppo_policy_loss(logp, logp_old[i], advantages[i], mask[i], config.clip_range)
                vf_loss, vf = ppo_value_loss(v, values_old[i], returns[i], mask[i], config.clip_range_value)
                loop.check_finite(pg_loss, step, "the policy loss")
                loop.check_finite(vf_loss, step, "the value loss")
                loop.optimizer_step(pg_loss + config.vf_coef * vf_loss, optimizer, params, config.optimizer)
                for key, x in (("pg", pg_loss), ("vf", vf_loss), ("clipfrac", pg["clipfrac"]),
                               ("approxkl", pg["approxkl"]), ("vf_clipfrac", vf["clipfrac"])):  # fmt: skip
                    stats[key].append(x.detach())
        t_update = time.perf_counter() - t1

        # ------------------------------------------------------ metrics (every one over all processes)
        gather = loop.accelerator.gather
        n_tokens = gather(mask.sum(1))
        beta = kl_ctl.value
        kl_ctl.update(float(kl_seq.mean()), config.prompts_per_step)
        row = {
            names.STEP: step + 1,
            names.EPISODES: (step + 1) * config.prompts_per_step,
            names.SCORE: float(all_scores.mean()),
            names.KL: float(kl_seq.mean()),
            names.KL_K3: float(kl_k3.mean()),
            names.KL_COEF: beta,
            names.SCORE_TOTAL: float((all_scores - beta * kl_seq).mean()),
            names.ENTROPY: loop.mean(masked_mean(entropy, mask, dim=1)),
            "ppo/policy/loss": loop.mean(torch.stack(stats["pg"])),
            "ppo/policy/clipfrac": loop.mean(torch.stack(stats["clipfrac"])),
            "ppo/policy/approxkl": loop.mean(torch.stack(stats["approxkl"])),
            "ppo/val/loss": loop.mean(torch.stack(stats["vf"])),
            "ppo/val/clipfrac": loop.mean(torch.stack(stats["vf_clipfrac"])),
            "ppo/val/var_explained": float(explained_variance(gather(values_old), gather(returns), gather(mask))),
            "ppo/returns/mean": float(masked_mean(gather(returns), gather(mask))),
            names.RESPONSE_LENGTH: float(n_tokens.float().mean()),
            names.TIME_ROLLOUT: t_rollout,
            names.TIME_GENERATE: t_generate,
            names.TIME_UPDATE: t_update,
            names.TOKENS: int(n_tokens.sum()),
            "tokens_padded": int(gather(torch.tensor([ids.numel()], device=ids.device)).sum()),
        }
        golds = gold(batch, rollout.responses) if gold is not None else None
        loop.add_gold(row, score, golds)
        loop.log_rollout_samples(step + 1, config.run, batch, rollout.responses, score, golds)
        loop.log(
            row,
            score=f"{row[names.SCORE]:.2f}",
            kl=f"{row[names.KL]:.2f}",
            **({"gold": f"{row[names.GOLD]:.2f}"} if names.GOLD in row else {}),
        )
        loop.checkpoint(
            step + 1,
            config.steps,
            config.run.checkpoint_every,
            {"step": step + 1, "generator": g.get_state(), "kl_ctl": kl_ctl.state_dict()},
            policy=policy,
            value=value,
            optimizer=optimizer,
        )

    return loop.result(
        policy,
        tokenizer,
        {
            "steps": config.steps,
            "final": loop.history[-1] if loop.history else {},
            "kl_coef": kl_ctl.value,
        },  # fmt: skip
    )


def optimize_ppo(x: MethodInputs, config: PPOConfig, hooks: Hooks) -> MethodResult:
    """PPO from loaded inputs: the value function starts from the reward model when ``value_init`` is 'reward'
    and it reads the policy's vocabulary (``x.value_source()``), else from the base
    policy; with LoRA its frozen backbone loads in --dtype, trained weights in float32."""
    policy, tokenizer, reference = policy_and_reference(x, config)
    source = (x.value_source() if config.value_init == "reward" else None) or x.model
    torch.manual_seed(config.run.seed)  # the value head, when new
    options = config.model_options
    value = x.load_scalar(source, tokenizer.pad_token_id, options.torch_dtype if options.lora else torch.float32)
    value = trainable_value(value, options)
    return train_ppo(
        policy, tokenizer, x.reward, x.prompts, config, reference=reference, value=value, gold=x.gold, hooks=hooks
    )


register(
    Method(
        name="ppo", config=PPOConfig, optimize=optimize_ppo, data="reward", output="policy", kl_knob="kl_coef",
        doc="PPO against a reward with a per-token KL penalty to the base policy -> RUN/policy.",
    )
)  # fmt: skip
