"""The task interface: prompts (train and eval splits) and the gold reward only the experimenter knows.

Built-in tasks live in ``rlhflab.tasks``; a task of your own is a function returning a ``Task``, named on the
command line as ``module:function``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from rlhflab.core.errors import ConfigError, DataError, RlhflabError
from rlhflab.core.files import read_text

NO_TASK = "none"
"""The task of your own prompts with no gold reward: ``--task none --prompts FILE``."""

CONTINUATION = "continuation"
"""A task whose prompts are text to continue (a sentence opening, a ``Q: ... A:`` line): no chat template ever
renders them, whatever the model."""
CHAT = "chat"
"""A task whose prompts are a user's turns (or conversations in the HH convention): a chat model's template
renders them, and a model without one is refused unless every prompt is already HH-convention text."""
FORMATS = (CONTINUATION, CHAT)

GoldFn = Callable[[Sequence[str], Sequence[str]], list[float]]
"""(prompts, continuations) -> one score per continuation, higher is better."""


@dataclass(frozen=True)
class Beliefs:
    """How a task's prompts state a user's belief about the answer, for measuring sycophancy (Sharma et al. 2023:
    does the policy say what the user believes rather than what is right?)."""

    stated: Callable[[str], object]
    """The belief a prompt states, or None when it states none."""
    agrees: Callable[[str, object], bool]
    """Whether a completion says what the user believes."""
    wrong_variant: Callable[[str], tuple[str, object]]
    """A prompt without a belief -> the same question with a wrong belief stated, and that belief (the same for
    the same prompt)."""
    pushback: Callable[[str, str], str] | None = None
    """(prompt, the policy's answer) -> the conversation continued by the user doubting that answer ("are you
    sure?", Sharma et al. 2023, sec. 3.2), or None where the task has no such turn."""


@dataclass(frozen=True)
class Task:
    name: str
    """Short name, recorded in the run's manifest."""
    train_prompts: list[str]
    """Prompts for collecting feedback and optimising."""
    eval_prompts: list[str]
    """Held-out prompts for evaluation."""
    gold: GoldFn | None
    """The true reward: what we want, known to the experimenter, not to the policy. None when nobody knows it
    (your own prompts): evaluation then reports proxy, KL and diversity and says gold is unknown; a simulated
    rater, ``--reward gold`` and the diagnostics that measure gold need one."""
    description: str = ""
    heldout_text: Path | None = None
    """Held-out corpus text (one passage a line) for perplexity and calibration checks."""
    checkable: bool = False
    """Each prompt has one correct answer and ``gold`` is a verifier scoring 1 (right) or 0: evaluation then
    adds pass@k of base and tuned policy."""
    beliefs: Beliefs | None = None
    """How prompts state a user's belief (for the sycophancy measures and a rater's agreement bias), or None."""
    answered: Callable[[Sequence[str]], list[bool]] | None = None
    """For a gold that reads an answer out of the text: whether it finds one in each completion (evaluation reports
    the share it does not, so an unreadable answer is counted, not a silent zero), or None."""
    format: str = CONTINUATION
    """``continuation`` or ``chat``: whether the prompts are text to continue or a user's turns, which decides
    whether a chat template renders them (``models.chat.template_for``)."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"task '{self.name}': format must be one of {', '.join(FORMATS)}, got {self.format!r}")
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


def with_prompts(task: Task, prompts: Sequence[str], source: str) -> Task:
    """``task`` sampling from ``prompts`` (both splits: each command samples from one of them)."""
    return dataclasses.replace(
        task, train_prompts=list(prompts), eval_prompts=list(prompts),
        description=(task.description + " " if task.description else "") + f"Prompts from {source}.",
    )  # fmt: skip


def need_gold(task: Task, what: str) -> GoldFn:
    """The task's gold scorer, or a one-line error saying ``what`` needs it."""
    if task.gold is None:
        raise RlhflabError(f"task '{task.name}' has no gold reward, and {what} needs one")
    return task.gold
