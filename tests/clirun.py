"""Run the rlhflab command line in a subprocess, as a user would."""

from __future__ import annotations

import os
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


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rlhflab", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
