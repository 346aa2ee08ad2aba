"""PPO throughput and memory on the embedded default model.

Runs rlhflab's PPO (gold reward, so no reward model is needed) for a few steps and reports:
- rollout: episodes/s and generated tokens/s (sampling, reward, log-probs of policy,
  reference and value);
- update: episodes/s and tokens/s over the PPO epochs;
- peak resident memory of the process;
- the fraction of this machine's fp32 matmul throughput (measured in the same run) that
  the update step reaches, counting 6 FLOPs per weight per token (forward and backward) for
  the policy (body and LM head) and the value model (body and scalar head) over every
  padded position of the batch; embedding lookups and attention scores are not counted.

    .venv/bin/python bench/bench_ppo.py [--steps 6] [--prompts-per-step 32] [--max-new-tokens 24] [--json out.json]

Timings are measured, not asserted: no test depends on them.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch


def matmul_flops(seconds: float = 3.0, n: int = 1024, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of square matmuls in ``dtype`` (fp32 by default) on this machine (2 n^3 per product)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def body_parameters(model) -> int:
    """Parameters of the transformer body: all but the token and position embeddings and the LM head."""
    pos = getattr(getattr(model, "transformer", None), "wpe", None)
    skip = {id(model.get_input_embeddings().weight)}
    if pos is not None:
        skip.add(id(pos.weight))
    head = model.get_output_embeddings()
    if head is not None:
        skip.add(id(head.weight))
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded")
    from rlhflab.core.config import build
    from rlhflab.methods.ppo import PPOConfig

    d = PPOConfig()  # the demo's settings unless overridden
    p.add_argument("--steps", type=int, default=6, help="PPO steps measured (after one warm-up step)")
    p.add_argument("--prompts-per-step", type=int, default=d.prompts_per_step)
    p.add_argument("--minibatch-size", type=int, default=d.minibatch_size)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--max-new-tokens", type=int, default=d.sampling.max_new_tokens)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()

    from rlhflab.core.loop import Hooks
    from rlhflab.methods.ppo import train_ppo
    from rlhflab.models.loading import load_policy, silence_library_logs
    from rlhflab.tasks import sentiment

    silence_library_logs()
    task = sentiment()

    def gold(prompts, completions):
        return torch.tensor(task.gold(prompts, completions))

    peak_flops = matmul_flops()
    config = build(
        PPOConfig,
        steps=args.steps + 1,
        prompts_per_step=args.prompts_per_step,
        minibatch_size=args.minibatch_size,
        epochs=args.epochs,
        max_new_tokens=args.max_new_tokens,
        value_init="policy",
        checkpoint_every=10**6,
    )
    policy, tokenizer = load_policy(args.model)
    rows = train_ppo(policy, tokenizer, gold, task.train_prompts, config, hooks=Hooks(progress=False)).history[1:]
    # (the first step warms up; value function from the policy's backbone, as --value-init policy)

    model, _ = load_policy(args.model)
    # multiply-adds per token: the policy's body and LM head (vocab x width), the value model's body and scalar head
    width = model.get_input_embeddings().weight.shape[1]
    per_token = 2 * body_parameters(model) + model.get_output_embeddings().weight.numel() + width
    episodes = args.prompts_per_step * len(rows)
    gen_tokens = sum(r["tokens"] for r in rows)
    t_roll = sum(r["time/rollout"] for r in rows)
    t_upd = sum(r["time/update"] for r in rows)
    # every position of the padded batch goes forward and backward through policy and value, epochs times
    positions = sum(r["tokens_padded"] for r in rows)
    update_flops = 6 * per_token * positions * args.epochs  # forward 2, backward 4 FLOPs per multiply-add
    result = {
        "model": args.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "prompts_per_step": args.prompts_per_step,
        "max_new_tokens": args.max_new_tokens,
        "epochs": args.epochs,
        "steps_measured": len(rows),
        "rollout_episodes_per_s": episodes / t_roll,
        "rollout_tokens_per_s": gen_tokens / t_roll,
        "update_episodes_per_s": episodes / t_upd,
        "update_tokens_per_s": gen_tokens * args.epochs / t_upd,
        "seconds_per_step": (t_roll + t_upd) / len(rows),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "matmul_gflops": peak_flops / 1e9,
        "update_gflops": update_flops / t_upd / 1e9,
        "update_fraction_of_matmul_peak": update_flops / t_upd / peak_flops,
        "threads": torch.get_num_threads(),
    }
    for k, v in result.items():
        print(f"{k:34} {v:.3f}" if isinstance(v, float) else f"{k:34} {v}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
