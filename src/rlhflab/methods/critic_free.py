"""The loop shared by the critic-free policy gradients (RLOO, GRPO): no value function.

Each step samples k continuations for each of a few prompts, scores them with any reward
(a reward model, the gold scorer, a rule), turns each prompt's k scores into advantages
relative to each other (the method's own function), and takes ``epochs`` passes of clipped
policy-gradient minibatches over them (with one pass the clip is inactive: REINFORCE with a
baseline). The KL to the reference enters where the method puts it: in the reward (RLOO) or
as a per-token penalty in the loss (GRPO).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from rlhflab.rollout import distributed
from rlhflab.run.checkpoint import resume_or_start, save_checkpoint, save_policy
from rlhflab.config import check
from rlhflab.errors import RlhflabError, TrainingDiverged
from rlhflab.feedback.simulated import prompt_stream
from rlhflab.losses import clipped_pg_loss, kl_estimators, masked_mean
from rlhflab.methods.ppo import kl_negative_beyond_noise
from rlhflab.rollout.models import check_fits, disable_dropout, load_policy, sample, token_logprobs
from rlhflab.run.rundir import RunDir, append_jsonl

Advantages = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
"""(scores [P, k], per-sequence KL [P, k], kl_coef) -> advantages [P, k]."""


@dataclass(frozen=True)
class CriticFreeConfig:
    steps: int = 60
    """Policy-gradient steps, each one rollout and its update passes."""
    prompts_per_step: int = 8
    """Prompts per rollout, over all processes."""
    samples_per_prompt: int = 4
    """Continuations per prompt (k >= 2): each is compared with the others of its prompt."""
    epochs: int = 1
    """Passes over each rollout (1 = REINFORCE with a baseline; more use the PPO clip)."""
    minibatch_size: int = 16
    """Sequences per gradient step, over all processes."""
    lr: float = 1e-4
    """Adam learning rate."""
    kl_coef: float = 0.05
    """KL penalty to the reference policy (RLOO: in the reward; GRPO: per token in the loss)."""
    clip_range: float = 0.2
    """Ratio clip when epochs > 1."""
    max_new_tokens: int = 24
    """Length limit of each continuation, in tokens."""
    temperature: float = 0.7
    """Sampling temperature (log-probabilities use the same)."""
    checkpoint_every: int = 20
    """Save a checkpoint for --resume every this many steps."""
    sample_every: int = 3
    """Write a few rollouts to train_samples.jsonl every this many steps."""
    seed: int = 0
    """Seed of prompt order and sampling."""

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
        check(self.lr > 0, "lr", self.lr, "> 0")
        check(self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
        check(self.clip_range > 0, "clip_range", self.clip_range, "> 0")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, ">= 1")
        check(self.temperature > 0, "temperature", self.temperature, "> 0")
        check(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, ">= 1")
        check(self.sample_every >= 1, "sample_every", self.sample_every, ">= 1")


def train_critic_free(
    model_name,
    reward,
    prompts,
    run: RunDir,
    config: CriticFreeConfig,
    *,
    stage: str,
    advantages: Advantages,
    kl_in_loss: bool,
    gold=None,
    pad_token=None,
    resume=False,
    progress=True,
) -> dict:
    accelerator = distributed.accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    run.path.mkdir(parents=True, exist_ok=True)
    k = config.samples_per_prompt
    if config.prompts_per_step % world or (config.minibatch_size % world):
        raise RlhflabError(
            f"--prompts-per-step {config.prompts_per_step} and --minibatch-size "
            f"{config.minibatch_size} must be divisible by the number of processes ({world})"
        )
    local_prompts, local_mb = config.prompts_per_step // world, config.minibatch_size // world

    # ---------------------------------------------------------- models and state
    policy, tokenizer = load_policy(model_name, pad_token)
    reference, _ = load_policy(model_name, pad_token)
    check_fits(policy, tokenizer, list(prompts), config.max_new_tokens)
    for m in (policy, reference):
        disable_dropout(m)
    reference.to(accelerator.device).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, eps=1e-5)
    policy, optimizer = accelerator.prepare(policy, optimizer)
    g = torch.Generator().manual_seed(config.seed)
    stream = prompt_stream(
        list(prompts), config.steps * config.prompts_per_step, torch.Generator().manual_seed(config.seed)
    )
    metrics_path, samples_path = run / "metrics.jsonl", run / "train_samples.jsonl"
    state = resume_or_start(accelerator, run, stage, resume, (metrics_path, samples_path))
    start = 0
    if state is not None:
        start = state["step"]
        g.set_state(state["generator"])

    bar = tqdm(
        total=config.steps,
        initial=start,
        desc=stage,
        unit="step",
        disable=not (progress and accelerator.is_main_process),
    )
    last: dict = {}
    for step in range(start, config.steps):
        # ------------------------------------------------------ rollout: k samples of each prompt
        t0 = time.perf_counter()
        first = step * config.prompts_per_step + rank * local_prompts
        batch = stream[first : first + local_prompts]
        repeated = [p for p in batch for _ in range(k)]
        seed = int(torch.randint(0, 2**62, (world,), generator=g)[rank])
        r = sample(
            policy, tokenizer, repeated, max_new_tokens=config.max_new_tokens, seed=seed, temperature=config.temperature
        )
        ids, attn, mask, P = r.input_ids, r.attention_mask, r.response_mask, r.prompt_length
        score = torch.as_tensor(reward(repeated, r.responses), dtype=torch.float32).to(accelerator.device)
        with torch.no_grad():
            logp_old, entropy = token_logprobs(policy, ids, attn, P, config.temperature, with_entropy=True)
            logp_ref, _ = token_logprobs(reference, ids, attn, P, config.temperature)
        kl_seq = kl_estimators(logp_old, logp_ref, mask)["k1"]
        all_scores, all_kl = accelerator.gather(score), accelerator.gather(kl_seq)
        if not torch.isfinite(all_scores).all():
            raise TrainingDiverged(stage, step, "the reward", float(all_scores[~torch.isfinite(all_scores)][0]))
        if kl_negative_beyond_noise(all_kl):
            raise TrainingDiverged(stage, step, "the KL estimate to the reference (k1, nats)", float(all_kl.mean()))
        adv = advantages(score.view(-1, k), kl_seq.view(-1, k), config.kl_coef).flatten()
        t_rollout = time.perf_counter() - t0

        # ------------------------------------------------------ update
        t1 = time.perf_counter()
        losses, clipfracs = [], []
        for _ in range(config.epochs):
            order = torch.randperm(len(repeated), generator=g)
            for s in range(0, len(repeated), local_mb):
                i = order[s : s + local_mb]
                logp, _ = token_logprobs(policy, ids[i], attn[i], P, config.temperature)
                loss, m = clipped_pg_loss(
                    logp,
                    logp_old[i],
                    adv[i],
                    mask[i],
                    config.clip_range,
                    logp_ref[i] if kl_in_loss else None,
                    config.kl_coef,
                )
                if not torch.isfinite(accelerator.gather(loss.detach()[None])).all():
                    raise TrainingDiverged(stage, step, "the policy-gradient loss", float(loss.detach()))
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(policy.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                clipfracs.append(m["clipfrac"])
        t_update = time.perf_counter() - t1

        # ------------------------------------------------------ metrics
        last = {
            "step": step + 1,
            "episodes": (step + 1) * config.prompts_per_step * k,
            "objective/score": float(all_scores.mean()),
            "objective/kl": float(all_kl.mean()),
            "objective/kl_coef": config.kl_coef,
            "objective/entropy": float(accelerator.gather(masked_mean(entropy, mask, dim=1)).mean()),
            "pg/loss": sum(losses) / len(losses),
            "pg/clipfrac": sum(clipfracs) / len(clipfracs),
            "pg/advantage_std": float(adv.std()),
            "time/rollout": t_rollout,
            "time/update": t_update,
            "tokens": int(accelerator.gather(mask.sum(1)).sum()),
        }
        golds = gold(repeated, r.responses) if gold is not None else None
        if golds is not None:
            last["objective/gold"] = float(accelerator.gather(torch.tensor(golds, device=accelerator.device)).mean())
        if accelerator.is_main_process:
            append_jsonl(metrics_path, last)
            if step == 0 or (step + 1) % config.sample_every == 0:
                for i in range(min(3, len(batch))):
                    append_jsonl(
                        samples_path,
                        {
                            "step": step + 1,
                            "prompt": batch[i],
                            "response": r.responses[i * k],
                            "score": float(score[i * k]),
                            **({"gold": golds[i * k]} if golds is not None else {}),
                        },
                    )
        bar.update(1)
        bar.set_postfix(score=f"{last['objective/score']:.2f}", kl=f"{last['objective/kl']:.2f}")
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
            save_checkpoint(
                accelerator, run, stage, step + 1, {"step": step + 1, "generator": g.get_state()}, metrics_path
            )
    bar.close()
    save_policy(accelerator, run, policy, tokenizer)
    return {"steps": config.steps, "final": last, "processes": world}
