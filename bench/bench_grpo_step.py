"""GRPO step time of this checkout, and of another one run the same way (``--src``), on the same model and batch.

Runs ``train_grpo`` through the Python API (a rule reward: the share of vowels, so no reward model) for
``--warmup + --steps`` steps and reports the median over the last ``--steps`` of the rollout time (sampling,
reward, log-probabilities) and the update time, as the method logs them (``time/rollout``, ``time/update``), and,
where the checkout logs it, the share of the rollout spent outside generation (``time/generate``).
To compare with an older commit, check it out in a git worktree and run this script twice, once with
``--src WORKTREE/src``; both runs print one JSON line.

    git worktree add /tmp/old 83ed7fa
    .venv/bin/python bench/bench_grpo_step.py --threads 2 [--model embedded] [--dtype float32] [--lora-r 0]
    .venv/bin/python bench/bench_grpo_step.py --threads 2 --src /tmp/old/src

Timings are measured, not asserted: no test depends on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def vowel_share(prompts, completions):
    return [sum(c in "aeiou" for c in text) / max(1, len(text)) for text in completions]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    p.add_argument("--model", default="embedded")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--lora-r", type=int, default=0)
    p.add_argument("--prompts-per-step", type=int, default=8)
    p.add_argument("--samples-per-prompt", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    sys.path.insert(0, str(args.src.resolve()))

    import torch

    torch.set_num_threads(args.threads)
    from rlhflab.methods.grpo import train_grpo
    from rlhflab.tasks import load_task

    try:  # the layout of this checkout
        from rlhflab.core.config import build
        from rlhflab.core.loop import Hooks
        from rlhflab.models.loading import load_policy, silence_library_logs
        from rlhflab.models.precision import ModelConfig, reference_for, trainable_policy
    except ImportError:  # before the redesign (83ed7fa)
        from rlhflab.config import build
        from rlhflab.methods.api import Hooks
        from rlhflab.rollout.models import load_policy, silence_library_logs
        from rlhflab.rollout.precision import ModelConfig, reference_for, trainable_policy

    silence_library_logs()
    options = ModelConfig(dtype=args.dtype, lora_r=args.lora_r or None)
    policy, tokenizer = load_policy(args.model, dtype=args.dtype if args.lora_r else "float32")
    policy = trainable_policy(policy, options)
    reference = reference_for(policy, lambda: load_policy(args.model, dtype=args.dtype)[0])
    k = args.samples_per_prompt
    config = build(
        train_grpo.__globals__.get("GRPOConfig") or train_grpo.__globals__["CriticFreeConfig"],
        steps=args.warmup + args.steps, prompts_per_step=args.prompts_per_step, samples_per_prompt=k,
        minibatch_size=args.prompts_per_step * k, max_new_tokens=args.max_new_tokens, model_options=options,
        checkpoint_every=10**6, sample_every=10**6, seed=0,
    )  # fmt: skip
    rows = []
    train_grpo(policy, tokenizer, vowel_share, load_task("sentiment").train_prompts, config, reference=reference,
               hooks=Hooks(metrics=rows.append, progress=False))  # fmt: skip
    timed = rows[args.warmup :]
    rollout = statistics.median(r["time/rollout"] for r in timed)
    update = statistics.median(r["time/update"] for r in timed)
    out = {"src": str(args.src), "model": args.model, "dtype": args.dtype, "lora_r": args.lora_r,
           "threads": args.threads, "sequences": args.prompts_per_step * k, "rollout_s": round(rollout, 3),
           "update_s": round(update, 3), "step_s": round(rollout + update, 3)}  # fmt: skip
    if all("time/generate" in r for r in timed):  # logged since the decoding loop; older checkouts do not
        generate = statistics.median(r["time/generate"] for r in timed)
        out.update(generate_s=round(generate, 3), outside_generation=round(1 - generate / rollout, 3))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
