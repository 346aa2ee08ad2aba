"""What stops or warns a run before it measures nothing: a reward model at chance, a KL estimate below zero, a
training stage's time estimate; evaluating one model on its own; answers the gold cannot read."""

import json

import pytest
import torch
from clirun import rlhflab

from rlhflab.core.estimators import kl_negative_beyond_noise
from rlhflab.core.loop import Hooks, TrainLoop
from rlhflab.evaluation.diagnostics.stats import reward_at_chance, wilson_interval


def test_wilson_interval_hand_values():
    low, high = wilson_interval(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    low, high = wilson_interval(1.0, 1)  # one right answer of one says little
    assert low == pytest.approx(0.2065, abs=1e-4) and high == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(0.5, 0)


def test_reward_at_chance_reads_the_gold_order_first():
    assert "55.0% of 60 held-out pairs as the gold reward does" in reward_at_chance(
        {"val_gold_accuracy": 0.55, "val_gold_pairs": 60, "val_accuracy": 0.9, "val_pairs": 80}
    )
    assert reward_at_chance({"val_gold_accuracy": 0.80, "val_gold_pairs": 60}) is None
    assert "as their labels do" in reward_at_chance({"val_accuracy": 0.52, "val_pairs": 200})
    assert reward_at_chance({"val_accuracy": 0.75, "val_pairs": 200}) is None
    assert reward_at_chance({}) is None and reward_at_chance({"val_accuracy": None, "val_pairs": 0}) is None


def test_negative_kl_at_two_standard_errors_warns_once(capsys):
    kl = torch.tensor([-0.30, -0.10, -0.20, 0.05, -0.15, -0.25])  # mean -0.158, standard error 0.050
    assert bool(kl_negative_beyond_noise(kl, z=2.0)) and not bool(kl_negative_beyond_noise(kl, z=4.0))
    assert not bool(kl_negative_beyond_noise(kl + 0.2, z=2.0))
    loop = TrainLoop("ppo", Hooks(progress=False))
    loop.warn("negative-kl", "the KL is below zero")
    loop.warn("negative-kl", "the KL is below zero")
    assert capsys.readouterr().err.count("warning: the KL is below zero") == 1


def test_a_training_stage_estimates_its_time_after_the_first_step(capsys):
    loop = TrainLoop("grpo", Hooks(progress=True))
    for _ in loop.steps(0, 4):
        pass
    err = capsys.readouterr().err
    assert "grpo: the first step took" in err and "the other 3 should take about" in err
    for _ in TrainLoop("grpo", Hooks(progress=False)).steps(0, 4):
        pass
    assert "first step" not in capsys.readouterr().err


def test_the_demo_stops_before_ppo_when_the_reward_model_is_at_chance(micro_model, tmp_path):
    out = rlhflab("demo", "--model", micro_model, "--task", "conftest:planted_task", "--run-dir", tmp_path / "d",
                  "--pairs", 20, "--quiet")  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: stopped before PPO: the reward model orders") and "--force" in out.stderr
    assert (tmp_path / "d" / "reward_model").is_dir() and not (tmp_path / "d" / "policy").exists()
    meta = json.loads((tmp_path / "d" / "reward_model" / "rlhflab_reward.json").read_text())
    assert meta["validation"]["val_pairs"] >= 1  # kept beside the model: optimize warns from it too
    again = rlhflab("optimize", "ppo", "--run-dir", tmp_path / "d", "--model", micro_model, "--task",
                    "conftest:planted_task", "--steps", 1, "--prompts-per-step", 4, "--minibatch-size", 4,
                    "--max-new-tokens", 4, "--quiet")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "warning: the reward model orders" in again.stdout + again.stderr


def test_demo_size_flags_are_checked(tmp_path):
    out = rlhflab("demo", "--task", "arithmetic", "--pairs", 100, "--run-dir", tmp_path / "d")
    assert out.returncode == 2 and "the arithmetic demo learns from the verifier" in out.stderr
    out = rlhflab("demo", "--steps", 0, "--run-dir", tmp_path / "d")
    assert out.returncode == 2 and "--steps" in out.stderr


def test_evaluating_one_model_samples_it_once(micro_model, task, monkeypatch):
    import rlhflab.evaluation.evaluate as ev

    calls = []
    real = ev._samples
    monkeypatch.setattr(ev, "_samples", lambda *a, **k: calls.append(k.get("desc") or a[3]) or real(*a, **k))
    config = ev.EvalConfig(num_prompts=6, batch_size=6)
    summary, rows = ev.evaluate(str(micro_model), str(micro_model), task, config, progress=False)
    assert summary["single_model"] and len(calls) == 1
    assert summary["policy"]["gold"] == summary["base"]["gold"] and summary["gold_gain"] == 0.0
    assert all(r["base"] == r["policy"] for r in rows)


def test_answers_the_gold_cannot_read_are_counted(micro_model, task):
    import dataclasses

    import rlhflab.evaluation.evaluate as ev

    counted = dataclasses.replace(task, answered=lambda texts: [t.strip().startswith("good") for t in texts])
    summary, rows = ev.evaluate(str(micro_model), str(micro_model), counted, ev.EvalConfig(num_prompts=8),
                                progress=False)  # fmt: skip
    expected = sum(not r["base"].strip().startswith("good") for r in rows) / len(rows)
    assert summary["base"]["unanswered"] == pytest.approx(expected)
    assert "answers in which the gold finds no answer: base" in ev.format_table(summary)


def test_the_smollm2_preset_and_the_size_flags():
    from rlhflab.pipeline.demo import SMOLLM2_DEMO, preset, resized

    p = preset(3, quick=False, model="smollm2")
    assert p.feedback.pairs == SMOLLM2_DEMO["feedback"]["pairs"] and p.reward.backbone == "minilm"
    assert p.ppo.model_options.lora_r == 16 and p.ppo.model_options.dtype == "bfloat16" and p.ppo.run.seed == 3
    sized = resized(p, pairs=100, steps=5, num_eval_prompts=7)
    assert (sized.feedback.pairs, sized.ppo.steps, sized.evaluate.num_prompts) == (100, 5, 7)
    assert resized(p, None, None, None) == p
    assert not preset(0, quick=False).ppo.model_options.lora_r  # the embedded model's preset is untouched
