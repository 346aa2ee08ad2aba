"""What an AI judge is asked: the principles file, the query template, and the answer tokens."""

from __future__ import annotations

import re
from pathlib import Path

from rlhflab.core.errors import ConfigError, DataError
from rlhflab.core.files import read_text

PLACEHOLDERS = ("principles", "prompt", "a", "b")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")

DEFAULT_TEMPLATE = (
    "{principles}\n\n"
    "Prompt: {prompt}\n\n"
    "Response A: {a}\n\n"
    "Response B: {b}\n\n"
    "Which response better follows the principles? Answer:"
)
"""The query in plain text: the answer is the next token after 'Answer:'."""

CHAT_TEMPLATE = (
    "{principles}\n\n"
    "Prompt: {prompt}\n\n"
    "Response A: {a}\n\n"
    "Response B: {b}\n\n"
    "Which response better follows the principles? Reply with one letter, A or B."
)
"""The query as a user turn: the answer is the first token of the assistant's reply. (SmolLM2-135M-Instruct,
asked the plain query as a user turn, begins 'The answer is:'; asked for one letter, it begins with one.)"""


def read_principles(path: str | Path) -> str:
    """The principles ("constitution"): a UTF-8 text file that is not empty."""
    text = read_text(path, "file (--principles needs a UTF-8 text file)")
    if not text.strip():
        raise DataError(path, "is empty; write the principles the judge should apply")
    return text.strip()


def check_template(template: str, source: str = "template") -> str:
    missing = [p for p in PLACEHOLDERS if "{" + p + "}" not in template]
    if missing:
        raise DataError(
            source,
            f"the template has no {', '.join('{' + p + '}' for p in missing)} placeholder; a template needs "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS),
        )
    return template


def read_template(path: str | Path | None) -> str | None:
    """A UTF-8 file holding {principles}, {prompt}, {a} and {b}; None for None (the judge's default for its mode)."""
    if path is None:
        return None
    text = read_text(path)
    return check_template(text.rstrip(), str(path))  # the answer follows the template's last visible character


def render(template: str, principles: str, prompt: str, a: str, b: str) -> str:
    """The template with its placeholders filled in one pass (braces in the values stay as written)."""
    values = {"principles": principles, "prompt": prompt, "a": a, "b": b}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def answer_token_ids(tokenizer, answer_a: str, answer_b: str) -> tuple[int, int]:
    """The first token of each answer string; an error if the two are the same token."""
    ids = []
    for flag, answer in (("--answer-a", answer_a), ("--answer-b", answer_b)):
        tokens = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise ConfigError(f"{flag} {answer!r} is no token at all for the judge's tokenizer")
        ids.append(tokens[0])
    if ids[0] == ids[1]:
        raise ConfigError(
            f"--answer-a {answer_a!r} and --answer-b {answer_b!r} start with the same token "
            f"({tokenizer.convert_ids_to_tokens(ids[0])!r}) for the judge's tokenizer, so the judge's choice "
            "cannot be read; pass answers whose first tokens differ (e.g. --answer-a A --answer-b B)"
        )
    return ids[0], ids[1]
