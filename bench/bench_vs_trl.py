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
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's reference log-prob pass reads it
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch
from transformers import TrainerCallback

VOWELS = frozenset("aeiouAEIOU")
REWARD_CALLS: list[list[str]] = []
"""The prompts of each call of the reward (a check that both sides score what we think)."""


def vowel_share(prompts, completions, **kwargs) -> list[float]:
    """Share of vowels among the letters of each completion (0 for one without letters).

    The signature suits both rlhflab (``reward(prompts, completions)``) and TRL's ``reward_funcs``
    (``f(prompts, completions, **kwargs)``).
    """
    REWARD_CALLS.append(list(prompts or []))
    out = []
    for text in completions:
        letters = [c for c in text if c.isalpha()]
        out.append(sum(c in VOWELS for c in letters) / len(letters) if letters else 0.0)
    return out


class StepTimer(TrainerCallback):
    """Wall-clock seconds of each optimiser step of a transformers Trainer (on_step_begin to on_step_end);
    with ``trainer`` set, also the mean completion length TRL recorded for the step (RLOO)."""

    def __init__(self):
        self.times: list[float] = []
        self.lengths: list[float] = []
        self.trainer = None
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)
        if self.trainer is not None:  # outside the timing; TRL's log() would clear these at the end
            recorded = self.trainer._metrics["train"].get("completions/mean_length") or [float("nan")]
            self.lengths.append(recorded[-1])


def quiet(trainer) -> None:
    """No printed log lines: with tqdm off, transformers prints the final training summary."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def optim_name(config) -> str:
    return str(getattr(config.optim, "value", config.optim))


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def common_trainer_args(args, out_dir: str, seed: int) -> dict:
    """TrainingArguments shared by both TRL trainers: CPU, fp32, no checkpointing, no eval/save/logging."""
    extra = {"optim": args.trl_optim} if args.trl_optim else {}
    return dict(
        output_dir=out_dir,
        use_cpu=True,
        bf16=False,  # TRL's default on CPU is bf16 autocast; rlhflab trains in fp32
        fp16=False,
        gradient_checkpointing=False,  # TRL's default is True; rlhflab does not checkpoint
        gradient_accumulation_steps=1,
        max_grad_norm=1.0,  # rlhflab clips at 1.0 too
        weight_decay=0.0,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        **extra,
    )


# ---------------------------------------------------------------- DPO


def make_pairs(model_path: str, prompts: list[str], count: int, tokens: int, seed: int):
    """``count`` PreferencePairs: two continuations of ``tokens`` tokens sampled per prompt, the one with
    more vowels chosen; both end with the end-of-sequence token (TRL appends it when missing, so this
    way both sides train on the very same token sequences)."""
    from rlhflab.core.comparison import PreferencePair
    from rlhflab.models.loading import load_policy
    from rlhflab.models.sampling import sample

    model, tokenizer = load_policy(model_path)
    model.eval()
    eos = tokenizer.eos_token or ""
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed)).tolist()
    pairs: list[PreferencePair] = []
    chunk, position, attempt = 32, 0, 0
    while len(pairs) < count:
        if position >= len(order):  # more pairs than prompts: go round again with new samples
            position, attempt = 0, attempt + 1
        batch = [prompts[i] for i in order[position : position + chunk]]
        position += chunk
        r = sample(
            model,
            tokenizer,
            [p for p in batch for _ in range(2)],
            max_new_tokens=tokens,
            seed=seed + 1000 * attempt + position,
            temperature=1.0,
        )
        for i, prompt in enumerate(batch):
            a, b = r.responses[2 * i], r.responses[2 * i + 1]
            if a == b or not a.strip() or not b.strip():
                continue
            sa, sb = vowel_share([prompt] * 2, [a, b])
            chosen, rejected = (a, b) if sa >= sb else (b, a)
            pairs.append(PreferencePair(prompt, chosen + eos, rejected + eos, source="simulated:vowels"))
            if len(pairs) == count:
                break
    return pairs


def run_dpo_ours(args, model_path: str, pairs, seed: int) -> list[float]:
    from rlhflab.core.config import build
    from rlhflab.core.loop import Hooks
    from rlhflab.methods.dpo import DPOConfig, train_dpo
    from rlhflab.models.loading import load_policy

    config = build(
        DPOConfig,
        beta=args.beta,
        epochs=1.0,
        batch_size=args.batch_size,
        lr=args.dpo_lr,
        max_length=args.max_length,
        checkpoint_every=10**6,
        seed=seed,
    )
    torch.manual_seed(seed)
    policy, tokenizer = load_policy(model_path)
    result = train_dpo(policy, tokenizer, pairs, config, hooks=Hooks(progress=False))
    rows = result.history
    if result.summary["steps"] != len(rows) or len(rows) != args.warmup + args.steps:
        raise RuntimeError(f"rlhflab DPO ran {len(rows)} steps, expected {args.warmup + args.steps}")
    return [r["time/step"] for r in rows]


def run_dpo_trl(args, model_path: str, pairs, seed: int) -> tuple[list[float], dict]:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    dataset = Dataset.from_dict(
        {
            "prompt": [p.prompt for p in pairs],
            "chosen": [p.chosen for p in pairs],
            "rejected": [p.rejected for p in pairs],
        }
    )
    total = args.warmup + args.steps
    timer = StepTimer()
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = TRLDPOConfig(
            **common_trainer_args(args, tmp, seed),
            per_device_train_batch_size=args.batch_size,
            max_steps=total,
            learning_rate=args.dpo_lr,
            lr_scheduler_type="linear",
            warmup_steps=max(1, total // 20),  # rlhflab: 5% linear warm-up, then linear decay
            beta=args.beta,
            loss_type=["sigmoid"],
            max_length=args.max_length,
            precompute_ref_log_probs=True,
            precompute_ref_batch_size=32,  # rlhflab's reference pass uses 32 pairs per batch
            disable_dropout=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        trainer = DPOTrainer(
            model=model_path, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[timer]
        )
        quiet(trainer)
        data = trainer.train_dataset
        tokens = sum(
            2 * len(p) + len(c) + len(r)
            for p, c, r in zip(data["prompt_ids"], data["chosen_ids"], data["rejected_ids"])
        )
        trainer.train()
        steps = trainer.state.global_step
    if steps != total or len(timer.times) != total:
        raise RuntimeError(f"TRL DPO ran {steps} steps ({len(timer.times)} timed), expected {total}")
    return timer.times, {"tokens": tokens, "pairs": len(data), "optim": optim_name(config)}


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


def run_rloo_ours(args, model_path: str, prompts: list[str], seed: int):
    from rlhflab.core.config import build
    from rlhflab.core.loop import Hooks
    from rlhflab.methods.rloo import RLOOConfig, train_rloo
    from rlhflab.models.loading import load_policy

    k, total = args.samples_per_prompt, args.warmup + args.steps
    config = build(
        RLOOConfig,
        steps=total,
        prompts_per_step=args.prompts_per_step,
        samples_per_prompt=k,
        epochs=1,
        minibatch_size=args.prompts_per_step * k,  # one optimiser step over the whole rollout
        lr=args.rloo_lr,
        kl_coef=args.kl_coef,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        checkpoint_every=10**6,
        sample_every=10**6,
        seed=seed,
    )
    torch.manual_seed(seed)
    REWARD_CALLS.clear()
    policy, tokenizer = load_policy(model_path)
    rows = train_rloo(policy, tokenizer, vowel_share, prompts, config, hooks=Hooks(progress=False)).history
    if len(rows) != total:
        raise RuntimeError(f"rlhflab RLOO ran {len(rows)} steps, expected {total}")
    calls = check_reward_calls("rlhflab RLOO", total, args.prompts_per_step * k)
    lengths = [r["tokens"] / (args.prompts_per_step * k) for r in rows]
    return [r["time/rollout"] + r["time/update"] for r in rows], lengths, calls


def run_rloo_trl(args, model_path: str, prompts: list[str], seed: int):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RLOOConfig as TRLRLOOConfig
    from trl import RLOOTrainer

    from rlhflab.models.batching import prompt_stream

    k, total = args.samples_per_prompt, args.warmup + args.steps
    # the prompts rlhflab's trainer draws, in its order: TRL reads them unshuffled, the same prompts at every step
    stream = prompt_stream(list(prompts), total * args.prompts_per_step, torch.Generator().manual_seed(seed))
    timer = StepTimer()
    torch.manual_seed(seed)
    REWARD_CALLS.clear()
    with tempfile.TemporaryDirectory() as tmp:
        config = TRLRLOOConfig(
            **common_trainer_args(args, tmp, seed),
            per_device_train_batch_size=args.prompts_per_step * k,  # completions per step
            steps_per_generation=1,  # one generation batch per optimiser step
            num_generations=k,
            num_iterations=1,  # one optimisation pass per rollout
            max_steps=total,
            learning_rate=args.rloo_lr,
            lr_scheduler_type="constant",  # rlhflab's critic-free trainers keep the lr constant
            adam_epsilon=1e-5,  # as rlhflab's Adam
            beta=args.kl_coef,
            max_completion_length=args.max_new_tokens,
            temperature=args.temperature,
            top_p=1.0,
            top_k=0,
            disable_dropout=True,  # TRL's RLOO default is False; rlhflab disables dropout
            shuffle_dataset=False,
        )
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        trainer = RLOOTrainer(
            model=model_path,
            reward_funcs=vowel_share,
            args=config,
            train_dataset=Dataset.from_dict({"prompt": stream}),
            processing_class=tokenizer,
            callbacks=[timer],
        )
        quiet(trainer)
        timer.trainer = trainer
        trainer.train()
        steps = trainer.state.global_step
        lengths = timer.lengths
    if steps != total or len(timer.times) != total:
        raise RuntimeError(f"TRL RLOO ran {steps} steps ({len(timer.times)} timed), expected {total}")
    calls = check_reward_calls("TRL RLOO", total, args.prompts_per_step * k)
    return timer.times, lengths, calls, optim_name(config)


def check_reward_calls(who: str, calls: int, size: int) -> list[list[str]]:
    """The prompts of each reward call of a run, after checking there was one call of ``size`` per step."""
    sizes = [len(c) for c in REWARD_CALLS]
    if sizes != [size] * calls:
        raise RuntimeError(f"{who} scored batches of {sizes}, expected {calls} batches of {size}")
    return list(REWARD_CALLS)


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
