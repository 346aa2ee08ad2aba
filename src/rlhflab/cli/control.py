"""rlhflab control: preference RL on gymnasium environments (Christiano et al. 2017)."""

from __future__ import annotations

from pathlib import Path

import click

from rlhflab.cli.common import cli, need_run_dir, quiet_option, run_dir_option, say
from rlhflab.control.envs import VIEWS
from rlhflab.control.loop import ControlConfig
from rlhflab.control.teachers import Teacher
from rlhflab.core.config import click_options, config_from_options
from rlhflab.pipeline.control import control_train, format_summary
from rlhflab.run.rundir import RunDir


@cli.group()
def control() -> None:
    """Preference RL for control: an agent learns a reward from a teacher's comparisons of its clips."""


@control.command("train")
@run_dir_option(required=False)
@click.option("--env", default="Reacher-v5", show_default=True, help="A gymnasium id, or module:factory.")
@click.option(
    "--teacher-view",
    "view",
    default="true",
    show_default=True,
    help=f"What the teacher judges: {', '.join(f'{k} ({v.about})' for k, v in VIEWS.items())}; or "
    "module:function(obs, action, next_obs, info) -> the reward it perceives for a step. Gold is always the "
    "environment's reward.",
)
@click.option("--seed", default=0, show_default=True, help="Seeds the env, PPO, the reward ensemble and the teacher.")
@click_options(ControlConfig)
@click_options(Teacher, prefix="teacher_")
@quiet_option
def control_train_command(run_dir: Path | None, env: str, view: str, seed: int, quiet: bool, **options) -> None:
    """Train SB3 PPO from a simulated teacher's preferences between segments of its own rollouts (or, with
    --true-reward, on the environment's reward) -> RUN/policy.zip, metrics.jsonl, summary.json."""
    run = RunDir(need_run_dir(run_dir))
    config = config_from_options(ControlConfig, options)
    teacher = config_from_options(Teacher, options, prefix="teacher_")
    summary = control_train(run, env, view, teacher, config, seed=seed, progress=not quiet)
    say(format_summary(summary))
    say(f"wrote {run / 'policy.zip'} (stable-baselines3: PPO.load) and {run / RunDir.SUMMARY}")
