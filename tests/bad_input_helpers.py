"""Shared settings and helpers of the bad-input tests (``test_bad_input.py``, ``test_bad_runs_and_models.py``
and ``test_bad_label_requests.py``).

``refused`` runs the CLI in-process and asserts a clean failure: exit status 2; stderr is one line
``error: ...`` naming the offending file (and the line, for JSONL) with no traceback; no file was written
or changed, except that a stage that had begun records itself as failed in the run's manifest; no
temporary file (``.NAME.tmpPID``, ``.tmp-*``, ``.NAME.oldPID``) is left anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from test_reward_model import planted_pairs

from rlhflab.cli import main

TASK = ["--task", "conftest:planted_task"]
# tiny settings, so that a case that wrongly succeeds fails in seconds rather than training for minutes
GRPO = ["--steps", "1", "--prompts-per-step", "2", "--samples-per-prompt", "2", "--minibatch-size", "4"]
GRPO += ["--max-new-tokens", "2"]
PPO = ["--steps", "1", "--prompts-per-step", "4", "--minibatch-size", "4", "--max-new-tokens", "2"]
TEMP = re.compile(r"^\..+\.(tmp|old)\d+$|^\.tmp-")
BIG = "1" + "0" * 400  # 10**400: an integer no field can hold
GOOD_LINES = [json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) for p in planted_pairs(12)]


# ---------------------------------------------------------------- helpers


def files_of(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256 of its bytes)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def temp_files(*roots: Path) -> list[str]:
    return [str(p) for root in roots if root.exists() for p in root.rglob("*") if TEMP.match(p.name)]


def cli_error(capsys, args: list) -> str:
    """Run ``rlhflab ARGS`` in-process; assert exit 2 and one line ``error: ...``; return that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def refused(capsys, root: Path, args: list, names: Path, line: int | None = None, stage: tuple | None = None) -> str:
    """``rlhflab ARGS`` fails cleanly on the bad input ``names``, writing nothing under ``root``.

    ``stage`` = (run directory, stage name): a stage that had begun may record itself in that run's
    manifest, and must say it failed; no other file may appear or change.
    """
    before = files_of(root)
    err = cli_error(capsys, args)
    where = f"{names}, line {line}:" if line is not None else str(names)
    assert where in err, err
    after = files_of(root)
    assert set(before) <= set(after), f"files removed: {set(before) - set(after)}"
    changed = {name for name in after if before.get(name) != after[name]}
    if stage is not None and changed:
        manifest = str((stage[0] / "manifest.json").relative_to(root))
        assert changed == {manifest}, f"written: {sorted(changed)}"
        entry = json.loads((root / manifest).read_text())["stages"][stage[1]]
        assert entry["status"] == "failed", entry
    else:
        assert not changed, f"written: {sorted(changed)}"
    assert temp_files(root) == []
    return err


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def jsonl(path: Path, lines: list[bytes | str]) -> Path:
    return write(path, b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines))


def copy_model(micro_model: Path, dest: Path) -> Path:
    shutil.copytree(micro_model, dest)
    return dest


def truncate(path: Path, keep: float | int = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
