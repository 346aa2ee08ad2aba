"""PPO with a KL penalty to the reference policy (Ziegler et al. 2019; Stiennon et al. 2020).

Objective, per sampled continuation y of prompt x (eq. 2 of Ziegler et al.):

    R(x, y) = r(x, y) - beta * log(pi(y | x) / rho(y | x))

paid per token: every token costs beta * (log pi - log rho), and the reward r (a learned
reward model, an ensemble, the gold scorer or a rule) arrives at the last token. Advantages
come from GAE over the response tokens with a value function initialised from the reward
model; the policy and value take a few epochs of clipped PPO minibatch updates on each
rollout. beta is fixed or adapted to a KL target (``rlhflab.methods.kl_control``).

One step = rollout -> rewards and advantages -> update. Everything runs under
``accelerate launch`` / ``torchrun`` (each process samples its share of the prompts), and a
checkpoint every ``checkpoint_every`` steps makes ``--resume`` continue exactly where the
run stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from rlhflab.rollout import distributed
from rlhflab.run.checkpoint import resume_or_start, save_checkpoint, save_policy
from rlhflab.config import check
from rlhflab.errors import RlhflabError, TrainingDiverged
from rlhflab.feedback.simulated import prompt_stream
from rlhflab.methods.kl_control import AdaptiveKLController, FixedKLController
from rlhflab.losses import (
    explained_variance,
    gae,
    kl_estimators,
    kl_penalized_rewards,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    whiten,
)
from rlhflab.rollout.models import (
    check_fits,
    disable_dropout,
    forward_inputs,
    load_policy,
    load_scalar_model,
    sample,
    token_logprobs,
)
from rlhflab.run.rundir import RunDir, append_jsonl

RewardFn = Callable[[Sequence[str], Sequence[str]], torch.Tensor | list]


@dataclass(frozen=True)
class PPOConfig:
    steps: int = 60
    """PPO iterations, each one rollout and its update epochs."""
    batch_size: int = 32
    """Prompts per rollout, over all processes."""
    minibatch_size: int = 16
    """Rollouts per gradient step, over all processes."""
    ppo_epochs: int = 2
    """Passes over each rollout batch."""
    lr: float = 1e-4
    """Adam learning rate of policy and value function."""
    max_new_tokens: int = 24
    """Length limit of each continuation, in tokens."""
    temperature: float = 0.7
    """Sampling temperature (0.7 as in lm-human-preferences); log-probabilities and KL use the same temperature."""
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
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""
    value_init: str = "reward"
    """Initialise the value function from the reward model ('reward', when it is one) or the policy ('policy')."""
    checkpoint_every: int = 20
    """Save a checkpoint for --resume every this many steps."""
    sample_every: int = 3
    """Write a few rollouts to train_samples.jsonl every this many steps (the report animates them)."""
    seed: int = 0
    """Seed of prompt order and sampling."""

    def __post_init__(self) -> None:
        check(self.steps >= 1, "steps", self.steps, ">= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(
            1 <= self.minibatch_size <= self.batch_size and self.batch_size % self.minibatch_size == 0,
            "minibatch_size",
            self.minibatch_size,
            f"a divisor of --batch-size {self.batch_size}",
        )
        check(self.ppo_epochs >= 1, "ppo_epochs", self.ppo_epochs, ">= 1")
        check(self.lr > 0, "lr", self.lr, "> 0")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, ">= 1")
        check(self.temperature > 0, "temperature", self.temperature, "> 0")
        check(self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
        check(self.kl_target > 0, "kl_target", self.kl_target, "> 0")
        check(self.kl_horizon >= 1, "kl_horizon", self.kl_horizon, ">= 1")
        check(0 < self.gamma <= 1, "gamma", self.gamma, "in (0, 1]")
        check(0 <= self.lam <= 1, "lam", self.lam, "in [0, 1]")
        check(self.clip_range > 0, "clip_range", self.clip_range, "> 0")
        check(self.clip_range_value > 0, "clip_range_value", self.clip_range_value, "> 0")
        check(self.vf_coef >= 0, "vf_coef", self.vf_coef, ">= 0")
        check(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "> 0")
        check(self.value_init in ("reward", "policy"), "value_init", self.value_init, "'reward' or 'policy'")
        check(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, ">= 1")
        check(self.sample_every >= 1, "sample_every", self.sample_every, ">= 1")


def kl_negative_beyond_noise(kl_per_sequence: torch.Tensor, z: float = 4.0, tol: float = 1e-3) -> bool:
    """True when the k1 estimate (unbiased, its true value >= 0) is below 0 by more than z standard errors.

    That happens when the sampled tokens do not come from the policy whose log-probabilities
    are used (e.g. a generation setting that truncates the distribution), not by chance.
    """
    n = kl_per_sequence.numel()
    mean = kl_per_sequence.mean()
    stderr = kl_per_sequence.std() / n**0.5 if n > 1 else torch.tensor(0.0)
    return bool(mean < -(z * stderr + tol))


def train_ppo(
    model_name: str,
    reward: RewardFn,
    prompts: Sequence[str],
    run: RunDir,
    config: PPOConfig,
    value_model_name: str | None = None,
    gold: Callable[[Sequence[str], Sequence[str]], list[float]] | None = None,
    pad_token: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Optimise the policy ``model_name`` against ``reward`` on ``prompts``; write ``run/policy``.

    ``value_model_name`` is a reward-model folder to initialise the value function from
    (otherwise it starts from the policy's backbone with a new head). ``gold``, when given,
    is logged next to the proxy reward at every step.
    """
    accelerator = distributed.accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    run.path.mkdir(parents=True, exist_ok=True)
    if config.batch_size % world or config.minibatch_size % world:
        raise RlhflabError(
            f"--batch-size {config.batch_size} and --minibatch-size {config.minibatch_size} must be "
            f"divisible by the number of processes ({world})"
        )
    local_batch, local_mb = config.batch_size // world, config.minibatch_size // world

    # ---------------------------------------------------------- models
    policy, tokenizer = load_policy(model_name, pad_token)
    reference, _ = load_policy(model_name, pad_token)
    check_fits(policy, tokenizer, list(prompts), config.max_new_tokens)
    value_source = value_model_name if (config.value_init == "reward" and value_model_name) else model_name
    torch.manual_seed(config.seed)  # the value head, when new
    value = load_scalar_model(value_source, tokenizer.pad_token_id)
    for m in (policy, reference, value):
        disable_dropout(m)
    reference.to(accelerator.device).eval().requires_grad_(False)
    params = list(policy.parameters()) + list(value.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, eps=1e-5)
    policy, value, optimizer = accelerator.prepare(policy, value, optimizer)
    kl_ctl = (
        AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon)
        if config.adaptive_kl
        else FixedKLController(config.kl_coef)
    )

    # ---------------------------------------------------------- data and state
    g = torch.Generator().manual_seed(config.seed)
    stream = prompt_stream(list(prompts), config.steps * config.batch_size, torch.Generator().manual_seed(config.seed))
    metrics_path, samples_path = run / "metrics.jsonl", run / "train_samples.jsonl"
    start = 0
    state = resume_or_start(accelerator, run, "ppo", resume, (metrics_path, samples_path))
    if state is not None:
        start = state["step"]
        g.set_state(state["generator"])
        kl_ctl.load_state_dict(state["kl_ctl"])

    bar = tqdm(
        total=config.steps,
        initial=start,
        desc="ppo",
        unit="step",
        disable=not (progress and accelerator.is_main_process),
    )
    last: dict = {}
    for step in range(start, config.steps):
        # ------------------------------------------------------ rollout
        t0 = time.perf_counter()
        global_batch = stream[step * config.batch_size : (step + 1) * config.batch_size]
        batch = global_batch[rank * local_batch : (rank + 1) * local_batch]
        seeds = torch.randint(0, 2**62, (world,), generator=g).tolist()
        rollout = sample(
            policy,
            tokenizer,
            batch,
            max_new_tokens=config.max_new_tokens,
            seed=seeds[rank],
            temperature=config.temperature,
        )
        score = torch.as_tensor(reward(batch, rollout.responses), dtype=torch.float32).to(accelerator.device)
        ids, attn, mask, P = rollout.input_ids, rollout.attention_mask, rollout.response_mask, rollout.prompt_length
        with torch.no_grad():
            logp_old, entropy = token_logprobs(policy, ids, attn, P, config.temperature, with_entropy=True)
            logp_ref, _ = token_logprobs(reference, ids, attn, P, config.temperature)
            values_old = value(**forward_inputs(value, ids, attn))[:, P - 1 : -1] * mask
        t_rollout = time.perf_counter() - t0

        # ------------------------------------------------------ advantages
        kl = kl_estimators(logp_old, logp_ref, mask)
        kl_seq, kl_k3, all_scores = (accelerator.gather(t) for t in (kl["k1"], kl["k3"], score))
        if not torch.isfinite(all_scores).all():
            raise TrainingDiverged("ppo", step, "the reward", float(all_scores[~torch.isfinite(all_scores)][0]))
        if kl_negative_beyond_noise(kl_seq):
            raise TrainingDiverged("ppo", step, "the KL estimate to the reference (k1, nats)", float(kl_seq.mean()))
        rewards = kl_penalized_rewards(score, logp_old, logp_ref, mask, kl_ctl.value)
        advantages, returns = gae(rewards, values_old, mask, config.gamma, config.lam)
        advantages = whiten(advantages, mask)

        # ------------------------------------------------------ update
        t1 = time.perf_counter()
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "vf_loss", "clipfrac", "approxkl", "vf_clipfrac")}
        for _ in range(config.ppo_epochs):
            order = torch.randperm(local_batch, generator=g)
            for s in range(0, local_batch, local_mb):
                i = order[s : s + local_mb]
                logp, _ = token_logprobs(policy, ids[i], attn[i], P, config.temperature)
                v = value(**forward_inputs(value, ids[i], attn[i]))[:, P - 1 : -1]
                pg_loss, pg = ppo_policy_loss(logp, logp_old[i], advantages[i], mask[i], config.clip_range)
                vf_loss, vf = ppo_value_loss(v, values_old[i], returns[i], mask[i], config.clip_range_value)
                loss = pg_loss + config.vf_coef * vf_loss
                if not torch.isfinite(accelerator.gather(loss.detach()[None])).all():  # on every process at once
                    quantity = (
                        "the policy loss"
                        if not torch.isfinite(pg_loss)
                        else "the value loss"
                        if not torch.isfinite(vf_loss)
                        else "the loss of another process"
                    )
                    raise TrainingDiverged("ppo", step, quantity, float(loss.detach()))
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                stats["pg_loss"].append(float(pg_loss.detach()))
                stats["vf_loss"].append(float(vf_loss.detach()))
                stats["clipfrac"].append(pg["clipfrac"])
                stats["approxkl"].append(pg["approxkl"])
                stats["vf_clipfrac"].append(vf["clipfrac"])
        t_update = time.perf_counter() - t1

        # ------------------------------------------------------ metrics
        n_tokens = accelerator.gather(mask.sum(1))
        beta = kl_ctl.value
        kl_ctl.update(float(kl_seq.mean()), config.batch_size)
        row = {
            "step": step + 1,
            "episodes": (step + 1) * config.batch_size,
            "objective/score": float(all_scores.mean()),
            "objective/kl": float(kl_seq.mean()),
            "objective/kl_k3": float(kl_k3.mean()),
            "objective/kl_coef": beta,
            "objective/score_total": float((all_scores - beta * kl_seq).mean()),
            "objective/entropy": float(accelerator.gather(masked_mean(entropy, mask, dim=1)).mean()),
            "ppo/policy/loss": sum(stats["pg_loss"]) / len(stats["pg_loss"]),
            "ppo/policy/clipfrac": sum(stats["clipfrac"]) / len(stats["clipfrac"]),
            "ppo/policy/approxkl": sum(stats["approxkl"]) / len(stats["approxkl"]),
            "ppo/val/loss": sum(stats["vf_loss"]) / len(stats["vf_loss"]),
            "ppo/val/clipfrac": sum(stats["vf_clipfrac"]) / len(stats["vf_clipfrac"]),
            "ppo/val/var_explained": explained_variance(values_old, returns, mask),
            "ppo/returns/mean": float(masked_mean(returns, mask)),
            "response/length": float(n_tokens.float().mean()),
            "time/rollout": t_rollout,
            "time/update": t_update,
            "tokens": int(n_tokens.sum()),
            "tokens_padded": int(accelerator.gather(torch.tensor([ids.numel()], device=ids.device)).sum()),
        }
        gold_local = gold(batch, rollout.responses) if gold is not None else []
        if gold is not None:
            gathered = accelerator.gather(torch.tensor(gold_local, dtype=torch.float32, device=accelerator.device))
            row["objective/gold"] = float(gathered.mean())
        if accelerator.is_main_process:
            append_jsonl(metrics_path, row)
            if step == 0 or (step + 1) % config.sample_every == 0:
                for i in range(min(3, len(batch))):
                    append_jsonl(
                        samples_path,
                        {
                            "step": step + 1,
                            "prompt": batch[i],
                            "response": rollout.responses[i],
                            "score": float(score[i]),
                            **({"gold": gold_local[i]} if gold is not None else {}),
                        },
                    )
        last = row
        bar.update(1)
        bar.set_postfix(
            score=f"{row['objective/score']:.2f}",
            kl=f"{row['objective/kl']:.2f}",
            **({"gold": f"{row['objective/gold']:.2f}"} if "objective/gold" in row else {}),
        )
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            save_checkpoint(
                accelerator,
                run,
                "ppo",
                step + 1,
                {"step": step + 1, "generator": g.get_state(), "kl_ctl": kl_ctl.state_dict()},
                metrics_path,
            )
    bar.close()

    # ---------------------------------------------------------- save the policy
    save_policy(accelerator, run, policy, tokenizer)
    return {"steps": config.steps, "final": last, "kl_coef": kl_ctl.value, "processes": world}
