"""A user task with no training prompts, for the error-path test."""

from conftest import good_minus_bad

from rlhflab.core.task import Task


def empty():
    return Task(name="empty", train_prompts=[], eval_prompts=["x"], gold=good_minus_bad)


def nogold():
    """The planted task's prompts with no gold reward: your own prompts, nobody's ground truth."""
    import dataclasses

    from conftest import planted_task

    return dataclasses.replace(planted_task(), name="nogold", gold=None)
