"""How many CPU threads torch uses (``--threads``).

torch starts with one thread per core whatever else runs on the machine; when another busy process shares
the cores, each step waits for the thread that lost its core, and sampling slows several times over. The default here counts the cores the machine left idle over the last minute (its 1-minute load
average) and shares them among this run's processes; ``--threads N`` (or ``RLHFLAB_THREADS=N``) sets it.
Every stage records the count it ran with in ``manifest.json`` (``threads``), and ``--resume`` keeps it.
"""

from __future__ import annotations

import os

import torch

from rlhflab.core.errors import ConfigError

ENV = "RLHFLAB_THREADS"

_CHOSEN: dict = {}


def cpus() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load() -> float | None:
    """The 1-minute load average (runnable processes), or None where the system has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_threads(cores: int, busy: float | None, processes: int = 1) -> int:
    """Threads for one of ``processes`` processes on ``cores`` cores of which ``busy`` were busy on average:
    the idle cores shared among the processes, rounded, at least 1 and at most the process's share of the
    cores (all of its share when the load is unknown)."""
    share = max(1, cores // max(1, processes))
    if busy is None:
        return share
    idle = max(0.0, cores - busy)
    return max(1, min(share, round(idle / max(1, processes))))


def parse(value: str | int | None, source: str) -> int | None:
    """``value`` as a positive thread count (None: choose), or a one-line error naming ``source``."""
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() != str(n):
        raise ConfigError(f"{source} must be a positive whole number of threads, got {value!r}")
    return n


def choose(given: int | None, processes: int = 1) -> dict:
    """Set torch's thread count: ``given``, else ``$RLHFLAB_THREADS``, else ``default_threads``; returns what
    was chosen and why (for the manifest)."""
    n = given if given is not None else parse(os.environ.get(ENV), ENV)
    cores, busy = cpus(), load()
    how = "given" if n is not None else "idle cores"
    if n is None:
        n = default_threads(cores, busy, processes)
    torch.set_num_threads(n)
    _CHOSEN.clear()
    _CHOSEN.update(threads=n, chosen=how, cores=cores, load_1min=None if busy is None else round(busy, 2))
    return dict(_CHOSEN)


def record() -> dict:
    """The manifest's ``threads``: the count torch runs with now, and how it was chosen (``library``: by
    whoever called rlhflab's functions, not the command line)."""
    return {**_CHOSEN, "threads": torch.get_num_threads()} if _CHOSEN else {"threads": torch.get_num_threads(),
                                                                             "chosen": "library"}  # fmt: skip


def keep(recorded: object) -> None:
    """On ``--resume``: run with the thread count the interrupted stage ``recorded`` unless ``--threads`` (or
    the environment) gave one, so a resumed run repeats the arithmetic of the one it continues."""
    n = recorded.get("threads") if isinstance(recorded, dict) else None
    if _CHOSEN.get("chosen") != "given" and isinstance(n, int) and not isinstance(n, bool) and n >= 1:
        torch.set_num_threads(n)
        _CHOSEN.update(threads=n, chosen="kept from the interrupted stage")
