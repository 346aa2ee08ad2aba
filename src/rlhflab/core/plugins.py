"""User code named on the command line as ``package.module:function`` (a task, a rule reward)."""

from __future__ import annotations

import importlib
from typing import Any

from rlhflab.core.errors import RlhflabError


def import_object(target: str, option: str) -> Any:
    """The object ``function`` of ``package.module``, for ``target`` = "package.module:function"; a
    one-line error naming ``option`` (e.g. "--task") when it cannot be imported."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise RlhflabError(f"{option} {target!r}: expected 'package.module:function'")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise RlhflabError(f"{option} {target!r}: could not import it ({e})") from None
