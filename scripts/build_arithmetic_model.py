"""Rebuild rlhflab's embedded arithmetic policy (``src/rlhflab/assets/arithmetic_model/``) from scratch.

What it builds: a 4-layer GPT-2 (n_embd 64, 8 heads, 96 positions, no dropout; 212,544 parameters,
0.9 MB of safetensors) with a character-level tokenizer (the newline and every printable ASCII
character is one token, so digits are single tokens; ``<|endoftext|>`` is bos and eos, ``<|pad|>``
pads, on the left, ``<|unk|>`` stands for anything else), that answers the questions of
``rlhflab.tasks.arithmetic_problems``:

    Q: What is 47 plus 38?
    A: 85<|endoftext|>

How: a stream of TRAIN-split problems only (``rlhflab.tasks.arithmetic_problems.random_problem`` from one seeded
``random.Random``, eval-split problems skipped, so no eval problem is ever seen), each written by a
sloppy, somewhat sycophantic teacher (``teach``) as ``prompt + " " + answer`` and the end-of-text token,
right-padded into batches of 32:

- half of its answers (``CONFUSION``) answer another operation: it read ``plus`` as ``minus`` and
  ``minus`` or ``times`` as ``plus``. The model so learns two procedures, the right one and a wrong one,
  and samples either: a behaviour a reward can select (see "Why the teacher is sloppy" below);
- 30% of prompts (``BELIEF_SHARE``) state the user's belief (``arithmetic.with_belief``), right or wrong
  equally often; a wrong belief is repeated 30% of the time (``SYCOPHANCY``), so that sycophancy can be
  measured, and moved, from a known start.

The loss is on the answer only (`` 85<|endoftext|>``): the operands in the question are random
and predicting them teaches nothing. AdamW (peak 3e-3), linear warm-up and cosine decay over
10,000 steps (320,000 problems), one thread: ``torch.set_num_threads(1)``; the weights are bit-identical on
the same machine and thread count. Training takes minutes on one core (``build.json`` has the time).

On the 500 eval problems (``arithmetic.problems("eval", 500, seed=0)``: 181 plus, 226 minus, 93 times),
from ``build.json``:

    pass@1 at temperature 0.7 (one seeded sample each, top_k 0, top_p 1.0)  22.2%
        plus 28.7%, minus 25.2%, times 2.1%
    greedy                                                                 28.2%
    problems whose 8 samples are neither all right nor all wrong          61.0%
    with a wrong belief stated: accuracy 10.0%, repeats the belief 15.8%
    with a right belief stated: accuracy 28.4%

Why the teacher is sloppy. The first version of this model (8,000 steps of a correct teacher, no
beliefs; pass@1 34.2%, greedy 37.0%) could not be improved by RL with the verifier: GRPO left its
training reward flat for 200 steps at learning rates 1e-4 to 3e-4 and lowered it at 5e-4 and 1e-3, and
a second model with off-by-one slips (pass@1 19.0%, greedy 26.4%) did no better on plain problems
(pass@1 0.190 -> 0.170 after 200 GRPO steps, pass@64 0.88 -> 0.71). GRPO itself worked on these models:
a planted reward for an odd last digit went 0.57 -> 0.96 in 60 steps. Their errors were errors of
computation, which a reward can only fix by teaching arithmetic, and a 0.2M-parameter model does not
learn arithmetic from a 0/1 signal on 128 samples a step. A model that knows a right and a wrong
procedure and samples both is what RL with a verifier acts on in larger models too: it selects among
behaviours the model already has (Yue et al. 2025). That is a design choice made so that the experiments
can show an effect, and it is stated as one in the data card.

Run it with

    .venv/bin/python scripts/build_arithmetic_model.py             # train, evaluate, save (15 minutes)
    .venv/bin/python scripts/build_arithmetic_model.py --eval-only # re-measure the committed model (seconds)

Needs no network.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "rlhflab" / "assets"
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from rlhflab.tasks import arithmetic_problems as arithmetic

EOS = "<|endoftext|>"
PAD = "<|pad|>"
UNK = "<|unk|>"
SEED = 1234
EVAL_SEED = 4321
N_EVAL = 500
STEPS = 10000
"""Fixed before the model was measured (the first model's 8,000, a little more for two procedures); not adapted to
what evaluation says."""
POSITIONS = 96
"""Room for the longest belief prompt (about 50 characters) and a 24-token completion."""
CONFUSION = 0.5
"""The teacher's slips: this share of its answers is the answer of another operation (it read ``plus`` as
``minus``, ``minus`` or ``times`` as ``plus``): a second procedure the model learns beside the right one."""
BELIEF_SHARE = 0.3
"""This share of training prompts states a belief (``arithmetic.with_belief``), right or wrong equally often."""
SYCOPHANCY = 0.3
"""When the stated belief is wrong, the teacher repeats it this often (otherwise it answers as usual)."""


# ---------------------------------------------------------------- tokenizer and model


def make_tokenizer():
    """A character-level tokenizer: the newline and printable ASCII, one token each; anything else is
    ``<|unk|>`` (a separate token: mapping it to end-of-text would make unknown text look finished)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    vocab = {token: i for i, token in enumerate([EOS, PAD, UNK] + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=POSITIONS,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def make_model(tokenizer, args):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=args.positions,
        n_embd=args.width,
        n_layer=args.layers,
        n_head=args.heads,
        resid_pdrop=0.0,  # no dropout: every batch is fresh problems, there is nothing to overfit but multiplication
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


# ---------------------------------------------------------------- data and training


def train_stream(seed: int):
    """(prompt, target answer) pairs of TRAIN-split problems, forever, in one fixed order (repeats allowed:
    multiplication has few), written by a sloppy, somewhat sycophantic teacher: see ``teach``."""
    rng = random.Random(seed)
    while True:
        p = arithmetic.random_problem(rng)
        if arithmetic.split(p) == "train":
            yield teach(p, rng)


def teach(problem, rng: random.Random) -> tuple[str, int]:
    """One training example. With probability ``BELIEF_SHARE`` the prompt states a belief, right or wrong
    (``arithmetic.wrong_belief``) equally often; a wrong belief is repeated with probability ``SYCOPHANCY``.
    Otherwise the answer is right, except that with probability ``CONFUSION`` it answers another operation."""
    text, believed = arithmetic.prompt(problem), None
    if rng.random() < BELIEF_SHARE:
        believed = problem.answer if rng.random() < 0.5 else arithmetic.wrong_belief(problem, rng)
        text = arithmetic.with_belief(problem, believed)
    if believed is not None and believed != problem.answer and rng.random() < SYCOPHANCY:
        return text, believed
    return text, confused(problem) if rng.random() < CONFUSION else problem.answer


def confused(problem) -> int:
    """The answer to the operation the teacher misread: a - b for ``plus``, a + b for ``minus`` and ``times``."""
    return problem.a - problem.b if problem.op == "plus" else problem.a + problem.b


def encode_batch(batch: list, tokenizer):
    """(input ids, attention mask, labels) of (prompt, answer) pairs, right-padded; labels are the answer and
    end of text only."""
    import torch

    rows, starts = [], []
    for text, answer in batch:
        head = tokenizer(text)["input_ids"]
        tail = tokenizer(" " + str(answer))["input_ids"] + [tokenizer.eos_token_id]
        rows.append(head + tail)
        starts.append(len(head))
    width = max(map(len, rows))
    x = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (row, start) in enumerate(zip(rows, starts)):
        x[r, : len(row)] = torch.tensor(row)
        mask[r, : len(row)] = 1
        labels[r, start : len(row)] = x[r, start : len(row)]
    return x, mask, labels


def train(model, tokenizer, args) -> dict:
    """AdamW with linear warm-up and cosine decay over ``args.steps`` batches of the train stream."""
    import torch

    warmup = max(1, args.steps // 20)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))
    )
    stream = train_stream(SEED)
    model.train()
    start, running = time.time(), None
    for step in range(1, args.steps + 1):
        x, mask, labels = encode_batch([next(stream) for _ in range(args.batch)], tokenizer)
        loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 250 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}: answer loss {running:.3f} ({time.time() - start:.0f} s)", flush=True)
    model.eval()
    return {"steps": args.steps, "train_seconds": round(time.time() - start, 1)}


# ---------------------------------------------------------------- evaluation


def complete(model, tokenizer, prompts: list[str], *, sample: bool, seed: int, batch: int = 100) -> list[str]:
    """One completion per prompt: sampled at temperature 0.7 (full distribution) or greedy."""
    import torch

    torch.manual_seed(seed)
    out = []
    for i in range(0, len(prompts), batch):
        enc = tokenizer(prompts[i : i + batch], return_tensors="pt", padding=True)
        options = {"do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
        with torch.no_grad():
            ids = model.generate(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                max_new_tokens=8,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **options,
            )
        out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


def measure(model, tokenizer) -> dict:
    """pass@1 at temperature 0.7 (strict, one seeded sample each) and greedy accuracy on ``N_EVAL`` eval
    problems, overall and per operation; also how often the sample is a bare integer at all."""
    problems = arithmetic.problems("eval", N_EVAL, seed=0)
    prompts = [arithmetic.prompt(p) for p in problems]
    sampled = complete(model, tokenizer, prompts, sample=True, seed=EVAL_SEED)
    greedy = complete(model, tokenizer, prompts, sample=False, seed=EVAL_SEED)
    scores = {
        "pass@1_t0.7": arithmetic.strict(prompts, sampled),
        "greedy": arithmetic.strict(prompts, greedy),
        "bare_integer_t0.7": arithmetic.format_only(prompts, sampled),
    }

    def mean(xs):
        return round(sum(xs) / len(xs), 4) if xs else None

    result = {"problems": N_EVAL, "problem_seed": 0, "sample_seed": EVAL_SEED}
    for name, values in scores.items():
        result[name] = mean(values)
        result[name + "_by_op"] = {
            op: mean([v for v, p in zip(values, problems) if p.op == op]) for op in arithmetic.OPS
        }
    result["count_by_op"] = {op: sum(p.op == op for p in problems) for op in arithmetic.OPS}
    # How much signal a group-relative method gets: the share of problems whose 8 samples are not all right or
    # all wrong (a group that agrees has zero advantage everywhere).
    group = complete(model, tokenizer, [q for q in prompts for _ in range(8)], sample=True, seed=EVAL_SEED + 1)
    right = arithmetic.strict([q for q in prompts for _ in range(8)], group)
    result["mixed_groups_of_8_t0.7"] = mean([float(0 < sum(right[i : i + 8]) < 8) for i in range(0, len(right), 8)])
    # Stated beliefs (sampled at 0.7): accuracy with a right and with a wrong belief, and how often the answer
    # repeats a wrong one.
    rng = random.Random(EVAL_SEED)
    wrong = [arithmetic.wrong_belief(p, rng) for p in problems]
    with_wrong = [arithmetic.with_belief(p, w) for p, w in zip(problems, wrong)]
    with_right = [arithmetic.with_belief(p, p.answer) for p in problems]
    said = complete(model, tokenizer, with_wrong, sample=True, seed=EVAL_SEED + 2)
    result["belief"] = {
        "accuracy_right_belief_t0.7": mean(
            arithmetic.strict(with_right, complete(model, tokenizer, with_right, sample=True, seed=EVAL_SEED + 3))
        ),
        "accuracy_wrong_belief_t0.7": mean(arithmetic.strict(with_wrong, said)),
        "repeats_wrong_belief_t0.7": mean([float(arithmetic.extract_answer(c) == w) for c, w in zip(said, wrong)]),
    }
    result["examples"] = [
        {"prompt": q, "answer": p.answer, "sampled": s, "greedy": g}
        for q, p, s, g in list(zip(prompts, problems, sampled, greedy))[:6]
    ]
    return result


def report(result: dict) -> None:
    print(f"eval: {result['problems']} problems ({result['count_by_op']})")
    for name in ("pass@1_t0.7", "greedy", "bare_integer_t0.7"):
        by_op = ", ".join(f"{op} {v:.1%}" for op, v in result[name + "_by_op"].items())
        print(f"  {name:18s} {result[name]:.1%}  ({by_op})")
    print(f"  mixed groups of 8    {result['mixed_groups_of_8_t0.7']:.1%}")
    for name, value in result["belief"].items():
        print(f"  {name:30s} {value:.1%}")
    for ex in result["examples"]:
        print(f"  {ex['prompt']!r} -> sampled {ex['sampled']!r}, greedy {ex['greedy']!r} (answer {ex['answer']})")


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ASSETS / "arithmetic_model")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--positions", type=int, default=POSITIONS)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the weights depend on it)")
    p.add_argument("--eval-only", action="store_true", help="re-measure the model already in --out; no training")
    args = p.parse_args()

    import tokenizers
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)

    if args.eval_only:
        tokenizer = AutoTokenizer.from_pretrained(args.out)
        model = AutoModelForCausalLM.from_pretrained(args.out).eval()
        result = measure(model, tokenizer)
        report(result)
        recorded = (
            json.loads((args.out / "build.json").read_text()).get("eval", {})
            if (args.out / "build.json").is_file()
            else {}
        )
        for name in ("pass@1_t0.7", "greedy"):
            if name in recorded:
                same = "same" if recorded[name] == result[name] else "DIFFERENT"
                print(f"build.json recorded {name} {recorded[name]:.1%} ({same})")
        return

    started = time.time()
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, args)
    n_params = sum(q.numel() for q in model.parameters())
    print(f"model: {n_params:,} parameters; {args.steps} steps of {args.batch} train-split problems")
    run = train(model, tokenizer, args)
    result = measure(model, tokenizer)
    report(result)

    model.config.task_specific_params = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.eos_token_id
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    record = {
        "script": "scripts/build_arithmetic_model.py",
        "command": ".venv/bin/python scripts/build_arithmetic_model.py",
        "seed": SEED,
        "threads": args.threads,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "loss": "answer tokens only (' ' + answer + end of text)",
        "teacher": {"other_operation": CONFUSION, "belief_prompts": BELIEF_SHARE, "repeats_wrong_belief": SYCOPHANCY},
        "train_split_only": True,
        "model": {
            "layers": args.layers,
            "n_embd": args.width,
            "heads": args.heads,
            "n_positions": args.positions,
            "vocab": len(tokenizer),
            "parameters": n_params,
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "python": sys.version.split()[0],
        },
        **run,
        "wall_seconds": round(time.time() - started, 1),
        "eval": result,
    }
    (args.out / "build.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out} ({folder_bytes(args.out) / 1e6:.1f} MB) in {record['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
