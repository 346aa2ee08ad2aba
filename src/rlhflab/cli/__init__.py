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
130 when interrupted); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from rlhflab.config import click_options, config_from_options, from_dict
from rlhflab.evaluation.diagnose import DiagnoseConfig
from rlhflab.errors import RlhflabError, TrainingDiverged
from rlhflab.evaluation.evaluate import EvalConfig
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.feedback.label.queries import QueryConfig
from rlhflab.methods.best_of_n import BestOfNConfig
from rlhflab.methods.conditional import ConditionalConfig
from rlhflab.methods.critic_free import CriticFreeConfig
from rlhflab.methods.dpo import DPOConfig
from rlhflab.methods.ppo import PPOConfig
from rlhflab.methods.ranked_sft import RankedSFTConfig
from rlhflab.rollout.models import EMBEDDED
from rlhflab.reward.model import RewardTrainConfig
from rlhflab.run.rundir import RunDir

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
    from rlhflab.pipeline import stages as pipeline

    config = config_from_options(SimulateConfig, options)
    rater = config_from_options(SimulatedRater, options, prefix="rater_")
    stats = pipeline.feedback_simulate(RunDir(run_dir), model, task, config, rater, pad_token, progress=not quiet)
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
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PreferencePair JSONL to write."
)
@click.option("--skip-identical", is_flag=True, help="Leave out records whose chosen equals rejected (default: error).")
def feedback_import(src: Path, fmt: str, out: Path, skip_identical: bool) -> None:
    """Convert TRL/OpenRLHF or Anthropic HH-RLHF preference JSONL -> PreferencePair JSONL (label 1).

    \b
    trl: {"prompt", "chosen", "rejected"}, completions only; message lists
         are rendered as "\\n\\nHuman: ...\\n\\nAssistant: ..." text
    hh:  {"chosen", "rejected"}, whole dialogues; the prompt is what they
         share up to their last common "\\n\\nAssistant:"
    """
    from rlhflab.feedback.formats import read_foreign
    from rlhflab.feedback.pairs import write_pairs

    pairs, stats = read_foreign(src, fmt, skip_identical=skip_identical)
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


from rlhflab.feedback.ai import AIFeedbackConfig


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
        pairs_path = pairs_path or run_dir / "pairs.jsonl"
        out = out or run_dir / "pairs.jsonl"
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
    from rlhflab.pipeline import stages as pipeline

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
        from rlhflab.pipeline import stages as pipeline

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
    from rlhflab.pipeline import stages as pipeline

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
    from rlhflab.pipeline import stages as pipeline

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
    from rlhflab.pipeline.compare import preset as make_preset
    from rlhflab.pipeline.compare import run_compare

    try:
        budget_values = tuple(float(b) for b in budgets.split(",") if b.strip())
    except ValueError:
        raise click.UsageError(f"--budgets must be comma-separated numbers of nats, got {budgets!r}") from None
    spec = make_preset("quick" if quick else preset, seed)
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    run_compare(run_dir, model, task, spec, chosen, budget_values, pad_token, progress=not quiet, say=say)
    say(f"wrote {run_dir / 'frontier.png'}, {run_dir / 'frontier.csv'} and {run_dir / 'budgets.csv'}")


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
    run_dir: Path, model: str, task: str, pad_token, ensemble: Path | None, from_pairs: Path | None, quiet, **options
) -> None:
    """Fill the query queue: pairs of continuations of the same prompt from the current policy."""
    from rlhflab.feedback.label.queries import make_queries
    from rlhflab.feedback.label.store import LabelStore
    from rlhflab.tasks import load_task

    config = config_from_options(QueryConfig, options)
    store = LabelStore(run_dir)
    if from_pairs is not None:
        from rlhflab.feedback.pairs import read_pairs

        rows = [{"prompt": p.prompt, "a": p.chosen, "b": p.rejected} for p in read_pairs(from_pairs)]
        origin = str(from_pairs)
    else:
        rows = make_queries(model, load_task(task), config, ensemble, pad_token, progress=not quiet)
        origin = f"{config.query}:{model}"
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
    if guidelines is not None and not guidelines.is_file():
        raise RlhflabError(f"{guidelines}: no such guidelines file")
    text = guidelines.read_text(encoding="utf-8") if guidelines is not None else ""
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

    from rlhflab.feedback.label.store import format_stats

    stats = _existing_label_store(run_dir).stats()
    say(json.dumps(stats, indent=2) if as_json else format_stats(stats))


# ------------------------------------------------------------------ demo


@cli.command("demo")
@default_run_dir_option("runs/demo", "Where to write the run.")
@model_option
@task_option
@click.option("--seed", default=0, show_default=True, help="Seed of every stage.")
@click.option("--quick", is_flag=True, help="A tiny version for smoke tests (seconds, not minutes).")
@quiet_option
def demo_cmd(run_dir: Path, model: str, task: str, seed: int, quick: bool, quiet: bool) -> None:
    """The classic RLHF experiment on the embedded model: feedback, reward model, PPO, evaluation."""
    from rlhflab.pipeline.demo import run_demo

    run_demo(run_dir, model=model, seed=seed, quick=quick, task=task, progress=not quiet)


def _run_policy(run: RunDir) -> str:
    """The run's output: its policy/ folder, or the run folder itself when it holds a sampler (best-of-n)."""
    from rlhflab.rollout.samplers import SAMPLER_FILE

    if (run / SAMPLER_FILE).is_file():
        return str(run.path)
    if not (run / "policy").is_dir():
        raise RlhflabError(f"{run.path}: no policy/ folder (run 'rlhflab optimize METHOD' first, or pass --policy)")
    return str(run / "policy")


def say(message: str) -> None:
    """Print on the main process only (commands may run as several processes)."""
    from rlhflab.rollout import distributed

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
    from rlhflab.rollout.models import silence_library_logs

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
