"""``rlhflab feedback``: simulate, import, export, and AI feedback."""

from __future__ import annotations

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
from rlhflab.core.comparison import read_pairs, write_pairs
from rlhflab.core.config import click_options, config_from_options
from rlhflab.core.files import atomic_write_text, jsonl_text
from rlhflab.feedback.ai import AIFeedbackConfig, format_summary
from rlhflab.feedback.formats import export_records, read_foreign, write_records
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.models.loading import EMBEDDED
from rlhflab.pipeline import stages as pipeline
from rlhflab.pipeline.ai_feedback import run_ai_feedback
from rlhflab.pipeline.setup import Setup
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
    config = config_from_options(SimulateConfig, options)
    rater = config_from_options(SimulatedRater, options, prefix="rater_")
    run = RunDir(run_dir)
    setup = Setup.resolve(
        run, model, task, prompts=prompts_file, pad_token=pad_token, dtype=dtype, chat_template=chat_template
    )
    stats = pipeline.feedback_simulate(run, setup, config, rater, progress=not quiet)
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
    next-token log-probabilities of " A" and " B". A judge with a chat template reads the query as a
    user turn asking for "one letter, A or B" and answers "A" or "B" (--chat-template none: plain
    text). Each pair is asked with the responses in both
    orders and the two probabilities of choosing the same response are averaged, which cancels the
    judge's position bias. Chosen becomes the judge's preferred response, label its probability.
    A summary (position bias, consistency, agreement with gold scores where present) is printed and
    written next to OUT as <OUT stem>.ai_summary.json; with --run-dir the stage goes in the manifest.

    The embedded model (5M parameters, trained on plain sentences) is far too small to be a
    sensible judge: its answers are close to noise. It is there to run the mechanics; use a
    capable instruction-tuned model for real labels.
    """
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
