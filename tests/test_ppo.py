"""PPO learns a planted preference, and stops cleanly when training goes wrong."""

import dataclasses

import pytest
import torch
from conftest import good_minus_bad, run_method

import rlhflab.methods.ppo as ppo
from rlhflab.core.config import build
from rlhflab.core.errors import TrainingDiverged
from rlhflab.core.estimators import kl_negative_beyond_noise
from rlhflab.core.files import read_jsonl
from rlhflab.core.loop import Hooks
from rlhflab.methods.ppo import PPOConfig, train_ppo
from rlhflab.models.loading import load_policy
from rlhflab.models.sampling import sample
from rlhflab.run.rundir import RunDir


def gold_reward(prompts, completions):
    return torch.tensor(good_minus_bad(prompts, completions))


def mean_gold(model_dir, prompts, seed=0):
    model, tokenizer = load_policy(model_dir)
    texts = sample(model.eval(), tokenizer, prompts * 4, max_new_tokens=10, seed=seed).responses
    return sum(good_minus_bad(prompts, texts)) / len(texts)


def test_kl_guard_tolerates_noise_but_not_a_real_negative():
    g = torch.Generator().manual_seed(0)
    noisy_zero = torch.randn(64, generator=g) * 0.5  # true mean 0: within noise
    assert not kl_negative_beyond_noise(noisy_zero - noisy_zero.mean())
    assert not kl_negative_beyond_noise(torch.zeros(8))
    assert kl_negative_beyond_noise(torch.full((64,), -0.5) + 0.01 * torch.randn(64, generator=g))


def test_ppo_learns_a_planted_preference(micro_model, task, tmp_path):
    run = RunDir(tmp_path / "run")
    config = build(
        PPOConfig,
        steps=25,
        prompts_per_step=16,
        minibatch_size=8,
        epochs=2,
        lr=3e-3,
        max_new_tokens=10,
        kl_coef=0.02,
        value_init="policy",
        checkpoint_every=100,
        seed=0,
    )
    result = run_method("ppo", micro_model, run.path, config)
    before = mean_gold(micro_model, task.eval_prompts)
    after = mean_gold(run / "policy", task.eval_prompts)
    assert after - before > 0.3, (before, after)
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 26))
    expected_keys = {
        "objective/kl",
        "objective/kl_coef",
        "objective/entropy",
        "objective/score",
        "objective/gold",
        "ppo/policy/clipfrac",
        "ppo/val/var_explained",
        "time/rollout",
        "time/generate",
        "time/update",
    }
    assert expected_keys <= rows[0].keys()
    assert all(0 < r["time/generate"] <= r["time/rollout"] for r in rows)  # generating is part of the rollout
    # the first rollout comes from the reference itself: KL 0 up to float rounding between the sampler's
    # log-probabilities (an incremental pass) and the reference's (a full pass)
    assert abs(rows[0]["objective/kl"]) < 1e-5
    assert rows[-1]["objective/kl"] > 0 and result["final"] == rows[-1]
    logged = read_jsonl(run / "train_samples.jsonl")  # rollouts for the report, every sample_every steps
    assert sorted({r["step"] for r in logged}) == [1, 3, 6, 9, 12, 15, 18, 21, 24]
    assert {"prompt", "response", "score", "gold"} <= logged[0].keys()


def test_nan_reward_stops_with_the_step_and_quantity(micro_model, task):
    def nan_reward(prompts, completions):
        return torch.full((len(prompts),), float("nan"))

    policy, tokenizer = load_policy(micro_model)
    config = build(PPOConfig, steps=3, prompts_per_step=4, minibatch_size=4, max_new_tokens=6)
    with pytest.raises(TrainingDiverged, match=r"ppo stopped at step 0: the reward is nan"):
        train_ppo(policy, tokenizer, nan_reward, task.train_prompts, config, hooks=Hooks(progress=False))


def test_negative_kl_stops_training(micro_model, task, tmp_path, monkeypatch):
    """Sampling from another model than the policy makes the k1 estimate negative: the guard must fire. (The
    sampler's own log-probabilities are dropped, so the policy's are read by a teacher-forced pass, as they
    are for a policy in bfloat16.)"""
    real_sample = ppo.sample
    policy, tokenizer = load_policy(micro_model)
    other, _ = load_policy(micro_model)  # a different reference, and the rollouts come from it, not from the policy
    torch.manual_seed(0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn_like(p))
    monkeypatch.setattr(
        ppo, "sample", lambda model, *a, **k: dataclasses.replace(real_sample(other, *a, **k), logprobs=None)
    )
    config = build(PPOConfig, steps=2, prompts_per_step=16, minibatch_size=8, max_new_tokens=8)
    with pytest.raises(TrainingDiverged, match=r"step 0: the KL estimate to the reference \(k1, nats\) is -"):
        train_ppo(
            policy, tokenizer, gold_reward, task.train_prompts, config, reference=other, hooks=Hooks(progress=False)
        )


def test_divergent_learning_rate_stops_before_writing_a_broken_policy(micro_model, task, tmp_path):
    run = tmp_path / "run"
    config = build(
        PPOConfig, steps=6, prompts_per_step=8, minibatch_size=4, lr=1e4, max_new_tokens=6, value_init="policy"
    )
    with pytest.raises(TrainingDiverged, match=r"ppo stopped at step \d+: the (policy|value) loss is nan"):
        run_method("ppo", micro_model, run, config)
    assert not (run / "policy").exists()
    assert not (run / "policy").exists()
