"""What ``--reward`` names, as a function (prompts, completions) -> scores.

``gold`` (the task's gold scorer), a reward-model folder (``rlhflab reward train``, or an off-the-shelf
Hugging Face sequence-classification folder, normalised on base-policy samples: ``rlhflab.reward.foreign``),
or a rule ``package.module:function`` taking (prompts, completions) and returning one number per completion.
"""

from __future__ import annotations

from pathlib import Path

from rlhflab.core.errors import RlhflabError
from rlhflab.core.plugins import import_object
from rlhflab.core.scores import RewardFn, checked_scores
from rlhflab.core.task import Task, need_gold
from rlhflab.models.loading import Loader
from rlhflab.reward.foreign import ClassifierReward, calibrate, is_classifier_folder
from rlhflab.reward.model import RewardModel


def load_reward(
    name: str, task: Task, device="cpu", loader: Loader = Loader(), base: dict | None = None
) -> tuple[RewardFn, str | None]:
    """(reward function, the reward-model folder or None) for a ``--reward`` value; a model's weights in the
    ``loader``'s dtype. ``base`` (``model``, ``max_new_tokens``, ``temperature``) is the base policy an
    off-the-shelf reward model is normalised on, by sampling it (loaded by ``loader``) on the task's training
    prompts; the normalisation is the function's ``normalisation``."""
    if name == "gold":
        gold = need_gold(task, "--reward gold")
        return (lambda prompts, completions: checked_scores(gold(prompts, completions), len(completions),
                                                             f"the gold scorer of task '{task.name}'")), None  # fmt: skip
    path = Path(name)
    if path.is_dir():
        if is_classifier_folder(path):  # an off-the-shelf reward model: normalised on base samples before use
            if base is None:
                raise RlhflabError(f"--reward {name}: an off-the-shelf reward model needs a base policy to be "
                                   "normalised on")  # fmt: skip
            reward = ClassifierReward.load(path, device=device, dtype=loader.torch_dtype)
            calibrate(reward, prompts=task.train_prompts, loader=loader, **base)
            return reward, str(path)
        return RewardModel.load(path, device=device, dtype=loader.torch_dtype), str(path)
    if ":" in name and not path.exists():
        rule = import_object(name, "--reward")
        return (lambda prompts, completions: checked_scores(rule(prompts, completions), len(completions),
                                                             f"the rule {name}")), None  # fmt: skip
    raise RlhflabError(
        f"--reward {name!r}: no such reward-model folder (train one with 'rlhflab reward train'), and not "
        "'gold' or a rule 'module:function'"
    )
