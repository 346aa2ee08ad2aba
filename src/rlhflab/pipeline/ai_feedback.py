"""``rlhflab feedback ai``: read pairs, have a judge model label them under written principles, write the labelled
pairs and the judge's summary, and record the stage in the run's manifest."""

from __future__ import annotations

import contextlib
from pathlib import Path

from rlhflab.core import distributed
from rlhflab.core.comparison import check_distinct, read_pairs, write_pairs
from rlhflab.core.files import atomic_write_json, sha256_file
from rlhflab.feedback.ai import (
    AIFeedbackConfig,
    LMJudge,
    judge_display_name,
    judge_pairs,
    summary_path,
)
from rlhflab.feedback.judge_prompt import read_principles, read_template
from rlhflab.models.loading import load_policy
from rlhflab.pipeline.stages import stage


def run_ai_feedback(
    pairs_path: Path,
    out: Path,
    judge_name: str,
    principles_path: Path,
    template_path: Path | None,
    config: AIFeedbackConfig,
    pad_token: str | None = None,
    run=None,
    progress: bool = True,
) -> dict:
    """Read pairs, judge them, write ``out`` and ``<out stem>.ai_summary.json`` (and a manifest stage with ``run``)."""
    pairs = read_pairs(pairs_path)
    check_distinct(pairs, pairs_path)
    principles = read_principles(principles_path)
    template = read_template(template_path)
    model, tokenizer = load_policy(judge_name, pad_token)
    model.to(distributed.state().device)
    name = judge_display_name(judge_name)
    judge = LMJudge(model, tokenizer, principles, template, config, name=name)
    if run is not None:
        args = {
            "judge": judge_name,
            "pairs": str(pairs_path),
            "out": str(out),
            "principles": str(principles_path),
            "template": str(template_path) if template_path else None,
            "pad_token": pad_token,
        }
        inputs = {"pairs": pairs_path, "principles": principles_path}
        if template_path:
            inputs["template"] = template_path
        recording = stage(run, "feedback_ai", config, args, inputs)
    else:
        recording = contextlib.nullcontext({})
    with recording as results:
        labelled, summary = judge_pairs(pairs, judge, progress=progress)
        summary.update(
            judge_model=judge_name,
            input=str(pairs_path),
            output=str(out),
            principles=str(principles_path),
            principles_sha256=sha256_file(principles_path),
            template=str(template_path) if template_path else "default",
            template_text=judge.template,
            answers=list(judge.answers),
            chat_template_used=judge.chat,
            answer_token_ids=list(judge.answer_ids),
            context_tokens=judge.limit,
        )
        write_pairs(out, labelled)
        atomic_write_json(summary_path(out), summary)
        results.update({k: summary[k] for k in ("pairs", "position_bias", "consistency", "answer_mass")})
    return summary
