"""A run killed midway (SIGKILL) and resumed ends with the same metrics as an uninterrupted one.

On CPU with a fixed seed the two are equal exactly: the checkpoint holds the model and
optimiser (through accelerate), the generator, the KL controller and the data position.
"""

import json
import time

from clirun import rlhflab, start
from test_reward_model import planted_pairs

from rlhflab.feedback.pairs import write_pairs
from rlhflab.files import read_jsonl


def kill_after_checkpoint(proc, latest, timeout=300):
    deadline = time.time() + timeout
    while not latest.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before its first checkpoint:\n{proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.wait()


PPO_ARGS = [
    "--reward",
    "gold",
    "--task",
    "conftest:planted_task",
    "--steps",
    "10",
    "--batch-size",
    "8",
    "--minibatch-size",
    "4",
    "--ppo-epochs",
    "2",
    "--max-new-tokens",
    "8",
    "--lr",
    "1e-3",
    "--checkpoint-every",
    "3",
    "--value-init",
    "policy",
    "--quiet",
]


def test_ppo_resume_after_kill_matches_uninterrupted_run(micro_model, tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    rlhflab("optimize", "ppo", "--run-dir", whole, "--model", micro_model, *PPO_ARGS, check=True)

    proc = start("optimize", "ppo", "--run-dir", broken, "--model", micro_model, *PPO_ARGS)
    kill_after_checkpoint(proc, broken / "checkpoints" / "ppo" / "latest")
    assert not (broken / "policy").exists(), "killed too late to test anything"
    manifest = json.loads((broken / "manifest.json").read_text())
    assert manifest["stages"]["ppo"]["status"] == "running"  # a SIGKILL leaves no chance to say otherwise

    out = rlhflab("optimize", "ppo", "--resume", broken, "--quiet", check=True)
    assert "wrote" in out.stdout and "policy" in out.stdout
    drop = ("time/rollout", "time/update")
    a = [{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(whole / "metrics.jsonl")]
    b = [{k: v for k, v in r.items() if k not in drop} for r in read_jsonl(broken / "metrics.jsonl")]
    assert len(b) == 10
    assert a == b
    assert read_jsonl(whole / "train_samples.jsonl") == read_jsonl(broken / "train_samples.jsonl")
    assert (whole / "policy" / "model.safetensors").read_bytes() == (
        broken / "policy" / "model.safetensors"
    ).read_bytes()
    assert json.loads((broken / "manifest.json").read_text())["stages"]["ppo"]["status"] == "done"


def test_reward_resume_after_kill_matches_uninterrupted_run(micro_model, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, planted_pairs(160))
    args = [
        "--model",
        micro_model,
        "--pairs",
        pairs,
        "--epochs",
        "4",
        "--batch-size",
        "4",
        "--checkpoint-every",
        "10",
        "--eval-every",
        "10",
        "--ensemble",
        "2",
        "--quiet",
    ]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    rlhflab("reward", "train", "--run-dir", whole, *args, check=True)
    proc = start("reward", "train", "--run-dir", broken, *args)
    kill_after_checkpoint(proc, broken / "checkpoints" / "reward" / "latest")
    assert not (broken / "reward_model").exists(), "killed too late to test anything"
    rlhflab("reward", "train", "--resume", broken, "--quiet", check=True)
    assert read_jsonl(whole / "reward_metrics.jsonl") == read_jsonl(broken / "reward_metrics.jsonl")
    for member in ("member-0", "member-1"):
        a = (whole / "reward_model" / member / "model.safetensors").read_bytes()
        assert a == (broken / "reward_model" / member / "model.safetensors").read_bytes()


def test_resume_without_checkpoint_says_so(tmp_path):
    out = rlhflab("optimize", "ppo", "--resume", tmp_path / "nothing")
    assert out.returncode == 2 and "nothing: no such run directory" in out.stderr
    assert "Traceback" not in out.stderr
    (tmp_path / "empty").mkdir()
    out = rlhflab("optimize", "ppo", "--resume", tmp_path / "empty")
    assert out.returncode == 2 and "no 'ppo' stage in manifest.json" in out.stderr
    assert "Traceback" not in out.stderr


def test_ctrl_c_leaves_a_valid_run_that_resumes(micro_model, tmp_path):
    import signal

    run = tmp_path / "run"
    proc = start("optimize", "ppo", "--run-dir", run, "--model", micro_model, *PPO_ARGS)
    latest = run / "checkpoints" / "ppo" / "latest"
    deadline = time.time() + 300
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["ppo"]["status"] == "interrupted"
    rows = read_jsonl(run / "metrics.jsonl")  # whole lines only
    assert 3 <= len(rows) < 10 and not (run / "policy").exists()
    rlhflab("optimize", "ppo", "--resume", run, "--quiet", check=True)
    assert len(read_jsonl(run / "metrics.jsonl")) == 10 and (run / "policy").exists()
