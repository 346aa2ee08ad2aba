"""rlhflab reward train and rlhflab optimize METHOD."""

from __future__ import annotations

from pathlib import Path

import click

from rlhflab.cli.common import (
    chat_option,
    cli,
    model_option,
    need_run_dir,
    pad_option,
    prompts_option,
    quiet_option,
    resume_option,
    run_dir_option,
    say,
    task_option,
)
from rlhflab.core import metric_names as names
from rlhflab.core.config import click_options, config_from_options
from rlhflab.methods.registry import METHODS
from rlhflab.pipeline import stages
from rlhflab.pipeline.setup import Setup
from rlhflab.reward.train import RewardTrainConfig
from rlhflab.run.rundir import RunDir

# ------------------------------------------------------------------ reward


@cli.group()
def reward() -> None:
    """Reward models."""


@reward.command("train")
@run_dir_option(required=False)
@model_option
@click.option(
    "--pairs",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PreferencePair JSONL to train on (default: RUN/pairs.jsonl).",
)
@pad_option
@click_options(RewardTrainConfig)
@resume_option("reward-model training")
@quiet_option
def reward_train(
    run_dir: Path | None, model: str, pairs: Path | None, pad_token, resume: Path | None, quiet: bool, **options
) -> None:
    """Fit a Bradley-Terry reward model (or ensemble) -> RUN/reward_model."""
    if resume is not None:
        run, result = RunDir(resume), stages.resume_reward(resume, progress=not quiet)
    else:
        run = RunDir(need_run_dir(run_dir))
        config = config_from_options(RewardTrainConfig, options)
        result = stages.reward_train(run, model, pairs or run / RunDir.PAIRS, config, pad_token, progress=not quiet)
    acc, gold_acc = result.get("val_accuracy"), result.get("val_gold_accuracy")
    say(
        f"wrote {run / RunDir.REWARD_MODEL}"
        + (f" (held-out pair accuracy {acc:.3f} on {result['val_pairs']} pairs" if acc is not None else "")
        + (f"; agrees with the gold order on {gold_acc:.1%} of those with unequal gold scores" if gold_acc else "")
        + (")" if acc is not None else "")
    )


# ------------------------------------------------------------------ optimize


@cli.group()
def optimize() -> None:
    """Optimise a policy."""


def _method_command(method) -> None:
    """Register ``rlhflab optimize METHOD`` with the method's config as options."""

    def command(run_dir, model, task, pad_token, chat_template, resume, quiet, reward_name=None, pairs=None,
                prompts_file=None, **options):  # fmt: skip
        if resume is not None:
            run, result = RunDir(resume), stages.resume_method(resume, method.name, progress=not quiet)
        else:
            run = RunDir(need_run_dir(run_dir))
            config = config_from_options(method.config, options)
            setup = Setup.resolve(run, model, task, prompts=prompts_file, pad_token=pad_token,
                                  chat_template=chat_template, read_prompts=method.data != "pairs")  # fmt: skip
            result = stages.optimize(
                run, method.name, setup, config, reward=reward_name or str(run / RunDir.REWARD_MODEL),
                pairs=pairs or run / RunDir.PAIRS, progress=not quiet,
            )  # fmt: skip
        final = result.get("final") or {}
        detail = ", ".join(
            f"{label} {final[key]:.3f}"
            for key, label in ((names.SCORE, "last reward"), (names.KL, "KL"), (names.LOSS, "last loss"))
            if key in final
        )
        out = run / (RunDir.SAMPLER if method.output == "sampler" else RunDir.POLICY)
        say(f"wrote {out}" + (f" ({detail})" if detail else ""))

    command.__doc__ = method.doc
    decorators = [optimize.command(method.name), run_dir_option(required=False), model_option]
    if method.data == "pairs":
        decorators.append(
            click.option(
                "--pairs",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="PreferencePair JSONL (default: RUN/pairs.jsonl).",
            )
        )
    else:
        decorators.append(prompts_option)
        decorators.append(
            click.option(
                "--reward",
                "reward_name",
                default=None,
                help="Reward-model folder (default: RUN/reward_model), 'gold' for the task's "
                "gold scorer, or a rule 'module:function'.",
            )
        )
    decorators += [
        task_option,
        pad_option,
        chat_option,
        click_options(method.config),
        resume_option(method.name),
        quiet_option,
    ]
    for decorate in reversed(decorators):
        command = decorate(command)


for _spec in METHODS.values():
    _method_command(_spec)
