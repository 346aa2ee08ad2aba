"""Reward-ranked fine-tuning (RAFT, Dong et al. 2023; expert iteration; filtered behaviour cloning).

Each round: sample k continuations of each prompt from the current policy, keep the best
``keep_fraction`` of each prompt's samples by reward, and fine-tune on them by maximum
likelihood. No value function, no KL term: the policy moves only as far as imitation of its
own best samples takes it, and the number of rounds and the fraction kept set how far that is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rlhflab.rollout import distributed
from rlhflab.rollout.batching import encode
from rlhflab.run.checkpoint import resume_or_start, save_checkpoint, save_policy
from rlhflab.config import check
from rlhflab.feedback.simulated import prompt_stream
from rlhflab.methods.sft import supervised_pass
from rlhflab.rollout.models import check_fits, disable_dropout, load_policy, sample, token_logprobs, unwrap
from rlhflab.run.rundir import RunDir, append_jsonl


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
    batch_size: int = 16
    """Samples per optimiser step, over all processes."""
    lr: float = 5e-5
    """Peak learning rate of each round's fine-tuning."""
    max_new_tokens: int = 24
    """Length limit of each continuation, in tokens."""
    temperature: float = 0.7
    """Sampling temperature."""
    seed: int = 0
    """Seed of prompt order, sampling and data order."""

    def __post_init__(self) -> None:
        check(self.rounds >= 1, "rounds", self.rounds, ">= 1")
        check(self.prompts_per_round >= 1, "prompts_per_round", self.prompts_per_round, ">= 1")
        check(self.samples_per_prompt >= 1, "samples_per_prompt", self.samples_per_prompt, ">= 1")
        check(0 < self.keep_fraction <= 1, "keep_fraction", self.keep_fraction, "in (0, 1]")
        check(self.epochs > 0, "epochs", self.epochs, "> 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(self.lr > 0, "lr", self.lr, "> 0")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, ">= 1")
        check(self.temperature > 0, "temperature", self.temperature, "> 0")


def top_per_prompt(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """[P, k] scores -> [P, keep] indices of each row's ``keep`` best (highest first)."""
    return scores.topk(keep, dim=1).indices


def train_ranked_sft(
    model_name,
    reward,
    prompts,
    run: RunDir,
    config: RankedSFTConfig,
    gold=None,
    pad_token=None,
    resume=False,
    progress=True,
) -> dict:
    accelerator = distributed.accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    run.path.mkdir(parents=True, exist_ok=True)
    policy, tokenizer = load_policy(model_name, pad_token)
    reference, _ = load_policy(model_name, pad_token)
    check_fits(policy, tokenizer, list(prompts), config.max_new_tokens)
    for m in (policy, reference):
        disable_dropout(m)
    reference.to(accelerator.device).eval()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    policy, optimizer = accelerator.prepare(policy, optimizer)
    g = torch.Generator().manual_seed(config.seed)
    k, per_rank = config.samples_per_prompt, math.ceil(config.prompts_per_round / world)
    keep = max(1, round(k * config.keep_fraction))
    stream = prompt_stream(list(prompts), config.rounds * per_rank * world, torch.Generator().manual_seed(config.seed))
    metrics_path, samples_path = run / "metrics.jsonl", run / "train_samples.jsonl"
    state = resume_or_start(accelerator, run, "ranked_sft", resume, (metrics_path, samples_path))
    start = 0
    if state is not None:
        start = state["step"]
        g.set_state(state["generator"])

    bar = tqdm(
        total=config.rounds,
        initial=start,
        desc="ranked sft",
        unit="round",
        disable=not (progress and accelerator.is_main_process),
    )
    last: dict = {}
    for rnd in range(start, config.rounds):
        # ------------------------------------------------------ sample and rank
        first = (rnd * world + rank) * per_rank
        batch = stream[first : first + per_rank]
        repeated = [p for p in batch for _ in range(k)]
        seed = int(torch.randint(0, 2**62, (world,), generator=g)[rank])
        r = sample(
            policy, tokenizer, repeated, max_new_tokens=config.max_new_tokens, seed=seed, temperature=config.temperature
        )
        with torch.no_grad():
            logp, _ = token_logprobs(unwrap(policy), r.input_ids, r.attention_mask, r.prompt_length, config.temperature)
            logp_ref, _ = token_logprobs(reference, r.input_ids, r.attention_mask, r.prompt_length, config.temperature)
        kl = ((logp - logp_ref) * r.response_mask).sum(1)
        scores = torch.as_tensor(reward(repeated, r.responses), dtype=torch.float32).view(len(batch), k)
        best = top_per_prompt(scores, keep)
        kept = [
            (batch[i], r.responses[i * k + int(j)], r.ended[i * k + int(j)]) for i in range(len(batch)) for j in best[i]
        ]
        kept = [(p, c, e) for p, c, e in kept if c.strip()]
        from accelerate.utils import gather_object

        kept = gather_object(kept) if world > 1 else kept

        # ------------------------------------------------------ fine-tune on the best
        encoded = encode(tokenizer, [p for p, _, _ in kept], [c for _, c, _ in kept], 256, [e for _, _, e in kept])
        losses = supervised_pass(
            accelerator,
            policy,
            optimizer,
            encoded,
            batch_size=config.batch_size,
            epochs=config.epochs,
            lr=config.lr,
            seed=config.seed + rnd,
            pad_id=tokenizer.pad_token_id,
            stage="ranked_sft",
        )

        # ------------------------------------------------------ metrics
        all_scores, all_kl = accelerator.gather(scores.flatten().to(accelerator.device)), accelerator.gather(kl)
        kept_scores = accelerator.gather(scores.gather(1, best).flatten().to(accelerator.device))
        last = {
            "step": rnd + 1,
            "episodes": (rnd + 1) * per_rank * world * k,
            "objective/score": float(all_scores.mean()),
            "objective/kl": float(all_kl.mean()),
            "ranked/kept_score": float(kept_scores.mean()),
            "ranked/kept": len(kept),
            "sft/loss": losses[-1],
            "sft/steps": len(losses),
        }
        if gold is not None:
            golds = torch.tensor(gold(repeated, r.responses), dtype=torch.float32, device=accelerator.device)
            last["objective/gold"] = float(accelerator.gather(golds).mean())
        if accelerator.is_main_process:
            append_jsonl(metrics_path, last)
            for i in range(min(3, len(batch))):
                append_jsonl(
                    samples_path,
                    {
                        "step": rnd + 1,
                        "prompt": batch[i],
                        "response": r.responses[i * k],
                        "score": float(scores[i, 0]),
                        **({"gold": float(golds[i * k])} if gold is not None else {}),
                    },
                )
        bar.update(1)
        bar.set_postfix(score=f"{last['objective/score']:.2f}", kl=f"{last['objective/kl']:.2f}")
        if rnd + 1 < config.rounds:
            save_checkpoint(
                accelerator, run, "ranked_sft", rnd + 1, {"step": rnd + 1, "generator": g.get_state()}, metrics_path
            )
    bar.close()
    save_policy(accelerator, run, policy, tokenizer)
    return {"rounds": config.rounds, "final": last, "processes": world}
