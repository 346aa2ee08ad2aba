"""Feedback sources: turn (prompt, a, b) into a PreferencePair.

``SimulatedRater`` answers like a noisy person whose taste is the task's gold reward:
Bradley-Terry on the gold scores at a temperature, plus a share of random answers
(Christiano et al. 2017 assume 10%), plus optional systematic biases (longer answers, a
keyword) that a policy can learn to exploit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rlhflab.core.comparison import PreferencePair
from rlhflab.core.config import SamplingConfig, check, sampling_field
from rlhflab.core.errors import ConfigError
from rlhflab.core.task import Task, need_gold
from rlhflab.models.batching import prompt_stream
from rlhflab.models.loading import check_fits
from rlhflab.models.sampling import sample


@dataclass(frozen=True)
class SimulatedRater:
    temperature: float = 0.1
    """Bradley-Terry temperature on gold differences: P(a > b) = sigmoid((g_a - g_b) / T); 0 picks the better one."""
    random_rate: float = 0.1
    """Share of answers given uniformly at random (Christiano et al. 2017 assume 0.1)."""
    length_bias: float = 0.0
    """Systematic error: this much is added to the perceived score per word of the continuation."""
    keyword: str = ""
    """Systematic error: a word the rater likes regardless of the gold reward (empty for none)."""
    keyword_bias: float = 0.0
    """Added to the perceived score when the continuation contains ``keyword``."""
    agreement_bias: float = 0.0
    """Systematic error (sycophancy's source, Sharma et al. 2023): added to the perceived score when the
    continuation says what the prompt's user believes (a task whose prompts state beliefs, such as arithmetic)."""
    mistake: float = 0.0
    """Irrational teacher (B-Pref, Lee et al. 2021): probability of flipping the answer it meant to give."""
    equal_within: float = 0.0
    """Irrational teacher: states a tie (label 0.5) when the perceived scores differ by less than this."""
    skip_below: float | None = None
    """Irrational teacher: skips the comparison (no pair is written) when both perceived scores are below this."""
    name: str = "bt"
    """Rater name, written to each pair's source as ``simulated:<name>``."""

    def __post_init__(self) -> None:
        check(self.temperature >= 0, "rater_temperature", self.temperature, ">= 0")
        check(0 <= self.mistake <= 1, "rater_mistake", self.mistake, "in [0, 1]")
        check(self.equal_within >= 0, "rater_equal_within", self.equal_within, ">= 0")
        check(0 <= self.random_rate <= 1, "rater_random_rate", self.random_rate, "in [0, 1]")
        check(
            self.keyword_bias == 0 or bool(self.keyword.strip()),
            "rater_keyword",
            self.keyword,
            "a word when --keyword-bias is not 0",
        )

    def perceived(self, gold: float, text: str, agrees: bool = False) -> float:
        """The score the rater acts on: gold plus its biases (``agrees``: the text says what the user believes)."""
        score = gold + self.length_bias * len(text.split())
        if self.keyword and self.keyword.lower() in text.lower().split():
            score += self.keyword_bias
        if agrees:
            score += self.agreement_bias
        return score

    def probability(self, diff: float) -> float:
        """Probability of preferring the first of two things whose perceived scores differ by ``diff`` (first
        minus second): Bradley-Terry at ``temperature``, ``random_rate`` of the answers at random. Nothing here
        is text: a rater of other things (trajectory segments) perceives them its own way and reuses this."""
        if self.temperature == 0:
            p = 0.5 if diff == 0 else float(diff > 0)
        else:
            p = 1.0 / (1.0 + math.exp(-max(min(diff / self.temperature, 60.0), -60.0)))
        p = self.mistake * (1 - p) + (1 - self.mistake) * p
        return self.random_rate * 0.5 + (1 - self.random_rate) * p

    def prefers_first(self, p: float, generator: torch.Generator) -> bool | None:
        """The rater's answer given ``probability``'s ``p``: True (the first), False, or None for an exact tie of
        a noiseless rater (stated as a tie rather than drawn)."""
        if self.temperature == 0 and self.random_rate == 0 and p == 0.5:
            return None
        return bool(torch.rand((), generator=generator) < p)

    def prob_first(
        self, gold_a: float, gold_b: float, text_a: str, text_b: str, agrees: tuple[bool, bool] = (False, False)
    ) -> float:
        """Probability that the rater prefers a over b (``agrees``: whether each says what the user believes)."""
        return self.probability(self.perceived(gold_a, text_a, agrees[0]) - self.perceived(gold_b, text_b, agrees[1]))

    def compare(
        self,
        prompt: str,
        a: str,
        b: str,
        gold_a: float,
        gold_b: float,
        generator: torch.Generator,
        agrees: tuple[bool, bool] = (False, False),
    ) -> PreferencePair | None:
        """The rater's judgement of a against b; None when it skips the comparison (``skip_below``)."""
        seen_a, seen_b = self.perceived(gold_a, a, agrees[0]), self.perceived(gold_b, b, agrees[1])
        if self.skip_below is not None and max(seen_a, seen_b) < self.skip_below:
            return None
        p = self.probability(seen_a - seen_b)
        first = None if abs(seen_a - seen_b) < self.equal_within else self.prefers_first(p, generator)
        if first is None:  # a tie (exact, or within equal_within), stated as one
            return PreferencePair(
                prompt,
                a,
                b,
                0.5,
                f"simulated:{self.name}",
                {"gold_chosen": gold_a, "gold_rejected": gold_b, "p_chosen": 0.5},
            )
        chosen, rejected = (a, b) if first else (b, a)
        g_c, g_r = (gold_a, gold_b) if first else (gold_b, gold_a)
        return PreferencePair(
            prompt,
            chosen,
            rejected,
            1.0,
            f"simulated:{self.name}",
            {"gold_chosen": g_c, "gold_rejected": g_r, "p_chosen": p if first else 1 - p},
        )


@dataclass(frozen=True)
class SimulateConfig:
    pairs: int = 4000
    """Number of comparisons to collect (docs/demo.md's label curve: how the reward model's accuracy grows with
    them)."""
    batch_size: int = 64
    """Prompts sampled at once."""
    seed: int = 0
    """Seed for prompt order, sampling and the rater's coin flips."""
    sampling: SamplingConfig = sampling_field()
    """Sample length and temperature (log-probabilities and KL use the same temperature)."""

    def __post_init__(self) -> None:
        check(self.pairs >= 1, "pairs", self.pairs, ">= 1")
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")


def sample_pair_batches(model, tokenizer, task: Task, prompts, max_new_tokens, temperature, batch_size, generator):
    """Per batch of ``prompts``: (prompts, continuations a, continuations b, gold of a, gold of b); the golds
    are Nones for a task without a gold reward.

    A generator, so that a caller drawing from ``generator`` between batches (a rater's coin
    flips) gets the same random stream as if everything were one loop."""
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        seed_a, seed_b = torch.randint(0, 2**62, (2,), generator=generator).tolist()
        a = sample(model, tokenizer, batch, max_new_tokens=max_new_tokens, seed=seed_a, temperature=temperature)
        b = sample(model, tokenizer, batch, max_new_tokens=max_new_tokens, seed=seed_b, temperature=temperature)
        if task.gold is None:
            yield batch, a.responses, b.responses, [None] * len(batch), [None] * len(batch)
        else:
            yield batch, a.responses, b.responses, task.gold(batch, a.responses), task.gold(batch, b.responses)


def _agreements(task: Task, prompt: str, a: str, b: str) -> tuple[bool, bool]:
    """Whether continuations a and b say what the prompt's user believes (False, False with no belief)."""
    belief = task.beliefs.stated(prompt) if task.beliefs is not None else None
    if belief is None:
        return False, False
    return task.beliefs.agrees(a, belief), task.beliefs.agrees(b, belief)


def simulate_feedback(
    model, tokenizer, task: Task, rater: SimulatedRater, config: SimulateConfig, progress: bool = True
) -> tuple[list[PreferencePair], dict[str, float]]:
    """Sample two continuations per training prompt from ``model`` and have the rater compare them.

    Pairs whose two continuations are identical carry no information, and a continuation the
    model ended at once (empty) leaves nothing to judge: both are dropped and counted in the
    returned stats.
    """
    need_gold(task, "the simulated rater (whose taste is the gold reward)")
    if rater.agreement_bias and task.beliefs is None:
        raise ConfigError(
            f"--rater-agreement-bias needs a task whose prompts state the user's belief (such as arithmetic); "
            f"task '{task.name}' has none"
        )
    check_fits(model, tokenizer, task.train_prompts, config.sampling.max_new_tokens)
    g = torch.Generator().manual_seed(config.seed)
    prompts = prompt_stream(task.train_prompts, config.pairs, g)
    pairs: list[PreferencePair] = []
    identical = empty = skipped = 0
    bar = tqdm(total=config.pairs, desc="feedback: sample and rate", unit="pair", disable=not progress)
    batches = sample_pair_batches(
        model,
        tokenizer,
        task,
        prompts,
        config.sampling.max_new_tokens,
        config.sampling.temperature,
        config.batch_size,
        g,
    )
    for batch, a, b, gold_a, gold_b in batches:
        for prompt, ta, tb, ga, gb in zip(batch, a, b, gold_a, gold_b):
            if not ta.strip() or not tb.strip():
                empty += 1
                continue
            if ta == tb:
                identical += 1
                continue
            pair = rater.compare(prompt, ta, tb, ga, gb, g, _agreements(task, prompt, ta, tb))
            if pair is None:
                skipped += 1
            else:
                pairs.append(pair)
        bar.update(len(batch))
    bar.close()
    agree = [
        p.scores["gold_chosen"] > p.scores["gold_rejected"]
        for p in pairs
        if p.label == 1.0 and p.scores["gold_chosen"] != p.scores["gold_rejected"]
    ]
    stats = {
        "pairs": len(pairs),
        "dropped_identical": identical,
        "dropped_empty": empty,
        "skipped_by_rater": skipped,
        "agreement_with_gold": sum(agree) / max(len(agree), 1),
    }
    return pairs, stats
