"""The run directory: every stage's inputs, outputs and provenance, written so a crash loses nothing.

Layout (``runs/<name>/``)::

    manifest.json          per stage: resolved config, command line, git revision,
                           package versions, seed, hashes of input files, status
    pairs.jsonl            preference pairs (feedback)
    reward_model/          reward model (HF format) + reward_norm.json
    reward_metrics.jsonl   reward-model training curve
    policy/                tuned policy (HF format, ``from_pretrained`` loads it)
    metrics.jsonl          optimisation trajectory, one line per step
    samples.jsonl          evaluation samples, base and tuned
    summary.json           evaluation summary
    checkpoints/<stage>/   the last checkpoints, for ``--resume``

Every file is replaced atomically (write to a temporary name, then rename), and JSONL
trajectories are appended a whole line at a time, so an interrupted command leaves every
file either as before or complete.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from rlhflab.errors import DataError, RlhflabError


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished directory into place, replacing any older one."""
    old = final.with_name(f".{final.name}.old{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def append_jsonl(path: str | Path, obj: dict[str, Any]) -> None:
    """Append one line in a single write, so a crash leaves whole lines only."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(obj, ensure_ascii=False, default=float) + "\n")
        f.flush()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read JSONL; a last line cut short by a crash is ignored, any other bad line is an error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = []
    for i, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            rows.append(json.loads(text))
        except json.JSONDecodeError as e:
            if i == len(lines):  # unterminated last line: an interrupted append
                break
            raise DataError(path, f"not valid JSON ({e.msg})", i) from None
    return rows


def truncate_jsonl(path: str | Path, keep: int) -> None:
    """Keep the first ``keep`` rows (used on resume to drop steps after the checkpoint)."""
    path = Path(path)
    if path.exists():
        rows = read_jsonl(path)[:keep]
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def keep_until_step(path: str | Path, step: int) -> None:
    """Keep the rows whose "step" is at most ``step`` (used on resume)."""
    path = Path(path)
    if path.exists():
        rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_revision() -> str | None:
    """The git commit of the rlhflab source, with ``-dirty`` if it has uncommitted changes."""
    src = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("rlhflab", "torch", "transformers", "accelerate", "tokenizers", "numpy", "vaderSentiment"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunDir:
    """A run directory and its manifest."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(self.manifest_path, f"not valid JSON ({e.msg})", e.lineno) from None

    def stage(self, name: str) -> dict[str, Any]:
        stage = self.manifest().get("stages", {}).get(name)
        if stage is None:
            raise RlhflabError(f"{self.path}: no '{name}' stage in manifest.json (run that stage first)")
        return stage

    def begin_stage(
        self, name: str, config: dict[str, Any], inputs: dict[str, str | Path] | None = None, **extra: Any
    ) -> None:
        """Record a stage's resolved config and provenance before it runs."""
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest()
        manifest.setdefault("created", now())
        manifest["rlhflab"] = package_versions().get("rlhflab")
        manifest.setdefault("stages", {})[name] = {
            "config": config,
            "command": sys.argv,
            "git": git_revision(),
            "packages": package_versions(),
            "inputs": {
                k: {"path": str(p), "sha256": sha256_file(p)} for k, p in (inputs or {}).items() if Path(p).is_file()
            },
            "started": now(),
            "status": "running",
            **extra,
        }
        atomic_write_json(self.manifest_path, manifest)

    def end_stage(self, name: str, status: str = "done", **extra: Any) -> None:
        manifest = self.manifest()
        stage = manifest.setdefault("stages", {}).setdefault(name, {})
        stage.update(status=status, finished=now(), **extra)
        atomic_write_json(self.manifest_path, manifest)

    # ------------------------------------------------------------ checkpoints

    def checkpoint_root(self, stage: str) -> Path:
        return self.path / "checkpoints" / stage

    def latest_checkpoint(self, stage: str) -> Path | None:
        pointer = self.checkpoint_root(stage) / "latest"
        if not pointer.exists():
            return None
        path = self.checkpoint_root(stage) / pointer.read_text().strip()
        return path if path.is_dir() else None

    def new_checkpoint_dir(self, stage: str, step: int) -> tuple[Path, Path]:
        """(temporary dir to write into, final dir) for the checkpoint at ``step``."""
        root = self.checkpoint_root(stage)
        final = root / f"step-{step:07d}"
        tmp = root / f".tmp-step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp, final

    def commit_checkpoint(self, stage: str, tmp: Path, final: Path, keep: int = 2) -> None:
        replace_dir(tmp, final)
        atomic_write_text(self.checkpoint_root(stage) / "latest", final.name + "\n")
        for old in list(self.iter_checkpoints(stage))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def iter_checkpoints(self, stage: str) -> Iterator[Path]:
        yield from sorted(p for p in self.checkpoint_root(stage).glob("step-*") if p.is_dir())
