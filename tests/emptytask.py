"""A user task with no training prompts, for the error-path test."""

from conftest import good_minus_bad

from rlhflab.tasks import Task


def empty():
    return Task(name="empty", train_prompts=[], eval_prompts=["x"], gold=good_minus_bad)
