"""The model options every command shares (issue 11): what a run remembers of them between stages."""

import json

import pytest
from clirun import rlhflab
from conftest import without_pad_token

from rlhflab.core.config import build
from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
from rlhflab.pipeline import stages
from rlhflab.pipeline.setup import Setup
from rlhflab.reward.train import RewardTrainConfig
from rlhflab.run.rundir import RunDir

TASK = "conftest:planted_task"


def test_pad_token_is_remembered_by_later_stages(micro_model, tmp_path):
    model = str(without_pad_token(micro_model, tmp_path / "nopad"))
    run = RunDir(tmp_path / "run")
    feedback = build(SimulateConfig, pairs=8, max_new_tokens=4, batch_size=8)
    setup = Setup.resolve(run, model, TASK, pad_token="<|endoftext|>")
    stages.feedback_simulate(run, setup, feedback, SimulatedRater(), progress=False)
    reward = build(RewardTrainConfig, backbone="model", epochs=1, pairs_per_step=4, checkpoint_every=1000)
    stages.reward_train(run, model, run / RunDir.PAIRS, reward, progress=False)  # no pad token given
    recorded = json.loads(run.manifest_path.read_text())["stages"]["reward"]["args"]
    assert recorded["pad_token"] == "<|endoftext|>"

    fresh = RunDir(tmp_path / "fresh")  # a run that was never told: the usual one-line error
    out = rlhflab("reward", "train", "--run-dir", fresh.path, "--model", model, "--pairs", run / RunDir.PAIRS,
                  "--backbone", "model", "--epochs", "1", "--quiet")  # fmt: skip
    assert out.returncode == 2 and "has no pad token; pass --pad-token" in out.stderr


def test_a_given_pad_token_wins_over_the_remembered_one(tmp_path):
    run = RunDir(tmp_path / "run")
    run.begin_stage("feedback", {}, args={"model": "m", "pad_token": "<z>"})
    run.end_stage("feedback", "done")
    run.begin_stage("reward", {}, args={"model": "m", "pad_token": "<b>"})
    assert run.pad_token(None) == "<b>"  # the latest started
    assert run.pad_token("<c>") == "<c>"
    assert RunDir(tmp_path / "empty").pad_token(None) is None


NOGOLD = "emptytask:nogold"
RULE = "conftest:good_minus_bad"


def test_a_task_without_gold(micro_model, tmp_path, capsys):
    """Optimise against a rule, evaluate, diagnose and report: proxy, KL and diversity, gold said unknown;
    what needs gold says so in one line."""

    from rlhflab.core.errors import RlhflabError
    from rlhflab.evaluation.diagnose import DiagnoseConfig
    from rlhflab.evaluation.evaluate import EvalConfig
    from rlhflab.methods.ppo import PPOConfig
    from rlhflab.report import write_report

    run = RunDir(tmp_path / "run")
    model = str(micro_model)
    ppo = build(PPOConfig, steps=2, prompts_per_step=8, minibatch_size=4, epochs=1, max_new_tokens=6)
    stages.optimize(run, "ppo", Setup.resolve(run, model, NOGOLD), ppo, reward=RULE, progress=False)
    rows = [json.loads(line) for line in (run / RunDir.METRICS).read_text().splitlines()]
    assert rows and all("objective/gold" not in r for r in rows) and all("objective/kl" in r for r in rows)

    evaluate = build(EvalConfig, num_prompts=8, max_new_tokens=6)
    setup = Setup.resolve(run, model, NOGOLD)
    summary = stages.evaluate_run(run, str(run / RunDir.POLICY), setup, RULE, evaluate, progress=False)
    assert "gold unknown: task 'nogold' has no gold reward" in capsys.readouterr().out
    assert summary["gold_known"] is False and summary["gold_gain"] is None
    for side in ("base", "policy"):
        assert summary[side]["gold"] is None and summary[side]["proxy_gold_spearman"] is None
        assert summary[side]["proxy"] is not None and summary[side]["distinct_2"] is not None
    assert summary["policy"]["kl"] is not None
    samples = [json.loads(line) for line in (run / RunDir.SAMPLES).read_text().splitlines()]
    assert len(samples) == 8 and all(s["gold_base"] is None and s["proxy_policy"] is not None for s in samples)

    diagnose = build(DiagnoseConfig, heldout_sentences=8, remisalign_steps=2, max_new_tokens=6)
    out = stages.diagnose_run(run, str(run / RunDir.POLICY), setup, diagnose, progress=False)
    assert "no gold reward" in out["remisalignment"]["skipped"]
    page = write_report([run], run / RunDir.REPORT).read_text()
    assert "unknown (the task has no gold reward)" in page

    with pytest.raises(RlhflabError, match="task 'nogold' has no gold reward, and --reward gold needs one"):
        r2 = RunDir(tmp_path / "r2")
        stages.optimize(r2, "ppo", Setup.resolve(r2, model, NOGOLD), ppo, reward="gold", progress=False)
    out = rlhflab("feedback", "simulate", "--run-dir", tmp_path / "r3", "--model", model, "--task", NOGOLD)
    assert out.returncode == 2
    assert "error: task 'nogold' has no gold reward, and the simulated rater" in out.stderr


# ---------------------------------------------------------------- --prompts FILE


def test_prompt_files(tmp_path):

    from rlhflab.core.errors import ConfigError, DataError
    from rlhflab.tasks import load_task, read_prompt_file

    text = tmp_path / "p.txt"
    text.write_text("The film was\n\n  \nMy favourite dish\n")
    assert read_prompt_file(text) == ["The film was", "My favourite dish"]
    lines = tmp_path / "p.jsonl"
    lines.write_text(
        '{"prompt": "The film was"}\n\n'
        '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]}\n'
    )
    assert read_prompt_file(lines) == ["The film was", "\n\nSystem: Be brief.\n\nHuman: Hi?\n\nAssistant:"]

    for body, line, message in [
        ('{"prompt": "a"}\n["a"]\n', 2, "expected an object with 'prompt' or 'messages', got list"),
        ('{"prompt": "a"}\n{"text": "b"}\n', 2, "has neither 'prompt' nor 'messages'"),
        ('{"prompt": ""}\n', 1, "field 'prompt': must be a non-empty string"),
        ('{"messages": [{"role": "robot", "content": "x"}]}\n', 1, "role 'robot' is not one of"),
        ('{"prompt": "a"}\n{"prompt": \n', 2, "."),  # JSON that does not parse: its line
    ]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(body)
        with pytest.raises(DataError, match=message) as e:
            read_prompt_file(bad)
        assert e.value.line == line and e.value.path == str(bad)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="the prompt file is empty"):
        read_prompt_file(tmp_path / "empty.txt")

    with pytest.raises(ConfigError, match="--task none .* pass --prompts FILE"):
        load_task("none")
    mine = load_task("none", lines)
    assert mine.gold is None and mine.train_prompts == mine.eval_prompts == read_prompt_file(lines)
    planted = load_task("conftest:planted_task", text)
    assert planted.gold is not None and planted.train_prompts == ["The film was", "My favourite dish"]


def test_imported_prompts_are_the_runs_default(micro_model, tmp_path):
    """feedback import --run-dir writes the pairs' prompts; PPO and evaluate then sample them, and --prompts
    overrides them; the manifest records the file and its sha256."""
    from rlhflab.core.files import read_jsonl
    from rlhflab.evaluation.evaluate import EvalConfig
    from rlhflab.methods.ppo import PPOConfig

    src = tmp_path / "trl.jsonl"
    rows = [{"prompt": f"p{i} the", "chosen": " good day", "rejected": " bad day"} for i in range(6)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:2]))  # repeated prompts are kept once
    run = RunDir(tmp_path / "run")
    out = rlhflab("feedback", "import", src, "--run-dir", run.path, check=True)
    assert "wrote their 6 prompts" in out.stdout
    assert [r["prompt"] for r in read_jsonl(run / RunDir.PROMPTS)] == [r["prompt"] for r in rows]

    model = str(micro_model)
    ppo = build(PPOConfig, steps=2, prompts_per_step=6, minibatch_size=3, epochs=1, max_new_tokens=4, sample_every=1)
    stages.optimize(run, "ppo", Setup.resolve(run, model, NOGOLD), ppo, reward=RULE, progress=False)
    sampled = {r["prompt"] for r in read_jsonl(run / RunDir.TRAIN_SAMPLES)}
    assert sampled and sampled <= {r["prompt"] for r in rows}
    record = json.loads(run.manifest_path.read_text())["stages"]["ppo"]
    assert record["args"]["prompts"] == str(run / RunDir.PROMPTS) and "prompts" in record["inputs"]

    held_out = tmp_path / "heldout.txt"
    held_out.write_text("q1 the\nq2 the\nq3 the\n")
    config = build(EvalConfig, num_prompts=2, max_new_tokens=4)
    setup = Setup.resolve(run, model, NOGOLD, prompts=held_out)
    stages.evaluate_run(run, str(run / RunDir.POLICY), setup, RULE, config, progress=False, show=False)
    assert [r["prompt"] for r in read_jsonl(run / RunDir.SAMPLES)] == ["q1 the", "q2 the"]


def test_feedback_simulate_samples_the_given_prompts(micro_model, tmp_path):
    prompts = tmp_path / "mine.jsonl"
    prompts.write_text('{"prompt": "alpha beta"}\n{"prompt": "gamma delta"}\n')
    run = tmp_path / "run"
    rlhflab("feedback", "simulate", "--run-dir", run, "--model", micro_model, "--task", "conftest:planted_task",
            "--prompts", prompts, "--pairs", "6", "--max-new-tokens", "4", "--quiet", check=True)  # fmt: skip
    pairs = [json.loads(line) for line in (run / "pairs.jsonl").read_text().splitlines()]
    assert pairs and {p["prompt"] for p in pairs} <= {"alpha beta", "gamma delta"}


# ---------------------------------------------------------------- an off-the-shelf reward model


def classifier_folder(micro_model, dest, num_labels=1, seed=0):
    """A Hugging Face sequence-classification folder with no rlhflab_reward.json (as from the hub)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(micro_model, num_labels=num_labels)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)  # a head that says something
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(micro_model).save_pretrained(dest)
    return dest


def test_an_off_the_shelf_reward_model(micro_model, tmp_path):
    """Scored as its own forward scores it, normalised to mean 0 / std 1 on base samples, usable by PPO (whose
    value function then starts from it: same vocabulary) and evaluate; the normalisation is recorded."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rlhflab.core.errors import RlhflabError
    from rlhflab.evaluation.evaluate import EvalConfig
    from rlhflab.methods.ppo import PPOConfig
    from rlhflab.models.loading import Loader
    from rlhflab.pipeline.rewards import load_reward
    from rlhflab.reward.foreign import ClassifierReward, calibrate, is_classifier_folder
    from rlhflab.tasks import load_task

    folder = classifier_folder(micro_model, tmp_path / "hub_rm")
    assert is_classifier_folder(folder) and not is_classifier_folder(micro_model)
    reward = ClassifierReward.load(folder)
    prompts, completions = ["a good", "the bad day", "x"], [" day.", " is here", " good good good"]
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        one_by_one = [hf(**tok(p + c, return_tensors="pt")).logits[0, 0].item() for p, c in zip(prompts, completions)]
    assert reward.raw_scores(prompts, completions).tolist() == pytest.approx(one_by_one, abs=1e-4)  # padded batch

    task = load_task("conftest:planted_task")
    norm = calibrate(reward, str(micro_model), task.train_prompts, Loader(), max_new_tokens=6, temperature=1.0)
    assert norm["samples"] == 100 and norm["std"] > 0
    raw = torch.tensor(one_by_one)
    assert reward(prompts, completions).tolist() == pytest.approx(
        ((raw - norm["mean"]) / norm["std"]).tolist(), abs=1e-4
    )

    run = RunDir(tmp_path / "run")
    ppo = build(PPOConfig, steps=2, prompts_per_step=8, minibatch_size=4, epochs=1, max_new_tokens=6)
    setup = Setup.resolve(run, str(micro_model), "conftest:planted_task")
    result = stages.optimize(run, "ppo", setup, ppo, reward=str(folder), progress=False)
    assert result["reward_normalisation"]["std"] > 0
    config = build(EvalConfig, num_prompts=8, max_new_tokens=6)
    setup = Setup.resolve(run, str(micro_model), "conftest:planted_task")
    summary = stages.evaluate_run(run, str(run / RunDir.POLICY), setup, str(folder), config, progress=False,
                                  show=False)  # fmt: skip
    assert summary["base"]["proxy"] is not None and summary["base"]["gold"] is not None
    record = json.loads(run.manifest_path.read_text())["stages"]["evaluate"]["results"]
    assert record["reward_normalisation"]["on"] == "base-policy samples"

    two = classifier_folder(micro_model, tmp_path / "two_labels", num_labels=2)
    with pytest.raises(RlhflabError, match="with 2 outputs; a reward model has one"):
        load_reward(str(two), task, base={"model": str(micro_model), "max_new_tokens": 4, "temperature": 1.0})


# ---------------------------------------------------------------- --log-with


def test_tracker_rows_are_the_metrics_rows():
    from rlhflab.run.tracking import scalars

    assert scalars({"step": 3, "loss": 0.5, "lr": 1e-4, "done": True, "note": "x", "bad": float("nan")}) == (
        3,
        {"loss": 0.5, "lr": 1e-4},
    )
    assert scalars({"member": 1, "step": 2, "val/loss": 0.7}) == (2, {"member-1/val/loss": 0.7})


def test_log_with_tensorboard_mirrors_metrics(micro_model, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlhflab.core.files import read_jsonl
    from rlhflab.methods.ppo import PPOConfig

    run = RunDir(tmp_path / "run")
    ppo = build(PPOConfig, steps=3, prompts_per_step=8, minibatch_size=4, epochs=1, max_new_tokens=4,
                log_with="tensorboard")  # fmt: skip
    setup = Setup.resolve(run, str(micro_model), "conftest:planted_task")
    stages.optimize(run, "ppo", setup, ppo, reward="gold", progress=False)
    events = EventAccumulator(str(run / "tensorboard" / "ppo"))
    events.Reload()
    rows = read_jsonl(run / RunDir.METRICS)
    for name in ("objective/kl", "objective/gold", "ppo/policy/loss"):
        logged = [(e.step, e.value) for e in events.Scalars(name)]
        assert logged == [(r["step"], pytest.approx(r[name], rel=1e-6, abs=1e-7)) for r in rows], name


def test_log_with_wandb_when_installed(tmp_path, monkeypatch):
    import sys
    import types

    from rlhflab.core.errors import RlhflabError
    from rlhflab.run.tracking import open_tracker

    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(RlhflabError, match="wandb is not installed"):
        open_tracker("wandb", tmp_path, "ppo", {})

    calls = []
    fake = types.SimpleNamespace(
        init=lambda **kw: (
            calls.append(("init", kw)) or types.SimpleNamespace(log=lambda v, step: calls.append((v, step)))
        )
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    log = open_tracker("wandb", tmp_path / "run-a", "reward", {"epochs": 1})
    log({"member": 0, "step": 5, "loss": 0.25})
    assert calls[0][1]["name"] == "run-a/reward" and calls[0][1]["config"] == {"epochs": 1}
    assert calls[1] == ({"member-0/loss": 0.25}, 5)


def test_a_relative_model_path_that_exists_is_a_folder(micro_model, tmp_path, monkeypatch):
    import shutil

    from rlhflab.models.loading import load_policy, resolve_model

    shutil.copytree(micro_model, tmp_path / "models" / "x")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("models/x") == "models/x"  # a folder, not the hub id 'models/x'
    model, tokenizer = load_policy("models/x")
    assert model.config.model_type == "gpt2" and tokenizer.pad_token_id == model.config.pad_token_id
    assert resolve_model("org/model") == "org/model"  # no such folder: a hub id
