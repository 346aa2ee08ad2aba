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
from rlhflab.models.decode import decode
from rlhflab.models.loading import forward_inputs
from rlhflab.models.precision import folded_adapter


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
    logprobs: torch.Tensor | None = None
    """[B, R] each response token's log-probability under the distribution it was sampled from, 0 after the end."""
    entropy: torch.Tensor | None = None
    """[B, R] that distribution's entropy at each response position (when asked for), 0 after the end."""

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_length :]


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
    samples_per_prompt: int = 1,
    with_entropy: bool = False,
) -> Rollout:
    """Sample ``samples_per_prompt`` continuations of each prompt (together, in the prompts' order) from the
    model's full distribution at ``temperature`` (no top-k/top-p), with rlhflab's decoding loop
    (``models.decode``: each prompt's forward pass once for all of its samples). The rollout carries each
    token's log-probability under that distribution (and, ``with_entropy``, the distribution's entropy).

    ``seed`` fixes the sampling noise, without touching the global RNG state.
    """
    inner = unwrap(model)
    device = next(inner.parameters()).device
    enc = encode_prompts(tokenizer, prompts, device)
    stops = stop_ids(tokenizer)
    with folded_adapter(inner) as folded:  # a LoRA policy samples at the base model's speed
        out = decode(
            folded, enc["input_ids"], enc["attention_mask"], max_new_tokens=max_new_tokens,
            generator=torch.Generator().manual_seed(seed), stop_ids=stops, pad_id=tokenizer.pad_token_id,
            samples_per_prompt=samples_per_prompt, temperature=temperature, suppress=suppress_tokens,
            with_entropy=with_entropy,
        )  # fmt: skip
    g = max(1, samples_per_prompt)
    prompt_ids, prompt_mask = enc["input_ids"].repeat_interleave(g, 0), enc["attention_mask"].repeat_interleave(g, 0)
    response, response_mask = out.tokens, out.mask
    texts = [tokenizer.decode(ids[: int(m.sum())], skip_special_tokens=True) for ids, m in zip(response, response_mask)]
    return Rollout(
        responses=texts,
        input_ids=torch.cat([prompt_ids, response], 1),
        attention_mask=torch.cat([prompt_mask, response_mask.long()], 1),
        response_mask=response_mask.float(),
        prompt_length=enc["input_ids"].shape[1],
        ended=torch.isin(response, torch.tensor(stops, device=device)).any(1).tolist() if stops else [],
        logprobs=out.logprobs,
        entropy=out.entropy,
    )


def sampler_is_exact(model: nn.Module) -> bool:
    """Whether the sampler's log-probabilities can stand for a teacher-forced pass of ``model``: it computes in
    float32 (no autocast to a lower precision, float32 weights)."""
    inner = unwrap(model)
    return getattr(inner, "_rlhflab_autocast", torch.float32) == torch.float32 and all(
        p.dtype == torch.float32 for p in inner.parameters() if p.is_floating_point()
    )


def policy_logprobs(
    model: nn.Module, rollout: Rollout, temperature: float = 1.0, vocab_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log-probabilities [B, R], entropy [B, R]) of the rollout's responses under ``model``, the policy that
    sampled them: those the sampler drew with when the model computes in float32 (they equal a teacher-forced
    pass up to float rounding), else a teacher-forced pass (in bfloat16 the incremental and the full pass differ
    by far more than rounding, which would read as KL to an identical reference). ``vocab_size``: the rollout was
    sampled with the tokens from ``vocab_size`` on suppressed (``token_logprobs``' renormalisation)."""
    if sampler_is_exact(model) and rollout.logprobs is not None and rollout.entropy is not None:
        return rollout.logprobs, rollout.entropy
    with torch.no_grad():
        return token_logprobs(
            model, rollout.input_ids, rollout.attention_mask, rollout.prompt_length, temperature, with_entropy=True,
            vocab_size=vocab_size,
        )  # fmt: skip


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
