"""``--config FILE.yaml`` on every command: a file of settings, overridden by the flags given.

A config file is a YAML (or JSON, which YAML reads) mapping from option names to values::

    model: embedded
    steps: 60
    adaptive_kl: true
    kl_target: 3
    optimizer: {lr: 1.0e-4}      # nested as in a manifest: 'lr' is the option --lr
    rater: {temperature: 0.1}    # ... or --rater-temperature when the command has that option

Keys are the long options without their dashes (``kl_target`` or ``kl-target``). A nested
mapping under ``K`` sets ``--K-name`` when the command has that option and ``--name``
otherwise, so the ``args`` and ``config`` a run's manifest records for a stage, merged, are a
valid config file for the same command.
The file's values become the command's defaults (click's ``default_map``): every flag on the
command line wins over the file, and every value is checked as the flag's own would be. A key
the command does not have, or a value its option refuses, is an error naming the file, the
line and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import click
import yaml

from rlhflab.core.errors import DataError
from rlhflab.core.files import read_text

OPTION = "--config"


def read_settings(path: Path) -> list[tuple[tuple[str, ...], Any, int]]:
    """(key path, value, 1-based line) for every leaf of the file's mapping, in file order."""
    text = read_text(path, "config file")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DataError(path, f"not valid YAML: {problem}", line=mark.line + 1 if mark else None) from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise DataError(
            path, "a config file must be a mapping of option names to values", line=root.start_mark.line + 1
        )
    return list(_leaves(path, root, ()))


def _leaves(path: Path, node, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any, int]]:
    seen: set[str] = set()
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not key:
            raise DataError(path, "a key must be an option name (a string)", line=line)
        if key in seen:
            raise DataError(path, f"'{'.'.join((*prefix, key))}' is set twice", line=line)
        seen.add(key)
        if isinstance(value_node, yaml.MappingNode):
            yield from _leaves(path, value_node, (*prefix, key))
            continue
        loader = yaml.SafeLoader("")
        try:
            value = loader.construct_document(value_node)
        except yaml.YAMLError as e:
            raise DataError(path, f"'{key}': {getattr(e, 'problem', e)}", line=line) from None
        finally:
            loader.dispose()
        yield (*prefix, key), value, line


def _long_names(command: click.Command) -> dict[str, click.Parameter]:
    """Every long option of ``command`` by its name without dashes, dashes as underscores."""
    names: dict[str, click.Parameter] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.expose_value:
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("--") and not opt.startswith("--no-"):
                    names[opt[2:].replace("-", "_")] = param
    return names


def _find(keys: tuple[str, ...], names: dict[str, click.Parameter]) -> click.Parameter | None:
    """``(rater, temperature)`` -> --rater-temperature if there is one, else --temperature."""
    keys = tuple(k.replace("-", "_") for k in keys)
    for start in range(len(keys)):
        param = names.get("_".join(keys[start:]))
        if param is not None:
            return param
    return None


def _apply(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    path = Path(value)
    names = _long_names(ctx.command)
    names.pop("config", None)
    defaults: dict[str, Any] = {}
    where: dict[str, tuple[str, int]] = {}
    for keys, setting, line in read_settings(path):
        key = ".".join(keys)
        target = _find(keys, names)
        if target is None:
            raise DataError(path, f"'rlhflab {ctx.command_path.split(' ', 1)[-1]}' has no option '{key}'", line=line)
        if target.name in defaults:
            first_key, first_line = where[target.name]
            raise DataError(
                path, f"'{key}' sets the same option as '{first_key}' (line {first_line})", line=line
            )  # fmt: skip
        if isinstance(setting, list) and not (getattr(target, "multiple", False) or target.nargs != 1):
            raise DataError(path, f"'{key}' takes one value, got a list", line=line)
        if setting is not None:
            if isinstance(target.type, click.Choice) and not isinstance(setting, str):
                setting = str(setting)
            try:
                target.type_cast_value(ctx, setting)
            except click.BadParameter as e:
                raise DataError(path, f"'{key}': {e.message}", line=line) from None
        defaults[target.name] = setting
        where[target.name] = (key, line)
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def config_option() -> click.Option:
    return click.Option(
        [OPTION],
        type=click.Path(dir_okay=False, exists=True),
        is_eager=True,
        expose_value=False,
        callback=_apply,
        help="YAML (or JSON) file of settings for this command; flags given on the command line override it.",
    )


def add_config_option(group: click.Group) -> None:
    """Give every command under ``group`` a ``--config`` option (first, so that it is read first)."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            add_config_option(command)
        elif not any(OPTION in p.opts for p in command.params):
            command.params.insert(0, config_option())
