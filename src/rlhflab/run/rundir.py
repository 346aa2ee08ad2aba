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
import platform
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

from rlhflab.core import threads
from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.core.files import (
    atomic_write_json,
    atomic_write_text,
    read_json,
    read_text,
    replace_dir,
    sha256_file,
    strict_json,
)
from rlhflab.models.samplers import SAMPLER_FILE, is_sampler


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
    """A run directory and its manifest. The run directory owns every file name; stages ask it."""

    PAIRS = "pairs.jsonl"
    PROMPTS = "prompts.jsonl"
    """The run's own prompts (``feedback import --run-dir`` writes them): what its stages sample by default."""
    REWARD_MODEL = "reward_model"
    REWARD_METRICS = "reward_metrics.jsonl"
    POLICY = "policy"
    SAMPLER = SAMPLER_FILE
    METRICS = "metrics.jsonl"
    TRAIN_SAMPLES = "train_samples.jsonl"
    SAMPLES = "samples.jsonl"
    SUMMARY = "summary.json"
    DIAGNOSTICS = "diagnostics.json"
    REPORT = "report.html"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def output(self) -> Path:
        """What the run's optimisation produced: the policy folder, or the run folder when it holds a sampler."""
        if is_sampler(self.path):
            return self.path
        if not (self / self.POLICY).is_dir():
            raise RlhflabError(
                f"{self.path}: no {self.POLICY}/ folder (run 'rlhflab optimize METHOD' first, or pass --policy)"
            )
        return self / self.POLICY

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        manifest = read_json(self.manifest_path)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("stages", {}), dict):
            raise DataError(self.manifest_path, "not an rlhflab manifest (expected an object with 'stages')")
        return manifest

    def stage(self, name: str) -> dict[str, Any]:
        if not self.path.is_dir():
            raise RlhflabError(f"{self.path}: no such run directory")
        stage = self.manifest().get("stages", {}).get(name)
        if stage is None:
            raise RlhflabError(f"{self.path}: no '{name}' stage in manifest.json (run that stage first)")
        if not isinstance(stage, dict):
            raise DataError(
                self.manifest_path, f"expected an object, got {type(stage).__name__}", field=f"stages.{name}"
            )
        return stage

    def prompts(self, given: str | Path | None) -> str | None:
        """``given`` (``--prompts FILE``), or else the run's own ``prompts.jsonl`` if it has one."""
        if given is not None:
            return str(given)
        own = self.path / self.PROMPTS
        return str(own) if own.is_file() else None

    def pad_token(self, given: str | None) -> str | None:
        """``given``, or else the ``--pad-token`` an earlier stage of this run was given (the latest started),
        so that it need not be repeated at every stage."""
        return self.remembered("pad_token", given)

    def remembered(self, name: str, given: str | None) -> str | None:
        """``given``, or else the value of ``name`` (``pad_token``, ``dtype``, ``chat_template``) that the latest
        started stage of this run recorded: among its arguments, or in its config's ``model_options`` (where the
        stages that train a model record their ``--dtype``)."""
        if given is not None or not self.manifest_path.exists():
            return given
        recorded = []
        for i, s in enumerate(self.manifest().get("stages", {}).values()):
            if not isinstance(s, dict):
                continue
            args, config = s.get("args"), s.get("config")
            options = config.get("model_options") if isinstance(config, dict) else None
            for where in (args, options):
                if isinstance(where, dict) and isinstance(where.get(name), str):
                    recorded.append((str(s.get("started", "")), i, where[name]))
                    break
        return max(recorded)[2] if recorded else None

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
            "threads": threads.record(),
            "inputs": {
                k: {"path": str(p), "sha256": sha256_file(p)} for k, p in (inputs or {}).items() if Path(p).is_file()
            },
            "started": now(),
            "status": "running",
            **extra,
        }
        atomic_write_json(self.manifest_path, strict_json(manifest))

    def end_stage(self, name: str, status: str = "done", **extra: Any) -> None:
        manifest = self.manifest()
        stage = manifest.setdefault("stages", {}).setdefault(name, {})
        stage.update(status=status, finished=now(), **extra)
        atomic_write_json(self.manifest_path, strict_json(manifest))

    # ------------------------------------------------------------ checkpoints

    def checkpoint_root(self, stage: str) -> Path:
        return self.path / "checkpoints" / stage

    def latest_checkpoint(self, stage: str) -> Path | None:
        pointer = self.checkpoint_root(stage) / "latest"
        if not pointer.exists():
            return None
        name = read_text(pointer, "checkpoint pointer").strip()
        if not re.fullmatch(r"step-\d+", name):
            raise DataError(pointer, f"expected the name of a checkpoint folder (step-NNNNNNN), got {name[:40]!r}")
        path = self.checkpoint_root(stage) / name
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
        # by step number: "step-10000000" comes after "step-9000000" (names are zero-padded to 7 digits only)
        found = (p for p in self.checkpoint_root(stage).glob("step-*") if p.is_dir())
        yield from sorted(found, key=lambda p: (len(p.name), p.name))
