"""PreferencePair: one comparison, and its JSONL file format.

One JSON object per line with the columns TRL and OpenRLHF read (``prompt``, ``chosen``,
``rejected``) plus ``label`` (probability that ``chosen`` is preferred: 1, or 0.5 for a
tie), ``source`` (``human:<id>``, ``simulated:<rater>``, ``ai:<judge>``) and optional
``scores`` (e.g. the gold scores a simulated rater saw). Reading validates every line and
names the file, line and field of the first problem.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from rlhflab.errors import DataError
from rlhflab.run.rundir import atomic_write_text


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
    if isinstance(label, bool) or not isinstance(label, (int, float)) or not 0.0 <= label <= 1.0:
        raise DataError(
            path, f"expected a number in [0, 1] (1 = chosen preferred, 0.5 = tie), got {label!r}", line, "label"
        )
    source = obj.get("source", "unknown")
    if not isinstance(source, str):
        raise DataError(path, f"expected a string, got {type(source).__name__}", line, "source")
    scores = obj.get("scores", {})
    if not isinstance(scores, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in scores.items()
    ):
        raise DataError(path, "expected an object of name: number", line, "scores")
    return PreferencePair(
        obj["prompt"], obj["chosen"], obj["rejected"], float(label), source, {k: float(v) for k, v in scores.items()}
    )


def read_pairs(path: str | Path) -> list[PreferencePair]:
    """Read and validate a PreferencePair JSONL file; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file" if not path.exists() else "not a file")
    pairs = []
    with path.open("r", encoding="utf-8") as f:
        for i, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(path, f"not valid JSON ({e.msg} at column {e.colno})", i) from None
            pairs.append(_parse(obj, path, i))
    if not pairs:
        raise DataError(path, "the file holds no preference pairs")
    return pairs


def write_pairs(path: str | Path, pairs: Iterable[PreferencePair]) -> None:
    """Write pairs as JSONL, all at once (a reader never sees half a file)."""
    atomic_write_text(path, "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs))
