"""Tokenizer and language-model training for ``build_base_model.py``.

A byte-level BPE tokenizer, whole sentences packed into fixed-size blocks, the summed next-token loss,
held-out perplexity, sampled continuations, and the AdamW training loop (linear warm-up, cosine decay).
"""

from __future__ import annotations

import math
import random
import time

EOS = "<|endoftext|>"
PAD = "<|pad|>"


# ---------------------------------------------------------------- tokenizer and model


def train_tokenizer(sentences: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sentences, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        model_max_length=128,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def pack(sentences: list[str], tokenizer, block: int, rng: random.Random):
    """Whole sentences, each followed by EOS, greedily packed into blocks of ``block`` tokens."""
    import torch

    eos = tokenizer.eos_token_id
    ids = [tokenizer(s)["input_ids"] + [eos] for s in sentences]
    ids = [x for x in ids if len(x) <= block]
    order = list(range(len(ids)))
    rng.shuffle(order)
    blocks, current = [], []
    for i in order:
        if len(current) + len(ids[i]) > block:
            blocks.append(current)
            current = []
        current = current + ids[i]
    if current:
        blocks.append(current)
    x = torch.full((len(blocks), block), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(blocks), block), dtype=torch.long)
    for r, b in enumerate(blocks):
        x[r, : len(b)] = torch.tensor(b)
        mask[r, : len(b)] = 1
    return x, mask, sum(len(b) for b in blocks)


def lm_loss(model, x, mask):
    import torch.nn.functional as F

    logits = model(input_ids=x, attention_mask=mask).logits[:, :-1]
    target = x[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum"
    ), int((target != -100).sum())


def evaluate(model, x, mask, batch: int = 64) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            loss, n = lm_loss(model, x[i : i + batch], mask[i : i + batch])
            total += float(loss)
            count += n
    model.train()
    return math.exp(total / count)


def samples(model, tokenizer, prompts: list[str], seed: int) -> list[str]:
    import torch

    torch.manual_seed(seed)
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(
        **enc,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=0.7,
        max_new_tokens=30,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def train_lm(model, x, mask, heldout: dict, *, epochs: float, lr: float, batch: int, desc: str, seed: int) -> dict:
    """AdamW with linear warm-up and cosine decay over ``epochs`` passes of the packed blocks ``x``."""
    import torch
    from tqdm import tqdm

    steps_per_epoch = len(x) // batch
    total = int(epochs * steps_per_epoch)
    warmup = max(1, total // 50)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    g = torch.Generator().manual_seed(seed)
    start = time.time()
    bar = tqdm(total=total, desc=desc, unit="step", mininterval=10)
    step = 0
    while step < total:
        perm = torch.randperm(len(x), generator=g)
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[i * batch : (i + 1) * batch]
            loss, n = lm_loss(model, x[idx], mask[idx])
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{float(loss.detach()) / n:.3f}",
                tok_s=f"{step * batch * x.shape[1] / (time.time() - start):.0f}",
            )
            if step % 500 == 0 or step == total:
                ppl = {name: f"{evaluate(model, hx, hm):.1f}" for name, (hx, hm) in heldout.items()}
                bar.write(f"step {step}: held-out perplexity {ppl}")
    bar.close()
    return {"steps": total, "seconds": round(time.time() - start)}
