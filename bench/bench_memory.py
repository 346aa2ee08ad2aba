"""What PPO holds in memory under each model option: weights, gradients and AdamW state, counted tensor by
tensor after one real optimiser step on a randomly initialised Qwen2-architecture model.

    .venv/bin/python bench/bench_memory.py                 # ~0.1B parameters, CPU, about a minute
    .venv/bin/python bench/bench_memory.py --size 0.5b     # Qwen2-0.5B's shapes (needs ~12 GB of RAM)

PPO holds four models: the policy and the value function (trained), the reference policy and the reward
model (frozen). The set-ups compared:

- ``full fp32``: every model float32, AdamW over policy and value (what rlhflab did before issue 11);
- ``full bf16``: ``--dtype bfloat16``: frozen models in bfloat16, trained ones float32 under autocast;
- ``lora, value lora``: ``--dtype bfloat16 --lora-r 16``: the policy's base in bfloat16 with float32
  adapters, the reference is the adapter switched off (no copy), the value function a LoRA model of its own
  (rlhflab's choice);
- ``lora, value full``: as above with a fully trained float32 value model (the alternative);
- ``lora, shared value``: the lower bound of a value head sharing the policy's backbone (no value backbone at
  all), computed from the previous rows rather than run: rlhflab does not implement it.

Bytes are counted from the tensors themselves (parameters, their gradients, AdamW's moments), so the figures
are exact for those and leave out activations, which depend on batch and sequence length; on a GPU the script
also prints ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SIZES = {  # Qwen2 shapes: (hidden, intermediate, layers, heads, kv heads, vocab)
    "0.1b": (512, 2816, 12, 8, 2, 151936),
    "0.5b": (896, 4864, 24, 14, 2, 151936),
}


def qwen2(size: str, seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    h, i, n, a, kv, v = SIZES[size]
    torch.manual_seed(seed)
    config = Qwen2Config(hidden_size=h, intermediate_size=i, num_hidden_layers=n, num_attention_heads=a,
                         num_key_value_heads=kv, vocab_size=v, tie_word_embeddings=True, pad_token_id=0)  # fmt: skip
    return Qwen2ForCausalLM(config)


def tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None or t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def held(models, optimizer) -> dict[str, int]:
    params = [p for m in models for p in m.parameters()]
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return {
        "weights": tensor_bytes(params),
        "gradients": tensor_bytes(p.grad for p in params),
        "adamw": tensor_bytes(state),
    }


def setup(name: str, base, device) -> dict[str, int]:
    from rlhflab.models.loading import ScalarHeadModel, forward_inputs
    from rlhflab.models.precision import (
        AdapterOff,
        ModelConfig,
        reference_for,
        trainable_policy,
        trainable_value,
    )

    lora = name.startswith("lora")
    options = ModelConfig(dtype="float32" if name == "full fp32" else "bfloat16", lora_r=16 if lora else None)
    frozen = options.torch_dtype
    policy = copy.deepcopy(base).to(device, frozen if lora else torch.float32)
    policy = trainable_policy(policy, options)
    reference = reference_for(policy, lambda: copy.deepcopy(base).to(device, frozen).requires_grad_(False))
    reward = ScalarHeadModel.from_causal_lm(base).to(device, frozen).requires_grad_(False)
    value = ScalarHeadModel.from_causal_lm(base).to(device)
    value_options = options if name != "lora, value full" else ModelConfig(dtype=options.dtype)
    value = trainable_value(value.to(frozen) if value_options.lora else value, value_options)
    trained = [p for m in (policy, value) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-5)
    ids = torch.randint(1, 1000, (2, 32), device=device)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        reference(**forward_inputs(reference, ids, mask))
        reward(**forward_inputs(reward, ids, mask))
    loss = policy(**forward_inputs(policy, ids, mask)).logits.float().mean()
    loss = loss + value(**forward_inputs(value, ids, mask)).mean()
    loss.backward()
    optimizer.step()
    models = [policy, value, reward] + ([] if isinstance(reference, AdapterOff) else [reference])
    out = held(models, optimizer)
    out["trained parameters"] = sum(p.numel() for p in trained)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="0.1b")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = qwen2(args.size)
    n = sum(p.numel() for p in base.parameters())
    print(f"Qwen2 architecture, {n / 1e6:.0f}M parameters, randomly initialised; PPO's four models on {device}\n")
    rows = {}
    for name in ("full fp32", "full bf16", "lora, value lora", "lora, value full"):
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        rows[name] = setup(name, base, device)
        if device == "cuda":
            rows[name]["cuda peak"] = torch.cuda.max_memory_allocated()
    shared = dict(rows["lora, value lora"])
    value_backbone = sum(p.numel() for n_, p in base.named_parameters() if not n_.startswith("lm_head")) * 2
    shared["weights"] -= value_backbone  # no value backbone in bfloat16 at all
    rows["lora, shared value (bound)"] = shared
    gib = 2**30
    print("| set-up | weights GiB | gradients GiB | AdamW GiB | total GiB | vs full fp32 | trained params |")
    print("|---|---|---|---|---|---|---|")
    ref = sum(rows["full fp32"][k] for k in ("weights", "gradients", "adamw"))
    for name, r in rows.items():
        total = r["weights"] + r["gradients"] + r["adamw"]
        print(f"| {name} | {r['weights'] / gib:.2f} | {r['gradients'] / gib:.3f} | {r['adamw'] / gib:.3f} | "
              f"{total / gib:.2f} | {total / ref:.2f} | {r['trained parameters'] / 1e6:.1f}M |"
              + (f" cuda peak {r['cuda peak'] / gib:.2f} GiB" if "cuda peak" in r else ""))  # fmt: skip


if __name__ == "__main__":
    main()
