"""The training loops run as several processes (torchrun, gloo on CPU) and agree with one process.

Reward-model training with 2 processes x 4 pairs must match 1 process x 8 pairs (the same
global batch, so the same gradient up to float summation order): the logged global loss
within 1e-4 at every step, and the trained model's normalised rewards within 1e-3.
"""

import json
import subprocess
import sys

import torch
from clirun import env, rlhflab
from test_reward_model import planted_pairs

from rlhflab.feedback.pairs import write_pairs
from rlhflab.files import read_jsonl
from rlhflab.reward.model import RewardModel


def torchrun(*args, nproc=2):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "rlhflab",
        *map(str, args),
    ]
    e = env()
    e["OMP_NUM_THREADS"] = "1"
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=600)


def test_two_process_reward_training_matches_one_process(micro_model, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, planted_pairs(96))
    args = [
        "reward",
        "train",
        "--model",
        micro_model,
        "--pairs",
        pairs,
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--quiet",
    ]
    rlhflab(*args, "--run-dir", tmp_path / "one", check=True)
    two = torchrun(*args, "--run-dir", tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("wrote") == 1  # only the main process speaks

    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["stages"]["reward"]["results"]["processes"] == 2
    a, b = read_jsonl(tmp_path / "one" / "reward_metrics.jsonl"), read_jsonl(tmp_path / "two" / "reward_metrics.jsonl")
    assert len(a) == len(b) == 20  # 86 training pairs // 8 = 10 steps, 2 epochs
    assert max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)) < 1e-4

    probe = planted_pairs(50, seed=5)
    prompts, texts = [p.prompt for p in probe] * 2, [p.chosen for p in probe] + [p.rejected for p in probe]
    r1 = RewardModel.load(tmp_path / "one" / "reward_model")(prompts, texts)
    r2 = RewardModel.load(tmp_path / "two" / "reward_model")(prompts, texts)
    assert torch.allclose(r1, r2, atol=1e-3)


def test_two_process_ppo_runs_and_writes_one_policy(micro_model, tmp_path):
    out = torchrun(
        "optimize",
        "ppo",
        "--run-dir",
        tmp_path / "run",
        "--model",
        micro_model,
        "--reward",
        "gold",
        "--task",
        "conftest:planted_task",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--minibatch-size",
        "4",
        "--max-new-tokens",
        "6",
        "--value-init",
        "policy",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["episodes"] == 8
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["ppo"]["results"]["processes"] == 2
    assert (tmp_path / "run" / "policy" / "model.safetensors").exists()
