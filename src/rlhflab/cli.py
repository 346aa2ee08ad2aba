"""The ``rlhflab`` command line.

    rlhflab demo                                   the whole classic RLHF experiment
    rlhflab feedback simulate --run-dir RUN        sample pairs, label them with a simulated rater
    rlhflab reward train --run-dir RUN             fit a reward model to RUN/pairs.jsonl
    rlhflab optimize ppo --run-dir RUN             PPO against RUN/reward_model with a KL penalty
    rlhflab evaluate --run-dir RUN                 base vs tuned policy on held-out prompts

Errors in the input print one line and exit with status 2 (1 for a diverged training run,
130 when interrupted); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from rlhflab.config import click_options, config_from_options, from_dict
from rlhflab.diagnose import DiagnoseConfig
from rlhflab.errors import RlhflabError, TrainingDiverged
from rlhflab.evaluate import EvalConfig
from rlhflab.feedback import SimulateConfig, SimulatedRater
from rlhflab.methods.best_of_n import BestOfNConfig
from rlhflab.methods.conditional import ConditionalConfig
from rlhflab.methods.critic_free import CriticFreeConfig
from rlhflab.methods.dpo import DPOConfig
from rlhflab.methods.ppo import PPOConfig
from rlhflab.methods.ranked_sft import RankedSFTConfig
from rlhflab.models import EMBEDDED
from rlhflab.reward_model import RewardTrainConfig
from rlhflab.rundir import RunDir

model_option = click.option(
    "--model",
    default=EMBEDDED,
    show_default=True,
    help="Base policy: a Hugging Face causal-LM folder, a hub id, or 'embedded'.",
)
pad_option = click.option(
    "--pad-token", default=None, help="An existing token to pad with, for tokenizers that have no pad token."
)
task_option = click.option(
    "--task",
    default="sentiment",
    show_default=True,
    help="Built-in task name, or 'module:function' returning an rlhflab.tasks.Task.",
)
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")


def run_dir_option(required: bool = True):
    return click.option(
        "--run-dir",
        type=click.Path(file_okay=False, path_type=Path),
        required=required,
        help="The run directory (created if missing).",
    )


def resume_option(what: str):
    return click.option(
        "--resume",
        "resume",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Continue the interrupted {what} of this run directory from its last checkpoint, "
        "with the configuration recorded in its manifest.",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="rlhflab")
def cli(debug: bool) -> None:
    """Align language models from feedback, with and without RL, and measure what each method breaks."""


# ------------------------------------------------------------------ feedback


@cli.group()
def feedback() -> None:
    """Collect preference pairs."""


@feedback.command("simulate")
@run_dir_option()
@model_option
@task_option
@pad_option
@click_options(SimulateConfig)
@click_options(SimulatedRater, prefix="rater_")
@quiet_option
def feedback_simulate(run_dir: Path, model: str, task: str, pad_token, quiet: bool, **options) -> None:
    """Sample two continuations per prompt and label them with a simulated rater -> RUN/pairs.jsonl."""
    from rlhflab import pipeline

    config = config_from_options(SimulateConfig, options)
    rater = config_from_options(SimulatedRater, options, prefix="rater_")
    stats = pipeline.feedback_simulate(RunDir(run_dir), model, task, config, rater, pad_token, progress=not quiet)
    say(
        f"wrote {stats['pairs']} pairs to {run_dir / 'pairs.jsonl'} "
        f"(rater agrees with gold on {stats['agreement_with_gold']:.1%})"
    )


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
    from rlhflab import pipeline

    if resume is not None:
        run = RunDir(resume)
        recorded = run.stage("reward")
        config = from_dict(RewardTrainConfig, recorded["config"])
        model, pairs, pad_token = (
            recorded["args"]["model"],
            Path(recorded["args"]["pairs"]),
            recorded["args"]["pad_token"],
        )
    else:
        run = RunDir(_need_run_dir(run_dir))
        config = config_from_options(RewardTrainConfig, options)
        pairs = pairs or run / "pairs.jsonl"
    result = pipeline.reward_train(run, model, pairs, config, pad_token, resume=resume is not None, progress=not quiet)
    acc, gold_acc = result.get("val_accuracy"), result.get("val_gold_accuracy")
    say(
        f"wrote {run / 'reward_model'}"
        + (f" (held-out pair accuracy {acc:.3f} on {result['val_pairs']} pairs" if acc is not None else "")
        + (f"; agrees with the gold order on {gold_acc:.1%} of those with unequal gold scores" if gold_acc else "")
        + (")" if acc is not None else "")
    )


# ------------------------------------------------------------------ optimize


@cli.group()
def optimize() -> None:
    """Optimise a policy."""


METHOD_CONFIGS = {
    "ppo": (PPOConfig, "PPO against a reward with a per-token KL penalty to the base policy -> RUN/policy."),
    "dpo": (DPOConfig, "DPO (or IPO, conservative DPO) on preference pairs, no reward model -> RUN/policy."),
    "best-of-n": (BestOfNConfig, "Best-of-n sampling against a reward, no training -> RUN/sampler.json."),
    "ranked-sft": (RankedSFTConfig, "Reward-ranked fine-tuning: sample, keep the best, imitate -> RUN/policy."),
    "conditional": (ConditionalConfig, "Conditional training with good/bad control tokens -> RUN/policy."),
    "rloo": (CriticFreeConfig, "RLOO: REINFORCE with a leave-one-out baseline -> RUN/policy."),
    "grpo": (CriticFreeConfig, "GRPO: group-standardised advantages, clipped, per-token KL -> RUN/policy."),
}


def _method_command(method: str) -> None:
    """Register ``rlhflab optimize METHOD`` with the method's config as options."""
    config_cls, doc = METHOD_CONFIGS[method]

    def command(run_dir, model, task, pad_token, resume, quiet, reward_name=None, pairs=None, **options):
        from rlhflab import pipeline

        if resume is not None:
            run = RunDir(resume)
            recorded = run.stage(method)
            config = from_dict(config_cls, recorded["config"])
            args = recorded["args"]
            model, task, pad_token = args["model"], args["task"], args["pad_token"]
            reward_name, pairs = args.get("reward"), Path(args["pairs"]) if args.get("pairs") else None
        else:
            run = RunDir(_need_run_dir(run_dir))
            config = config_from_options(config_cls, options)
            reward_name = reward_name or str(run / "reward_model")
            pairs = pairs or run / "pairs.jsonl"
        result = pipeline.optimize(
            run,
            method,
            model,
            task,
            config,
            reward=reward_name,
            pairs=pairs,
            pad_token=pad_token,
            resume=resume is not None,
            progress=not quiet,
        )
        final = result.get("final") or {}
        detail = ", ".join(
            f"{label} {final[key]:.3f}"
            for key, label in (("objective/score", "last reward"), ("objective/kl", "KL"), ("loss", "last loss"))
            if key in final
        )
        out = run.path / "sampler.json" if method == "best-of-n" else run / "policy"
        say(f"wrote {out}" + (f" ({detail})" if detail else ""))

    command.__doc__ = doc
    decorators = [optimize.command(method), run_dir_option(required=False), model_option]
    if method == "dpo":
        decorators.append(
            click.option(
                "--pairs",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="PreferencePair JSONL (default: RUN/pairs.jsonl).",
            )
        )
    else:
        decorators.append(
            click.option(
                "--reward",
                "reward_name",
                default=None,
                help="Reward-model folder (default: RUN/reward_model), 'gold' for the task's "
                "gold scorer, or a rule 'module:function'.",
            )
        )
    decorators += [task_option, pad_option, click_options(config_cls), resume_option(method), quiet_option]
    for decorate in reversed(decorators):
        command = decorate(command)


for _method in METHOD_CONFIGS:
    _method_command(_method)


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
@pad_option
@click_options(EvalConfig)
@quiet_option
def evaluate_cmd(
    run_dir: Path,
    policy: str | None,
    base: str | None,
    reward_name: str | None,
    task: str,
    pad_token,
    quiet: bool,
    **options,
) -> None:
    """Compare the tuned policy with its base on held-out prompts -> RUN/summary.json, RUN/samples.jsonl."""
    from rlhflab import pipeline

    run = RunDir(run_dir)
    policy = policy or _run_policy(run)
    base = base or pipeline.base_model_of(run) or EMBEDDED
    if reward_name is None:
        reward_name = str(run / "reward_model") if (run / "reward_model").is_dir() else None
    config = config_from_options(EvalConfig, options)
    pipeline.evaluate_run(run, policy, base, task, reward_name, config, pad_token, progress=not quiet)
    say(f"wrote {run / 'summary.json'} and {run / 'samples.jsonl'}")


# ------------------------------------------------------------------ diagnose and report


@cli.command("diagnose")
@run_dir_option()
@click.option("--policy", default=None, help="Tuned policy (default: RUN/policy).")
@click.option("--base", default=None, help="Base policy (default: the model the run's PPO started from).")
@task_option
@pad_option
@click_options(DiagnoseConfig)
@quiet_option
def diagnose_cmd(
    run_dir: Path, policy: str | None, base: str | None, task: str, pad_token, quiet: bool, **options
) -> None:
    """Calibration, cost of undoing the alignment, embedding spread -> RUN/diagnostics.json."""
    from rlhflab import pipeline

    run = RunDir(run_dir)
    policy = policy or _run_policy(run)
    base = base or pipeline.base_model_of(run) or EMBEDDED
    pipeline.diagnose_run(
        run, policy, base, task, config_from_options(DiagnoseConfig, options), pad_token, progress=not quiet
    )
    say(f"wrote {run / 'diagnostics.json'}")


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
    from rlhflab.report import write_report

    out = out or (run_dirs[0] / "report.html" if len(run_dirs) == 1 else Path("report.html"))
    write_report([RunDir(r) for r in run_dirs], out)
    say(f"wrote {out}")


# ------------------------------------------------------------------ compare


@cli.command("compare")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/compare"),
    show_default=True,
    help="Where the comparison, its shared data and its points go.",
)
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
    pad_token,
    quiet: bool,
) -> None:
    """Every method over a sweep of its strength knob -> frontier.png, frontier.csv, budgets.csv."""
    from rlhflab.compare import preset as make_preset
    from rlhflab.compare import run_compare

    try:
        budget_values = tuple(float(b) for b in budgets.split(",") if b.strip())
    except ValueError:
        raise click.UsageError(f"--budgets must be comma-separated numbers of nats, got {budgets!r}") from None
    spec = make_preset("quick" if quick else preset, seed)
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    run_compare(run_dir, model, task, spec, chosen, budget_values, pad_token, progress=not quiet, say=say)
    say(f"wrote {run_dir / 'frontier.png'}, {run_dir / 'frontier.csv'} and {run_dir / 'budgets.csv'}")


# ------------------------------------------------------------------ demo


@cli.command("demo")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/demo"),
    show_default=True,
    help="Where to write the run.",
)
@model_option
@task_option
@click.option("--seed", default=0, show_default=True, help="Seed of every stage.")
@click.option("--quick", is_flag=True, help="A tiny version for smoke tests (seconds, not minutes).")
@quiet_option
def demo_cmd(run_dir: Path, model: str, task: str, seed: int, quick: bool, quiet: bool) -> None:
    """The classic RLHF experiment on the embedded model: feedback, reward model, PPO, evaluation."""
    from rlhflab.demo import run_demo

    run_demo(run_dir, model=model, seed=seed, quick=quick, task=task, progress=not quiet)


def _run_policy(run: RunDir) -> str:
    """The run's output: its policy/ folder, or the run folder itself when it holds a sampler (best-of-n)."""
    from rlhflab.samplers import SAMPLER_FILE

    if (run / SAMPLER_FILE).is_file():
        return str(run.path)
    if not (run / "policy").is_dir():
        raise RlhflabError(f"{run.path}: no policy/ folder (run 'rlhflab optimize METHOD' first, or pass --policy)")
    return str(run / "policy")


def say(message: str) -> None:
    """Print on the main process only (commands may run as several processes)."""
    from rlhflab import distributed

    if distributed.state().is_main_process:
        click.echo(message)


def _need_run_dir(run_dir: Path | None) -> Path:
    if run_dir is None:
        raise click.UsageError("pass --run-dir RUN (or --resume RUN to continue an interrupted run)")
    return run_dir


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get("RLHFLAB_DEBUG") == "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rlhflab.models import silence_library_logs

    silence_library_logs()
    try:
        cli.main(args=argv, prog_name="rlhflab", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo(
            "interrupted; the run directory is consistent: finished files are whole, and training stages "
            "continue with --resume RUN_DIR",
            err=True,
        )
        sys.exit(130)
    except TrainingDiverged as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except RlhflabError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
