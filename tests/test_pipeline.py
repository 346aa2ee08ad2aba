"""The pipeline's own promises, each a defect a review found: errors name the file the user gave,
the manifest records only inputs a stage used, diagnose works on a sampler, checkpoints are
loaded without unpickling code, and every consumer refuses pairs that carry no preference."""

import json
import pickle

import pytest
from conftest import run_method
from test_reward_model import planted_pairs

from rlhflab.core.comparison import PreferencePair, write_pairs
from rlhflab.core.config import build
from rlhflab.core.errors import DataError, RlhflabError
from rlhflab.evaluation.diagnose import DiagnoseConfig
from rlhflab.evaluation.evaluate import EvalConfig
from rlhflab.methods.best_of_n import BestOfNConfig
from rlhflab.methods.dpo import DPOConfig
from rlhflab.methods.grpo import GRPOConfig
from rlhflab.pipeline import stages
from rlhflab.pipeline.setup import Setup
from rlhflab.reward.train import RewardTrainConfig
from rlhflab.run.rundir import RunDir

SMALL = dict(steps=2, prompts_per_step=4, samples_per_prompt=2, minibatch_size=8, max_new_tokens=6)


def test_errors_name_the_pairs_file_the_user_gave(micro_model, tmp_path):
    pairs = planted_pairs(40)
    pairs[3] = PreferencePair(pairs[3].prompt, " same", " same")
    elsewhere = tmp_path / "elsewhere" / "my_pairs.jsonl"
    write_pairs(elsewhere, pairs)
    run = tmp_path / "run"
    with pytest.raises(DataError, match=f"^{elsewhere}: 1 pairs have chosen equal to rejected"):
        run_method("dpo", micro_model, run, build(DPOConfig, pairs_per_step=8), reward=None, pairs=elsewhere)
    with pytest.raises(DataError, match=f"^{elsewhere}: 1 pairs have chosen equal to rejected"):
        stages.reward_train(RunDir(run), str(micro_model), elsewhere, build(RewardTrainConfig, pairs_per_step=8))
    assert not (run / "pairs.jsonl").exists() and not (run / "policy").exists()
    assert not (run / "reward_model").exists()


def test_the_manifest_records_only_the_inputs_a_stage_used(micro_model, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, planted_pairs(32))
    run = tmp_path / "run"
    run_method("dpo", micro_model, run, build(DPOConfig, pairs_per_step=8, epochs=1), reward=None, pairs=pairs)
    run_method("grpo", micro_model, run, build(GRPOConfig, **SMALL), reward="gold")
    stages_ = json.loads((run / "manifest.json").read_text())["stages"]
    assert "reward" not in stages_["dpo"]["args"] and stages_["dpo"]["args"]["pairs"] == str(pairs)
    assert set(stages_["dpo"]["inputs"]) == {"pairs"}
    assert "pairs" not in stages_["grpo"]["args"] and stages_["grpo"]["args"]["reward"] == "gold"
    assert stages_["grpo"]["inputs"] == {}
    # composed configs are recorded nested, every constant included
    grpo = stages_["grpo"]["config"]
    assert grpo["optimizer"] == {"lr": 1e-4, "adam_eps": 1e-5, "max_grad_norm": 1.0, "weight_decay": 0.0}
    assert grpo["sampling"]["max_new_tokens"] == 6 and grpo["loss_aggregation"] == "token"


def test_diagnose_works_on_a_best_of_n_run(micro_model, tmp_path):
    run = RunDir(tmp_path / "bon")
    run_method("best-of-n", micro_model, run.path, BestOfNConfig(n=2))
    assert run.output() == run.path
    setup = Setup.resolve(run, str(micro_model), "conftest:planted_task")
    stages.evaluate_run(run, str(run.output()), setup, "gold", build(EvalConfig, num_prompts=4, max_new_tokens=6),
                        progress=False, show=False)  # fmt: skip
    out = stages.diagnose_run(run, str(run.output()), setup,
                              build(DiagnoseConfig, heldout_sentences=8, remisalign_steps=2), progress=False)  # fmt: skip
    assert "sampler" in out["calibration"]["skipped"] and "sampler" in out["remisalignment"]["skipped"]
    assert json.loads((run / "manifest.json").read_text())["stages"]["diagnose"]["status"] == "done"


class Boom:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_resume_refuses_a_checkpoint_that_would_run_code(micro_model, tmp_path, monkeypatch):
    """A run directory received from someone else: its checkpoint state is a pickle that runs code."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    config = build(GRPOConfig, **{**SMALL, "steps": 3}, checkpoint_every=1)
    run_method("grpo", micro_model, run, config)
    latest = run / "checkpoints" / "grpo" / (run / "checkpoints" / "grpo" / "latest").read_text().strip()
    assert latest.is_dir()
    (latest / "state-0.pt").write_bytes(pickle.dumps({"step": 1, "payload": Boom()}, protocol=2))
    with pytest.raises(RlhflabError, match="not a readable rlhflab checkpoint file"):
        stages.resume_method(run, "grpo", progress=False)
    assert not (tmp_path / "PWNED").exists()


def test_resume_of_a_missing_run_directory_says_so(tmp_path):
    with pytest.raises(RlhflabError, match="no such run directory"):
        stages.resume_method(tmp_path / "nothing", "grpo")


def test_unknown_method_and_missing_inputs(micro_model, tmp_path):
    with pytest.raises(RlhflabError, match="unknown method 'bogus'"):
        run_method("bogus", micro_model, tmp_path / "x", None)
    with pytest.raises(RlhflabError, match="learns from preference pairs"):
        run_method("dpo", micro_model, tmp_path / "x", DPOConfig(), reward=None, pairs=None)
