"""Damaged run directories and model folders end in a clear error: a fuzz-style grid of (damage x consumer).

Cases: a run directory's manifest under ``--resume`` (not JSON, not UTF-8, unpaired surrogates, non-finite
numbers, integers out of range, nested objects or lists where a string or number is expected, missing
arguments); a resume directory that is missing or holds no manifest; the latest checkpoint's weights,
optimizer or state truncated, empty, garbage or missing, and a bad ``latest`` pointer; a model folder
with corrupt or truncated weights, config or tokenizer under every loader; a reward-model folder
(``rlhflab_reward.json`` and its member) under ``optimize ppo``.

Every case runs the CLI in-process and asserts (``refused``, in ``bad_input_helpers.py``): exit status 2;
stderr is one line ``error: ...`` naming the damaged file or folder with no traceback; no file was written
or changed, except that a stage that had begun records itself as failed in the run's manifest; no
temporary file is left anywhere.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from bad_input_helpers import BIG, GOOD_LINES, GRPO, PPO, TASK, copy_model, jsonl, refused, truncate, write

from rlhflab.cli import main

# ---------------------------------------------------------------- a run directory's manifest x --resume


@pytest.fixture(scope="module")
def grpo_run(micro_model, tmp_path_factory) -> Path:
    """A finished 3-step GRPO run with a checkpoint after every step."""
    run = tmp_path_factory.mktemp("grpo") / "run"
    main([
        "optimize", "grpo", "--reward", "gold", *TASK, "--model", str(micro_model), "--run-dir", str(run),
        "--steps", "3", "--checkpoint-every", "1", "--prompts-per-step", "4", "--samples-per-prompt", "2",
        "--minibatch-size", "8", "--max-new-tokens", "6", "--quiet",
    ])  # fmt: skip
    assert (run / "checkpoints" / "grpo" / "latest").is_file()
    return run


def _stage(grpo_run: Path, **change) -> dict:
    entry = json.loads((grpo_run / "manifest.json").read_text())["stages"]["grpo"]
    for key, value in change.items():
        if isinstance(value, dict):
            entry[key] = {**entry[key], **value}
        else:
            entry[key] = value
    return entry


def _manifest(stage) -> str:
    return json.dumps({"created": "2025-01-01", "stages": {"grpo": stage}})


MANIFESTS = {
    "garbage": lambda r: b"{not json",
    "not-utf8": lambda r: _manifest(_stage(r, status="@")).encode().replace(b'"@"', b'"\xff"'),
    "surrogate-escape": lambda r: _manifest(_stage(r, status="@")).replace('"@"', '"\\ud800"'),
    "nan": lambda r: _manifest(_stage(r)).replace('"created": "2025-01-01"', '"created": NaN'),
    "infinity": lambda r: _manifest(_stage(r)).replace('"created": "2025-01-01"', '"created": Infinity'),
    "float-overflow": lambda r: _manifest(_stage(r, config={"kl_coef": "@"})).replace('"@"', "1e400"),
    "int-out-of-range": lambda r: _manifest(_stage(r, config={"sampling": {"max_new_tokens": "@"}})).replace(
        '"@"', BIG
    ),
    "int-2**64": lambda r: _manifest(_stage(r, config={"run": {"seed": 2**64}})),
    "not-an-object": lambda r: json.dumps([_stage(r)]),
    "stages-a-list": lambda r: json.dumps({"stages": [_stage(r)]}),
    "stage-a-string": lambda r: json.dumps({"stages": {"grpo": "running"}}),
    "config-a-list": lambda r: _manifest(_stage(r, config=[1, 2])),
    "nested-config-string": lambda r: _manifest(_stage(r, config={"optimizer": "fast"})),
    "nested-config-object": lambda r: _manifest(_stage(r, config={"sampling": {"max_new_tokens": {"n": 6}}})),
    "nested-config-list": lambda r: _manifest(_stage(r, config={"loss_aggregation": ["token"]})),
    "config-string-for-int": lambda r: _manifest(_stage(r, config={"steps": "three"})),
    "config-out-of-range": lambda r: _manifest(_stage(r, config={"steps": 0})),
    "nested-args-object": lambda r: _manifest(_stage(r, args={"model": {"path": "x"}})),
    "nested-args-list": lambda r: _manifest(_stage(r, args={"task": ["conftest:planted_task"]})),
    "args-missing": lambda r: _manifest(_stage(r) | {"args": {"reward": "gold"}}),
}


@pytest.mark.parametrize("kind", list(MANIFESTS))
def test_resume_with_a_bad_manifest(kind, grpo_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    content = MANIFESTS[kind](grpo_run)
    manifest = write(run / "manifest.json", content)
    refused(capsys, tmp_path, ["optimize", "grpo", "--resume", run, "--quiet"], manifest)


@pytest.mark.parametrize("command", [["optimize", "grpo"], ["optimize", "dpo"], ["reward", "train"]])
@pytest.mark.parametrize("kind", ["missing", "no-manifest"])
def test_resume_without_a_run(command, kind, tmp_path, capsys):
    run = tmp_path / "run"
    if kind == "no-manifest":
        write(run / "pairs.jsonl", GOOD_LINES[0] + "\n")
    err = refused(capsys, tmp_path, [*command, "--resume", run, "--quiet"], run)
    assert ("no such run directory" if kind == "missing" else "manifest.json") in err
    assert run.exists() == (kind == "no-manifest")


# ---------------------------------------------------------------- checkpoints x --resume


def _latest(run: Path) -> Path:
    root = run / "checkpoints" / "grpo"
    return root / (root / "latest").read_text().strip()


CHECKPOINTS = {  # the file of the latest checkpoint that is damaged, and how
    "weights-truncated": ("policy.safetensors", lambda f: truncate(f)),
    "weights-garbage": ("policy.safetensors", lambda f: write(f, b"\xff" * 64)),
    "weights-empty": ("policy.safetensors", lambda f: truncate(f, 0)),
    "optimizer-truncated": ("optimizer.optim.pt", lambda f: truncate(f)),
    "state-truncated": ("state-0.pt", lambda f: truncate(f)),
    "state-garbage": ("state-0.pt", lambda f: write(f, b"not a checkpoint")),
    "state-not-a-dict": ("state-0.pt", lambda f: torch.save([1, 2], f)),
    "state-missing": ("state-0.pt", lambda f: f.unlink()),
}
POINTERS = {"latest-not-utf8": b"step-\xff\n", "latest-outside": b"../../../elsewhere\n", "latest-empty": b""}


@pytest.mark.parametrize("kind", [*CHECKPOINTS, *POINTERS])
def test_resume_from_a_damaged_checkpoint(kind, grpo_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(grpo_run, run)
    checkpoint = _latest(run)
    if kind in POINTERS:
        bad = write(run / "checkpoints" / "grpo" / "latest", POINTERS[kind])
    else:
        name, damage = CHECKPOINTS[kind]
        bad = checkpoint / name
        assert bad.is_file(), sorted(p.name for p in checkpoint.iterdir())
        damage(bad)
        if kind == "state-not-a-dict":  # a readable file that is not a checkpoint's state: the folder is named
            bad = checkpoint
    refused(capsys, tmp_path, ["optimize", "grpo", "--resume", run, "--quiet"], bad, stage=(run, "grpo"))


# ---------------------------------------------------------------- model folders x loaders


def _config(micro_model: Path, **change) -> str:
    return json.dumps({**json.loads((micro_model / "config.json").read_text()), **change})


MODELS = {
    "weights-truncated": ("model.safetensors", lambda m: truncate(m / "model.safetensors")),
    "weights-header-cut": ("model.safetensors", lambda m: truncate(m / "model.safetensors", 10)),
    "weights-empty": ("model.safetensors", lambda m: truncate(m / "model.safetensors", 0)),
    "weights-garbage": ("model.safetensors", lambda m: write(m / "model.safetensors", b"\xff" * 4096)),
    "config-garbage": ("config.json", lambda m: write(m / "config.json", b"{not json")),
    "config-not-utf8": ("config.json", lambda m: write(m / "config.json", b'{"model_type": "gpt2\xff"}')),
    "config-nan": ("config.json", lambda m: write(m / "config.json", _config(m, n_embd="@").replace('"@"', "NaN"))),
    "config-a-list": ("config.json", lambda m: write(m / "config.json", b'["gpt2"]')),
    "config-nested-type": ("config.json", lambda m: write(m / "config.json", _config(m, model_type={"a": "gpt2"}))),
    "config-string-for-int": ("config.json", lambda m: write(m / "config.json", _config(m, n_layer="two"))),
    "config-negative-size": ("config.json", lambda m: write(m / "config.json", _config(m, vocab_size=-1))),
    "config-truncated": ("config.json", lambda m: truncate(m / "config.json")),
    "tokenizer-truncated": ("tokenizer.json", lambda m: truncate(m / "tokenizer.json")),
}


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("consumer", ["optimize-grpo", "reward-train", "ai-judge", "evaluate"])
def test_model_folder(consumer, kind, micro_model, tmp_path, capsys):
    folder = copy_model(micro_model, tmp_path / "policy")
    member, damage = MODELS[kind]
    damage(folder)
    run = tmp_path / "run"
    if consumer == "optimize-grpo":
        args = ["optimize", "grpo", "--model", folder, "--reward", "gold", *TASK, "--run-dir", run, *GRPO, "--quiet"]
        stage = (run, "grpo")
    elif consumer == "reward-train":
        pairs = jsonl(tmp_path / "in" / "pairs.jsonl", GOOD_LINES)
        args = ["reward", "train", "--model", folder, "--pairs", pairs, "--run-dir", run, "--pairs-per-step", "4"]
        args += ["--epochs", "1", "--quiet"]
        stage = (run, "reward")
    elif consumer == "ai-judge":
        pairs = jsonl(tmp_path / "in" / "pairs.jsonl", GOOD_LINES[:2])
        principles = write(tmp_path / "in" / "principles.txt", "good\n")
        args = ["feedback", "ai", "--judge", folder, "--principles", principles, "--pairs", pairs]
        args += ["--out", tmp_path / "out.jsonl", "--answer-a", "A", "--answer-b", "B", "--quiet"]
        stage = None
    else:
        args = ["evaluate", "--run-dir", run, "--policy", folder, "--base", micro_model, *TASK, "--quiet"]
        args += ["--num-prompts", "1", "--max-new-tokens", "2"]
        stage = (run, "evaluate")
    err = refused(capsys, tmp_path, args, folder, stage=stage)
    assert member in err or "could not load" in err, err


# ---------------------------------------------------------------- a reward-model folder x optimize ppo

META = {"members": [{"path": ".", "mean": 0.0, "std": 1.0}], "aggregate": "mean", "std_coef": 1.0,
        "max_length": 32, "pooling": "last"}  # fmt: skip


def _meta(**change) -> str:
    return json.dumps({**META, **change})


REWARD_FOLDERS = {
    "garbage": lambda f: write(f / "rlhflab_reward.json", "{not json"),
    "not-utf8": lambda f: write(f / "rlhflab_reward.json", _meta(aggregate="@").encode().replace(b"@", b"\xff")),
    "surrogate-escape": lambda f: write(f / "rlhflab_reward.json", _meta(aggregate="@").replace("@", "\\udfff")),
    "nan": lambda f: write(f / "rlhflab_reward.json", _meta(std_coef="@").replace('"@"', "NaN")),
    "float-overflow": lambda f: write(
        f / "rlhflab_reward.json", _meta(members=[{"path": ".", "mean": "@", "std": 1}]).replace('"@"', "1e400")
    ),  # fmt: skip
    "int-out-of-range": lambda f: write(f / "rlhflab_reward.json", _meta(max_length="@").replace('"@"', BIG)),
    "int-negative": lambda f: write(f / "rlhflab_reward.json", _meta(max_length=-1)),
    "std-zero": lambda f: write(f / "rlhflab_reward.json", _meta(members=[{"path": ".", "mean": 0, "std": 0}])),
    "not-an-object": lambda f: write(f / "rlhflab_reward.json", json.dumps([META])),
    "nested-members": lambda f: write(f / "rlhflab_reward.json", _meta(members={"path": "."})),
    "nested-path": lambda f: write(
        f / "rlhflab_reward.json", _meta(members=[{"path": {"p": "."}, "mean": 0, "std": 1}])
    ),
    "nested-aggregate": lambda f: write(f / "rlhflab_reward.json", _meta(aggregate={"how": "mean"})),
    "member-weights-truncated": lambda f: truncate(f / "model.safetensors"),
    "member-config-garbage": lambda f: write(f / "config.json", "{"),
}


@pytest.mark.parametrize("kind", list(REWARD_FOLDERS))
def test_reward_model_folder(kind, micro_model, tmp_path, capsys):
    folder = copy_model(micro_model, tmp_path / "reward_model")
    write(folder / "rlhflab_reward.json", _meta())
    REWARD_FOLDERS[kind](folder)
    run = tmp_path / "run"
    args = ["optimize", "ppo", "--reward", folder, "--model", micro_model, *TASK, "--run-dir", run, *PPO, "--quiet"]
    refused(capsys, tmp_path, args, folder, stage=(run, "ppo"))
