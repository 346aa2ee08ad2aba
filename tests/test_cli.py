"""One smoke test per command, and the error paths: one line, non-zero exit, no traceback."""

import json

import pytest
from clirun import rlhflab

from rlhflab.core.comparison import read_pairs
from rlhflab.core.files import read_jsonl

TASK = ["--task", "conftest:planted_task"]


def no_traceback(out):
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def pipeline_run(micro_model, tmp_path_factory):
    """feedback simulate -> reward train -> optimize ppo -> evaluate, each through the command line."""
    run = tmp_path_factory.mktemp("cli") / "run"
    m = ["--model", micro_model]
    outs = {
        "feedback": rlhflab(
            "feedback",
            "simulate",
            "--run-dir",
            run,
            *m,
            *TASK,
            "--pairs",
            "48",
            "--max-new-tokens",
            "8",
            "--rater-temperature",
            "0.05",
            "--quiet",
            check=True,
        ),
        "reward": rlhflab(
            "reward", "train", "--run-dir", run, *m, "--epochs", "1", "--pairs-per-step", "8", "--quiet", check=True
        ),
        "ppo": rlhflab(
            "optimize",
            "ppo",
            "--run-dir",
            run,
            *m,
            *TASK,
            "--steps",
            "2",
            "--prompts-per-step",
            "8",
            "--minibatch-size",
            "4",
            "--max-new-tokens",
            "8",
            "--quiet",
            check=True,
        ),
        "evaluate": rlhflab(
            "evaluate", "--run-dir", run, *TASK, "--num-prompts", "12", "--max-new-tokens", "8", "--quiet", check=True
        ),
    }
    return run, outs


def test_feedback_simulate(pipeline_run):
    run, outs = pipeline_run
    pairs = read_pairs(run / "pairs.jsonl")
    assert 40 <= len(pairs) <= 48 and all(p.source == "simulated:bt" for p in pairs)
    assert f"wrote {len(pairs)} pairs" in outs["feedback"].stdout
    stage = json.loads((run / "manifest.json").read_text())["stages"]["feedback"]
    assert (
        stage["status"] == "done" and stage["config"]["pairs"] == 48 and stage["args"]["rater"]["temperature"] == 0.05
    )
    assert {"command", "git", "packages", "started", "finished"} <= stage.keys()


def test_reward_train(pipeline_run):
    run, outs = pipeline_run
    assert (run / "reward_model" / "rlhflab_reward.json").exists()
    assert "held-out pair accuracy" in outs["reward"].stdout
    stage = json.loads((run / "manifest.json").read_text())["stages"]["reward"]
    assert len(stage["inputs"]["pairs"]["sha256"]) == 64


def test_optimize_ppo(pipeline_run):
    run, outs = pipeline_run
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2]
    assert (run / "policy" / "config.json").exists() and (run / "policy" / "tokenizer.json").exists()
    assert f"wrote {run / 'policy'}" in outs["ppo"].stdout
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(run / "policy")


def test_evaluate(pipeline_run):
    run, outs = pipeline_run
    summary = json.loads((run / "summary.json").read_text())
    for side in ("base", "policy"):
        assert {"gold", "proxy", "kl", "distinct_1", "distinct_2"} <= summary[side].keys()
    assert summary["base"]["kl"] == 0 and summary["policy"]["kl"] >= -1.0
    assert summary["kl_estimator"].startswith("k1")
    rows = read_jsonl(run / "samples.jsonl")
    assert len(rows) == 12 and {"prompt", "base", "policy", "gold_base", "gold_policy"} <= rows[0].keys()
    assert "policy" in outs["evaluate"].stdout and "gold" in outs["evaluate"].stdout


def test_help_lists_every_stage():
    out = rlhflab("--help", check=True).stdout
    for command in ("demo", "feedback", "reward", "optimize", "evaluate"):
        assert command in out
    ppo_help = rlhflab("optimize", "ppo", "--help", check=True).stdout
    assert "--kl-coef" in ppo_help and "beta: the KL penalty per nat" in ppo_help


@pytest.mark.parametrize(
    "content, expected",
    [
        ("", "holds no preference pairs"),
        ('{"prompt": "a", "chosen": "b"}\n', "line 1: field 'rejected': missing"),
        ('{"prompt": "a", "chosen": "b", "rejected": "c"}\nnot json\n', "line 2: not valid JSON"),
        ('{"prompt": "a", "chosen": "b", "rejected": 7}\n', "line 1: field 'rejected': expected a string, got int"),
    ],
)
def test_bad_pairs_file(tmp_path, micro_model, content, expected):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(content)
    out = rlhflab("reward", "train", "--run-dir", tmp_path / "run", "--model", micro_model, "--pairs", pairs)
    assert out.returncode == 2
    line = no_traceback(out)
    assert str(pairs) in line and expected in line
    assert not (tmp_path / "run" / "reward_model").exists()


def test_unknown_model_path(tmp_path):
    out = rlhflab("feedback", "simulate", "--run-dir", tmp_path / "run", "--model", tmp_path / "no" / "such", *TASK)
    assert out.returncode == 2 and "no such directory" in no_traceback(out)


def ppo_with_gold(run_dir, model, *extra):
    return rlhflab("optimize", "ppo", "--run-dir", run_dir, "--model", model, "--reward", "gold", *extra)


def test_config_value_out_of_range(tmp_path, micro_model):
    out = ppo_with_gold(tmp_path, micro_model, *TASK, "--kl-coef", "-1")
    assert out.returncode == 2 and "--kl-coef must be >= 0, got -1.0" in no_traceback(out)


def test_prompts_longer_than_the_context(tmp_path, micro_model):
    out = ppo_with_gold(tmp_path, micro_model, *TASK, "--max-new-tokens", "500")
    assert out.returncode == 2 and "exceeds the model's context of 64 tokens" in no_traceback(out)


def test_empty_prompt_set(tmp_path, micro_model):
    out = ppo_with_gold(tmp_path, micro_model, "--task", "emptytask:empty")
    assert out.returncode == 2 and "has no training prompts" in no_traceback(out)


def test_missing_reward_model(tmp_path, micro_model):
    out = rlhflab("optimize", "ppo", "--run-dir", tmp_path, "--model", micro_model, *TASK)
    assert out.returncode == 2 and "no such reward-model folder" in no_traceback(out)


def test_unknown_task(tmp_path, micro_model):
    out = rlhflab("feedback", "simulate", "--run-dir", tmp_path, "--model", micro_model, "--task", "nope")
    assert (
        out.returncode == 2
        and "--task must be one of ['arithmetic', 'arithmetic-beliefs', 'arithmetic-chat', 'arithmetic-chat-1',"
        in no_traceback(out)
    )


def test_debug_shows_the_traceback(tmp_path):
    out = rlhflab("--debug", "feedback", "simulate", "--run-dir", tmp_path, "--model", tmp_path / "no" / "such")
    assert out.returncode != 0 and "Traceback" in out.stderr
