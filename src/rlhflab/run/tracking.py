"""``--log-with tensorboard|wandb|none``: mirror a training stage's ``metrics.jsonl`` rows to a tracker.

``metrics.jsonl`` stays the record (the report reads it); a tracker gets the same numbers as they are
written, from the main process only: every numeric field of a row as a scalar at the row's ``step``
(a reward-model ensemble's rows under ``member-<i>/``). TensorBoard event files go to
``RUN/tensorboard/<stage>/`` (``tensorboard --logdir RUN/tensorboard``); Weights & Biases, when it is
installed, gets one run per stage named ``<run directory>/<stage>``, in the project ``$WANDB_PROJECT``
(default ``rlhflab``), with the stage's resolved config.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

from rlhflab.core.errors import RlhflabError

TRACKERS = ("none", "tensorboard", "wandb")


def scalars(row: dict) -> tuple[int | None, dict[str, float]]:
    """(step, {name: value}) of a metrics row: its finite numbers, booleans and the step itself left out."""
    step = row.get("step")
    prefix = f"member-{row['member']}/" if isinstance(row.get("member"), int) else ""
    values = {
        prefix + k: float(v)
        for k, v in row.items()
        if k not in ("step", "member") and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
    return (step if isinstance(step, int) else None), values


def open_tracker(kind: str, run_path, stage: str, config: dict[str, Any]) -> Callable[[dict], None] | None:
    """A function that mirrors one metrics row to the tracker ``kind`` (None for ``none``)."""
    if kind == "none":
        return None
    if kind == "tensorboard":
        try:
            # heavy library (torch): imported on first use, not with rlhflab
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RlhflabError("--log-with tensorboard: the tensorboard package is not installed "
                               "(pip install tensorboard; 'make install' does)") from None  # fmt: skip
        writer = SummaryWriter(log_dir=str(run_path / "tensorboard" / stage))

        def to_tensorboard(row: dict) -> None:
            step, values = scalars(row)
            for name, value in values.items():
                writer.add_scalar(name, value, step)
            writer.flush()  # a crash loses nothing already in metrics.jsonl

        return to_tensorboard
    if kind == "wandb":
        try:
            # heavy library (wandb): imported on first use, not with rlhflab
            import wandb
        except ImportError:
            raise RlhflabError("--log-with wandb: wandb is not installed (pip install wandb)") from None
        wandb_run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "rlhflab"), name=f"{run_path.name}/{stage}", dir=str(run_path),
            config=config, resume="allow",
        )  # fmt: skip

        def to_wandb(row: dict) -> None:
            step, values = scalars(row)
            wandb_run.log(values, step=step)

        return to_wandb
    raise RlhflabError(f"--log-with must be one of {', '.join(TRACKERS)}, got {kind!r}")
