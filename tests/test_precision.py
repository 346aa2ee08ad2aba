"""Precision, gradient checkpointing and LoRA (issue 11): what each promises, on the micro model."""

import json

import pytest
import torch
from clirun import rlhflab
from conftest import good_minus_bad

from rlhflab.core.config import build
from rlhflab.core.errors import ConfigError
from rlhflab.methods.ppo import PPOConfig, train_ppo
from rlhflab.models.loading import disable_dropout, forward_inputs, load_policy
from rlhflab.models.precision import (
    AdapterOff,
    ModelConfig,
    reference_for,
    saveable_policy,
    trainable_policy,
    trainable_value,
)
from rlhflab.models.sampling import sample, token_logprobs
from rlhflab.pipeline import stages
from rlhflab.pipeline.setup import Setup
from rlhflab.run.rundir import RunDir

TASK, RULE = "conftest:planted_task", "conftest:good_minus_bad"


def reward(prompts, completions):
    return torch.tensor(good_minus_bad(prompts, completions))


def logits(model, tokenizer, texts):
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**forward_inputs(model, enc["input_ids"], enc["attention_mask"])).logits.float()


TEXTS = ["the cat sat on a mat.", "good day and a big dog"]


def test_lora_trains_only_the_adapter_from_kl_zero_and_merges_to_the_same_logits(micro_model, task):
    base, tokenizer = load_policy(micro_model)
    options = ModelConfig(lora_r=4, lora_alpha=8)
    policy = trainable_policy(base, options)
    reference = reference_for(policy, lambda: pytest.fail("a LoRA policy needs no second copy"))
    assert isinstance(reference, AdapterOff)
    disable_dropout(policy)  # as every method does

    # before any update the adapter adds exactly nothing: the policy is its reference
    r = sample(policy, tokenizer, task.train_prompts[:8], max_new_tokens=6, seed=0)
    lp, _ = token_logprobs(policy, r.input_ids, r.attention_mask, r.prompt_length)
    lp_ref, _ = token_logprobs(reference, r.input_ids, r.attention_mask, r.prompt_length)
    assert torch.equal(lp, lp_ref)

    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    config = build(PPOConfig, steps=3, prompts_per_step=8, minibatch_size=4, epochs=2, max_new_tokens=6, lr=1e-2,
                   model_options=options)  # fmt: skip
    result = train_ppo(policy, tokenizer, reward, task.train_prompts, config)  # reference: the adapter off
    # measured on the first rollout, before the first update: 0 up to the rounding between the sampler's
    # log-probabilities and the reference's full pass (the exact equality of the two passes is checked above)
    assert abs(result.history[0]["objective/kl"]) < 1e-5
    assert result.history[-1]["objective/kl"] != 0.0  # ... and the adapter did move the policy
    changed = {n for n, p in policy.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert all(p.requires_grad == ("lora_" in n) for n, p in policy.named_parameters())

    # the policy written to RUN/policy: merged, a plain causal LM, the same function
    adapted = logits(policy, tokenizer, TEXTS)
    merged = saveable_policy(policy, options)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged, tokenizer, TEXTS), adapted, atol=1e-5, rtol=1e-5)


def test_save_adapter_writes_an_adapter_transformers_loads_with_its_base(micro_model, tmp_path):
    from transformers import AutoModelForCausalLM

    run = RunDir(tmp_path / "run")
    config = build(PPOConfig, steps=2, prompts_per_step=8, minibatch_size=4, epochs=1, max_new_tokens=6, lr=1e-2,
                   lora_r=4, save_adapter=True)  # fmt: skip
    stages.optimize(run, "ppo", Setup.resolve(run, str(micro_model), TASK), config, reward=RULE, progress=False)
    files = {p.name for p in (run / RunDir.POLICY).iterdir()}
    assert "adapter_config.json" in files and "model.safetensors" not in files
    loaded = AutoModelForCausalLM.from_pretrained(run / RunDir.POLICY)  # the base found from the adapter's config
    ours, tokenizer = load_policy(run / RunDir.POLICY)  # and rlhflab's loader takes the folder as a policy
    base, _ = load_policy(micro_model)
    torch.testing.assert_close(logits(ours, tokenizer, TEXTS), logits(loaded, tokenizer, TEXTS))
    assert not torch.allclose(logits(ours, tokenizer, TEXTS), logits(base, tokenizer, TEXTS))


def test_bfloat16_runs_end_to_end_and_later_stages_remember_it(micro_model, tmp_path):
    run = tmp_path / "run"
    out = rlhflab("optimize", "ppo", "--run-dir", run, "--model", micro_model, "--task", TASK, "--reward", RULE,
                  "--steps", "2", "--prompts-per-step", "8", "--minibatch-size", "4", "--epochs", "1",
                  "--max-new-tokens", "6", "--dtype", "bfloat16", "--gradient-checkpointing", "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    saved = json.loads((run / "policy" / "config.json").read_text())
    assert saved.get("dtype", saved.get("torch_dtype")) == "bfloat16"
    out = rlhflab("evaluate", "--run-dir", run, "--base", micro_model, "--task", TASK, "--reward", "none",
                  "--num-prompts", "8", "--max-new-tokens", "6", "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["ppo"]["config"]["model_options"]["dtype"] == "bfloat16"
    assert manifest["stages"]["evaluate"]["args"]["dtype"] == "bfloat16"  # not repeated, remembered
    summary = json.loads((run / "summary.json").read_text())
    assert summary["policy"]["gold"] is not None and abs(summary["policy"]["kl"]) < 50


def test_frozen_models_load_in_the_dtype_and_trained_weights_stay_float32(micro_model):
    from rlhflab.models.loading import Loader

    loader = Loader(dtype="bfloat16")  # a stage's models load in its dtype ...
    frozen, _ = loader.policy(micro_model)
    trained, _ = loader.policy(micro_model, dtype="float32")  # ... and an explicit dtype wins
    assert next(load_policy(micro_model)[0].parameters()).dtype == torch.float32  # without one: as saved
    assert next(frozen.parameters()).dtype == torch.bfloat16
    policy = trainable_policy(trained, ModelConfig(dtype="bfloat16"))
    assert {p.dtype for p in policy.parameters()} == {torch.float32}
    out = policy(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.logits.dtype == torch.bfloat16  # the matmuls ran under autocast

    lora = trainable_policy(load_policy(micro_model, dtype="bfloat16")[0], ModelConfig(dtype="bfloat16", lora_r=2))
    dtypes = {("lora_" in n, p.dtype) for n, p in lora.named_parameters()}
    assert dtypes == {(True, torch.float32), (False, torch.bfloat16)}  # adapters float32, the base bfloat16


def test_the_value_model_of_a_lora_run_is_a_lora_model_with_a_float32_head(micro_model):
    from rlhflab.models.loading import load_scalar_model

    value = load_scalar_model(micro_model, 1, torch.bfloat16)
    value = trainable_value(value, ModelConfig(dtype="bfloat16", lora_r=2))
    trained = {n: p.dtype for n, p in value.named_parameters() if p.requires_grad}
    assert trained and all(("lora_" in n or ".score." in n) and d == torch.float32 for n, d in trained.items())
    frozen = [p.dtype for p in value.parameters() if not p.requires_grad]
    assert frozen and set(frozen) == {torch.bfloat16}
    out = value(torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long))
    assert out.shape == (1, 3) and out.dtype == torch.float32


@pytest.mark.parametrize("method", ["dpo", "grpo"])
def test_dpo_and_grpo_train_a_lora_adapter_with_checkpointing(method, micro_model, tmp_path):
    from rlhflab.core.comparison import PreferencePair, write_pairs
    from rlhflab.methods import registry

    run = RunDir(tmp_path / "run")
    spec = registry.get(method)
    common = dict(lora_r=4, gradient_checkpointing=True, dtype="bfloat16")
    if method == "dpo":
        pairs = tmp_path / "pairs.jsonl"
        write_pairs(pairs, [PreferencePair(prompt="the cat", chosen=" good day.", rejected=" bad day.")] * 8)
        config = build(spec.config, epochs=2, pairs_per_step=4, lr=1e-2, **common)
        setup = Setup.resolve(run, str(micro_model), TASK, read_prompts=False)
        stages.optimize(run, method, setup, config, pairs=pairs, progress=False)
    else:
        config = build(spec.config, steps=2, prompts_per_step=4, samples_per_prompt=2, minibatch_size=8,
                       max_new_tokens=6, lr=1e-2, **common)  # fmt: skip
        stages.optimize(run, method, Setup.resolve(run, str(micro_model), TASK), config, reward=RULE, progress=False)
    tuned, tokenizer = load_policy(run / RunDir.POLICY)
    base, _ = load_policy(micro_model)
    assert next(tuned.parameters()).dtype == torch.bfloat16
    assert not torch.allclose(logits(tuned, tokenizer, TEXTS), logits(base, tokenizer, TEXTS), atol=1e-3)


def test_model_options_are_checked():
    with pytest.raises(ConfigError, match="--save-adapter must be used with --lora-r"):
        ModelConfig(save_adapter=True)
    for r in (0, -1):
        with pytest.raises(ConfigError, match="--lora-r must be >= 1"):
            ModelConfig(lora_r=r)
    with pytest.raises(ConfigError, match="--lora-target-modules"):
        ModelConfig(lora_r=2, lora_target_modules=" , ")


def test_lora_target_modules_that_the_model_lacks_are_named(micro_model):
    model, _ = load_policy(micro_model)
    with pytest.raises(ConfigError, match="--lora-target-modules 'q_proj'"):
        trainable_policy(model, ModelConfig(lora_r=2, lora_target_modules="q_proj"))


def test_a_reward_model_trains_under_bfloat16_with_checkpointing(micro_model, tmp_path):
    from rlhflab.feedback.simulated import SimulateConfig, SimulatedRater
    from rlhflab.reward.train import RewardTrainConfig

    run = RunDir(tmp_path / "run")
    stages.feedback_simulate(run, Setup.resolve(run, str(micro_model), TASK), build(SimulateConfig, pairs=16,
                             max_new_tokens=4, batch_size=16), SimulatedRater(), progress=False)  # fmt: skip
    config = build(RewardTrainConfig, backbone="model", epochs=1, pairs_per_step=4, dtype="bfloat16",
                   gradient_checkpointing=True)  # fmt: skip
    result = stages.reward_train(run, str(micro_model), run / RunDir.PAIRS, config, progress=False)
    assert 0 <= result["val_accuracy"] <= 1
    out = rlhflab("reward", "train", "--help")  # LoRA too (tests/test_reward_model.py trains with it)
    assert "--dtype" in out.stdout and "--lora-r" in out.stdout


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--dtype", "float8"], "Invalid value for '--dtype': 'float8' is not one of"),
        (["--lora-r", "0"], "--lora-r must be >= 1 (leave it unset for no LoRA), got 0"),
        (["--lora-r", "2", "--lora-target-modules", "q_proj"], "--lora-target-modules 'q_proj'"),
        (["--dtype", "float16"], "--dtype float16 needs a GPU"),
    ],
)
def test_bad_model_options_are_refused_in_one_line(flags, said, micro_model, tmp_path):
    if "float16" in flags and torch.cuda.is_available():
        pytest.skip("float16 is allowed on a GPU")
    out = rlhflab("optimize", "grpo", "--run-dir", tmp_path / "run", "--model", micro_model, "--task", TASK,
                  "--reward", RULE, "--steps", "1", "--quiet", *flags)  # fmt: skip
    assert out.returncode == 2 and said in out.stderr, out.stderr
    assert len([line for line in out.stderr.splitlines() if line.strip()]) <= 3  # usage + error, no traceback


def test_a_folded_adapter_is_the_adapted_model_and_leaves_every_weight_untouched(micro_model):
    from peft.tuners.lora.layer import LoraLayer

    from rlhflab.models.precision import folded_adapter

    base, tokenizer = load_policy(micro_model)
    policy = trainable_policy(base, ModelConfig(lora_r=4, lora_alpha=8))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)  # a trained adapter (a fresh one adds nothing)
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    layers = [m for m in policy.modules() if isinstance(m, LoraLayer)]
    adapted = logits(policy, tokenizer, TEXTS)
    assert not torch.allclose(adapted, logits(base_only := load_policy(micro_model)[0], tokenizer, TEXTS), atol=1e-3)
    with folded_adapter(policy) as folded:
        inside = logits(folded, tokenizer, TEXTS)
        folded_in = [not torch.equal(m.get_base_layer().weight, before[n + ".base_layer.weight"])
                     for n, m in policy.named_modules() if isinstance(m, LoraLayer)]  # fmt: skip
        with folded_adapter(folded) as again:  # a block within a block folds nothing twice
            twice = logits(again, tokenizer, TEXTS)
        r = sample(folded, tokenizer, TEXTS, max_new_tokens=4, seed=0)  # sampling runs folded too
    assert layers and all(folded_in)  # each adapted layer ran on W + BA, with the adapter itself off
    torch.testing.assert_close(inside, adapted, atol=1e-4, rtol=1e-4)
    assert torch.equal(twice, inside)
    assert all(torch.equal(p, before[name]) for name, p in policy.named_parameters())  # put back, not subtracted
    assert torch.equal(logits(policy, tokenizer, TEXTS), adapted) and len(r.responses) == 2
    with folded_adapter(base_only) as same:  # a model without an adapter passes through
        assert same is base_only


def test_grpo_in_bfloat16_reads_the_policy_once_when_one_minibatch_is_the_rollout(micro_model, task, monkeypatch):
    """bfloat16 sampler log-probabilities cannot stand for the policy's; with one epoch in one minibatch the update's
    forward pass is the policy's only teacher-forced pass (its log-probabilities before the step are the old ones)."""
    import rlhflab.methods.critic_free as critic_free
    from rlhflab.core.loop import Hooks
    from rlhflab.methods.grpo import GRPOConfig, train_grpo

    calls = []
    real = critic_free.policy_logprobs
    monkeypatch.setattr(critic_free, "policy_logprobs", lambda *a, **k: calls.append(1) or real(*a, **k))
    options = ModelConfig(dtype="bfloat16", lora_r=4)
    histories = {}
    for minibatch in (8, 4):  # the whole rollout (4 prompts x 2), then half of it
        base, tokenizer = load_policy(micro_model, dtype="bfloat16")
        policy = trainable_policy(base, options)
        reference = reference_for(policy, lambda: pytest.fail("a LoRA policy needs no second copy"))
        config = build(GRPOConfig, steps=3, prompts_per_step=4, samples_per_prompt=2, minibatch_size=minibatch,
                       max_new_tokens=6, lr=1e-2, model_options=options)  # fmt: skip
        rows = []
        train_grpo(policy, tokenizer, reward, task.train_prompts, config, reference=reference,
                   hooks=Hooks(metrics=rows.append, progress=False))  # fmt: skip
        histories[minibatch] = (rows, len(calls))
        calls.clear()
    one, two = histories[8], histories[4]
    assert one[1] == 0 and two[1] == 3  # no separate pass of the policy in the first set-up; one a step in the other
    for rows, _ in (one, two):  # before the first update the policy is its reference, in the same arithmetic
        assert rows[0]["objective/kl"] == 0.0 and rows[-1]["objective/kl"] != 0.0
        assert all(r["objective/entropy"] > 0 for r in rows)
