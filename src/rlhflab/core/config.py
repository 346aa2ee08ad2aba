"""Configs are frozen dataclasses with a docstring per field; the docstrings become ``--help``.

``field_docs`` reads those docstrings from the class source, ``click_options`` turns the
fields into command-line options, and ``check`` gives every ``__post_init__`` the same
one-line message: which value, what it was, what is allowed.

Configs compose: the settings every method shares live in three small configs below
(``SamplingConfig``, ``OptimizerConfig``, ``RunConfig``), each a field of the method's own
config, so they are declared and checked once. On the command line and in ``build`` their
fields are flat (``--lr``, ``--max-new-tokens``, ``--seed``); in the manifest they are nested.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import textwrap
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal, get_args, get_origin

import click

from rlhflab.core.errors import ConfigError, DataError


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


# ---------------------------------------------------------------- the configs every method shares


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 24
    """Length limit of each sampled continuation, in tokens."""
    temperature: float = 0.7
    """Sampling temperature (0.7 as in lm-human-preferences); log-probabilities and KL use the same temperature."""

    def __post_init__(self) -> None:
        check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, ">= 1")
        check(self.temperature > 0, "temperature", self.temperature, "> 0")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 1e-4
    """Peak learning rate (AdamW)."""
    adam_eps: float = 1e-8
    """AdamW epsilon (1e-5 for the RL methods, as lm-human-preferences and CleanRL)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value before each step."""
    weight_decay: float = 0.0
    """AdamW weight decay."""

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", self.lr, "> 0")
        check(self.adam_eps > 0, "adam_eps", self.adam_eps, "> 0")
        check(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "> 0")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    """Seed of prompt order, data order, sampling and new weights."""
    checkpoint_every: int = 20
    """Save a checkpoint for --resume every this many steps."""
    sample_every: int = 3
    """Log a few training samples (train_samples.jsonl; the report animates them) every this many steps."""
    samples_logged: int = 3
    """How many training samples to log each time."""
    log_with: Literal["none", "tensorboard", "wandb"] = "none"
    """Also send every metrics row to TensorBoard (RUN/tensorboard/<stage>) or Weights & Biases (if installed);
    metrics.jsonl is written either way."""

    def __post_init__(self) -> None:
        check(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, ">= 1")
        check(self.sample_every >= 1, "sample_every", self.sample_every, ">= 1")
        check(self.samples_logged >= 0, "samples_logged", self.samples_logged, ">= 0")


def sampling_field(**values: Any) -> Any:
    """A method config's ``sampling`` field, with the method's own defaults."""
    return dataclasses.field(default_factory=lambda: SamplingConfig(**values))


def optimizer_field(**values: Any) -> Any:
    """A method config's ``optimizer`` field, with the method's own defaults."""
    return dataclasses.field(default_factory=lambda: OptimizerConfig(**values))


def run_field(**values: Any) -> Any:
    """A method config's ``run`` field, with the method's own defaults."""
    return dataclasses.field(default_factory=lambda: RunConfig(**values))


# ---------------------------------------------------------------- building configs from flat values


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _resolved_type(cls: type, f: dataclasses.Field) -> Any:
    return _hints(cls)[f.name]


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def _nested(cls: type) -> dict[str, type]:
    """The fields of ``cls`` that are configs themselves, by name."""
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}


def flat_names(cls: type) -> set[str]:
    """Every name ``build`` accepts for ``cls``: its own fields and those of its nested configs."""
    names = {f.name for f in dataclasses.fields(cls)}
    for sub in _nested(cls).values():
        names |= flat_names(sub)
    return names


def build(cls: type, values: dict[str, Any] | None = None, *, strict: bool = True, **flat: Any) -> Any:
    """``cls`` from flat or nested values: ``build(PPOConfig, lr=1e-3, steps=5)`` sets the optimiser's
    ``lr``; ``{"optimizer": {"lr": 1e-3}}`` (a manifest's form) does the same. Fields not given keep the
    class's defaults, nested ones included. ``strict`` makes an unknown name an error (not for manifests,
    which may come from an older version)."""
    values = {**(values or {}), **flat}
    nested = _nested(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in nested:
            sub_cls = nested[f.name]
            given = values.pop(f.name, None)
            base = dataclasses.asdict(given) if dataclasses.is_dataclass(given) else dict(given or {})
            mine = {k: values.pop(k) for k in list(values) if k in flat_names(sub_cls)}
            default = dataclasses.asdict(_default(f))
            kwargs[f.name] = build(sub_cls, {**default, **base, **mine}, strict=strict)
        elif f.name in values:
            kwargs[f.name] = values.pop(f.name)
    if values and strict:
        raise ConfigError(f"{cls.__name__} has no setting {sorted(values)[0]!r}")
    check_types(cls, {k: v for k, v in kwargs.items() if k not in nested})  # e.g. --steps 10**400
    return cls(**kwargs)


INT64 = (-(2**63), 2**63 - 1)
"""The integers a recorded setting may hold (what torch and SQLite take)."""


def _type_problem(tp: Any, value: Any) -> str | None:
    """What is wrong with ``value`` for a field of type ``tp`` (None: nothing)."""
    if get_origin(tp) is typing.Union or str(get_origin(tp)) == "<class 'types.UnionType'>":
        if value is None and type(None) in get_args(tp):
            return None
        tp = next(a for a in get_args(tp) if a is not type(None))
    if get_origin(tp) is Literal:
        ok = any(value == a and type(value) is type(a) for a in get_args(tp))
        return None if ok else f"one of {list(get_args(tp))}"
    if tp is bool:
        return None if isinstance(value, bool) else "true or false"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]
        return None if ok else "a 64-bit integer"
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max
        return None if ok else "a finite number"
    if tp is str:
        return None if isinstance(value, str) else "a string"
    return None


def check_types(cls: type, values: dict[str, Any], where: str = "") -> None:
    """ConfigError naming the first setting of ``values`` (nested configs as objects) whose type ``cls``
    does not take, e.g. a list where a string is expected or an integer beyond 64 bits."""
    hints, nested = _hints(cls), _nested(cls)
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value, name = values[f.name], where + f.name
        if f.name in nested:
            if not isinstance(value, dict):
                raise ConfigError(f"setting '{name}' must be an object of settings, got {type(value).__name__}")
            check_types(nested[f.name], value, name + ".")
        elif (problem := _type_problem(hints[f.name], value)) is not None:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ConfigError(f"setting '{name}' must be {problem}, got {shown}")


def from_dict(cls: type, values: dict[str, Any], source: str | Path | None = None) -> Any:
    """Build ``cls`` from a dict (a manifest's config), ignoring keys it does not have. Every value
    is checked against the field's type first; with ``source`` (the file the dict came from) an
    error names that file."""
    try:
        if not isinstance(values, dict):
            raise ConfigError(f"expected an object of settings, got {type(values).__name__}")
        check_types(cls, values)
        return build(cls, values, strict=False)
    except ConfigError as e:
        if source is None:
            raise
        raise DataError(source, f"the recorded configuration is not valid: {e}") from None


def flatten(config: Any) -> dict[str, Any]:
    """The flat ``name: value`` form of a config (nested configs' fields inlined)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out.update(flatten(value) if dataclasses.is_dataclass(value) else {f.name: value})
    return out


def click_options(cls: type, skip: tuple[str, ...] = (), prefix: str = "") -> Callable[[Callable], Callable]:
    """Decorator adding one ``--option`` per dataclass field, help from its docstring.

    Nested configs (``sampling``, ``optimizer``, ``run``) add their fields as flat options, with
    the defaults ``cls`` gives them. With ``prefix`` ("rater_"), field ``temperature`` becomes
    ``--rater-temperature`` and reaches the command as ``rater_temperature``.
    """
    return _options(cls, {}, skip, prefix)


def _options(cls: type, defaults: dict[str, Any], skip: tuple[str, ...], prefix: str) -> Callable[[Callable], Callable]:
    docs = field_docs(cls)
    nested = _nested(cls)

    def decorate(fn: Callable) -> Callable:
        for f in reversed(dataclasses.fields(cls)):
            if f.name in skip:
                continue
            default = defaults.get(f.name, _default(f))
            if f.name in nested:  # a shared config: its fields as options, with this class's defaults for them
                fn = _options(nested[f.name], dataclasses.asdict(default), skip, prefix)(fn)
                continue
            tp = _resolved_type(cls, f)
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
    names = flat_names(cls)
    chosen = {k[len(prefix) :]: v for k, v in options.items() if k.startswith(prefix) and k[len(prefix) :] in names}
    return build(cls, chosen)
