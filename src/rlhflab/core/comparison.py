"""PreferencePair: one comparison, and its JSONL file format.

One JSON object per line with the columns TRL and OpenRLHF read (``prompt``, ``chosen``,
``rejected``) plus ``label`` (probability that ``chosen`` is preferred: 1, or 0.5 for a
tie), ``source`` (``human:<id>``, ``simulated:<rater>``, ``ai:<judge>``) and optional
``scores`` (e.g. the gold scores a simulated rater saw). Reading validates every line and
names the file, line and field of the first problem.

A pair holds text. What is not text about a comparison lives elsewhere, so that comparisons of other things
(trajectory segments) reuse it: the rater's noise model (``SimulatedRater.probability``), Bradley-Terry fitting
of any scorer (``reward.bradley_terry``, which reads ``Encoded`` comparisons, never a ``PreferencePair``), the
label store's queue, leases and answers (its two sides are opaque strings), and overopt's curves (numbers).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from rlhflab.core.errors import DataError
from rlhflab.core.files import atomic_write_text, iter_jsonl


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    """The context both completions continue."""
    chosen: str
    """The completion preferred (or, for a tie, the first shown)."""
    rejected: str
    """The other completion."""
    label: float = 1.0
    """Probability that ``chosen`` is preferred: 1.0, or 0.5 for a tie."""
    source: str = "unknown"
    """Who judged: ``human:<id>``, ``simulated:<rater>`` or ``ai:<judge>``."""
    scores: dict[str, float] = field(default_factory=dict)
    """Optional named scores, e.g. ``{"gold_chosen": 0.6, "gold_rejected": -0.1}``."""

    def swapped(self) -> PreferencePair:
        """The same comparison written the other way round: completions exchanged, label 1 - label,
        and score names with ``chosen`` and ``rejected`` exchanged (``gold_chosen`` <-> ``gold_rejected``)."""

        def other(name: str) -> str:
            return name.replace("chosen", "\0").replace("rejected", "chosen").replace("\0", "rejected")

        return PreferencePair(
            self.prompt,
            self.rejected,
            self.chosen,
            1.0 - self.label,
            self.source,
            {other(k): v for k, v in self.scores.items()},
        )


_REQUIRED = {"prompt": str, "chosen": str, "rejected": str}


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None (not a number, a bool, or too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        x = float(value)
    except OverflowError:
        return None
    return x if math.isfinite(x) else None


def _parse(obj: object, path: Path, line: int) -> PreferencePair:
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line)
    for name, tp in _REQUIRED.items():
        if name not in obj:
            raise DataError(path, "missing (each line needs prompt, chosen, rejected)", line, name)
        if not isinstance(obj[name], tp):
            raise DataError(path, f"expected a string, got {type(obj[name]).__name__}", line, name)
    for name in ("chosen", "rejected"):
        if not obj[name].strip():
            raise DataError(path, "is empty", line, name)
    label = obj.get("label", 1.0)
    if _number(label) is None or not 0.0 <= label <= 1.0:
        shown = repr(label) if len(repr(label)) <= 40 else repr(label)[:37] + "..."
        raise DataError(
            path, f"expected a number in [0, 1] (1 = chosen preferred, 0.5 = tie), got {shown}", line, "label"
        )
    source = obj.get("source", "unknown")
    if not isinstance(source, str):
        raise DataError(path, f"expected a string, got {type(source).__name__}", line, "source")
    scores = obj.get("scores", {})
    if not isinstance(scores, dict) or not all(_number(v) is not None for v in scores.values()):
        raise DataError(path, "expected an object of name: number (finite)", line, "scores")
    return PreferencePair(
        obj["prompt"], obj["chosen"], obj["rejected"], float(label), source, {k: float(v) for k, v in scores.items()}
    )


def check_distinct(pairs: list[PreferencePair], source: str | Path = "pairs") -> None:
    """Every consumer of pairs calls this: a pair whose chosen equals its rejected, or with an empty
    completion, carries no preference; name the source, how many and the first."""
    same = [i for i, p in enumerate(pairs, 1) if p.chosen == p.rejected]
    if same:
        raise DataError(
            source,
            f"{len(same)} pairs have chosen equal to rejected (first: pair {same[0]}); "
            "they carry no preference, remove them",
        )
    empty = [i for i, p in enumerate(pairs, 1) if not p.chosen.strip() or not p.rejected.strip()]
    if empty:
        raise DataError(source, f"{len(empty)} pairs have an empty completion (first: pair {empty[0]})")
    if not pairs:
        raise DataError(source, "no preference pairs")


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """Read and validate a PreferencePair JSONL file; blank lines are skipped."""
    pairs = [_parse(obj, Path(path), i) for i, obj in iter_jsonl(path)]
    if not pairs:
        raise DataError(path, "the file holds no preference pairs")
    return pairs


def write_pairs(path: str | Path, pairs: Iterable[PreferencePair]) -> None:
    """Write pairs as JSONL, all at once (a reader never sees half a file)."""
    atomic_write_text(path, "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs))
