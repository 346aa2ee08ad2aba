"""Every method by name: its config class, how to call it from named inputs, what it learns from and what it
produces.

Each method module declares its own entry at its end, with keywords::

    register(Method(name="ppo", config=PPOConfig, optimize=optimize_ppo, data="reward", output="policy", doc="..."))

and the registry finds the modules of this package itself, so adding a method is one file. The pipeline and the
command line ask the registry (``METHODS``, ``get``); neither names a method's module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from rlhflab.core.errors import ConfigError
from rlhflab.core.loop import Hooks, MethodResult
from rlhflab.models.precision import reference_for, trainable_policy


@dataclass
class MethodInputs:
    """What a method may need, loaded: the pipeline fills what the method's ``data`` says. A method never loads a
    model by name; it calls the loaders given here."""

    model: str
    """The base policy's name (a folder, a hub id or an embedded name), recorded by samplers."""
    load_policy: Callable[..., tuple[Any, Any]]
    """Loads (causal LM, tokenizer) of ``model``, weights in ``dtype`` (a ``--dtype`` name; None: as saved);
    called once per copy a method needs."""
    prompts: list[str] = field(default_factory=list)
    gold: Callable | None = None
    reward: Callable | None = None
    reward_name: str | None = None
    """What --reward named (best-of-n stores it in its sampler)."""
    value_source: Callable[[], str | None] = lambda: None
    """Asked only by a method that wants it (PPO's value function): a model to start a value function from
    instead of the base policy -- the reward model's (first member's) folder when it reads the policy's
    vocabulary -- else None."""
    pairs: list | None = None
    pairs_source: str = "pairs"
    load_scalar: Callable[..., Any] | None = None
    """Loads a scalar-head model (name, pad id, dtype) -> model, for PPO's value function."""


@dataclass(frozen=True, kw_only=True)
class Method:
    name: str
    """The command-line name (``rlhflab optimize NAME``), also the stage's name in the manifest."""
    config: type
    """The config dataclass (its fields are the command's options)."""
    optimize: Callable[[MethodInputs, Any, Hooks], MethodResult]
    """Runs the method from loaded inputs, a config and hooks."""
    data: Literal["reward", "pairs"]
    """A method learns from a reward function (and prompts) or from preference pairs."""
    output: Literal["policy", "sampler"]
    """It produces weights (``policy/``) or a way to sample (``sampler.json``)."""
    doc: str
    """One line for ``--help``."""
    logs_samples: bool = True
    """It sends training samples to the samples hook (the report animates them)."""
    kl_knob: str | None = None
    """The config field that sets how strongly the policy is held to the reference (None: no such knob)."""


_REGISTERED: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (a method module calls this once, at its end)."""
    if method.name in _REGISTERED and _REGISTERED[method.name] is not method:
        raise ConfigError(f"two methods are registered as {method.name!r}")
    _REGISTERED[method.name] = method
    return method


def policy_and_reference(x: MethodInputs, config, reference: bool = True) -> tuple[Any, Any, Any]:
    """(policy as the method trains it, tokenizer, reference policy) under the config's model options: with
    LoRA the base weights in --dtype and the reference is the adapter switched off; otherwise float32 trained
    weights and a frozen copy in --dtype."""
    options = config.model_options
    policy, tokenizer = x.load_policy(options.dtype if options.lora else "float32")
    policy = trainable_policy(policy, options)
    ref = reference_for(policy, lambda: x.load_policy(options.dtype)[0]) if reference else None
    return policy, tokenizer, ref


def on_prompts(train: Callable[..., MethodResult]) -> Callable[[MethodInputs, Any, Hooks], MethodResult]:
    """The ``optimize`` of a method that samples the policy on prompts, scores with the reward and keeps a reference:
    ``train(policy, tokenizer, reward, prompts, config, reference=, gold=, hooks=)`` on the loaded inputs."""

    def optimize(x: MethodInputs, config, hooks: Hooks) -> MethodResult:
        policy, tokenizer, reference = policy_and_reference(x, config)
        return train(policy, tokenizer, x.reward, x.prompts, config, reference=reference, gold=x.gold, hooks=hooks)

    return optimize


ORDER = ("ppo", "dpo", "best-of-n", "ranked-sft", "conditional", "rloo", "grpo")
"""The order methods are listed in (help, compare's tables); a method not named here follows, by name."""


class _Registry(Mapping):
    """Every registered method by name, in ``ORDER``. The first look imports every module of
    ``rlhflab.methods`` (each registers its own entry), so a method module may import this one."""

    def __init__(self) -> None:
        self._found = False

    def _all(self) -> dict[str, Method]:
        if not self._found:
            self._found = True
            package = importlib.import_module("rlhflab.methods")
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"rlhflab.methods.{module.name}")
        ordered = [n for n in ORDER if n in _REGISTERED] + sorted(n for n in _REGISTERED if n not in ORDER)
        return {n: _REGISTERED[n] for n in ordered}

    def __getitem__(self, name: str) -> Method:
        return self._all()[name]

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


METHODS: Mapping[str, Method] = _Registry()
"""Every optimisation method, by its command-line name."""


def get(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
