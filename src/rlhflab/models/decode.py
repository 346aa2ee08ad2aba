"""rlhflab's own decoding loop: the model's forward pass with its key-value cache, and nothing else per step.

Why not ``generate``: for the small models a CPU runs, much of its time goes outside the model (drawing each
token with ``torch.multinomial``, which draws a random number per vocabulary entry; processors, stopping
criteria, cache bookkeeping); it computes a prompt once per sample; and it returns tokens only, so every method
then runs the policy again to read their log-probabilities. This loop

- computes each prompt's keys and values once and shares them among that prompt's ``samples_per_prompt``
  continuations (the cache is repeated, not the prompt's forward pass),
- keeps the logits of the last position only, draws each token by the inverse of the cumulative distribution
  with an explicit ``torch.Generator`` (the global random state is untouched), and stops when every row has
  met a stop token,
- returns the log-probability of each sampled token under the distribution it was drawn from (the model's at
  ``temperature``, over the allowed tokens), which a teacher-forced pass of the same tokens reproduces.

The distribution is the model's: the same as ``generate(do_sample=True)`` at the same temperature, top-k and
top-p (``tests/test_decode.py`` compares token frequencies), and greedy decoding picks the same tokens.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from rlhflab.models.loading import position_ids


@dataclass
class Decoded:
    tokens: torch.Tensor
    """[N, R] sampled ids (N = prompts x samples_per_prompt, each prompt's samples together); after a row's first
    stop token, ``pad_id``."""
    logprobs: torch.Tensor
    """[N, R] float32 log-probability of each sampled token under the distribution it was drawn from; 0 after
    the row's stop token."""
    mask: torch.Tensor
    """[N, R] 1 up to and including the first stop token, 0 after."""
    entropy: torch.Tensor | None = None
    """[N, R] entropy of each step's distribution (``with_entropy``), 0 after the row's stop token."""


def _cache_argument(model: nn.Module) -> str:
    """The name the model's class gives the cache argument (a LoRA model passes it on to the model it wraps)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(inner).forward).parameters else "past_key_values"


def allowed_logits(
    logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0, suppress: Sequence[int] = ()
) -> torch.Tensor:
    """[N, V] float32 logits of the distribution sampling draws from: suppressed tokens removed, divided by the
    temperature, then restricted to the ``top_k`` likeliest (0: all) and to the smallest set whose probability
    reaches ``top_p`` (1: all), as ``generate``'s processors do in that order. Removed tokens are -inf."""
    logits = logits.float()
    if suppress:
        logits = logits.index_fill(-1, torch.tensor(list(suppress), device=logits.device), float("-inf"))
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True, dim=-1)
        before = torch.softmax(ordered, -1).cumsum(-1) - torch.softmax(ordered, -1)  # mass of the likelier ones
        cut = before >= top_p
        logits = logits.masked_fill(cut.scatter(-1, order, cut), float("-inf"))
    return logits


def pick(
    logits: torch.Tensor, generator: torch.Generator | None, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(one token per row drawn from softmax(``logits``) [N, V], its log-probability, the distribution's entropy
    or None). By the inverse of the cumulative distribution at one uniform number a row (``torch.multinomial``
    draws an exponential number per token of the vocabulary: most of a small model's sampling time).
    ``generator`` None: the likeliest."""
    top = logits.max(-1, keepdim=True).values
    weights = torch.exp(logits - top)  # -inf (a removed token) -> weight 0, never drawn
    if generator is None:
        chosen = logits.argmax(-1)
    else:
        cdf = weights.cumsum(-1)
        u = torch.rand(logits.shape[0], 1, generator=generator, device="cpu").to(logits.device)
        chosen = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp(max=logits.shape[-1] - 1).squeeze(1)
    total = weights.sum(-1)
    log_total = torch.log(total) + top.squeeze(-1)
    entropy = None
    if with_entropy:  # -sum p log p, with p = weights / total and log p = logits - log_total (0 log 0 = 0)
        finite = torch.where(weights > 0, logits - top, 0.0)
        entropy = torch.log(total) - (weights * finite).sum(-1) / total
    return chosen, logits.gather(1, chosen[:, None]).squeeze(1) - log_total, entropy


@torch.no_grad()
def decode(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    generator: torch.Generator | None,
    stop_ids: Sequence[int],
    pad_id: int,
    samples_per_prompt: int = 1,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    suppress: Sequence[int] = (),
    greedy: bool = False,
    with_entropy: bool = False,
) -> Decoded:
    """Continue each left-padded prompt of ``input_ids`` [B, P] ``samples_per_prompt`` times, at most
    ``max_new_tokens`` tokens each, stopping a row at its first token in ``stop_ids``. ``greedy`` takes the
    likeliest token (``generator`` unused). The model runs in eval mode; each module's mode is put back."""
    # heavy library (transformers): imported on first use, not with rlhflab
    from transformers import DynamicCache

    if temperature <= 0 and not greedy:
        raise ValueError("temperature must be positive for sampling (use greedy=True to take the likeliest)")
    device, g = input_ids.device, max(1, samples_per_prompt)
    modes = [(m, m.training) for m in model.modules()]  # put back as found, module by module
    model.eval()
    cache = DynamicCache(config=getattr(model, "config", None))
    # the cache fills in place; transformers names its argument ``cache`` (``past_key_values`` before)
    cache_arg = _cache_argument(model)
    mask = attention_mask.long()
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=True,
                logits_to_keep=1, **{cache_arg: cache})  # fmt: skip
    logits = out.logits[:, -1]
    if g > 1:  # the prompt's keys and values serve all of its samples
        cache.batch_repeat_interleave(g)
        logits, mask = logits.repeat_interleave(g, 0), mask.repeat_interleave(g, 0)
    n = logits.shape[0]
    stops = torch.tensor(list(stop_ids), device=device, dtype=torch.long)
    tokens = torch.full((n, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(n, max_new_tokens, device=device)
    entropy = torch.zeros(n, max_new_tokens, device=device) if with_entropy else None
    live = torch.ones(n, dtype=torch.bool, device=device)
    position = mask.sum(1, keepdim=True) - 1
    steps = 0
    for t in range(max_new_tokens):
        scaled = allowed_logits(logits, 1.0 if greedy else temperature, 0 if greedy else top_k,
                                1.0 if greedy else top_p, suppress)  # fmt: skip
        chosen, logp, h = pick(scaled, None if greedy else generator, with_entropy)
        tokens[:, t] = torch.where(live, chosen, pad_id)
        logprobs[:, t] = torch.where(live, logp, 0.0)
        if entropy is not None:
            entropy[:, t] = torch.where(live, h, 0.0)
        steps = t + 1
        if len(stops):
            live = live & ~torch.isin(chosen, stops)
        if not live.any() or t + 1 == max_new_tokens:
            break
        mask = torch.cat([mask, torch.ones(n, 1, dtype=mask.dtype, device=device)], 1)
        position = position + 1
        out = model(input_ids=tokens[:, t : t + 1], attention_mask=mask, position_ids=position, use_cache=True,
                    logits_to_keep=1, **{cache_arg: cache})  # fmt: skip
        logits = out.logits[:, -1]
    for m, training in modes:
        m.training = training
    response_mask = torch.zeros_like(tokens)
    response_mask[:, :steps] = 1
    if len(stops):
        is_stop = torch.isin(tokens, stops).long()
        response_mask = response_mask * ((is_stop.cumsum(1) - is_stop) == 0).long()
    return Decoded(
        tokens=tokens, logprobs=logprobs * response_mask, mask=response_mask,
        entropy=entropy * response_mask if entropy is not None else None,
    )  # fmt: skip
