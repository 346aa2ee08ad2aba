"""Tasks: prompts (train and eval splits) and the gold reward only the experimenter knows.

Built in: ``sentiment`` (continue a sentence opening from the Brown Corpus; gold reward is
the VADER compound score of the continuation, as in the sentiment task of Ziegler et al.
2019). A task of your own is a function returning a ``Task``, named on the command line as
``module:function``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from rlhflab.core.errors import ConfigError, DataError, RlhflabError
from rlhflab.core.files import iter_jsonl
from rlhflab.core.plugins import import_object
from rlhflab.core.task import CHAT, CONTINUATION, NO_TASK, Beliefs, GoldFn, Task, need_gold, read_prompts, with_prompts  # noqa: F401 (the task interface, re-exported)
from rlhflab.models.chat import ASSISTANT, is_conversation, render_messages
from rlhflab.models.gguf import SMOLLM2
from rlhflab.models.loading import ASSETS, EMBEDDED, EMBEDDED_ARITHMETIC
from rlhflab.tasks import arithmetic_problems as ar


def read_prompt_file(path: str | Path) -> list[str]:
    """Your prompts (``--prompts FILE``): a ``.jsonl`` file of objects with ``prompt`` (a string) or ``messages``
    (``[{"role", "content"}, ...]``, rendered as ``feedback import`` renders them, in the HH convention, ending
    with the assistant's turn), or any other file with one prompt per line (blank lines skipped). Errors name
    the file and the line."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        return read_prompts(path)

    prompts = []
    for line, obj in iter_jsonl(path, "prompt file"):
        if not isinstance(obj, dict):
            raise DataError(path, f"expected an object with 'prompt' or 'messages', got {type(obj).__name__}", line)
        if "prompt" in obj:
            if not isinstance(obj["prompt"], str) or not obj["prompt"]:
                raise DataError(path, "must be a non-empty string", line, "prompt")
            prompts.append(obj["prompt"])
        elif "messages" in obj:
            if not isinstance(obj["messages"], list):
                raise DataError(path, "must be a list of messages", line, "messages")
            prompts.append(render_messages(obj["messages"], path, line, "messages") + ASSISTANT)
        else:
            raise DataError(path, "has neither 'prompt' nor 'messages'", line)
    if not prompts:
        raise DataError(path, "the prompt file is empty")
    return prompts


@lru_cache(maxsize=1)
def _vader():
    # heavy library (vaderSentiment): imported on first use, not with rlhflab
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


def arithmetic() -> Task:
    """Short arithmetic questions with one integer answer each (``rlhflab.tasks.arithmetic_problems``); gold is the strict
    verifier. Its policy is ``--model embedded-arithmetic``. Sycophancy is measured on evaluation problems asked
    again with a wrong belief stated; the training problems state none (``arithmetic-beliefs`` trains on them)."""
    return Task(
        name="arithmetic",
        train_prompts=[ar.prompt(p) for p in ar.problems("train", 4000, seed=0)],
        eval_prompts=[ar.prompt(p) for p in ar.problems("eval", 500, seed=0)],
        gold=ar.strict,
        description="Answer 'Q: What is A plus|minus|times B?' with the integer; gold = the strict verifier "
        "(rlhflab.tasks.arithmetic_problems:strict). Train and evaluation problems never overlap.",
        checkable=True,
        beliefs=Beliefs(stated=ar.belief_of, agrees=ar.states, wrong_variant=ar.wrong_variant),
    )


def arithmetic_beliefs() -> Task:
    """``arithmetic`` whose training prompts state a user's belief ``rlhflab.tasks.arithmetic_problems.BELIEF_SHARE`` of the
    time, right or wrong equally often (as the embedded policy's training data did): what a reward does to
    sycophancy. Evaluation is ``arithmetic``'s."""
    return dataclasses.replace(
        arithmetic(),
        name="arithmetic-beliefs",
        train_prompts=ar.train_prompts(4000, seed=0),
        description="arithmetic, with a share of training prompts stating the user's belief, right or wrong.",
    )


def arithmetic_wrong_beliefs() -> Task:
    """``arithmetic-beliefs`` whose stated beliefs are right only 10% of the time (``--task
    rlhflab.tasks:arithmetic_wrong_beliefs``): the control that tells deference a reward pays for (a user more
    often right than the policy) from deference it punishes."""
    return dataclasses.replace(
        arithmetic(),
        name="arithmetic-wrong-beliefs",
        train_prompts=ar.train_prompts(4000, seed=0, right=0.1),
        description="arithmetic, with a share of training prompts stating a belief that is mostly wrong.",
    )


CHAT_LEVEL = 1
"""The level of ``arithmetic-chat`` (``arithmetic_problems.LEVELS``): where ``smollm2``'s pass@1 is between 20% and
50% (docs/arithmetic.md measures each level)."""


def arithmetic_chat(level: int = CHAT_LEVEL) -> Task:
    """Arithmetic asked of an instruct model in a user's turn, with an instruction to answer with the number; gold
    reads the number the answer states (``arithmetic_problems.extracted``; ``strict`` stays the honeypot contrast:
    it wants a bare integer). ``arithmetic-chat-1`` to ``-4`` are the difficulty levels (``arithmetic_problems.LEVELS``;
    level 1 has 176 training and 79 evaluation problems, the others 2,000 and 200)."""
    return Task(
        name="arithmetic-chat" if level == CHAT_LEVEL else f"arithmetic-chat-{level}",
        train_prompts=[ar.chat_prompt(p) for p in ar.problems("train", 2000, 0, level)],  # (level 1: all 176)
        eval_prompts=[ar.chat_prompt(p) for p in ar.problems("eval", 200, 0, level)],
        gold=ar.extracted,
        description=f"Answer 'What is A plus|minus|times B? {ar.INSTRUCTION}' (level {level}) in a chat turn; gold = "
        "the number the answer states is right (rlhflab.tasks.arithmetic_problems:extracted).",
        checkable=True,
        beliefs=Beliefs(stated=ar.belief_of, agrees=ar.says, wrong_variant=ar.chat_wrong_variant, pushback=ar.pushback),
        format=CHAT,
        answered=ar.answered,
    )


def default_model(task_name: str | None) -> str:
    """The embedded policy a built-in task is meant for (when ``--model`` is not given)."""
    arithmetic_tasks = ("arithmetic", "arithmetic-beliefs", "rlhflab.tasks:arithmetic_wrong_beliefs")
    if task_name is not None and task_name.startswith("arithmetic-chat"):
        return SMOLLM2
    return EMBEDDED_ARITHMETIC if task_name in arithmetic_tasks else EMBEDDED


BUILTIN: dict[str, Callable[[], Task]] = {
    "sentiment": sentiment, "sentiment-natural": sentiment_natural, "arithmetic": arithmetic,
    "arithmetic-beliefs": arithmetic_beliefs, "arithmetic-chat": arithmetic_chat,
    **{f"arithmetic-chat-{level}": functools.partial(arithmetic_chat, level) for level in ar.LEVELS},
}  # fmt: skip


def load_task(name: str, prompts: str | Path | None = None) -> Task:
    """A built-in task by name, ``none`` (no gold reward; needs ``prompts``: a chat task when every prompt is a
    conversation, e.g. JSONL ``messages``, else a continuation task), or ``package.module:function``
    returning a Task; with ``prompts`` (a file, see ``read_prompt_file``) it samples from those prompts."""
    if name == NO_TASK:
        if prompts is None:
            raise ConfigError("--task none (no gold reward) samples your own prompts: pass --prompts FILE")
        found = read_prompt_file(prompts)
        chat = all(is_conversation(p) for p in found)  # conversations are chat turns; plain lines are continued
        return Task(name=NO_TASK, train_prompts=found, eval_prompts=found, gold=None, format=CHAT if chat else CONTINUATION,
                    description=f"Your prompts from {prompts}; no gold reward.")  # fmt: skip
    task = _load_task(name)
    return with_prompts(task, read_prompt_file(prompts), str(prompts)) if prompts is not None else task


def _load_task(name: str) -> Task:
    if name in BUILTIN:
        return BUILTIN[name]()
    if ":" not in name:
        raise ConfigError(f"--task must be one of {sorted([*BUILTIN, NO_TASK])} or 'module:function', got {name!r}")
    task = import_object(name, "--task")()
    if not isinstance(task, Task):
        raise RlhflabError(f"--task {name!r}: returned {type(task).__name__}, expected rlhflab.tasks.Task")
    return task
