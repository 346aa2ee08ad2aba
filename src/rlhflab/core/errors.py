"""Errors a user can act on: the command line prints them in one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class RlhflabError(Exception):
    """A problem with the input, the configuration or the environment, stated for the user."""


class ConfigError(RlhflabError, ValueError):
    """A configuration value out of range: says which, what it was and what is allowed."""


class DataError(RlhflabError):
    """A bad input file: names the file, the line (1-based) and the field where known."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        where = self.path + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


class TrainingDiverged(RlhflabError):
    """Training produced a non-finite or impossible quantity; nothing broken is written."""

    def __init__(self, stage: str, step: int, quantity: str, value: float):
        self.stage, self.step, self.quantity, self.value = stage, step, quantity, value
        super().__init__(
            f"{stage} stopped at step {step}: {quantity} is {value:.6g}; the run directory keeps its last "
            f"checkpoint and no {stage} output was written (try a smaller learning rate)"
        )
