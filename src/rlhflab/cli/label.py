"""``rlhflab label``: preference labels from people (a query queue, a web page, the label store)."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import click

from rlhflab.cli.common import (
    cli,
    model_option,
    pad_option,
    prompts_option,
    quiet_option,
    say,
    task_option,
)
from rlhflab.core.comparison import check_distinct, read_pairs, write_pairs
from rlhflab.core.config import click_options, config_from_options
from rlhflab.core.errors import RlhflabError
from rlhflab.core.files import read_text
from rlhflab.feedback.label.queries import QueryConfig, make_queries
from rlhflab.feedback.label.server import create_app
from rlhflab.feedback.label.stats import format_stats
from rlhflab.feedback.label.store import CLIP_ORIGIN, DB_NAME, LabelStore
from rlhflab.models.loading import Loader
from rlhflab.tasks import load_task

# ------------------------------------------------------------------ feedback


label_run_option = click.option(
    "--run-dir",
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run directory; the labels live in RUN/labels.sqlite.",
)


@cli.group()
def label() -> None:
    """Collect preference labels from people: a query queue, a web app, export and statistics.

    \b
    rlhflab label add-labeller NAME --run RUN     create a labeller; prints their access token once
    rlhflab label queue --run RUN                 sample pairs from the policy into the queue
    rlhflab label serve --run RUN                 the labelling web app (127.0.0.1:8000)
    rlhflab label export --run RUN                answers -> PreferencePair JSONL (source human:NAME)
    rlhflab label stats --run RUN                 counts, time per label, agreement
    """


@label.command("add-labeller")
@click.argument("name")
@label_run_option
def label_add(name: str, run_dir: Path) -> None:
    """Create labeller NAME and print their access token (shown only this once; stored hashed)."""

    token = LabelStore(run_dir).add_labeller(name)
    say(f"labeller {name!r} added; their access token (keep it secret, it is not shown again):\n{token}")
    say(f"they open the server's URL with it after '#token=', e.g. http://127.0.0.1:8000/#token={token}")


@label.command("queue")
@label_run_option
@model_option
@task_option
@prompts_option
@pad_option
@click_options(QueryConfig)
@click.option(
    "--ensemble",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Reward-model ensemble that scores disagreement (--query disagreement).",
)
@click.option(
    "--from-pairs",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Queue the pairs of this PreferencePair JSONL instead of sampling (their labels are ignored).",
)
@quiet_option
def label_queue(
    run_dir: Path,
    model: str,
    task: str,
    prompts_file: Path | None,
    pad_token,
    ensemble: Path | None,
    from_pairs: Path | None,
    quiet,
    **options,
) -> None:
    """Fill the query queue: pairs of continuations of the same prompt from the current policy."""

    config = config_from_options(QueryConfig, options)
    if from_pairs is not None:
        pairs = read_pairs(from_pairs)
        check_distinct(pairs, from_pairs)
        rows = [{"prompt": p.prompt, "a": p.chosen, "b": p.rejected} for p in pairs]
        origin = str(from_pairs)
    else:
        rows = make_queries(
            model, load_task(task, prompts_file), config, ensemble, Loader(pad_token=pad_token), progress=not quiet
        )
        origin = f"{config.query}:{model}"
    store = LabelStore(run_dir)  # created only once the input is known to be good
    n = store.add_queries(rows, config.overlap, config.seed, origin)
    say(f"queued {n} pairs in {store.path} ({round(config.overlap * n)} shown to every labeller)")


@label.command("serve")
@label_run_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", default=8000, show_default=True, help="TCP port.")
@click.option(
    "--guidelines",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Text shown to labellers above every pair (default: RUN/guidelines.md if it exists).",
)
def label_serve(run_dir: Path, host: str, port: int, guidelines: Path | None) -> None:
    """Serve the labelling page; every acknowledged answer is on disk (SQLite, WAL, synced)."""
    # heavy library (uvicorn): imported on first use, not with rlhflab
    import uvicorn

    if guidelines is None and (run_dir / "guidelines.md").is_file():
        guidelines = run_dir / "guidelines.md"
    text = read_text(guidelines, "guidelines file") if guidelines is not None else ""
    app = create_app(run_dir, text)
    shown = [host] if host not in ("0.0.0.0", "::") else _local_addresses()
    for address in shown:
        bracketed = f"[{address}]" if ":" in address else address
        say(f"labelling at http://{bracketed}:{port}/  (labellers append #token=THEIR_TOKEN)")
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _local_addresses() -> list[str]:
    names = {"127.0.0.1"}
    try:
        names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    return sorted(names)


def _existing_label_store(run_dir: Path):
    """The run's label store; an error if it has none (opening one would create it)."""

    if not (run_dir / DB_NAME).is_file():
        raise RlhflabError(f"{run_dir / DB_NAME}: no labels yet (rlhflab label queue / serve write it)")
    return LabelStore(run_dir)


@label.command("export")
@label_run_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PreferencePair JSONL to write (default: RUN/human_pairs.jsonl).",
)
def label_export(run_dir: Path, out: Path | None) -> None:
    """Write every answer but skips as PreferencePair JSONL (source human:NAME; ties have label 0.5)."""

    store = _existing_label_store(run_dir)
    pairs = store.export_pairs()
    out = out or run_dir / "human_pairs.jsonl"
    write_pairs(out, pairs)
    clips = sum(a["origin"].startswith(CLIP_ORIGIN) and a["choice"] != "skip" for a in store.answers())
    note = f" ({clips} answers about clips are not text pairs: the control run keeps them in segments.npz)"
    say(f"wrote {len(pairs)} pairs to {out}" + (note if clips else ""))


@label.command("stats")
@label_run_option
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def label_stats_cmd(run_dir: Path, as_json: bool) -> None:
    """Counts, time per label, inter-labeller agreement and agreement with the gold scorer."""

    stats = _existing_label_store(run_dir).stats()
    say(json.dumps(stats, indent=2) if as_json else format_stats(stats))
