"""Preference data in other tools' formats: import to PreferencePair JSONL, export from it.

Two formats, both JSONL (one JSON object per line):

``trl``
    ``{"prompt": ..., "chosen": ..., "rejected": ...}`` with ``chosen`` and ``rejected``
    the completions only (TRL's "explicit prompt" preference format, also read by
    OpenRLHF). The conversational variant, where the three fields are lists of
    ``{"role", "content"}`` messages, is imported by rendering the messages as plain text
    in the Anthropic HH convention (see ``render_messages``): ``user`` becomes
    ``"\\n\\nHuman: ..."``, ``assistant`` ``"\\n\\nAssistant: ..."``, ``system``
    ``"\\n\\nSystem: ..."``; the prompt ends with ``"\\n\\nAssistant:"`` and each
    completion starts after it. Export always writes plain strings.

``hh``
    Anthropic HH-RLHF: only ``chosen`` and ``rejected``, each the whole dialogue
    (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``). Import splits each pair after the last
    ``"\\n\\nAssistant:"`` the two texts share: the prompt is the longest common prefix that
    ends with that marker, the completions are what follows. Export writes prompt + chosen
    and prompt + rejected, and refuses pairs whose prompt would not come back the same on
    import (a prompt that does not end with ``"\\n\\nAssistant:"``; use ``trl`` for those).
    Message lists (TRL's "implicit prompt" conversational format) are rendered as above
    first.

``auto`` (import only) decides per file from the keys of its first record: ``prompt``,
``chosen`` and ``rejected`` -> ``trl``; ``chosen`` and ``rejected`` without ``prompt`` ->
``hh``. Keys other than these are ignored. Imported pairs have label 1 (chosen preferred)
and source ``import:<format>``. Every problem names the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rlhflab.core.comparison import PreferencePair, check_distinct
from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.core.files import atomic_write_text, iter_jsonl, jsonl_text
from rlhflab.models.chat import ASSISTANT, render_messages

FORMATS = ("trl", "hh")
"""The formats ``export_pairs`` writes; ``import_pairs`` also takes ``auto``."""


@dataclass
class ImportStats:
    format: str
    """The format read (``trl`` or ``hh``; ``auto`` resolved)."""
    records: int = 0
    """Records read (blank lines are not records)."""
    pairs: int = 0
    """Pairs written."""
    skipped_identical: int = 0
    """Records with chosen equal to rejected, left out (only with ``skip_identical``)."""
    diverged_early: int = 0
    """hh pairs whose texts differ before the last assistant turn (completions hold later turns)."""
    conversational: int = 0
    """Records given as message lists and rendered as HH-style text."""
    first_lines: dict[str, int] = field(default_factory=dict)
    """The first line of each counted kind (``skipped_identical``, ``diverged_early``)."""


# ---------------------------------------------------------------- rendering and splitting


def split_hh(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(prompt, chosen completion, rejected completion), split after the last shared ``ASSISTANT``.

    The prompt is the longest common prefix of the two texts that ends with ``"\\n\\nAssistant:"``;
    ``None`` if they share no such prefix.
    """
    common = 0
    for x, y in zip(chosen, rejected):
        if x != y:
            break
        common += 1
    at = chosen.rfind(ASSISTANT, 0, common)
    if at < 0:
        return None
    cut = at + len(ASSISTANT)
    return chosen[:cut], chosen[cut:], rejected[cut:]


# ---------------------------------------------------------------- records -> pairs


def detect_format(obj: Any, path: str | Path, line: int) -> str:
    """``trl`` or ``hh`` from a record's keys; a DataError saying what was found otherwise."""
    if isinstance(obj, dict):
        keys = set(obj)
        if {"prompt", "chosen", "rejected"} <= keys:
            return "trl"
        if {"chosen", "rejected"} <= keys:
            return "hh"
        found = "keys " + ", ".join(sorted(map(str, keys))) if keys else "an empty object"
    else:
        found = f"a JSON {type(obj).__name__}"
    raise DataError(
        path,
        f"cannot tell the format: found {found}; accepted formats are trl (prompt, chosen, rejected: "
        "completions only) and hh (chosen, rejected: whole dialogues)",
        line,
    )


def _text_field(obj: dict, name: str, path: str | Path, line: int, fmt: str) -> str | list:
    if name not in obj:
        need = "prompt, chosen, rejected" if fmt == "trl" else "chosen, rejected"
        raise DataError(path, f"missing (format {fmt} needs {need})", line, name)
    value = obj[name]
    if not isinstance(value, (str, list)):
        raise DataError(path, f"expected a string or a list of messages, got {type(value).__name__}", line, name)
    return value


def _trl_pair(obj: dict, path: str | Path, line: int) -> tuple[str, str, str, bool]:
    values = {n: _text_field(obj, n, path, line, "trl") for n in ("prompt", "chosen", "rejected")}
    kinds = {n: isinstance(v, list) for n, v in values.items()}
    if not any(kinds.values()):
        return values["prompt"], values["chosen"], values["rejected"], False
    if not all(kinds.values()):
        strings = [n for n, k in kinds.items() if not k]
        lists = [n for n, k in kinds.items() if k]
        raise DataError(
            path,
            f"is a string while {' and '.join(lists)} {'is a message list' if len(lists) == 1 else 'are message lists'}"
            "; give all three as strings or all three as lists of messages",
            line,
            strings[0],
        )
    prompt = render_messages(values["prompt"], path, line, "prompt") + ASSISTANT
    completions = []
    for name in ("chosen", "rejected"):
        text = render_messages(values[name], path, line, name)
        if not text.startswith(ASSISTANT):
            raise DataError(path, "the first message must have role 'assistant'", line, f"{name}[0]")
        completions.append(text[len(ASSISTANT) :])  # "\n\nAssistant: hi" -> " hi"
    return prompt, completions[0], completions[1], True


def _hh_pair(obj: dict, path: str | Path, line: int, stats: ImportStats) -> tuple[str, str, str, bool]:
    texts, conversational = {}, False
    for name in ("chosen", "rejected"):
        value = _text_field(obj, name, path, line, "hh")
        if isinstance(value, list):
            value, conversational = render_messages(value, path, line, name), True
        texts[name] = value
    if texts["chosen"] == texts["rejected"]:
        return "", texts["chosen"], texts["rejected"], conversational  # counted as identical by the caller
    split = split_hh(texts["chosen"], texts["rejected"])
    if split is None:
        if ASSISTANT not in texts["chosen"] or ASSISTANT not in texts["rejected"]:
            name = "chosen" if ASSISTANT not in texts["chosen"] else "rejected"
            raise DataError(
                path, f"has no {ASSISTANT!r} turn (format hh needs whole dialogues in the HH convention)", line, name
            )
        raise DataError(
            path,
            f"chosen and rejected share no prefix ending in {ASSISTANT!r}, so there is no common prompt "
            "(format hh needs two versions of one dialogue that differ only in the assistant's turns)",
            line,
        )
    prompt, chosen, rejected = split
    if "\n\nHuman:" in chosen or "\n\nHuman:" in rejected:
        stats.diverged_early += 1
        stats.first_lines.setdefault("diverged_early", line)
    return prompt, chosen, rejected, conversational


def record_to_pair(obj: Any, fmt: str, path: str | Path, line: int, stats: ImportStats | None = None) -> PreferencePair:
    """One record of format ``trl`` or ``hh`` as a PreferencePair (label 1, source ``import:<fmt>``)."""
    stats = stats if stats is not None else ImportStats(fmt)
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a JSON object, got {type(obj).__name__}", line)
    if fmt == "trl":
        prompt, chosen, rejected, conversational = _trl_pair(obj, path, line)
    elif fmt == "hh":
        prompt, chosen, rejected, conversational = _hh_pair(obj, path, line, stats)
    else:
        raise RlhflabError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    stats.conversational += conversational
    if chosen != rejected:  # identical pairs are the caller's to count
        for name, text in (("chosen", chosen), ("rejected", rejected)):
            if not text.strip():
                raise DataError(path, "the completion is empty", line, name)
    return PreferencePair(prompt, chosen, rejected, 1.0, f"import:{fmt}")


def read_foreign(
    path: str | Path, fmt: Literal["auto", "trl", "hh"] = "auto", skip_identical: bool = False
) -> tuple[list[PreferencePair], ImportStats]:
    """Read a ``trl`` or ``hh`` JSONL file (``auto``: decided from the first record) as PreferencePairs.

    Records whose chosen equals rejected carry no preference: they are an error (the count and
    the first line are named) unless ``skip_identical``, which leaves them out and counts them.
    """
    path = Path(path)
    if fmt not in ("auto", *FORMATS):
        raise RlhflabError(f"unknown format {fmt!r}; choose auto, {', '.join(FORMATS)}")
    stats: ImportStats | None = None
    pairs: list[PreferencePair] = []
    identical: list[int] = []
    for line, obj in iter_jsonl(path):
        if stats is None:
            stats = ImportStats(detect_format(obj, path, line) if fmt == "auto" else fmt)
        stats.records += 1
        pair = record_to_pair(obj, stats.format, path, line, stats)
        if pair.chosen == pair.rejected:
            identical.append(line)
            continue
        pairs.append(pair)
    if stats is None:
        raise DataError(path, "the file holds no records")
    if identical:
        if not skip_identical:
            raise DataError(
                path,
                f"{len(identical)} record(s) have chosen equal to rejected, which carries no preference "
                "(pass --skip-identical to leave them out)",
                identical[0],
            )
        stats.skipped_identical = len(identical)
        stats.first_lines["skipped_identical"] = identical[0]
    if not pairs:
        raise DataError(path, "no pairs left (every record had chosen equal to rejected)")
    stats.pairs = len(pairs)
    return pairs, stats


# ---------------------------------------------------------------- pairs -> records


def pair_to_record(pair: PreferencePair, fmt: str) -> dict[str, str]:
    """The record of format ``fmt`` for a pair, chosen first (the caller orders and filters by label)."""
    if fmt == "trl":
        return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
    if fmt == "hh":
        return {"chosen": pair.prompt + pair.chosen, "rejected": pair.prompt + pair.rejected}
    raise RlhflabError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def export_records(
    pairs: Iterable[PreferencePair], fmt: str, ties: Literal["error", "drop", "keep"] = "error", source: str = "pairs"
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Records of format ``fmt``, with the preferred completion as ``chosen``.

    Pairs whose chosen equals rejected are an error (they carry no preference, and importers
    refuse them). Both formats say only which completion won: a pair with label < 0.5 is written with its
    completions swapped; a tie (label 0.5) is an error, dropped, or kept in its order (``ties``).
    For ``hh`` every pair must come back unchanged on import (its prompt ends with the
    ``"\\n\\nAssistant:"`` marker and the completions do not share a later one).
    """
    if fmt not in FORMATS:
        raise RlhflabError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if ties not in ("error", "drop", "keep"):
        raise RlhflabError(f"unknown ties policy {ties!r}; choose error, drop or keep")
    pairs = list(pairs)
    check_distinct(pairs, source)  # neither format can say that a pair carries no preference
    records: list[dict[str, str]] = []
    stats = {"pairs": 0, "written": 0, "swapped": 0, "ties_dropped": 0, "ties_kept": 0}
    tie_index: list[int] = []
    for i, pair in enumerate(pairs, start=1):
        stats["pairs"] += 1
        if pair.label == 0.5:
            tie_index.append(i)
            if ties == "drop":
                stats["ties_dropped"] += 1
                continue
            stats["ties_kept"] += ties == "keep"
        elif pair.label < 0.5:
            pair = pair.swapped()
            stats["swapped"] += 1
        if fmt == "hh":
            record = pair_to_record(pair, "hh")
            if split_hh(record["chosen"], record["rejected"]) != (pair.prompt, pair.chosen, pair.rejected):
                why = (
                    f"the prompt does not end with {ASSISTANT!r}"
                    if not pair.prompt.endswith(ASSISTANT)
                    else f"the completions share a later {ASSISTANT!r}, or are equal"
                )
                raise DataError(
                    source,
                    f"pair {i}: format hh has no prompt field, so an importer finds the prompt by that marker, "
                    f"and {why}; export with --format trl instead",
                )
        records.append(pair_to_record(pair, fmt))
    if tie_index and ties == "error":
        raise DataError(
            source,
            f"{len(tie_index)} pair(s) are ties (label 0.5; first: pair {tie_index[0]}), which {fmt} cannot "
            "express: pass --ties drop to leave them out, or --ties keep to write them in their order",
        )
    stats["written"] = len(records)
    return records, stats


def write_records(path: str | Path, records: Iterable[dict]) -> None:
    """JSONL, written all at once (an error or interruption leaves no partial file)."""
    atomic_write_text(path, jsonl_text(list(records)))
