"""Shared fixtures: a micro language model built in code, and a task with a planted preference.

The micro model is a 2-layer GPT-2 with a byte-level BPE tokenizer trained on sentences of
a 16-word vocabulary, pre-trained for a few hundred steps so that it writes words of that
vocabulary. The planted task rewards the word "good" and penalises "bad".
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# commands the tests run as subprocesses use one thread whatever the load, so runs compared bit for bit
# (resumed against uninterrupted, two processes against one) share their arithmetic
os.environ.setdefault("RLHFLAB_THREADS", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "good", "bad", "day", "and", "big", "small", "red", "it"]
SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def synthetic_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + "." for _ in range(n)]


def build_micro_model(path: Path, seed: int = 0, pretrain_steps: int = 150) -> Path:
    """Save a micro GPT-2 and tokenizer to ``path`` (Hugging Face format)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    sentences = synthetic_sentences(2000, seed)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        sentences,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>", "<|pad|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        padding_side="left",
        model_max_length=64,
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids = [tokenizer(s)["input_ids"] + [tokenizer.eos_token_id] for s in sentences]
    g = torch.Generator().manual_seed(seed)
    for _ in range(pretrain_steps):
        batch = [ids[i] for i in torch.randint(len(ids), (32,), generator=g).tolist()]
        width = max(map(len, batch))
        x = torch.full((32, width), tokenizer.pad_token_id)
        m = torch.zeros((32, width), dtype=torch.long)
        for r, row in enumerate(batch):
            x[r, : len(row)] = torch.tensor(row)
            m[r, : len(row)] = 1
        loss = model(input_ids=x, attention_mask=m, labels=x.masked_fill(m == 0, -100)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory) -> Path:
    return build_micro_model(tmp_path_factory.mktemp("micro") / "model")


def good_minus_bad(prompts, continuations) -> list[float]:
    """Planted gold reward: share of words that are 'good' minus share that are 'bad'."""
    out = []
    for text in continuations:
        words = text.replace(".", " ").split()
        out.append((words.count("good") - words.count("bad")) / max(len(words), 1))
    return out


def planted_task():
    from rlhflab.core.task import Task

    rng = random.Random(1)
    prompts = [" ".join(rng.choice(WORDS) for _ in range(3)) for _ in range(120)]
    return Task(
        name="planted",
        train_prompts=prompts[:100],
        eval_prompts=prompts[100:],
        gold=good_minus_bad,
        description="say 'good', not 'bad'",
        heldout_text=Path(__file__).parent / "data" / "planted_heldout.txt",
    )


def planted_chat_task():
    """``planted_task`` whose prompts are a user's turns (a chat model's template renders them)."""
    import dataclasses

    return dataclasses.replace(planted_task(), name="planted-chat", format="chat")


@pytest.fixture()
def task():
    return planted_task()


@pytest.fixture(scope="session")
def micro_run(micro_model, tmp_path_factory):
    """A whole quick demo (feedback, reward model, PPO, evaluation, diagnostics, report) on the micro model."""
    from rlhflab.pipeline.demo import run_demo

    run = tmp_path_factory.mktemp("report") / "run"
    run_demo(run, model=str(micro_model), quick=True, task="conftest:planted_task", progress=False)
    return run


def without_pad_token(model: Path, dest: Path) -> Path:
    """A copy of the model folder ``model`` whose tokenizer has no pad token (as GPT-2's and Llama's)."""
    import json
    import shutil

    shutil.copytree(model, dest)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = dest / name
        if path.exists():
            data = json.loads(path.read_text())
            data.pop("pad_token", None)
            path.write_text(json.dumps(data))
    return dest


def copy_run_with_policy_text(run: Path, dest: Path, text: str) -> Path:
    """A copy of ``run`` whose first evaluation sample of the tuned policy reads ``text``."""
    import json
    import shutil

    from rlhflab.core.files import read_jsonl

    shutil.copytree(run, dest)
    rows = read_jsonl(dest / "samples.jsonl")
    rows[0]["policy"] = text
    (dest / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dest


def run_method(method: str, model, run_dir: Path, config, reward: str | None = "gold", pairs: Path | None = None):
    """Run ``method`` through the pipeline on the planted task, as ``rlhflab optimize`` does; returns its summary."""
    from rlhflab.methods import registry
    from rlhflab.pipeline import stages
    from rlhflab.pipeline.setup import Setup
    from rlhflab.run.rundir import RunDir

    run = RunDir(run_dir)
    setup = Setup.resolve(run, str(model), "conftest:planted_task", read_prompts=registry.get(method).data != "pairs")
    return stages.optimize(run, method, setup, config, reward=reward, pairs=pairs, progress=False)
