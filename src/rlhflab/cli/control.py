"""rlhflab control: preference RL on gymnasium environments (Christiano et al. 2017)."""

from __future__ import annotations

from pathlib import Path

import click

from rlhflab.cli.common import cli, need_run_dir, quiet_option, run_dir_option, say
from rlhflab.control.envs import VIEWS
from rlhflab.control.loop import ControlConfig
from rlhflab.control.people import People
from rlhflab.control.teachers import Teacher
from rlhflab.core.config import click_options, config_from_options
from rlhflab.pipeline.control import control_train, format_summary, resume_control
from rlhflab.pipeline.control_study import control_study
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
@click.option("--resume", "resume", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Continue this interrupted run from its last finished round, with the settings it was started with.")  # fmt: skip
@click.option("--people", is_flag=True,
              help="People label: each round's queries become clip pairs in RUN/labels.sqlite for the labelling page "
              "('rlhflab label serve --run RUN'; add labellers with 'rlhflab label add-labeller').")  # fmt: skip
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), default=1800.0, show_default=True,
              help="--people: seconds each round waits for its clips to be answered (later answers count next round).")  # fmt: skip
@quiet_option
def control_train_command(
    run_dir: Path | None,
    env: str,
    view: str,
    seed: int,
    resume: Path | None,
    people: bool,
    wait_seconds: float,
    quiet: bool,
    **options,
) -> None:
    """Train SB3 PPO from a simulated teacher's (or, with --people, a person's) preferences between segments of its
    own rollouts (or, with --true-reward, on the environment's reward) -> RUN/policy.zip, metrics.jsonl,
    summary.json. The loop's state is saved after every round: --resume RUN continues an interrupted run."""
    if resume is not None:
        run, summary = RunDir(resume), resume_control(resume, progress=not quiet)
    else:
        run = RunDir(need_run_dir(run_dir))
        config = config_from_options(ControlConfig, options)
        teacher = config_from_options(Teacher, options, prefix="teacher_")
        if people:
            teacher = People(run.path, env, wait_seconds=wait_seconds, progress=not quiet)
        summary = control_train(run, env, view, teacher, config, seed=seed, progress=not quiet)
    say(format_summary(summary))
    say(f"wrote {run / 'policy.zip'} (stable-baselines3: PPO.load) and {run / RunDir.SUMMARY}")


def _ints(value: str, flag: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {value!r}", param_hint=flag) from None
    if not out:
        raise click.BadParameter("give at least one number", param_hint=flag)
    return out


@control.command("study")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/control_study"),
              show_default=True, help="The study's folder: one run folder per run, study.md, report.html.")  # fmt: skip
@click.option("--env", default="Reacher-v5", show_default=True, help="A gymnasium id, or module:factory.")
@click.option("--budgets", default="100,300,900", show_default=True, help="Label budgets, comma-separated.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds, comma-separated.")
@click.option("--fooled-view", default="reacher-side", show_default=True,
              help="A limited view that teaches one more run (the largest budget); '' for none.")  # fmt: skip
@click.option("--workers", default=0, show_default=True, help="Runs at once (0: one per core).")
@click.option("--no-clips", is_flag=True, help="Do not render clips (no MuJoCo offscreen rendering needed).")
@click_options(ControlConfig, skip=("labels", "true_reward"))
@click_options(Teacher, prefix="teacher_")
@quiet_option
def control_study_command(
    out: Path, env: str, budgets: str, seeds: str, fooled_view: str, workers: int, no_clips: bool, quiet: bool,
    **options,
) -> None:  # fmt: skip
    """The label-budget curve against PPO on the true reward, and a teacher that can be fooled: one run per budget
    and seed, one on the true reward per seed, one taught through --fooled-view per seed; then RUN/study.md and
    RUN/report.html. Finished runs are kept: run it again to continue an interrupted study."""
    config = config_from_options(ControlConfig, options)
    teacher = config_from_options(Teacher, options, prefix="teacher_")
    result = control_study(
        out, env, _ints(budgets, "--budgets"), _ints(seeds, "--seeds"), fooled_view or None, config, teacher,
        workers, clips=not no_clips, progress=not quiet,
    )  # fmt: skip
    say((out / "study.md").read_text())
    say(f"wrote {result['report']}")
