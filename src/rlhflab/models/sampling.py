"""Sampling continuations and reading their log-probabilities, the two things every method does
with a policy. Prompts are left-padded; position ids come from the attention mask
(``rlhflab.models.loading.forward_inputs``), so padding changes no log-probability.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from rlhflab.core.distributed import unwrap
from rlhflab.core.losses import categorical_entropy
from rlhflab.models.batching import appended_count, collate
from rlhflab.models.chat import stop_ids
from rlhflab.models.loading import forward_inputs


@dataclass
class Rollout:
    """A batch of prompts and sampled continuations, as token ids and as text."""

    responses: list[str]
    input_ids: torch.Tensor
    """[B, P + R] left-padded prompt ids then response ids (pad after the end token)."""
    attention_mask: torch.Tensor
    """[B, P + R] 1 on prompt and counted response tokens."""
    response_mask: torch.Tensor
    """[B, R] float, 1 up to and including the end-of-sequence token."""
    prompt_length: int
    """P: the padded prompt length; responses start there."""

    ended: list[bool] = dataclasses.field(default_factory=list)
    """Whether each continuation ended with the end-of-sequence token (not cut at the length limit)."""

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_length :]


def _rng_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


@torch.no_grad()
def sample(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
    suppress_tokens: Sequence[int] = (),
) -> Rollout:
    """Sample one continuation per prompt from the model's full distribution (no top-k/top-p).

    ``seed`` fixes the sampling noise, without touching the global RNG state.
    """
    # heavy library (transformers): imported on first use, not with rlhflab
    from transformers import GenerationConfig

    inner = unwrap(model)
    device = next(inner.parameters()).device
    enc = encode_prompts(tokenizer, prompts, device)
    stops = stop_ids(tokenizer)
    config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stops or None,
        bos_token_id=tokenizer.bos_token_id,
        suppress_tokens=list(suppress_tokens) or None,
    )
    was_training = inner.training
    inner.eval()
    with torch.random.fork_rng(
        devices=_rng_devices(device), device_type=device.type if device.type != "cpu" else "cuda"
    ):
        torch.manual_seed(seed)
        out = inner.generate(**enc, generation_config=config)
    inner.train(was_training)
    prompt_length = enc["input_ids"].shape[1]
    response = out[:, prompt_length:]
    if response.shape[1] < max_new_tokens:  # every sequence ended early
        pad = torch.full((len(prompts), max_new_tokens - response.shape[1]), tokenizer.pad_token_id, device=device)
        response = torch.cat([response, pad], 1)
    response_mask = response_mask_from_ids(response, stops)
    response = response.masked_fill(response_mask == 0, tokenizer.pad_token_id)
    texts = [tokenizer.decode(ids[: int(m.sum())], skip_special_tokens=True) for ids, m in zip(response, response_mask)]
    return Rollout(
        responses=texts,
        input_ids=torch.cat([enc["input_ids"], response], 1),
        attention_mask=torch.cat([enc["attention_mask"], response_mask.long()], 1),
        response_mask=response_mask.float(),
        prompt_length=prompt_length,
        ended=torch.isin(response, torch.tensor(stops, device=device)).any(1).tolist() if stops else [],
    )


def encode_prompts(tokenizer, prompts: Sequence[str], device) -> dict[str, torch.Tensor]:
    """Left-padded ``input_ids`` and ``attention_mask`` of the prompts as generation continues them: with the
    tokens the tokenizer adds in front (BOS), without those it appends (an EOS-appending tokenizer's EOS would
    tell the model the text is over)."""
    cut = appended_count(tokenizer)
    ids = [row[: len(row) - cut] for row in tokenizer(list(prompts))["input_ids"]]
    input_ids, attention_mask, _ = collate([(row, len(row)) for row in ids], tokenizer.pad_token_id, device)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def response_mask_from_ids(response: torch.Tensor, eos_token_id: int | Sequence[int] | None) -> torch.Tensor:
    """1 on tokens up to and including the first stop token (``eos_token_id``: one id or several), 0 after."""
    stops = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    if not stops:
        return torch.ones_like(response)
    is_eos = torch.isin(response, torch.tensor(stops, device=response.device)).long()
    after_eos = (is_eos.cumsum(1) - is_eos) > 0
    return (~after_eos).long()


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_length: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities [B, R] of the response tokens (and, optionally, the entropy [B, R]).

    ``vocab_size`` renormalises over the first ``vocab_size`` tokens (a model with added control
    tokens, sampled with those suppressed).
    """
    logits = model(**forward_inputs(model, input_ids, attention_mask)).logits
    logits = logits[:, prompt_length - 1 : -1, :vocab_size].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = torch.gather(logp_all, 2, input_ids[:, prompt_length:, None]).squeeze(-1)
    entropy = categorical_entropy(logp_all) if with_entropy else None
    return logp, entropy


def completion_logprobs(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """[B, T - 1] log-probability of each next token that belongs to the completion, 0 elsewhere.

    For batches whose prompts have different lengths (the completion starts at a different
    column in each row); sum over dim 1 for a completion's log-probability.
    """
    logits = model(**forward_inputs(model, input_ids, attention_mask)).logits[:, :-1].float()
    logp = torch.gather(torch.log_softmax(logits, -1), 2, input_ids[:, 1:, None]).squeeze(-1)
    return logp * completion_mask[:, 1:]


def sequence_logprobs(model: nn.Module, encoded, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probabilities [B] of encoded (ids, completion start) texts, and their
    completion token counts [B] (at least 1): the quantity DPO, IPO and fine-tuning losses are built from."""
    ids, attn, comp = collate(encoded, pad_id, device)
    per_token = completion_logprobs(model, ids, attn, comp)
    return per_token.sum(1), comp[:, 1:].sum(1).clamp(min=1)


def completion_nll(policy, encoded: Sequence[tuple[list[int], int]], pad_id: int, device) -> torch.Tensor:
    """Mean negative log-likelihood per completion token of a batch of encoded texts."""
    sums, counts = sequence_logprobs(policy, encoded, pad_id, device)
    return -sums.sum() / counts.sum()
