"""What a stage works on, resolved once before it starts.

Every stage that samples (feedback, optimisation, evaluation, diagnostics) opens the same way: the prompts file
(given, or the run's own), the task on those prompts, the pad token, the dtype and the chat template (given, or
what an earlier stage of the run recorded), the model's tokenizer under that template, and the task's prompts
rendered by it. ``Setup.resolve`` does that once and the stage takes the result; the libraries below receive
its ``loader`` (``models.loading.Loader``) rather than reading a global setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhflab.core import distributed
from rlhflab.core.task import CHAT, Beliefs, Task
from rlhflab.models.chat import check_renders, configure, render, template_for
from rlhflab.models.loading import Loader, load_tokenizer
from rlhflab.run.rundir import RunDir
from rlhflab.tasks import load_task


@dataclass(frozen=True)
class Setup:
    model: str
    """The policy a stage samples (feedback, optimisation) or the base it compares with (evaluation)."""
    task_name: str
    """The task as named on the command line (recorded in the manifest)."""
    task: Task
    """The task on the stage's prompts, rendered by the chat template when the model's tokenizer has one."""
    prompts: str | None
    """The prompts file the task reads (``--prompts``, or the run's own ``prompts.jsonl``), or None."""
    loader: Loader
    """Pad token, dtype and chat template every model of the stage is loaded with."""
    tokenizer: Any
    """``model``'s tokenizer under the chat template (it renders pairs' prompts for the methods that learn from
    pairs)."""

    @classmethod
    def resolve(
        cls,
        run: RunDir,
        model: str,
        task: str,
        *,
        prompts: str | Path | None = None,
        pad_token: str | None = None,
        dtype: str | None = None,
        chat_template: str | None = None,
        read_prompts: bool = True,
    ) -> Setup:
        """The stage's inputs in ``run``: each setting as given, else as the run's latest stage recorded it
        (the chat template defaults to auto, the dtype to as saved; a continuation task is never rendered by a
        chat template, a chat task must be renderable: ``chat.template_for``, ``chat.check_renders``).
        ``read_prompts=False``: the stage samples no prompts (a method that learns from pairs), so no prompts file
        is read or recorded."""
        prompts = run.prompts(prompts) if read_prompts else None
        loaded = load_task(task, prompts)
        pad_token = run.pad_token(pad_token)
        template = template_for(loaded.format, run.remembered("chat_template", chat_template), task)
        tokenizer = configure(load_tokenizer(model, pad_token), template)
        if loaded.format == CHAT:
            check_renders(tokenizer, loaded.eval_prompts + loaded.train_prompts, task, model)
        loaded = dataclasses.replace(  # (``render`` leaves prompts as they are when the tokenizer has no template)
            loaded,
            train_prompts=render(tokenizer, loaded.train_prompts),
            eval_prompts=render(tokenizer, loaded.eval_prompts),
            beliefs=rendered_beliefs(loaded, tokenizer),
        )
        loader = Loader(pad_token=pad_token, dtype=run.remembered("dtype", dtype), chat_template=template)
        return cls(model=model, task_name=task, task=loaded, prompts=prompts, loader=loader, tokenizer=tokenizer)

    @property
    def device(self):
        """Where this process runs its models (its accelerator when there is one)."""
        return distributed.state().device

    def args(self, **more: Any) -> dict[str, Any]:
        """The manifest's record of the setup (and ``more``): what ``--resume`` and later stages read back."""
        return {"model": self.model, "task": self.task_name, "prompts": self.prompts,
                "pad_token": self.loader.pad_token, "dtype": self.loader.dtype,
                "chat_template": self.loader.chat_template, **more}  # fmt: skip

    def inputs(self) -> dict[str, Path]:
        """The manifest's record of the prompts file (its sha256), when the stage samples from one."""
        return {"prompts": Path(self.prompts)} if self.prompts is not None else {}

    def render(self, prompts: list[str]) -> list[str]:
        """``prompts`` as the model sees them (rendered by the chat template when its tokenizer has one)."""
        return render(self.tokenizer, prompts)


def rendered_beliefs(task: Task, tokenizer) -> Beliefs | None:
    """A chat task's beliefs whose wrong-belief variants (asked at evaluation, of rendered prompts) are rendered by
    the same template as the task's prompts."""
    beliefs = task.beliefs
    if beliefs is None or task.format != CHAT or not getattr(tokenizer, "chat_template", None):
        return beliefs

    def wrong_variant(prompt: str):
        variant, belief = beliefs.wrong_variant(prompt)
        return render(tokenizer, [variant])[0], belief

    def pushback(prompt: str, answer: str) -> str:
        return render(tokenizer, [beliefs.pushback(prompt, answer)])[0]

    return dataclasses.replace(beliefs, wrong_variant=wrong_variant,
                               pushback=pushback if beliefs.pushback is not None else None)  # fmt: skip
