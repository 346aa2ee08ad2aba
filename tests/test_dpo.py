"""DPO learns a planted preference; pairs it cannot use are refused clearly."""

import pytest
from conftest import good_minus_bad
from test_reward_model import planted_pairs

from rlhflab.core.comparison import PreferencePair
from rlhflab.core.config import build
from rlhflab.core.errors import ConfigError, DataError
from rlhflab.core.loop import Hooks
from rlhflab.methods.dpo import DPOConfig, train_dpo, usable_pairs
from rlhflab.models.loading import load_policy
from rlhflab.models.sampling import sample
from rlhflab.run.rundir import RunDir


def mean_gold(model_dir, prompts):
    """Mean gold of 16 samples of each prompt (standard error ~0.008)."""
    model, tokenizer = load_policy(model_dir)
    texts = sample(model.eval(), tokenizer, prompts, max_new_tokens=10, seed=0, samples_per_prompt=16).responses
    return sum(good_minus_bad(prompts, texts)) / len(texts)


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_dpo_learns_a_planted_preference(micro_model, task, tmp_path, loss):
    run = RunDir(tmp_path / loss)
    config = build(DPOConfig, loss=loss, beta=0.1 if loss == "dpo" else 0.5, epochs=2, pairs_per_step=16, lr=2e-3)
    policy, tokenizer = load_policy(micro_model)
    result = train_dpo(policy, tokenizer, planted_pairs(160), config, hooks=Hooks(progress=False))
    result.policy.save_pretrained(run / "policy")
    tokenizer.save_pretrained(run / "policy")
    before, after = mean_gold(micro_model, task.eval_prompts), mean_gold(run / "policy", task.eval_prompts)
    assert after - before > 0.05, (before, after)  # about 5 standard errors of the difference
    rows = result.history
    assert len(rows) == result.summary["steps"] == 20 and rows[-1]["dpo/accuracy"] > 0.8


def test_pairs_dpo_cannot_use_are_named():
    ok = PreferencePair("p", " good", " bad")
    with pytest.raises(DataError, match="1 pairs have chosen equal to rejected"):
        usable_pairs([ok, PreferencePair("p", " same", " same")], DPOConfig())
    with pytest.raises(DataError, match="1 pairs have an empty completion"):
        usable_pairs([ok, PreferencePair("p", " ", " x")], DPOConfig())
    tie = PreferencePair("p", " a", " b", label=0.5)
    with pytest.raises(DataError, match=r"1 pairs are ties \(label 0.5\).*--ties drop.*--loss ipo"):
        usable_pairs([ok, tie], DPOConfig())
    assert usable_pairs([ok, tie], build(DPOConfig, ties="drop")) == [ok]
    assert usable_pairs([ok, tie], build(DPOConfig, loss="ipo")) == [ok, tie]


def test_the_variant_is_explicit_and_contradictions_are_refused():
    assert build(DPOConfig, loss="cdpo", label_smoothing=0.1).label_smoothing == 0.1
    with pytest.raises(ConfigError, match=r"--label-smoothing must be 0 for --loss ipo \(it is the flip probability"):
        build(DPOConfig, loss="ipo", label_smoothing=0.1)
    with pytest.raises(ConfigError, match=r"--label-smoothing must be 0 for --loss dpo"):
        build(DPOConfig, label_smoothing=0.1)
    with pytest.raises(ConfigError, match=r"--label-smoothing must be in \(0, 0.5\) for --loss cdpo, got 0.0"):
        build(DPOConfig, loss="cdpo")
    with pytest.raises(ConfigError, match=r"'loss' must be one of \['dpo', 'cdpo', 'ipo'\], got 'sigmoid'"):
        build(DPOConfig, loss="sigmoid")
