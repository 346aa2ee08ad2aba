"""Shuffled passes over a dataset in global batches, split among processes, resumable.

Every process draws the same permutation from the same generator, takes the same global
batch of ``batch_size`` indices, and keeps its own ``batch_size / world`` slice of it; so
``world`` processes together see exactly what one process with the whole batch would.
"""

from __future__ import annotations

from typing import Sequence

import torch

from rlhflab.models.chat import stop_ids


class ShardedEpochs:
    def __init__(self, n: int, batch_size: int, world: int = 1, rank: int = 0, seed: int = 0):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        if n < batch_size:
            raise ValueError(f"{n} examples are fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.world, self.rank = n, batch_size, world, rank
        self.steps_per_epoch = n // batch_size  # the last incomplete batch of a pass is dropped
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def local_batch(self, step: int) -> list[int]:
        """This process's indices for global step ``step`` (0-based), drawing a new order at each pass."""
        position = step % self.steps_per_epoch
        if position == 0 or not self.order:
            self.order = torch.randperm(self.n, generator=self.generator).tolist()
        batch = self.order[position * self.batch_size : (position + 1) * self.batch_size]
        local = self.batch_size // self.world
        return batch[self.rank * local : (self.rank + 1) * local]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = list(state["order"])


def lr_at(step: int, total: int, peak: float) -> float:
    """Learning rate at ``step`` of ``total``: linear warm-up over the first 5%, then linear decay to 0.

    A pure function of the step, so a resumed run needs no scheduler state.
    """
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def prompt_stream(prompts: Sequence[str], n: int, generator: torch.Generator) -> list[str]:
    """``n`` prompts: shuffled passes over the prompt set, as many as needed."""
    out: list[str] = []
    while len(out) < n:
        order = torch.randperm(len(prompts), generator=generator).tolist()
        out.extend(prompts[i] for i in order)
    return out[:n]


# ---------------------------------------------------------------- prompt + completion batches


def appended_count(tokenizer) -> int:
    """How many special tokens the tokenizer appends after a text (an EOS-appending tokenizer's EOS, BERT's
    [SEP]): 0 for GPT-2-, Llama- and Qwen-style tokenizers."""
    plain = tokenizer("a b", add_special_tokens=False)["input_ids"]
    full = tokenizer("a b")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return len(full) - start - len(plain)
    return 0


def encode(
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    max_length: int,
    ended: Sequence[bool] | None = None,
    as_generated: bool = False,
) -> list[tuple[list[int], int]]:
    """Token ids of each prompt + completion (at most ``max_length``, keeping the end), and the index of
    the completion's first token (the last token when the completion is empty).

    ``as_generated``: the ids as a policy generates them (for its log-probabilities): without the special
    tokens a tokenizer appends after a text (a policy writes its end token only when it stops), and
    ``ended[i]`` appends the stop token to completion i -- a sample that stopped by itself (fine-tuning on it
    teaches the model where to stop, not only what to say). Without it (a reward model reading a text), the
    tokenizer's own special tokens stay.
    """
    if not prompts:
        return []
    texts = [p + c for p, c in zip(prompts, completions)]
    trailing = appended_count(tokenizer)
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(texts, return_offsets_mapping=True)
        full = encoded["input_ids"]
        prompt_lengths = [completion_start(offsets, len(p)) for offsets, p in zip(encoded["offset_mapping"], prompts)]
    else:  # no character offsets: the prompt's own token count (without what the tokenizer appends)
        full = tokenizer(texts)["input_ids"]
        prompt_lengths = [len(ids) - trailing for ids in tokenizer(list(prompts))["input_ids"]]
    if as_generated:
        full = [ids[: len(ids) - trailing] for ids in full]
    ended = ended if ended is not None else [False] * len(full)
    stop = (stop_ids(tokenizer) or [None])[0]
    out = []
    for ids, n_prompt, stopped in zip(full, prompt_lengths, ended):
        n_prompt = min(n_prompt, len(ids))
        if stopped and stop is not None:
            ids = ids + [stop]
        cut = max(0, len(ids) - max_length)
        ids = ids[cut:]
        out.append((ids, min(max(0, n_prompt - cut), len(ids) - 1)))
    return out


def generated_ids(rollout, rows: Sequence[int], max_length: int) -> list[tuple[list[int], int]]:
    """The (ids, completion start) of rollout rows exactly as they were sampled -- prompt tokens as the sampler
    encoded them, then the generated tokens up to and including the stop token -- at most ``max_length``
    tokens, keeping the end. What fine-tuning on a policy's own samples trains on: re-tokenising their text
    could merge or split tokens at the boundary differently from what was generated."""
    P = rollout.prompt_length
    out = []
    for i in rows:
        prompt = rollout.input_ids[i, :P][rollout.attention_mask[i, :P].bool()].tolist()
        response = rollout.input_ids[i, P:][rollout.response_mask[i].bool()].tolist()
        ids = prompt + response
        cut = max(0, len(ids) - max_length)
        out.append((ids[cut:], min(max(0, len(prompt) - cut), len(ids) - cut - 1)))
    return out


def completion_start(offsets: Sequence[tuple[int, int]], prompt_chars: int) -> int:
    """Index of the first token that carries a character of the completion, from each token's character span
    in prompt + completion: a token that straddles the boundary (BPE joins the prompt's trailing space to the
    next word) belongs to the completion, and special tokens (empty spans: BOS, [CLS], an appended EOS or
    [SEP]) to neither side; ``len(offsets)`` when no token does (an empty completion)."""
    return next((i for i, (a, b) in enumerate(offsets) if b > a and b > prompt_chars), len(offsets))


def collate(encoded: Sequence[tuple[list[int], int]], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """Left-padded (input_ids, attention_mask, completion_mask), each [B, T]."""
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    completion_mask = torch.zeros((len(encoded), width))
    for r, (ids, start) in enumerate(encoded):
        pad = width - len(ids)
        input_ids[r, pad:] = torch.tensor(ids)
        attention_mask[r, pad:] = 1
        completion_mask[r, pad + start :] = 1
    return input_ids.to(device), attention_mask.to(device), completion_mask.to(device)
