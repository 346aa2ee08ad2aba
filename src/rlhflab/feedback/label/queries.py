"""Which pairs to ask people about.

``random`` queues pairs of continuations of the same prompt, sampled from the current policy.
``disagreement`` (Christiano et al. 2017, section 2.2.4) samples ``pool`` times as many
candidate pairs, has every member of a reward-model ensemble predict the preference
P_i(a > b) = sigmoid(r_i(a) - r_i(b)), and queues the pairs whose predictions vary most across
members: where a label teaches the reward model most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from rlhflab.core.config import SamplingConfig, check, sampling_field
from rlhflab.core.errors import RlhflabError
from rlhflab.feedback.simulated import sample_pair_batches
from rlhflab.models.batching import prompt_stream
from rlhflab.models.loading import Loader, check_fits
from rlhflab.reward.model import RewardModel

Strategy = Literal["random", "disagreement"]


@dataclass(frozen=True)
class QueryConfig:
    count: int = 100
    """Pairs to queue."""
    query: Strategy = "random"
    """'random', or 'disagreement': the pairs the reward-model ensemble (--ensemble) disagrees on most."""
    pool: int = 4
    """disagreement: candidate pairs sampled per pair queued."""
    batch_size: int = 64
    """Prompts sampled at once."""
    overlap: float = 0.0
    """Share of the queued pairs shown to every labeller (for inter-labeller agreement)."""
    seed: int = 0
    """Seed of prompt order and sampling."""
    sampling: SamplingConfig = sampling_field()
    """Sample length and temperature (log-probabilities and KL use the same temperature)."""

    def __post_init__(self) -> None:
        check(self.count >= 1, "count", self.count, ">= 1")
        check(self.query in ("random", "disagreement"), "query", self.query, "'random' or 'disagreement'")
        check(self.pool >= 1, "pool", self.pool, ">= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(0 <= self.overlap <= 1, "overlap", self.overlap, "in [0, 1]")


def preference_variance(scores_a: torch.Tensor, scores_b: torch.Tensor) -> torch.Tensor:
    """[k, N] member rewards of the two continuations -> [N] variance over members of the
    predicted preference sigmoid(r_i(a) - r_i(b)) (population variance; 0 for one member)."""
    if scores_a.shape != scores_b.shape or scores_a.dim() != 2:
        raise ValueError(f"expected two [k, N] tensors, got {tuple(scores_a.shape)} and {tuple(scores_b.shape)}")
    return torch.sigmoid(scores_a - scores_b).var(0, unbiased=False)


def candidate_pairs(model, tokenizer, task, n: int, config: QueryConfig, generator: torch.Generator, progress=True):
    """``n`` prompts' pairs of continuations from ``model`` (fewer: empty or identical pairs are dropped)."""
    prompts = prompt_stream(task.train_prompts, n, generator)
    rows = []
    bar = tqdm(total=n, desc="queries: sample pairs", unit="pair", disable=not progress)
    batches = sample_pair_batches(
        model,
        tokenizer,
        task,
        prompts,
        config.sampling.max_new_tokens,
        config.sampling.temperature,
        config.batch_size,
        generator,
    )
    for batch, a, b, gold_a, gold_b in batches:
        for prompt, ta, tb, ga, gb in zip(batch, a, b, gold_a, gold_b):
            if ta.strip() and tb.strip() and ta != tb:
                gold = {"gold_a": None, "gold_b": None} if ga is None else {"gold_a": float(ga), "gold_b": float(gb)}
                rows.append({"prompt": prompt, "a": ta, "b": tb, **gold})
        bar.update(len(batch))
    bar.close()
    return rows


def select_by_disagreement(rows: list[dict], reward, count: int) -> list[dict]:
    """The ``count`` rows the ensemble ``reward`` (a RewardModel) disagrees on most, most first;
    each gets its variance as ``priority``."""
    if len(reward.members) < 2:
        raise RlhflabError(
            "--query disagreement needs a reward-model ensemble of at least 2 members "
            "(train one with 'rlhflab reward train --ensemble 3')"
        )
    prompts = [r["prompt"] for r in rows]
    scores_a = reward.member_scores(prompts, [r["a"] for r in rows])
    scores_b = reward.member_scores(prompts, [r["b"] for r in rows])
    variance = preference_variance(scores_a, scores_b)
    order = torch.argsort(variance, descending=True, stable=True)[:count].tolist()
    return [{**rows[i], "priority": float(variance[i])} for i in order]


def make_queries(model_name: str, task, config: QueryConfig, ensemble=None, loader: Loader = Loader(), progress=True):
    """Rows for :meth:`LabelStore.add_queries`, sampled from ``model_name`` and chosen by ``config.query``."""
    if config.query == "disagreement" and ensemble is None:
        raise RlhflabError("--query disagreement needs --ensemble REWARD_MODEL_DIR (an ensemble of >= 2 members)")
    reward = RewardModel.load(ensemble) if config.query == "disagreement" else None
    model, tokenizer = loader.policy(model_name)
    model.eval()
    check_fits(model, tokenizer, task.train_prompts, config.sampling.max_new_tokens)
    g = torch.Generator().manual_seed(config.seed)
    n = config.count * (config.pool if reward is not None else 1)
    rows = candidate_pairs(model, tokenizer, task, n, config, g, progress)
    if not rows:
        raise RlhflabError("every sampled pair was empty or identical; nothing to queue")
    if reward is not None:
        return select_by_disagreement(rows, reward, config.count)
    return rows[: config.count]
