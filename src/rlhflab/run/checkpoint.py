"""Training checkpoints for ``--resume``: accelerate's state plus each process's own trainer state.

A checkpoint is written to a temporary folder and renamed into place only when every
process has finished writing, so the latest checkpoint is always whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rlhflab.run.rundir import RunDir, read_jsonl


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


def resume_or_start(accelerator, run: RunDir, stage: str, resume: bool, logs: tuple[Path, ...]) -> dict | None:
    """Restore the last checkpoint of ``stage`` (and cut ``logs[0]``, its metrics, back to it) when
    resuming; otherwise clear the stage's old logs and checkpoints. Returns the trainer state or None."""
    from rlhflab.run.rundir import keep_until_step, truncate_jsonl

    checkpoint = run.latest_checkpoint(stage) if resume else None
    state = None
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint)
        if accelerator.is_main_process:
            truncate_jsonl(logs[0], state["metrics_rows"])
            for log in logs[1:]:
                keep_until_step(log, state["step"])
    elif accelerator.is_main_process:
        import shutil

        for log in logs:
            log.unlink(missing_ok=True)
        shutil.rmtree(run.checkpoint_root(stage), ignore_errors=True)
    accelerator.wait_for_everyone()
    return state


def save_policy(accelerator, run: RunDir, policy, tokenizer, extra: dict[str, dict] | None = None) -> None:
    """Write the trained policy to ``run/policy`` (Hugging Face format) at once, from the main process.

    ``extra`` maps file names to JSON objects stored beside the weights.
    """
    import shutil

    from rlhflab.rollout.models import unwrap
    from rlhflab.run.rundir import atomic_write_json, replace_dir

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = run.path / ".tmp-policy"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrap(policy).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, obj in (extra or {}).items():
            atomic_write_json(tmp / name, obj)
        replace_dir(tmp, run / "policy")
    accelerator.wait_for_everyone()
