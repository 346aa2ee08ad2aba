"""rlhflab feedback (simulate, import, export, ai) and rlhflab label (people in a browser)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rlhflab.cli.common import (
    chat_option,
    cli,
    dtype_option,
    model_option,
    pad_option,
    prompts_option,
    quiet_option,
    run_dir_option,
    say,
    task_option,
)
from rlhflab.config import click_options, config_from_options
from rlhflab.errors import RlhflabError
from rlhflab.feedback.ai import AIFeedbackConfig
from rlhflab.feedback.label.queries import QueryConfig
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.files import read_text
from rlhflab.rollout.models import EMBEDDED
from rlhflab.run.rundir import RunDir

# ------------------------------------------------------------------ feedback


@cli.group()
def feedback() -> None:
    """Collect preference pairs."""


@feedback.command("simulate")
@run_dir_option()
@model_option
@task_option
@prompts_option
@pad_option
@dtype_option
@chat_option
@click_options(SimulateConfig)
@click_options(SimulatedRater, prefix="rater_")
@quiet_option
def feedback_simulate(
    run_dir: Path,
    model: str,
    task: str,
    prompts_file: Path | None,
    pad_token,
    dtype,
    chat_template,
    quiet: bool,
    **options,
) -> None:
    """Sample two continuations per prompt and label them with a simulated rater -> RUN/pairs.jsonl."""
    from rlhflab.pipeline import stages as pipeline

    config = config_from_options(SimulateConfig, options)
    rater = config_from_options(SimulatedRater, options, prefix="rater_")
    stats = pipeline.feedback_simulate(
        RunDir(run_dir),
        model,
        task,
        config,
        rater,
        pad_token,
        progress=not quiet,
        prompts=prompts_file,
        dtype=dtype,
        chat_template=chat_template,
    )
    say(
        f"wrote {stats['pairs']} pairs to {run_dir / 'pairs.jsonl'} "
        f"(rater agrees with gold on {stats['agreement_with_gold']:.1%})"
    )


@feedback.command("import")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "trl", "hh"]),
    default="auto",
    show_default=True,
    help="Input format; auto decides from the keys of the first record.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="PreferencePair JSONL to write."
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Import into this run instead: RUN/pairs.jsonl, and RUN/prompts.jsonl (the pairs' prompts, each once), "
    "which the run's later stages then sample from.",
)
@click.option("--skip-identical", is_flag=True, help="Leave out records whose chosen equals rejected (default: error).")
def feedback_import(src: Path, fmt: str, out: Path | None, run_dir: Path | None, skip_identical: bool) -> None:
    """Convert TRL/OpenRLHF or Anthropic HH-RLHF preference JSONL -> PreferencePair JSONL (label 1).

    \b
    trl: {"prompt", "chosen", "rejected"}, completions only; message lists
         are rendered as "\\n\\nHuman: ...\\n\\nAssistant: ..." text
    hh:  {"chosen", "rejected"}, whole dialogues; the prompt is what they
         share up to their last common "\\n\\nAssistant:"
    """
    from rlhflab.feedback.formats import read_foreign
    from rlhflab.feedback.pairs import write_pairs
    from rlhflab.files import atomic_write_text, jsonl_text

    if (out is None) == (run_dir is None):
        raise click.UsageError("pass --out FILE or --run-dir RUN (one of them)")
    pairs, stats = read_foreign(src, fmt, skip_identical=skip_identical)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        out = run_dir / RunDir.PAIRS
        prompts = list(dict.fromkeys(p.prompt for p in pairs))
        atomic_write_text(run_dir / RunDir.PROMPTS, jsonl_text([{"prompt": p} for p in prompts]))
    write_pairs(out, pairs)
    notes = [f"format {stats.format}"]
    if stats.conversational:
        notes.append(f"{stats.conversational} given as messages")
    if stats.skipped_identical:
        notes.append(
            f"{stats.skipped_identical} identical skipped (first at line {stats.first_lines['skipped_identical']})"
        )
    if stats.diverged_early:
        notes.append(
            f"{stats.diverged_early} differ before the last assistant turn "
            f"(first at line {stats.first_lines['diverged_early']}; their completions hold later turns)"
        )
    say(f"wrote {stats.pairs} pairs to {out} ({'; '.join(notes)})")
    if run_dir is not None:
        say(
            f"wrote their {len(prompts)} prompts to {run_dir / RunDir.PROMPTS}: the run's stages sample them by default"
        )


@feedback.command("export")
@click.argument("pairs", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["trl", "hh"]), required=True, help="Output format.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSONL file to write.")
@click.option(
    "--ties",
    type=click.Choice(["error", "drop", "keep"]),
    default="error",
    show_default=True,
    help="Pairs labelled 0.5, which neither format can express: stop, leave them out, or write them as they are.",
)
def feedback_export(pairs: Path, fmt: str, out: Path, ties: str) -> None:
    """Write PreferencePair JSONL as TRL/OpenRLHF (prompt, chosen, rejected) or HH-RLHF (chosen, rejected).

    The preferred completion is written as chosen (pairs labelled below 0.5 are swapped); labels,
    sources and scores are not part of either format. hh needs prompts ending in "\\n\\nAssistant:".
    """
    from rlhflab.feedback.formats import export_records, write_records
    from rlhflab.feedback.pairs import read_pairs

    records, stats = export_records(read_pairs(pairs), fmt, ties=ties, source=str(pairs))
    write_records(out, records)
    notes = [f"{stats[k]} {k.replace('_', ' ')}" for k in ("swapped", "ties_dropped", "ties_kept") if stats[k]]
    say(f"wrote {stats['written']} {fmt} records to {out}" + (f" ({', '.join(notes)})" if notes else ""))


@feedback.command("ai")
@click.option(
    "--judge",
    default=EMBEDDED,
    show_default=True,
    help="Judge: a Hugging Face causal-LM folder, a hub id, or 'embedded' (far too small to be a sensible "
    "judge; it is there for the mechanics).",
)
@click.option(
    "--principles",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="UTF-8 text file: the principles (constitution) the judge applies.",
)
@click.option(
    "--pairs",
    "pairs_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PreferencePair JSONL to (re)label, e.g. from 'feedback simulate' or 'feedback import' "
    "(default: RUN/pairs.jsonl).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the labelled pairs (default: RUN/pairs.jsonl, replacing the input there).",
)
@run_dir_option(required=False)
@click.option(
    "--template",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="UTF-8 file replacing the judge's query template; it must hold {principles}, {prompt}, {a} and {b}, "
    "and the answer is scored right after its end.",
)
@pad_option
@click_options(AIFeedbackConfig)
@quiet_option
def feedback_ai(
    judge: str,
    principles: Path,
    pairs_path: Path | None,
    out: Path | None,
    run_dir: Path | None,
    template: Path | None,
    pad_token,
    quiet: bool,
    **options,
) -> None:
    """Label pairs with a judge model applying written principles, asked in both orders -> OUT.

    The judge reads the principles, the prompt, "Response A: ..." and "Response B: ..." and the
    question "Which response better follows the principles? Answer:"; P(A) is the softmax over its
    next-token log-probabilities of " A" and " B". Each pair is asked with the responses in both
    orders and the two probabilities of choosing the same response are averaged, which cancels the
    judge's position bias. Chosen becomes the judge's preferred response, label its probability.
    A summary (position bias, consistency, agreement with gold scores where present) is printed and
    written next to OUT as <OUT stem>.ai_summary.json; with --run-dir the stage goes in the manifest.

    The embedded model (5M parameters, trained on plain sentences) is far too small to be a
    sensible judge: its answers are close to noise. It is there to run the mechanics; use a
    capable instruction-tuned model for real labels.
    """
    from rlhflab.feedback.ai import format_summary, run_ai_feedback

    if pairs_path is None or out is None:
        if run_dir is None:
            raise click.UsageError("pass --pairs IN and --out OUT, or --run-dir RUN (default: RUN/pairs.jsonl)")
        pairs_path = pairs_path or run_dir / RunDir.PAIRS
        out = out or run_dir / RunDir.PAIRS
    config = config_from_options(AIFeedbackConfig, options)
    summary = run_ai_feedback(
        pairs_path,
        out,
        judge,
        principles,
        template,
        config,
        pad_token,
        run=RunDir(run_dir) if run_dir is not None else None,
        progress=not quiet,
    )
    say(f"wrote {summary['pairs']} pairs to {out} (judge {summary['judge']}, mean label {summary['mean_label']:.3f})")
    say(format_summary(summary))


# ------------------------------------------------------------------ label


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
    from rlhflab.feedback.label.store import LabelStore

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
    from rlhflab.feedback.label.queries import make_queries
    from rlhflab.feedback.label.store import LabelStore
    from rlhflab.tasks import load_task

    config = config_from_options(QueryConfig, options)
    if from_pairs is not None:
        from rlhflab.feedback.pairs import check_distinct, read_pairs

        pairs = read_pairs(from_pairs)
        check_distinct(pairs, from_pairs)
        rows = [{"prompt": p.prompt, "a": p.chosen, "b": p.rejected} for p in pairs]
        origin = str(from_pairs)
    else:
        rows = make_queries(model, load_task(task, prompts_file), config, ensemble, pad_token, progress=not quiet)
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
    import uvicorn

    from rlhflab.feedback.label.server import create_app

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
    import socket

    names = {"127.0.0.1"}
    try:
        names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    return sorted(names)


def _existing_label_store(run_dir: Path):
    """The run's label store; an error if it has none (opening one would create it)."""
    from rlhflab.feedback.label.store import DB_NAME, LabelStore

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
    from rlhflab.feedback.pairs import write_pairs

    pairs = _existing_label_store(run_dir).export_pairs()
    out = out or run_dir / "human_pairs.jsonl"
    write_pairs(out, pairs)
    say(f"wrote {len(pairs)} pairs to {out}")


@label.command("stats")
@label_run_option
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def label_stats_cmd(run_dir: Path, as_json: bool) -> None:
    """Counts, time per label, inter-labeller agreement and agreement with the gold scorer."""
    import json

    from rlhflab.feedback.label.stats import format_stats

    stats = _existing_label_store(run_dir).stats()
    say(json.dumps(stats, indent=2) if as_json else format_stats(stats))
