"""rlhflab evaluate, diagnose, report, compare and demo."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from rlhflab.cli.common import (
    chat_option,
    cli,
    default_run_dir_option,
    dtype_option,
    model_option,
    pad_option,
    prompts_option,
    quiet_option,
    run_dir_option,
    say,
    task_option,
)
from rlhflab.core.config import build, check, click_options, config_from_options
from rlhflab.evaluation.diagnose import DiagnoseConfig
from rlhflab.evaluation.evaluate import EvalConfig
from rlhflab.methods import registry
from rlhflab.models.loading import EMBEDDED
from rlhflab.models.precision import ModelConfig
from rlhflab.pipeline import stages as pipeline
from rlhflab.pipeline.compare import presets, run_compare
from rlhflab.pipeline.demo import run_demo
from rlhflab.pipeline.overopt import preset as make_preset
from rlhflab.pipeline.overopt import run_overopt
from rlhflab.pipeline.setup import Setup
from rlhflab.report import write_report
from rlhflab.run.rundir import RunDir

# ------------------------------------------------------------------ evaluate


@cli.command("evaluate")
@run_dir_option()
@click.option("--policy", default=None, help="Tuned policy (default: RUN/policy).")
@click.option("--base", default=None, help="Base policy (default: the model the run's PPO started from).")
@click.option(
    "--reward",
    "reward_name",
    default=None,
    help="Reward model for the proxy column (default: RUN/reward_model if present; 'none' to skip).",
)
@task_option
@prompts_option
@pad_option
@dtype_option
@chat_option
@click_options(EvalConfig)
@quiet_option
def evaluate_cmd(
    run_dir: Path,
    policy: str | None,
    base: str | None,
    reward_name: str | None,
    task: str,
    prompts_file: Path | None,
    pad_token,
    dtype: str | None,
    chat_template: str | None,
    quiet: bool,
    **options,
) -> None:
    """Compare the tuned policy with its base on held-out prompts -> RUN/summary.json, RUN/samples.jsonl."""
    run = RunDir(run_dir)
    policy = policy or str(run.output())
    base = base or pipeline.base_model_of(run) or EMBEDDED
    if reward_name is None:
        reward_name = str(run / RunDir.REWARD_MODEL) if (run / RunDir.REWARD_MODEL).is_dir() else None
    config = config_from_options(EvalConfig, options)
    setup = Setup.resolve(
        run, base, task, prompts=prompts_file, pad_token=pad_token, dtype=dtype, chat_template=chat_template
    )
    pipeline.evaluate_run(run, policy, setup, reward_name, config, progress=not quiet)
    say(f"wrote {run / RunDir.SUMMARY} and {run / RunDir.SAMPLES}")


# ------------------------------------------------------------------ diagnose and report


@cli.command("diagnose")
@run_dir_option()
@click.option("--policy", default=None, help="Tuned policy (default: RUN/policy).")
@click.option("--base", default=None, help="Base policy (default: the model the run's PPO started from).")
@task_option
@prompts_option
@pad_option
@dtype_option
@chat_option
@click_options(DiagnoseConfig)
@quiet_option
def diagnose_cmd(
    run_dir: Path,
    policy: str | None,
    base: str | None,
    task: str,
    prompts_file: Path | None,
    pad_token,
    dtype: str | None,
    chat_template: str | None,
    quiet: bool,
    **options,
) -> None:
    """Calibration, cost of undoing the alignment, embedding spread -> RUN/diagnostics.json."""
    run = RunDir(run_dir)
    policy = policy or str(run.output())
    base = base or pipeline.base_model_of(run) or EMBEDDED
    config = config_from_options(DiagnoseConfig, options)
    setup = Setup.resolve(
        run, base, task, prompts=prompts_file, pad_token=pad_token, dtype=dtype, chat_template=chat_template
    )
    pipeline.diagnose_run(run, policy, setup, config, progress=not quiet)
    say(f"wrote {run / RunDir.DIAGNOSTICS}")


@cli.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the page (default: RUN/report.html for one run, report.html for several).",
)
def report_cmd(run_dirs: tuple[Path, ...], out: Path | None) -> None:
    """One self-contained HTML page (figures inline) on what the optimisation did to each run."""
    out = out or (run_dirs[0] / "report.html" if len(run_dirs) == 1 else Path("report.html"))
    write_report([RunDir(r) for r in run_dirs], out)
    say(f"wrote {out}")


def _numbers(option: str, text: str | None, kind=float, what: str = "") -> tuple | None:
    """``text`` split at commas into ``kind`` values (None for None); a usage error naming ``option`` if not."""
    if text is None:
        return None
    try:
        return tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        what = what or ("integers" if kind is int else "numbers")
        raise click.UsageError(f"{option} must be comma-separated {what}, got {text!r}") from None


# ------------------------------------------------------------------ compare


@cli.command("compare")
@default_run_dir_option("runs/compare", "Where the comparison, its shared data and its points go.")
@model_option
@task_option
@click.option(
    "--preset",
    type=click.Choice(["small", "quick"]),
    default="small",
    show_default=True,
    help="small: every method on the embedded model, ~20-30 minutes on 2 CPU cores; quick: seconds.",
)
@click.option("--quick", is_flag=True, help="Same as --preset quick.")
@click.option("--methods", default=None, help="Comma-separated subset of the methods (default: all).")
@click.option("--budgets", default="1,3,10", show_default=True, help="KL budgets (nats) of the best-gold table.")
@click.option("--seed", default=0, show_default=True, help="Seed of every stage.")
@click.option(
    "--seeds",
    default=1,
    show_default=True,
    help="Run the whole comparison K times, with seeds SEED, SEED+1, ... (in RUN/seed-<i>/), and report "
    "means with 95% intervals and paired tests across the seeds.",
)
@prompts_option
@pad_option
@quiet_option
def compare_cmd(
    run_dir: Path,
    model: str,
    task: str,
    preset: str,
    quick: bool,
    methods: str | None,
    budgets: str,
    seed: int,
    seeds: int,
    prompts_file: Path | None,
    pad_token,
    quiet: bool,
) -> None:
    """Every method over a sweep of its strength knob -> frontier.png, frontier.csv, budgets.csv."""
    budget_values = _numbers("--budgets", budgets, what="numbers of nats")
    per_seed = presets("quick" if quick else preset, seed, seeds)
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    run_compare(
        run_dir,
        model,
        task,
        per_seed,
        chosen,
        budget_values,
        pad_token,
        progress=not quiet,
        say=say,
        prompts=prompts_file,
    )
    say(
        f"wrote {run_dir / 'frontier.png'}, {run_dir / 'frontier.csv'}, {run_dir / 'frontier_seeds.csv'} "
        f"and {run_dir / 'budgets.csv'}"
    )


# ------------------------------------------------------------------ overopt


@cli.command("overopt")
@default_run_dir_option("runs/overopt", "Where the proxies, runs, overopt.csv and overopt.png go.")
@model_option
@click.option(
    "--task",
    default="sentiment-natural",
    show_default=True,
    help="Built-in task name, or 'module:function' returning an rlhflab.tasks.Task with a gold reward "
    "('sentiment' shows why its VADER gold cannot be over-optimised; see docs/overopt.md).",
)
@click.option(
    "--preset",
    type=click.Choice(["default", "arithmetic", "quick"]),
    default=None,
    help="default: the embedded model, 3 seeds (see docs/overopt.md for its wall time); arithmetic: learned proxies "
    "against the rule (the default with --task arithmetic); quick: seconds, for tests.",
)
@click.option("--quick", is_flag=True, help="Same as --preset quick.")
@click.option("--labels", default=None, help="Comma-separated numbers of gold-labelled comparisons, one proxy each.")
@click.option("--seeds", type=int, default=None, help="Independent repetitions (default: the preset's).")
@click.option("--rl-method", type=click.Choice(["ppo", "rloo", "grpo"]), default=None, help="The RL method run far.")
@click.option("--rl-steps", type=int, default=None, help="Steps of each RL run (default: the preset's).")
@click.option("--pool", type=int, default=None, help="Base samples per prompt in the best-of-n pool.")
@click.option("--noise", default=None, help="Comma-separated random-answer rates of the label-noise lever.")
@click.option("--ensemble", type=int, default=None, help="Members of the conservative-ensemble lever (0: none).")
@click.option("--std-coef", type=float, default=None, help="lambda of the ensemble's mean - lambda * std.")
@click.option("--rl-levers/--no-rl-levers", default=None, help="Also run RL against the lever proxies.")
@click.option("--gold-rl/--no-gold-rl", default=None, help="Also run RL against the gold reward itself (the rule).")
@click.option("--seed", default=0, show_default=True, help="Seed of the first repetition.")
@prompts_option
@pad_option
@quiet_option
def overopt_cmd(run_dir: Path, model: str, task: str, preset: str, quick: bool, labels, seeds, rl_method, rl_steps,
                pool, noise, ensemble, std_coef, rl_levers, gold_rl, seed: int, prompts_file, pad_token,
                quiet: bool) -> None:  # fmt: skip
    """Reward over-optimisation: best-of-n and RL against proxies trained on N labels -> overopt.png, .csv."""
    preset = make_preset("quick" if quick else preset or ("arithmetic" if task == "arithmetic" else "default"))
    changes = {
        "labels": _numbers("--labels", labels, int),
        "seeds": seeds,
        "rl_method": rl_method,
        "pool": pool,
        "noise": _numbers("--noise", noise),
        "ensemble": ensemble,
        "std_coef": std_coef,
        "rl_levers": rl_levers,
        "gold_rl": gold_rl,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if "pool" in changes:
        changes["ns"] = tuple(n for n in preset.ns if n <= changes["pool"]) or (1,)
    if rl_steps is not None:
        check(rl_steps >= 1, "rl_steps", rl_steps, ">= 1")
        changes["rl"] = replace(preset.rl, steps=rl_steps)
    if rl_method is not None and rl_method != preset.rl_method:
        old = changes.get("rl", preset.rl)
        new, kl = registry.get(rl_method), getattr(old, registry.get(preset.rl_method).kl_knob)
        changes["rl"] = build(new.config, steps=old.steps, **{new.kl_knob: kl}, sampling=old.sampling, run=old.run)
    preset = replace(preset, **changes)
    run_overopt(run_dir, model, task, preset, seed=seed, pad_token=pad_token, progress=not quiet, say=say,
                prompts=prompts_file)  # fmt: skip
    say(f"wrote {run_dir / 'overopt.png'}, {run_dir / 'overopt.csv'} and {run_dir / 'overopt.json'}")


# ------------------------------------------------------------------ demo


@cli.command("demo")
@default_run_dir_option("runs/demo", "Where to write the run.")
@model_option
@task_option
@prompts_option
@pad_option
@click.option("--seed", default=0, show_default=True, help="Seed of every stage.")
@click.option("--quick", is_flag=True, help="A tiny version for smoke tests (seconds, not minutes).")
@click.option("--pairs", type=click.IntRange(min=2), default=None,
              help="Feedback pairs the rater labels (default: the model's preset).")  # fmt: skip
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Optimisation steps (default: the model's preset).")  # fmt: skip
@click.option("--eval-prompts", type=click.IntRange(min=1), default=None,
              help="Held-out prompts evaluated (default: the model's preset).")  # fmt: skip
@click.option("--force", is_flag=True,
              help="Optimise even when the reward model orders held-out pairs no better than chance.")  # fmt: skip
@chat_option
@click_options(ModelConfig)
@quiet_option
def demo_cmd(
    run_dir: Path,
    model: str,
    task: str,
    prompts_file: Path | None,
    pad_token: str | None,
    seed: int,
    quick: bool,
    pairs: int | None,
    steps: int | None,
    eval_prompts: int | None,
    force: bool,
    chat_template: str | None,
    quiet: bool,
    **options,
) -> None:
    """The classic RLHF experiment on the embedded model (or --model smollm2, or yours): feedback, reward model,
    PPO, evaluation. --pairs, --steps and --eval-prompts size it. --task reacher: RLHF for control (a MuJoCo arm
    learns from 100, 300 and 900 simulated comparisons of its clips, against PPO on the true reward and a teacher
    who sees only a side view); --pairs sets the largest label budget, --steps the env steps, --eval-prompts the
    evaluation episodes."""
    run_demo(
        run_dir, model=model, seed=seed, quick=quick, task=task, pad_token=pad_token, progress=not quiet,
        prompts=prompts_file, model_options=config_from_options(ModelConfig, options), chat_template=chat_template,
        pairs=pairs, steps=steps, num_eval_prompts=eval_prompts, force=force,
    )  # fmt: skip
