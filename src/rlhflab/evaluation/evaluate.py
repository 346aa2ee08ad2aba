"""Evaluate a tuned policy against its base policy on held-out prompts.

For each policy: mean gold reward, mean proxy reward (when a reward model is given), the
KL to the base policy, distinct-1/2 and mean length of its samples. The KL is the k1
estimator, mean over the tuned policy's own samples of sum_t log pi(y_t | .) / pi_base(y_t | .)
(unbiased; its standard error is reported beside it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from rlhflab.core.config import SamplingConfig, check, sampling_field
from rlhflab.core.errors import RlhflabError
from rlhflab.core.scores import checked_scores
from rlhflab.core.task import Task
from rlhflab.evaluation.diagnostics import distinct_n, mean_and_stderr
from rlhflab.evaluation.diagnostics.exploitation import length_share_of_gain
from rlhflab.evaluation.diagnostics.pass_at_k import crossing, default_ks, newly_solved, pass_at_k_curve
from rlhflab.evaluation.diagnostics.stats import spearman
from rlhflab.evaluation.diagnostics.verifiable import sycophancy
from rlhflab.models.loading import Loader, check_fits, resolve_model
from rlhflab.models.samplers import PolicySampler, load_sampler

KL_ESTIMATOR = "k1: mean over the policy's samples of sum_t log pi(y_t|x,y<t) - log pi_base(y_t|x,y<t) (unbiased)"
BON_KL_ESTIMATOR = (
    "best-of-n: mean of log n + (n-1) log F(r) over the selected samples, F the empirical reward CDF of all "
    "candidates (kl_bound: the analytic log n - (n-1)/n)"
)


@dataclass(frozen=True)
class EvalConfig:
    num_prompts: int = 500
    """Held-out prompts to evaluate on, the first this many (0 = all of the task's evaluation prompts, or of
    --prompts FILE)."""
    batch_size: int = 64
    """Prompts sampled at once."""
    seed: int = 1
    """Seed of the sampling noise (the same for both policies)."""
    pass_k_samples: int = 64
    """For a task with checkable answers: samples per problem for pass@k (k = 1, 2, 4, ... up to this)."""
    pass_k_prompts: int = 100
    """For a task with checkable answers: how many of the evaluation problems pass@k samples (the first ones)."""
    sampling: SamplingConfig = sampling_field()
    """Sample length and temperature (log-probabilities and KL use the same temperature)."""

    def __post_init__(self) -> None:
        check(self.num_prompts >= 0, "num_prompts", self.num_prompts, ">= 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(self.pass_k_samples >= 1, "pass_k_samples", self.pass_k_samples, ">= 1")
        check(self.pass_k_prompts >= 1, "pass_k_prompts", self.pass_k_prompts, ">= 1")


@torch.no_grad()
def _samples(sampler, prompts, config: EvalConfig, desc: str = "", progress: bool = True):
    """Continuations of ``prompts`` from ``sampler``, with its per-sample entropy and KL (or Nones)."""
    texts, entropies, kls = [], [], []
    g = torch.Generator().manual_seed(config.seed)
    for start in tqdm(range(0, len(prompts), config.batch_size), desc=desc, unit="batch", disable=not progress):
        batch = prompts[start : start + config.batch_size]
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        out = sampler.sample(
            batch, max_new_tokens=config.sampling.max_new_tokens, seed=seed, temperature=config.sampling.temperature
        )
        texts.extend(out.texts)
        entropies.extend(out.entropy or [])
        kls.extend(out.kl or [])
    return texts, entropies or None, kls or None


def _stats(values: list[float] | None) -> tuple[float | None, float | None]:
    return mean_and_stderr(values) if values else (None, None)


@dataclass
class Side:
    """One sampler's evaluation: summary statistics and, per prompt, its text and scores."""

    stats: dict
    texts: list[str]
    gold: list[float] | None
    """None when the task has no gold reward."""
    proxy: list[float]
    kl: list[float] | None
    verdicts: list[list[bool]] | None = None
    """For a task with checkable answers: the verifier's verdict on each of n samples of each problem."""


def evaluate_side(
    sampler,
    prompts,
    task: Task,
    config: EvalConfig,
    proxy: Callable | None = None,
    desc: str = "evaluate",
    progress: bool = True,
) -> Side:
    texts, entropy, kls = _samples(sampler, prompts, config, desc, progress)
    g = None
    if task.gold is not None:
        g = checked_scores(task.gold(prompts, texts), len(texts), f"the gold scorer of task '{task.name}'").tolist()
    p = [float(x) for x in proxy(prompts, texts)] if proxy is not None else []
    stats: dict = {}
    stats["gold"], stats["gold_stderr"] = mean_and_stderr(g) if g is not None else (None, None)
    if proxy is not None:
        stats["proxy"], stats["proxy_stderr"] = mean_and_stderr(p)
        # how well the proxy ranks these samples as gold does (on base samples: the reward model's quality
        # where it was trained; on tuned samples: where the policy took it)
        rho = spearman(p, g) if g is not None else math.nan
        stats["proxy_gold_spearman"] = rho if math.isfinite(rho) else None  # None: one side constant, or no gold
    stats["distinct_1"], stats["distinct_2"] = distinct_n(texts, 1), distinct_n(texts, 2)
    stats["words"] = sum(len(t.split()) for t in texts) / max(len(texts), 1)
    stats["entropy"], stats["entropy_stderr"] = _stats(entropy)
    stats["kl"], stats["kl_stderr"] = _stats(kls)
    if task.answered is not None:  # answers the gold could not read: counted, not a silent zero
        stats["unanswered"] = 1.0 - sum(task.answered(texts)) / max(len(texts), 1)
    return Side(stats, texts, g, p, kls)


def pass_at_k_side(sampler, task: Task, config: EvalConfig, desc: str, progress: bool = True) -> list[list[bool]]:
    """[problems][n] verdicts of the task's verifier on n = ``pass_k_samples`` samples of each of the first
    ``pass_k_prompts`` evaluation problems (the sampling seeded as the rest of the evaluation)."""
    problems = eval_prompts(task, config)[: config.pass_k_prompts]
    n = config.pass_k_samples
    repeated = [p for p in problems for _ in range(n)]
    texts, _, _ = _samples(sampler, repeated, config, desc, progress)
    scores = checked_scores(task.gold(repeated, texts), len(texts), f"the verifier of task '{task.name}'").tolist()
    return [[s > 0.5 for s in scores[i * n : (i + 1) * n]] for i in range(len(problems))]


def sycophancy_side(sampler, task: Task, prompts: list[str], plain_gold: list[float], config: EvalConfig,
                    desc: str, progress: bool = True, plain_texts: list[str] | None = None) -> dict:  # fmt: skip
    """Sycophancy measures (``diagnostics.verifiable.sycophancy``): each prompt that states no belief asked again
    with a wrong belief stated (``task.beliefs.wrong_variant``), against the verdicts on the plain prompts; with
    ``plain_texts`` and a task that has a ``pushback`` turn, each right plain answer doubted by the user ("are you
    sure?"): ``wavers_when_doubted`` is the share of them not right any more."""
    beliefs = task.beliefs
    keep = [i for i, p in enumerate(prompts) if beliefs.stated(p) is None]
    if not keep:
        raise ValueError(f"every evaluation prompt of task '{task.name}' already states a belief")
    variants = [beliefs.wrong_variant(prompts[i]) for i in keep]
    asked = [v for v, _ in variants]
    texts, _, _ = _samples(sampler, asked, config, desc, progress)
    right = checked_scores(task.gold(asked, texts), len(texts), f"the gold scorer of task '{task.name}'").tolist()
    out = sycophancy(
        [plain_gold[i] > 0.5 for i in keep],
        [r > 0.5 for r in right],
        [beliefs.agrees(t, b) for t, (_, b) in zip(texts, variants)],
    )
    doubted = [i for i in keep if plain_gold[i] > 0.5]
    if beliefs.pushback is not None and plain_texts is not None and doubted:
        asked = [beliefs.pushback(prompts[i], plain_texts[i]) for i in doubted]
        texts, _, _ = _samples(sampler, asked, config, desc + " (are you sure?)", progress)
        still = checked_scores(task.gold(asked, texts), len(texts), f"the gold scorer of task '{task.name}'")
        out["doubted"] = len(doubted)
        out["wavers_when_doubted"], out["wavers_when_doubted_stderr"] = mean_and_stderr(
            [float(s <= 0.5) for s in still.tolist()])  # fmt: skip
    return out


def pass_at_k_summary(base: list[list[bool]], policy: list[list[bool]]) -> dict:
    """pass@k curves of both sides, where they cross, and the share of newly solved problems."""
    ks = default_ks(len(base[0]))
    b, p = pass_at_k_curve(base, ks), pass_at_k_curve(policy, ks)
    return {"base": b, "policy": p, "crossing_k": crossing(b, p), "newly_solved": newly_solved(base, policy),
            "problems": len(base), "samples": len(base[0])}  # fmt: skip


def eval_prompts(task: Task, config: EvalConfig) -> list[str]:
    return task.eval_prompts[: config.num_prompts] if config.num_prompts else list(task.eval_prompts)


def evaluate_base(
    base_name: str,
    task: Task,
    config: EvalConfig,
    proxy: Callable | None = None,
    loader: Loader = Loader(),
    progress: bool = True,
) -> Side:
    """The base policy's side of an evaluation (computed once when several policies are compared)."""
    prompts = eval_prompts(task, config)
    base, tokenizer = loader.policy(base_name)
    check_fits(base, tokenizer, prompts, config.sampling.max_new_tokens)
    sampler = PolicySampler(base, tokenizer)
    side = evaluate_side(sampler, prompts, task, config, proxy, "evaluate: base", progress)
    side.stats["kl"], side.stats["kl_stderr"] = 0.0, 0.0
    if task.checkable:
        side.verdicts = pass_at_k_side(sampler, task, config, "pass@k: base", progress)
    if task.beliefs is not None and side.gold is not None:
        side.stats["sycophancy"] = sycophancy_side(sampler, task, prompts, side.gold, config, "sycophancy: base",
                                                   progress, side.texts)  # fmt: skip
    return side


def evaluate(
    policy_name: str,
    base_name: str,
    task: Task,
    config: EvalConfig,
    proxy: Callable | None = None,
    loader: Loader = Loader(),
    progress: bool = True,
    reward_loader: Callable[[str], Callable] | None = None,
    base: Side | None = None,
) -> tuple[dict, list[dict]]:
    """Compare ``policy_name`` (a policy folder, or a sampler such as best-of-n) with ``base_name``
    on the task's evaluation prompts.

    Returns (summary, samples): summary has a "base" and a "policy" entry; samples hold one
    row per prompt with both continuations and their scores. ``reward_loader`` turns a
    best-of-n sampler's reward name into a function; ``base`` reuses a base evaluation; ``loader`` loads the
    models (pad token, dtype, chat template).
    """
    prompts = eval_prompts(task, config)
    base = base or evaluate_base(base_name, task, config, proxy, loader, progress)
    single = same_model(str(policy_name), base_name)
    if single:  # one model: its evaluation is the base's, sampled once (the same seed would give the same samples)
        sampler, info = None, {"type": "policy", "prefix": None, "single_model": True}
        policy = Side(texts=base.texts, gold=base.gold, proxy=base.proxy, kl=None, stats=dict(base.stats),
                      verdicts=base.verdicts)  # fmt: skip
    else:
        sampler, info = load_sampler(policy_name, base_name, reward_loader or (lambda name: proxy), loader)
        policy = evaluate_side(sampler, prompts, task, config, proxy, "evaluate: policy", progress)
    if info["type"] == "best_of_n":
        policy.stats["kl_bound"] = info["kl_bound"]
    if task.checkable:
        if base.verdicts is None:
            raise ValueError("a reused base evaluation of a checkable task must carry its pass@k verdicts")
        if not single:
            policy.verdicts = pass_at_k_side(sampler, task, config, "pass@k: policy", progress)
        curves = pass_at_k_summary(base.verdicts, policy.verdicts)
        base.stats["pass_at_k"], policy.stats["pass_at_k"] = curves.pop("base"), curves.pop("policy")
    if not single and task.beliefs is not None and policy.gold is not None:  # (one model: the base's, in its stats)
        policy.stats["sycophancy"] = sycophancy_side(sampler, task, prompts, policy.gold, config,
                                                     "sycophancy: policy", progress, policy.texts)  # fmt: skip
    summary = {
        "task": task.name,
        "prompts": len(prompts),
        "kl_estimator": KL_ESTIMATOR if info["type"] == "policy" else BON_KL_ESTIMATOR,
        "base_model": base_name,
        "policy_model": str(policy_name),
        "sampler": info,
        "single_model": single,
        "base": base.stats,
        "policy": policy.stats,
        "gold_known": task.gold is not None,
        "gold_gain": policy.stats["gold"] - base.stats["gold"] if task.gold is not None else None,
    }
    if proxy is not None and not single:  # how much of the proxy's gain (and gold's) longer text alone explains
        lengths = [[len(t.split()) for t in side.texts] for side in (base, policy)]
        summary["length"] = {
            "proxy": length_share_of_gain(lengths[0], base.proxy, lengths[1], policy.proxy),
            "gold": length_share_of_gain(lengths[0], base.gold, lengths[1], policy.gold) if base.gold else None,
        }  # fmt: skip
    if task.checkable:
        summary["pass_at_k"] = curves  # where the curves cross, newly solved problems, n and problem count
    if "sycophancy" in policy.stats and "sycophancy" in base.stats:
        summary["sycophancy"] = {"base": base.stats["sycophancy"], "policy": policy.stats["sycophancy"]}
    rows = []
    for i, prompt in enumerate(prompts):
        row = {
            "prompt": prompt,
            "base": base.texts[i],
            "policy": policy.texts[i],
            "gold_base": base.gold[i] if base.gold is not None else None,
            "gold_policy": policy.gold[i] if policy.gold is not None else None,
            "kl_policy": policy.kl[i] if policy.kl else None,
        }
        if proxy is not None:
            row["proxy_base"], row["proxy_policy"] = base.proxy[i], policy.proxy[i]
        rows.append(row)
    return summary, rows


def same_model(policy_name: str, base_name: str) -> bool:
    """Whether the policy to evaluate is the base itself (the same name, or the same folder)."""
    if policy_name == base_name:
        return True
    try:
        return Path(resolve_model(policy_name)).resolve() == Path(resolve_model(base_name)).resolve()
    except RlhflabError:
        return False


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
    if summary.get("gold_known") is False:
        lines.append(f"(gold unknown: task '{summary['task']}' has no gold reward; proxy, KL and diversity only)")
    share = (summary.get("length") or {}).get("proxy") or {}
    if share.get("share") is not None:
        lines.append(f"length: {share['words_change']:+.1f} words; at the proxy's {share['slope']:+.4f} a word that "
                     f"explains {share['share']:.0%} of its {share['reward_change']:+.3f} gain")  # fmt: skip
    if "unanswered" in summary["base"]:
        lines.append("answers in which the gold finds no answer: " + ", ".join(
            f"{name} {summary[name]['unanswered']:.1%}" for name in ("base", "policy") if "unanswered" in summary[name]))  # fmt: skip
    pk = summary.get("pass_at_k")
    if pk:
        ks = sorted(summary["base"]["pass_at_k"], key=int)
        for name in ("base", "policy"):
            curve = summary[name]["pass_at_k"]
            lines.append(f"pass@k {name:7}" + "".join(f"  k={k}: {curve[k]:.3f}" for k in ks))
        cross = f"k = {pk['crossing_k']:.1f}" if pk["crossing_k"] is not None else "nowhere in range"
        lines.append(f"(pass@k from {pk['samples']} samples of {pk['problems']} problems; the tuned curve falls to the "
                     f"base's at {cross}; newly solved: {pk['newly_solved']:.1%} of problems)")  # fmt: skip
    syc = summary.get("sycophancy")
    if syc:
        for name in ("base", "policy"):
            x = syc[name]
            lines.append(
                f"sycophancy {name:7} accuracy {x['accuracy']:.3f}, with a wrong belief stated "
                f"{x['accuracy_wrong_belief']:.3f} (drop {x['drop']:+.3f} ±{x['drop_stderr']:.3f}), repeats the "
                f"belief {x['repeats_wrong_belief']:.3f} ±{x['repeats_wrong_belief_stderr']:.3f}"
                + (
                    f"; doubted ('are you sure?') after a right answer, wavers {x['wavers_when_doubted']:.3f} "
                    f"±{x['wavers_when_doubted_stderr']:.3f} of {x['doubted']}"
                    if "wavers_when_doubted" in x
                    else ""
                )
            )
    return "\n".join(lines)
