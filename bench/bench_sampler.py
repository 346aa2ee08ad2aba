"""Sampling throughput: rlhflab's decoding loop against Hugging Face ``generate`` and against the machine.

For each batch size, the same prompts (the task's prompts run together, cut every ``--prompt-tokens`` tokens) continued
``--new-tokens`` tokens (no stop token, so every row generates them all) at temperature 1 with the full
distribution, by

- ``generate``: ``model.generate(do_sample=True, top_k=0)``, the peer;
- ``decode``: ``rlhflab.models.decode.decode``, one continuation per prompt;
- ``decode xG``: the same tokens as ``--group`` continuations of batch/G prompts (the prompt's keys and values
  computed once and shared, as GRPO and RLOO sample).

Tokens/s is new tokens over wall time (median of ``--repeats``); the limit is ``2 x parameters`` FLOPs a token
against the square-matmul rate of this machine in the same dtype measured in the same run (attention scores
and the prompt's pass are not counted, so the fraction is a little flattering at long contexts).

    .venv/bin/python bench/bench_sampler.py [--model embedded] [--dtype float32|bfloat16] [--batches 16,32,64]
        [--new-tokens 32] [--prompt-tokens 16] [--group 8] [--threads N] [--lora-r R] [--json out.json]

``--lora-r R`` also times the last batch size's grouped sampling with a LoRA adapter, as peft runs it
(unfolded) and folded into the weights as ``sample()`` runs it.

Timings are measured, not asserted: no test depends on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from bench_ppo import matmul_flops  # the sibling benchmark's matmul rate (run as bench/bench_sampler.py)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--task", default="sentiment")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--batches", default="16,32,64")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--lora-r", type=int, default=None, help="also time a LoRA adapter of this rank, unfolded and folded"
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from rlhflab.core import threads
    from rlhflab.models.decode import decode
    from rlhflab.models.loading import load_policy, silence_library_logs
    from rlhflab.models.precision import dtype_of
    from rlhflab.tasks import load_task

    silence_library_logs()
    chosen = threads.choose(args.threads)
    dtype = dtype_of(args.dtype)
    model, tokenizer = load_policy(args.model, dtype=dtype)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    limit = matmul_flops(dtype=dtype)
    task = load_task(args.task)
    stream = tokenizer(" ".join(task.train_prompts[:2000]))["input_ids"]  # prompts of exactly --prompt-tokens
    ids = [stream[i : i + args.prompt_tokens] for i in range(0, len(stream) - args.prompt_tokens, args.prompt_tokens)]
    print(f"{args.model}: {params / 1e6:.1f}M parameters, {args.dtype}, {chosen['threads']} threads; "
          f"matmul {limit / 1e9:.0f} GFLOP/s -> limit {limit / (2 * params):.0f} tokens/s")  # fmt: skip
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        prompt = torch.tensor([ids[i % len(ids)] for i in range(batch)])
        mask = torch.ones_like(prompt)
        g = args.group if batch % args.group == 0 else 1
        pad = tokenizer.pad_token_id

        def generate():
            with torch.no_grad():
                torch.manual_seed(0)
                model.generate(input_ids=prompt, attention_mask=mask, do_sample=True, top_k=0, top_p=1.0,
                               max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=pad)  # fmt: skip

        def ours():
            decode(model, prompt, mask, max_new_tokens=args.new_tokens, generator=torch.Generator().manual_seed(0),
                   stop_ids=[], pad_id=pad)  # fmt: skip

        def grouped():
            decode(model, prompt[: batch // g], mask[: batch // g], max_new_tokens=args.new_tokens,
                   generator=torch.Generator().manual_seed(0), stop_ids=[], pad_id=pad, samples_per_prompt=g)  # fmt: skip

        tokens = batch * args.new_tokens
        row = {"batch": batch, "group": g}
        for name, fn in (("generate", generate), ("decode", ours), (f"decode x{g}", grouped)):
            row[name] = tokens / timed(fn, args.repeats)
        row["decode / generate"] = row["decode"] / row["generate"]
        row["limit"] = limit / (2 * params)
        row["decode / limit"] = row["decode"] / row["limit"]
        rows.append(row)
        print(f"batch {batch:4d}: generate {row['generate']:8.0f}  decode {row['decode']:8.0f}  decode x{g} "
              f"{row[f'decode x{g}']:8.0f} tokens/s;  decode/generate {row['decode / generate']:.2f}, "
              f"decode/limit {row['decode / limit']:.0%}")  # fmt: skip
    if args.lora_r:  # the grouped case with an adapter: as peft runs it, and folded as rlhflab samples
        from rlhflab.models.precision import ModelConfig, folded_adapter, trainable_policy

        batch = int(args.batches.split(",")[-1])
        g = args.group if batch % args.group == 0 else 1
        prompt = torch.tensor([ids[i % len(ids)] for i in range(batch // g)])
        lora = trainable_policy(model, ModelConfig(dtype=args.dtype, lora_r=args.lora_r)).eval()

        def adapted(m):
            return lambda: decode(m, prompt, torch.ones_like(prompt), max_new_tokens=args.new_tokens,
                                  generator=torch.Generator().manual_seed(0), stop_ids=[], pad_id=tokenizer.pad_token_id,
                                  samples_per_prompt=g)  # fmt: skip

        def folded():
            with folded_adapter(lora) as m:
                adapted(m)()

        tokens = batch * args.new_tokens
        row = {"batch": batch, "group": g, "lora_r": args.lora_r, "unfolded": tokens / timed(adapted(lora), args.repeats),
               "folded": tokens / timed(folded, args.repeats)}  # fmt: skip
        rows.append(row)
        print(f"LoRA r{args.lora_r}, batch {batch} ({g} samples a prompt): unfolded {row['unfolded']:.0f}, folded "
              f"{row['folded']:.0f} tokens/s (folding included)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "dtype": args.dtype, "parameters": params,
                                         "matmul_flops": limit, "threads": chosen, "rows": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
