"""A run killed midway (SIGKILL) and resumed ends with the same metrics as an uninterrupted one.

On CPU with a fixed seed the two are equal exactly: the checkpoint holds the model and
optimiser (through accelerate), the generator, the KL controller and the data position.
"""

import json
import time
from dataclasses import dataclass

import pytest
import torch
from clirun import rlhflab, start
from test_reward_model import planted_pairs

from rlhflab.core.comparison import write_pairs
from rlhflab.core.files import read_jsonl
from rlhflab.core.metric_names import TIMES


def kill_after_checkpoint(proc, latest, timeout=300, ready=None):
    """SIGKILL ``proc`` as soon as ``latest`` names a checkpoint (one whose folder passes ``ready``, if given)."""
    deadline = time.time() + timeout
    while not (latest.exists() and (ready is None or ready(latest.parent / latest.read_text().strip()))):
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the checkpoint to kill at:\n{proc.stderr.read()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.wait()


def reward_checkpoint(member: int, step: int):
    """A ``ready`` test: the checkpoint was taken after ``step`` steps of reward-model member ``member``."""

    def ready(checkpoint):
        try:
            state = torch.load(checkpoint / "state-0.pt", weights_only=True)
        except (OSError, RuntimeError, EOFError):  # not there (yet, or any more)
            return False
        return (state["member"], state["step"]) == (member, step)

    return ready


RL = "--reward gold --task conftest:planted_task --quiet".split()
PPO_ARGS = [
    *RL,
    *"--steps 20 --prompts-per-step 8 --minibatch-size 4 --epochs 2 --max-new-tokens 8 --lr 1e-3".split(),
    *"--checkpoint-every 3 --value-init policy".split(),
]
CRITIC_FREE_ARGS = [
    *RL,
    *"--steps 16 --checkpoint-every 2 --prompts-per-step 4 --samples-per-prompt 2 --minibatch-size 4".split(),
    *"--max-new-tokens 8 --lr 1e-3".split(),
]


ENSEMBLE_ARGS = "--epochs 2 --pairs-per-step 4 --checkpoint-every 10 --eval-every 10 --ensemble 2 --quiet".split()


@dataclass(frozen=True)
class Case:
    """One trainable method: its command, arguments, and where its outputs go."""

    command: tuple[str, str]
    stage: str  # the manifest stage and checkpoints/<stage>
    args: tuple[str, ...]  # "{pairs}" stands for a file of planted preference pairs
    rows: int  # metric rows of a whole run
    pairs: int = 0  # how many planted pairs "{pairs}" holds
    metrics: str = "metrics.jsonl"
    samples: bool = True  # writes train_samples.jsonl
    output: str = "policy"
    weights: tuple[str, ...] = ("policy/model.safetensors",)
    kill_at: tuple[int, int] | None = None  # reward models: kill at (member, step) (default: the first checkpoint)


# The runs are long enough (about a second after the first checkpoint on an idle machine) for the
# kill to land mid-run; each is a few seconds, most of it starting Python, torch and transformers.
CASES = {
    "ppo": Case(("optimize", "ppo"), "ppo", tuple(PPO_ARGS), rows=20),
    "rloo": Case(("optimize", "rloo"), "rloo", tuple(CRITIC_FREE_ARGS), rows=16),
    "grpo": Case(("optimize", "grpo"), "grpo", tuple(CRITIC_FREE_ARGS), rows=16),
    # 128 pairs / 4 per step = 32 steps a pass, 3 passes
    "dpo": Case(
        ("optimize", "dpo"),
        "dpo",
        (
            "--pairs",
            "{pairs}",
            *"--ties drop --epochs 3 --pairs-per-step 4 --lr 1e-3 --checkpoint-every 2 --quiet".split(),
        ),
        rows=96,
        pairs=128,
        samples=False,
    ),
    # checkpoint_every counts rounds (default 1): the kill lands after round 1 of 3
    "ranked-sft": Case(
        ("optimize", "ranked-sft"),
        "ranked-sft",
        (
            *RL,
            *"--rounds 3 --prompts-per-round 16 --samples-per-prompt 4 --keep-fraction 0.5 --texts-per-step 4".split(),
            *"--epochs 4 --max-new-tokens 8 --lr 1e-3".split(),
        ),
        rows=3,
    ),
    # the checkpoint (step 0) holds the 64 tagged texts; the fine-tuning (64 / 4 = 16 steps x 6) restarts
    "conditional": Case(
        ("optimize", "conditional"),
        "conditional",
        (
            *RL,
            *"--num-prompts 32 --samples-per-prompt 2 --texts-per-step 4 --epochs 6 --max-new-tokens 8 --lr 1e-3".split(),
        ),
        rows=96,
    ),
    # 160 pairs - 16 held out = 144 / 4 = 36 steps a pass
    "reward": Case(
        ("reward", "train"),
        "reward",
        ("--pairs", "{pairs}", *"--epochs 3 --pairs-per-step 4 --checkpoint-every 6 --eval-every 6 --quiet".split()),
        rows=108,
        pairs=160,
        metrics="reward_metrics.jsonl",
        samples=False,
        output="reward_model",
        weights=("reward_model/model.safetensors",),
    ),
    # killed while the first member trains: the checkpoint holds it; the second starts after the resume
    "reward-ensemble": Case(
        ("reward", "train"),
        "reward",
        ("--pairs", "{pairs}", *ENSEMBLE_ARGS),
        rows=2 * 72,
        pairs=160,
        metrics="reward_metrics.jsonl",
        samples=False,
        output="reward_model",
        weights=("reward_model/member-0/model.safetensors", "reward_model/member-1/model.safetensors"),
    ),
    # killed at the first checkpoint of the second member: it holds the finished first member and the second
    "reward-ensemble-member-1": Case(
        ("reward", "train"),
        "reward",
        ("--pairs", "{pairs}", *ENSEMBLE_ARGS),
        rows=2 * 72,
        pairs=160,
        metrics="reward_metrics.jsonl",
        samples=False,
        output="reward_model",
        weights=("reward_model/member-0/model.safetensors", "reward_model/member-1/model.safetensors"),
        kill_at=(1, 10),
    ),
}


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMES} for r in rows]


@pytest.mark.parametrize("name", list(CASES))
def test_resume_after_kill_matches_uninterrupted_run(name, micro_model, tmp_path):
    case = CASES[name]
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, planted_pairs(case.pairs))
    args = [*case.command, "--model", micro_model, *(str(pairs) if a == "{pairs}" else a for a in case.args)]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    rlhflab(*args, "--run-dir", whole, check=True)

    proc = start(*args, "--run-dir", broken)
    ready = reward_checkpoint(*case.kill_at) if case.kill_at is not None else None
    kill_after_checkpoint(proc, broken / "checkpoints" / case.stage / "latest", ready=ready)
    assert not (broken / case.output).exists(), "killed too late to test anything"
    manifest = json.loads((broken / "manifest.json").read_text())
    assert manifest["stages"][case.stage]["status"] == "running"  # a SIGKILL leaves no chance to say otherwise

    out = rlhflab(*case.command, "--resume", broken, "--quiet", check=True)
    assert "wrote" in out.stdout and case.output in out.stdout
    a, b = read_jsonl(whole / case.metrics), read_jsonl(broken / case.metrics)
    assert len(a) == case.rows
    assert without_times(a) == without_times(b)
    if case.samples:
        assert read_jsonl(whole / "train_samples.jsonl")
        assert read_jsonl(whole / "train_samples.jsonl") == read_jsonl(broken / "train_samples.jsonl")
    else:
        assert not (broken / "train_samples.jsonl").exists()
    for weights in case.weights:
        assert (whole / weights).read_bytes() == (broken / weights).read_bytes(), weights
    assert json.loads((broken / "manifest.json").read_text())["stages"][case.stage]["status"] == "done"


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
    assert 3 <= len(rows) < 20 and not (run / "policy").exists()
    rlhflab("optimize", "ppo", "--resume", run, "--quiet", check=True)
    assert len(read_jsonl(run / "metrics.jsonl")) == 20 and (run / "policy").exists()
