"""The training loops run as several processes (torchrun, gloo on CPU) and agree with one process.

Reward-model training and DPO with 2 processes x 4 pairs must match 1 process x 8 pairs (the
same global batch, so the same gradient up to float summation order): the logged global loss
(and DPO's accuracy) within 1e-4 at every step, and the trained models within a small tolerance.
The RL methods sample per process with different seeds, so there the check is that every
logged metric is a global one (gathered from all processes), never one process's shard.
"""

import json
import os
import subprocess
import sys

import torch
from clirun import env, rlhflab
from conftest import good_minus_bad
from test_reward_model import planted_pairs

from rlhflab.core import metric_names as names
from rlhflab.core.comparison import write_pairs
from rlhflab.core.files import append_jsonl, read_jsonl
from rlhflab.reward.model import RewardModel

REWARD_LOG = "RLHFLAB_TEST_REWARD_LOG"


def logged_gold(prompts, completions):
    """The planted gold reward, as a rule (``--reward test_distributed:logged_gold``) that also appends
    what it scored to ``$RLHFLAB_TEST_REWARD_LOG/rank-<RANK>.jsonl``: one row per call, so per step."""
    scores = good_minus_bad(prompts, completions)
    row = {"prompts": list(prompts), "completions": list(completions), "scores": scores}
    append_jsonl(os.path.join(os.environ[REWARD_LOG], f"rank-{os.environ.get('RANK', '0')}.jsonl"), row)
    return scores


def torchrun(*args, nproc=2, extra_env=None):
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
    e.update(extra_env or {})
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
        "--pairs-per-step",
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
        "--prompts-per-step",
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


def policy_logits(folder, texts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**enc).logits


def test_two_process_dpo_matches_one_process(micro_model, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, planted_pairs(32))
    args = ["optimize", "dpo", "--model", micro_model, "--pairs", pairs]
    args += "--epochs 2 --pairs-per-step 8 --lr 1e-3 --beta 0.5 --quiet".split()
    rlhflab(*args, "--run-dir", tmp_path / "one", check=True)
    two = torchrun(*args, "--run-dir", tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("wrote") == 1  # only the main process speaks

    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["stages"]["dpo"]["results"]["processes"] == 2
    a, b = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))  # 32 pairs // 8 = 4 steps, 2 epochs
    # (at step 1 the policy is the reference: both runs log the same accuracy of float-noise margins)
    for key in (names.LOSS, "dpo/accuracy", "dpo/margin"):
        assert max(abs(x[key] - y[key]) for x, y in zip(a, b)) < 1e-4, key
    assert len({r[names.LOSS] for r in a}) == 8  # the loss moves: the comparison could fail

    probe = planted_pairs(20, seed=5)
    texts = [p.prompt + p.chosen for p in probe] + [p.prompt + p.rejected for p in probe]
    base, one = policy_logits(micro_model, texts), policy_logits(tmp_path / "one" / "policy", texts)
    two = policy_logits(tmp_path / "two" / "policy", texts)
    assert (one - base).abs().max() > 0.05  # training moved the logits far more than the tolerance below
    assert torch.allclose(one, two, atol=1e-3), float((one - two).abs().max())


def test_two_process_grpo_logs_global_metrics(micro_model, tmp_path):
    """Each process samples its own prompts with its own seed, so two processes cannot repeat one;
    what must hold is that every logged metric is gathered from both. The reward is the gold scorer
    wrapped in a rule that logs, per process and step, what it scored; so the test knows every score of
    every step on both processes, and ``objective/score`` (the reward) and ``objective/gold`` (the gold
    scorer, computed apart) must equal the mean over both processes' samples. A metric computed on
    one process's shard would equal that shard's mean instead: the test also checks that the shard
    means differ from the global ones at some step, so it would notice."""
    steps, prompts, k = 4, 4, 2
    logs = tmp_path / "reward_log"
    logs.mkdir()
    out = torchrun(
        "optimize", "grpo", "--run-dir", tmp_path / "run", "--model", micro_model,
        "--reward", "test_distributed:logged_gold", "--task", "conftest:planted_task",
        *f"--steps {steps} --prompts-per-step {prompts} --samples-per-prompt {k} --minibatch-size 4".split(),
        *"--max-new-tokens 8 --temperature 1.0 --lr 1e-3 --quiet".split(),
        extra_env={REWARD_LOG: str(logs)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("wrote") == 1  # only the main process speaks
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["grpo"]["results"]["processes"] == 2
    assert (tmp_path / "run" / "policy" / "model.safetensors").exists()

    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert [r[names.EPISODES] for r in rows] == [s * prompts * k for s in range(1, steps + 1)]
    calls = [read_jsonl(logs / f"rank-{rank}.jsonl") for rank in (0, 1)]
    assert [len(c) for c in calls] == [steps, steps]  # one reward call per process and step
    shard_differs = False
    for step, row in enumerate(rows):
        shards = [c[step]["scores"] for c in calls]
        assert [len(s) for s in shards] == [prompts // 2 * k] * 2  # each process scored half the samples
        assert calls[0][step]["prompts"] != calls[1][step]["prompts"]  # ... of different prompts
        everything = torch.tensor(shards[0] + shards[1]).mean().item()
        assert abs(row[names.SCORE] - everything) < 1e-6, (step, row[names.SCORE], shards)
        assert abs(row[names.GOLD] - everything) < 1e-6, (step, row[names.GOLD], shards)
        shard_differs |= all(abs(torch.tensor(s).mean().item() - everything) > 1e-3 for s in shards)
    assert shard_differs, "every step's shards had the global mean: the test could not tell them apart"
