"""Tasks: prompts (train and eval splits) and the gold reward only the experimenter knows.

Built in: ``sentiment`` (continue a sentence opening from the Brown Corpus; gold reward is
the VADER compound score of the continuation, as in the sentiment task of Ziegler et al.
2019). A task of your own is a function returning a ``Task``, named on the command line as
``module:function``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from rlhflab.errors import ConfigError, DataError, RlhflabError
from rlhflab.files import read_text
from rlhflab.plugins import import_object
from rlhflab.rollout.models import ASSETS

GoldFn = Callable[[Sequence[str], Sequence[str]], list[float]]
"""(prompts, continuations) -> one score per continuation, higher is better."""


@dataclass(frozen=True)
class Task:
    name: str
    """Short name, recorded in the run's manifest."""
    train_prompts: list[str]
    """Prompts for collecting feedback and optimising."""
    eval_prompts: list[str]
    """Held-out prompts for evaluation."""
    gold: GoldFn
    """The true reward: what we want, known to the experimenter, not to the policy."""
    description: str = ""
    heldout_text: Path | None = None
    """Held-out corpus text (one passage a line) for perplexity and calibration checks."""

    def __post_init__(self) -> None:
        if not self.train_prompts:
            raise ConfigError(f"task '{self.name}' has no training prompts; it needs at least one")
        if not self.eval_prompts:
            raise ConfigError(f"task '{self.name}' has no evaluation prompts; it needs at least one")


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines are skipped."""
    prompts = [line for line in read_text(path, "prompt file").splitlines() if line.strip()]
    if not prompts:
        raise DataError(path, "the prompt file is empty")
    return prompts


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
    """VADER compound sentiment of each continuation alone, in [-1, 1]."""
    analyzer = _vader()
    return [analyzer.polarity_scores(text)["compound"] if text.strip() else 0.0 for text in continuations]


def sentiment() -> Task:
    root = ASSETS / "sentiment"
    return Task(
        name="sentiment",
        train_prompts=read_prompts(root / "prompts_train.txt"),
        eval_prompts=read_prompts(root / "prompts_eval.txt"),
        gold=vader_compound,
        description="Continue the opening of a review-like sentence; gold = VADER compound of the continuation.",
        heldout_text=ASSETS / "heldout_modern.txt",
    )


def repetition(text: str) -> float:
    """Share of the word bigrams of ``text`` that repeat an earlier bigram (0 for fewer than 2 words)."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    bigrams = list(zip(words, words[1:]))
    return 1.0 - len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def vader_minus_repetition(prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
    """VADER compound of each continuation minus its repetition (share of repeated word bigrams), in [-2, 1]."""
    return [c - repetition(t) for c, t in zip(vader_compound(prompts, continuations), continuations)]


def sentiment_natural() -> Task:
    """The sentiment task judged as a reader would: positive, and not by repeating itself.

    VADER alone is not a gold standard an optimiser cannot fool: it sums word valences, so a
    policy that repeats a word VADER likes ("United United United ...") scores 0.99. Any
    proxy that learned a few positive words agrees with VADER there, so optimising the proxy
    never lowers VADER, and reward over-optimisation cannot show (``rlhflab overopt`` on
    ``sentiment`` measures exactly that). This gold subtracts the share of repeated word
    bigrams: on the base policy's samples (which rarely repeat) it is VADER, so comparisons
    teach a proxy the same thing, but the degenerate text optimisation finds is penalised,
    as a human rater, or Gao et al.'s large gold reward model, would.
    """
    return dataclasses.replace(
        sentiment(),
        name="sentiment-natural",
        gold=vader_minus_repetition,
        description="Continue the opening of a review-like sentence; gold = VADER compound minus repeated bigrams.",
    )


BUILTIN: dict[str, Callable[[], Task]] = {"sentiment": sentiment, "sentiment-natural": sentiment_natural}


def load_task(name: str) -> Task:
    """A built-in task by name, or ``package.module:function`` returning a Task."""
    if name in BUILTIN:
        return BUILTIN[name]()
    if ":" not in name:
        raise ConfigError(f"--task must be one of {sorted(BUILTIN)} or 'module:function', got {name!r}")
    task = import_object(name, "--task")()
    if not isinstance(task, Task):
        raise RlhflabError(f"--task {name!r}: returned {type(task).__name__}, expected rlhflab.tasks.Task")
    return task
