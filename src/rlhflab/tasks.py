"""Tasks: prompts (train and eval splits) and the gold reward only the experimenter knows.

Built in: ``sentiment`` (continue a sentence opening from the Brown Corpus; gold reward is
the VADER compound score of the continuation, as in the sentiment task of Ziegler et al.
2019). A task of your own is a function returning a ``Task``, named on the command line as
``module:function``.
"""

from __future__ import annotations

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
        description="Continue a sentence opening positively; gold = VADER compound of the continuation.",
        heldout_text=ASSETS / "heldout.txt",
    )


BUILTIN: dict[str, Callable[[], Task]] = {"sentiment": sentiment}


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
