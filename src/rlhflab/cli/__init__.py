"""The ``rlhflab`` command line.

    rlhflab demo                                   the whole classic RLHF experiment
    rlhflab feedback simulate --run-dir RUN        sample pairs, label them with a simulated rater
    rlhflab reward train --run-dir RUN             fit a reward model to RUN/pairs.jsonl
    rlhflab optimize ppo --run-dir RUN             PPO against RUN/reward_model with a KL penalty
    rlhflab optimize METHOD --run-dir RUN          dpo, best-of-n, ranked-sft, conditional, rloo, grpo
    rlhflab evaluate --run-dir RUN                 base vs tuned policy on held-out prompts
    rlhflab diagnose / report                      what the optimisation broke, as a page
    rlhflab compare                                every method on the gold-vs-KL frontier
    rlhflab feedback ai / import / export          AI feedback; preference data in other formats
    rlhflab label queue / serve / export / stats   preference labels from people, in a browser

Errors in the input print one line and exit with status 2 (1 for a diverged training run,
130 when interrupted); ``--debug`` shows the traceback. Every command takes ``--config FILE.yaml``
(settings from a file; flags override them).
"""

from __future__ import annotations

import os
import sys

import click

from rlhflab.cli import analysis, control, feedback, label, train  # noqa: F401  (each registers its commands)
from rlhflab.cli.common import cli
from rlhflab.cli.config_file import add_config_option
from rlhflab.core.errors import RlhflabError, TrainingDiverged
from rlhflab.models.loading import silence_library_logs

add_config_option(cli)  # after every command is registered: --config FILE on each of them


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get("RLHFLAB_DEBUG") == "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
