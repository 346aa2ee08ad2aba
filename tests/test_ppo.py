"""PPO learns a planted preference, and stops cleanly when training goes wrong."""

import pytest
import torch
from conftest import good_minus_bad

import rlhflab.methods.ppo as ppo
from rlhflab.errors import TrainingDiverged
from rlhflab.methods.ppo import PPOConfig, kl_negative_beyond_noise, train_ppo
from rlhflab.rollout.models import load_policy, sample
from rlhflab.run.rundir import RunDir, read_jsonl


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
    config = PPOConfig(
        steps=25,
        batch_size=16,
        minibatch_size=8,
        ppo_epochs=2,
        lr=3e-3,
        max_new_tokens=10,
        kl_coef=0.02,
        value_init="policy",
        checkpoint_every=100,
        seed=0,
    )
    result = train_ppo(
        str(micro_model), gold_reward, task.train_prompts, run, config, gold=good_minus_bad, progress=False
    )
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
        "time/update",
    }
    assert expected_keys <= rows[0].keys()
    assert rows[0]["objective/kl"] == 0.0  # the first rollout comes from the reference itself
    assert rows[-1]["objective/kl"] > 0 and result["final"] == rows[-1]
    logged = read_jsonl(run / "train_samples.jsonl")  # rollouts for the report, every sample_every steps
    assert sorted({r["step"] for r in logged}) == [1, 3, 6, 9, 12, 15, 18, 21, 24]
    assert {"prompt", "response", "score", "gold"} <= logged[0].keys()


def test_nan_reward_stops_with_the_step_and_quantity(micro_model, task, tmp_path):
    run = RunDir(tmp_path / "run")

    def nan_reward(prompts, completions):
        return torch.full((len(prompts),), float("nan"))

    with pytest.raises(TrainingDiverged, match=r"ppo stopped at step 0: the reward is nan"):
        train_ppo(
            str(micro_model),
            nan_reward,
            task.train_prompts,
            run,
            PPOConfig(steps=3, batch_size=4, minibatch_size=4, max_new_tokens=6),
            progress=False,
        )
    assert not (run / "policy").exists()


def test_negative_kl_stops_training(micro_model, task, tmp_path, monkeypatch):
    """Sampling from another model than the policy makes the k1 estimate negative: the guard must fire."""
    real_load, real_sample = ppo.load_policy, ppo.sample
    models = []

    def load(name, pad_token=None):
        model, tokenizer = real_load(name, pad_token)
        if models:  # the second load is the reference: make it a different model
            torch.manual_seed(0)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.3 * torch.randn_like(p))
        models.append(model)
        return model, tokenizer

    monkeypatch.setattr(ppo, "load_policy", load)
    monkeypatch.setattr(ppo, "sample", lambda model, *a, **k: real_sample(models[1], *a, **k))
    with pytest.raises(TrainingDiverged, match=r"step 0: the KL estimate to the reference \(k1, nats\) is -"):
        train_ppo(
            str(micro_model),
            gold_reward,
            task.train_prompts,
            RunDir(tmp_path / "run"),
            PPOConfig(steps=2, batch_size=16, minibatch_size=8, max_new_tokens=8),
            progress=False,
        )


def test_divergent_learning_rate_stops_before_writing_a_broken_policy(micro_model, task, tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match=r"ppo stopped at step \d+: the (policy|value) loss is nan"):
        train_ppo(
            str(micro_model),
            gold_reward,
            task.train_prompts,
            run,
            PPOConfig(steps=6, batch_size=8, minibatch_size=4, lr=1e4, max_new_tokens=6, value_init="policy"),
            progress=False,
        )
    assert not (run / "policy").exists()
