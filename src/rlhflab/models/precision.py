"""How a trained model is held in memory: precision, gradient checkpointing and LoRA (``ModelConfig``).

The rule for precision (``--dtype bfloat16|float16``):

- **frozen models** (the reference policy, the reward model, a LoRA model's base weights, every model an
  evaluation only samples) are loaded in ``dtype``: half the memory, and their forward passes run in it;
- **trained weights** (a fully fine-tuned policy or value model, LoRA adapters, a new value head) stay
  float32, and so do their gradients and AdamW's two moments: the master weights. Their forward passes run
  under ``torch.autocast(dtype)``, so the matmuls are in ``dtype``; nothing else changes in the methods;
- **the saved policy** is written in ``dtype`` (its config says so), merged with its adapter unless
  ``--save-adapter``.

With LoRA (``--lora-r R``, peft) only the adapters train; the reference policy is the same model with the
adapter switched off (``AdapterOff``: no second copy in memory). PPO's value function is then a LoRA model
of its own: a frozen copy of its backbone in ``dtype`` with an adapter and a float32 head (why, and what it
costs, in docs/models.md, "Memory").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass
from typing import Iterator, Literal

import torch
from torch import nn

from rlhflab.core.config import check
from rlhflab.core.distributed import unwrap
from rlhflab.core.errors import ConfigError
from rlhflab.core.loop import frozen_copy

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class PrecisionConfig:
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Precision of frozen models' weights and of every model's matmuls (autocast); trained weights, their
    gradients and the AdamW state stay float32. The saved policy is written in it."""
    gradient_checkpointing: bool = False
    """Recompute the trained model's activations in the backward pass instead of keeping them (less memory,
    about a third more compute)."""

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def lora(self) -> bool:
        return False


@dataclass(frozen=True)
class ModelConfig(PrecisionConfig):
    """The model options of a trained policy: ``PrecisionConfig``'s and LoRA's."""

    lora_r: int | None = None
    """Train a LoRA adapter of this rank (peft) instead of every weight; unset: full fine-tuning."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator: the adapter's update is scaled by lora_alpha / lora_r."""
    lora_dropout: float = 0.0
    """Dropout on the adapter's input."""
    lora_target_modules: str = "all-linear"
    """Comma-separated names of the modules to adapt (e.g. q_proj,v_proj), or all-linear (every linear layer
    but the output layer)."""
    save_adapter: bool = False
    """With LoRA, save the adapter alone (peft format, loads with its base) instead of the merged model."""

    def __post_init__(self) -> None:
        check(self.lora_r is None or self.lora_r >= 1, "lora_r", self.lora_r, ">= 1 (leave it unset for no LoRA)")
        check(self.lora_alpha > 0, "lora_alpha", self.lora_alpha, "> 0")
        check(0 <= self.lora_dropout < 1, "lora_dropout", self.lora_dropout, "in [0, 1)")
        check(bool(self.targets()), "lora_target_modules", self.lora_target_modules, "module names or all-linear")
        check(not self.save_adapter or self.lora, "save_adapter", self.save_adapter, "used with --lora-r")

    @property
    def lora(self) -> bool:
        return self.lora_r is not None

    def targets(self) -> str | list[str]:
        if self.lora_target_modules.strip() == "all-linear":
            return "all-linear"
        return [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]


def model_field(cls: type = ModelConfig, **values):
    """A config's ``model_options`` field: ``ModelConfig`` for a method's policy, ``PrecisionConfig`` for a
    model that trains every weight (the reward model)."""
    return dataclasses.field(default_factory=lambda: cls(**values))


def dtype_of(name: str | None) -> torch.dtype | None:
    """torch dtype for a ``--dtype`` name (None: the weights' own)."""
    if name is None:
        return None
    if name not in DTYPES:
        raise ConfigError(f"--dtype must be one of {list(DTYPES)}, got {name!r}")
    return DTYPES[name]


def check_device(dtype: torch.dtype | None, device) -> None:
    """float16 only on an accelerator: CPUs have no fast float16 matmul, and without loss scaling (which
    rlhflab does not do) its gradients underflow. bfloat16 is the precision for CPUs."""
    if dtype == torch.float16 and torch.device(device).type == "cpu":
        raise ConfigError("--dtype float16 needs a GPU (on a CPU use --dtype bfloat16 or float32)")


# ---------------------------------------------------------------- autocast


def autocast_forward(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Run ``model``'s forward (and so ``generate``, which calls it) under ``torch.autocast(dtype)`` on the
    device its weights are on. Float32 weights stay float32; their matmuls run in ``dtype``."""
    if dtype == torch.float32 or getattr(model, "_rlhflab_autocast", None) == dtype:
        return model
    forward = model.forward

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        device = next(model.parameters()).device.type
        with torch.autocast(device_type=device, dtype=dtype):
            return forward(*args, **kwargs)

    model.forward = wrapped
    model._rlhflab_autocast = dtype
    return model


# ---------------------------------------------------------------- trained models


def is_peft(model: nn.Module) -> bool:
    try:
        # heavy library (peft): imported on first use, not with rlhflab
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def trainable_policy(model: nn.Module, options: ModelConfig) -> nn.Module:
    """The policy as a method trains it under ``options``: a LoRA model (peft) around the base weights loaded
    in ``dtype``, or every weight in float32; gradient checkpointing; autocast to ``dtype``."""
    if options.gradient_checkpointing:
        _checkpointing(model)
    if options.lora:
        # heavy library (peft): imported on first use, not with rlhflab
        from peft import get_peft_model

        try:
            model = get_peft_model(model, _lora_config(options, model, options.targets(), task_type="CAUSAL_LM"))
        except ValueError as e:
            raise ConfigError(f"--lora-target-modules {options.lora_target_modules!r}: {str(e).splitlines()[0]}")
        _float32_trained(model)  # the adapters (peft's autocast_adapter_dtype does so too)
    else:
        model.float()
    autocast_forward(_innermost(model), options.torch_dtype)
    return model


def trainable_value(value: nn.Module, options: PrecisionConfig) -> nn.Module:
    """A scalar-head model to train (PPO's value function, a reward model) under ``options``: with LoRA its
    backbone frozen in ``dtype`` with an adapter injected in place (the forward is unchanged) and the head
    trained, else every weight; trained weights float32, gradient checkpointing when asked, autocast to
    ``dtype``."""
    if options.lora:
        # heavy library (peft): imported on first use, not with rlhflab
        from peft import inject_adapter_in_model

        inner = value.model
        head = getattr(inner, value._head)
        inner.to(options.torch_dtype)
        targets = options.targets()
        inject_adapter_in_model(
            _lora_config(options, inner, _linear_names(inner, head) if targets == "all-linear" else targets), inner
        )
        for name, p in inner.named_parameters():
            p.requires_grad_("lora_" in name)
        head.requires_grad_(True)
        _float32_trained(value)
    else:
        value.float()
    if options.gradient_checkpointing:
        _checkpointing(value.model)
    return autocast_forward(value, options.torch_dtype)


def merged_value(value: nn.Module) -> nn.Module:
    """``value`` (a scalar-head model from ``trainable_value``) with an adapter injected in its backbone folded
    into the weights it adapts and removed, in place: what ``save_pretrained`` then writes is a plain model that
    loads without peft. A model without an adapter is returned as it is."""
    # heavy library (peft): imported on first use, not with rlhflab
    from peft.tuners.lora.layer import LoraLayer

    inner = value.model
    for name, module in list(inner.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(inner.get_submodule(parent) if parent else inner, child, module.get_base_layer())
    return value


def _lora_config(options: ModelConfig, model: nn.Module, targets, **kwargs):
    # heavy library (peft): imported on first use, not with rlhflab
    from peft import LoraConfig

    return LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                      target_modules=targets, fan_in_fan_out=_has_conv1d(model), **kwargs)  # fmt: skip


def _float32_trained(model: nn.Module) -> None:
    """Trained parameters in float32 (the master weights), frozen ones as they are."""
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()


def _checkpointing(model: nn.Module) -> None:
    """Turn on activation checkpointing (non-reentrant: frozen inputs and LoRA need no special care); it acts
    in training mode only, so sampling (in eval mode) keeps its cache."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        raise ConfigError(f"--gradient-checkpointing: {type(model).__name__} does not support it")


def _has_conv1d(model: nn.Module) -> bool:
    """GPT-2-style models keep linear weights transposed (Conv1D); LoRA must know (peft's fan_in_fan_out)."""
    # heavy library (transformers): imported on first use, not with rlhflab
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(m, Conv1D) for m in model.modules())


def _innermost(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (its forward is what generate calls)."""
    return model.get_base_model() if is_peft(model) else model


def _linear_names(model: nn.Module, head: nn.Module) -> list[str]:
    """The names (last part) of every linear layer of ``model`` except ``head``: 'all-linear' for a model
    peft's own shorthand does not cover (a scalar-head model, not a causal LM)."""
    # heavy library (transformers): imported on first use, not with rlhflab
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    linear = (nn.Linear, Conv1D)
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, linear) and m is not head}
    if not names:
        raise ConfigError("--lora-r: the value model has no linear layers to adapt")
    return sorted(names)


@contextlib.contextmanager
def folded_adapter(model: nn.Module) -> Iterator[nn.Module]:
    """Within this block, ``model`` (a LoRA policy) runs as one plain model: each adapted layer's weight is
    replaced by a new tensor W + BA (the adapter folded in) and the adapter is switched off, so a forward pass
    costs what the base model's does (an unfolded adapter adds two small matmuls to every adapted layer; the
    speeds are in docs/benchmarks.md). The original weights are put back untouched on exit:
    nothing is subtracted (in bfloat16, W + BA - BA is not W). The folded tensors exist only within the block.
    A model without an adapter, or one folded already (a block within a block), is yielded as it is."""
    inner = unwrap(model)
    if not is_peft(inner) or getattr(inner, "_rlhflab_folded", False):  # no adapter, or folded already
        yield model
        return
    # heavy library (peft): imported on first use, not with rlhflab
    from peft.tuners.lora.layer import LoraLayer

    saved = []
    try:
        with torch.no_grad():
            for module in inner.modules():
                if not isinstance(module, LoraLayer) or module.merged:
                    continue
                base = module.get_base_layer()
                delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
                if isinstance(delta, int):  # no active adapter on this layer
                    continue
                saved.append((base, base.weight))
                base.weight = nn.Parameter((base.weight.float() + delta.float()).to(base.weight.dtype),
                                           requires_grad=False)  # fmt: skip
        inner._rlhflab_folded = True
        with inner.disable_adapter():
            yield model
    finally:
        inner._rlhflab_folded = False
        for base, weight in saved:
            base.weight = weight


class AdapterOff(nn.Module):
    """The reference policy of a LoRA policy: the same model with its adapter switched off, no second copy.

    Only evaluated without gradients (``token_logprobs(reference, ...)``); the methods' ``.to``, ``.eval``
    and ``.requires_grad_`` on their reference must not reach the policy's weights, so they do nothing here.
    """

    def __init__(self, policy: nn.Module):
        super().__init__()
        object.__setattr__(self, "_policy", policy)  # not a submodule: its parameters stay the policy's own

    def forward(self, input_ids, attention_mask, position_ids=None):
        model = unwrap(self._policy)
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        with torch.no_grad(), model.disable_adapter():
            return model(**kwargs)

    def parameters(self, recurse: bool = True):
        return self._policy.parameters(recurse)

    def to(self, *args, **kwargs):
        return self

    def train(self, mode: bool = True):
        return self

    def requires_grad_(self, requires_grad: bool = True):
        return self


def reference_for(policy: nn.Module, load_frozen) -> nn.Module:
    """The reference policy: the adapter-off view of a LoRA policy, else ``load_frozen()`` (a second copy)."""
    return AdapterOff(policy) if is_peft(unwrap(policy)) else load_frozen()


def saveable_policy(policy: nn.Module, options: ModelConfig) -> nn.Module:
    """The trained policy as it is written to RUN/policy: in ``dtype``, merged with its adapter (loadable by
    ``AutoModelForCausalLM.from_pretrained``) unless ``--save-adapter``."""
    policy = unwrap(policy)
    if is_peft(policy) and not options.save_adapter:
        policy = policy.merge_and_unload()
    return policy.to(options.torch_dtype)


def default_reference(policy: nn.Module) -> nn.Module:
    """The reference policy when none is given: a LoRA policy with its adapter switched off (no copy), else a
    frozen copy of ``policy``."""

    return reference_for(policy, lambda: frozen_copy(policy))
