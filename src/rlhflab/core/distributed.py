"""One place that starts accelerate, so every stage agrees on processes and device.

Under ``accelerate launch`` or ``torchrun`` on GPUs, accelerate finds the processes by
itself; on a machine without GPUs it only joins them (gloo backend) when told to use the
CPU, which ``cpu_only()`` decides.
"""

from __future__ import annotations

import os

import torch
from torch import nn


def cpu_only() -> bool:
    """True when launched as several processes on a machine with no CUDA device."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_processes() -> int:
    """How many processes of this run share this machine (torchrun's or accelerate's local world size; 1)."""
    value = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or "1"
    return int(value) if value.isdigit() and int(value) > 0 else 1


def state():
    """accelerate's process state (process index, number of processes, device)."""
    # heavy library (accelerate): imported on first use, not with rlhflab
    from accelerate import PartialState

    return PartialState(cpu=cpu_only())


def accelerator():
    # heavy library (accelerate): imported on first use, not with rlhflab
    from accelerate import Accelerator

    state()
    return Accelerator(cpu=cpu_only())


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel (or similar) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model
