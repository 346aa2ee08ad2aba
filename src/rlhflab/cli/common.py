"""What every command shares: the command group, common options, and printing on the main process."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from rlhflab.core import distributed
from rlhflab.core import threads as cpu_threads
from rlhflab.tasks import default_model


def model_option(command):
    """``--model``; unset, the task's embedded model (``tasks.default_model``)."""

    @functools.wraps(command)  # copies click's collected parameters too
    def with_default(*args, **kwargs):
        if kwargs.get("model") is None:
            kwargs["model"] = default_model(kwargs.get("task"))
        return command(*args, **kwargs)

    return click.option(
        "--model",
        default=None,
        help="Base policy: a Hugging Face causal-LM folder, a GGUF file, a hub id, 'embedded', 'embedded-arithmetic' "
        "or 'smollm2' (default: the task's embedded model: 'embedded-arithmetic' for --task arithmetic, 'smollm2' for "
        "arithmetic-chat, else 'embedded').",
    )(with_default)


pad_option = click.option(
    "--pad-token", default=None, help="An existing token to pad with, for tokenizers that have no pad token."
)
dtype_option = click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="Load the models this command only runs (samples, scores) in this precision (default: the run's "
    "recorded --dtype, else as saved).",
)
chat_option = click.option(
    "--chat-template",
    "chat_template",
    default=None,
    help="How a chat task's prompts are rendered: auto, the tokenizer's own chat template (conversations keep "
    "their turns; generation stops at its end-of-turn token); none; or a Jinja template FILE (default: the run's "
    "recorded choice, else auto). A continuation task's prompts (sentiment, arithmetic) are never rendered.",
)
task_option = click.option(
    "--task",
    default="sentiment",
    show_default=True,
    help="Built-in task name (sentiment, sentiment-natural, arithmetic, arithmetic-beliefs, arithmetic-chat[-1..-4]; "
    "'none': your --prompts, no gold reward), or "
    "'module:function' returning an rlhflab.tasks.Task.",
)
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")
prompts_option = click.option(
    "--prompts",
    "prompts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Sample these prompts instead of the task's: one per line, or JSONL with 'prompt' or 'messages' "
    "(default: RUN/prompts.jsonl if the run has one). With --task none there is no gold reward.",
)


def run_dir_option(required: bool = True):
    return click.option(
        "--run-dir",
        type=click.Path(file_okay=False, path_type=Path),
        required=required,
        help="The run directory (created if missing).",
    )


def default_run_dir_option(default: str, help: str):
    return click.option(
        "--run-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path(default),
        show_default=True,
        help=help,
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
@click.option(
    "--threads",
    default=None,
    metavar="N",
    help="CPU threads torch uses (default: $RLHFLAB_THREADS, else the cores left idle over the last minute, "
    "shared among the run's processes). Recorded in the manifest; --resume keeps it.",
)
@click.version_option(package_name="rlhflab")
def cli(debug: bool, threads: str | None) -> None:
    """Align language models from feedback, with and without RL, and measure what each method breaks."""
    cpu_threads.choose(cpu_threads.parse(threads, "--threads"), processes=distributed.launched_processes())


def say(message: str) -> None:
    """Print on the main process only (commands may run as several processes)."""
    if distributed.state().is_main_process:
        click.echo(message)


def need_run_dir(run_dir: Path | None) -> Path:
    if run_dir is None:
        raise click.UsageError("pass --run-dir RUN (or --resume RUN to continue an interrupted run)")
    return run_dir
