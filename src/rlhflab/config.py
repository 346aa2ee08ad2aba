"""Configs are frozen dataclasses with a docstring per field; the docstrings become ``--help``.

``field_docs`` reads those docstrings from the class source, ``click_options`` turns the
fields into command-line options, and ``check`` gives every ``__post_init__`` the same
one-line message: which value, what it was, what is allowed.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from functools import lru_cache
from typing import Any, Callable, Literal, get_args, get_origin

from rlhflab.errors import ConfigError


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The string literal written under each annotated field of a dataclass (and its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def check(ok: bool, name: str, value: Any, allowed: str) -> None:
    """Raise ConfigError("--kl-coef must be >= 0, got -1") unless ``ok``."""
    if not ok:
        raise ConfigError(f"--{name.replace('_', '-')} must be {allowed}, got {value!r}")


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build ``cls`` from a dict, ignoring keys it does not have (e.g. from an older manifest)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def _resolved_type(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def click_options(cls: type, skip: tuple[str, ...] = (), prefix: str = "") -> Callable[[Callable], Callable]:
    """Decorator adding one ``--option`` per dataclass field, help from its docstring.

    With ``prefix`` ("rater_"), field ``temperature`` becomes ``--rater-temperature`` and
    reaches the command as ``rater_temperature``.
    """
    import click

    docs = field_docs(cls)

    def decorate(fn: Callable) -> Callable:
        for f in reversed(dataclasses.fields(cls)):
            if f.name in skip:
                continue
            tp = _resolved_type(cls, f)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            dest = prefix + f.name
            flag = "--" + dest.replace("_", "-")
            help_text = docs.get(f.name, "")
            optional = False
            if get_origin(tp) is typing.Union or str(get_origin(tp)) == "<class 'types.UnionType'>":
                args = [a for a in get_args(tp) if a is not type(None)]
                optional = len(args) < len(get_args(tp))
                tp = args[0]
            if tp is bool:
                option = click.option(
                    f"{flag}/--no-{flag[2:]}", dest, default=default, show_default=True, help=help_text
                )
            elif get_origin(tp) is Literal:
                option = click.option(
                    flag,
                    dest,
                    type=click.Choice([str(a) for a in get_args(tp)]),
                    default=default,
                    show_default=True,
                    help=help_text,
                )
            elif tp in (int, float, str):
                option = click.option(
                    flag,
                    dest,
                    type=tp,
                    default=default,
                    show_default=default is not None,
                    help=help_text + (" (optional)" if optional and default is None else ""),
                )
            else:
                raise TypeError(f"{cls.__name__}.{f.name}: no command-line form for type {tp}")
            fn = option(fn)
        return fn

    return decorate


def config_from_options(cls: type, options: dict[str, Any], prefix: str = "") -> Any:
    """Build ``cls`` from the options ``click_options(cls, prefix=prefix)`` added."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(
        **{k[len(prefix) :]: v for k, v in options.items() if k.startswith(prefix) and k[len(prefix) :] in names}
    )
