"""Evaluate a tuned policy against its base policy on held-out prompts.

For each policy: mean gold reward, mean proxy reward (when a reward model is given), the
KL to the base policy, distinct-1/2 and mean length of its samples. The KL is the k1
estimator, mean over the tuned policy's own samples of sum_t log pi(y_t | .) / pi_base(y_t | .)
(unbiased; its standard error is reported beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from rlhflab.config import check
from rlhflab.diagnostics import distinct_n, mean_and_stderr
from rlhflab.models import check_fits, load_policy
from rlhflab.samplers import PolicySampler, load_sampler
from rlhflab.tasks import Task

KL_ESTIMATOR = "k1: mean over the policy's samples of sum_t log pi(y_t|x,y<t) - log pi_base(y_t|x,y<t) (unbiased)"
BON_KL_ESTIMATOR = (
    "best-of-n: mean of log n + (n-1) log F(r) over the selected samples, F the empirical reward CDF of all "
    "candidates (kl_bound: the analytic log n - (n-1)/n)"
)


@dataclass(frozen=True)
class EvalConfig:
    prompts: int = 500
    """Held-out prompts to evaluate on (0 = all of the task's evaluation prompts)."""
    max_new_tokens: int = 24
    """Length limit of each continuation, in tokens."""
    temperature: float = 0.7
    """Sampling temperature (0.7 as in lm-human-preferences); log-probabilities and KL use the same temperature."""
    batch_size: int = 64
    """Prompts sampled at once."""
    seed: int = 1
    """Seed of the sampling noise (the same for both policies)."""

    def __post_init__(self) -> None:
        check(self.prompts >= 0, "prompts", self.prompts, ">= 0")
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, ">= 1")
        check(self.temperature > 0, "temperature", self.temperature, "> 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")


@torch.no_grad()
def _samples(sampler, prompts, config: EvalConfig, desc: str = "", progress: bool = True):
    """Continuations of ``prompts`` from ``sampler``, with its per-sample entropy and KL (or Nones)."""
    texts, entropies, kls = [], [], []
    g = torch.Generator().manual_seed(config.seed)
    for start in tqdm(range(0, len(prompts), config.batch_size), desc=desc, unit="batch", disable=not progress):
        batch = prompts[start : start + config.batch_size]
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        out = sampler.sample(batch, max_new_tokens=config.max_new_tokens, seed=seed, temperature=config.temperature)
        texts.extend(out.texts)
        entropies.extend(out.entropy or [])
        kls.extend(out.kl or [])
    return texts, entropies or None, kls or None


def _stats(values: list[float] | None) -> tuple[float | None, float | None]:
    return mean_and_stderr(values) if values else (None, None)


def _describe(prompts, texts, gold: Callable, proxy: Callable | None) -> tuple[dict, list[float], list[float]]:
    g = list(gold(prompts, texts))
    p = [float(x) for x in proxy(prompts, texts)] if proxy is not None else []
    out = {}
    out["gold"], out["gold_stderr"] = mean_and_stderr(g)
    if proxy is not None:
        out["proxy"], out["proxy_stderr"] = mean_and_stderr(p)
    out["distinct_1"], out["distinct_2"] = distinct_n(texts, 1), distinct_n(texts, 2)
    out["words"] = sum(len(t.split()) for t in texts) / max(len(texts), 1)
    return out, g, p


def evaluate(
    policy_name: str,
    base_name: str,
    task: Task,
    config: EvalConfig,
    proxy: Callable | None = None,
    pad_token: str | None = None,
    progress: bool = True,
    reward_loader: Callable[[str], Callable] | None = None,
) -> tuple[dict, list[dict]]:
    """Compare ``policy_name`` (a policy folder, or a sampler such as best-of-n) with ``base_name``
    on the task's evaluation prompts.

    Returns (summary, samples): summary has a "base" and a "policy" entry; samples hold one
    row per prompt with both continuations and their scores. ``reward_loader`` turns a
    best-of-n sampler's reward name into a function.
    """
    prompts = task.eval_prompts[: config.prompts] if config.prompts else list(task.eval_prompts)
    base, tokenizer = load_policy(base_name, pad_token)
    check_fits(base, tokenizer, prompts, config.max_new_tokens)
    loader = reward_loader or (lambda name: proxy)
    sampler, info = load_sampler(policy_name, base_name, loader, pad_token)
    base_texts, base_entropy, _ = _samples(PolicySampler(base, tokenizer), prompts, config, "evaluate: base", progress)
    policy_texts, policy_entropy, kls = _samples(sampler, prompts, config, "evaluate: policy", progress)
    base_stats, base_gold, base_proxy = _describe(prompts, base_texts, task.gold, proxy)
    pol_stats, pol_gold, pol_proxy = _describe(prompts, policy_texts, task.gold, proxy)
    base_stats["entropy"], base_stats["entropy_stderr"] = _stats(base_entropy)
    pol_stats["entropy"], pol_stats["entropy_stderr"] = _stats(policy_entropy)
    base_stats["kl"], base_stats["kl_stderr"] = 0.0, 0.0
    pol_stats["kl"], pol_stats["kl_stderr"] = _stats(kls)
    if info["type"] == "best_of_n":
        pol_stats["kl_bound"] = info["kl_bound"]
    summary = {
        "task": task.name,
        "prompts": len(prompts),
        "kl_estimator": KL_ESTIMATOR if info["type"] == "policy" else BON_KL_ESTIMATOR,
        "base_model": base_name,
        "policy_model": str(policy_name),
        "sampler": info,
        "base": base_stats,
        "policy": pol_stats,
        "gold_gain": pol_stats["gold"] - base_stats["gold"],
    }
    rows = []
    for i, prompt in enumerate(prompts):
        row = {
            "prompt": prompt,
            "base": base_texts[i],
            "policy": policy_texts[i],
            "gold_base": base_gold[i],
            "gold_policy": pol_gold[i],
            "kl_policy": kls[i] if kls else None,
        }
        if proxy is not None:
            row["proxy_base"], row["proxy_policy"] = base_proxy[i], pol_proxy[i]
        rows.append(row)
    return summary, rows


def format_table(summary: dict) -> str:
    """A short plain-text table of the summary."""
    cols = [
        ("gold", "gold"),
        ("proxy", "proxy"),
        ("kl", "KL"),
        ("distinct_1", "dist-1"),
        ("distinct_2", "dist-2"),
        ("words", "words"),
    ]
    cols = [(k, h) for k, h in cols if k in summary["base"]]
    lines = [f"{'':8}" + "".join(f"{h:>16}" for _, h in cols)]
    for name in ("base", "policy"):
        s = summary[name]
        cells = []
        for k, _ in cols:
            se = s.get(f"{k}_stderr")
            if s[k] is None:
                cells.append(f"{'—':>16}")
            else:
                cells.append(f"{s[k]:>9.3f} ±{se:<5.3f}" if se is not None else f"{s[k]:>16.3f}")
        lines.append(f"{name:8}" + "".join(f"{c:>16}" for c in cells))
    lines.append(
        f"(mean ± standard error over {summary['prompts']} held-out prompts; KL in nats, "
        f"estimator k1 on the policy's samples)"
    )
    return "\n".join(lines)
