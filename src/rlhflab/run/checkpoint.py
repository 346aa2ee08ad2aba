"""Checkpoints for ``--resume``, and the hooks that connect a method to the run directory.

A checkpoint holds what a training loop hands over — models, optimisers, and a small state
dict (step, generator state, data position, KL controller) per process — in
``checkpoints/<stage>/step-NNNNNNN/``:

    <name>.safetensors       each model's weights
    <name>.optim.pt          each optimiser's state (tensors and numbers only)
    state-<rank>.pt          each process's state dict

It is written to a temporary folder and renamed into place when every process has finished,
so the latest checkpoint is always whole. Everything is read back with safetensors or with
``torch.load(weights_only=True)``, which unpickles only tensors and plain containers: resuming a
run directory received from someone else cannot execute code.

The global random state is not saved: the loops draw every random number from generators they
pass explicitly (and keep in their state), so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rlhflab.core import distributed
from rlhflab.core.distributed import unwrap
from rlhflab.core.errors import RlhflabError
from rlhflab.core.files import append_jsonl, atomic_dir, atomic_write_json, keep_until_step, read_jsonl, truncate_jsonl
from rlhflab.core.loop import Hooks
from rlhflab.run.rundir import RunDir
from rlhflab.run.tracking import open_tracker


def _unwrap(obj):
    return unwrap(obj) if isinstance(obj, torch.nn.Module) else obj


def _is_optimizer(obj) -> bool:
    return hasattr(obj, "param_groups") and hasattr(obj, "load_state_dict")


def _load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__
        raise RlhflabError(f"{path}: not a readable rlhflab checkpoint file ({first[:200]})") from None


class RunCheckpoints:
    """``Checkpoints`` (see ``rlhflab.core.loop``) kept in a run directory.

    On save it also records how many rows the stage's metric log has, and on restore it cuts
    the logs back to the checkpoint (rows written after it are written again by the resumed run).
    """

    def __init__(self, run: RunDir, stage: str, metrics: Path, samples: Path | None = None, keep: int = 2):
        self.run, self.stage, self.metrics, self.samples, self.keep = run, stage, metrics, samples, keep

    def save(self, accelerator, step: int, objects: dict[str, Any], state: dict) -> None:
        paths = list(self.run.new_checkpoint_dir(self.stage, step)) if accelerator.is_main_process else [None, None]
        if accelerator.num_processes > 1:
            # heavy library (accelerate): imported on first use, not with rlhflab
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(paths)
        tmp, final = paths
        if accelerator.is_main_process:
            for name, obj in objects.items():
                obj = _unwrap(obj)
                if _is_optimizer(obj):
                    torch.save(obj.state_dict(), tmp / f"{name}.optim.pt")
                else:
                    tensors = {k: v.detach().contiguous().cpu() for k, v in obj.state_dict().items()}
                    save_file(_untie(tensors), str(tmp / f"{name}.safetensors"))
        rows = len(read_jsonl(self.metrics)) if self.metrics.exists() else 0
        torch.save({**state, "metrics_rows": rows}, tmp / f"state-{accelerator.process_index}.pt")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            self.run.commit_checkpoint(self.stage, tmp, final, keep=self.keep)
        accelerator.wait_for_everyone()

    def restore(self, accelerator, objects: dict[str, Any]) -> dict | None:
        checkpoint = self.run.latest_checkpoint(self.stage)
        if checkpoint is None:
            return None

        for name, obj in objects.items():
            obj = _unwrap(obj)
            if _is_optimizer(obj):
                obj.load_state_dict(_load(checkpoint / f"{name}.optim.pt"))
            else:
                path = checkpoint / f"{name}.safetensors"
                try:
                    tensors = load_file(str(path))
                except Exception as e:  # safetensors raises its own error types for a damaged file
                    raise RlhflabError(f"{path}: not a readable checkpoint file ({str(e)[:200]})") from None
                obj.load_state_dict(tensors, strict=False)
        state = _load(checkpoint / f"state-{accelerator.process_index}.pt")
        if not isinstance(state, dict) or "step" not in state:
            raise RlhflabError(f"{checkpoint}: its state file has no step; not an rlhflab checkpoint")
        if accelerator.is_main_process:
            truncate_jsonl(self.metrics, state["metrics_rows"])
            if self.samples is not None:
                keep_until_step(self.samples, state["step"])
        accelerator.wait_for_everyone()
        return state

    def clear(self, accelerator) -> None:
        """A fresh start: remove the stage's old logs and checkpoints."""
        if accelerator.is_main_process:
            for log in (self.metrics, self.samples):
                if log is not None:
                    log.unlink(missing_ok=True)
            shutil.rmtree(self.run.checkpoint_root(self.stage), ignore_errors=True)
        accelerator.wait_for_everyone()


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied embeddings): store each once, cloned."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in tensors.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


def run_hooks(
    run: RunDir,
    stage: str,
    resume: bool,
    metrics: Path,
    samples: Path | None = None,
    progress=True,
    log_with: str = "none",
    config: dict | None = None,
):
    """Hooks that write a method's metric rows and samples to ``metrics``/``samples`` (JSONL, one
    whole line per row) and its checkpoints to ``checkpoints/<stage>``; without ``resume`` the old
    ones are removed first. ``log_with`` mirrors the metric rows to a tracker (``rlhflab.run.tracking``)."""
    run.path.mkdir(parents=True, exist_ok=True)
    checkpoints = RunCheckpoints(run, stage, metrics, samples)
    if not resume:
        checkpoints.clear(distributed.accelerator())
    mirror = open_tracker(log_with, run.path, stage, config or {}) if distributed.state().is_main_process else None

    def write_metrics(row: dict) -> None:
        append_jsonl(metrics, row)
        if mirror is not None:
            mirror(row)

    return Hooks(
        metrics=write_metrics,
        samples=(lambda row: append_jsonl(samples, row)) if samples is not None else None,
        checkpoints=checkpoints,
        progress=progress,
    )


def write_model(run: RunDir, name: str, model, tokenizer, extra: dict[str, dict] | None = None) -> Path:
    """Write a trained model to ``run/name`` (Hugging Face format) at once, from the main process.

    ``extra`` maps file names to JSON objects stored beside the weights.
    """
    state = distributed.state()
    state.wait_for_everyone()
    final = run / name
    if state.is_main_process:
        with atomic_dir(final) as tmp:
            _unwrap(model).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            for file, obj in (extra or {}).items():
                atomic_write_json(tmp / file, obj)
    state.wait_for_everyone()
    return final
