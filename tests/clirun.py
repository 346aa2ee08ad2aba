"""Run the rlhflab command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src"), e.get("PYTHONPATH", "")])
    e.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="2")
    return e


def rlhflab(*args: str, check: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "rlhflab", *map(str, args)], capture_output=True, text=True, env=env(), timeout=timeout
    )
    if check and out.returncode != 0:
        raise AssertionError(f"rlhflab {' '.join(map(str, args))} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return out


def _default_sigint() -> None:
    # a shell without job control starts background commands (``pytest ... &``) with SIGINT ignored, and
    # Python keeps it ignored: restore the default, so that the child turns Ctrl-C into KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rlhflab", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        preexec_fn=_default_sigint,
    )
