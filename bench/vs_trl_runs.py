"""One run of each side for ``bench_vs_trl.py``: the shared reward and the DPO and RLOO runners.

- the reward both sides score with (``vowel_share``, which records the prompts of each call in
  ``REWARD_CALLS``) and the check of those calls;
- TRL's side: a ``TrainerCallback`` that times each optimiser step, and the ``TrainingArguments``
  both TRL trainers share;
- DPO: the preference pairs both sides train on, and one run of rlhflab's ``train_dpo`` and of
  TRL's ``DPOTrainer``;
- RLOO: one run of rlhflab's ``train_rloo`` and of TRL's ``RLOOTrainer``.

Each runner returns the per-step wall-clock times of its run; ``bench_vs_trl.py`` pools and compares them.
"""

from __future__ import annotations

import tempfile
import time

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
        pairs_per_step=args.batch_size,
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
        reward_kl_coef=args.kl_coef,
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
