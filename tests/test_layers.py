"""The house holds: every import runs down the layer order, no folder cycle, no file over 400 lines, no import
hidden inside a function except a heavy library's (with a comment saying so).

Read from the source text (the AST), so the test needs no import to succeed and names the file and line of
every offence.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rlhflab"

LAYERS = [
    "core",
    "models",
    "tasks",
    "reward",
    "feedback",
    "methods",
    "evaluation",
    "control",
    "run",
    "report",
    "pipeline",
    "cli",
]
"""Lowest first: a module may import its own folder and the folders before it, never one after it."""

TOP = len(LAYERS)
"""``rlhflab/__init__.py`` and ``__main__.py`` sit above every layer."""

LAZY = ("transformers", "peft", "matplotlib", "accelerate", "wandb", "torch.utils.tensorboard", "uvicorn",
        "vaderSentiment", "huggingface_hub")  # fmt: skip
"""Heavy libraries (seconds to import, or optional): the only imports allowed inside a function."""

PURE = ("losses", "estimators", "metric_names", "errors")
"""Modules of ``core`` that import nothing but the standard library, torch and numpy."""

MAX_LINES = 400


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = ("rlhflab",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of a module ``rlhflab.X...`` (X a folder of LAYERS), or TOP for the package's own files."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return TOP


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, inside a function) for every import of ``path``; ``from rlhflab.x import y`` counts
    as importing ``rlhflab.x.y`` when y is a module, else ``rlhflab.x``."""
    tree = ast.parse(path.read_text(), str(path))
    inside: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(fn) if n is not fn)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, id(node) in inside) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; write the absolute module"
            base = node.module or ""
            for a in node.names:
                sub = f"{base}.{a.name}"
                is_module = (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() or (
                    PACKAGE.parent / sub.replace(".", "/") / "__init__.py"
                ).exists()
                found.append((node.lineno, sub if is_module else base, id(node) in inside))
    return found


def test_every_import_runs_down_the_layers():
    offences = []
    for path in sources():
        me = module_name(path)
        for line, target, _ in imports(path):
            if target.startswith("rlhflab.") and layer_of(target) > layer_of(me):
                offences.append(f"{path.relative_to(PACKAGE)}:{line}: {me} imports {target}, a higher layer")
    assert not offences, "\n".join(offences)


def test_no_cycle_between_folders():
    edges: dict[str, set[str]] = {}
    for path in sources():
        me = module_name(path).split(".")
        for _, target, _ in imports(path):
            t = target.split(".")
            if t[0] == "rlhflab" and len(me) > 1 and len(t) > 1 and me[1] != t[1]:
                edges.setdefault(me[1], set()).add(t[1])

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges.get(a, ()))

    cycles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if reaches(b, a, {b}))
    assert not cycles, cycles


def test_imports_inside_functions_are_heavy_libraries_with_a_comment():
    offences = []
    for path in sources():
        lines = path.read_text().splitlines()
        for line, target, inside in imports(path):
            if not inside:
                continue
            heavy = any(target == lib or target.startswith(lib + ".") for lib in LAZY)
            said = "heavy" in lines[line - 1] or (line > 1 and "heavy" in lines[line - 2])
            if not (heavy and said):
                offences.append(f"{path.relative_to(PACKAGE)}:{line}: {target} imported inside a function")
    assert not offences, "\n".join(offences)


def test_pure_core_modules_import_only_torch_and_numpy():
    import sys

    allowed = {"torch", "numpy", "__future__", *sys.stdlib_module_names}
    offences = []
    for name in PURE:
        path = PACKAGE / "core" / f"{name}.py"
        for line, target, _ in imports(path):
            if target.split(".")[0] not in allowed and target not in {f"rlhflab.core.{p}" for p in PURE}:
                offences.append(f"core/{name}.py:{line}: imports {target}")
    assert not offences, "\n".join(offences)


REPO = PACKAGE.parents[1]


def every_python_file() -> list[Path]:
    """The package, its tests, benchmarks and scripts."""
    return sorted([*sources(), *(p for d in ("tests", "bench", "scripts") for p in (REPO / d).glob("*.py"))])


@pytest.mark.parametrize("path", every_python_file(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_source_file_over_400_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(REPO)} has {n} lines (at most {MAX_LINES})"


def test_the_layer_rule_can_fail(tmp_path):
    """The checker sees an upward import (so a green run means something)."""
    bad = tmp_path / "x.py"
    bad.write_text("from rlhflab.cli import main\n\ndef f():\n    import json\n")
    found = imports(bad)
    assert (1, "rlhflab.cli", False) in found and (4, "json", True) in found
    assert layer_of("rlhflab.cli.common") > layer_of("rlhflab.core.loop")
