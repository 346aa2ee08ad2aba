"""Every method by name: its config class, how to call it from named inputs, what it learns from
and what it produces. The pipeline and the command line look methods up here; adding a method
is one file and one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

from rlhflab.errors import ConfigError
from rlhflab.methods.api import Hooks, MethodResult


@dataclass
class MethodInputs:
    """What a method may need, by name and loaded: the pipeline fills what the method's ``data`` says."""

    model: str
    """The base policy's name (a folder, a hub id or 'embedded')."""
    load_policy: Callable[..., tuple[Any, Any]]
    """Loads (causal LM, tokenizer) of ``model``, weights in ``dtype`` (a ``--dtype`` name; None: as saved);
    called once per copy a method needs."""
    prompts: list[str] = field(default_factory=list)
    gold: Callable | None = None
    reward: Callable | None = None
    reward_name: str | None = None
    """What --reward named (best-of-n stores it in its sampler)."""
    reward_folder: str | None = None
    """The reward model's folder, when the reward is one (PPO's value function starts from it)."""
    pairs: list | None = None
    pairs_source: str = "pairs"
    load_scalar: Callable[..., Any] | None = None
    """Loads a scalar-head model (name, pad id, dtype) -> model, for PPO's value function."""


@dataclass(frozen=True)
class Method:
    name: str
    config: type
    run: Callable[[MethodInputs, Any, Hooks], MethodResult]
    data: Literal["reward", "pairs"]
    """A method learns from a reward function (and prompts) or from preference pairs."""
    output: Literal["policy", "sampler"]
    """It produces weights (``policy/``) or a way to sample (``sampler.json``)."""
    doc: str
    logs_samples: bool = True


def _models(x: MethodInputs, config, reference: bool = True) -> tuple[Any, Any, Any]:
    """(policy as the method trains it, tokenizer, reference policy) under the config's model options: with
    LoRA the base weights in --dtype and the reference is the adapter switched off; otherwise float32 trained
    weights and a frozen copy in --dtype."""
    from rlhflab.rollout.precision import reference_for, trainable_policy

    options = config.model_options
    policy, tokenizer = x.load_policy(options.dtype if options.lora else "float32")
    policy = trainable_policy(policy, options)
    ref = reference_for(policy, lambda: x.load_policy(options.dtype)[0]) if reference else None
    return policy, tokenizer, ref


def _ppo(x: MethodInputs, config, hooks: Hooks) -> MethodResult:
    from rlhflab.methods.ppo import train_ppo
    from rlhflab.rollout.precision import trainable_value

    policy, tokenizer, reference = _models(x, config)
    source = x.model
    if config.value_init == "reward" and x.reward_folder:
        from rlhflab.reward.foreign import is_classifier_folder
        from rlhflab.reward.model import RewardModel
        from rlhflab.rollout.models import load_tokenizer

        # an off-the-shelf reward model: its folder; rlhflab's: its (an ensemble's first) member's folder
        member = (
            x.reward_folder
            if is_classifier_folder(x.reward_folder)
            else str(RewardModel.member_folder(x.reward_folder))
        )
        # the value function reads the policy's tokens: it starts from the reward model only when that model
        # reads the same vocabulary (a reward model on another backbone, e.g. minilm, scores re-tokenised text)
        if load_tokenizer(member).get_vocab() == tokenizer.get_vocab():
            source = member
    torch.manual_seed(config.run.seed)  # the value head, when new
    options = config.model_options
    # trained weights load in float32; with LoRA the value model's frozen backbone in --dtype
    value = x.load_scalar(source, tokenizer.pad_token_id, options.torch_dtype if options.lora else torch.float32)
    value = trainable_value(value, options)
    return train_ppo(
        policy, tokenizer, x.reward, x.prompts, config, reference=reference, value=value, gold=x.gold, hooks=hooks
    )


def _on_prompts(train: Callable, x: MethodInputs, config, hooks: Hooks) -> MethodResult:
    """A method that samples the policy on prompts, scores with the reward, and keeps a reference copy."""
    policy, tokenizer, reference = _models(x, config)
    return train(policy, tokenizer, x.reward, x.prompts, config, reference=reference, gold=x.gold, hooks=hooks)


def _rloo(x, config, hooks):
    from rlhflab.methods.rloo import train_rloo

    return _on_prompts(train_rloo, x, config, hooks)


def _grpo(x, config, hooks):
    from rlhflab.methods.grpo import train_grpo

    return _on_prompts(train_grpo, x, config, hooks)


def _ranked_sft(x, config, hooks):
    from rlhflab.methods.ranked_sft import train_ranked_sft

    return _on_prompts(train_ranked_sft, x, config, hooks)


def _conditional(x: MethodInputs, config, hooks: Hooks) -> MethodResult:
    from rlhflab.methods.conditional import train_conditional

    policy, tokenizer, _ = _models(x, config, reference=False)
    return train_conditional(policy, tokenizer, x.reward, x.prompts, config, hooks=hooks)


def _dpo(x: MethodInputs, config, hooks: Hooks) -> MethodResult:
    from rlhflab.methods.dpo import train_dpo, usable_pairs

    usable_pairs(x.pairs, config, x.pairs_source)  # fail before loading any model
    policy, tokenizer, reference = _models(x, config)
    return train_dpo(policy, tokenizer, x.pairs, config, reference=reference, hooks=hooks, source=x.pairs_source)


def _best_of_n(x: MethodInputs, config, hooks: Hooks) -> MethodResult:
    from rlhflab.methods.best_of_n import make_best_of_n

    return make_best_of_n(x.model, x.reward_name, config)


def _configs() -> dict[str, type]:
    from rlhflab.methods.best_of_n import BestOfNConfig
    from rlhflab.methods.conditional import ConditionalConfig
    from rlhflab.methods.critic_free import CriticFreeConfig
    from rlhflab.methods.dpo import DPOConfig
    from rlhflab.methods.ppo import PPOConfig
    from rlhflab.methods.ranked_sft import RankedSFTConfig

    return {"ppo": PPOConfig, "dpo": DPOConfig, "best-of-n": BestOfNConfig, "ranked-sft": RankedSFTConfig,
            "conditional": ConditionalConfig, "rloo": CriticFreeConfig, "grpo": CriticFreeConfig}  # fmt: skip


def _build() -> dict[str, Method]:
    c = _configs()
    return {
        m.name: m
        for m in (
            Method(
                "ppo",
                c["ppo"],
                _ppo,
                "reward",
                "policy",
                "PPO against a reward with a per-token KL penalty to the base policy -> RUN/policy.",
            ),
            Method(
                "dpo",
                c["dpo"],
                _dpo,
                "pairs",
                "policy",
                "DPO (or IPO, conservative DPO) on preference pairs, no reward model -> RUN/policy.",
                False,
            ),
            Method(
                "best-of-n",
                c["best-of-n"],
                _best_of_n,
                "reward",
                "sampler",
                "Best-of-n sampling against a reward, no training -> RUN/sampler.json.",
                False,
            ),
            Method(
                "ranked-sft",
                c["ranked-sft"],
                _ranked_sft,
                "reward",
                "policy",
                "Reward-ranked fine-tuning: sample, keep the best, imitate -> RUN/policy.",
            ),
            Method(
                "conditional",
                c["conditional"],
                _conditional,
                "reward",
                "policy",
                "Conditional training with good/bad control tokens -> RUN/policy.",
            ),
            Method(
                "rloo",
                c["rloo"],
                _rloo,
                "reward",
                "policy",
                "RLOO: REINFORCE with a leave-one-out baseline -> RUN/policy.",
            ),
            Method(
                "grpo",
                c["grpo"],
                _grpo,
                "reward",
                "policy",
                "GRPO: group-standardised advantages, clipped, per-token KL -> RUN/policy.",
            ),
        )  # fmt: skip
    }


METHODS: dict[str, Method] = _build()
"""Every optimisation method, by its command-line name (also its stage name in the manifest)."""


def get(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
