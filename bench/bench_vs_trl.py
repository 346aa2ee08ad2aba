"""rlhflab against TRL (and plain ``generate``) on the same model, data and settings, in one process.

Three ratios, each measured in the same run, on the same threads:
- DPO: median seconds per optimiser step, rlhflab's ``train_dpo`` / TRL's ``DPOTrainer``
  (same preference pairs, batch size, lr, beta, max length; both precompute the reference
  log-probabilities once before training, so a step is one policy forward and backward over
  the chosen and rejected texts, the loss, gradient clipping and an optimiser step);
  target <= 0.8.
- RLOO: median seconds per step, rlhflab's ``train_rloo`` / TRL's ``RLOOTrainer`` (same
  prompts per step, k completions per prompt, max new tokens, temperature, KL coefficient,
  reward function; TRL reads the prompts in rlhflab's order, so both see the same prompts at
  every step; one rollout and one optimiser step over the whole rollout per step);
  target <= 0.8.
- best-of-n: samples per second of rlhflab's ``BestOfNSampler`` (sampling, decoding and the
  reward) / tokenizing plus ``model.generate`` on the same repeated prompts with the same seed
  and sampling settings (so both draw the very same samples); target >= 0.9.

The reward is a cheap deterministic python function (the share of vowels among the letters
of a completion), the same function object for both sides. Step times are per-step
wall-clock times: rlhflab's from its metrics rows (``time/step`` for DPO,
``time/rollout + time/update`` for RLOO), TRL's from a ``TrainerCallback`` between
``on_step_begin`` and ``on_step_end``. The first ``--warmup`` steps of every run are discarded;
``--rounds`` runs each side that many times, alternating which goes first, and pools the
remaining steps.

    .venv/bin/python bench/bench_vs_trl.py [--model embedded] [--steps 20] [--warmup 3] [--rounds 2] \
        [--batch-size 16] [--prompts-per-step 8] [--samples-per-prompt 4] [--max-new-tokens 24] \
        [--n 4] [--bon-prompts 8] [--bon-repeats 12] [--only dpo,rloo,bon] [--json out.json] [--quick]

Timings are measured, not asserted: no test depends on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's reference log-prob pass reads it
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

# one run of each side, and the reward (bench/vs_trl_runs.py, beside this script)
from vs_trl_runs import make_pairs, run_dpo_ours, run_dpo_trl, run_rloo_ours, run_rloo_trl, vowel_share


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


# ---------------------------------------------------------------- DPO


def bench_dpo(args, model_path: str, task) -> dict:
    from rlhflab.models.batching import encode
    from rlhflab.models.loading import load_tokenizer

    total = args.warmup + args.steps
    pairs = make_pairs(model_path, task.train_prompts, total * args.batch_size, args.completion_tokens, args.seed)
    tokenizer = load_tokenizer(model_path)
    prompts = [p.prompt for p in pairs]
    ours_enc = encode(tokenizer, prompts, [p.chosen for p in pairs], 10**6) + encode(
        tokenizer, prompts, [p.rejected for p in pairs], 10**6
    )
    longest = max(len(ids) for ids, _ in ours_enc)
    if longest > args.max_length:
        print(
            f"warning: the longest pair has {longest} tokens > --max-length {args.max_length}; the two sides "
            "truncate differently (TRL keeps the start, rlhflab the end)",
            file=sys.stderr,
        )
    ours, trl, info = [], [], {}
    for r in range(args.rounds):
        for side in ("ours", "trl") if r % 2 == 0 else ("trl", "ours"):
            if side == "ours":
                ours += run_dpo_ours(args, model_path, pairs, args.seed)[args.warmup :]
            else:
                times, info = run_dpo_trl(args, model_path, pairs, args.seed)
                trl += times[args.warmup :]
    ours_tokens = sum(len(ids) for ids, _ in ours_enc)
    return {
        "ours_s_per_step": median(ours),
        "trl_s_per_step": median(trl),
        "ratio": median(ours) / median(trl),
        "ours_step_times": ours,
        "trl_step_times": trl,
        "pairs": len(pairs),
        "tokens_per_pair_ours": ours_tokens / len(pairs),
        "tokens_per_pair_trl": info["tokens"] / info["pairs"],
        "longest_sequence": longest,
        "trl_optim": info["optim"],
    }


# ---------------------------------------------------------------- RLOO


def bench_rloo(args, model_path: str, task) -> dict:
    ours, trl, ours_len, trl_len, optim = [], [], [], [], ""
    calls: dict[str, list] = {}
    for r in range(args.rounds):
        for side in ("ours", "trl") if r % 2 == 0 else ("trl", "ours"):
            if side == "ours":
                times, lengths, calls["ours"] = run_rloo_ours(args, model_path, task.train_prompts, args.seed)
                ours += times[args.warmup :]
                ours_len += lengths[args.warmup :]
            else:
                times, lengths, calls["trl"], optim = run_rloo_trl(args, model_path, task.train_prompts, args.seed)
                trl += times[args.warmup :]
                trl_len += lengths[args.warmup :]
    return {
        "ours_s_per_step": median(ours),
        "trl_s_per_step": median(trl),
        "ratio": median(ours) / median(trl),
        "ours_step_times": ours,
        "trl_step_times": trl,
        "completion_tokens_ours": mean(ours_len),
        "completion_tokens_trl": mean(trl_len),
        "same_prompts_every_step": calls["ours"] == calls["trl"],
        "trl_optim": optim,
    }


# ---------------------------------------------------------------- best-of-n


def bench_best_of_n(args, model_path: str, task) -> dict:
    from transformers import GenerationConfig

    from rlhflab.models.loading import load_policy
    from rlhflab.models.samplers import BestOfNSampler

    model, tokenizer = load_policy(model_path)
    model.eval()
    sampler = BestOfNSampler(model, tokenizer, vowel_share, args.n)
    g = torch.Generator().manual_seed(args.seed)
    prompts = [task.train_prompts[i] for i in torch.randperm(len(task.train_prompts), generator=g)[: args.bon_prompts]]
    repeated = [p for p in prompts for _ in range(args.n)]
    config = GenerationConfig(  # the sampling rlhflab.models.loading.sample asks for: full distribution, no top-k/top-p
        do_sample=True,
        temperature=args.temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=args.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )

    def plain(seed: int):
        enc = tokenizer(repeated, return_tensors="pt", padding=True)
        torch.manual_seed(seed)
        with torch.no_grad():
            out = model.generate(**enc, generation_config=config)
        return out, enc["input_ids"].shape[1]

    def best(seed: int):
        return sampler.sample(prompts, max_new_tokens=args.max_new_tokens, seed=seed, temperature=args.temperature)

    def texts(out: torch.Tensor, prompt_length: int) -> list[str]:
        result = []
        for ids in out[:, prompt_length:].tolist():
            if tokenizer.eos_token_id in ids:
                ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
            result.append(tokenizer.decode(ids, skip_special_tokens=True))
        return result

    ours, peer, same, generated = [], [], 0, 0
    for i in range(args.bon_warmup + args.bon_repeats):
        seed = args.seed + i
        for side in ("ours", "peer") if i % 2 == 0 else ("peer", "ours"):
            start = time.perf_counter()
            if side == "ours":
                picked = best(seed)
            else:
                out, prompt_length = plain(seed)
            elapsed = time.perf_counter() - start
            if i >= args.bon_warmup:
                (ours if side == "ours" else peer).append(elapsed)
        if i >= args.bon_warmup:  # outside the timing: both drew the same samples
            candidates = texts(out, prompt_length)
            same += all(t in candidates[j * args.n : (j + 1) * args.n] for j, t in enumerate(picked.texts))
            generated += int((out[:, prompt_length:] != tokenizer.pad_token_id).sum())
    samples = args.n * len(prompts)
    return {
        "ours_samples_per_s": samples / median(ours),
        "peer_samples_per_s": samples / median(peer),
        "ratio": median(peer) / median(ours),
        "ours_times": ours,
        "peer_times": peer,
        "samples_per_call": samples,
        "repeats_with_identical_samples": same,
        "repeats": args.bon_repeats,
        "generated_tokens_per_call": generated / max(1, args.bon_repeats),
    }


# ---------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded", help="a local Hugging Face causal LM folder, or 'embedded'")
    p.add_argument("--steps", type=int, default=20, help="steps measured per run (DPO and RLOO)")
    p.add_argument("--warmup", type=int, default=3, help="steps discarded at the start of every run")
    p.add_argument("--rounds", type=int, default=2, help="runs of each side, alternating which goes first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="dpo,rloo,bon", help="comma-separated subset of dpo, rloo, bon")
    g = p.add_argument_group("DPO")
    g.add_argument("--batch-size", type=int, default=16, help="pairs per optimiser step")
    g.add_argument("--completion-tokens", type=int, default=24, help="tokens sampled per completion of a pair")
    g.add_argument("--max-length", type=int, default=128, help="max tokens of prompt + completion")
    g.add_argument("--beta", type=float, default=0.1)
    g.add_argument("--dpo-lr", type=float, default=5e-5)
    g = p.add_argument_group("RLOO and best-of-n")
    g.add_argument("--prompts-per-step", type=int, default=8)
    g.add_argument("--samples-per-prompt", type=int, default=4, help="k completions per prompt")
    g.add_argument("--max-new-tokens", type=int, default=24)
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--kl-coef", type=float, default=0.05)
    g.add_argument("--rloo-lr", type=float, default=1e-4)
    g.add_argument("--n", type=int, default=4, help="best-of-n: candidates per prompt")
    g.add_argument("--bon-prompts", type=int, default=8, help="best-of-n: prompts per call")
    g.add_argument("--bon-repeats", type=int, default=12, help="best-of-n: calls measured per side")
    g.add_argument("--bon-warmup", type=int, default=2, help="best-of-n: calls discarded per side")
    p.add_argument("--trl-optim", default=None, help="TRL's optimizer (default: TrainingArguments' default)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run with tiny sizes")
    args = p.parse_args()
    if args.quick:
        args.steps, args.warmup, args.rounds = 2, 1, 1
        args.batch_size, args.completion_tokens = 4, 8
        args.prompts_per_step, args.samples_per_prompt, args.max_new_tokens = 2, 2, 8
        args.bon_prompts, args.bon_repeats, args.bon_warmup = 2, 2, 1
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - {"dpo", "rloo", "bon"}:
        p.error("--only takes a comma-separated subset of dpo, rloo, bon")

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    import datasets

    from rlhflab.models.loading import resolve_model, silence_library_logs
    from rlhflab.tasks import load_task

    silence_library_logs()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(args.seed)
    model_path = resolve_model(args.model)
    task = load_task("sentiment")

    import transformers
    import trl

    settings = {
        "model": args.model,
        "model_path": model_path,
        "threads": threads,
        "steps_measured_per_run": args.steps,
        "warmup_steps_per_run": args.warmup,
        "rounds": args.rounds,
        "seed": args.seed,
        "dpo": {
            "batch_size": args.batch_size,
            "completion_tokens": args.completion_tokens,
            "max_length": args.max_length,
            "beta": args.beta,
            "lr": args.dpo_lr,
        },
        "rloo": {
            "prompts_per_step": args.prompts_per_step,
            "samples_per_prompt": args.samples_per_prompt,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "kl_coef": args.kl_coef,
            "lr": args.rloo_lr,
        },
        "best_of_n": {
            "n": args.n,
            "prompts": args.bon_prompts,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "repeats": args.bon_repeats,
            "warmup": args.bon_warmup,
        },
        "trl": {
            "optim": args.trl_optim or "TrainingArguments' default",
            "bf16": False,
            "gradient_checkpointing": False,
            "disable_dropout": True,
            "gradient_accumulation_steps": 1,
            "dpo_precompute_ref_log_probs": True,
            "rloo_num_iterations": 1,
            "rloo_steps_per_generation": 1,
            "eval_save_logging": "off",
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
    }
    print("settings:")
    for k, v in settings.items():
        print(f"  {k:24} {v}")
    sys.stdout.flush()

    start = time.perf_counter()
    results: dict = {}
    if "dpo" in only:
        results["dpo"] = bench_dpo(args, model_path, task)
    if "rloo" in only:
        results["rloo"] = bench_rloo(args, model_path, task)
    if "bon" in only:
        results["best_of_n"] = bench_best_of_n(args, model_path, task)
    if torch.get_num_threads() != threads:
        print(
            f"warning: torch threads changed from {threads} to {torch.get_num_threads()} during the run",
            file=sys.stderr,
        )

    rows = []
    if "dpo" in results:
        d = results["dpo"]
        d.update(target="<= 0.8", met=d["ratio"] <= 0.8)
        rows.append(("DPO step", f"{d['ours_s_per_step']:.4f} s", f"{d['trl_s_per_step']:.4f} s (TRL)", d))
    if "rloo" in results:
        d = results["rloo"]
        d.update(target="<= 0.8", met=d["ratio"] <= 0.8)
        rows.append(("RLOO step", f"{d['ours_s_per_step']:.4f} s", f"{d['trl_s_per_step']:.4f} s (TRL)", d))
    if "best_of_n" in results:
        d = results["best_of_n"]
        d.update(target=">= 0.9", met=d["ratio"] >= 0.9)
        rows.append(
            (
                "best-of-n",
                f"{d['ours_samples_per_s']:.1f} samples/s",
                f"{d['peer_samples_per_s']:.1f} samples/s (generate)",
                d,
            )
        )
    print()
    print(f"{'comparison':12} {'ours':>20} {'TRL / peer':>32} {'ratio':>7} {'target':>8}  met")
    for name, ours, peer, d in rows:
        print(f"{name:12} {ours:>20} {peer:>32} {d['ratio']:7.3f} {d['target']:>8}  {'yes' if d['met'] else 'no'}")
    print()
    if "dpo" in results:
        d = results["dpo"]
        print(
            f"DPO: {len(d['ours_step_times'])} / {len(d['trl_step_times'])} steps measured (ours / TRL), "
            f"{d['pairs']} pairs, tokens per pair (chosen + rejected, with prompts) {d['tokens_per_pair_ours']:.1f} / "
            f"{d['tokens_per_pair_trl']:.1f}, longest sequence {d['longest_sequence']}; TRL optimizer {d['trl_optim']}, "
            "ours torch AdamW; both precompute reference log-probs before training"
        )
    if "rloo" in results:
        d = results["rloo"]
        print(
            f"RLOO: {len(d['ours_step_times'])} / {len(d['trl_step_times'])} steps measured (ours / TRL), "
            f"same prompts at every step: {'yes' if d['same_prompts_every_step'] else 'no'}, "
            f"mean completion tokens {d['completion_tokens_ours']:.1f} / {d['completion_tokens_trl']:.1f}; "
            f"TRL optimizer {d['trl_optim']}, ours torch Adam"
        )
    if "best_of_n" in results:
        d = results["best_of_n"]
        print(
            f"best-of-n: {d['repeats']} calls of {d['samples_per_call']} samples per side, identical samples in "
            f"{d['repeats_with_identical_samples']}/{d['repeats']} calls, "
            f"{d['generated_tokens_per_call']:.0f} generated tokens per call"
        )
    wall = time.perf_counter() - start
    print(f"wall time {wall:.1f} s; timings are measured, not asserted")
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "results": results, "wall_s": wall}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
