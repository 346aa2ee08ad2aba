"""Bad input files end in a clear error: a fuzz-style grid of (input class x consumer).

Classes: bytes that are not UTF-8 and unpaired surrogates (escaped, or as encoded bytes) in text
and JSON(L) input; non-finite numbers (NaN, Infinity, 1e400) and integers out of range; nested
objects or lists where a string or number is expected; chosen equal to rejected. Consumers: every
reader of a preference-pair JSONL file; every reader of a text file (principles, a judge template,
labelling guidelines, a task's prompts); ``evaluate`` reading a run's ``sampler.json`` and a policy's
``rlhflab_sampling.json``; ``report`` reading a run's evaluation files.

Every case runs the CLI in-process and asserts (``refused``, in ``bad_input_helpers.py``): exit status 2;
stderr is one line ``error: ...`` naming the offending file (and the line, for JSONL) with no traceback;
no file was written or changed, except that a stage that had begun records itself as failed in the run's
manifest; no temporary file (``.NAME.tmpPID``, ``.tmp-*``, ``.NAME.oldPID``) is left anywhere.
Damaged run directories, checkpoints and model folders are tested in ``test_bad_runs_and_models.py``,
bad requests to the labelling server in ``test_bad_label_requests.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_helpers import BIG, GOOD_LINES, GRPO, TASK, copy_model, jsonl, refused, write

from rlhflab.core.task import Task, read_prompts

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
        args = ["reward", "train", "--pairs", pairs, "--run-dir", run, "--model", micro_model, "--pairs-per-step", "4"]
        return [*args, "--epochs", "1", "--quiet"], (run, "reward")
    if consumer == "dpo":
        args = ["optimize", "dpo", "--pairs", pairs, "--run-dir", run, "--model", micro_model, *TASK]
        return [*args, "--pairs-per-step", "4", "--quiet"], (run, "dpo")
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
