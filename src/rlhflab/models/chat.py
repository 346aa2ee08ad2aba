"""Chat templates (``--chat-template auto|none|FILE``): how prompts reach a chat model, and where it stops.

With a template (the tokenizer's own under ``auto``, a Jinja file's, none under ``none``):

- every prompt is rendered by it, ending with the assistant's turn opened (``add_generation_prompt``). A
  prompt written in the Anthropic HH convention (``"\\n\\nHuman: ...\\n\\nAssistant:"``, which is how
  ``feedback import`` and ``--prompts`` keep conversational data) is read back into its messages, so a
  conversation keeps its turns; any other prompt is one user message;
- generation stops at the template's end-of-turn token (``<|im_end|>``, ``<|eot_id|>``, ...) as well as at
  the tokenizer's end-of-sequence token: ``stop_ids``.

A stage resolves the template once and loads its models with it (``loading.Loader``); ``load_policy`` applies it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from rlhflab.core.errors import ConfigError, DataError
from rlhflab.core.files import read_text

_STOP_ATTR = "_rlhflab_stop_ids"
_HH = re.compile(r"\n\n(Human|Assistant|System): ")
_ROLES = {"Human": "user", "Assistant": "assistant", "System": "system"}


def check_template(template: str | None) -> str:
    """``auto``, ``none``, or an existing file (a Jinja chat template); a one-line error otherwise."""
    template = template or "auto"
    if template not in ("auto", "none") and not Path(template).is_file():
        raise ConfigError(f"--chat-template must be auto, none or a template file, got {template!r} (no such file)")
    return template


def template_for(task_format: str, template: str | None, task_name: str) -> str:
    """The template a task of ``task_format`` is rendered with, given ``--chat-template`` (``template``): a
    continuation task is never rendered (``none``; a template file is refused rather than ignored), a chat task
    takes the template asked for (``auto``: the tokenizer's own)."""
    template = check_template(template)
    if task_format == "continuation":
        if template not in ("auto", "none"):
            raise ConfigError(
                f"task '{task_name}' continues text, so no chat template renders its prompts; drop --chat-template "
                f"{template} or use a task whose prompts are chat turns"
            )
        return "none"
    return template


def check_renders(tokenizer, prompts: Sequence[str], task_name: str, model: str) -> None:
    """Refuse a chat task the tokenizer cannot render: no chat template, and a prompt that is not already
    a conversation in the HH convention (the plain-text form of turns, which needs none)."""
    if getattr(tokenizer, "chat_template", None):
        return
    plain = next((p for p in prompts if not is_conversation(p)), None)
    if plain is not None:
        raise ConfigError(
            f"task '{task_name}' asks in chat turns, but the tokenizer of '{model}' has no chat template (or "
            f"--chat-template none was given), so prompts such as {plain[:50]!r} cannot be rendered; use a chat "
            "model, or pass --chat-template FILE"
        )


def is_conversation(prompt: str) -> bool:
    """Whether ``prompt`` is a conversation in the HH convention (``"\n\nHuman: ...\n\nAssistant:"``)."""
    return messages_of(prompt) != [{"role": "user", "content": prompt}]


def configure(tokenizer, template: str | None = "auto"):
    """Give ``tokenizer`` the template ``template`` names (auto: its own) and its stop tokens; returns the
    tokenizer. Under ``none`` it renders nothing and stops at EOS only."""
    template = check_template(template)
    if template == "none":
        tokenizer.chat_template = None
    elif template != "auto":
        tokenizer.chat_template = read_text(template, "chat template")
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if getattr(tokenizer, "chat_template", None):
        end = end_of_turn(tokenizer)
        if end is not None and end not in stops:
            stops = [end, *stops]
    setattr(tokenizer, _STOP_ATTR, stops)
    return tokenizer


def stop_ids(tokenizer) -> list[int]:
    """The tokens generation stops at: the template's end of turn and EOS (EOS alone without a template)."""
    stops = getattr(tokenizer, _STOP_ATTR, None)
    if stops is None:
        return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return list(stops)


def end_of_turn(tokenizer) -> int | None:
    """The special token the template writes right after an assistant's message, or None."""
    marker = "ZqZq"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False
        )
    except Exception as e:  # a broken template: said once, here, with the library's message
        raise ConfigError(f"the chat template could not render a conversation: {str(e).splitlines()[0]}") from None
    after = text[text.rfind(marker) + len(marker) :]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after.strip() else []
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return next((i for i in ids if i in special), None)


def messages_of(prompt: str) -> list[dict]:
    """A prompt as chat messages: an HH-convention prompt read back into its turns (the final empty
    ``Assistant:`` turn dropped), anything else one user message."""
    if prompt.startswith("\n\n") and prompt.rstrip().endswith("Assistant:"):
        body = prompt.rstrip()[: -len("Assistant:")] + "Assistant: "
        parts = _HH.split(body)
        if parts[0] == "" and len(parts) >= 3:
            turns = [(_ROLES[r], c) for r, c in zip(parts[1::2], parts[2::2])]
            if turns[-1] == ("assistant", ""):
                return [{"role": role, "content": content} for role, content in turns[:-1]]
    return [{"role": "user", "content": prompt}]


def render(tokenizer, prompts: Sequence[str]) -> list[str]:
    """``prompts`` through the tokenizer's chat template (unchanged when it has none)."""
    if not getattr(tokenizer, "chat_template", None):
        return list(prompts)
    bos = tokenizer.bos_token
    adds_bos = bool(bos) and tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]
    out = []
    for p in prompts:
        try:
            text = tokenizer.apply_chat_template(messages_of(p), tokenize=False, add_generation_prompt=True)
        except Exception as e:
            raise ConfigError(f"the chat template could not render prompt {p[:60]!r}: {str(e).splitlines()[0]}")
        if adds_bos and text.startswith(bos):  # the tokenizer adds it again when the text is tokenised
            text = text[len(bos) :]
        out.append(text)
    return out


# ---------------------------------------------------------------- conversations as HH-style text

ASSISTANT = "\n\nAssistant:"
"""The HH marker after which the assistant's turn begins."""
ROLE_HEADERS = {"user": "Human", "human": "Human", "assistant": "Assistant", "system": "System"}
"""How message roles are rendered as HH-style plain text."""


def render_messages(messages: Any, path: str | Path, line: int, name: str) -> str:
    """Messages ``[{"role": ..., "content": ...}, ...]`` as HH-style text ``"\\n\\nHuman: ..."``."""
    if not messages:
        raise DataError(path, "is an empty list of messages", line, name)
    parts = []
    for i, msg in enumerate(messages):
        where = f"{name}[{i}]"
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise DataError(path, 'expected a message {"role": ..., "content": ...}', line, where)
        role, content = msg["role"], msg["content"]
        if not isinstance(role, str):
            raise DataError(path, f"role must be a string, got {type(role).__name__}", line, where)
        if role not in ROLE_HEADERS:
            raise DataError(path, f"role {role!r} is not one of {', '.join(sorted(ROLE_HEADERS))}", line, where)
        if not isinstance(content, str):
            raise DataError(path, f"content must be a string, got {type(content).__name__}", line, where)
        parts.append(f"\n\n{ROLE_HEADERS[role]}: {content}")
    return "".join(parts)
