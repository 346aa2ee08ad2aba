"""Bad input on every path ends in a clear error: a fuzz-style grid of (input class x consumer).

Classes: bytes that are not UTF-8 and unpaired surrogates (escaped, or as encoded bytes) in text
and JSON(L) input; non-finite numbers (NaN, Infinity, 1e400) and integers out of range; nested
objects or lists where a string or number is expected; chosen equal to rejected; corrupt or
truncated model and checkpoint files; a resume directory that is missing or holds no manifest.

Every command case runs the CLI in-process and asserts: exit status 2; stderr is one line
``error: ...`` naming the offending file (and the line, for JSONL) with no traceback; no file
was written or changed, except that a stage that had begun records itself as failed in the run's
manifest; no temporary file (``.NAME.tmpPID``, ``.tmp-*``, ``.NAME.oldPID``) is left anywhere.
The labelling server answers every bad request with a 4xx carrying its security headers.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from labelserver import Server
from test_reward_model import planted_pairs

from rlhflab.cli import main
from rlhflab.core.task import Task, read_prompts
from rlhflab.feedback.label.store import LabelStore

TASK = ["--task", "conftest:planted_task"]
# tiny settings, so that a case that wrongly succeeds fails in seconds rather than training for minutes
GRPO = ["--steps", "1", "--prompts-per-step", "2", "--samples-per-prompt", "2", "--minibatch-size", "4"]
GRPO += ["--max-new-tokens", "2"]
PPO = ["--steps", "1", "--prompts-per-step", "4", "--minibatch-size", "4", "--max-new-tokens", "2"]
TEMP = re.compile(r"^\..+\.(tmp|old)\d+$|^\.tmp-")
BIG = "1" + "0" * 400  # 10**400: an integer no field can hold
GOOD_LINES = [json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) for p in planted_pairs(12)]


# ---------------------------------------------------------------- helpers


def files_of(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256 of its bytes)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def temp_files(*roots: Path) -> list[str]:
    return [str(p) for root in roots if root.exists() for p in root.rglob("*") if TEMP.match(p.name)]


def cli_error(capsys, args: list) -> str:
    """Run ``rlhflab ARGS`` in-process; assert exit 2 and one line ``error: ...``; return that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def refused(capsys, root: Path, args: list, names: Path, line: int | None = None, stage: tuple | None = None) -> str:
    """``rlhflab ARGS`` fails cleanly on the bad input ``names``, writing nothing under ``root``.

    ``stage`` = (run directory, stage name): a stage that had begun may record itself in that run's
    manifest, and must say it failed; no other file may appear or change.
    """
    before = files_of(root)
    err = cli_error(capsys, args)
    where = f"{names}, line {line}:" if line is not None else str(names)
    assert where in err, err
    after = files_of(root)
    assert set(before) <= set(after), f"files removed: {set(before) - set(after)}"
    changed = {name for name in after if before.get(name) != after[name]}
    if stage is not None and changed:
        manifest = str((stage[0] / "manifest.json").relative_to(root))
        assert changed == {manifest}, f"written: {sorted(changed)}"
        entry = json.loads((root / manifest).read_text())["stages"][stage[1]]
        assert entry["status"] == "failed", entry
    else:
        assert not changed, f"written: {sorted(changed)}"
    assert temp_files(root) == []
    return err


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def jsonl(path: Path, lines: list[bytes | str]) -> Path:
    return write(path, b"".join((x.encode() if isinstance(x, str) else x) + b"\n" for x in lines))


def copy_model(micro_model: Path, dest: Path) -> Path:
    shutil.copytree(micro_model, dest)
    return dest


def truncate(path: Path, keep: float | int = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])


# ---------------------------------------------------------------- PreferencePair JSONL x every reader

# each is line 2 of a file of good pairs (import reads the same lines as TRL records)
PAIR_LINES = {
    "not-utf8": b'{"prompt": "p", "chosen": " a\xff", "rejected": " b"}',
    "surrogate-bytes": b'{"prompt": "p", "chosen": " a\xed\xa0\x80", "rejected": " b"}',
    "surrogate-escape": r'{"prompt": "p\ud800", "chosen": " a", "rejected": " b"}',
    "nan": '{"prompt": "p", "chosen": " a", "rejected": " b", "label": NaN}',
    "infinity": '{"prompt": "p", "chosen": " a", "rejected": " b", "scores": {"gold": -Infinity}}',
    "float-overflow": '{"prompt": "p", "chosen": " a", "rejected": " b", "label": 1e400}',
    "int-out-of-range": '{"prompt": "p", "chosen": ' + BIG + ', "rejected": " b"}',
    "label-out-of-range": '{"prompt": "p", "chosen": " a", "rejected": " b", "label": ' + BIG + "}",
    "nested-object": '{"prompt": {"text": "p"}, "chosen": " a", "rejected": " b"}',
    "nested-list": '{"prompt": "p", "chosen": " a", "rejected": [[" b"]]}',
    "not-an-object": '[" p", " a", " b"]',
    "truncated": '{"prompt": "p", "chosen": " a", "rej',
    "identical": '{"prompt": "p", "chosen": " same", "rejected": " same"}',
}
PAIR_CONSUMERS = ["reward-train", "dpo", "export", "import", "ai", "label-queue"]
PAIR_CASES = [
    pytest.param(consumer, kind, id=f"{consumer}-{kind}")
    for consumer in PAIR_CONSUMERS
    for kind in PAIR_LINES
    if not (consumer == "import" and kind == "label-out-of-range")  # TRL records have no label to check
]


def pair_command(consumer: str, pairs: Path, tmp: Path, micro_model: Path) -> tuple[list, tuple | None]:
    run = tmp / "run"
    if consumer == "reward-train":
        args = ["reward", "train", "--pairs", pairs, "--run-dir", run, "--model", micro_model, "--batch-size", "4"]
        return [*args, "--epochs", "1", "--quiet"], (run, "reward")
    if consumer == "dpo":
        args = ["optimize", "dpo", "--pairs", pairs, "--run-dir", run, "--model", micro_model, *TASK]
        return [*args, "--batch-size", "4", "--quiet"], (run, "dpo")
    if consumer == "export":
        return ["feedback", "export", pairs, "--format", "trl", "--out", tmp / "out.jsonl"], None
    if consumer == "import":
        return ["feedback", "import", pairs, "--format", "trl", "--out", tmp / "out.jsonl"], None
    if consumer == "ai":
        principles = write(tmp / "principles.txt", "good\n")
        args = ["feedback", "ai", "--judge", micro_model, "--principles", principles, "--pairs", pairs]
        return [*args, "--out", tmp / "out.jsonl", "--answer-a", "A", "--answer-b", "B", "--quiet"], None
    if consumer == "label-queue":
        return ["label", "queue", "--run", run, "--from-pairs", pairs, "--quiet"], None
    raise AssertionError(consumer)


@pytest.mark.parametrize("consumer, kind", PAIR_CASES)
def test_pairs_file(consumer, kind, micro_model, tmp_path, capsys):
    lines = [GOOD_LINES[0], PAIR_LINES[kind]] + (GOOD_LINES[1:] if kind != "truncated" else [])
    pairs = jsonl(tmp_path / "in" / "pairs.jsonl", lines)
    if kind == "truncated":  # a last line cut short, without its newline
        pairs.write_bytes(pairs.read_bytes().rstrip(b"\n"))
    args, stage = pair_command(consumer, pairs, tmp_path, micro_model)
    # chosen == rejected is a property of the whole set (named by file); the rest name the line
    line = None if kind == "identical" and consumer != "import" else 2
    err = refused(capsys, tmp_path, args, pairs, line, stage)
    if kind == "identical":
        assert "chosen equal to rejected" in err or "identical" in err, err


# ---------------------------------------------------------------- text files x every reader

TEXTS = {
    "not-utf8": b"be good\n\xff\xfe and kind\n",
    "surrogate-bytes": b"be good \xed\xa0\x80\n",
    "latin-1": "be good, caf\xe9\n".encode("latin-1"),
}
PROMPT_FILE: Path | None = None


def prompt_file_task() -> Task:
    """A task whose prompts are read from ``PROMPT_FILE`` (``--task test_bad_input:prompt_file_task``)."""
    prompts = read_prompts(PROMPT_FILE)
    return Task("from-file", prompts, prompts, lambda p, c: [0.0] * len(c))


@pytest.mark.parametrize("kind", list(TEXTS))
@pytest.mark.parametrize("consumer", ["principles", "template", "guidelines", "task-grpo", "task-queue"])
def test_text_file(consumer, kind, micro_model, tmp_path, capsys, monkeypatch):
    import uvicorn

    bad = write(tmp_path / "in" / "text.txt", TEXTS[kind])
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started despite bad input"))
    monkeypatch.setitem(globals(), "PROMPT_FILE", bad)
    pairs = jsonl(tmp_path / "in" / "pairs.jsonl", GOOD_LINES[:4])
    run = tmp_path / "run"
    if consumer in ("principles", "template"):
        principles = bad if consumer == "principles" else write(tmp_path / "in" / "principles.txt", "good\n")
        args = ["feedback", "ai", "--judge", micro_model, "--principles", principles, "--pairs", pairs]
        args += ["--out", tmp_path / "out.jsonl", "--quiet"] + (["--template", bad] if consumer == "template" else [])
    elif consumer == "guidelines":
        args = ["label", "serve", "--run", run, "--guidelines", bad, "--port", "9"]
    elif consumer == "task-grpo":
        args = ["optimize", "grpo", "--run-dir", run, "--reward", "gold", "--model", micro_model, *GRPO, "--quiet"]
        args += ["--task", "test_bad_input:prompt_file_task"]
    else:
        args = ["label", "queue", "--run", run, "--model", micro_model, "--quiet"]
        args += ["--task", "test_bad_input:prompt_file_task", "--count", "2"]
    err = refused(capsys, tmp_path, args, bad)
    assert "not UTF-8 text" in err, err


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
        args = ["reward", "train", "--model", folder, "--pairs", pairs, "--run-dir", run, "--batch-size", "4"]
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


# ---------------------------------------------------------------- sampler.json and rlhflab_sampling.json x evaluate


def _sampler(**change) -> str:
    return json.dumps({"type": "best_of_n", "base": "embedded", "reward": "gold", "n": 2, **change})


SAMPLERS = {
    "garbage": "{not json",
    "not-utf8": _sampler(reward="@").encode().replace(b"@", b"gold\xff"),
    "surrogate-escape": _sampler(base="@").replace("@", "\\ud800"),
    "nan": _sampler(n="@").replace('"@"', "NaN"),
    "infinity": _sampler(n="@").replace('"@"', "Infinity"),
    "float-overflow": _sampler(n="@").replace('"@"', "1e400"),
    "int-out-of-range": _sampler(n="@").replace('"@"', BIG),
    "int-2**63": _sampler(n=2**63),
    "int-negative": _sampler(n=-1),
    "float-for-int": _sampler(n=2.5),
    "not-an-object": json.dumps(["best_of_n", 2]),
    "unknown-type": _sampler(type={"best_of_n": True}),
    "nested-base": _sampler(base={"path": "embedded"}),
    "nested-reward": _sampler(reward=["gold"]),
}


@pytest.mark.parametrize("kind", list(SAMPLERS))
def test_sampler_json(kind, micro_model, tmp_path, capsys):
    run = tmp_path / "run"
    sampler = write(run / "sampler.json", SAMPLERS[kind])
    args = ["evaluate", "--run-dir", run, "--base", micro_model, *TASK, "--num-prompts", "1", "--max-new-tokens", "2"]
    refused(capsys, tmp_path, [*args, "--quiet"], sampler, stage=(run, "evaluate"))


SAMPLINGS = {
    "garbage": "{",
    "not-utf8": b'{"prefix": "\xff"}',
    "surrogate-escape": '{"prefix": "\\udc80"}',
    "nan": '{"prefix": "", "vocab_size": NaN}',
    "int-out-of-range": '{"prefix": "", "vocab_size": ' + BIG + "}",
    "int-2**63": '{"prefix": "", "vocab_size": 9223372036854775808}',
    "larger-than-the-vocabulary": '{"prefix": "", "vocab_size": 100000}',
    "int-negative": '{"prefix": "", "vocab_size": -5}',
    "not-an-object": '["<good>"]',
    "nested-prefix": '{"prefix": {"token": "<good>"}}',
}


@pytest.mark.parametrize("kind", list(SAMPLINGS))
def test_policy_sampling_json(kind, micro_model, tmp_path, capsys):
    folder = copy_model(micro_model, tmp_path / "policy")
    sampling = write(folder / "rlhflab_sampling.json", SAMPLINGS[kind])
    run = tmp_path / "run"
    args = ["evaluate", "--run-dir", run, "--policy", folder, "--base", micro_model, *TASK, "--num-prompts", "1"]
    refused(capsys, tmp_path, [*args, "--max-new-tokens", "2", "--quiet"], sampling, stage=(run, "evaluate"))


# ---------------------------------------------------------------- a run's evaluation files x report

SUMMARY = {"task": "t", "prompts": 2, "base": {"gold": 0.1, "kl": 0.0}, "policy": {"gold": 0.3, "kl": 0.5}}
SAMPLE = {"prompt": "p", "base": " a", "policy": " b", "gold_base": 0.1, "gold_policy": 0.3, "kl_policy": 0.5}
REPORTS = {  # file, its content, the line named
    "summary-garbage": ("summary.json", "{", 1),
    "summary-not-utf8": ("summary.json", b'{"task": "t\xff"}', 1),
    "summary-surrogate-escape": ("summary.json", json.dumps(SUMMARY).replace('"t"', '"\\ud800"'), None),
    "summary-not-an-object": ("summary.json", json.dumps([SUMMARY]), None),
    "samples-not-utf8": ("samples.jsonl", [json.dumps(SAMPLE), b'{"prompt": "\xff"}', json.dumps(SAMPLE)], 2),
    "samples-nan": ("samples.jsonl", [json.dumps(SAMPLE), json.dumps(SAMPLE).replace("0.3", "NaN")], 2),
    "samples-not-an-object": ("samples.jsonl", [json.dumps(SAMPLE), "[1]", json.dumps(SAMPLE)], 2),
    "samples-nested-text": ("samples.jsonl", [json.dumps(SAMPLE), json.dumps({**SAMPLE, "policy": {"t": "b"}})], 2),
    "metrics-infinity": ("metrics.jsonl", ['{"step": 1}', '{"step": 2, "kl": Infinity}', '{"step": 3}'], 2),
    "diagnostics-not-an-object": ("diagnostics.json", "[]", None),
}


@pytest.mark.parametrize("kind", list(REPORTS))
def test_report_on_bad_run_files(kind, tmp_path, capsys):
    run = tmp_path / "run"
    write(run / "summary.json", json.dumps(SUMMARY))
    jsonl(run / "samples.jsonl", [json.dumps(SAMPLE), json.dumps(SAMPLE)])
    name, content, line = REPORTS[kind]
    bad = jsonl(run / name, content) if isinstance(content, list) else write(run / name, content)
    refused(capsys, tmp_path, ["report", run, "--out", tmp_path / "report.html"], bad, line)


# ---------------------------------------------------------------- the labelling server x bad requests

SECURITY_HEADERS = {
    "content-security-policy": "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@pytest.fixture(scope="module")
def label_server(tmp_path_factory):
    run = tmp_path_factory.mktemp("label") / "run"
    store = LabelStore(run)
    store.add_queries([{"prompt": "p", "a": " good", "b": " bad"}, {"prompt": "q", "a": " x", "b": " y"}])
    token = store.add_labeller("ann")
    server = Server(run)
    yield server, store, token
    server.stop()


BODIES = {
    "nan": b'{"query_id": NaN, "choice": "a"}',
    "infinity": b'{"query_id": Infinity, "choice": "a"}',
    "minus-infinity": b'{"query_id": 1, "choice": "a", "x": -Infinity}',
    "float-overflow": b'{"query_id": 1e400, "choice": "a"}',
    "int-out-of-range": b'{"query_id": ' + BIG.encode() + b', "choice": "a"}',
    "int-2**63": b'{"query_id": 9223372036854775808, "choice": "a"}',
    "int-2**64": b'{"query_id": 18446744073709551616, "choice": "a"}',
    "int-negative": b'{"query_id": -1, "choice": "a"}',
    "float-for-int": b'{"query_id": 1.5, "choice": "a"}',
    "nested-choice-object": b'{"query_id": 1, "choice": {"a": 1}}',
    "nested-choice-list": b'{"query_id": 1, "choice": ["a"]}',
    "nested-id-object": b'{"query_id": {"id": 1}, "choice": "a"}',
    "nested-id-list": b'{"query_id": [1], "choice": "a"}',
    "not-utf8": b'{"query_id": 1, "choice": "\xff"}',
    "not-utf8-key": b'{"\xfe": 1, "choice": "a"}',
    "surrogate-escape": b'{"query_id": 1, "choice": "\\ud800"}',
    "surrogate-escape-key": b'{"query_id": 1, "choice": "a", "\\udc00": 1}',
    "surrogate-bytes": b'{"query_id": 1, "choice": "\xed\xa0\x80"}',
    "not-an-object": b'[1, "a"]',
    "null": b"null",
    "deeply-nested": b"[" * 5000 + b"]" * 5000,
    "truncated": b'{"query_id": 1, "cho',
    "empty": b"",
}


def raw_request(server: Server, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def assert_refused_safely(status: int, headers: dict, raw: bytes) -> None:
    assert 400 <= status < 500, (status, raw[:300])
    for name, value in SECURITY_HEADERS.items():
        assert value in headers.get(name, ""), (name, headers)
    if headers.get("content-type", "").startswith("application/json"):
        json.loads(raw.decode("utf-8"), parse_constant=lambda c: pytest.fail(f"{c} in a response"))


@pytest.mark.parametrize("kind", list(BODIES))
def test_label_server_bad_body(kind, label_server):
    server, store, token = label_server
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert_refused_safely(*raw_request(server, "POST", "/api/answer", BODIES[kind], headers))


REQUESTS = {
    "no-token": ("GET", "/api/next", None, {}),
    "bad-token-bytes": (
        "GET",
        "/api/next",
        None,
        {"Authorization": "Bearer \udcff".encode("utf-8", "surrogateescape")},
    ),
    "unknown-path": ("GET", "/api/nothing", None, {}),
    "wrong-method": ("GET", "/api/answer", None, {}),
    "too-large": ("POST", "/api/answer", b"{" + b" " * 20_000 + b"}", {"Content-Type": "application/json"}),
    "not-json-type": ("POST", "/api/answer", b"query_id=1&choice=a", {"Content-Type": "text/plain"}),
    "cross-site": ("POST", "/api/answer", b"{}", {"Content-Type": "application/json", "Origin": "https://evil.test"}),
    "no-length": ("POST", "/api/answer", None, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}),
}


@pytest.mark.parametrize("kind", list(REQUESTS))
def test_label_server_refusals_carry_security_headers(kind, label_server):
    server, store, token = label_server
    method, path, body, headers = REQUESTS[kind]
    headers = {k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in headers.items()}
    if kind not in ("no-token", "bad-token-bytes"):
        headers["Authorization"] = f"Bearer {token}"
    if kind == "no-length":
        status, got, raw = _chunked(server, path, headers)
    else:
        status, got, raw = raw_request(server, method, path, body, headers)
    assert_refused_safely(status, got, raw)


def _chunked(server: Server, path: str, headers: dict) -> tuple[int, dict, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", path)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(b"2\r\n{}\r\n0\r\n\r\n")
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_label_server_keeps_serving_and_wrote_nothing(label_server):
    server, store, token = label_server
    assert store.answers() == []
    status, body = server.request("GET", "/api/next", token=token)
    assert status == 200 and body["query"] is not None
    status, body = server.request(
        "POST", "/api/answer", {"query_id": body["query"]["query_id"], "choice": "a"}, token=token
    )
    assert status == 200 and len(store.answers()) == 1
    assert temp_files(server.run) == []


def test_label_server_answers_its_own_errors_with_security_headers(tmp_path, monkeypatch):
    """A bug (here: the store failing) is a 500 that still carries the headers, and the error is not swallowed."""
    import asyncio

    from rlhflab.feedback.label.server import create_app

    store = LabelStore(tmp_path / "run")
    token = store.add_labeller("ann")
    app = create_app(tmp_path / "run")

    class Bug(Exception):
        pass

    def broken(self, labeller):
        raise Bug("the store broke")

    monkeypatch.setattr(LabelStore, "next_query", broken)
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/api/next", "raw_path": b"/api/next", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    with pytest.raises(Bug):  # answered, then raised on for the server to log
        asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 500 and json.loads(body) == {"detail": "internal error"}
    for name, value in SECURITY_HEADERS.items():
        assert value in headers.get(name, ""), (name, headers)
