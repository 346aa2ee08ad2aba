"""``rlhflab demo --quick`` chains every stage and leaves a complete run directory."""

import json

from clirun import rlhflab


def check_run(run, out):
    assert out.returncode == 0, out.stderr[-3000:]
    for name in (
        "manifest.json",
        "pairs.jsonl",
        "reward_model",
        "reward_metrics.jsonl",
        "policy",
        "metrics.jsonl",
        "samples.jsonl",
        "summary.json",
    ):
        assert (run / name).exists(), name
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert [stages[s]["status"] for s in ("feedback", "reward", "ppo", "evaluate")] == ["done"] * 4
    assert f"run directory: {run}" in out.stdout
    assert "[6/6] report" in out.stdout and (run / "report.html").exists() and "policy" in out.stdout


def test_quick_demo_on_a_micro_model(micro_model, tmp_path):
    run = tmp_path / "demo"
    out = rlhflab(
        "demo", "--quick", "--model", micro_model, "--task", "conftest:planted_task", "--run-dir", run, "--quiet"
    )
    check_run(run, out)


def test_quick_demo_on_the_embedded_model(tmp_path):
    run = tmp_path / "demo"
    out = rlhflab("demo", "--quick", "--run-dir", run, "--quiet")
    check_run(run, out)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "sentiment" and -1 <= summary["base"]["gold"] <= 1
