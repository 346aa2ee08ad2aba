"""AI feedback (RLAIF): a judge model compares two completions against written principles.

The judge reads one query per order::

    {principles}

    Prompt: {prompt}

    Response A: {a}

    Response B: {b}

    Which response better follows the principles? Answer:

and its preference is read from its next-token distribution: the log-probabilities of the
first token of ``" A"`` and of ``" B"``, softmaxed over those two, give P(A). A judge whose
tokenizer has a chat template (an instruct model) reads the query as a user turn instead, and
its answer is the first token of its own turn (``"A"`` or ``"B"``; ``chat_template="none"``
asks in plain text). Language models
favour one position (often the first), so every pair is asked in both orders and the two
probabilities of choosing the same completion are averaged:

    p(first) = (P_AB(first) + P_BA(first)) / 2,   P_AB(first) = P_AB(A),  P_BA(first) = P_BA(B)

which cancels a judge's pure position preference exactly (one that always says A with
probability q gives q and 1 - q: p = 0.5). What the average cannot show, the summary does:
the position bias (mean P(choose A) over both orders, minus 0.5) and the consistency (the
share of pairs on which both orders pick the same completion).

Output pairs are written so that ``chosen`` is the judge's preferred completion and
``label`` is the judge's probability for it (>= 0.5; exactly 0.5 is a tie, left in its input
order); ``source`` is ``ai:<judge>``; ``scores`` keeps the input's scores (names with
``chosen``/``rejected`` swapped along with the completions) and adds ``judge_p_chosen``
(= label), ``judge_p_chosen_as_a`` and ``judge_p_chosen_as_b`` (the judge's probability of
picking the chosen completion when it was shown first, and second) and ``judge_answer_mass``
(the share of the judge's next-token probability on the two answer tokens, averaged over the
two orders: far below 1 means the judge was not really answering).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from rlhflab.core.comparison import PreferencePair
from rlhflab.core.config import check
from rlhflab.core.errors import RlhflabError
from rlhflab.feedback.judge_prompt import (
    CHAT_TEMPLATE,
    DEFAULT_TEMPLATE,
    answer_token_ids,
    check_template,
    render,
)
from rlhflab.models import chat
from rlhflab.models.loading import EMBEDDED, context_length, forward_inputs

"""The judge's query; the answer token is scored right after its last character."""


@dataclass(frozen=True)
class AIFeedbackConfig:
    batch_size: int = 16
    """Judge queries per forward pass (each pair is asked twice, once in each order)."""
    max_length: int = 0
    """Longest judge query in tokens; 0 = the judge's context length. Longer queries lose the start of the prompt
    and of the responses (marked '...'), never the principles or the question."""
    answer_a: str = ""
    """The answer that names the first response shown; its first token is scored (default: ' A' after a plain-text
    query, 'A' at the start of the assistant's turn in a chat query)."""
    answer_b: str = ""
    """The answer that names the second response shown (default: ' B' in plain text, 'B' in a chat turn); its first
    token must differ from answer-a's."""
    chat_template: str = "auto"
    """auto: a judge whose tokenizer has a chat template reads the query as a user turn and answers as the
    assistant (an instruct model needs that); none: the query is plain text, the answer its next token."""

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        check(self.max_length >= 0, "max_length", self.max_length, ">= 0 (0 = the judge's context length)")
        check(self.chat_template in ("auto", "none"), "chat_template", self.chat_template, "'auto' or 'none'")

    def answers(self, in_chat: bool) -> tuple[str, str]:
        """The two answer strings: as given, or the default for a chat turn ('A', 'B') or plain text (' A', ' B')."""
        default = ("A", "B") if in_chat else (" A", " B")
        return self.answer_a or default[0], self.answer_b or default[1]


# ---------------------------------------------------------------- the scoring math


def choice_probability(logp_a: float, logp_b: float) -> float:
    """P(A) from the judge's scores of the two answers: softmax over those two only."""
    return 1.0 / (1.0 + math.exp(max(min(logp_b - logp_a, 700.0), -700.0)))


def debiased_preference(p_ab: float, p_ba: float) -> float:
    """P(first completion better), from P(judge picks it) shown as A (``p_ab``) and shown as B (``p_ba``)."""
    return (p_ab + p_ba) / 2


def position_bias(p_ab: Sequence[float], p_ba: Sequence[float]) -> float:
    """Mean P(judge answers A) over both orders, minus 0.5 (> 0: favours the first position).

    In order AB, answering A picks the first completion (probability ``p_ab``); in order BA,
    answering A picks the second (probability ``1 - p_ba``).
    """
    if not p_ab:
        return 0.0
    return sum((x + 1 - y) / 2 for x, y in zip(p_ab, p_ba)) / len(p_ab) - 0.5


def consistency(p_ab: Sequence[float], p_ba: Sequence[float]) -> float:
    """Share of pairs on which both orders pick the same completion (a probability of exactly 0.5 picks none)."""
    if not p_ab:
        return 0.0
    agree = sum((x > 0.5 and y > 0.5) or (x < 0.5 and y < 0.5) for x, y in zip(p_ab, p_ba))
    return agree / len(p_ab)


def share_budget(lengths: Sequence[int], budget: int) -> int:
    """The largest cap with sum(min(length, cap)) <= budget: short pieces are kept whole, long ones cut to the cap."""
    if sum(lengths) <= budget:
        return max(lengths, default=0)
    low, high = 0, max(lengths)
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


ELLIPSIS = "..."
"""Put in front of a prompt or response whose start was cut to fit the judge's context."""
MIN_PIECE_TOKENS = 8
"""The least room the prompt and each response must have in the judge's context."""


# ---------------------------------------------------------------- judges


class Judge(Protocol):
    name: str

    def answer_logprobs(
        self, items: Sequence[tuple[str, str, str]], progress: bool = False
    ) -> list[tuple[float, float]]:
        """For each (prompt, response A, response B): log P(answer A), log P(answer B) as the next token."""
        ...


class LMJudge:
    """A causal language model as judge; ``answer_logprobs`` batches its forward passes."""

    def __init__(
        self,
        model,
        tokenizer,
        principles: str,
        template: str | None = None,
        config: AIFeedbackConfig | None = None,
        name: str = "judge",
    ):
        config = config if config is not None else AIFeedbackConfig()
        self.model, self.tokenizer, self.config, self.name = model, tokenizer, config, name
        self.chat = config.chat_template == "auto" and bool(getattr(tokenizer, "chat_template", None))
        """Whether the query is rendered as a user turn through the judge's chat template."""
        if template is None:
            template = CHAT_TEMPLATE if self.chat else DEFAULT_TEMPLATE
        self.principles, self.template = principles, check_template(template)
        if tokenizer.padding_side != "left" or tokenizer.pad_token_id is None:
            raise RlhflabError(
                "the judge's tokenizer must pad, on the left (load it with rlhflab.models.loading.load_policy)"
            )
        self.answers = config.answers(self.chat)
        self.answer_ids = answer_token_ids(tokenizer, *self.answers)
        limits = [n for n in (context_length(model), config.max_length) if n]
        self.limit = min(limits) if limits else None
        self.truncated = 0
        """Queries whose prompt or responses were cut to fit (counted over all calls)."""
        if self.limit is not None:
            fixed = self._count(self._render("", "", ""))
            if self.limit - fixed < 3 * MIN_PIECE_TOKENS:
                raise RlhflabError(
                    f"the principles and template take {fixed} tokens of the judge's {self.limit}-token context, "
                    f"leaving {max(self.limit - fixed, 0)} for the prompt and both responses (at least "
                    f"{3 * MIN_PIECE_TOKENS} needed); shorten the principles or the template, or use a judge with "
                    "a longer context"
                )

    def _render(self, prompt: str, a: str, b: str) -> str:
        text = render(self.template, self.principles, prompt, a, b)
        return chat.render(self.tokenizer, [text])[0] if self.chat else text

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, verbose=False)["input_ids"])

    def query(self, prompt: str, a: str, b: str) -> tuple[str, int, bool]:
        """(query text, its length in tokens, whether it was cut to fit the context)."""
        pieces = [prompt.strip(), a.strip(), b.strip()]
        text = self._render(*pieces)
        n = self._count(text)
        if self.limit is None or n <= self.limit:
            return text, n, False
        tokens = [self.tokenizer(p, add_special_tokens=False, verbose=False)["input_ids"] for p in pieces]
        budget = sum(map(len, tokens)) - (n - self.limit)
        for _ in range(8):  # cutting text changes how its edges tokenise: a few tokens more may be needed
            cap = share_budget([len(t) for t in tokens], max(budget, 0))
            cut = [
                p
                if len(t) <= cap
                else ELLIPSIS
                + self.tokenizer.decode(
                    t[len(t) - cap :], skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
                for p, t in zip(pieces, tokens)
            ]
            text = self._render(*cut)
            n = self._count(text)
            if n <= self.limit:
                return text, n, True
            budget -= n - self.limit
        raise RlhflabError(
            f"could not fit the judge query for prompt {prompt[:60]!r} into {self.limit} tokens; "
            "shorten the principles or the template"
        )

    @torch.no_grad()
    def answer_logprobs(
        self, items: Sequence[tuple[str, str, str]], progress: bool = False
    ) -> list[tuple[float, float]]:
        queries = [self.query(*item) for item in items]
        self.truncated += sum(q[2] for q in queries)
        order = sorted(range(len(queries)), key=lambda i: queries[i][1])  # similar lengths share a batch
        out: list[tuple[float, float]] = [(0.0, 0.0)] * len(queries)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        ids = list(self.answer_ids)
        size = self.config.batch_size
        for start in tqdm(range(0, len(order), size), desc="ai feedback: judge", unit="batch", disable=not progress):
            batch = order[start : start + size]
            enc = self.tokenizer([queries[i][0] for i in batch], return_tensors="pt", padding=True).to(device)
            logits = self.model(**forward_inputs(self.model, enc["input_ids"], enc["attention_mask"])).logits
            logp = torch.log_softmax(logits[:, -1].float(), dim=-1)[:, ids]
            for i, (la, lb) in zip(batch, logp.tolist()):
                out[i] = (la, lb)
        self.model.train(was_training)
        return out


# ---------------------------------------------------------------- pairs


def judge_pairs(
    pairs: Sequence[PreferencePair], judge: Judge, progress: bool = False
) -> tuple[list[PreferencePair], dict]:
    """Relabel ``pairs`` with the judge's debiased preference; returns (pairs, summary).

    Every pair is asked twice: (chosen as A, rejected as B) and (rejected as A, chosen as B);
    the input's label and order do not matter. See the module docstring for the output.
    """
    items = []
    for p in pairs:
        items += [(p.prompt, p.chosen, p.rejected), (p.prompt, p.rejected, p.chosen)]
    logps = judge.answer_logprobs(items, progress=progress)
    if len(logps) != len(items):
        raise RlhflabError(f"the judge answered {len(logps)} of {len(items)} queries")
    out: list[PreferencePair] = []
    p_abs, p_bas, masses = [], [], []
    for i, pair in enumerate(pairs):
        (la1, lb1), (la2, lb2) = logps[2 * i], logps[2 * i + 1]
        p_ab = choice_probability(la1, lb1)  # first completion shown as A, judge says A
        p_ba = choice_probability(lb2, la2)  # first completion shown as B, judge says B
        p = debiased_preference(p_ab, p_ba)
        mass = (math.exp(la1) + math.exp(lb1) + math.exp(la2) + math.exp(lb2)) / 2
        p_abs.append(p_ab)
        p_bas.append(p_ba)
        masses.append(mass)
        new = PreferencePair(pair.prompt, pair.chosen, pair.rejected, 1.0, f"ai:{judge.name}", dict(pair.scores))
        if p < 0.5:
            new, p, p_ab, p_ba = new.swapped(), 1 - p, 1 - p_ba, 1 - p_ab
        scores = {
            **new.scores,
            "judge_p_chosen": p,
            "judge_p_chosen_as_a": p_ab,
            "judge_p_chosen_as_b": p_ba,
            "judge_answer_mass": mass,
        }
        out.append(PreferencePair(new.prompt, new.chosen, new.rejected, p, new.source, scores))
    n = len(out)
    gold = [
        q.scores["gold_chosen"] > q.scores["gold_rejected"]
        for q in out
        if q.label != 0.5
        and "gold_chosen" in q.scores
        and "gold_rejected" in q.scores
        and q.scores["gold_chosen"] != q.scores["gold_rejected"]
    ]
    summary = {
        "judge": judge.name,
        "pairs": n,
        "position_bias": position_bias(p_abs, p_bas),
        "consistency": consistency(p_abs, p_bas),
        "mean_label": sum(q.label for q in out) / max(n, 1),
        "ties": sum(q.label == 0.5 for q in out),
        "answer_mass": sum(masses) / max(n, 1),
        "agreement_with_gold": sum(gold) / len(gold) if gold else None,
        "gold_pairs": len(gold),
        "truncated_queries": getattr(judge, "truncated", 0),
    }
    return out, summary


def format_summary(summary: dict) -> str:
    """The summary in a few lines for the terminal."""
    lines = [
        (
            f"position bias {summary['position_bias']:+.3f} (mean P(judge answers A) over both orders - 0.5; "
            "cancelled in the labels)"
        ),
        f"consistency {summary['consistency']:.1%} (pairs on which both orders pick the same completion)",
        f"answer mass {summary['answer_mass']:.3f} (judge's probability on the two answer tokens; near 1 is good)",
    ]
    if summary.get("agreement_with_gold") is not None:
        lines.append(
            f"agrees with the gold order on {summary['agreement_with_gold']:.1%} of {summary['gold_pairs']} pairs"
        )
    if summary.get("truncated_queries"):
        lines.append(f"{summary['truncated_queries']} queries were cut to fit the judge's context")
    return "\n".join(lines)


def judge_display_name(judge: str) -> str:
    """The judge as named in each pair's source: ``embedded``, a model folder's name, or the hub id."""
    if judge in (EMBEDDED, "", "default"):
        return EMBEDDED
    path = Path(judge).expanduser()
    return path.resolve().name if path.exists() else judge


def summary_path(out: str | Path) -> Path:
    """Where the summary of an AI-feedback output goes: ``pairs.jsonl`` -> ``pairs.ai_summary.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".ai_summary.json")
