"""Training checkpoints for ``--resume``: accelerate's state plus each process's own trainer state.

A checkpoint is written to a temporary folder and renamed into place only when every
process has finished writing, so the latest checkpoint is always whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rlhflab.rundir import RunDir, read_jsonl


def save_checkpoint(
    accelerator,
    run: RunDir,
    stage: str,
    index: int,
    trainer_state: dict[str, Any],
    metrics_path: Path,
    models: bool = True,
) -> None:
    """Save models and optimisers (through accelerate, when ``models``) and ``trainer_state``.

    ``trainer_state`` is this process's own (generator state, step, ...); the number of
    rows of ``metrics_path`` written so far is added, so a resume can drop later rows.
    """
    paths = list(run.new_checkpoint_dir(stage, index)) if accelerator.is_main_process else [None, None]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(paths)
    tmp, final = paths
    if models:
        accelerator.save_state(str(tmp / "accelerate"))
    rows = len(read_jsonl(metrics_path)) if metrics_path.exists() else 0
    torch.save({**trainer_state, "metrics_rows": rows}, tmp / f"trainer_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        run.commit_checkpoint(stage, tmp, final)
    accelerator.wait_for_everyone()


def read_trainer_state(checkpoint: Path, process_index: int) -> dict[str, Any]:
    """This process's trainer state in ``checkpoint``."""
    return torch.load(checkpoint / f"trainer_state_{process_index}.pt", weights_only=False)


def load_checkpoint(accelerator, checkpoint: Path) -> dict[str, Any]:
    """Restore accelerate's state (if the checkpoint has one) and return this process's trainer state."""
    if (checkpoint / "accelerate").is_dir():
        accelerator.load_state(str(checkpoint / "accelerate"))
    return read_trainer_state(checkpoint, accelerator.process_index)
