"""Each alternative to PPO learns a planted preference on a micro model; best-of-n's KL is checked
against the exact KL of a small discrete distribution."""

import math

import pytest
import torch
from conftest import good_minus_bad, run_method

from rlhflab.core.config import build
from rlhflab.core.errors import ConfigError
from rlhflab.core.files import read_jsonl
from rlhflab.methods import registry
from rlhflab.methods.best_of_n import BestOfNConfig
from rlhflab.methods.conditional import ConditionalConfig, add_control_tokens, tag
from rlhflab.methods.grpo import GRPOConfig
from rlhflab.methods.ranked_sft import RankedSFTConfig, top_per_prompt
from rlhflab.methods.rloo import RLOOConfig
from rlhflab.models.loading import load_policy
from rlhflab.models.samplers import best_of_n_kl_bound, best_of_n_kl_estimate, load_sampler
from rlhflab.models.sampling import sample
from rlhflab.run.rundir import RunDir


def gold(prompts, completions):
    return torch.tensor(good_minus_bad(prompts, completions))


def mean_gold(model_dir, prompts, prefix="", suppress=()):
    model, tokenizer = load_policy(model_dir)
    texts = sample(
        model.eval(), tokenizer, [prefix + p for p in prompts] * 4, max_new_tokens=10, seed=0, suppress_tokens=suppress
    ).responses
    return sum(good_minus_bad(prompts, texts)) / len(texts)


# ---------------------------------------------------------------- best-of-n


def exact_best_of_n(p: torch.Tensor, n: int) -> torch.Tensor:
    """Best-of-n distribution over outcomes sorted by a reward with no ties: F(i)^n - F(i-1)^n."""
    cdf = p.cumsum(0)
    return cdf**n - torch.cat([torch.zeros(1, dtype=p.dtype), cdf[:-1]]) ** n


@pytest.mark.parametrize("n", [1, 2, 4, 16])
def test_best_of_n_analytic_kl_against_the_exact_kl(n):
    p = torch.full((2000,), 1 / 2000, dtype=torch.float64)  # many small outcomes: a near-continuous reward
    q = exact_best_of_n(p, n)
    exact = float((q * (q / p).log()).nan_to_num().sum())
    assert exact <= best_of_n_kl_bound(n) + 1e-9
    assert exact == pytest.approx(best_of_n_kl_bound(n), abs=2e-3)
    coarse = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)  # big atoms: strictly below the bound
    qc = exact_best_of_n(coarse, n)
    assert float((qc * (qc / coarse).log()).sum()) <= best_of_n_kl_bound(n) + 1e-12


def test_best_of_n_sampled_kl_estimate_is_close_to_the_exact_kl():
    g = torch.Generator().manual_seed(0)
    n, prompts = 4, 3000
    rewards = torch.rand(prompts, n, generator=g, dtype=torch.float64)  # a continuous reward, the same for all
    estimate = best_of_n_kl_estimate(rewards.max(1).values.tolist(), rewards.flatten().tolist(), n)
    assert sum(estimate) / prompts == pytest.approx(best_of_n_kl_bound(n), abs=0.03)
    with pytest.raises(ConfigError, match="--n must be >= 1"):
        best_of_n_kl_bound(0)


def test_best_of_n_sampler_prefers_the_reward(micro_model, task, tmp_path):
    run = tmp_path / "bon"
    assert run_method("best-of-n", micro_model, run, BestOfNConfig(n=8))["kl_bound"] == best_of_n_kl_bound(8)
    sampler, info = load_sampler(run, str(micro_model), lambda name: gold)
    out = sampler.sample(task.eval_prompts * 4, max_new_tokens=10, seed=0, temperature=0.7)
    assert info == {"type": "best_of_n", "n": 8, "kl_bound": best_of_n_kl_bound(8), "reward": "gold"}
    assert sum(good_minus_bad(None, out.texts)) / len(out.texts) > mean_gold(micro_model, task.eval_prompts) + 0.2
    assert all(k <= math.log(8) + 1e-9 for k in out.kl)


# ---------------------------------------------------------------- reward-ranked fine-tuning


def test_top_per_prompt():
    assert top_per_prompt(torch.tensor([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]]), 2).tolist() == [[1, 2], [0, 2]]


def test_ranked_sft_learns_a_planted_preference(micro_model, task, tmp_path):
    run = RunDir(tmp_path / "raft")
    config = build(RankedSFTConfig, rounds=3, prompts_per_round=32, samples_per_prompt=4, lr=2e-3, max_new_tokens=10)
    result = run_method("ranked-sft", micro_model, run.path, config)
    assert mean_gold(run / "policy", task.eval_prompts) - mean_gold(micro_model, task.eval_prompts) > 0.05
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and result["final"] == rows[-1]
    assert all(r["ranked/kept_score"] >= r["objective/score"] for r in rows)


# ---------------------------------------------------------------- conditional training


def test_tagging_by_quantile():
    tags, threshold = tag([0.0, 1.0, 2.0, 3.0], 0.5, "<g>", "<b>")
    assert threshold == 1.5 and tags == ["<b>", "<b>", "<g>", "<g>"]
    assert tag([0.0, 0.0, 1.0], 0.5, "<g>", "<b>")[0] == ["<b>", "<b>", "<g>"]  # ties at the threshold are bad


def test_control_token_already_in_the_vocabulary(micro_model):
    model, tokenizer = load_policy(micro_model)
    with pytest.raises(ConfigError, match="control token 'the' is already in the vocabulary"):
        add_control_tokens(model, tokenizer, ["<|good|>", "the"])


def test_conditional_training_learns_the_condition(micro_model, task, tmp_path):
    run = RunDir(tmp_path / "cond")
    config = build(ConditionalConfig, num_prompts=100, samples_per_prompt=4, epochs=8, lr=3e-3, max_new_tokens=10)
    result = run_method("conditional", micro_model, run.path, config)
    assert 0 < result["good_share"] < 0.5 and result["texts"] > 300
    model, tokenizer = load_policy(run / "policy")
    suppress = tokenizer.convert_tokens_to_ids(["<|good|>", "<|bad|>"])
    good = mean_gold(run / "policy", task.eval_prompts, "<|good|>", suppress)
    bad = mean_gold(run / "policy", task.eval_prompts, "<|bad|>", suppress)
    unconditioned = mean_gold(run / "policy", task.eval_prompts, "", suppress)
    # learned beyond noise (a policy that ignores the token: both gaps ~0, standard error ~0.02); over seeds 0-2
    # the gaps were 0.16-0.37 (good - bad) and 0.12-0.29 (good - unconditioned) with rlhflab's sampler
    assert good - bad > 0.1 and good - unconditioned > 0.06
    # evaluation samples it with the good token and the base vocabulary
    sampler, info = load_sampler(run / "policy", str(micro_model), lambda name: None)
    assert info == {"type": "policy", "prefix": "<|good|>"}
    out = sampler.sample(task.eval_prompts, max_new_tokens=10, seed=0, temperature=0.7)
    assert len(out.kl) == len(task.eval_prompts) and all(math.isfinite(k) for k in out.kl)


# ---------------------------------------------------------------- RLOO and GRPO


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_critic_free_methods_learn_a_planted_preference(micro_model, task, tmp_path, method):
    run = RunDir(tmp_path / method)
    kl = {registry.get(method).kl_knob: 0.01}
    config = build(
        registry.get(method).config, steps=15, prompts_per_step=8, samples_per_prompt=4, lr=3e-3, max_new_tokens=10,
        epochs=2, **kl,
    )  # fmt: skip
    result = run_method(method, micro_model, run.path, config)
    assert mean_gold(run / "policy", task.eval_prompts) - mean_gold(micro_model, task.eval_prompts) > 0.3
    rows = read_jsonl(run / "metrics.jsonl")
    # the first rollout is the reference's own: KL 0 up to the rounding between sampler and full pass
    assert len(rows) == 15 and abs(rows[0]["objective/kl"]) < 1e-5 and result["final"]["objective/gold"] > 0.3


def test_critic_free_needs_two_samples_per_prompt():
    with pytest.raises(ConfigError, match="--samples-per-prompt must be >= 2"):
        build(GRPOConfig, samples_per_prompt=1)
    with pytest.raises(ConfigError, match="--samples-per-prompt must be >= 2"):
        build(RLOOConfig, samples_per_prompt=1)


def test_rloo_and_grpo_name_their_kl_knob_for_where_it_goes():
    """RLOO pays the KL in the reward, GRPO in the loss: each config has only its own knob."""
    assert "reward_kl_coef" in RLOOConfig.__dataclass_fields__ and "kl_coef" not in RLOOConfig.__dataclass_fields__
    assert "loss_kl_coef" in GRPOConfig.__dataclass_fields__ and "reward_kl_coef" not in GRPOConfig.__dataclass_fields__
    with pytest.raises(ConfigError, match="has no setting 'loss_kl_coef'"):
        build(RLOOConfig, loss_kl_coef=0.1)
    with pytest.raises(ConfigError, match="--reward-kl-coef must be >= 0"):
        build(RLOOConfig, reward_kl_coef=-1)


def test_every_method_module_registers_itself():
    """The registry finds the method modules itself: each entry names its config and a KL knob that exists."""
    assert list(registry.METHODS) == list(registry.ORDER)
    for method in registry.METHODS.values():
        assert method.kl_knob is None or method.kl_knob in method.config.__dataclass_fields__, method.name
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        registry.get("nope")
